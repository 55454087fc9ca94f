package poller_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// The handle is usable as ddi's Submitter, structurally.
var _ interface{ Submit(r *nvme.Request) error } = (*poller.Handle)(nil)

func TestWriteRead(t *testing.T) {
	for _, rr := range []bool{false, true} {
		t.Run(fmt.Sprintf("roundrobin=%v", rr), func(t *testing.T) {
			r := newRig(t, nvmetest.Config{}, nil)
			g := r.group(&poller.Options{CPUs: []int{0, 1}, RouteByCPU: !rr})
			h := g.Handle(r.ctrl)
			const n = 64
			ws := r.ios(n, nil)
			for i, x := range ws {
				for j := range x.buf {
					x.buf[j] = byte(i*7 + j)
				}
				if err := r.ns.Write(&x.req, uint64(i*8), x.buf, 0); err != nil {
					t.Fatal(err)
				}
				if err := h.Submit(&x.req); err != nil {
					t.Fatalf("submit write %d: %v", i, err)
				}
			}
			waitAll(t, ws, 5*time.Second)
			rs := r.ios(n, nil)
			for i, x := range rs {
				if err := r.ns.Read(&x.req, uint64(i*8), x.buf, 0); err != nil {
					t.Fatal(err)
				}
				if err := g.Submit(r.ctrl, &x.req); err != nil {
					t.Fatalf("submit read %d: %v", i, err)
				}
			}
			waitAll(t, rs, 5*time.Second)
			for i := range n {
				if e := ws[i].err.Load(); e != nil {
					t.Fatalf("write %d: %v", i, *e)
				}
				if e := rs[i].err.Load(); e != nil {
					t.Fatalf("read %d: %v", i, *e)
				}
				if !bytes.Equal(ws[i].buf, rs[i].buf) {
					t.Fatalf("block %d: read back differs", i)
				}
				if ws[i].done.Load() != 1 || rs[i].done.Load() != 1 {
					t.Fatalf("io %d completed %d/%d times", i, ws[i].done.Load(), rs[i].done.Load())
				}
			}
			s := settle(t, g, 2*n)
			if s.completed != 2*n || s.taken != 2*n || s.submitted != 2*n || s.qcompleted != 2*n || s.lat.Count != 2*n {
				t.Fatalf("counters: %+v, want %d completions", s, 2*n)
			}
			if rr {
				// Round robin spreads over both pollers.
				for _, p := range g.Stats() {
					if p.Taken != n {
						t.Errorf("poller %d took %d, want %d", p.ID, p.Taken, n)
					}
				}
			}
		})
	}
}

func TestSubmitErrors(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	g := r.group(&poller.Options{CPUs: []int{0}})
	h := g.Handle(r.ctrl)
	var req nvme.Request
	if err := h.Submit(&req); !errors.Is(err, nvme.ErrInvalid) {
		t.Fatalf("no Done: %v, want ErrInvalid", err)
	}
	other := newRig(t, nvmetest.Config{}, nil)
	req.Done = func(*nvme.Request) {}
	if err := g.Submit(other.ctrl, &req); !errors.Is(err, nvme.ErrInvalid) {
		t.Fatalf("foreign controller: %v, want ErrInvalid", err)
	}
	if g.Handle(other.ctrl) != nil {
		t.Fatal("handle for a foreign controller")
	}
	// Not DMA memory: accepted by the ring, refused by the queue pair,
	// delivered through Done.
	xs := r.ios(1, nil)
	heap := make([]byte, 4096)
	if err := r.ns.Read(&xs[0].req, 0, heap, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Submit(&xs[0].req); err != nil {
		t.Fatalf("submit: %v", err)
	}
	waitAll(t, xs, 2*time.Second)
	if e := xs[0].err.Load(); e == nil || !errors.Is(*e, nvme.ErrNotDMA) {
		t.Fatalf("heap buffer: err %v, want ErrNotDMA", e)
	}
	if s := settle(t, g, 1); s.failed != 1 {
		t.Fatalf("failed counter %d, want 1", s.failed)
	}
	// After Stop: ErrStopped, and Done is not called.
	if err := g.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.ns.Read(&xs[0].req, 0, xs[0].buf, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Submit(&xs[0].req); !errors.Is(err, poller.ErrStopped) {
		t.Fatalf("after stop: %v, want ErrStopped", err)
	}
	time.Sleep(10 * time.Millisecond)
	if xs[0].done.Load() != 1 {
		t.Fatal("Done called for a refused request")
	}
}

// TestAllocs: a submission from another goroutine, through the ring and
// the poller, and its completion allocate nothing in steady state. The
// count comes from runtime.MemStats around many I/Os, as AllocsPerRun
// does, but without AllocsPerRun's GOMAXPROCS(1): a busy poller holds its P,
// so one P would leave the submitter waiting for preemption. Every
// goroutine's allocations count (the fake device's and the controller
// watcher's too), so 0 here means 0 on the whole path.
func TestAllocs(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	for _, o := range []poller.Options{
		{CPUs: []int{1}, Idle: poller.IdleBusy},
		{CPUs: []int{1}, Idle: poller.IdleAdaptive},
		{CPUs: []int{1}, RouteByCPU: false},
	} {
		g, err := poller.New([]*nvme.Controller{r.ctrl}, &o)
		if err != nil {
			t.Fatal(err)
		}
		h := g.Handle(r.ctrl)
		done := make(chan struct{}, 1)
		buf := r.buf(4096)
		req := &nvme.Request{Done: func(*nvme.Request) { done <- struct{}{} }}
		lba := uint64(0)
		one := func() {
			lba = (lba + 8) % 8192
			if err := r.ns.Read(req, lba, buf, 0); err != nil {
				t.Fatal(err)
			}
			if err := h.Submit(req); err != nil {
				t.Fatal(err)
			}
			<-done
		}
		for range 300 {
			one()
		}
		const runs = 1000
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for range runs {
			one()
		}
		runtime.ReadMemStats(&m1)
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		if req.Err != nil {
			t.Fatal(req.Err)
		}
		n := m1.Mallocs - m0.Mallocs
		t.Logf("idle %d roundrobin %v: %d allocations in %d I/Os", o.Idle, !o.RouteByCPU, n, runs)
		if n*10 >= runs { // anything per I/O would be >= runs
			t.Fatalf("idle %d: %d allocations in %d I/Os, want 0 per I/O", o.Idle, n, runs)
		}
	}
}

// TestConcurrentSubmitters: 8 goroutines submit at once to two pollers;
// every request completes once and the counters agree.
func TestConcurrentSubmitters(t *testing.T) {
	for _, o := range []poller.Options{
		{CPUs: []int{0, 1}},
		{CPUs: []int{0, 1}, RouteByCPU: false},
		{CPUs: []int{0, 1}, RingSize: 4, Full: poller.FullWait, QueueDepth: 4},
	} {
		t.Run(fmt.Sprintf("rr=%v,ring=%d", !o.RouteByCPU, o.RingSize), func(t *testing.T) {
			r := newRig(t, nvmetest.Config{}, nil)
			g := r.group(&o)
			h := g.Handle(r.ctrl)
			const goroutines, per, rounds = 8, 32, 20
			all := r.ios(goroutines*per, nil)
			var wg sync.WaitGroup
			var submitErrs atomic.Int32
			for gi := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					mine := all[gi*per : (gi+1)*per]
					for round := range rounds {
						for i, x := range mine {
							if err := r.ns.Read(&x.req, uint64(gi*per+i)*8, x.buf, 0); err != nil {
								submitErrs.Add(1)
								return
							}
							if err := h.Submit(&x.req); err != nil {
								submitErrs.Add(1)
								return
							}
						}
						for _, x := range mine {
							for x.done.Load() < int32(round+1) {
								time.Sleep(20 * time.Microsecond)
							}
						}
					}
				}()
			}
			wg.Wait()
			if n := submitErrs.Load(); n != 0 {
				t.Fatalf("%d submissions failed", n)
			}
			for _, x := range all {
				if x.done.Load() != rounds {
					t.Fatalf("io %d completed %d times, want %d", x.index, x.done.Load(), rounds)
				}
				if e := x.err.Load(); e != nil {
					t.Fatalf("io %d: %v", x.index, *e)
				}
			}
			want := uint64(goroutines * per * rounds)
			s := settle(t, g, want)
			if s.completed != want || s.taken+s.local != want || s.submitted != want || s.qcompleted != want || s.lat.Count != want {
				t.Fatalf("counters %+v, want %d", s, want)
			}
			if fs := r.fake.Stats().Commands(0x02); fs != want {
				t.Fatalf("device saw %d reads, want %d", fs, want)
			}
		})
	}
}

// TestResubmitFromDone: Done callbacks resubmit through the handle; the
// poller detects it runs them and submits directly.
func TestResubmitFromDone(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	// Detecting a resubmission from the poller's own Done takes CPU
	// routing; without it everything goes through the rings.
	g := r.group(&poller.Options{CPUs: []int{0, 1}, RouteByCPU: true})
	h := g.Handle(r.ctrl)
	const depth, total = 16, 4000
	var issued, completed atomic.Int64
	var failed atomic.Int64
	xs := r.ios(depth, func(x *io) {
		completed.Add(1)
		if issued.Load() >= total {
			return
		}
		issued.Add(1)
		if err := r.ns.Read(&x.req, x.lba, x.buf, 0); err != nil {
			failed.Add(1)
			return
		}
		if err := h.Submit(&x.req); err != nil {
			failed.Add(1)
		}
	})
	for i, x := range xs {
		x.lba = uint64(i * 8)
		issued.Add(1)
		if err := r.ns.Read(&x.req, x.lba, x.buf, 0); err != nil {
			t.Fatal(err)
		}
		if err := h.Submit(&x.req); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for completed.Load() < issued.Load() || issued.Load() < total {
		if time.Now().After(deadline) {
			t.Fatalf("issued %d completed %d", issued.Load(), completed.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d resubmissions failed", failed.Load())
	}
	s := settle(t, g, total)
	if s.completed != total || s.taken != depth || s.local != total-depth {
		t.Fatalf("completed %d taken %d local %d, want %d, %d, %d", s.completed, s.taken, s.local, total, depth, total-depth)
	}
}

// TestNowOncePerPass: Poller.Now reads the clock once per pass. Inside a
// Done callback it returns the same reading before and after a
// millisecond's sleep, a resubmission through SubmitLocal is stamped with
// it, and the next pass (the next completion at depth 1) has a later one.
func TestNowOncePerPass(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	g := r.group(&poller.Options{CPUs: []int{0}})
	p := g.Pollers()[0]
	const rounds = 20
	var (
		mu       sync.Mutex
		problems []string
		last     time.Duration
		n        int
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	finished := make(chan struct{})
	xs := r.ios(1, func(x *io) {
		a := p.Now()
		time.Sleep(time.Millisecond)
		if b := p.Now(); b != a {
			fail("round %d: Now %v, then %v in the same pass", n, a, b)
		}
		if fresh := poller.Monotonic(); fresh-a < time.Millisecond {
			fail("round %d: Monotonic %v is not a millisecond past the pass's reading %v", n, fresh, a)
		}
		if a <= last {
			fail("round %d: the pass's reading %v is not later than the last pass's %v", n, a, last)
		}
		last = a
		if n++; n == rounds {
			close(finished)
			return
		}
		if err := r.ns.Read(&x.req, 0, x.buf, 0); err != nil {
			fail("read: %v", err)
			return
		}
		if err := p.SubmitLocal(r.ctrl, &x.req); err != nil {
			fail("SubmitLocal: %v", err)
		}
	})
	if err := r.ns.Read(&xs[0].req, 0, xs[0].buf, 0); err != nil {
		t.Fatal(err)
	}
	if err := g.Handle(r.ctrl).Submit(&xs[0].req); err != nil {
		t.Fatal(err)
	}
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d of %d rounds in 10 s", n, rounds)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Fatal(strings.Join(problems, "\n"))
	}
	// Each resubmission was stamped with its pass's reading, which is at
	// least a millisecond (the sleep) before its completion: no latency
	// is under a millisecond.
	s := settle(t, g, rounds)
	if s.lat.Count != rounds || s.lat.Sum < uint64(rounds-1)*uint64(time.Millisecond) {
		t.Fatalf("latency histogram: %d completions summing %v, want %d summing at least %v",
			s.lat.Count, time.Duration(s.lat.Sum), rounds, time.Duration(rounds-1)*time.Millisecond)
	}
}

// TestBackpressure: a submitter much faster than a stalled device with a
// tiny queue and ring: FullFail returns ErrBusy, FullWait waits; nothing is
// lost either way.
func TestBackpressure(t *testing.T) {
	for _, full := range []poller.FullPolicy{poller.FullFail, poller.FullWait} {
		t.Run(fmt.Sprintf("full=%d", full), func(t *testing.T) {
			r := newRig(t, nvmetest.Config{}, nil)
			g := r.group(&poller.Options{CPUs: []int{1}, QueueDepth: 4, RingSize: 8, Full: full})
			h := g.Handle(r.ctrl)
			const n = 200
			xs := r.ios(n, nil)
			r.fake.Stall(50 * time.Millisecond)
			accepted, busy := 0, 0
			start := time.Now()
			for i := 0; i < n; {
				x := xs[i]
				if err := r.ns.Read(&x.req, uint64(i*8), x.buf, 0); err != nil {
					t.Fatal(err)
				}
				err := h.Submit(&x.req)
				switch {
				case err == nil:
					accepted++
					i++
				case errors.Is(err, poller.ErrBusy) && full == poller.FullFail:
					busy++
					time.Sleep(100 * time.Microsecond)
				default:
					t.Fatalf("submit %d: %v", i, err)
				}
			}
			waitAll(t, xs, 5*time.Second)
			for _, x := range xs {
				if x.done.Load() != 1 || x.err.Load() != nil {
					t.Fatalf("io %d: done %d err %v", x.index, x.done.Load(), x.err.Load())
				}
			}
			s := settle(t, g, n)
			if s.completed != n || s.fullWaits == 0 {
				t.Fatalf("completed %d full waits %d", s.completed, s.fullWaits)
			}
			if full == poller.FullFail {
				if busy == 0 || s.busy != uint64(busy) {
					t.Fatalf("ErrBusy %d times, counter %d", busy, s.busy)
				}
			} else if time.Since(start) < 40*time.Millisecond {
				t.Fatalf("FullWait returned before the stall ended")
			}
			t.Logf("full=%d: %d ErrBusy, %d full waits, %d accepted", full, busy, s.fullWaits, accepted)
		})
	}
}

// TestStopDrains: Stop with I/O in flight and a generous deadline
// completes everything successfully, once.
func TestStopDrains(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	g := r.group(&poller.Options{CPUs: []int{0, 1}, QueueDepth: 8, RingSize: 64})
	h := g.Handle(r.ctrl)
	xs := r.ios(100, nil)
	r.fake.Stall(30 * time.Millisecond)
	for i, x := range xs {
		r.ns.Read(&x.req, uint64(i*8), x.buf, 0)
		if err := h.Submit(&x.req); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := stopCtx(5 * time.Second)
	defer cancel()
	if err := g.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for _, x := range xs {
		if x.done.Load() != 1 || x.err.Load() != nil {
			t.Fatalf("io %d: done %d err %v", x.index, x.done.Load(), x.err.Load())
		}
	}
}

// TestStopDeadline: Stop whose context ends while the device holds
// everything: every request completes exactly once, with ErrStopped, and
// no goroutine is left (checked at cleanup).
func TestStopDeadline(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, &nvme.Options{Logf: t.Logf})
	g := r.group(&poller.Options{CPUs: []int{0, 1}, QueueDepth: 8, RingSize: 512})
	h := g.Handle(r.ctrl)
	xs := r.ios(300, nil)
	r.fake.DropCompletion(nvmetest.AnyIO(), 1<<30)
	for i, x := range xs {
		r.ns.Read(&x.req, uint64(i*8), x.buf, 0)
		if err := h.Submit(&x.req); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := stopCtx(50 * time.Millisecond)
	defer cancel()
	err := g.Stop(ctx)
	if !errors.Is(err, poller.ErrStopped) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stop: %v, want ErrStopped and DeadlineExceeded", err)
	}
	var onDevice, inRing int
	for _, x := range xs {
		if x.done.Load() != 1 {
			t.Fatalf("io %d completed %d times", x.index, x.done.Load())
		}
		e := x.err.Load()
		if e == nil || !errors.Is(*e, poller.ErrStopped) {
			t.Fatalf("io %d: err %v, want ErrStopped", x.index, errOf(e))
		}
		var se *poller.StopError
		if errors.As(*e, &se) {
			onDevice++
		} else {
			inRing++
		}
	}
	if onDevice == 0 || inRing == 0 {
		t.Fatalf("%d failed on the device, %d in the ring: want both", onDevice, inRing)
	}
	// Stop again: nil; Submit: ErrStopped.
	if err := g.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	for _, x := range xs {
		if x.done.Load() != 1 {
			t.Fatalf("io %d completed %d times after stop", x.index, x.done.Load())
		}
	}
	r.fake.ClearFaults()
}

// TestStatsWhileRunning reads snapshots concurrently with I/O: counters
// never go backwards and reading never stalls the poller.
func TestStatsWhileRunning(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	g := r.group(&poller.Options{CPUs: []int{0, 1}, StatsInterval: 100 * time.Microsecond})
	h := g.Handle(r.ctrl)
	stop := make(chan struct{})
	var readerErr atomic.Value
	var reads atomic.Int64
	go func() {
		var last totals
		for {
			select {
			case <-stop:
				return
			default:
			}
			s := sum(g.Stats())
			if s.completed < last.completed || s.submitted < last.submitted || s.lat.Count < last.lat.Count {
				readerErr.Store(fmt.Sprintf("went backwards: %+v after %+v", s, last))
			}
			if s.lat.Count > s.qcompleted {
				readerErr.Store(fmt.Sprintf("torn snapshot: %d latencies, %d completions", s.lat.Count, s.qcompleted))
			}
			last = s
			reads.Add(1)
		}
	}()
	xs := r.ios(32, nil)
	for round := 1; round <= 50; round++ {
		for i, x := range xs {
			r.ns.Read(&x.req, uint64(i*8), x.buf, 0)
			if err := h.Submit(&x.req); err != nil {
				t.Fatal(err)
			}
		}
		for _, x := range xs {
			for x.done.Load() < int32(round) {
				time.Sleep(10 * time.Microsecond)
			}
		}
	}
	close(stop)
	if v := readerErr.Load(); v != nil {
		t.Fatal(v)
	}
	if reads.Load() < 10 {
		t.Fatalf("only %d snapshots read", reads.Load())
	}
	s := settle(t, g, 50*32)
	if s.completed != 50*32 {
		t.Fatalf("completed %d", s.completed)
	}
}

// TestTwoControllers: one group, two controllers, each poller owns a
// queue pair on each; a controller with one queue serves from one poller.
func TestTwoControllers(t *testing.T) {
	a := newRig(t, nvmetest.Config{}, nil)
	b := newRig(t, nvmetest.Config{MaxQueuePairs: 1}, nil)
	before := 0
	g, err := poller.New([]*nvme.Controller{a.ctrl, b.ctrl}, &poller.Options{CPUs: []int{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	_ = before
	defer g.Close()
	qs := 0
	for _, p := range g.Stats() {
		qs += len(p.Queues)
	}
	if qs != 3 {
		t.Fatalf("%d queue pairs, want 3 (2 on a, 1 on b)", qs)
	}
	for _, rg := range []*rig{a, b} {
		h := g.Handle(rg.ctrl)
		xs := rg.ios(40, nil)
		for i, x := range xs {
			rg.ns.Read(&x.req, uint64(i*8), x.buf, 0)
			if err := h.Submit(&x.req); err != nil {
				t.Fatal(err)
			}
		}
		waitAll(t, xs, 5*time.Second)
		for _, x := range xs {
			if x.err.Load() != nil {
				t.Fatalf("io %d: %v", x.index, *x.err.Load())
			}
		}
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestIdleCPU measures the CPU time an idle poller thread uses over a
// second under each idle policy (getrusage RUSAGE_THREAD, published by the
// poller).
func TestIdleCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 2 s")
	}
	r := newRig(t, nvmetest.Config{}, nil)
	for _, idle := range []poller.IdlePolicy{poller.IdleBusy, poller.IdleAdaptive} {
		g, err := poller.New([]*nvme.Controller{r.ctrl}, &poller.Options{CPUs: []int{1}, Idle: idle})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // adaptive: past spin and yield, parked
		s0 := g.Pollers()[0].Stats()
		t0 := time.Now()
		time.Sleep(time.Second)
		if idle == poller.IdleAdaptive {
			// A parked poller publishes nothing: wake it to read its clock.
			xs := r.ios(1, nil)
			r.ns.Read(&xs[0].req, 0, xs[0].buf, 0)
			g.Handle(r.ctrl).Submit(&xs[0].req)
			waitAll(t, xs, time.Second)
		}
		var s1 poller.PollerStats
		for s1 = g.Pollers()[0].Stats(); s1.At <= s0.At+time.Second/2; s1 = g.Pollers()[0].Stats() {
			time.Sleep(time.Millisecond)
		}
		wall := time.Since(t0)
		g.Close()
		frac := float64(s1.CPUTime-s0.CPUTime) / float64(wall)
		t.Logf("idle policy %d: poller thread used %.1f%% of a CPU over %v (parks %d, yields %d)",
			idle, 100*frac, wall.Round(time.Millisecond), s1.Parks-s0.Parks, s1.Yields-s0.Yields)
		switch idle {
		case poller.IdleBusy:
			if frac < 0.3 {
				t.Errorf("busy poller used only %.0f%% of a CPU", 100*frac)
			}
		case poller.IdleAdaptive:
			if frac > 0.05 {
				t.Errorf("parked poller used %.1f%% of a CPU", 100*frac)
			}
		}
	}
}

// TestWakeLatency: the first submission to a parked poller completes, and
// its latency (wake-up included) is measured.
func TestWakeLatency(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	g := r.group(&poller.Options{CPUs: []int{1}, SpinTime: time.Microsecond, YieldTime: time.Microsecond})
	h := g.Handle(r.ctrl)
	xs := r.ios(1, nil)
	var worst time.Duration
	for i := range 20 {
		time.Sleep(2 * time.Millisecond)
		t0 := time.Now()
		r.ns.Read(&xs[0].req, 0, xs[0].buf, 0)
		if err := h.Submit(&xs[0].req); err != nil {
			t.Fatal(err)
		}
		for xs[0].done.Load() != int32(i+1) {
			if time.Since(t0) > time.Second {
				t.Fatalf("submission %d to a parked poller not completed within 1 s", i)
			}
		}
		worst = max(worst, time.Since(t0))
	}
	st := g.Stats()[0]
	if st.Parks < 10 {
		t.Fatalf("poller parked %d times, want about 20", st.Parks)
	}
	t.Logf("parked poller: %d parks, worst submit-to-done %v, latency p50 %v", st.Parks, worst, st.Queues[0].Latency.Quantile(0.5))
}

// TestSubmitInFlight: a request submitted again while a poller still holds
// it is refused with ErrBusy on the direct path (and counted as misuse),
// completes once, and its caller's Done is back in place afterwards: it
// can be submitted again once it completed.
func TestSubmitInFlight(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	// b, at block 64, takes 200 ms on the device: a completes first.
	r.fake.Slow(nvmetest.Match{LBA: 64, Blocks: 1}, 200*time.Millisecond, 1)
	g := r.group(&poller.Options{CPUs: []int{0}})
	p, h := g.Pollers()[0], g.Handle(r.ctrl)
	xs := r.ios(2, nil)
	a, b := xs[0], xs[1]
	again := make(chan error, 1)
	a.req.Done = func(*nvme.Request) { again <- p.SubmitLocal(r.ctrl, &b.req) }
	if err := r.ns.Read(&b.req, 64, b.buf, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Submit(&b.req); err != nil {
		t.Fatal(err)
	}
	if err := r.ns.Read(&a.req, 0, a.buf, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Submit(&a.req); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-again:
		if !errors.Is(err, nvme.ErrBusy) {
			t.Fatalf("SubmitLocal of a request in flight: %v, want ErrBusy", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a did not complete")
	}
	waitAll(t, []*io{b}, 5*time.Second)
	time.Sleep(20 * time.Millisecond)
	if n := b.done.Load(); n != 1 {
		t.Fatalf("b completed %d times, want 1", n)
	}
	if s := p.Stats(); s.Misuse != 1 {
		t.Errorf("misuse %d, want 1", s.Misuse)
	}
	if err := h.Submit(&b.req); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.done.Load() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("b's second submission: %d completions", b.done.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if err := errOf(b.err.Load()); err != nil {
		t.Fatalf("b: %v", err)
	}
}
