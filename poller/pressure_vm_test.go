package poller_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// qd1Result is one QD1 run of resubmissions from Done.
type qd1Result struct {
	n          int64
	st         poller.PollerStats
	wall, cpu  time.Duration
	p50, mean  time.Duration
	taken, loc uint64
}

// qd1Run reads 4 KiB at depth 1 for d on a one-poller group with opts,
// each read resubmitted with Handle.Submit from its own Done, and checks
// that every read completed without error and went the direct way.
func qd1Run(t *testing.T, c *nvme.Controller, ns *nvme.Namespace, opts poller.Options, d time.Duration) qd1Result {
	t.Helper()
	g, err := poller.New([]*nvme.Controller{c}, &opts)
	if err != nil {
		t.Fatal(err)
	}
	h := g.Handle(c)
	b, err := c.Memory().Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Memory().Free(b)
	var stop atomic.Bool
	var n atomic.Int64
	fin := make(chan error, 1)
	span := ns.Blocks()/8 - 1
	lba := uint64(0)
	req := &nvme.Request{}
	req.Done = func(r *nvme.Request) {
		if r.Err != nil {
			fin <- r.Err
			return
		}
		n.Add(1)
		if stop.Load() {
			fin <- nil
			return
		}
		lba = (lba*2862933555777941757 + 3037000493) % span
		if err := ns.Read(r, lba*8, b.Bytes, 0); err != nil {
			fin <- err
			return
		}
		if err := h.Submit(r); err != nil {
			fin <- err
		}
	}
	if err := ns.Read(req, 0, b.Bytes, 0); err != nil {
		t.Fatal(err)
	}
	s0 := g.Pollers()[0].Stats()
	t0 := time.Now()
	if err := h.Submit(req); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	stop.Store(true)
	select {
	case err := <-fin:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the last read did not complete")
	}
	wall := time.Since(t0)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	s1 := g.Pollers()[0].Stats() // published at exit
	lat := &s1.Queues[0].Latency
	res := qd1Result{n: n.Load(), st: s1, wall: wall, cpu: s1.CPUTime - s0.CPUTime,
		p50: lat.Quantile(0.5), mean: lat.Mean(), taken: s1.Taken, loc: s1.Local}
	if uint64(res.n) != s1.Completed || res.taken != 1 || res.loc != uint64(res.n)-1 {
		t.Fatalf("%d reads, poller completed %d, ring %d, direct %d: want all but the first direct", res.n, s1.Completed, res.taken, res.loc)
	}
	return res
}

// TestVMQD1Direct: through VFIO, resubmissions from Done take the direct
// path, and an adaptive poller with a request in flight never gives its
// thread up before SpinTime+YieldTime (here 10 s): no runtime.Gosched, no
// nap. It logs the QD1 latency of IdleBusy and IdleAdaptive (default
// times) side by side, the adaptive poller's CPU time while busy, and the
// CPU time of a parked one.
func TestVMQD1Direct(t *testing.T) {
	env := vmtest.Require(t, "null")
	c, ns := vmOpen(t, env)
	r := qd1Run(t, c, ns, poller.Options{CPUs: []int{1}, YieldTime: 10 * time.Second}, time.Second)
	if r.st.Yields != 0 {
		t.Fatalf("the adaptive poller gave its thread up %d times with a read in flight", r.st.Yields)
	}
	var busy, adaptive []qd1Result
	for range 3 {
		busy = append(busy, qd1Run(t, c, ns, poller.Options{CPUs: []int{1}, Idle: poller.IdleBusy}, time.Second))
		adaptive = append(adaptive, qd1Run(t, c, ns, poller.Options{CPUs: []int{1}}, time.Second))
	}
	for i := range busy {
		b, a := busy[i], adaptive[i]
		t.Logf("QD1 4 KiB randread, null-co: busy %d reads p50 %v mean %v cpu %.0f%%; adaptive %d reads p50 %v mean %v cpu %.0f%%, naps %d",
			b.n, b.p50, b.mean, 100*b.cpu.Seconds()/b.wall.Seconds(), a.n, a.p50, a.mean, 100*a.cpu.Seconds()/a.wall.Seconds(), a.st.Yields)
	}
	// Idle: an adaptive poller with nothing to do parks.
	g, err := poller.New([]*nvme.Controller{c}, &poller.Options{CPUs: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	s0 := g.Pollers()[0].Stats()
	time.Sleep(time.Second)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	s1 := g.Pollers()[0].Stats()
	frac := (s1.CPUTime - s0.CPUTime).Seconds() / (s1.At - s0.At).Seconds()
	t.Logf("idle adaptive poller: %.2f%% of a CPU over %v, %d parks", 100*frac, (s1.At - s0.At).Round(time.Millisecond), s1.Parks)
	if frac > 0.05 {
		t.Fatalf("an idle adaptive poller used %.1f%% of a CPU", 100*frac)
	}
}
