package nvmetest

import (
	"sync"

	"github.com/seedb8fa28ef/gonvme/internal/mmio"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Doorbell Buffer Config and shadow doorbells (NVMe Base 2.0, 5.8), with
// the EventIdx behaviour of QEMU's controller (hw/nvme/ctrl.c, 7.2), so
// that host tests run the protocol the VM tests run:
//
//   - The command (OACS bit 8; Config.NoDoorbellBuffer turns it off) gives
//     the controller a shadow doorbell buffer (PRP1) and an EventIdx
//     buffer (PRP2), page aligned, laid out like the doorbells relative to
//     1000h. From then on, until the next controller reset (which forgets
//     them), the I/O queues' tails and heads are read from the shadow
//     buffer. The admin queue keeps its registers, as QEMU does for hosts
//     that never write its shadow entries (Linux, SPDK, gonvme).
//   - Before each read of a shadow value the controller stores the value
//     it knew in EventIdx (QEMU's nvme_update_sq_eventidx and
//     nvme_update_cq_eventidx, then nvme_update_sq_tail and _cq_head).
//   - Like a trapping hypervisor, it does not look at a submission queue
//     again once it has caught up with it: it stores an idle mark in the
//     tail register, stores the tail in EventIdx, fences, reads the shadow
//     tail once more, and if nothing came, sleeps until an MMIO write
//     replaces the mark. A completion queue that is full sleeps the same
//     way until its head register is written. A host that skips a doorbell
//     write the EventIdx asked for leaves a command unfetched (or a
//     completion unposted) for good: its test hangs and fails.
//
// Host mistakes: buffers not page aligned fail the command with Invalid
// Field; a value outside its queue (in the shadow buffer or a waking
// register write) is a host error as for the registers; unmapping a buffer
// the controller can reach (configured, or a reset not yet done) is one
// too.

// doorbellIdle is what the fake keeps in the doorbell register of a
// sleeping shadow-doorbell queue: no valid tail or head, so any host
// write shows.
const doorbellIdle = 0x1d1e1d1e

// dbState is the Doorbell Buffer Config as the device goroutine holds it.
type dbState struct {
	on               bool
	dbs, eis         uint64 // IOVAs
	span             int    // bytes of each buffer the fake reads
	shadow, ei       mmio.Region
	sqSleep, cqSleep []bool // by queue ID
}

// dbbufOACS is what Doorbell Buffer Config adds to OACS.
func (d *device) dbbufOACS() uint16 {
	if d.c.cfg.NoDoorbellBuffer {
		return 0
	}
	return spec.OACSDoorbellBuffer
}

// dbbufConfig executes Doorbell Buffer Config.
func (d *device) dbbufConfig(cmd *spec.Command) spec.Status {
	if d.c.cfg.NoDoorbellBuffer {
		return stInvalidOp
	}
	if cmd.PRP1&(pageSize-1) != 0 || cmd.PRP2&(pageSize-1) != 0 || cmd.PRP1 == 0 || cmd.PRP2 == 0 {
		return stInvalidFld
	}
	// Entries for every queue the controller granted, in whole pages.
	n := int(spec.CQHeadDoorbell(uint16(max(d.grantSQ, d.grantCQ)), d.c.cfg.DSTRD)) + 4 - spec.RegDoorbellBase
	span := (n + pageSize - 1) / pageSize * pageSize
	dbs, ok1 := d.c.translate(cmd.PRP1, span)
	eis, ok2 := d.c.translate(cmd.PRP2, span)
	if !ok1 || !ok2 {
		return stXferErr
	}
	db := &d.db
	*db = dbState{on: true, dbs: cmd.PRP1, eis: cmd.PRP2, span: span, shadow: mmio.New(dbs), ei: mmio.New(eis),
		sqSleep: make([]bool, len(d.sqs)), cqSleep: make([]bool, len(d.cqs))}
	// Queues that exist already switch over with the values the
	// registers gave (QEMU writes them into the shadow buffer).
	for _, id := range d.live {
		if id == 0 {
			continue
		}
		q := &d.sqs[id]
		db.shadow.Write32(q.tailR-spec.RegDoorbellBase, q.lastTail)
		db.shadow.Write32(q.cq.headR-spec.RegDoorbellBase, q.cq.head)
	}
	d.c.cnt.dbbufConfigs.Add(1)
	return stOK
}

// dbbufReset forgets the buffers (a controller reset, a shutdown). Their
// memory stays the controller's until CSTS.RDY clears (draining).
func (d *device) dbbufReset() {
	if !d.db.on {
		return
	}
	d.draining = append(d.draining, iovaRange{d.db.dbs, d.db.dbs + uint64(d.db.span)}, iovaRange{d.db.eis, d.db.eis + uint64(d.db.span)})
	d.db = dbState{}
}

// dbbufCheckUnmap is a host error when [iova, end) holds a buffer the
// controller uses; the fake stops using it, so it never touches memory
// the host unmapped.
func (d *device) dbbufCheckUnmap(iova, end uint64) {
	db := &d.db
	if !db.on {
		return
	}
	if iova < db.dbs+uint64(db.span) && db.dbs < end || iova < db.eis+uint64(db.span) && db.eis < end {
		d.hostError("memory at %#x (%d bytes) unmapped while it holds the shadow doorbell or EventIdx buffer the controller uses", iova, end-iova)
		*db = dbState{}
	}
}

// shadowed reports whether queue qid's doorbells are in the shadow buffer.
func (d *device) shadowed(qid uint16) bool { return d.db.on && qid != 0 }

// shadowTail brings q.lastTail up to date from the shadow buffer, unless q
// sleeps and no MMIO write woke it.
func (d *device) shadowTail(q *sqState) {
	db := &d.db
	regs := d.c.regs
	off := q.tailR - spec.RegDoorbellBase
	if !d.wakeDoorbell(&db.sqSleep[q.id], q.tailR, q.size, "submission queue %d tail", q.id) {
		return
	}
	db.ei.Write32(off, q.lastTail)
	mmio.Fence()
	d.takeShadowTail(q, db.shadow.Read32(off))
	if q.head != q.lastTail {
		return
	}
	// Caught up: mark the register, ask for an MMIO write past the tail,
	// and look once more: the host may have stored a tail before it read
	// the EventIdx. Its MMIO write, if it came before the mark, wrote
	// what this read sees.
	regs.Write32(q.tailR, doorbellIdle)
	db.ei.Write32(off, q.lastTail)
	mmio.Fence()
	d.takeShadowTail(q, db.shadow.Read32(off))
	if q.head == q.lastTail {
		db.sqSleep[q.id] = true
	}
}

// wakeDoorbell checks a queue that sleeps until its doorbell register is
// written (*asleep): it reports false while the register still holds
// doorbellIdle, else wakes the queue, reporting a written value outside
// the queue's size as a host error. what names the doorbell ("submission
// queue %d tail"). A queue that does not sleep is awake.
func (d *device) wakeDoorbell(asleep *bool, reg uintptr, size uint32, what string, qid uint16) bool {
	if !*asleep {
		return true
	}
	raw := d.c.regs.Read32(reg)
	if raw == doorbellIdle {
		return false
	}
	*asleep = false
	d.c.cnt.dbWakes.Add(1)
	if raw >= size {
		d.c.cnt.badDB.Add(1)
		d.hostError(what+" doorbell %#x is outside the %d-entry queue", qid, raw, size)
		d.errorEvent(spec.AEVErrorInvalidDoorbellValue)
	}
	return true
}

// takeShadowTail takes a shadow tail value (rawTail keeps the last one
// read, so a bad value is reported once).
func (d *device) takeShadowTail(q *sqState, t uint32) {
	if t == q.rawTail {
		return
	}
	q.rawTail = t
	if d.checkTail(q, t) {
		q.lastTail = t
	}
}

// shadowHead brings q.head up to date from the shadow buffer; a full
// queue sleeps until its head register is written.
func (d *device) shadowHead(q *cqState) {
	db := &d.db
	regs := d.c.regs
	off := q.headR - spec.RegDoorbellBase
	if !d.wakeDoorbell(&db.cqSleep[q.id], q.headR, q.size, "completion queue %d head", q.id) {
		return
	}
	db.ei.Write32(off, q.head)
	mmio.Fence()
	d.takeHead(q, db.shadow.Read32(off))
	if (q.tail+1)%q.size != q.head {
		return
	}
	regs.Write32(q.headR, doorbellIdle)
	db.ei.Write32(off, q.head)
	mmio.Fence()
	d.takeHead(q, db.shadow.Read32(off))
	if (q.tail+1)%q.size == q.head {
		db.cqSleep[q.id] = true
	}
}

// hostTail is the tail the host gave for q: the shadow value or the
// register.
func (d *device) hostTail(q *sqState) uint32 {
	if d.shadowed(q.id) {
		return d.db.shadow.Read32(q.tailR - spec.RegDoorbellBase)
	}
	return d.c.regs.Read32(q.tailR)
}

// Pause stops the device goroutine until resume is called: nothing is
// fetched, executed or completed meanwhile, and doorbells (register or
// shadow) are not looked at. For tests that must act while the controller
// is certainly not looking. Call resume before Close. Any goroutine.
func (c *Controller) Pause() (resume func()) {
	release, paused := make(chan struct{}), make(chan struct{})
	select {
	case c.ctl <- func() {
		close(paused)
		select {
		case <-release:
		case <-c.stop:
		}
	}:
		c.ctlN.Add(1)
	case <-c.stopped:
		return func() {}
	}
	select {
	case <-paused:
	case <-c.stopped:
	}
	var once sync.Once
	return func() { once.Do(func() { close(release) }) }
}
