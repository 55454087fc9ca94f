package nvmetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Interrupts, as MSI-X through VFIO delivers them: each vector signals an
// eventfd. The admin completion queue always uses vector 0; an I/O
// completion queue created with IEN signals its IV. The device goroutine
// signals a vector when it writes a completion entry to such a queue
// (held back by Interrupt Coalescing, Feature 08h, for I/O queues), whether
// or not the host sleeps on it, as a controller does; a vector nobody asked
// an eventfd for (InterruptEventfd) signals nothing, like an MSI-X vector
// the host did not enable.

// DefaultVectors is the number of interrupt vectors the fake offers unless
// Config.Vectors says otherwise: QEMU's nvme device offers 65.
const DefaultVectors = 65

// irqState is the fake's interrupt vectors. fds is shared with the
// controller's callers (atomics); the rest is the device goroutine's.
type irqState struct {
	mu     sync.Mutex     // creating eventfds; masking and unmasking
	fds    []atomic.Int32 // eventfd of each vector, -1 until asked for
	raised atomic.Uint64  // signals written to eventfds
	masked []bool         // vectors the host disconnected (SetInterrupt); mu
	held   []bool         // a masked vector signalled: pending; mu
	nmask  atomic.Int32   // vectors masked (a fast check for signal)

	pend  []int   // completions posted since the vector last signalled
	first []int64 // when the first of them was posted (monotonic ns)
	npend int     // vectors with pend > 0
}

func (s *irqState) init(n int) {
	s.fds = make([]atomic.Int32, n)
	for i := range s.fds {
		s.fds[i].Store(-1)
	}
	s.pend = make([]int, n)
	s.first = make([]int64, n)
	s.masked = make([]bool, n)
	s.held = make([]bool, n)
}

// InterruptVectors returns how many interrupt vectors the fake offers
// (Config.Vectors). Part of package nvme's InterruptBus. Any goroutine.
func (c *Controller) InterruptVectors() int { return len(c.dev.irq.fds) }

// InterruptEventfd returns the eventfd vector i signals, creating it on
// first use (the fake's equivalent of enabling MSI-X). The eventfd is
// non-blocking and belongs to the fake, which closes it at Close. Part of
// package nvme's InterruptBus. Any goroutine.
func (c *Controller) InterruptEventfd(i int) (int, error) {
	s := &c.dev.irq
	if i < 0 || i >= len(s.fds) {
		return -1, fmt.Errorf("nvmetest: interrupt vector %d: the controller has %d", i, len(s.fds))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-c.stopped:
		return -1, fmt.Errorf("nvmetest: interrupt vector %d: controller closed", i)
	default:
	}
	if fd := s.fds[i].Load(); fd >= 0 {
		return int(fd), nil
	}
	fd, _, errno := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		return -1, fmt.Errorf("nvmetest: interrupt vector %d: eventfd: %w", i, errno)
	}
	s.fds[i].Store(int32(fd))
	return int(fd), nil
}

// InterruptsRaised returns how many times the fake signalled an interrupt
// vector's eventfd. Any goroutine.
func (c *Controller) InterruptsRaised() uint64 { return c.dev.irq.raised.Load() }

// SetInterrupt connects vector i to its eventfd (on) or disconnects it,
// as VFIO does for one MSI-X vector: a disconnected vector is masked, a
// signal meanwhile is held pending and written when the vector is
// connected again (MSI-X's pending bit). Part of package nvme's
// InterruptSwitch. Any goroutine.
func (c *Controller) SetInterrupt(i int, on bool) error {
	s := &c.dev.irq
	if i < 0 || i >= len(s.fds) {
		return fmt.Errorf("nvmetest: interrupt vector %d: the controller has %d", i, len(s.fds))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.masked[i] == !on {
		return nil
	}
	s.masked[i] = !on
	if !on {
		s.nmask.Add(1)
		return nil
	}
	s.nmask.Add(-1)
	if s.held[i] {
		s.held[i] = false
		s.write(i)
	}
	return nil
}

// InterruptsMasked returns how many vectors are disconnected
// (SetInterrupt). Any goroutine.
func (c *Controller) InterruptsMasked() int { return int(c.dev.irq.nmask.Load()) }

// closeIRQs closes the eventfds, after the device goroutine stopped.
func (c *Controller) closeIRQs() {
	s := &c.dev.irq
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.fds {
		if fd := s.fds[i].Swap(-1); fd >= 0 {
			syscall.Close(int(fd))
		}
	}
}

// createCQIRQ reads IEN and IV of a Create I/O Completion Queue command.
func (d *device) createCQIRQ(cmd *spec.Command) (ien bool, iv uint16, st spec.Status) {
	ien = cmd.CDW11&spec.CreateCQIntEnabled != 0
	iv = uint16(cmd.CDW11 >> spec.CreateCQIVShift)
	if ien && int(iv) >= len(d.irq.fds) {
		return false, 0, stInvalidIV
	}
	return ien, iv, stOK
}

var stInvalidIV = spec.MakeStatus(spec.SCTCommandSpecific, spec.SCInvalidInterruptVector)

// posted runs after a completion entry was written to q: its vector
// signals now, or when coalescing lets it. Device goroutine.
func (d *device) posted(q *cqState) {
	s := &d.irq
	v := int(q.iv)
	if !q.ien || v >= len(s.pend) { // (no vectors at all: not even the admin queue's)
		return
	}
	s.pend[v]++
	if s.pend[v] == 1 {
		s.first[v] = now()
		s.npend++
	}
	thr, tm := d.coalescing()
	if v == 0 || tm == 0 || s.pend[v] > thr {
		d.signal(v)
	}
}

// coalescing returns the Interrupt Coalescing feature: the aggregation
// threshold in completions (THR is 0's based) and time.
func (d *device) coalescing() (thr int, tm time.Duration) {
	f := d.features[spec.FeatureInterruptCoalescing]
	return int(f&0xff) + 1, time.Duration(f>>8&0xff) * 100 * time.Microsecond
}

// irqTimers signals the vectors whose aggregation time has passed.
// Device goroutine.
func (d *device) irqTimers(t int64) {
	_, tm := d.coalescing()
	for v, n := range d.irq.pend {
		if n > 0 && t-d.irq.first[v] >= int64(tm) {
			d.signal(v)
		}
	}
}

// signal writes to vector v's eventfd, if the host asked for it.
func (d *device) signal(v int) {
	s := &d.irq
	if s.pend[v] > 0 {
		s.pend[v] = 0
		s.npend--
	}
	if s.nmask.Load() != 0 {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.masked[v] {
			s.held[v] = true
			return
		}
	}
	s.write(v)
}

// write signals vector v's eventfd, if the host asked for it.
func (s *irqState) write(v int) {
	fd := s.fds[v].Load()
	if fd < 0 {
		return
	}
	one := [8]byte{1}
	if _, err := syscall.Write(int(fd), one[:]); err == nil {
		s.raised.Add(1)
	}
}
