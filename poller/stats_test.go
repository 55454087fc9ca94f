package poller_test

import (
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// TestOpAndStatusCounts issues writes, reads (two failing with an injected
// media error), a flush, and a read the device never answers (failed by a
// stop past its deadline), and checks the queue's Ops and Statuses.
func TestOpAndStatusCounts(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, &nvme.Options{Logf: t.Logf})
	g := r.group(&poller.Options{CPUs: []int{0}, StatsInterval: time.Millisecond})
	h := g.Handle(r.ctrl)
	submit := func(xs []*io, build func(x *io) error) {
		t.Helper()
		for _, x := range xs {
			if err := build(x); err != nil {
				t.Fatal(err)
			}
			if err := h.Submit(&x.req); err != nil {
				t.Fatal(err)
			}
		}
		waitAll(t, xs, 5*time.Second)
	}
	const writes, reads, badReads = 5, 7, 2
	submit(r.ios(writes, nil), func(x *io) error { return r.ns.Write(&x.req, uint64(x.index*8), x.buf, 0) })
	r.fake.InjectStatus(nvmetest.IO(spec.IORead), spec.SCTMediaError, spec.SCUnrecoveredReadError, badReads)
	rs := r.ios(reads, nil)
	submit(rs, func(x *io) error { return r.ns.Read(&x.req, uint64(x.index*8), x.buf[:2048], 0) })
	failed := 0
	for _, x := range rs {
		if x.err.Load() != nil {
			failed++
		}
	}
	if failed != badReads {
		t.Fatalf("%d reads failed, want %d", failed, badReads)
	}
	submit(r.ios(1, nil), func(x *io) error { return r.ns.Flush(&x.req) })

	s := settle(t, g, writes+reads+1)
	q := g.Stats()[0].Queues[0]
	want := [poller.NumOps]poller.OpStats{
		poller.OpRead:  {Commands: reads, Bytes: reads * 2048},
		poller.OpWrite: {Commands: writes, Bytes: writes * 4096},
		poller.OpOther: {Commands: 1},
	}
	var lat poller.OpLatency
	for k := range q.Ops {
		o := q.Ops[k]
		if o.Commands != want[k].Commands || o.Bytes != want[k].Bytes {
			t.Errorf("ops %+v, want %+v (totals %+v)", q.Ops, want, s)
		}
		// Each operation's latency holds its own completions; together
		// they are the queue pair's latency, value for value.
		var n uint64
		for _, b := range o.Latency.Buckets {
			n += b
		}
		if o.Latency.Count != o.Commands || n != o.Commands {
			t.Errorf("op %d: latency count %d, buckets %d, commands %d", k, o.Latency.Count, n, o.Commands)
		}
		lat.Count += o.Latency.Count
		lat.Sum += o.Latency.Sum
	}
	if lat.Count != q.Latency.Count || lat.Sum != q.Latency.Sum {
		t.Errorf("per-operation latency: %d values, sum %d ns; the queue pair's: %d, %d", lat.Count, lat.Sum, q.Latency.Count, q.Latency.Sum)
	}
	media := spec.MakeStatus(spec.SCTMediaError, spec.SCUnrecoveredReadError)
	if len(q.Statuses) != 1 || q.Statuses[0] != (poller.StatusCount{Status: media, Count: badReads}) || q.OtherStatuses != 0 {
		t.Errorf("statuses %+v other %d, want %d x %v", q.Statuses, q.OtherStatuses, badReads, media)
	}

	// A read the device holds, failed by the poller's stop: a driver error.
	r.fake.DropCompletion(nvmetest.AnyIO(), 1)
	lost := r.ios(1, nil)[0]
	if err := r.ns.Read(&lost.req, 0, lost.buf, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Submit(&lost.req); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	ctx, cancel := stopCtx(20 * time.Millisecond)
	defer cancel()
	if err := g.Stop(ctx); err == nil {
		t.Fatal("stop with a lost command: nil error")
	}
	if lost.done.Load() != 1 || lost.err.Load() == nil {
		t.Fatalf("lost read: done %d err %v", lost.done.Load(), errOf(lost.err.Load()))
	}
	q = g.Stats()[0].Queues[0]
	if q.Ops[poller.OpRead].Commands != reads+1 {
		t.Errorf("after stop: %d reads, want %d", q.Ops[poller.OpRead].Commands, reads+1)
	}
	wantSt := []poller.StatusCount{{Status: media, Count: badReads}, {Status: poller.StatusDriver, Count: 1}}
	if len(q.Statuses) != 2 || q.Statuses[0] != wantSt[0] || q.Statuses[1] != wantSt[1] {
		t.Errorf("after stop: statuses %+v, want %+v", q.Statuses, wantSt)
	}
	r.fake.ClearFaults()
}

// TestHistogramRecord: Record puts the lowest value of every bucket in that
// bucket, the value just below it in the one before, and a negative
// latency in bucket 0, with Count and Sum kept.
func TestHistogramRecord(t *testing.T) {
	var h poller.Histogram
	var sum uint64
	for i := 1; i < poller.NumBuckets; i++ {
		lo := poller.BucketLow(i)
		h.Record(time.Duration(lo))
		h.Record(time.Duration(lo - 1))
		sum += 2*lo - 1
		if h.Buckets[i] != 1 {
			t.Fatalf("bucket %d (from %d ns) holds %d after recording %d ns, want 1", i, lo, h.Buckets[i], lo)
		}
	}
	h.Record(-time.Second)
	if h.Buckets[0] != 2 { // 0 ns (BucketLow(1)-1) and the negative one
		t.Fatalf("bucket 0 holds %d, want 2", h.Buckets[0])
	}
	if want := uint64(2*(poller.NumBuckets-1) + 1); h.Count != want || h.Sum != sum {
		t.Fatalf("count %d sum %d, want %d and %d", h.Count, h.Sum, want, sum)
	}
}
