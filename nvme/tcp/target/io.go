package target

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
)

// slot is one command of an I/O queue in flight: its DMA buffer (a
// fixed part of the queue's one allocation) and its ddi header. A slot
// moves reader goroutine -> backing (Strategy) -> sender goroutine -> free.
type slot struct {
	c    *conn
	buf  []byte // maxXfer bytes of DMA memory
	bp   ddi.Buf
	ns   *nsInfo
	cid  uint16
	read bool
	n    int  // bytes to move
	held bool // cid is in conn.busy on this slot's behalf

	// Writes through R2T.
	ttag   uint16
	next   uint32 // next byte expected
	r2tEnd uint32
	failed bool // a data digest error: Transient Transport Error

	// dsmRanges is NR+1 of a Dataset Management whose ranges come
	// through R2T; 0 for other commands.
	dsmRanges int

	// Multi-step commands (Write Zeroes, Dataset Management): the
	// remaining pieces, run one after another from Iodone.
	steps []step
	st    spec.Status // status to report; 0 on success
}

// step is one backing request of a multi-step command.
type step struct {
	cmd   ddi.Cmd
	blkno uint64
	bytes int
}

// maxDSMRanges is the most ranges one Dataset Management carries.
const maxDSMRanges = 256

// setupIO allocates the queue's buffers: depth slots of the subsystem's
// transfer size in one DMA buffer, and starts the sender goroutine.
func (c *conn) setupIO(sub *subsystem, depth int) error {
	mem, err := sub.backing.Memory().Alloc(depth * sub.maxXfer)
	if err != nil {
		return fmt.Errorf("%d buffers of %d bytes: %w", depth, sub.maxXfer, err)
	}
	c.sub, c.mem = sub, mem
	c.slots = make([]slot, depth)
	c.free = make(chan *slot, depth)
	c.done = make(chan *slot, depth)
	c.busy = make(map[uint16]bool, depth)
	c.waiting = map[uint16]*slot{}
	for i := range c.slots {
		s := &c.slots[i]
		s.c = c
		s.buf = mem.Bytes[i*sub.maxXfer : (i+1)*sub.maxXfer : (i+1)*sub.maxXfer]
		s.steps = make([]step, 0, maxDSMRanges)
		c.free <- s
	}
	c.cmdDone = func(bp *ddi.Buf) int {
		s := bp.Private.(*slot)
		s.stepDone()
		return 0
	}
	c.senderWG.Add(1)
	go c.sender()
	return nil
}

// release returns s to the free list; the reader or sender goroutine
// that owns it calls it.
func (c *conn) release(s *slot) {
	if s.held {
		c.mu.Lock()
		delete(c.busy, s.cid)
		c.mu.Unlock()
	}
	s.ns, s.cid, s.held, s.steps, s.st, s.failed, s.next, s.r2tEnd = nil, 0, false, s.steps[:0], 0, false, 0, 0
	s.dsmRanges = 0
	c.free <- s
	c.inflight.Done()
}

// sender is the goroutine that answers completed commands: C2HData from
// the slot's DMA buffer (writev, no copy) and the CapsuleResp.
func (c *conn) sender() {
	defer c.senderWG.Done()
	for s := range c.done {
		if s.st == 0 && s.read {
			_ = c.sendData(s.cid, s.buf[:s.n])
		} else {
			_ = c.respond(s.cid, s.st, 0, 0)
		}
		c.release(s)
	}
}

// start issues the next step of s to the backing, or hands s to the
// sender when none is left. It runs on the reader goroutine for the
// first step, and in Iodone (a poller's goroutine) for the others.
func (s *slot) start() {
	if len(s.steps) == 0 || s.st != 0 {
		s.c.done <- s // never blocks: the channel holds every slot
		return
	}
	st := s.steps[0]
	s.steps = s.steps[1:]
	bp := &s.bp
	ddi.Bioinit(bp)
	bp.Cmd = st.cmd
	bp.Lblkno = st.blkno
	bp.Bcount = st.bytes
	bp.Private = s
	bp.Iodone = s.c.cmdDone
	switch st.cmd {
	case ddi.CmdData:
		bp.Addr = s.buf[:st.bytes]
		if s.read {
			bp.Flags = ddi.BRead
		}
	case ddi.CmdFlush:
		bp.Bcount = 0
	}
	s.ns.ns.Strategy(bp)
}

// stepDone is the Iodone of a step.
func (s *slot) stepDone() {
	if err := ddi.Geterror(&s.bp); err != nil {
		s.st = statusOf(err)
	}
	s.start()
}

// statusOf maps a backing error to the status the host gets.
func statusOf(err error) spec.Status {
	var se *nvme.StatusError
	switch {
	case errors.As(err, &se):
		return se.Status()
	case errors.Is(err, ddi.ErrPastEnd):
		return status(spec.SCTGeneric, spec.SCLBAOutOfRange)
	}
	return spec.MakeStatus(spec.SCTGeneric, spec.SCInternalError)
}

// ioCommand runs a command of an I/O queue. s, if set, already holds the
// in-capsule data of a write.
func (c *conn) ioCommand(cmd *spec.Command, icd []byte, s *slot) error {
	fail := func(st spec.Status) error {
		if s != nil {
			c.release(s)
		}
		return c.respond(cmd.CID, st, 0, 0)
	}
	op := spec.Opcode(cmd.Opcode)
	switch op {
	case spec.IOFlush, spec.IOWrite, spec.IORead, spec.IOWriteZeroes, spec.IODatasetManagement:
	default:
		return fail(status(spec.SCTGeneric, spec.SCInvalidOpcode))
	}
	ns := c.sub.byID[cmd.NSID]
	if ns == nil {
		return fail(status(spec.SCTGeneric, spec.SCInvalidNamespace))
	}
	c.mu.Lock()
	conflict := c.busy[cmd.CID]
	if !conflict {
		c.busy[cmd.CID] = true
	}
	c.mu.Unlock()
	if conflict {
		if s != nil {
			c.release(s) // not held: the CID is the other command's
		}
		return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCCIDConflict), 0, 0)
	}
	if s == nil {
		select {
		case s = <-c.free:
			c.inflight.Add(1)
		default:
			// More commands than the queue has entries: the host broke
			// SQ flow control.
			c.mu.Lock()
			delete(c.busy, cmd.CID)
			c.mu.Unlock()
			return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCCommandSequenceError), 0, 0)
		}
	}
	s.ns, s.cid, s.held, s.read, s.n = ns, cmd.CID, true, op == spec.IORead, 0
	slba := uint64(cmd.CDW10) | uint64(cmd.CDW11)<<32
	nlb := uint64(cmd.CDW12&0xffff) + 1
	bs := 1 << ns.bshift
	switch op {
	case spec.IOFlush:
		if st, ok := dataSGL(cmd, 0, false, icd); !ok {
			return fail(st)
		}
		s.steps = append(s.steps, step{cmd: ddi.CmdFlush})
		s.start()
		return nil
	case spec.IODatasetManagement:
		return c.dsm(cmd, icd, s, fail)
	}
	if slba+nlb > ns.blocks || slba+nlb < slba {
		return fail(status(spec.SCTGeneric, spec.SCLBAOutOfRange))
	}
	if op == spec.IOWriteZeroes {
		if st, ok := dataSGL(cmd, 0, false, icd); !ok {
			return fail(st)
		}
		clear(s.buf)
		chunk := uint64(c.sub.maxXfer / bs)
		for b := slba; b < slba+nlb; b += chunk {
			n := min(chunk, slba+nlb-b)
			s.steps = append(s.steps, step{cmd: ddi.CmdData, blkno: b, bytes: int(n) * bs})
		}
		s.start()
		return nil
	}
	n := int(nlb) * bs
	if n > c.sub.maxXfer {
		return fail(status(spec.SCTGeneric, spec.SCInvalidField))
	}
	if st, ok := dataSGL(cmd, n, s.read, icd); !ok {
		return fail(st)
	}
	s.n = n
	s.steps = append(s.steps, step{cmd: ddi.CmdData, blkno: slba, bytes: n})
	if s.read {
		s.start()
		return nil
	}
	if len(icd) > 0 {
		if &icd[0] != &s.buf[0] {
			copy(s.buf, icd) // staged in the Reader: no slot was free when the header came
		}
		s.start()
		return nil
	}
	c.waiting[cmd.CID] = s
	return c.r2t(s)
}

// dsm runs Dataset Management: each range with the Deallocate attribute
// becomes a ddi CmdDelete, in order; without it the command is a hint
// and completes at once. NVM Command Set 1.0, 3.2.3.
//
// The data SGL may describe more than the NR+1 ranges: Linux sends a
// 4 KiB buffer (room for 256 ranges) whatever NR says, in the capsule
// when IOCCSZ allows, else through R2T. Like Linux's nvmet, the target
// takes any length from the ranges' size up to a slot's buffer and reads
// the first NR+1 ranges of it.
func (c *conn) dsm(cmd *spec.Command, icd []byte, s *slot, fail func(spec.Status) error) error {
	nr := int(cmd.CDW10&0xff) + 1
	want := nr * 16
	if _, _, length, err := fabrics.ParseDataSGL(cmd.SGL1()); err == nil && int(length) > want && int(length) <= len(s.buf) {
		want = int(length)
	}
	if st, ok := dataSGL(cmd, want, false, icd); !ok {
		return fail(st)
	}
	if cmd.CDW11&spec.DSMDeallocate == 0 {
		return fail(0)
	}
	if len(icd) == 0 {
		// The ranges through R2T: h2cDone parses them once all came.
		s.dsmRanges, s.n = nr, want
		c.waiting[cmd.CID] = s
		return c.r2t(s)
	}
	s.deallocate(icd[:nr*16])
	s.start()
	return nil
}

// deallocate turns the ranges in b into CmdDelete steps of s, or sets
// s.st if one lies outside the namespace (then no step runs).
func (s *slot) deallocate(b []byte) {
	ns := s.ns
	for r := b; len(r) >= 16; r = r[16:] {
		n := uint64(binary.LittleEndian.Uint32(r[4:]))
		lba := binary.LittleEndian.Uint64(r[8:])
		if n == 0 {
			continue
		}
		if lba+n > ns.blocks || lba+n < lba {
			s.steps = s.steps[:0]
			s.st = status(spec.SCTGeneric, spec.SCLBAOutOfRange)
			return
		}
		s.steps = append(s.steps, step{cmd: ddi.CmdDelete, blkno: lba, bytes: int(n << ns.bshift)})
	}
}

// r2t asks the host for the next range of s's data: all that is left, up
// to MAXH2CDATA per PDU on the host's side. One R2T per command at a
// time.
func (c *conn) r2t(s *slot) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	s.ttag++
	s.r2tEnd = uint32(s.n)
	return c.sendLocked(c.w.AppendR2T(c.head[:0], s.cid, s.ttag, s.next, s.r2tEnd-s.next))
}

// h2cData takes an H2CData PDU: the header first (check it, then read the
// data straight into the slot's DMA buffer), then the data.
func (c *conn) h2cData(p *pdu.PDU) error {
	s := c.waiting[p.Transfer.CCCID]
	if s == nil {
		return pdu.NewError(pdu.FESInvalidHeaderField, 8, p.Type, p.Header, "CCCID %d has no data outstanding", p.Transfer.CCCID)
	}
	if p.DataPending {
		if err := pdu.CheckData(p, s.ttag, s.next, s.r2tEnd, p.Header); err != nil {
			return err
		}
		return c.r.SetDest(s.buf[p.Transfer.Offset : p.Transfer.Offset+p.Transfer.Length])
	}
	return c.h2cDone(s, p)
}

func (c *conn) h2cDone(s *slot, p *pdu.PDU) error {
	s.next += p.Transfer.Length
	if p.Last() != (s.next == s.r2tEnd) {
		return pdu.NewError(pdu.FESInvalidHeaderField, 1, p.Type, p.Header, "LAST_PDU at %d, the R2T ends at %d", s.next, s.r2tEnd)
	}
	if s.next < s.r2tEnd {
		return nil
	}
	delete(c.waiting, s.cid)
	s.next, s.r2tEnd = 0, 0
	if s.failed {
		s.st = spec.MakeStatus(spec.SCTGeneric, spec.SCTransientTransportError)
	} else if s.dsmRanges > 0 {
		s.deallocate(s.buf[:s.dsmRanges*16])
	}
	s.start()
	return nil
}

// dataDigestError handles a PDU whose data digest did not match: the
// command fails with Transient Transport Error, the stream goes on.
func (c *conn) dataDigestError(p *pdu.PDU) error {
	switch p.Type {
	case pdu.TypeCapsuleCmd:
		if s := c.icSlot; s != nil {
			c.icSlot = nil
			c.release(s)
		}
		return c.respond(p.Command.CID, spec.MakeStatus(spec.SCTGeneric, spec.SCTransientTransportError), 0, 0)
	case pdu.TypeH2CData:
		s := c.waiting[p.Transfer.CCCID]
		if s == nil {
			return pdu.NewError(pdu.FESInvalidHeaderField, 8, p.Type, p.Header, "CCCID %d has no data outstanding", p.Transfer.CCCID)
		}
		s.failed = true
		return c.h2cDone(s, p)
	}
	return nil
}
