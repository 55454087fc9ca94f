package nvme

import (
	"errors"
	"fmt"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/mmio"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Shadow doorbells (NVMe Base 2.0, 5.8 Doorbell Buffer Config, and the
// Shadow Doorbell / EventIdx protocol it configures).
//
// An emulated controller traps every MMIO doorbell write into its
// hypervisor. Doorbell Buffer Config (admin opcode 7Ch, offered when OACS
// bit 8 is set) gives the controller two buffers in host memory laid out
// like the doorbell registers, relative to 1000h: entry 2y*(4<<DSTRD) for
// submission queue y's tail, (2y+1)*(4<<DSTRD) for completion queue y's
// head.
//
//	host memory                          controller
//	  shadow doorbells: the host writes    reads them while it works
//	  EventIdx:          the host reads     writes there the value after
//	                                        which it wants an MMIO write
//
// For each new tail (or head) of an I/O queue the host stores it in the
// shadow buffer, then (a full fence, mmio.Fence: the store must be
// visible before the load) reads the queue's EventIdx, and writes the
// MMIO doorbell only when the move from the old value to the new one
// passed it: needEvent, the rule of Linux's nvme_dbbuf_need_event. The
// controller does the mirror image (store EventIdx, fence, read the
// shadow value) before it stops looking, so one side always sees the
// other's latest value and no doorbell is lost.
//
// What it saves depends on the controller's EventIdx policy. QEMU's (7.2.1
// and later, hw/nvme/ctrl.c; 7.2.0 never wrote a CQ's) stores as EventIdx
// the value it has just read: in
// nvme_process_sq, after each command, the SQ tail it knows (then reads the
// shadow tail again); in nvme_post_cqes, before each entry it posts, the CQ
// head it knows (then reads the shadow head). A host that moves a doorbell
// from a value the controller has seen therefore always passes EventIdx
// and writes the register; only a move made while QEMU is still working
// through the queue is saved. At QD32, where every pass reaps the whole
// batch and resubmits it after the controller went idle, that is about
// none (gonvme: 2 to 15 of 10,000 to 30,000 updates in nvmectl perf; the
// bare loop of hack/qemu/guestbare: 0 to 25%), while QEMU does two more
// DMAs per command and two per completion entry through the emulated
// IOMMU. Measured in TCG guests (QD32 randread, same boot): shadow
// doorbells were slower than MMIO doorbells for the bare loop in 6 of 6
// pairs and for nvmectl perf in 7 of 9; and the SQ tail register write
// itself, timed around the store, took 170 to 220 µs on average with them
// on against 10 to 120 µs with them off, in both programs: the vCPU waits
// for QEMU's main loop (issue 16).
//
// The admin queue keeps plain MMIO doorbells (so does Linux): it is not
// on the I/O path. The buffers are sent after the admin queue is up and
// again after every reset, before the I/O queues are created again (a
// reset makes the controller forget them), and are zeroed first: stale
// EventIdx values would make the host skip the doorbells of the new
// queues. A queue's entries are zeroed again before it is created, since
// a queue ID can be reused. Options.NoShadowDoorbells turns it off.

// dbbuf is a controller's shadow doorbell and EventIdx buffers. Its
// fields change during bring-up and reset, under adminMu; queue pairs
// copy what they need in createQueues (also under adminMu).
type dbbuf struct {
	mem      *dma.Buffer // shadow doorbells, then EventIdx, span bytes each
	span     int
	shadow   mmio.Region // the host's values
	eventIdx mmio.Region // the controller's
	on       bool        // the controller took the buffers in this epoch
}

// shadowDB is a queue pair's side of the shadow doorbells: where its two
// entries are and the head it last gave the controller (lastTail is the
// queue pair's own). Owner goroutine.
type shadowDB struct {
	on           bool
	shadow, ei   mmio.Region
	sqOff, cqOff uintptr
	lastHead     uint16
}

// needEvent reports whether a doorbell that moved from old to new must
// also be written to the register: whether the controller's EventIdx ei
// lies in [old, new), in 16-bit arithmetic (Linux's
// nvme_dbbuf_need_event). Queue values wrap at the queue size, not at
// 2^16; the rule holds for both as long as the queue has at most 2^15
// entries (the driver's have at most 4096).
func needEvent(ei, new, old uint16) bool { return new-ei-1 < new-old }

// configureShadowDoorbells is the bring-up and reset step that sends
// Doorbell Buffer Config when the controller offers it and the options
// allow it (PCIe only: a fabric has no doorbells). A controller that
// refuses it (a status) runs with MMIO doorbells; other errors (a
// timeout, removal) fail the step.
func (c *Controller) configureShadowDoorbells() error {
	c.db.on = false
	c.shadowOn.Store(false)
	if c.opts.NoShadowDoorbells || c.fab != nil || c.ident == nil || c.ident.OACS&spec.OACSDoorbellBuffer == 0 {
		return nil
	}
	// Entries for the admin queue and every granted I/O queue, in whole
	// pages (Linux sizes them the same way). A reset may grant more queues
	// than the buffers have room for: the controller forgot the old ones,
	// so they can go.
	n := int(spec.CQHeadDoorbell(uint16(c.ioQueues), c.dstrd)) + 4 - spec.RegDoorbellBase
	span := (n + c.pageSize - 1) / c.pageSize * c.pageSize
	if c.db.mem != nil && c.db.span < span {
		c.freeShadow(false)
	}
	if c.db.mem == nil {
		b, err := c.mem.Alloc(2 * span)
		if err != nil {
			return fmt.Errorf("shadow doorbell buffers: %w", err)
		}
		c.db.mem, c.db.span = b, span
		c.db.shadow = mmio.New(b.Bytes[:span])
		c.db.eventIdx = mmio.New(b.Bytes[span:])
	}
	// The controller has no I/O queue now and has not been given the
	// buffers in this epoch: nothing reads or writes them.
	c.db.mem.Zero()
	cmd := spec.Command{Opcode: uint8(spec.AdminDoorbellBufferConfig), PRP1: uint64(c.db.mem.IOVA), PRP2: uint64(c.db.mem.IOVAAt(c.db.span))}
	if _, err := c.adminExec(cmd, nil, nil, c.opts.AdminTimeout, true); err != nil {
		var se *StatusError
		if errors.As(err, &se) {
			c.logf("nvme: Doorbell Buffer Config: %v: using MMIO doorbells", err)
			return nil
		}
		return fmt.Errorf("doorbell buffer config: %w", err)
	}
	c.db.on = true
	c.shadowOn.Store(true)
	return nil
}

// attachShadow sets q up for the controller's current doorbell mode and
// zeroes its entries. Called by createQueues, adminMu held, before the
// queues are created: the controller does not look at a queue's entries
// before it exists.
func (c *Controller) attachShadow(q *QueuePair) {
	q.db = shadowDB{}
	if !c.db.on || q.admin {
		return
	}
	sq := spec.SQTailDoorbell(q.id, c.dstrd) - spec.RegDoorbellBase
	cq := spec.CQHeadDoorbell(q.id, c.dstrd) - spec.RegDoorbellBase
	if int(cq)+4 > c.db.span {
		return // beyond the granted queues, for which the buffers are sized: cannot happen
	}
	q.db = shadowDB{on: true, shadow: c.db.shadow, ei: c.db.eventIdx, sqOff: sq, cqOff: cq}
	for _, off := range []uintptr{sq, cq} {
		c.db.shadow.Write32(off, 0)
		c.db.eventIdx.Write32(off, 0)
	}
}

// freeShadow frees the buffers (the controller is stopped), or with
// leak, forgets them (it could not be stopped and may still use them).
func (c *Controller) freeShadow(leak bool) int {
	n := 0
	if c.db.mem != nil {
		n = c.db.mem.Len()
		if !leak {
			c.mem.Free(c.db.mem)
		}
	}
	c.db = dbbuf{}
	return n
}

// ShadowDoorbells reports whether the I/O queue pairs created from now on
// use shadow doorbells: the controller offers Doorbell Buffer Config, the
// options allow it, and the controller took the buffers at bring-up (or
// at the last reset). Any goroutine.
func (c *Controller) ShadowDoorbells() bool { return c.shadowOn.Load() }

// ringShadow is ringDoorbells for a queue pair with shadow doorbells:
// store the new values in the shadow buffer, fence, read EventIdx, and
// write each register only if the controller asked for it. Owner
// goroutine, inside the doorbell section.
func (q *QueuePair) ringShadow(sq, cq bool) {
	d := &q.db
	if cq {
		d.shadow.Write32(d.cqOff, uint32(q.cqHead))
	}
	if sq {
		d.shadow.Write32(d.sqOff, uint32(q.sqTail))
	}
	mmio.Fence() // the stores above before the EventIdx loads below
	if cq {
		if needEvent(uint16(d.ei.Read32(d.cqOff)), q.cqHead, d.lastHead) {
			q.regs.Write32(q.cqDB, uint32(q.cqHead))
			q.stats.MMIODoorbells++
		} else {
			q.stats.SavedDoorbells++
		}
		d.lastHead = q.cqHead
		q.stats.CQDoorbells++
	}
	if sq {
		if needEvent(uint16(d.ei.Read32(d.sqOff)), q.sqTail, q.lastTail) {
			q.regs.Write32(q.sqDB, uint32(q.sqTail))
			q.stats.MMIODoorbells++
		} else {
			q.stats.SavedDoorbells++
		}
		q.lastTail = q.sqTail
		q.stats.SQDoorbells++
	}
}
