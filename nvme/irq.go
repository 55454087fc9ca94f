package nvme

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Interrupts. A controller signals a completion queue's interrupt vector
// when it posts entries to a queue created with interrupts enabled (Create
// I/O Completion Queue, CDW11 IEN and IV); the admin completion queue
// always uses vector 0 (NVMe Base 2.0, 3.5.1 and 5.4). On PCIe with VFIO
// each MSI-X vector signals an eventfd (package nvme/pcie), and the fake
// controller of package nvme/nvmetest does the same, so a goroutine can
// sleep until a queue has something to reap:
//
//	vector 0 ── admin CQ ── watcher (Options.Interrupts): reaps events
//	vector 1 ── I/O CQ 1 ── its owner (a poller) sleeps on it
//	vector 2 ── I/O CQ 2 ── another owner
//
// Vector i belongs to I/O queue i: an eventfd is read (drained) by the one
// goroutine that sleeps on it, so two owners may never share a vector. A
// queue whose identifier has no vector of its own cannot have interrupts.
//
// An eventfd counts the signals, so a signal that arrives between the
// owner's last look at the queue and its sleep is not lost: the sleep
// returns at once. The owner drains the count when it wakes, before it
// reaps (a completion posted after the drain signals again).

// InterruptBus is implemented by a Bus that delivers the controller's
// interrupt vectors as eventfds (MSI-X through VFIO; the in-process
// controller of package nvmetest). Any goroutine may call its methods.
type InterruptBus interface {
	// InterruptVectors returns how many vectors the function offers
	// (0: none usable).
	InterruptVectors() int
	// InterruptEventfd returns the eventfd that vector i signals,
	// enabling the function's vectors first if needed. The eventfd is
	// non-blocking and belongs to the bus, which closes it at Close; the
	// caller reads it and must not close it.
	InterruptEventfd(i int) (int, error)
}

// InterruptSwitch is implemented by an InterruptBus that can disconnect
// a vector from its eventfd and connect it again without disabling the
// others (VFIO_DEVICE_SET_IRQS for one MSI-X vector; nvmetest): an owner
// that polls a queue for a while spares the interrupts it would not wait
// for. A disconnected vector is masked: what the controller signals
// meanwhile stays pending and is delivered when the vector is connected
// again. Any goroutine may call it.
type InterruptSwitch interface {
	// SetInterrupt connects vector i (on) or disconnects it; it does
	// nothing when the vector already is as asked.
	SetInterrupt(i int, on bool) error
}

// Coalescing is the Interrupt Coalescing feature (Set Features 08h, NVMe
// Base 2.0, 5.27.1.8): the controller may hold an I/O completion queue's
// interrupt until Threshold completions are waiting or Time has passed
// since the first. The admin queue is never coalesced. The zero value
// leaves the controller's setting (normally none) alone.
type Coalescing struct {
	// Threshold is the aggregation threshold in completions, 1 to 256
	// (sent 0's based); 0 or 1 with Time 0 means an interrupt per
	// completion.
	Threshold int
	// Time is the aggregation time, up to 25.5 ms, in the spec's 100 µs
	// units (rounded down).
	Time time.Duration
}

// cdw11 encodes c as Set Features dword 11: THR in bits 7:0, TIME in 15:8.
func (c Coalescing) cdw11() (uint32, error) {
	if c.Threshold < 0 || c.Threshold > 256 || c.Time < 0 || c.Time > 25500*time.Microsecond {
		return 0, invalidf("interrupt coalescing: threshold %d (want 0 to 256), time %v (want 0 to 25.5ms)", c.Threshold, c.Time)
	}
	thr := uint32(max(c.Threshold, 1) - 1)
	return thr | uint32(c.Time/(100*time.Microsecond))<<8, nil
}

// setCoalescing is a bring-up and reset step: it sends Options.
// InterruptCoalescing when one is set (a reset returns features to their
// defaults, so it is sent again). adminMu held.
func (c *Controller) setCoalescing() error {
	if c.opts.InterruptCoalescing == (Coalescing{}) {
		return nil
	}
	dw11, err := c.opts.InterruptCoalescing.cdw11()
	if err != nil {
		return err
	}
	if _, err := c.adminSimpleLocked(spec.AdminSetFeatures, 0, uint32(spec.FeatureInterruptCoalescing), dw11); err != nil {
		return fmt.Errorf("interrupt coalescing: %w", err)
	}
	return nil
}

// queueIRQ is a queue pair's interrupt vector, fixed at creation.
type queueIRQ struct {
	vector int             // -1: created without interrupts
	fd     int             // the vector's eventfd, -1 without
	sw     InterruptSwitch // the bus's, nil if it has none
}

// cdw11 returns the Create I/O Completion Queue dword 11 bits for the
// vector: IEN and IV, or nothing for a polled queue.
func (i queueIRQ) cdw11() uint32 {
	if i.vector < 0 {
		return 0
	}
	return spec.CreateCQIntEnabled | uint32(i.vector)<<spec.CreateCQIVShift
}

// ErrNoInterrupts: the bus delivers no interrupts, or none is left for a
// queue. It wraps errors.ErrUnsupported.
var ErrNoInterrupts = fmt.Errorf("nvme: no interrupt vector: %w", errors.ErrUnsupported)

// attachVector gives q (an I/O queue pair not yet created on the device)
// the vector of its queue identifier.
func (c *Controller) attachVector(q *QueuePair) error {
	ib, ok := c.bus.(InterruptBus)
	if !ok {
		return fmt.Errorf("queue %d: %w: the transport has none", q.id, ErrNoInterrupts)
	}
	n := ib.InterruptVectors()
	if int(q.id) >= n {
		return fmt.Errorf("queue %d: %w: the function has %d vectors (vector 0 is the admin queue's, vector i queue i's)", q.id, ErrNoInterrupts, n)
	}
	fd, err := ib.InterruptEventfd(int(q.id))
	if err != nil {
		return fmt.Errorf("queue %d: interrupt vector: %w", q.id, err)
	}
	sw, _ := c.bus.(InterruptSwitch)
	if sw != nil {
		// A queue pair closed while its owner polled may have left the
		// vector disconnected.
		if err := sw.SetInterrupt(int(q.id), true); err != nil {
			return fmt.Errorf("queue %d: interrupt vector: %w", q.id, err)
		}
	}
	q.irq = queueIRQ{vector: int(q.id), fd: fd, sw: sw}
	return nil
}

// NewInterruptQueuePair is NewQueuePair for a queue pair whose completion
// queue raises its own interrupt vector (vector i for queue i), so that
// its owner can sleep until it has something to reap: InterruptFD returns
// the vector's eventfd. It fails with an error wrapping ErrNoInterrupts
// when the transport delivers no interrupts or has no vector for the
// queue. Any goroutine; the caller becomes its owner.
func (c *Controller) NewInterruptQueuePair(depth int) (*QueuePair, error) {
	return c.newIOQueuePair(depth, true)
}

// InterruptFD returns the eventfd of the queue pair's interrupt vector,
// or -1 for a polled queue pair. The owner sleeps on it (poll(2),
// epoll) and reads it to drain the count; the eventfd belongs to the
// transport, so never close it. Any goroutine (it does not change).
func (q *QueuePair) InterruptFD() int {
	if q.admin {
		return -1
	}
	return q.irq.fd
}

// SetInterrupts connects the queue pair's interrupt vector to its
// eventfd (on, as created) or disconnects it, for an owner that polls the
// queue for a while and wants no interrupt per completion meanwhile (the
// poller's ModeHybrid). While disconnected the vector is masked and what
// it signals stays pending, delivered when it is connected again; an
// owner that connects it before it sleeps, then looks at the queue
// (HasWork), misses nothing. Nothing happens when the vector already is
// as asked. Errors wrap ErrNoInterrupts for a queue pair without a vector
// or a transport that cannot switch one. Owner goroutine only.
func (q *QueuePair) SetInterrupts(on bool) error {
	if !q.CanSwitchInterrupts() {
		return fmt.Errorf("queue %d: %w: no vector that can be switched", q.id, ErrNoInterrupts)
	}
	if err := q.irq.sw.SetInterrupt(q.irq.vector, on); err != nil { // (a no-op when already so)
		return fmt.Errorf("queue %d: %w", q.id, err)
	}
	return nil
}

// CanSwitchInterrupts reports whether SetInterrupts can work on the
// queue pair. Any goroutine (it does not change).
func (q *QueuePair) CanSwitchInterrupts() bool {
	return !q.admin && q.irq.vector >= 0 && q.irq.sw != nil
}

// Vector returns the queue pair's interrupt vector, or -1 for a polled
// queue pair. Any goroutine.
func (q *QueuePair) Vector() int {
	if q.admin {
		return 0
	}
	return q.irq.vector
}

// HasWork reports whether a Poll now would do something: a completion
// waits at the completion queue's head, requests wait for command IDs
// that are free, or the controller's epoch moved on (a reset, a removal:
// Poll brings the queue pair in step). An owner that is about to sleep
// on InterruptFD calls it after announcing its sleep, so that nothing
// posted before the announcement is slept over. Owner goroutine only.
func (q *QueuePair) HasWork() bool {
	if q.stale() {
		return true
	}
	if q.term != nil || q.cq == nil {
		return false
	}
	if q.waitHead != nil && q.freeN > 0 {
		return true
	}
	c := &q.cq[q.cqHead]
	dw3 := atomic.LoadUint32((*uint32)(unsafe.Pointer(&c.CID)))
	_, phase, _ := spec.SplitDW3(dw3)
	return phase == q.phase
}

// CheckDeadlines runs the command deadline scan now (Poll runs it every
// 64 calls): for an owner that slept with commands in flight and woke
// without an interrupt. Owner goroutine only.
func (q *QueuePair) CheckDeadlines() {
	if q.term == nil && q.inflight > 0 && !q.admin && !q.stale() {
		q.checkDeadlines(monotonic())
	}
}

// enableIRQs, with Options.Interrupts, has the bus enable its vectors
// before the controller is enabled: a controller may bind a vector to a
// completion queue when it creates the queue, so vector 0 must be on when
// the admin queue comes up (QEMU's nvme ignores the admin queue's
// interrupts otherwise). A failure leaves the watcher polling.
func (c *Controller) enableIRQs() {
	if !c.opts.Interrupts {
		return
	}
	if ib, ok := c.bus.(InterruptBus); ok && ib.InterruptVectors() > 0 {
		if _, err := ib.InterruptEventfd(0); err != nil {
			c.logf("nvme: %s: enable interrupts: %v", c.name(), err)
		}
	}
}

// startAdminIRQ, with Options.Interrupts and a bus that delivers
// interrupts, makes the admin queue's vector (0) wake the watcher, so
// asynchronous events and the answers to aborts are reaped when they
// come rather than at the next WatchInterval tick. The ticker stays, slower
// (watchInterval): the CSTS checks (removal, fatal status) and the abort
// deadlines need it.
// The eventfd is read through a duplicate of it in the runtime's
// network poller (no thread blocked), by a goroutine that ends at Close.
func (c *Controller) startAdminIRQ() {
	if !c.opts.Interrupts {
		return
	}
	ib, ok := c.bus.(InterruptBus)
	if !ok || ib.InterruptVectors() < 1 {
		c.logf("nvme: %s: the transport delivers no interrupts: the watcher polls every %v", c.name(), c.opts.WatchInterval)
		return
	}
	fd, err := ib.InterruptEventfd(0)
	if err == nil {
		fd, err = syscall.Dup(fd)
	}
	if err != nil {
		c.logf("nvme: %s: admin interrupt: %v: the watcher polls every %v", c.name(), err, c.opts.WatchInterval)
		return
	}
	syscall.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "nvme-admin-irq")
	c.adminIRQ = true
	c.watchWG.Add(2)
	go func() {
		defer c.watchWG.Done()
		<-c.stop
		f.Close() // ends the Read below
	}()
	go func() {
		defer c.watchWG.Done()
		var b [8]byte
		for {
			if _, err := f.Read(b[:]); err != nil {
				return
			}
			c.adminIRQs.Add(1)
			c.kick()
		}
	}()
}

// watchInterval is the watcher's tick: Options.WatchInterval, or, when
// the admin queue's interrupt wakes the watcher, a slower fallback (at
// most 1 s, and at most half of AbortTimeout, so that an abort without
// an answer still resets the controller in time): the tick is left only
// for the CSTS checks (removal, fatal status) and the abort deadlines.
func (c *Controller) watchInterval() time.Duration {
	d := c.opts.WatchInterval
	if c.adminIRQ {
		d = max(d, min(time.Second, c.opts.AbortTimeout/2))
	}
	return d
}

// AdminInterrupts returns how many times the admin queue's interrupt
// woke the watcher (0 without Options.Interrupts). Any goroutine.
func (c *Controller) AdminInterrupts() uint64 { return c.adminIRQs.Load() }
