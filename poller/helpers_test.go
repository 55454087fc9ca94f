package poller_test

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// rig is a driver on a fake controller.
type rig struct {
	t    testing.TB
	fake *nvmetest.Controller
	mem  *dma.Allocator
	ctrl *nvme.Controller
	ns   *nvme.Namespace
}

func newRig(t testing.TB, cfg nvmetest.Config, opts *nvme.Options) *rig {
	t.Helper()
	tr := testrig.Open(t, cfg, opts)
	r := &rig{t: t, fake: tr.Fake, mem: tr.Mem, ctrl: tr.Ctrl}
	var err error
	if r.ns, err = r.ctrl.Namespace(1); err != nil {
		t.Fatal(err)
	}
	return r
}

// buf allocates n bytes of DMA memory, freed at cleanup.
func (r *rig) buf(n int) []byte {
	r.t.Helper()
	b, err := r.mem.Alloc(n)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { r.mem.Free(b) })
	return b.Bytes
}

// group starts a Group on the rig's controller, stopped at cleanup
// (before the controller closes) with a check that no goroutine is left.
func (r *rig) group(opts *poller.Options) *poller.Group {
	r.t.Helper()
	before := runtime.NumGoroutine()
	g, err := poller.New([]*nvme.Controller{r.ctrl}, opts)
	if err != nil {
		r.t.Fatalf("poller.New: %v", err)
	}
	r.t.Cleanup(func() {
		if err := g.Close(); err != nil {
			r.t.Errorf("group close: %v", err)
		}
		checkGoroutines(r.t, before)
	})
	return g
}

// checkGoroutines waits briefly for the goroutine count to fall back to n.
func checkGoroutines(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Errorf("%d goroutines left, want %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// io is a request with its own 4 KiB buffer and a completion count.
type io struct {
	req   nvme.Request
	buf   []byte
	done  atomic.Int32
	err   atomic.Pointer[error]
	lba   uint64
	index int
}

// ios makes n requests whose Done counts completions and records errors,
// then calls after (if not nil) on the poller goroutine.
func (r *rig) ios(n int, after func(*io)) []*io {
	mem := r.buf(n * 4096)
	out := make([]*io, n)
	for i := range out {
		x := &io{buf: mem[i*4096 : (i+1)*4096 : (i+1)*4096], index: i}
		x.req.Done = func(q *nvme.Request) {
			if q.Err != nil {
				e := q.Err
				x.err.Store(&e)
			}
			x.done.Add(1)
			if after != nil {
				after(x)
			}
		}
		out[i] = x
	}
	return out
}

// waitAll waits until every io completed at least once.
func waitAll(t testing.TB, xs []*io, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, x := range xs {
		for x.done.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("io %d not completed within %v", x.index, d)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}

func stopCtx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// totals sums the counters of every poller.
type totals struct {
	taken, local, completed, failed, submitted, qcompleted, fullWaits, busy, inflight uint64
	lat                                                                               poller.Histogram
}

func sum(stats []poller.PollerStats) totals {
	var s totals
	for _, p := range stats {
		s.taken += p.Taken
		s.local += p.Local
		s.completed += p.Completed
		s.failed += p.Failed
		s.fullWaits += p.FullWaits
		s.busy += p.Busy
		s.inflight += p.InFlight
		for _, q := range p.Queues {
			s.submitted += q.Submitted
			s.qcompleted += q.Completed
			s.lat.Add(&q.Latency)
		}
	}
	return s
}

// settle waits until the published counters show n completions (the
// pollers publish every StatsInterval).
func settle(t testing.TB, g *poller.Group, n uint64) totals {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		s := sum(g.Stats())
		if s.completed >= n || time.Now().After(deadline) {
			return s
		}
		time.Sleep(time.Millisecond)
	}
}

func errOf(e *error) error {
	if e == nil {
		return nil
	}
	return *e
}

// readChain runs reads back to back on one request: each is submitted
// again (through Handle.Submit) from the Done of the one before, so the
// poller reaps every one by polling if it polls. Read k of a run of n
// goes to block lba(n-k); each, if not nil, runs in every successful
// Done first (on the poller goroutine).
type readChain struct {
	t    testing.TB
	h    *poller.Handle
	ns   *nvme.Namespace
	req  nvme.Request
	buf  []byte
	lba  func(left int32) uint64
	each func()
	left atomic.Int32
	done chan error
}

func newReadChain(t testing.TB, h *poller.Handle, ns *nvme.Namespace, buf []byte, lba func(left int32) uint64, each func()) *readChain {
	c := &readChain{t: t, h: h, ns: ns, buf: buf, lba: lba, each: each, done: make(chan error, 1)}
	c.req.Done = func(r *nvme.Request) {
		if r.Err != nil {
			c.done <- r.Err
			return
		}
		if c.each != nil {
			c.each()
		}
		if c.left.Add(-1) <= 0 {
			c.done <- nil
			return
		}
		err := c.ns.Read(r, c.lba(c.left.Load()), c.buf, 0)
		if err == nil {
			err = c.h.Submit(r)
		}
		if err != nil {
			c.done <- err
		}
	}
	return c
}

// run does n reads and fails the test on an error or if they take longer
// than limit.
func (c *readChain) run(n int32, limit time.Duration) {
	c.t.Helper()
	c.left.Store(n)
	if err := c.ns.Read(&c.req, 0, c.buf, 0); err != nil {
		c.t.Fatal(err)
	}
	if err := c.h.Submit(&c.req); err != nil {
		c.t.Fatal(err)
	}
	select {
	case err := <-c.done:
		if err != nil {
			c.t.Fatal(err)
		}
	case <-time.After(limit):
		c.t.Fatalf("%d of %d reads left after %v", c.left.Load(), n, limit)
	}
}
