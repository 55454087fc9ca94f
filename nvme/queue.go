package nvme

import (
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// QueueStats are the counters of one queue pair. They belong to the queue
// pair's owner goroutine (the fields are plain integers, updated without
// atomics); read them there with QueuePair.Stats, or publish copies.
type QueueStats struct {
	Polls       uint64 // calls to Poll
	IdlePolls   uint64 // calls to Poll that reaped nothing
	Submitted   uint64 // commands written to the submission queue
	Completed   uint64 // requests completed with a device status
	Errors      uint64 // completions with a status other than success
	SQDoorbells uint64 // submission queue tail doorbell updates (register or shadow doorbell)
	CQDoorbells uint64 // completion queue head doorbell updates (register or shadow doorbell)
	Waits       uint64 // requests parked because every command ID was taken
	BogusCIDs   uint64 // completions naming no outstanding command (ignored)
	BadSQHeads  uint64 // completions with an SQ head pointer outside the queue (ignored)
	Timeouts    uint64 // commands past their deadline (aborted)
	Requeued    uint64 // commands resubmitted after a controller reset
	Reaped      uint64 // completions posted before a reset (or a failure), reaped in recovery
	Failed      uint64 // requests failed without a device status (timeout, removal, close)

	// Of the doorbell updates: MMIODoorbells were written to the
	// register, SavedDoorbells only to the shadow doorbell buffer because
	// the controller's EventIdx did not ask for the register (dbbuf.go).
	// Their sum is SQDoorbells+CQDoorbells; without shadow doorbells
	// SavedDoorbells stays 0.
	MMIODoorbells  uint64
	SavedDoorbells uint64
}

// A tracker is the driver's side of one command ID: the request it carries
// and that command's PRP list memory.
type tracker struct {
	req      *Request
	gen      uint16 // bumped at each use; the high bits of the CID
	deadline int64  // monotonic ns; 0 until the timeout scan first sees it
	aborting bool   // an Abort was requested for it
	timedOut bool   // the abort did not help: fail with ErrTimeout at reset
	prp      []byte // PRP list (or DSM range) scratch: DMA memory on PCIe, heap on a fabric
	prpIOVA  dma.IOVA
}

// QueuePair is a submission queue and its completion queue.
//
// A queue pair belongs to one goroutine at a time, its owner: Submit,
// Poll, Ring, Exec, Stats and Close may be called only by the owner, and
// they take no lock. Ownership may be handed to another goroutine with a
// synchronizing operation in between (a channel send, a mutex), never
// shared. Completion callbacks (Request.Done) run on the owner goroutine,
// inside Poll.
//
// Memory per queue pair: on PCIe, Depth*64 bytes of submission queue,
// Depth*16 of completion queue, and (Depth-1)*PRPStride bytes of PRP
// lists, all DMA memory; on a fabric, what its transport holds (no DMA
// memory); see Controller.QueueMemory.
//
// The queue's transport: on PCIe the rings in DMA memory and their
// doorbells (pcieq.go, embedded here, no interface call on the I/O path);
// on a fabric a QueueTransport (one connection), called once per Issue,
// once per flush and once per Poll to reap.
type QueuePair struct {
	ctrl   *Controller
	id     uint16
	size   uint16 // entries in each ring
	admin  bool
	fabric bool // the controller is on a fabric: xq, not the rings
	freed  bool // Close (or the controller's Close) released it

	pcieQueue

	xq     QueueTransport         // the fabric queue; nil on PCIe
	xerr   error                  // the fabric queue failed: wait for the reconnect
	xdirty bool                   // commands issued since the last flush
	xcmd   spec.Command           // the command being issued on a fabric
	cqeFn  func(*spec.Completion) // q.completeCQE, made once

	slotBits uint8
	genMask  uint16
	trk      []tracker
	free     []uint16 // FIFO of free tracker slots
	freeHead int
	freeN    int
	inflight int

	waitHead, waitTail *Request
	nwait              int

	pageSize  int
	prpStride int
	maxXfer   int
	useSGL    bool
	timeout   int64 // ns
	abortWait int64 // ns
	lastScan  int64

	epoch      uint64 // controller epoch this queue was last in step with
	term       error  // set once the queue pair can take no more work
	recovering bool   // inside recover or reapStale: Submit parks requests
	stats      QueueStats
	irq        queueIRQ // interrupt vector (irq.go)

	// ringing is 1 while the owner is between checking the epoch and
	// writing a doorbell; a reset waits for it to be 0 after moving the
	// epoch on, so no doorbell reaches a queue the reset deletes.
	ringing atomic.Uint32
}

// clock is the monotonic time base of command deadlines.
var clockBase = time.Now()

func monotonic() int64 { return int64(time.Since(clockBase)) }

// prpStrideFor returns the bytes of PRP list memory one command needs to
// describe maxXfer bytes in pages of pageSize, laid out so that a list that
// fits in a page never crosses one.
func prpStrideFor(maxXfer, pageSize int) int {
	entries := maxXfer/pageSize + 1 // a buffer that starts inside a page touches one more
	if entries*8 <= pageSize {
		s := 64 // room for a DSM range at least
		for s < entries*8 {
			s <<= 1
		}
		return s
	}
	per := pageSize/8 - 1 // entries per chained page; the last slot points on
	pages := (entries - 1 + per - 1) / per
	return pages * pageSize
}

// newQueuePair allocates a queue pair of size entries: its trackers and,
// on PCIe, its rings and PRP memory. It does not create the queues on the
// device (nor, on a fabric, connect them).
func newQueuePair(c *Controller, id uint16, size int, admin bool) (q *QueuePair, err error) {
	q = &QueuePair{
		ctrl: c, id: id, size: uint16(size), admin: admin,
		pageSize:  c.pageSize,
		maxXfer:   c.maxXfer,
		useSGL:    c.useSGL && !admin,
		timeout:   int64(c.opts.CommandTimeout),
		abortWait: int64(c.opts.AbortTimeout),
		irq:       queueIRQ{vector: -1, fd: -1},
	}
	if admin {
		q.timeout = int64(c.opts.AdminTimeout)
		q.maxXfer = adminMaxXfer // adminExec applies MDTS
	}
	nslots := size - 1
	q.slotBits = uint8(bits.Len(uint(nslots - 1)))
	q.genMask = uint16(1<<(16-q.slotBits) - 1)
	q.trk = make([]tracker, nslots)
	q.free = make([]uint16, nslots)
	for i := range q.free {
		q.free[i] = uint16(i)
	}
	q.freeN = nslots
	q.epoch = c.epoch.Load()
	if c.fab != nil {
		q.initFabric()
		return q, nil
	}
	if err := q.allocRings(c); err != nil {
		q.free_()
		return nil, err
	}
	return q, nil
}

// free_ releases what q holds: the rings' DMA memory, or the fabric
// connection.
func (q *QueuePair) free_() {
	q.freed = true
	q.freeRings()
	q.dropTransport()
}

// memBytes returns the DMA memory q holds.
func (q *QueuePair) memBytes() int { return q.ringBytes() }

// abandon drops q's DMA memory without freeing it: the controller could
// not be stopped and may still use it (Controller.release).
func (q *QueuePair) abandon() {
	q.freed = true
	q.abandonRings()
	q.dropTransport()
}

// ID returns the queue identifier (0 for the admin queue).
func (q *QueuePair) ID() uint16 { return q.id }

// Depth returns the number of entries in each ring; at most Depth-1
// commands are outstanding at once.
func (q *QueuePair) Depth() int { return int(q.size) }

// MaxTransfer returns the largest data transfer, in bytes, one command on
// this queue pair may carry.
func (q *QueuePair) MaxTransfer() int { return q.maxXfer }

// InFlight returns how many commands are outstanding on the device. Owner
// goroutine only.
func (q *QueuePair) InFlight() int { return q.inflight }

// Waiting returns how many requests wait for a free command ID. Owner
// goroutine only.
func (q *QueuePair) Waiting() int { return q.nwait }

// Stats returns a copy of the counters. Owner goroutine only.
func (q *QueuePair) Stats() QueueStats {
	s := q.stats
	return s
}

// Submit hands r to the queue pair. It checks the data buffer (DMA memory,
// dword aligned, at most MaxTransfer bytes; on a fabric only the length)
// and writes the command to the submission queue (on a fabric, queues its
// capsule), or parks it on the wait list when every command ID is taken
// or a fabric queue is reconnecting; nothing is dropped. The doorbell is
// rung (the capsules sent) by the next Ring or Poll, so a batch of
// submissions costs one doorbell write (one writev).
//
// An error means the request was not accepted and Done will not be called
// for it: ErrBusy, an error wrapping ErrInvalid or ErrNotDMA, or the
// reason the queue pair takes no more work (ErrRemoved, ErrClosed,
// ErrFailed). Otherwise Done is called exactly once, later, from Poll.
//
// Owner goroutine only.
func (q *QueuePair) Submit(r *Request) error {
	if r.state != reqIdle {
		return ErrBusy
	}
	if r.Done == nil {
		return invalidf("request has no Done callback")
	}
	if q.stale() {
		q.sync()
	}
	if q.term != nil {
		return q.term
	}
	if len(r.Data) > 0 && !r.dsmUsed {
		if len(r.Data) > q.maxXfer {
			return invalidf("data length %d exceeds the maximum transfer of %d bytes", len(r.Data), q.maxXfer)
		}
		// A fabric moves the bytes itself: any memory will do.
		if !q.fabric {
			mem := q.ctrl.mem
			l := lookup{mem, uintptr(unsafe.Pointer(unsafe.SliceData(r.Data))), len(r.Data), mem.Generation()}
			if l != r.looked {
				iova, err := mem.Lookup(r.Data)
				if err != nil {
					return fmt.Errorf("queue %d: data buffer: %w", q.id, err)
				}
				if iova&3 != 0 {
					return invalidf("data buffer at iova %#x is not dword aligned", uint64(iova))
				}
				r.iova, r.looked = iova, l
			}
		}
	}
	r.admin = q.admin
	r.next = nil
	r.deadline = 0
	r.Err, r.DW0, r.Status = nil, 0, 0
	if q.freeN == 0 || q.waitHead != nil || q.recovering || q.stale() || q.xerr != nil {
		if q.freeN == 0 {
			q.stats.Waits++
		}
		r.state = reqWaiting
		q.pushWait(r)
		return nil
	}
	q.issue(r)
	return nil
}

// stale reports whether the controller's epoch moved on since this I/O
// queue pair was last in step with it (a reset started or finished, the
// controller failed, was removed or closed): the queues on the device are
// gone or about to be, so nothing may be issued to them.
func (q *QueuePair) stale() bool {
	return !q.admin && q.epoch != q.ctrl.epoch.Load()
}

func (q *QueuePair) pushWait(r *Request) {
	if q.waitTail == nil {
		q.waitHead = r
	} else {
		q.waitTail.next = r
	}
	q.waitTail = r
	q.nwait++
}

func (q *QueuePair) popWait() *Request {
	r := q.waitHead
	q.waitHead = r.next
	if q.waitHead == nil {
		q.waitTail = nil
	}
	r.next = nil
	q.nwait--
	return r
}

// issue writes r to the submission queue under a free command ID.
func (q *QueuePair) issue(r *Request) {
	slot := q.free[q.freeHead]
	q.freeHead++
	if q.freeHead == len(q.free) {
		q.freeHead = 0
	}
	q.freeN--
	t := &q.trk[slot]
	t.gen = (t.gen + 1) & q.genMask
	cid := t.gen<<q.slotBits | slot
	if cid == 0xffff {
		// Reserved: the Error Information log names "no command" with it
		// (NVMe Base 2.0, 5.16.1.2). Only the last slot of a queue whose
		// slot count is a power of two (or of a depth-2 queue) gets here.
		t.gen = 0
		cid = slot
	}
	t.req, t.deadline, t.aborting, t.timedOut = r, r.deadline, false, false
	var cmd *spec.Command
	if q.fabric {
		cmd = q.issueFabric(t, slot, cid, r)
	} else {
		cmd = q.putSQE(t, r, cid)
	}
	q.traceSubmit(cmd, len(r.Data)) // uprobe attach point (trace.go)
	r.state = reqInFlight
	q.inflight++
	q.stats.Submitted++
}

// Ring writes the submission queue tail doorbell if commands were added
// since the last write. Owner goroutine only.
func (q *QueuePair) Ring() {
	if q.term != nil {
		return
	}
	if q.fabric {
		q.flushFabric()
		return
	}
	q.ringDoorbells(false)
}

// maxReap bounds the completions one Poll processes, so that a busy queue
// pair cannot starve the others of its poller.
const maxReap = 128

// Poll rings the doorbell for new submissions, reaps up to a batch of
// completions (calling each request's Done), moves waiting requests into
// the freed command IDs, and returns the number of completions reaped.
// Every few calls it checks command deadlines. Owner goroutine only.
func (q *QueuePair) Poll() int {
	q.stats.Polls++
	if q.stale() {
		q.sync()
	}
	if q.term != nil || q.freed {
		return 0
	}
	var n int
	if !q.fabric {
		n = q.pollRing()
	} else {
		n = q.pollFabric()
	}
	if q.term != nil || q.freed {
		return n
	}
	// The admin queue has no per-command deadlines here: synchronous
	// admin commands bound their own wait, and Asynchronous Event
	// Requests are meant to stay outstanding indefinitely.
	if q.inflight > 0 && !q.admin && q.stats.Polls&63 == 0 {
		q.checkDeadlines(monotonic())
	}
	return n
}

// complete handles one completion entry. The device is not trusted: a
// command ID that names no outstanding command (out of range, free, or of
// an earlier use of the slot) is counted and ignored.
func (q *QueuePair) complete(cid uint16, st spec.Status, dw0 uint32, sqHead uint16) {
	slot := cid & (1<<q.slotBits - 1)
	gen := cid >> q.slotBits
	if int(slot) >= len(q.trk) || q.trk[slot].req == nil || q.trk[slot].gen != gen {
		q.stats.BogusCIDs++
		return
	}
	// The SQ cannot overflow (at most size-1 command IDs exist), so the
	// head the controller reports is only checked, not used.
	if sqHead >= q.size {
		q.stats.BadSQHeads++
	}
	t := &q.trk[slot]
	r := t.req
	aborted := t.aborting
	q.release(slot)
	r.DW0, r.Status = dw0, st
	q.traceComplete(cid, st) // uprobe attach point (trace.go)
	q.stats.Completed++
	if !st.Success() {
		q.stats.Errors++
		r.serr.set(st, spec.Opcode(r.Cmd.Opcode), q.admin, cid)
		r.Err = &r.serr
	}
	if aborted && st.SCT() == spec.SCTGeneric && st.SC() == spec.SCAbortRequested {
		// The abort the driver asked for took it: a timeout. Any other
		// completion is what the device says, success included.
		r.Err = q.timeoutError(cid, r.Err)
	}
	r.state = reqIdle
	r.Done(r)
}

// release frees the tracker in slot.
func (q *QueuePair) release(slot uint16) {
	q.trk[slot].req = nil
	i := q.freeHead + q.freeN
	if i >= len(q.free) {
		i -= len(q.free)
	}
	q.free[i] = slot
	q.freeN++
	q.inflight--
}

func (q *QueuePair) timeoutError(cid uint16, status error) error {
	if status != nil {
		if se, ok := status.(*StatusError); ok {
			// status is r.serr, storage the request's owner reuses (a
			// ddi piece's header goes back to its pool before the
			// original is delivered): wrap a copy. An error path, so
			// the allocation is fine.
			cp := *se
			status = &cp
		}
		return fmt.Errorf("%w: queue %d cid %d: aborted after %v: %w", ErrTimeout, q.id, cid, time.Duration(q.timeout), status)
	}
	return fmt.Errorf("%w: queue %d cid %d: no completion within %v", ErrTimeout, q.id, cid, time.Duration(q.timeout))
}

// checkDeadlines starts the clock on new commands and acts on late ones:
// first an Abort, then, if the command is still outstanding after the
// abort wait, a controller reset.
func (q *QueuePair) checkDeadlines(now int64) {
	if now-q.lastScan < int64(time.Millisecond) {
		return
	}
	q.lastScan = now
	for i := range q.trk {
		t := &q.trk[i]
		if t.req == nil {
			continue
		}
		switch {
		case t.deadline == 0:
			t.deadline = now + q.timeout
		case now < t.deadline:
		case !t.aborting:
			t.aborting = true
			t.deadline = now + q.abortWait
			q.stats.Timeouts++
			cid := t.gen<<q.slotBits | uint16(i)
			if q.admin {
				// Admin commands are not aborted on their own
				// queue: a late one resets the controller.
				t.timedOut = true
				q.ctrl.requestReset(epochGen(q.epoch), fmt.Sprintf("admin command %s (cid %d) timed out", spec.AdminOpcodeName(spec.Opcode(t.req.Cmd.Opcode)), cid))
				continue
			}
			q.ctrl.requestAbort(q.id, cid, epochGen(q.epoch))
		case !t.timedOut:
			t.timedOut = true
			cid := t.gen<<q.slotBits | uint16(i)
			q.ctrl.requestReset(epochGen(q.epoch), fmt.Sprintf("queue %d cid %d: no completion after abort (AbortTimeout %v)", q.id, cid, time.Duration(q.abortWait)))
		}
	}
}

// failAll completes every outstanding and waiting request with err,
// without a device status.
func (q *QueuePair) failAll(err error) {
	for i := range q.trk {
		if t := &q.trk[i]; t.req != nil {
			r := t.req
			q.release(uint16(i))
			q.fail(r, err)
		}
	}
	for q.waitHead != nil {
		q.fail(q.popWait(), err)
	}
}

func (q *QueuePair) fail(r *Request, err error) {
	r.Err, r.Status = err, 0
	r.state = reqIdle
	q.stats.Failed++
	r.Done(r)
}

// sync brings the queue pair in step with a controller whose epoch changed:
// after a reset it recreates the queues on the device and resubmits what
// was in flight (commands that timed out fail with ErrTimeout instead);
// when the controller is gone, failed or closed, it fails everything.
func (q *QueuePair) sync() {
	if q.recovering {
		return // a Done callback run by recover submits: it waits
	}
	e := q.ctrl.epoch.Load()
	if q.term != nil {
		q.epoch = e // nothing left to bring in step
		return
	}
	switch epochState(e) {
	case StateResetting, StateInit:
		return // wait: touch nothing until the controller is back
	case StateReady:
		if q.fabric && q.ctrl.resetPending() {
			return // a reconnect is asked for: connect after it
		}
		q.recover(e) // in step when it returns, or still stale if another reset came
	case StateRemoved:
		q.reapStale()
		q.terminate(fmt.Errorf("queue %d: %w", q.id, ErrRemoved))
		q.epoch = e
	case StateFailed:
		q.reapStale()
		q.terminate(fmt.Errorf("queue %d: %w", q.id, ErrFailed))
		q.epoch = e
	case StateClosed:
		q.terminate(fmt.Errorf("queue %d: %w", q.id, ErrClosed))
		q.epoch = e
	}
}

// reapStale completes the requests whose completions the controller
// posted before it stopped (a reset disabled it, it failed or it was
// removed), as Poll would but without writing the head doorbell: the
// queue no longer exists on the device. What the controller completed
// ran; resubmitting it would run it twice (Linux does the same in
// nvme_reap_pending_cqes). The completion queue holds at most size-1
// entries, so this ends.
func (q *QueuePair) reapStale() {
	if q.freed {
		return
	}
	q.recovering = true
	defer func() { q.recovering = false }()
	if q.fabric {
		q.reapFabricStale()
		return
	}
	q.reapRingStale()
}

func (q *QueuePair) terminate(err error) {
	if q.term == nil {
		q.term = err
	}
	q.failAll(q.term)
}

// recover runs on the owner after a controller reset: it reaps what the
// controller completed, then, since the controller lost the queues, the
// rings start over, the queues are created again and what had no
// completion is resubmitted (or failed with ErrTimeout if it was late).
func (q *QueuePair) recover(e uint64) {
	// First what the controller completed before the reset disabled it:
	// those commands ran and must not run again.
	q.reapStale()
	if q.freed || q.term != nil {
		return
	}
	q.recovering = true
	defer func() { q.recovering = false }()
	var resubmit, timedOut []*Request
	for i := range q.trk {
		t := &q.trk[i]
		if t.req == nil {
			continue
		}
		r := t.req
		if t.timedOut || t.aborting {
			timedOut = append(timedOut, r)
		} else {
			r.deadline = t.deadline // its clock keeps running
			resubmit = append(resubmit, r)
		}
		q.release(uint16(i))
	}
	// Late commands are settled now, before the queues come back.
	for _, r := range timedOut {
		q.fail(r, fmt.Errorf("%w: queue %d: command did not complete; controller reset", ErrTimeout, q.id))
	}
	// Resubmit in front of whatever was already waiting.
	for i := len(resubmit) - 1; i >= 0; i-- {
		r := resubmit[i]
		r.state = reqWaiting
		r.next = q.waitHead
		q.waitHead = r
		if q.waitTail == nil {
			q.waitTail = r
		}
		q.nwait++
		q.stats.Requeued++
	}
	q.resetRings()
	if err := q.ctrl.createQueues(q); err != nil {
		if q.ctrl.fab != nil {
			// A fabric queue that cannot reconnect asks for another
			// reconnect of the controller; its requests wait, until
			// the controller is given up (ErrRemoved).
			q.ctrl.requestReset(epochGen(e), fmt.Sprintf("queue %d: reconnect: %v", q.id, err))
			return
		}
		if q.ctrl.epoch.Load() != e {
			// Another reset (or a failure, a removal) came while the
			// queues were being created: the next sync starts over;
			// the requests wait.
			return
		}
		q.terminate(fmt.Errorf("queue %d: recreate after reset: %w", q.id, err))
		q.epoch = e
	}
}

// Exec submits r and polls until it completes, then returns r.Err. It is
// the synchronous form of Submit for tools and tests; r.Done may be nil.
// Owner goroutine only.
func (q *QueuePair) Exec(r *Request) error {
	var done bool
	user := r.Done
	r.Done = func(r *Request) {
		done = true
		if user != nil {
			user(r)
		}
	}
	defer func() { r.Done = user }()
	if err := q.Submit(r); err != nil {
		return err
	}
	for spins := 0; !done; spins++ {
		if q.Poll() == 0 && spins > 1000 {
			time.Sleep(20 * time.Microsecond)
		}
	}
	return r.Err
}

// Close deletes the queues on the controller and frees their memory.
// Outstanding and waiting requests fail with ErrClosed. If the deletion
// fails, or the controller is being reset or has failed, while it may
// still be working on the queues, Close completes nothing, frees nothing
// and returns an error wrapping ErrDeviceOwned: the requests' buffers
// still belong to the device. The queue pair then takes no new work, and a
// later Close, once the controller was reset, removed or closed, does the
// rest. When the queues are gone with a controller that was removed or
// closed, their memory stays mapped until the controller's Close has
// stopped it. Owner goroutine only; after a nil error (or any error but
// ErrDeviceOwned) the queue pair may not be used.
func (q *QueuePair) Close() error {
	if q.freed {
		return nil
	}
	if q.fabric {
		// Nothing across a fabric writes into the requests' buffers
		// once the owner stops reaping: end the connection, fail what
		// is left, release.
		if q.term == nil {
			q.term = fmt.Errorf("queue %d: %w", q.id, ErrClosed)
		}
		q.dropTransport()
		q.failAll(q.term)
		q.ctrl.releaseQueue(q)
		q.free_()
		return nil
	}
	if q.term == nil {
		q.term = fmt.Errorf("queue %d: %w", q.id, ErrClosed)
	}
	var err error
	e := q.ctrl.epoch.Load()
	free := false
	switch s := epochState(e); {
	case e == q.epoch && s == StateReady:
		if err = q.ctrl.deleteQueues(q); err != nil && !q.ctrl.releasedSince(q.epoch) {
			return fmt.Errorf("queue %d: %w: %w", q.id, ErrDeviceOwned, err)
		}
		free = err == nil
	case s == StateReady:
		// Out of step with a reset that completed: the controller
		// forgot these queues.
		free = true
	case (s == StateResetting || s == StateFailed) && !q.ctrl.releasedSince(q.epoch):
		return fmt.Errorf("queue %d: controller is %v: %w", q.id, s, ErrDeviceOwned)
	}
	q.failAll(q.term)
	if free {
		q.ctrl.releaseQueue(q)
		q.free_()
	} else {
		// The queues may still exist on a controller that can reach
		// them (being reset, failed, or only reported removed): their
		// memory goes when the controller is stopped, at its Close.
		q.ctrl.retireQueue(q)
	}
	return err
}
