package nvme_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

var faultOpts = nvme.Options{
	CommandTimeout: 200 * time.Millisecond,
	AbortTimeout:   200 * time.Millisecond,
	WatchInterval:  2 * time.Millisecond,
	IOQueueDepth:   16,
}

func smallNS() nvmetest.Config {
	return nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}}
}

func TestInjectedStatus(t *testing.T) {
	r := newRig(t, smallNS(), nil)
	q, ns := r.qp(8), r.ns(1)
	b := r.buf(512)
	tests := []struct {
		sct, sc uint8
		name    string
		is      error
		not     error
	}{
		{spec.SCTMediaError, spec.SCUnrecoveredReadError, "Unrecovered Read Error", nvme.ErrMedia, nvme.ErrLBARange},
		{spec.SCTGeneric, spec.SCLBAOutOfRange, "LBA Out of Range", nvme.ErrLBARange, nvme.ErrMedia},
		{spec.SCTGeneric, spec.SCAbortRequested, "Abort", nvme.ErrAborted, nvme.ErrMedia},
		{spec.SCTGeneric, spec.SCInvalidNamespace, "Invalid Namespace", nvme.ErrNoNamespace, nvme.ErrMedia},
		{spec.SCTGeneric, spec.SCInvalidField, "Invalid Field", nil, nvme.ErrMedia},
	}
	for _, tt := range tests {
		r.fake.InjectStatus(nvmetest.IO(spec.IORead), tt.sct, tt.sc, 1)
		err := ns.ReadAt(q, b, 3)
		var se *nvme.StatusError
		if !errors.As(err, &se) {
			t.Fatalf("%s: %v is not a *StatusError", tt.name, err)
		}
		if se.SCT != tt.sct || se.SC != tt.sc || se.Opcode != spec.IORead || se.Admin {
			t.Errorf("%s: %+v", tt.name, se)
		}
		if !strings.Contains(se.Name(), tt.name) || !strings.Contains(err.Error(), "Read") || !strings.Contains(err.Error(), tt.name) {
			t.Errorf("error %q (name %q) should name the opcode and %q", err, se.Name(), tt.name)
		}
		if tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("%s: not errors.Is %v", tt.name, tt.is)
		}
		if errors.Is(err, tt.not) {
			t.Errorf("%s: errors.Is %v", tt.name, tt.not)
		}
		// The injection was for one command only.
		if err := ns.ReadAt(q, b, 3); err != nil {
			t.Fatalf("%s: next read: %v", tt.name, err)
		}
	}
	if got := r.fake.Stats().Injected; got != uint64(len(tests)) {
		t.Errorf("fake injected %d, want %d", got, len(tests))
	}
}

// runMany submits n requests built by build and polls until all are
// done, checking that each Done runs exactly once.
func runMany(t *testing.T, q *nvme.QueuePair, reqs []nvme.Request, build func(i int, req *nvme.Request) error, within time.Duration) []int {
	t.Helper()
	done := make([]int, len(reqs))
	for i := range reqs {
		reqs[i].Private = i
		reqs[i].Done = func(req *nvme.Request) { done[req.Private.(int)]++ }
		if err := build(i, &reqs[i]); err != nil {
			t.Fatal(err)
		}
		if err := q.Submit(&reqs[i]); err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	all := func() bool {
		for _, d := range done {
			if d == 0 {
				return false
			}
		}
		return true
	}
	pollUntil(t, q, within, all)
	for i, d := range done {
		if d != 1 {
			t.Errorf("request %d: Done ran %d times", i, d)
		}
	}
	return done
}

func TestDroppedCompletionAborted(t *testing.T) {
	r := newRig(t, smallNS(), &faultOpts)
	q, ns := r.qp(16), r.ns(1)
	b := r.buf(8 * 512)
	r.fake.DropCompletion(nvmetest.IO(spec.IORead).Range(5, 1), 1)
	reqs := make([]nvme.Request, 8)
	start := time.Now()
	runMany(t, q, reqs, func(i int, req *nvme.Request) error {
		if i == 5 {
			return ns.Read(req, uint64(i), b[i*512:(i+1)*512], 0)
		}
		return ns.Write(req, uint64(i), b[i*512:(i+1)*512], 0)
	}, 3*time.Second)
	for i := range reqs {
		err := reqs[i].Err
		if i != 5 {
			if err != nil {
				t.Errorf("request %d: %v", i, err)
			}
			continue
		}
		if !errors.Is(err, nvme.ErrTimeout) || !errors.Is(err, nvme.ErrAborted) {
			t.Errorf("dropped request: %v, want ErrTimeout wrapping the Abort Requested status", err)
		}
	}
	if d := time.Since(start); d < faultOpts.CommandTimeout {
		t.Errorf("timed out after %v, before the %v deadline", d, faultOpts.CommandTimeout)
	}
	s := r.fake.Stats()
	if s.AbortsFound != 1 || s.AdminCommands(spec.AdminAbort) != 1 || s.Resets != 0 {
		t.Errorf("fake: aborts found %d, abort commands %d, resets %d; want 1, 1, 0", s.AbortsFound, s.AdminCommands(spec.AdminAbort), s.Resets)
	}
	if qs := q.Stats(); qs.Timeouts != 1 {
		t.Errorf("queue timeouts %d, want 1", qs.Timeouts)
	}
	if err := ns.ReadAt(q, b[:512], 0); err != nil {
		t.Errorf("read after the abort: %v", err)
	}
}

func TestLostCommandResets(t *testing.T) {
	r := newRig(t, smallNS(), &faultOpts)
	q, ns := r.qp(16), r.ns(1)
	b := r.buf(8 * 512)
	pat(b, 5)
	r.fake.Lose(nvmetest.IO(spec.IOWrite).Range(2, 1), 1)
	reqs := make([]nvme.Request, 8)
	runMany(t, q, reqs, func(i int, req *nvme.Request) error {
		return ns.Write(req, uint64(i), b[i*512:(i+1)*512], 0)
	}, 5*time.Second)
	for i := range reqs {
		err := reqs[i].Err
		if i == 2 {
			if !errors.Is(err, nvme.ErrTimeout) {
				t.Errorf("lost request: %v, want ErrTimeout", err)
			}
		} else if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	s := r.fake.Stats()
	if s.AbortsMiss != 1 || s.Resets < 1 {
		t.Errorf("fake: aborts missed %d, resets %d; want 1, >= 1", s.AbortsMiss, s.Resets)
	}
	if r.ctrl.State() != nvme.StateReady {
		t.Errorf("state %v after the reset", r.ctrl.State())
	}
	got := r.buf(8 * 512)
	if err := ns.ReadAt(q, got, 0); err != nil {
		t.Fatal(err)
	}
	checkData(t, "after reset", got, b)
}

// TestBogusAndDuplicateCIDs: completions for commands that are not
// outstanding are counted and ignored; every request completes once with
// its own data.
func TestBogusAndDuplicateCIDs(t *testing.T) {
	r := newRig(t, smallNS(), nil)
	q, ns := r.qp(16), r.ns(1)
	const n = 200
	src, dst := r.buf(n*512), r.buf(n*512)
	pat(src, 77)
	if err := ns.WriteAt(q, src[:64<<10], 0); err != nil {
		t.Fatal(err)
	}
	if err := ns.WriteAt(q, src[64<<10:], 128); err != nil {
		t.Fatal(err)
	}
	r.fake.BogusCID(30)
	r.fake.DuplicateCID(30)
	r.fake.BadSQHead(10)
	reqs := make([]nvme.Request, n)
	wrong := 0
	runMany(t, q, reqs, func(i int, req *nvme.Request) error {
		done := req.Done
		req.Done = func(req *nvme.Request) {
			// Checked in Done: a request completed by somebody else's
			// completion would not have its data yet.
			i := req.Private.(int)
			if string(dst[i*512:(i+1)*512]) != string(src[i*512:(i+1)*512]) {
				wrong++
			}
			done(req)
		}
		return ns.Read(req, uint64(i), dst[i*512:(i+1)*512], 0)
	}, 5*time.Second)
	qs, fs := q.Stats(), r.fake.Stats()
	if fs.Bogus != 30 || fs.Duplicated != 30 || fs.BadSQHeads != 10 {
		t.Fatalf("fake delivered bogus %d duplicated %d bad heads %d", fs.Bogus, fs.Duplicated, fs.BadSQHeads)
	}
	if qs.BogusCIDs != 60 {
		t.Errorf("queue counted %d bogus CIDs, want 60", qs.BogusCIDs)
	}
	if qs.BadSQHeads != 10 {
		t.Errorf("queue counted %d bad SQ heads, want 10", qs.BadSQHeads)
	}
	for i := range reqs {
		if reqs[i].Err != nil {
			t.Errorf("request %d: %v", i, reqs[i].Err)
		}
	}
	if wrong != 0 {
		t.Errorf("%d requests completed before their data arrived", wrong)
	}
	checkData(t, "reads", dst, src)
}

func TestFatalStatusResets(t *testing.T) {
	r := newRig(t, smallNS(), &faultOpts)
	q, ns := r.qp(16), r.ns(1)
	const n = 40
	b := r.buf(n * 512)
	pat(b, 11)
	// The writes are rung while the device stalls, then it reports a
	// fatal status with them in flight.
	r.fake.Stall(time.Hour)
	reqs := make([]nvme.Request, n)
	done := 0
	for i := range reqs {
		reqs[i].Done = func(*nvme.Request) { done++ }
		if err := ns.Write(&reqs[i], uint64(i), b[i*512:(i+1)*512], 0); err != nil {
			t.Fatal(err)
		}
		if err := q.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	q.Poll()
	r.fake.FatalStatus()
	r.fake.Stall(0)
	pollUntil(t, q, 5*time.Second, func() bool { return done == n })
	for i := range reqs {
		if reqs[i].Err != nil {
			t.Errorf("request %d: %v", i, reqs[i].Err)
		}
	}
	if s := r.fake.Stats(); s.Resets < 1 || s.Fatal != 1 {
		t.Errorf("fake resets %d fatal %d", s.Resets, s.Fatal)
	}
	if qs := q.Stats(); qs.Requeued == 0 {
		t.Errorf("nothing was requeued: %+v", qs)
	}
	got := r.buf(n * 512)
	if err := ns.ReadAt(q, got, 0); err != nil {
		t.Fatal(err)
	}
	checkData(t, "after fatal status", got, b)
}

func TestRemoval(t *testing.T) {
	r := newRig(t, smallNS(), &faultOpts)
	q, ns := r.qp(16), r.ns(1)
	b := r.buf(4096)
	r.fake.Stall(time.Hour) // hold everything in flight
	reqs := make([]nvme.Request, 30)
	errs := make(chan error, len(reqs))
	start := time.Now()
	go func() {
		time.Sleep(20 * time.Millisecond)
		r.fake.Remove()
	}()
	runMany(t, q, reqs, func(i int, req *nvme.Request) error {
		done := req.Done
		req.Done = func(req *nvme.Request) { errs <- req.Err; done(req) }
		return ns.Read(req, uint64(i), b[:512], 0)
	}, 2*time.Second)
	if d := time.Since(start); d > time.Second {
		t.Errorf("removal took %v to fail the requests", d)
	}
	for range reqs {
		if err := <-errs; !errors.Is(err, nvme.ErrRemoved) {
			t.Errorf("request: %v, want ErrRemoved", err)
		}
	}
	if r.ctrl.State() != nvme.StateRemoved {
		t.Errorf("state %v", r.ctrl.State())
	}
	req := &nvme.Request{Done: func(*nvme.Request) {}}
	if err := ns.Read(req, 0, b[:512], 0); err != nil {
		t.Fatal(err)
	}
	if err := q.Submit(req); !errors.Is(err, nvme.ErrRemoved) {
		t.Errorf("submit after removal: %v", err)
	}
	if _, err := r.ctrl.NewQueuePair(8); err == nil {
		t.Error("new queue pair on a removed controller")
	}
	if _, err := r.ctrl.SMARTLog(); !errors.Is(err, nvme.ErrRemoved) {
		t.Errorf("admin command after removal: %v", err)
	}
}

// TestResetInFlight: Controller.Reset from another goroutine while I/O
// runs; every request completes exactly once and the data is intact.
func TestResetInFlight(t *testing.T) {
	r := newRig(t, smallNS(), &faultOpts)
	q, ns := r.qp(16), r.ns(1)
	const n = 600
	b := r.buf(n * 512)
	pat(b, 21)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var resetErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 3; i++ {
			time.Sleep(3 * time.Millisecond)
			if err := r.ctrl.Reset(); err != nil {
				resetErr = err
			}
		}
		close(stop)
	}()
	reqs := make([]nvme.Request, n)
	done := make([]int, n)
	next := 0
	submit := func() {
		i := next
		next++
		reqs[i].Private = i
		reqs[i].Done = func(req *nvme.Request) { done[req.Private.(int)]++ }
		if err := ns.Write(&reqs[i], uint64(i), b[i*512:(i+1)*512], 0); err != nil {
			t.Fatal(err)
		}
		if err := q.Submit(&reqs[i]); err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	finished := 0
	for finished < n {
		if next < n && q.InFlight()+q.Waiting() < 24 {
			submit()
			continue
		}
		q.Poll()
		finished = 0
		for _, d := range done {
			finished += d
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d done", finished, n)
		}
	}
	wg.Wait()
	if resetErr != nil {
		t.Fatal(resetErr)
	}
	for i, d := range done {
		if d != 1 || reqs[i].Err != nil {
			t.Errorf("request %d: done %d times, err %v", i, d, reqs[i].Err)
		}
	}
	if s := r.fake.Stats(); s.Resets != 3 {
		t.Errorf("fake saw %d resets, want 3", s.Resets)
	}
	got := r.buf(n * 512)
	for off := 0; off < n*512; off += 64 << 10 {
		end := min(off+64<<10, n*512)
		if err := ns.ReadAt(q, got[off:end], uint64(off/512)); err != nil {
			t.Fatal(err)
		}
	}
	checkData(t, "after resets", got, b)
}

// TestSuccessAfterAbortIsSuccess: a command still running when its abort
// is requested, which the controller cannot abort and then completes
// successfully, is reported as the success it is, not as a timeout.
func TestSuccessAfterAbortIsSuccess(t *testing.T) {
	opts := faultOpts
	opts.CommandTimeout = 30 * time.Millisecond
	opts.AbortTimeout = 5 * time.Second
	r := newRig(t, smallNS(), &opts)
	q, ns := r.qp(16), r.ns(1)
	b := r.buf(4096)
	r.fake.Slow(nvmetest.IO(spec.IORead).Range(5, 1), 300*time.Millisecond, 1)
	reqs := make([]nvme.Request, 4)
	runMany(t, q, reqs, func(i int, req *nvme.Request) error {
		return ns.Read(req, uint64(3+i), b[i*512:(i+1)*512], 0)
	}, 5*time.Second)
	for i := range reqs {
		if err := reqs[i].Err; err != nil {
			t.Errorf("request %d (lba %d): %v", i, 3+i, err)
		}
	}
	if qs := q.Stats(); qs.Timeouts != 1 {
		t.Errorf("queue timeouts %d, want 1 (the slow read went past its deadline)", qs.Timeouts)
	}
	if s := r.fake.Stats(); s.Resets != 0 || s.AbortsFound != 0 {
		t.Errorf("fake: resets %d, aborts found %d; want 0, 0", s.Resets, s.AbortsFound)
	}
}

// TestQueueCloseWhileRemoved: a queue pair closed after the transport
// reported removal, while the device still answers (a VFIO request
// interrupt comes before the device goes), keeps its memory mapped until
// the controller's Close disabled the device: the fake sees no queue
// memory freed while it could reach it, and nothing leaks.
func TestQueueCloseWhileRemoved(t *testing.T) {
	r := newRig(t, smallNS(), &faultOpts)
	q, err := r.ctrl.NewQueuePair(16)
	if err != nil {
		t.Fatal(err)
	}
	ns := r.ns(1)
	b := r.buf(512)
	if err := ns.WriteAt(q, b, 0); err != nil {
		t.Fatal(err)
	}
	r.ctrl.MarkRemoved()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.ctrl.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	if n := r.fake.Stats().Resets; n != 1 {
		t.Errorf("the controller was disabled %d times by Close, want 1", n)
	}
}
