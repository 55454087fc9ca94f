package poller_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// resubmitLoop runs total reads at depth qd, each request resubmitted from
// its own Done callback with submit, and waits for all of them.
func resubmitLoop(t *testing.T, r *rig, h *poller.Handle, qd, total int, submit func(x *io) error) {
	t.Helper()
	var issued, completed, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	xs := r.ios(qd, func(x *io) {
		completed.Add(1)
		if e := x.err.Load(); e != nil {
			firstErr.CompareAndSwap(nil, e)
		}
		if issued.Add(1) > int64(total) {
			return
		}
		x.lba = (x.lba + 8) % 8192
		if err := r.ns.Read(&x.req, x.lba, x.buf, 0); err != nil {
			failed.Add(1)
			return
		}
		if err := submit(x); err != nil {
			e := err
			firstErr.CompareAndSwap(nil, &e)
			failed.Add(1)
		}
	})
	for i, x := range xs {
		issued.Add(1)
		x.lba = uint64(i * 8)
		if err := r.ns.Read(&x.req, x.lba, x.buf, 0); err != nil {
			t.Fatal(err)
		}
		if err := h.Submit(&x.req); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for completed.Load() < int64(total) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d completed", completed.Load(), total)
		}
		time.Sleep(time.Millisecond)
	}
	if e := firstErr.Load(); e != nil || failed.Load() != 0 {
		t.Fatalf("%d failed: %v", failed.Load(), errOf(e))
	}
}

// TestResubmitFromDoneDirect: a request resubmitted with Handle.Submit
// from its own Done goes straight to its poller's queue pair, without
// Options.RouteByCPU and without the ring: only the first submission of
// each request is taken from a ring.
func TestResubmitFromDoneDirect(t *testing.T) {
	for _, qd := range []int{1, 16} {
		r := newRig(t, nvmetest.Config{}, nil)
		g := r.group(&poller.Options{CPUs: []int{0, 1}})
		h := g.Handle(r.ctrl)
		const total = 3000
		resubmitLoop(t, r, h, qd, total, func(x *io) error { return h.Submit(&x.req) })
		s := settle(t, g, total)
		if s.completed != total || s.taken != uint64(qd) || s.local != total-uint64(qd) {
			t.Fatalf("qd %d: completed %d taken %d local %d, want %d, %d, %d", qd, s.completed, s.taken, s.local, total, qd, total-qd)
		}
	}
}

// TestResubmitFromOtherGoroutine: a Done callback hands its request to
// another goroutine, which resubmits it with Handle.Submit, possibly while
// the Done is still running. Whichever way the race goes the request runs
// exactly once per submission (the poller submits it after Done returns,
// or it goes through a ring), and the race detector sees no race.
func TestResubmitFromOtherGoroutine(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	g := r.group(&poller.Options{CPUs: []int{0, 1}})
	h := g.Handle(r.ctrl)
	const depth, total = 8, 4000
	handoff := make(chan *io, depth)
	quit := make(chan struct{})
	defer close(quit)
	var issued, completed, failed, spins atomic.Int64
	xs := r.ios(depth, func(x *io) {
		completed.Add(1)
		if issued.Add(1) > total {
			return
		}
		handoff <- x
		// Keep Done running a little while the other goroutine
		// resubmits x (which Done must not touch any more).
		spin := 0
		for i := range 2000 {
			spin += i
		}
		spins.Add(int64(spin))
	})
	go func() {
		for {
			select {
			case x := <-handoff:
				x.lba = (x.lba + 8) % 8192
				if err := r.ns.Read(&x.req, x.lba, x.buf, 0); err != nil {
					failed.Add(1)
					continue
				}
				if err := h.Submit(&x.req); err != nil {
					failed.Add(1)
				}
			case <-quit:
				return
			}
		}
	}()
	for i, x := range xs {
		issued.Add(1)
		x.lba = uint64(i * 8)
		r.ns.Read(&x.req, x.lba, x.buf, 0)
		if err := h.Submit(&x.req); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for completed.Load() < total {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d completed", completed.Load(), total)
		}
		time.Sleep(time.Millisecond)
	}
	for _, x := range xs {
		if e := x.err.Load(); e != nil {
			t.Fatal(*e)
		}
	}
	s := settle(t, g, total)
	if failed.Load() != 0 || s.completed != total || s.taken+s.local != total {
		t.Fatalf("failed %d; completed %d taken %d local %d, want %d in all", failed.Load(), s.completed, s.taken, s.local, total)
	}
}

// TestResubmitDirectAllocs: the direct path of a resubmission from Done
// allocates nothing (counted over the whole process, as TestAllocs does).
func TestResubmitDirectAllocs(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	g := r.group(&poller.Options{CPUs: []int{1}, Idle: poller.IdleBusy})
	h := g.Handle(r.ctrl)
	buf := r.buf(4096)
	var left atomic.Int64
	fin := make(chan error, 1)
	req := &nvme.Request{}
	req.Done = func(q *nvme.Request) {
		if q.Err != nil {
			fin <- q.Err
			return
		}
		if left.Add(-1) <= 0 {
			fin <- nil
			return
		}
		if err := r.ns.Read(q, 0, buf, 0); err != nil {
			fin <- err
			return
		}
		if err := h.Submit(q); err != nil {
			fin <- err
		}
	}
	run := func(n int64) {
		left.Store(n)
		if err := r.ns.Read(req, 0, buf, 0); err != nil {
			t.Fatal(err)
		}
		if err := h.Submit(req); err != nil {
			t.Fatal(err)
		}
		if err := <-fin; err != nil {
			t.Fatal(err)
		}
	}
	run(300)
	const runs = 5000
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	run(runs)
	runtime.ReadMemStats(&m1)
	if n := m1.Mallocs - m0.Mallocs; n*10 >= runs {
		t.Fatalf("%d allocations in %d I/Os resubmitted from Done, want 0 per I/O", n, runs)
	}
	if s := settle(t, g, runs+300); s.local < runs {
		t.Fatalf("%d direct submissions in %d resubmissions", s.local, runs)
	}
}

// TestNoYieldWithIOInFlight: an adaptive poller waiting for a slow
// completion keeps spinning until SpinTime+YieldTime and never calls
// runtime.Gosched (whose thread hand-offs a completion would pay): here
// every read spends about 300 µs on the device, well past SpinTime (1 µs)
// and well short of YieldTime (10 s), and the poller gives its thread up
// not once.
func TestNoYieldWithIOInFlight(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	g := r.group(&poller.Options{CPUs: []int{1}, SpinTime: time.Microsecond, YieldTime: 10 * time.Second})
	h := g.Handle(r.ctrl)
	const n = 30
	resubmitLoop(t, r, h, 1, n, func(x *io) error {
		r.fake.Stall(300 * time.Microsecond)
		return h.Submit(&x.req)
	})
	st := settle(t, g, n)
	ps := g.Stats()[0]
	if st.completed != n || ps.Yields != 0 {
		t.Fatalf("completed %d; the poller gave its thread up %d times with a request in flight, want 0", st.completed, ps.Yields)
	}
}

// TestNapWhenDeviceSlow: past SpinTime+YieldTime with a request in flight
// the adaptive poller naps (it cannot park: a completion is due) and
// still sees the completion.
func TestNapWhenDeviceSlow(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	g := r.group(&poller.Options{CPUs: []int{1}, SpinTime: time.Microsecond, YieldTime: 100 * time.Microsecond})
	h := g.Handle(r.ctrl)
	xs := r.ios(1, nil)
	// Long enough that the command is in flight for most of it even if
	// a loaded machine is slow to wake the parked poller.
	r.fake.Stall(300 * time.Millisecond)
	r.ns.Read(&xs[0].req, 0, xs[0].buf, 0)
	if err := h.Submit(&xs[0].req); err != nil {
		t.Fatal(err)
	}
	waitAll(t, xs, 5*time.Second)
	if e := xs[0].err.Load(); e != nil {
		t.Fatal(*e)
	}
	settle(t, g, 1)
	if ps := g.Stats()[0]; ps.Yields == 0 {
		t.Fatalf("no nap during a 300 ms command")
	}
}

// TestErrBusyIsEAGAIN: ErrBusy matches syscall.EAGAIN, which is how
// package ddi tells a Submitter without room from one refusing for good.
func TestErrBusyIsEAGAIN(t *testing.T) {
	err := fmt.Errorf("submit: %w", poller.ErrBusy)
	if !errors.Is(err, syscall.EAGAIN) || !errors.Is(err, poller.ErrBusy) || errors.Is(err, syscall.EIO) {
		t.Fatal("ErrBusy should match itself and EAGAIN, nothing else")
	}
}

// TestStopBoundedByGrace: a Done callback that blocks keeps its poller
// from finishing; Stop still returns StopGrace after its deadline, says
// the poller has not finished, and a later Stop waits for the rest.
func TestStopBoundedByGrace(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	before := runtime.NumGoroutine()
	g, err := poller.New([]*nvme.Controller{r.ctrl}, &poller.Options{CPUs: []int{1}, StopGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h := g.Handle(r.ctrl)
	release := make(chan struct{})
	entered := make(chan struct{})
	xs := r.ios(1, func(*io) {
		close(entered)
		<-release // a Done that blocks, against the rules
	})
	r.ns.Read(&xs[0].req, 0, xs[0].buf, 0)
	if err := h.Submit(&xs[0].req); err != nil {
		t.Fatal(err)
	}
	<-entered
	go func() {
		time.Sleep(5 * time.Second)
		close(release)
	}()
	ctx, cancel := stopCtx(50 * time.Millisecond)
	defer cancel()
	t0 := time.Now()
	err = g.Stop(ctx)
	took := time.Since(t0)
	if took > 3*time.Second {
		t.Fatalf("Stop with a 50 ms deadline and 100 ms grace took %v", took)
	}
	if !errors.Is(err, poller.ErrStopped) || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, nvme.ErrDeviceOwned) {
		t.Fatalf("stop: %v; want ErrStopped, DeadlineExceeded and nvme.ErrDeviceOwned", err)
	}
	if err := g.Stop(context.Background()); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if xs[0].done.Load() != 1 {
		t.Fatalf("done %d times", xs[0].done.Load())
	}
	checkGoroutines(t, before)
}

// TestStopErrorHeldUntilReset: Stop's deadline passes while the device
// holds every read, and the controller never completes the Delete I/O SQ
// that closing the queue pair sends. Stop still returns by its deadline
// plus StopGrace, reports the requests still owned by the device, and
// neither delivers them nor frees the queue pair's memory; they are
// delivered (with a StopError) only after the controller was reset, and
// the queue memory is freed then.
func TestStopErrorHeldUntilReset(t *testing.T) {
	const adminTimeout = 3 * time.Second
	r := newRig(t, nvmetest.Config{}, &nvme.Options{AdminTimeout: adminTimeout, Logf: t.Logf})
	before := runtime.NumGoroutine()
	g, err := poller.New([]*nvme.Controller{r.ctrl}, &poller.Options{CPUs: []int{1}, QueueDepth: 8, StopGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h := g.Handle(r.ctrl)
	const n = 5
	resets0 := r.fake.Stats().Resets
	var resetsAtDone [n]atomic.Uint64
	xs := r.ios(n, func(x *io) { resetsAtDone[x.index].Store(r.fake.Stats().Resets) })
	r.fake.DropCompletion(nvmetest.AnyIO(), 1<<30)
	r.fake.Lose(nvmetest.Admin(spec.AdminDeleteIOSQ), 1)
	for i, x := range xs {
		r.ns.Read(&x.req, uint64(i*8), x.buf, 0)
		if err := h.Submit(&x.req); err != nil {
			t.Fatal(err)
		}
	}
	for r.fake.Held() < n {
		time.Sleep(time.Millisecond)
	}
	buffers := r.mem.Stats().Buffers
	ctx, cancel := stopCtx(50 * time.Millisecond)
	defer cancel()
	t0 := time.Now()
	err = g.Stop(ctx)
	took := time.Since(t0)
	if took >= adminTimeout {
		t.Fatalf("Stop took %v: it waited for the admin timeout (%v)", took, adminTimeout)
	}
	if !errors.Is(err, poller.ErrStopped) || !errors.Is(err, nvme.ErrDeviceOwned) {
		t.Fatalf("stop: %v; want ErrStopped and nvme.ErrDeviceOwned", err)
	}
	for _, x := range xs {
		if x.done.Load() != 0 {
			t.Fatalf("io %d delivered while the device still owns it (Stop took %v)", x.index, took)
		}
	}
	if b := r.mem.Stats().Buffers; b != buffers {
		t.Fatalf("%d DMA buffers live after Stop, %d before: queue memory freed while the device owns it", b, buffers)
	}
	// The Delete I/O SQ times out, the controller is reset, and then
	// everything is delivered, once, with a StopError.
	if err := g.Stop(context.Background()); err == nil || errors.Is(err, nvme.ErrDeviceOwned) {
		t.Fatalf("second stop: %v; want the failed deletion reported, not ErrDeviceOwned", err)
	}
	for _, x := range xs {
		var se *poller.StopError
		e := x.err.Load()
		if x.done.Load() != 1 || e == nil || !errors.As(*e, &se) {
			t.Fatalf("io %d: done %d err %v, want one StopError", x.index, x.done.Load(), errOf(e))
		}
		if got := resetsAtDone[x.index].Load(); got <= resets0 {
			t.Fatalf("io %d delivered before the controller was reset (resets %d, before %d)", x.index, got, resets0)
		}
	}
	if b := r.mem.Stats().Buffers; b != buffers-3 {
		t.Fatalf("%d DMA buffers live, want %d: the queue pair's three freed", b, buffers-3)
	}
	if s := r.fake.Stats(); s.DMAFaults != 0 {
		t.Fatalf("%d DMA faults", s.DMAFaults)
	}
	r.fake.ClearFaults()
	checkGoroutines(t, before)
}

// TestStopFailedController: the queue pair cannot be deleted and the reset
// that follows fails (the controller does not come back in time): the
// controller may still reach the requests' memory and nothing but its
// Close can stop it, so the poller lets go of the queue pair, delivers
// nothing, ends, and Stop says so (nvme.ErrDeviceOwned and nvme.ErrFailed).
func TestStopFailedController(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, &nvme.Options{AdminTimeout: 300 * time.Millisecond, Logf: t.Logf})
	before := runtime.NumGoroutine()
	g, err := poller.New([]*nvme.Controller{r.ctrl}, &poller.Options{CPUs: []int{1}, QueueDepth: 8, StopGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h := g.Handle(r.ctrl)
	const n = 3
	xs := r.ios(n, nil)
	r.fake.DropCompletion(nvmetest.AnyIO(), 1<<30)
	r.fake.Lose(nvmetest.Admin(spec.AdminDeleteIOSQ), 1)
	for i, x := range xs {
		r.ns.Read(&x.req, uint64(i*8), x.buf, 0)
		if err := h.Submit(&x.req); err != nil {
			t.Fatal(err)
		}
	}
	for r.fake.Held() < n {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := stopCtx(50 * time.Millisecond)
	defer cancel()
	if err := g.Stop(ctx); !errors.Is(err, nvme.ErrDeviceOwned) {
		t.Fatalf("stop: %v", err)
	}
	// The device stops answering: the reset the Delete I/O SQ timeout
	// asks for cannot bring it back.
	r.fake.Stall(time.Minute)
	defer r.fake.Stall(0)
	err = g.Stop(context.Background())
	if !errors.Is(err, nvme.ErrDeviceOwned) || !errors.Is(err, nvme.ErrFailed) || r.ctrl.State() != nvme.StateFailed {
		t.Fatalf("second stop: %v (controller %v); want ErrDeviceOwned and ErrFailed", err, r.ctrl.State())
	}
	for _, x := range xs {
		if x.done.Load() != 0 {
			t.Fatalf("io %d delivered while a failed controller may still own it", x.index)
		}
	}
	checkGoroutines(t, before)
	r.fake.ClearFaults()
}
