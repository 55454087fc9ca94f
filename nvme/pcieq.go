package nvme

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/mmio"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// This file is the PCIe side of a queue pair: the submission and
// completion rings in DMA memory, their doorbells in the register window,
// and PRP/SGL data pointers (NVMe Base 2.0, 3.3 "Queue Mechanism"). The
// rest of QueuePair (command IDs, trackers, wait list, deadlines,
// recovery) is transport-independent and lives in queue.go; a queue pair
// on a fabric replaces this part with a QueueTransport (transport.go).
//
// The ring code stays here, in package nvme, as concrete types: the PCIe
// fast path makes no interface call per command or per completion.

// pcieQueue holds the rings of a PCIe queue pair. It is embedded in
// QueuePair (its fields are the owner's); on a fabric queue pair it stays
// zero.
type pcieQueue struct {
	regs       mmio.Region
	sqDB, cqDB uintptr
	sq         []spec.Command
	cq         []spec.Completion
	sqMem      *dma.Buffer
	cqMem      *dma.Buffer
	prpMem     *dma.Buffer

	sqTail   uint16
	lastTail uint16 // tail value last written to the doorbell
	cqHead   uint16
	phase    bool

	db shadowDB // shadow doorbells, when on (dbbuf.go)
}

// allocRings allocates the rings and PRP memory of a PCIe queue pair of
// q.size entries and points each tracker at its PRP list.
func (q *QueuePair) allocRings(c *Controller) (err error) {
	size, id := int(q.size), q.id
	q.regs = c.regs
	q.sqDB, q.cqDB = spec.SQTailDoorbell(id, c.dstrd), spec.CQHeadDoorbell(id, c.dstrd)
	q.phase = true
	if q.sqMem, err = c.mem.Alloc(size * spec.CommandSize); err != nil {
		return fmt.Errorf("queue %d: submission queue memory: %w", id, err)
	}
	if q.cqMem, err = c.mem.Alloc(size * spec.CompletionSize); err != nil {
		return fmt.Errorf("queue %d: completion queue memory: %w", id, err)
	}
	q.sq = castCommands(q.sqMem.Bytes, size)
	q.cq = castCompletions(q.cqMem.Bytes, size)
	q.prpStride = prpStrideFor(q.maxXfer, q.pageSize)
	if q.prpMem, err = c.mem.Alloc(len(q.trk) * q.prpStride); err != nil {
		return fmt.Errorf("queue %d: prp list memory: %w", id, err)
	}
	for i := range q.trk {
		off := i * q.prpStride
		q.trk[i].prp = q.prpMem.Bytes[off : off+q.prpStride : off+q.prpStride]
		q.trk[i].prpIOVA = q.prpMem.IOVAAt(off)
	}
	return nil
}

// castCommands views DMA memory as submission queue entries. This and
// castCompletions are the only casts of DMA memory in package nvme: the
// ring memory comes from dma.Allocator (mmap'd, page aligned, never moved
// by the Go runtime) and holds exactly n entries.
func castCommands(b []byte, n int) []spec.Command {
	if len(b) < n*spec.CommandSize {
		panic("nvme: submission queue memory too small")
	}
	return unsafe.Slice((*spec.Command)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

func castCompletions(b []byte, n int) []spec.Completion {
	if len(b) < n*spec.CompletionSize {
		panic("nvme: completion queue memory too small")
	}
	return unsafe.Slice((*spec.Completion)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

// freeRings releases the DMA memory of the rings.
func (q *QueuePair) freeRings() {
	for _, b := range []**dma.Buffer{&q.sqMem, &q.cqMem, &q.prpMem} {
		if *b != nil {
			q.ctrl.mem.Free(*b)
			*b = nil
		}
	}
	q.sq, q.cq = nil, nil
}

// ringBytes returns the DMA memory the rings hold.
func (q *QueuePair) ringBytes() int {
	n := 0
	for _, b := range []*dma.Buffer{q.sqMem, q.cqMem, q.prpMem} {
		if b != nil {
			n += b.Len()
		}
	}
	return n
}

// abandonRings drops the rings' DMA memory without freeing it: the
// controller could not be stopped and may still use it.
func (q *QueuePair) abandonRings() {
	q.sqMem, q.cqMem, q.prpMem = nil, nil, nil
	q.sq, q.cq = nil, nil
}

// ringDoorbells writes the completion queue head doorbell (cq) and the
// submission queue tail doorbell (if the tail moved), unless the
// controller's epoch moved on. For an I/O queue pair the epoch check and
// the writes form a section a reset waits for (see Controller.quiesce):
// the reset moves the epoch first, then waits until no owner is inside,
// so a doorbell either lands before the controller is disabled or not at
// all. The admin queue needs no section: it is used under adminMu, which
// a reset holds.
func (q *QueuePair) ringDoorbells(cq bool) {
	// The check inlines into the callers, so a pass with nothing to ring
	// (an idle one) makes no call for it.
	if sq := q.sqTail != q.lastTail; sq || cq {
		q.writeDoorbells(sq, cq)
	}
}

// writeDoorbells is ringDoorbells' work: sq, cq say which doorbells moved.
func (q *QueuePair) writeDoorbells(sq, cq bool) {
	if !q.admin {
		q.ringing.Store(1)
		if q.ctrl.epoch.Load() != q.epoch {
			q.ringing.Store(0)
			return
		}
	}
	if q.db.on {
		q.ringShadow(sq, cq) // shadow doorbells (dbbuf.go)
	} else {
		if cq {
			q.regs.Write32(q.cqDB, uint32(q.cqHead))
			q.stats.CQDoorbells++
			q.stats.MMIODoorbells++
		}
		if sq {
			q.regs.Write32(q.sqDB, uint32(q.sqTail))
			q.lastTail = q.sqTail
			q.stats.SQDoorbells++
			q.stats.MMIODoorbells++
		}
	}
	if !q.admin {
		q.ringing.Store(0)
	}
}

// putSQE writes r's command under cid into the submission queue, with its
// data pointer, and advances the tail (the doorbell waits for the next
// Ring or Poll). It returns the entry written.
func (q *QueuePair) putSQE(t *tracker, r *Request, cid uint16) *spec.Command {
	cmd := &q.sq[q.sqTail]
	*cmd = r.Cmd
	cmd.CID = cid
	switch {
	case r.dsmUsed:
		putDSM(t.prp, &r.dsm)
		cmd.PRP1, cmd.PRP2 = uint64(t.prpIOVA), 0
	case len(r.Data) > 0:
		// Submit looked the buffer up; the caller cannot free it while
		// the request is ours (it owns it again only at Done).
		iova := r.iova
		if q.useSGL {
			cmd.Flags = cmd.Flags&^spec.FlagPSDTMask | spec.FlagPSDTSGL
			cmd.SetSGL1(spec.SGLDescriptor{Addr: uint64(iova), Length: uint32(len(r.Data)), Type: spec.MakeSGLType(spec.SGLTypeDataBlock, spec.SGLSubtypeAddress)})
		} else {
			cmd.Flags &^= spec.FlagPSDTMask
			if inPage(iova, len(r.Data), q.pageSize) {
				cmd.PRP1, cmd.PRP2 = uint64(iova), 0
			} else {
				buildPRP(cmd, iova, len(r.Data), q.pageSize, t.prp, t.prpIOVA)
			}
		}
	default:
		// No data buffer: keep the caller's PRP1/PRP2. Create I/O
		// CQ/SQ carry the queue's base address in PRP1 (the builders
		// and AdminPassthru zero them themselves); zeroing them here
		// would point every queue creation at IOVA 0.
	}
	q.sqTail++
	if q.sqTail == q.size {
		q.sqTail = 0
	}
	return cmd
}

// pollRing is Poll on a PCIe queue pair: it rings the doorbell for new
// submissions, reaps the completion queue by phase tag, issues waiting
// requests into the freed command IDs and rings the CQ head doorbell once
// for the batch.
func (q *QueuePair) pollRing() int {
	q.ringDoorbells(false) // Ring's work (Poll checked q.term)
	n := 0
	for n < maxReap {
		c := &q.cq[q.cqHead]
		// One 32-bit atomic load of dword 3: CID, phase and status
		// arrive together, and nothing below is read before it.
		dw3 := atomic.LoadUint32((*uint32)(unsafe.Pointer(&c.CID)))
		cid, phase, st := spec.SplitDW3(dw3)
		if phase != q.phase {
			break
		}
		dw0, sqHead := c.DW0, c.SQHead
		q.cqHead++
		if q.cqHead == q.size {
			q.cqHead = 0
			q.phase = !q.phase
		}
		n++
		q.complete(cid, st, dw0, sqHead)
		if q.term != nil || q.freed { // a Done callback closed us
			return n
		}
	}
	if n == 0 {
		q.stats.IdlePolls++
	}
	for q.waitHead != nil && q.freeN > 0 && !q.stale() {
		q.issue(q.popWait())
	}
	q.ringDoorbells(n > 0)
	return n
}

// reapRingStale completes what the controller posted to the completion
// queue before it stopped, without writing the head doorbell (see
// reapStale).
func (q *QueuePair) reapRingStale() {
	for n := 0; n < int(q.size); n++ {
		c := &q.cq[q.cqHead]
		dw3 := atomic.LoadUint32((*uint32)(unsafe.Pointer(&c.CID)))
		cid, phase, st := spec.SplitDW3(dw3)
		if phase != q.phase {
			break
		}
		dw0, sqHead := c.DW0, c.SQHead
		q.cqHead++
		if q.cqHead == q.size {
			q.cqHead = 0
			q.phase = !q.phase
		}
		q.stats.Reaped++
		q.complete(cid, st, dw0, sqHead)
		if q.freed { // a Done callback closed the queue pair
			return
		}
	}
}

// resetRings empties both rings. The controller must not be using them.
func (q *QueuePair) resetRings() {
	clear(q.cq)
	q.sqTail, q.lastTail, q.cqHead = 0, 0, 0
	q.phase = true
}

// createRings creates q's completion and submission queues on the
// controller with Create I/O CQ and SQ (interrupts off: the queues are
// polled). adminMu held.
func (c *Controller) createRings(q *QueuePair) error {
	size := uint32(q.size - 1)
	c.attachShadow(q) // dbbuf.go
	// Create I/O CQ: CDW10 QSIZE|QID, CDW11 PC=1, and IEN|IV<<16 for a
	// queue pair with an interrupt vector (irq.go).
	cq := spec.Command{Opcode: uint8(spec.AdminCreateIOCQ), PRP1: uint64(q.cqMem.IOVA), CDW10: size<<16 | uint32(q.id), CDW11: spec.CreateQPhysContig | q.irq.cdw11()}
	if _, err := c.adminExec(cq, nil, nil, c.opts.AdminTimeout, true); err != nil {
		return fmt.Errorf("create io cq %d: %w", q.id, err)
	}
	// Create I/O SQ: CDW11 CQID<<16 | QPRIO 0 | PC=1.
	sq := spec.Command{Opcode: uint8(spec.AdminCreateIOSQ), PRP1: uint64(q.sqMem.IOVA), CDW10: size<<16 | uint32(q.id), CDW11: uint32(q.id)<<16 | 1}
	if _, err := c.adminExec(sq, nil, nil, c.opts.AdminTimeout, true); err != nil {
		_, _ = c.adminSimpleLocked(spec.AdminDeleteIOCQ, 0, uint32(q.id), 0)
		return fmt.Errorf("create io sq %d: %w", q.id, err)
	}
	return nil
}

// deleteRings deletes q's queues on the controller (SQ first). adminMu
// held.
func (c *Controller) deleteRings(q *QueuePair) error {
	if _, err := c.adminSimpleLocked(spec.AdminDeleteIOSQ, 0, uint32(q.id), 0); err != nil {
		return fmt.Errorf("delete io sq %d: %w", q.id, err)
	}
	if _, err := c.adminSimpleLocked(spec.AdminDeleteIOCQ, 0, uint32(q.id), 0); err != nil {
		return fmt.Errorf("delete io cq %d: %w", q.id, err)
	}
	return nil
}

// configureAdminRings points the controller at the admin queue's rings
// (AQA, ASQ, ACQ). The controller is disabled.
func (c *Controller) configureAdminRings() {
	n := uint16(c.opts.AdminQueueDepth - 1)
	c.regs.Write32(spec.RegAQA, uint32(spec.MakeAQA(n, n)))
	c.regs.Write64(spec.RegASQ, uint64(c.admin.sqMem.IOVA))
	c.regs.Write64(spec.RegACQ, uint64(c.admin.cqMem.IOVA))
}
