package target

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/nbsock"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
)

// ioConn is a host I/O queue, owned by one poll group (on its poller's
// goroutine) from the moment Connect hands it over: the group reads and
// writes its socket without blocking (sock.go), runs its commands on its
// poller's queue pair of the backing, and sends their completions. Only
// shutdown may be called from other goroutines.
type ioConn struct {
	t    *Target
	g    *group
	sk   sock   // the socket, from the hand-off to the poll group (sock.go)
	fd   int    // sk's, for the group's epoll set
	peer string // the host's address, for logs
	r    *pdu.Reader
	w    pdu.Writer
	ctrl *controller
	sub  *subsystem
	qid  uint16

	sqsize   uint16
	sqhd     uint16
	noSQFlow bool
	success  bool // C2HData SUCCESS completes reads

	mems      []*dma.Buffer // one per allocator of the subsystem's backings
	slots     []slot
	free      []*slot  // stack of free slots
	busy      []uint64 // CIDs outstanding, a bit each
	cur       *slot    // the capsule whose in-capsule data is arriving
	inBacking int      // slots whose command is on the backing

	outq    []*slot // ring of slots with bytes to send
	outHead int
	outLen  int
	iov     [][]byte // gather list of one writev
	wantOut bool     // EPOLLOUT is registered

	state   connState
	closeBy int64 // closing, or quit: monotonic ns after which the socket closes
	quit    bool  // close once everything queued is sent (Disconnect), or at closeBy
	freed   bool
	term    []byte
}

type connState uint8

const (
	connOpen    connState = iota
	connClosing           // a TermReq sent: reading and discarding until EOF
	connDead              // socket closed; slots drain from the backing
)

// maxIOV is the most buffers one writev carries: x/sys/unix.Writev
// allocates its iovec array beyond 8.
const maxIOV = 8

// slot is one command of an I/O queue: its DMA buffer (a fixed part of
// the queue's one allocation), its ddi header, and the PDU heads of its
// answer. free -> (data) -> backing -> queued -> sent -> free; all on the
// poll group's poller goroutine.
type slot struct {
	c    *ioConn
	buf  []byte   // maxXfer bytes of DMA memory the command's backing reaches
	bufs [][]byte // the slot's buffer in each allocator's memory
	bp   ddi.Buf
	ns   *nsInfo
	dev  *ddi.Device
	cid  uint16
	read bool
	n    int  // bytes of data
	held bool // cid is in ioConn.busy on this slot's behalf
	data bool // waiting for H2CData

	// Writes through R2T.
	ttag   uint16
	next   uint32 // next byte expected
	r2tEnd uint32
	failed bool // a data digest error: Transient Transport Error
	r2tOut bool // the R2T is what is queued, not the answer

	// dsmRanges is NR+1 of a Dataset Management whose ranges come
	// through R2T; 0 for other commands.
	dsmRanges int

	// The backing requests of the command, sent one after another from
	// Iodone, each cut into pieces the backing takes whole.
	steps []step
	si    int
	st    spec.Status // status to report; 0 on success

	off int // bytes of buf the data pieces sent so far cover

	t0, tb int64 // monotonic ns: capsule received, first backing request

	head [2 * pdu.MaxHeadLen]byte
	dg   [pdu.DigestLen]byte
	iovs [4][]byte
	out  [][]byte // what is left to send of iovs
}

// step is one backing request of a command: blocks at blkno.
type step struct {
	cmd   ddi.Cmd
	blkno uint64
	nblk  uint64
}

// maxDSMRanges is the most ranges one Dataset Management carries.
const maxDSMRanges = 256

// newIOConn makes the I/O queue qid of ctrl on c's socket: depth slots
// of the subsystem's transfer size in one DMA buffer.
func newIOConn(c *conn, ctrl *controller, sub *subsystem, qid, sqsize uint16, noSQFlow bool) (*ioConn, error) {
	if _, ok := c.c.(syscall.Conn); !ok {
		return nil, fmt.Errorf("%T has no file descriptor", c.c)
	}
	depth := int(sqsize) + 1
	q := &ioConn{t: c.t, sk: newSock(), fd: -1, peer: c.c.RemoteAddr().String(), ctrl: ctrl, sub: sub, qid: qid,
		sqsize: sqsize, noSQFlow: noSQFlow, success: noSQFlow && !c.t.cfg.NoSuccess,
		slots: make([]slot, depth), free: make([]*slot, 0, depth), busy: make([]uint64, 1<<16/64),
		outq: make([]*slot, depth), iov: make([][]byte, 0, maxIOV), term: make([]byte, 0, pdu.MaxHeadLen+pdu.MaxHeadLen)}
	for _, a := range sub.mems {
		mem, err := a.Alloc(depth * sub.maxXfer)
		if err != nil {
			q.freeMemory()
			return nil, fmt.Errorf("%d buffers of %d bytes: %w", depth, sub.maxXfer, err)
		}
		q.mems = append(q.mems, mem)
	}
	for i := range q.slots {
		s := &q.slots[i]
		s.c = q
		for _, mem := range q.mems {
			s.bufs = append(s.bufs, mem.Bytes[i*sub.maxXfer:(i+1)*sub.maxXfer:(i+1)*sub.maxXfer])
		}
		s.buf = s.bufs[0]
		s.steps = make([]step, 0, maxDSMRanges)
		s.bp.Private = s
		s.bp.Iodone = stepIodone
		q.free = append(q.free, s)
	}
	return q, nil
}

// free releases the queue's DMA memory: once no slot is on the backing.
func (c *ioConn) freeMemory() {
	if c.freed {
		return
	}
	c.freed = true
	for i, m := range c.mems {
		if err := c.sub.mems[i].Free(m); err != nil {
			c.t.logf("nvmf: free queue memory: %v", err)
		}
	}
}

// shutdown makes the queue end: its socket reads EOF, and the poll group
// tears it down. Any goroutine.
func (c *ioConn) shutdown() { c.sk.Shutdown(unix.SHUT_RDWR) }

// takeSocket moves nc's socket out of Go's network poller into the
// queue, at the hand-off to the poll group (sock.take).
func (c *ioConn) takeSocket(nc net.Conn) error {
	if err := c.sk.take(nc); err != nil {
		return err
	}
	c.fd = c.sk.fd
	return nil
}

// poll reads what the socket holds and runs the PDUs in it; it returns
// how much it did (0: nothing).
func (c *ioConn) poll(now int64) int {
	switch c.state {
	case connDead:
		return 0
	case connClosing:
		return c.discard(now)
	}
	work := 0
	for range 8 {
		for c.state == connOpen {
			p, err := c.r.Next()
			if p == nil && err == nil {
				break
			}
			work++
			if err := c.pdu(p, err); err != nil {
				c.fail(err)
			}
		}
		if c.state != connOpen {
			return work + 1
		}
		if c.quit {
			// Disconnect: the queue ends once its answer is out
			// (flush), or when a host that does not read lets
			// closeGrace pass.
			if now > c.closeBy {
				c.end(errDisconnect)
				return work + 1
			}
			return work
		}
		n, err := c.sk.Read(c.r.ReadBuffer())
		if n > 0 {
			c.r.Advance(n)
			work++
			continue
		}
		if err != nil {
			c.end(err)
			return work + 1
		}
		break
	}
	return work
}

// discard reads and drops what a host whose connection failed still
// sends, until it closes or the time is up: closing with unread bytes
// resets the connection, and a reset can discard the TermReq before the
// host reads it.
func (c *ioConn) discard(now int64) int {
	var sink [512]byte
	n, err := c.sk.Read(sink[:])
	if err != nil || now > c.closeBy {
		c.end(nil)
		return 1
	}
	return n
}

// pdu runs one PDU (or the PDU-level error err).
func (c *ioConn) pdu(p *pdu.PDU, err error) error {
	if err != nil {
		var pe *pdu.Error // (declared here: errors.As makes it escape)
		if p != nil && errors.As(err, &pe) && !pe.Fatal() {
			return c.dataDigestError(p)
		}
		return err
	}
	switch p.Type {
	case pdu.TypeH2CTermReq:
		return fmt.Errorf("%w: %v, fei %#x", errHostTerm, p.Term.FES, p.Term.FEI)
	case pdu.TypeCapsuleCmd:
		s := c.cur
		if s == nil {
			if s = c.take(); s == nil {
				// More commands than the queue has entries: as Linux's
				// nvmet, a fatal error.
				return pdu.NewError(pdu.FESInvalidHeaderField, 0, p.Type, p.Header, "more than %d commands outstanding", len(c.slots))
			}
		}
		if p.DataPending {
			c.cur = s
			if ns := c.sub.tab.Load().byID[p.Command.NSID]; ns != nil {
				s.buf = s.bufs[ns.part.mem]
			}
			op := spec.Opcode(p.Command.Opcode)
			if (op == spec.IOWrite || op == spec.IODatasetManagement) && int(p.DataLen) <= len(s.buf) {
				return c.r.SetDest(s.buf[:p.DataLen]) // read(2) straight into DMA memory
			}
			return nil // staged in the Reader, copied once
		}
		c.cur = nil
		s.t0 = monotonic()
		c.command(s, &p.Command, p.Data)
		return nil
	case pdu.TypeH2CData:
		return c.h2cData(p)
	}
	return pdu.NewError(pdu.FESInvalidHeaderField, 0, p.Type, p.Header, "unexpected %v", p.Type)
}

// take returns a free slot, or nil.
func (c *ioConn) take() *slot {
	n := len(c.free)
	if n == 0 {
		return nil
	}
	s := c.free[n-1]
	c.free = c.free[:n-1]
	return s
}

// release returns s to the free list.
func (c *ioConn) release(s *slot) {
	if s.held {
		c.busy[s.cid/64] &^= 1 << (s.cid % 64)
	}
	s.ns, s.dev, s.cid, s.held, s.data, s.steps, s.si, s.st = nil, nil, 0, false, false, s.steps[:0], 0, 0
	s.failed, s.next, s.r2tEnd, s.r2tOut, s.dsmRanges, s.read, s.n, s.off = false, 0, 0, false, 0, false, 0, 0
	s.out, s.buf, s.t0, s.tb = nil, s.bufs[0], 0, 0
	c.free = append(c.free, s)
}

// fail answers the command in s with st at once.
func (c *ioConn) answer(s *slot, cid uint16, st spec.Status) {
	s.cid, s.st, s.read = cid, st, false
	c.queue(s)
}

// command runs one capsule in slot s; icd is its in-capsule data (s's
// buffer, or the Reader's).
func (c *ioConn) command(s *slot, cmd *spec.Command, icd []byte) {
	if cmd.Flags&spec.FlagPSDTMask != spec.FlagPSDTSGL || cmd.Flags&0x3 != 0 {
		c.answer(s, cmd.CID, status(spec.SCTGeneric, spec.SCInvalidField))
		return
	}
	if fct, ok := fabrics.CommandFCType(cmd); ok {
		switch fct {
		case fabrics.FCTypeDisconnect:
			c.forget() // the QID is free once the host reads the answer
			c.answer(s, cmd.CID, 0)
			c.quit = true // close once the answer is out, or after closeGrace
			c.closeBy = monotonic() + int64(closeGrace)
		case fabrics.FCTypeConnect, fabrics.FCTypePropertyGet, fabrics.FCTypePropertySet:
			c.answer(s, cmd.CID, status(spec.SCTGeneric, spec.SCCommandSequenceError))
		default:
			c.answer(s, cmd.CID, status(spec.SCTGeneric, spec.SCInvalidOpcode))
		}
		return
	}
	if c.busy[cmd.CID/64]&(1<<(cmd.CID%64)) != 0 {
		c.answer(s, cmd.CID, status(spec.SCTGeneric, spec.SCCIDConflict))
		return
	}
	c.busy[cmd.CID/64] |= 1 << (cmd.CID % 64)
	s.cid, s.held = cmd.CID, true
	if st := c.ioCommand(s, cmd, icd); st != 0 {
		s.st = st
		c.queue(s)
	}
}

// ioCommand starts an I/O command in s, or returns the status that
// answers it at once.
func (c *ioConn) ioCommand(s *slot, cmd *spec.Command, icd []byte) spec.Status {
	op := spec.Opcode(cmd.Opcode)
	switch op {
	case spec.IOFlush, spec.IOWrite, spec.IORead, spec.IOWriteZeroes, spec.IODatasetManagement:
	default:
		return status(spec.SCTGeneric, spec.SCInvalidOpcode)
	}
	ns := c.sub.tab.Load().byID[cmd.NSID]
	if ns == nil {
		return status(spec.SCTGeneric, spec.SCInvalidNamespace)
	}
	if b := s.bufs[ns.part.mem]; &b[0] != &s.buf[0] {
		// The in-capsule data went to another backing's memory: the
		// NSID was unknown when its header came (a rescan since).
		if len(icd) > 0 && &icd[0] == &s.buf[0] {
			icd = b[:copy(b, icd)]
		}
		s.buf = b
	}
	s.ns, s.dev, s.read, s.n = ns, ns.devs[c.g.id], op == spec.IORead, 0
	slba := uint64(cmd.CDW10) | uint64(cmd.CDW11)<<32
	nlb := uint64(cmd.CDW12&0xffff) + 1
	switch op {
	case spec.IOFlush:
		if st, ok := dataSGL(cmd, 0, false, icd); !ok {
			return st
		}
		s.steps = append(s.steps, step{cmd: ddi.CmdFlush})
		c.start(s)
		return 0
	case spec.IODatasetManagement:
		return c.dsm(s, cmd, icd)
	}
	if slba+nlb > ns.blocks || slba+nlb < slba {
		return status(spec.SCTGeneric, spec.SCLBAOutOfRange)
	}
	if op == spec.IOWriteZeroes {
		if st, ok := dataSGL(cmd, 0, false, icd); !ok {
			return st
		}
		clear(s.buf)
		s.steps = append(s.steps, step{cmd: ddi.CmdData, blkno: slba, nblk: nlb})
		c.start(s)
		return 0
	}
	n := int(nlb) << ns.bshift
	if n > c.sub.maxXfer {
		return status(spec.SCTGeneric, spec.SCInvalidField)
	}
	if st, ok := dataSGL(cmd, n, s.read, icd); !ok {
		return st
	}
	s.n = n
	s.steps = append(s.steps, step{cmd: ddi.CmdData, blkno: slba, nblk: nlb})
	if s.read {
		c.start(s)
		return 0
	}
	if len(icd) > 0 {
		if &icd[0] != &s.buf[0] {
			copy(s.buf, icd) // staged in the Reader
		}
		c.start(s)
		return 0
	}
	c.r2t(s)
	return 0
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
func (c *ioConn) dsm(s *slot, cmd *spec.Command, icd []byte) spec.Status {
	nr := int(cmd.CDW10&0xff) + 1
	want := nr * 16
	if _, _, length, err := fabrics.ParseDataSGL(cmd.SGL1()); err == nil && int(length) > want && int(length) <= len(s.buf) {
		want = int(length)
	}
	if st, ok := dataSGL(cmd, want, false, icd); !ok {
		return st
	}
	if cmd.CDW11&spec.DSMDeallocate == 0 {
		c.queue(s) // a hint: done
		return 0
	}
	if len(icd) == 0 {
		// The ranges through R2T: h2cDone parses them once all came.
		s.dsmRanges, s.n = nr, want
		c.r2t(s)
		return 0
	}
	s.deallocate(icd[:nr*16])
	c.start(s)
	return 0
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
		s.steps = append(s.steps, step{cmd: ddi.CmdDelete, blkno: lba, nblk: n})
	}
}

// start sends the next piece of s's steps to the backing, or, with none
// left (or a failure), queues the answer. Pieces fit one backing command
// (maxBlocks, not across NOIOB, deletes of at most maxDelete blocks), so
// ddi never splits them and Strategy submits on this goroutine. Runs on
// the poll group, in Iodone for all but the first piece.
func (c *ioConn) start(s *slot) {
	if s.si == len(s.steps) || s.st != 0 {
		c.done(s)
		return
	}
	if s.tb == 0 {
		s.tb = monotonic()
	}
	st := &s.steps[s.si]
	ns := s.ns
	n := st.nblk
	bp := &s.bp
	ddi.Bioinit(bp)
	bp.Cmd = st.cmd
	bp.Lblkno = st.blkno
	bp.Private = s
	bp.Iodone = stepIodone
	switch st.cmd {
	case ddi.CmdData:
		n = min(n, ns.maxBlocks)
		if ns.stripe > 0 {
			n = min(n, ns.stripe-st.blkno%ns.stripe)
		}
		bp.Bcount = int(n << ns.bshift)
		if s.n > 0 { // a read or write: pieces one after another in buf
			bp.Addr = s.buf[s.off : s.off+bp.Bcount]
			s.off += bp.Bcount
		} else { // write zeroes: the zeroed start of buf, again and again
			bp.Addr = s.buf[:bp.Bcount]
		}
		if s.read {
			bp.Flags = ddi.BRead
		}
	case ddi.CmdDelete:
		n = min(n, maxDelete)
		bp.Bcount = int(n << ns.bshift)
	case ddi.CmdFlush:
		bp.Bcount = 0
	}
	st.blkno += n
	st.nblk -= n
	if st.nblk == 0 || st.cmd == ddi.CmdFlush {
		s.si++
	}
	c.inBacking++
	s.dev.Strategy(bp)
}

// stepIodone is the Iodone of every piece, on the poll group's poller
// goroutine (inside its reap of a queue pair, or inside Strategy when it
// fails at once).
func stepIodone(bp *ddi.Buf) int {
	s := bp.Private.(*slot)
	c := s.c
	c.inBacking--
	if err := ddi.Geterror(bp); err != nil && s.st == 0 {
		s.st = statusOf(err)
	}
	c.start(s)
	return 0
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

// done is the end of a command on the backing: its answer is queued, or
// on a queue that ended, the slot is free.
func (c *ioConn) done(s *slot) {
	if s.tb != 0 {
		c.g.backingNS.Add(uint64(monotonic() - s.tb))
	}
	if c.state != connOpen {
		c.release(s)
		return
	}
	c.queue(s)
}

// r2t asks the host for s's data: all of it, in H2CData PDUs of at most
// MAXH2CDATA on the host's side. One R2T per command.
func (c *ioConn) r2t(s *slot) {
	s.ttag++
	s.data, s.r2tOut = true, true
	s.r2tEnd = uint32(s.n)
	h := c.w.AppendR2T(s.head[:0], s.cid, s.ttag, s.next, s.r2tEnd-s.next)
	s.iovs[0] = h
	s.out = s.iovs[:1]
	c.push(s)
}

// findData returns the slot waiting for data of command cid.
func (c *ioConn) findData(cid uint16) *slot {
	if c.busy[cid/64]&(1<<(cid%64)) == 0 {
		return nil
	}
	for i := range c.slots {
		if s := &c.slots[i]; s.data && s.cid == cid {
			return s
		}
	}
	return nil
}

// h2cData takes an H2CData PDU: the header first (check it, then read the
// data straight into the slot's DMA buffer), then the data.
func (c *ioConn) h2cData(p *pdu.PDU) error {
	s := c.findData(p.Transfer.CCCID)
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

func (c *ioConn) h2cDone(s *slot, p *pdu.PDU) error {
	s.next += p.Transfer.Length
	if p.Last() != (s.next == s.r2tEnd) {
		return pdu.NewError(pdu.FESInvalidHeaderField, 1, p.Type, p.Header, "LAST_PDU at %d, the R2T ends at %d", s.next, s.r2tEnd)
	}
	if s.next < s.r2tEnd {
		return nil
	}
	s.data = false
	if s.failed {
		s.st = spec.MakeStatus(spec.SCTGeneric, spec.SCTransientTransportError)
	} else if s.dsmRanges > 0 {
		s.deallocate(s.buf[:s.dsmRanges*16])
	}
	c.start(s)
	return nil
}

// dataDigestError handles a PDU whose data digest did not match: the
// command fails with Transient Transport Error, the stream goes on.
func (c *ioConn) dataDigestError(p *pdu.PDU) error {
	switch p.Type {
	case pdu.TypeCapsuleCmd:
		s := c.cur
		c.cur = nil
		if s == nil {
			if s = c.take(); s == nil {
				return pdu.NewError(pdu.FESInvalidHeaderField, 0, p.Type, p.Header, "more than %d commands outstanding", len(c.slots))
			}
		}
		c.answer(s, p.Command.CID, spec.MakeStatus(spec.SCTGeneric, spec.SCTransientTransportError))
		return nil
	case pdu.TypeH2CData:
		s := c.findData(p.Transfer.CCCID)
		if s == nil {
			return pdu.NewError(pdu.FESInvalidHeaderField, 8, p.Type, p.Header, "CCCID %d has no data outstanding", p.Transfer.CCCID)
		}
		s.failed = true
		return c.h2cDone(s, p)
	}
	return pdu.NewError(pdu.FESInvalidHeaderField, 0, p.Type, p.Header, "unexpected %v", p.Type)
}

// queue builds s's answer and queues it: for a read that succeeded,
// C2HData (with SUCCESS when the queue allows it, else followed by a
// CapsuleResp), written from the slot's DMA buffer with no copy; else a
// CapsuleResp.
func (c *ioConn) queue(s *slot) {
	c.sqhd++
	if c.sqhd > c.sqsize {
		c.sqhd = 0
	}
	n := 0
	h := s.head[:0]
	if s.st == 0 && s.read && s.n > 0 {
		d := s.buf[:s.n]
		h = c.w.AppendC2HData(h, s.cid, 0, s.n, true, c.success)
		s.iovs[0], s.iovs[1] = h, d
		n = 2
		if dg := c.w.AppendDataDigest(s.dg[:0], d); len(dg) > 0 {
			s.iovs[n] = dg
			n++
		}
		if c.success {
			s.out = s.iovs[:n]
			c.push(s)
			return
		}
	}
	cqe := spec.Completion{SQHead: c.sqhd, SQID: c.qid, CID: s.cid, Status: s.st.CQEField(false)}
	if c.noSQFlow {
		cqe.SQHead = 0
	}
	s.iovs[n] = c.w.AppendCapsuleResp(h[len(h):], &cqe)
	s.out = s.iovs[:n+1]
	c.push(s)
}

// push appends s to the send queue; the group flushes it this pass.
func (c *ioConn) push(s *slot) {
	c.outq[(c.outHead+c.outLen)%len(c.outq)] = s
	c.outLen++
}

// flush writes what is queued, as much as the socket takes, in writevs of
// at most maxIOV buffers; it returns whether it sent anything.
func (c *ioConn) flush() int {
	work := 0
	for c.outLen > 0 && c.state == connOpen {
		iov := c.iov[:0]
		for i := 0; i < c.outLen; i++ {
			s := c.outq[(c.outHead+i)%len(c.outq)]
			if len(iov)+len(s.out) > maxIOV {
				break
			}
			iov = append(iov, s.out...)
		}
		n, err := c.sk.Writev(iov)
		clear(iov)
		if err != nil {
			c.end(err)
			return 1
		}
		if n == 0 {
			break
		}
		work = 1
		for n > 0 {
			s := c.outq[c.outHead]
			for len(s.out) > 0 && n > 0 {
				if n >= len(s.out[0]) {
					n -= len(s.out[0])
					s.out = s.out[1:]
				} else {
					s.out[0] = s.out[0][n:]
					n = 0
				}
			}
			if len(s.out) > 0 {
				break
			}
			c.pop()
			c.sent(s)
		}
	}
	switch {
	case c.state != connOpen:
	case c.outLen > 0 && !c.wantOut:
		c.wantOut = true
		c.g.watch(c, true)
	case c.outLen == 0 && c.wantOut:
		c.wantOut = false
		c.g.watch(c, false)
	}
	if c.outLen == 0 && c.quit && c.state == connOpen {
		c.end(errDisconnect)
	}
	return work
}

func (c *ioConn) pop() {
	c.outq[c.outHead] = nil
	c.outHead = (c.outHead + 1) % len(c.outq)
	c.outLen--
}

// sent is called when all of s's queued bytes are out: an R2T leaves the
// slot waiting for data, an answer frees it.
func (c *ioConn) sent(s *slot) {
	if s.r2tOut {
		s.r2tOut = false
		return
	}
	if s.t0 != 0 {
		c.g.commands.Add(1)
		c.g.answerNS.Add(uint64(monotonic() - s.t0))
	}
	c.release(s)
}

// fail ends the queue after a protocol error: a TermReq for an
// *pdu.Error with a status, then the socket closes once the host closed
// its side or 2 s passed. Other errors end it at once.
func (c *ioConn) fail(err error) {
	var pe *pdu.Error
	if !errors.As(err, &pe) {
		c.end(err)
		return
	}
	c.t.logf("nvmf: %v: %v", c.peer, err)
	c.forget() // first: the host may connect the QID again as soon as it reads the TermReq
	c.dropQueued()
	c.term = pdu.AppendTermReqFor(c.term[:0], pdu.Controller, pe)
	_, _ = c.sk.Write(c.term) // a few bytes into an empty send queue
	c.sk.Shutdown(unix.SHUT_WR)
	c.state = connClosing
	c.closeBy = monotonic() + int64(closeGrace)
}

// dropQueued frees what waits to be sent and what waits for data: none
// of it is on the backing.
func (c *ioConn) dropQueued() {
	for c.outLen > 0 {
		s := c.outq[c.outHead]
		c.pop()
		if s.r2tOut {
			s.r2tOut = false
			continue // also waiting for data: freed below
		}
		c.release(s)
	}
	for i := range c.slots {
		if s := &c.slots[i]; s.data {
			c.release(s)
		}
	}
	if c.cur != nil {
		c.release(c.cur)
		c.cur = nil
	}
}

// end closes the queue: the socket goes, the controller forgets it, and
// what is on the backing completes into free slots; the group frees the
// memory once nothing is (gone).
func (c *ioConn) end(err error) {
	if c.state == connDead {
		return
	}
	switch {
	case err == nil, errors.Is(err, errDisconnect), errors.Is(err, errHostTerm), errors.Is(err, io.EOF),
		errors.Is(err, ErrClosed), nbsock.IsClosed(err):
	default:
		c.t.logf("nvmf: %v: %v", c.peer, err)
	}
	c.forget() // before the close the host may see
	if c.state == connOpen {
		c.dropQueued()
	}
	c.state = connDead
	c.g.unwatch(c)
	c.sk.Close()
}

// forget removes the queue from its controller: the QID is free for a
// new Connect.
func (c *ioConn) forget() {
	c.t.mu.Lock()
	if c.ctrl.ioConns[c.qid] == c {
		delete(c.ctrl.ioConns, c.qid)
	}
	c.t.mu.Unlock()
}

// gone reports whether the queue has ended and nothing of it is on the
// backing any more; its memory is then freed.
func (c *ioConn) gone() bool {
	if c.state != connDead || c.inBacking != 0 {
		return false
	}
	c.freeMemory()
	return true
}
