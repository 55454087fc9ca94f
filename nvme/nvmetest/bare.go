package nvmetest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/mmio"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// BareQueue is the least a host can do to run I/O on the fake: it enables
// the controller itself, creates one I/O queue pair, and offers a submit /
// ring / reap loop with nothing else (no command ID tracking beyond the
// slot, no timeouts, no wait list, no PRP lists). It is the baseline the
// driver's per-I/O cost is measured against, and it is not a driver: a
// BareQueue owns the controller, so do not open package nvme on the same
// fake.
//
// A BareQueue belongs to one goroutine. The command ID of a submission is
// its submission queue slot, so at most Depth()-1 commands may be
// outstanding.
type BareQueue struct {
	c    *Controller
	mem  *dma.Allocator
	regs mmio.Region

	asq, acq, sqb, cqb *dma.Buffer
	admin, io          bareRing
}

type bareRing struct {
	sq    []byte
	cq    mmio.Region
	size  uint16
	tail  uint16
	head  uint16
	phase bool
	out   int
	sqDB  uintptr
	cqDB  uintptr
	regs  mmio.Region
}

func (r *bareRing) init(regs mmio.Region, qid uint16, dstrd uint8, sq, cq *dma.Buffer, size int) {
	*r = bareRing{sq: sq.Bytes, cq: mmio.New(cq.Bytes), size: uint16(size), phase: true, regs: regs,
		sqDB: spec.SQTailDoorbell(qid, dstrd), cqDB: spec.CQHeadDoorbell(qid, dstrd)}
}

// submit writes cmd into the next slot with CID = slot. It returns false
// when the ring is full.
func (r *bareRing) submit(cmd *spec.Command) (uint16, bool) {
	return r.submitCID(cmd, r.tail)
}

// submitCID writes cmd into the next slot with command identifier cid.
func (r *bareRing) submitCID(cmd *spec.Command, cid uint16) (uint16, bool) {
	if r.out >= int(r.size)-1 {
		return 0, false
	}
	slot := r.tail
	b := r.sq[int(slot)*spec.CommandSize : int(slot+1)*spec.CommandSize]
	le := binary.LittleEndian
	b[0], b[1] = cmd.Opcode, cmd.Flags
	le.PutUint16(b[2:], cid)
	le.PutUint32(b[4:], cmd.NSID)
	le.PutUint32(b[8:], cmd.CDW2)
	le.PutUint32(b[12:], cmd.CDW3)
	le.PutUint64(b[16:], cmd.MPTR)
	le.PutUint64(b[24:], cmd.PRP1)
	le.PutUint64(b[32:], cmd.PRP2)
	le.PutUint32(b[40:], cmd.CDW10)
	le.PutUint32(b[44:], cmd.CDW11)
	le.PutUint32(b[48:], cmd.CDW12)
	le.PutUint32(b[52:], cmd.CDW13)
	le.PutUint32(b[56:], cmd.CDW14)
	le.PutUint32(b[60:], cmd.CDW15)
	r.tail++
	if r.tail == r.size {
		r.tail = 0
	}
	r.out++
	return cid, true
}

func (r *bareRing) ring() { r.regs.Write32(r.sqDB, uint32(r.tail)) }

func (r *bareRing) reap() (cid uint16, st spec.Status, dw0 uint32, ok bool) {
	off := uintptr(r.head) * spec.CompletionSize
	cid, phase, st := spec.SplitDW3(r.cq.Read32(off + 12))
	if phase != r.phase {
		return 0, 0, 0, false
	}
	dw0 = r.cq.Read32(off)
	r.head++
	if r.head == r.size {
		r.head = 0
		r.phase = !r.phase
	}
	r.out--
	return cid, st, dw0, true
}

func (r *bareRing) release() { r.regs.Write32(r.cqDB, uint32(r.head)) }

// NewBareQueue resets and enables c, creates I/O queue pair 1 of depth
// entries with memory from mem (whose Mapper must be c.Mapper()), and
// returns it. Close gives the memory back and disables the controller.
func NewBareQueue(c *Controller, mem *dma.Allocator, depth int) (q *BareQueue, err error) {
	if depth < 2 || depth > int(c.cfg.MQES)+1 {
		return nil, fmt.Errorf("nvmetest: bare queue depth %d: want 2 to %d", depth, int(c.cfg.MQES)+1)
	}
	q = &BareQueue{c: c, mem: mem, regs: c.Registers()}
	defer func() {
		if err != nil {
			q.free()
		}
	}()
	const adminDepth = 16
	for _, a := range []struct {
		b    **dma.Buffer
		size int
	}{{&q.asq, adminDepth * spec.CommandSize}, {&q.acq, adminDepth * spec.CompletionSize},
		{&q.sqb, depth * spec.CommandSize}, {&q.cqb, depth * spec.CompletionSize}} {
		if *a.b, err = mem.Alloc(a.size); err != nil {
			return nil, fmt.Errorf("nvmetest: bare queue memory: %w", err)
		}
	}
	dstrd := c.cfg.DSTRD
	regs := q.regs
	regs.Write32(spec.RegCC, 0)
	if err := q.waitRDY(false); err != nil {
		return nil, err
	}
	regs.Write32(spec.RegAQA, uint32(spec.MakeAQA(adminDepth-1, adminDepth-1)))
	regs.Write64(spec.RegASQ, uint64(q.asq.IOVA))
	regs.Write64(spec.RegACQ, uint64(q.acq.IOVA))
	q.admin.init(regs, 0, dstrd, q.asq, q.acq, adminDepth)
	regs.Write32(spec.RegCC, uint32(spec.CC(0).WithIOSQES(spec.SQESLog2).WithIOCQES(spec.CQESLog2).WithEN(true)))
	if err := q.waitRDY(true); err != nil {
		return nil, err
	}
	size := uint32(depth-1) << 16
	if err := q.adminCmd(spec.Command{Opcode: uint8(spec.AdminCreateIOCQ), PRP1: uint64(q.cqb.IOVA), CDW10: size | 1, CDW11: spec.CreateQPhysContig}); err != nil {
		return nil, fmt.Errorf("nvmetest: bare queue: create cq: %w", err)
	}
	if err := q.adminCmd(spec.Command{Opcode: uint8(spec.AdminCreateIOSQ), PRP1: uint64(q.sqb.IOVA), CDW10: size | 1, CDW11: 1<<spec.CreateSQCQIDShift | spec.CreateQPhysContig}); err != nil {
		return nil, fmt.Errorf("nvmetest: bare queue: create sq: %w", err)
	}
	q.io.init(regs, 1, dstrd, q.sqb, q.cqb, depth)
	return q, nil
}

func (q *BareQueue) waitRDY(want bool) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		csts := spec.CSTS(q.regs.Read32(spec.RegCSTS))
		if csts.RDY() == want {
			return nil
		}
		if csts.CFS() || time.Now().After(deadline) {
			return fmt.Errorf("nvmetest: bare queue: CSTS %v waiting for RDY=%t", csts, want)
		}
		time.Sleep(10 * time.Microsecond)
	}
}

func (q *BareQueue) adminCmd(cmd spec.Command) error {
	if _, ok := q.admin.submit(&cmd); !ok {
		return errors.New("admin queue full")
	}
	q.admin.ring()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, st, _, ok := q.admin.reap(); ok {
			q.admin.release()
			if !st.Success() {
				return fmt.Errorf("status %v", st)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("admin command timed out")
		}
		time.Sleep(10 * time.Microsecond)
	}
}

// Depth returns the number of entries of each ring.
func (q *BareQueue) Depth() int { return int(q.io.size) }

// Outstanding returns the commands submitted and not yet reaped.
func (q *BareQueue) Outstanding() int { return q.io.out }

// Submit writes cmd into the submission queue with the command ID set to
// its slot, and returns that ID; false when Depth()-1 commands are
// outstanding. The doorbell is written by Ring.
func (q *BareQueue) Submit(cmd *spec.Command) (cid uint16, ok bool) { return q.io.submit(cmd) }

// Ring writes the submission queue tail doorbell.
func (q *BareQueue) Ring() { q.io.ring() }

// Reap returns the next completion, if the device posted one (phase tag
// read with one atomic load of dword 3).
func (q *BareQueue) Reap() (cid uint16, st spec.Status, ok bool) {
	cid, st, _, ok = q.io.reap()
	return cid, st, ok
}

// Release writes the completion queue head doorbell, handing the reaped
// entries back to the device; call it once per batch of Reaps.
func (q *BareQueue) Release() { q.io.release() }

// ReadCommand returns a Read of nlb blocks (at most two pages of data, so
// no PRP list is needed) at slba of namespace nsid into buf, which must
// be a page-aligned DMA buffer of at least that size.
func ReadCommand(nsid uint32, slba uint64, nlb uint16, buf dma.IOVA, n int) spec.Command {
	cmd := spec.Command{Opcode: uint8(spec.IORead), NSID: nsid, PRP1: uint64(buf),
		CDW10: uint32(slba), CDW11: uint32(slba >> 32), CDW12: uint32(nlb - 1)}
	if n > pageSize {
		cmd.PRP2 = uint64(buf) + pageSize
	}
	return cmd
}

// Close deletes the I/O queues, disables the controller and frees the
// queue memory.
func (q *BareQueue) Close() error {
	var errs []error
	if q.io.size != 0 {
		errs = append(errs, q.adminCmd(spec.Command{Opcode: uint8(spec.AdminDeleteIOSQ), CDW10: 1}))
		errs = append(errs, q.adminCmd(spec.Command{Opcode: uint8(spec.AdminDeleteIOCQ), CDW10: 1}))
		q.io.size = 0
	}
	q.regs.Write32(spec.RegCC, 0)
	errs = append(errs, q.waitRDY(false))
	errs = append(errs, q.free())
	return errors.Join(errs...)
}

func (q *BareQueue) free() error {
	var errs []error
	for _, b := range []**dma.Buffer{&q.asq, &q.acq, &q.sqb, &q.cqb} {
		if *b != nil {
			errs = append(errs, q.mem.Free(*b))
			*b = nil
		}
	}
	return errors.Join(errs...)
}
