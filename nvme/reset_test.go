package nvme_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// TestResetRunsNothingTwice: a reset reaps what the controller completed
// before it was disabled and resubmits only what had no completion, so
// no command runs twice: when the reset lands before the owner polled,
// in the middle of a batch of completions (from a Done callback), and
// while the device still holds commands whose completions are pending.
// The fake counts the executions of each write.
func TestResetRunsNothingTwice(t *testing.T) {
	// More than one Poll reaps (128), so a reset from a Done callback
	// leaves completions in the queue.
	const n = 200
	for _, tc := range []struct {
		name    string
		latency nvmetest.Latency
		// run submits the writes, polls as the case wants and resets
		// at its moment; it returns when every write completed.
		run func(t *testing.T, r *rig, q *nvme.QueuePair, submit func(), done func() int)
	}{
		{"before a poll", nvmetest.Fixed(0), func(t *testing.T, r *rig, q *nvme.QueuePair, submit func(), done func() int) {
			submit()
			q.Ring()
			waitExecuted(t, r, n)
			if err := r.ctrl.Reset(); err != nil {
				t.Fatal(err)
			}
			pollUntil(t, q, 5*time.Second, func() bool { return done() == n })
			if s := q.Stats(); s.Requeued != 0 {
				t.Errorf("%d commands requeued; every one had completed before the reset", s.Requeued)
			}
		}},
		{"mid-batch", nvmetest.Fixed(0), func(t *testing.T, r *rig, q *nvme.QueuePair, submit func(), done func() int) {
			submit()
			q.Ring()
			waitExecuted(t, r, n)
			pollUntil(t, q, 5*time.Second, func() bool { return done() == n })
		}},
		{"completions pending", nvmetest.Uniform(0, 30*time.Millisecond), func(t *testing.T, r *rig, q *nvme.QueuePair, submit func(), done func() int) {
			submit()
			pollUntil(t, q, 5*time.Second, func() bool { return done() >= n/4 })
			// Stop polling while the device completes more: the reset
			// lands with completions posted and not reaped, and (most
			// likely) commands the device still holds.
			waitExecuted(t, r, n/2)
			if err := r.ctrl.Reset(); err != nil {
				t.Fatal(err)
			}
			pollUntil(t, q, 5*time.Second, func() bool { return done() == n })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smallNS()
			cfg.Latency = tc.latency
			r := newRig(t, cfg, &faultOpts)
			q, ns := r.qp(256), r.ns(1)
			b := r.buf(n * 512)
			pat(b, 41)
			counts := make([]*nvmetest.Counter, n)
			for i := range counts {
				counts[i] = r.fake.Count(nvmetest.IO(spec.IOWrite).Range(uint64(i), 1))
			}
			reqs := make([]nvme.Request, n)
			doneCount := make([]int, n)
			completed := 0
			for i := range reqs {
				reqs[i].Private = i
				reqs[i].Done = func(req *nvme.Request) {
					doneCount[req.Private.(int)]++
					completed++
					if tc.name == "mid-batch" && completed == 5 {
						// The reset lands with 195 completions
						// still in the completion queue, 72 of
						// them beyond this Poll's batch.
						if err := r.ctrl.Reset(); err != nil {
							t.Error(err)
						}
					}
				}
			}
			submit := func() {
				for i := range reqs {
					if err := ns.Write(&reqs[i], uint64(i), b[i*512:(i+1)*512], 0); err != nil {
						t.Fatal(err)
					}
					if err := q.Submit(&reqs[i]); err != nil {
						t.Fatal(err)
					}
				}
			}
			tc.run(t, r, q, submit, func() int { return completed })
			for i := range reqs {
				if doneCount[i] != 1 || reqs[i].Err != nil {
					t.Errorf("write %d: done %d times, err %v", i, doneCount[i], reqs[i].Err)
				}
				if c := counts[i].Load(); c != 1 {
					t.Errorf("write %d ran %d times on the device", i, c)
				}
			}
			if s := r.fake.Stats(); s.Resets != 1 {
				t.Errorf("%d resets, want 1", s.Resets)
			}
			got := r.buf(n * 512)
			if err := ns.ReadAt(q, got, 0); err != nil {
				t.Fatal(err)
			}
			checkData(t, "after the reset", got, b)
		})
	}
}

// waitExecuted waits until the fake executed n I/O commands.
func waitExecuted(t *testing.T, r *rig, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.fake.Stats().TotalIO() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the device executed %d of %d commands", r.fake.Stats().TotalIO(), n)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// TestResetStorm: resets one after another (a millisecond apart) while a
// queue pair does I/O, at least 30 of them, so that some land while the
// queue pair reaps or recreates its queues after the previous one: it
// starts over at its next poll instead of giving up, every write
// completes once and successfully, and the data is intact.
func TestResetStorm(t *testing.T) {
	opts := faultOpts
	opts.CommandTimeout = 10 * time.Second
	r := newRig(t, smallNS(), &opts)
	q, ns := r.qp(32), r.ns(1)
	const n = 1000
	b := r.buf(n * 512)
	stop := make(chan struct{})
	stopped := make(chan struct{})
	var resets atomic.Int64
	var resetErr atomic.Pointer[error]
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := r.ctrl.Reset(); err != nil {
				resetErr.Store(&err)
				return
			}
			resets.Add(1)
			time.Sleep(time.Millisecond)
		}
	}()
	// The storm ends before the rig's cleanup closes the controller:
	// the test is about resets under I/O, not about a Close racing one.
	defer func() { close(stop); <-stopped }()
	reqs := make([]nvme.Request, n)
	deadline := time.Now().Add(60 * time.Second)
	for round := 0; round == 0 || resets.Load() < 30; round++ {
		pat(b, 100+round)
		done := make([]int, n)
		next, finished := 0, 0
		for finished < n {
			if p := resetErr.Load(); p != nil {
				t.Fatalf("reset: %v", *p)
			}
			if next < n && q.InFlight()+q.Waiting() < 24 {
				i := next
				next++
				reqs[i].Private = i
				reqs[i].Done = func(req *nvme.Request) { done[req.Private.(int)]++; finished++ }
				if err := ns.Write(&reqs[i], uint64(i), b[i*512:(i+1)*512], 0); err != nil {
					t.Fatal(err)
				}
				if err := q.Submit(&reqs[i]); err != nil {
					t.Fatalf("round %d: submit %d: %v", round, i, err)
				}
				continue
			}
			q.Poll()
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d of %d done after %d resets; queue %+v", round, finished, n, resets.Load(), q.Stats())
			}
		}
		for i := range reqs {
			if done[i] != 1 || reqs[i].Err != nil {
				t.Fatalf("round %d: write %d: done %d times, err %v", round, i, done[i], reqs[i].Err)
			}
		}
	}
	t.Logf("%d resets; queue %+v", resets.Load(), q.Stats())
	got := r.buf(n * 512)
	for off := 0; off < n*512; off += 64 << 10 {
		end := min(off+64<<10, n*512)
		if err := ns.ReadAt(q, got[off:end], uint64(off/512)); err != nil {
			t.Fatal(err)
		}
	}
	checkData(t, "after the reset storm", got, b)
}
