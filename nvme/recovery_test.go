package nvme_test

import (
	"errors"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

// TestRecoveryBound: a controller that stops completing anything (admin
// commands and aborts included) with 1023 reads in flight on a
// depth-1024 queue. Every read is resolved (here: failed with ErrTimeout,
// since all were late) within CommandTimeout + AbortTimeout +
// AdminTimeout + the controller's reset time, at most ACL+1 aborts are
// ever outstanding, and the pending reset supersedes the aborts still
// queued. The figures are logged (go test -run TestRecoveryBound -v).
func TestRecoveryBound(t *testing.T) {
	opts := nvme.Options{
		CommandTimeout: 20 * time.Millisecond,
		AbortTimeout:   50 * time.Millisecond,
		AdminTimeout:   500 * time.Millisecond,
		WatchInterval:  2 * time.Millisecond,
	}
	r := newRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 16}}}, &opts)
	q, ns := r.qp(1024), r.ns(1)
	const n = 1023
	b := r.buf(n * 512)
	r.fake.Hang()
	reqs := make([]nvme.Request, n)
	start := make([]time.Time, n)
	took := make([]time.Duration, n)
	done := 0
	for i := range reqs {
		reqs[i].Private = i
		reqs[i].Done = func(req *nvme.Request) {
			i := req.Private.(int)
			took[i] = time.Since(start[i])
			done++
		}
		if err := ns.Read(&reqs[i], uint64(i), b[i*512:(i+1)*512], 0); err != nil {
			t.Fatal(err)
		}
		start[i] = time.Now()
		if err := q.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	pollUntil(t, q, 30*time.Second, func() bool { return done == n })
	var worst time.Duration
	for i := range reqs {
		worst = max(worst, took[i])
		if !errors.Is(reqs[i].Err, nvme.ErrTimeout) {
			t.Errorf("read %d: %v, want ErrTimeout", i, reqs[i].Err)
		}
	}
	rs := r.ctrl.RecoveryStats()
	bound := opts.CommandTimeout + opts.AbortTimeout + opts.AdminTimeout + rs.MaxResetTime
	t.Logf("%d reads on a hung controller: the last resolved %v after its submission; bound %v (CommandTimeout %v + AbortTimeout %v + AdminTimeout %v + reset %v)",
		n, worst.Round(time.Microsecond), bound.Round(time.Microsecond), opts.CommandTimeout, opts.AbortTimeout, opts.AdminTimeout, rs.MaxResetTime.Round(time.Microsecond))
	t.Logf("recovery: %+v", rs)
	if worst > bound {
		t.Errorf("a read took %v to resolve, beyond the bound %v", worst, bound)
	}
	if rs.Resets < 1 || rs.MaxAborts > rs.AbortLimit || rs.Aborts > uint64(rs.AbortLimit) {
		t.Errorf("resets %d, aborts sent %d, at most %d outstanding: want a reset, and no more than ACL+1 (%d) aborts",
			rs.Resets, rs.Aborts, rs.MaxAborts, rs.AbortLimit)
	}
	// The controller works again.
	if err := ns.ReadAt(q, b[:512], 0); err != nil {
		t.Fatalf("read after recovery: %v", err)
	}
}

// TestFatalStatusNotBehindAbort: while the aborts the watcher sent hang
// (AbortTimeout and AdminTimeout 5 s), a controller fatal status is seen
// and reset within a few watch intervals, not after an abort gave up.
func TestFatalStatusNotBehindAbort(t *testing.T) {
	opts := nvme.Options{
		CommandTimeout: 20 * time.Millisecond,
		AbortTimeout:   5 * time.Second,
		AdminTimeout:   5 * time.Second,
		WatchInterval:  2 * time.Millisecond,
	}
	r := newRig(t, smallNS(), &opts)
	q, ns := r.qp(16), r.ns(1)
	b := r.buf(8 * 512)
	r.fake.Hang()
	reqs := make([]nvme.Request, 8)
	done := 0
	for i := range reqs {
		reqs[i].Done = func(*nvme.Request) { done++ }
		if err := ns.Read(&reqs[i], uint64(i), b[i*512:(i+1)*512], 0); err != nil {
			t.Fatal(err)
		}
		if err := q.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	pollUntil(t, q, 5*time.Second, func() bool { return r.ctrl.RecoveryStats().Aborts > 0 })
	start := time.Now()
	r.fake.FatalStatus()
	pollUntil(t, q, 10*time.Second, func() bool { return r.ctrl.RecoveryStats().Resets > 0 })
	if d := time.Since(start); d > time.Second {
		t.Errorf("the fatal status was acted on after %v, behind the hung abort", d)
	}
	pollUntil(t, q, 5*time.Second, func() bool { return done == len(reqs) })
}
