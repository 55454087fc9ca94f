package nvme_test

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// readEventfd waits up to d for fd to count, and returns the count.
func readEventfd(t *testing.T, fd int, d time.Duration) uint64 {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(pfd, int(d/time.Millisecond)); err != nil {
		t.Fatalf("poll eventfd: %v", err)
	}
	var b [8]byte
	n, err := unix.Read(fd, b[:])
	if err != nil || n != 8 {
		return 0
	}
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24
}

// An interrupt queue pair is created with IEN and its own vector; the
// controller signals that vector's eventfd for its completions, and
// HasWork sees a posted completion before Poll reaps it.
func TestInterruptQueuePair(t *testing.T) {
	r := newRig(t, nvmetest.Config{Latency: nvmetest.Fixed(0)}, nil)
	q, err := r.ctrl.NewInterruptQueuePair(8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	if q.Vector() != int(q.ID()) || q.InterruptFD() < 0 {
		t.Fatalf("queue %d: vector %d fd %d, want vector %d and an eventfd", q.ID(), q.Vector(), q.InterruptFD(), q.ID())
	}
	polled := r.qp(8)
	if polled.InterruptFD() != -1 || polled.Vector() != -1 {
		t.Errorf("polled queue pair: fd %d vector %d, want -1, -1", polled.InterruptFD(), polled.Vector())
	}
	ns := r.ns(1)
	b := r.buf(4096)
	pat(b, 3)
	req := &nvme.Request{Done: func(*nvme.Request) {}}
	if err := ns.Write(req, 10, b, 0); err != nil {
		t.Fatal(err)
	}
	if err := q.Submit(req); err != nil {
		t.Fatal(err)
	}
	q.Ring()
	if n := readEventfd(t, q.InterruptFD(), 10*time.Second); n == 0 {
		t.Fatal("no interrupt for the completion")
	}
	if !q.HasWork() {
		t.Fatal("HasWork false with a completion posted")
	}
	if n := q.Poll(); n != 1 {
		t.Fatalf("Poll reaped %d, want 1", n)
	}
	if q.HasWork() {
		t.Error("HasWork true after the completion was reaped")
	}
	if req.Err != nil {
		t.Fatal(req.Err)
	}
	got := r.buf(4096)
	if err := ns.ReadAt(q, got, 10); err != nil {
		t.Fatal(err)
	}
	checkData(t, "read back", got, b)
}

// A controller without vectors refuses interrupt queue pairs with
// ErrNoInterrupts (and errors.ErrUnsupported).
func TestInterruptQueuePairNoVectors(t *testing.T) {
	r := newRig(t, nvmetest.Config{Vectors: -1}, &nvme.Options{Interrupts: true})
	_, err := r.ctrl.NewInterruptQueuePair(8)
	if !errors.Is(err, nvme.ErrNoInterrupts) || !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("NewInterruptQueuePair without vectors: %v, want ErrNoInterrupts", err)
	}
	// The queue ID went back: a polled queue pair still gets queue 1.
	if q := r.qp(8); q.ID() != 1 {
		t.Errorf("next queue pair has ID %d, want 1", q.ID())
	}
	// Queue 3 has no vector on a 3-vector function.
	r3 := newRig(t, nvmetest.Config{Vectors: 3}, nil)
	for i := 1; i <= 2; i++ {
		q, err := r3.ctrl.NewInterruptQueuePair(8)
		if err != nil {
			t.Fatalf("queue %d: %v", i, err)
		}
		t.Cleanup(func() { q.Close() })
	}
	if _, err := r3.ctrl.NewInterruptQueuePair(8); !errors.Is(err, nvme.ErrNoInterrupts) {
		t.Fatalf("queue 3 of a 3-vector function: %v, want ErrNoInterrupts", err)
	}
}

// With Options.Interrupts the admin vector wakes the watcher: an
// asynchronous event is handled long before the WatchInterval tick.
func TestAdminInterruptWakesWatcher(t *testing.T) {
	events := make(chan nvme.AsyncEvent, 4)
	r := newRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{}, {Detached: true}}},
		&nvme.Options{Interrupts: true, WatchInterval: time.Hour, OnEvent: func(e nvme.AsyncEvent) { events <- e }})
	if !r.fake.AttachNamespace(2) {
		t.Fatal("attach namespace 2 failed")
	}
	select {
	case <-events:
	case <-time.After(20 * time.Second):
		t.Fatal("no event handled with a 1 h watch interval: the admin interrupt did not wake the watcher")
	}
	if r.ctrl.AdminInterrupts() == 0 {
		t.Error("AdminInterrupts = 0 after an event")
	}
}

// Interrupt Coalescing is sent at bring-up and again after a reset.
func TestInterruptCoalescing(t *testing.T) {
	co := nvme.Coalescing{Threshold: 8, Time: 300 * time.Microsecond}
	r := newRig(t, nvmetest.Config{}, &nvme.Options{InterruptCoalescing: co})
	check := func(when string) {
		t.Helper()
		dw0, err := r.ctrl.GetFeature(spec.FeatureInterruptCoalescing, spec.SelCurrent, 0, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := uint32(7 | 3<<8); dw0 != want {
			t.Errorf("%s: interrupt coalescing %#x, want %#x", when, dw0, want)
		}
	}
	check("after bring-up")
	if err := r.ctrl.Reset(); err != nil {
		t.Fatal(err)
	}
	check("after reset")
	if _, err := nvmetestOpenBad(t); err == nil {
		t.Error("a threshold of 300 was accepted")
	}
}

func nvmetestOpenBad(t *testing.T) (*nvme.Controller, error) {
	fake, err := nvmetest.New(nvmetest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	mem, err := newAllocator(fake)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	c, err := nvme.Open(fake, mem, &nvme.Options{InterruptCoalescing: nvme.Coalescing{Threshold: 300}})
	if err == nil {
		c.Close()
	}
	return c, err
}
