package reliability_test

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// faultOpts: deadlines short enough that timeouts, aborts and resets
// happen within a test's time, long enough that only the faulted command
// misses them on a loaded machine. Only the cases that test a timeout use them
// (faultCase.timeouts); the others run with slackOpts, so that a loaded
// machine (-race, other packages' tests on the same cores) cannot turn a
// slow completion into a spurious timeout and fail a case about something
// else.
var faultOpts = nvme.Options{
	CommandTimeout: 1500 * time.Millisecond,
	AbortTimeout:   time.Second,
	WatchInterval:  2 * time.Millisecond,
	IOQueueDepth:   32,
}

var slackOpts = func() nvme.Options {
	o := faultOpts
	o.CommandTimeout = 5 * time.Second
	o.AbortTimeout = time.Second
	return o
}()

// faultCase is one fault of TestFaults.
type faultCase struct {
	name string
	// accept says which Buf errors the fault may cause (nil: none).
	accept func(op string, err error) bool
	// inject delivers the fault while the load runs, and returns once
	// the fault took effect (or fails the test).
	inject func(t *testing.T, r *rig, l *load)
	// check runs after the load stopped and (unless gone) the sweep.
	check func(t *testing.T, r *rig, errs []opErr, qs nvme.QueueStats)
	gone  bool // the device is gone afterwards: no sweep
	// timeouts: the case is about a command timing out, so it runs with
	// the short deadlines of faultOpts (the others with slackOpts).
	timeouts bool
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
}

func isTimeout(op string, err error) bool { return errors.Is(err, nvme.ErrTimeout) }

// wantErrs checks that between lo and hi Bufs failed.
func wantErrs(t *testing.T, errs []opErr, lo, hi int) {
	t.Helper()
	if len(errs) < lo || len(errs) > hi {
		t.Errorf("%d Bufs failed, want %d to %d", len(errs), lo, hi)
	}
	for i, e := range errs {
		if i < 3 {
			t.Logf("failed as expected: worker %d %s [%d, +%d): %v", e.worker, e.op, e.lba, e.n, e.err)
		}
	}
}

var faultCases = []faultCase{
	{
		name: "bogus command IDs",
		inject: func(t *testing.T, r *rig, l *load) {
			r.fake.BogusCID(50)
			waitFor(t, "50 bogus completions", 10*time.Second, func() bool { return r.fake.Stats().Bogus == 50 })
		},
		check: func(t *testing.T, r *rig, errs []opErr, qs nvme.QueueStats) {
			if qs.BogusCIDs != 50 {
				t.Errorf("queue pairs counted %d bogus CIDs, want 50", qs.BogusCIDs)
			}
		},
	},
	{
		name: "duplicate command IDs",
		inject: func(t *testing.T, r *rig, l *load) {
			r.fake.DuplicateCID(50)
			waitFor(t, "50 duplicated completions", 10*time.Second, func() bool { return r.fake.Stats().Duplicated == 50 })
		},
		check: func(t *testing.T, r *rig, errs []opErr, qs nvme.QueueStats) {
			if qs.BogusCIDs != 50 {
				t.Errorf("queue pairs ignored %d completions, want the 50 duplicates", qs.BogusCIDs)
			}
		},
	},
	{
		name: "SQ head out of range",
		inject: func(t *testing.T, r *rig, l *load) {
			r.fake.BadSQHead(50)
			waitFor(t, "50 bad SQ heads", 10*time.Second, func() bool { return r.fake.Stats().BadSQHeads == 50 })
		},
		check: func(t *testing.T, r *rig, errs []opErr, qs nvme.QueueStats) {
			if qs.BadSQHeads != 50 {
				t.Errorf("queue pairs counted %d bad SQ heads, want 50", qs.BadSQHeads)
			}
		},
	},
	{
		name: "CSTS.CFS during I/O",
		inject: func(t *testing.T, r *rig, l *load) {
			r.fake.FatalStatus()
			waitFor(t, "a reset after CSTS.CFS", 10*time.Second, func() bool {
				return r.fake.Stats().Resets >= 1 && r.ctrl.State() == nvme.StateReady
			})
		},
		check: func(t *testing.T, r *rig, errs []opErr, qs nvme.QueueStats) {
			if s := r.fake.Stats(); s.Fatal != 1 || s.Resets < 1 {
				t.Errorf("fake: fatal %d resets %d", s.Fatal, s.Resets)
			}
			if line := r.logs.Find("fatal"); line == "" {
				t.Error("the driver did not log the fatal status")
			}
			t.Logf("requeued after the reset: %d commands", qs.Requeued)
		},
	},
	{
		name: "controller reset storm",
		inject: func(t *testing.T, r *rig, l *load) {
			for range 3 {
				if err := r.ctrl.Reset(); err != nil {
					t.Fatalf("reset: %v", err)
				}
				l.waitOps(10, 5*time.Second)
			}
		},
		check: func(t *testing.T, r *rig, errs []opErr, qs nvme.QueueStats) {
			if s := r.fake.Stats(); s.Resets != 3 {
				t.Errorf("fake saw %d resets, want 3", s.Resets)
			}
			t.Logf("requeued after the resets: %d commands", qs.Requeued)
		},
	},
	{
		name: "stall shorter than the command timeout",
		inject: func(t *testing.T, r *rig, l *load) {
			r.fake.Stall(100 * time.Millisecond)
			time.Sleep(100 * time.Millisecond)
		},
		check: func(t *testing.T, r *rig, errs []opErr, qs nvme.QueueStats) {
			if qs.Timeouts != 0 {
				t.Errorf("%d commands timed out", qs.Timeouts)
			}
		},
	},
	{
		name:     "dropped completion: abort",
		timeouts: true,
		accept:   isTimeout,
		inject: func(t *testing.T, r *rig, l *load) {
			r.fake.DropCompletion(nvmetest.AnyIO(), 1)
			waitFor(t, "the dropped command aborted", 10*time.Second, func() bool { return r.fake.Stats().AbortsFound == 1 })
		},
		check: func(t *testing.T, r *rig, errs []opErr, qs nvme.QueueStats) {
			wantErrs(t, errs, 1, 1)
			if len(errs) == 1 && !strings.Contains(errs[0].err.Error(), "Abort Requested") {
				t.Errorf("error %v does not name the Abort Requested status", errs[0].err)
			}
			if s := r.fake.Stats(); s.Dropped != 1 || s.Resets != 0 {
				t.Errorf("fake: dropped %d resets %d; want 1, 0", s.Dropped, s.Resets)
			}
		},
	},
	{
		name:     "lost command: abort misses, reset",
		timeouts: true,
		accept:   isTimeout,
		inject: func(t *testing.T, r *rig, l *load) {
			r.fake.Lose(nvmetest.AnyIO(), 1)
			waitFor(t, "a reset for the lost command", 10*time.Second, func() bool {
				s := r.fake.Stats()
				return s.AbortsMiss == 1 && s.Resets >= 1 && r.ctrl.State() == nvme.StateReady
			})
		},
		check: func(t *testing.T, r *rig, errs []opErr, qs nvme.QueueStats) {
			wantErrs(t, errs, 1, 1)
			if line := r.logs.Find("no completion after abort"); line == "" {
				t.Error("the driver did not log why it reset")
			}
		},
	},
	{
		name: "media errors on reads",
		accept: func(op string, err error) bool {
			return op == "read" && errors.Is(err, nvme.ErrMedia) && errors.Is(err, syscall.EIO)
		},
		inject: func(t *testing.T, r *rig, l *load) {
			r.fake.InjectStatus(nvmetest.IO(spec.IORead), spec.SCTMediaError, spec.SCUnrecoveredReadError, 5)
			waitFor(t, "5 injected read errors", 10*time.Second, func() bool { return r.fake.Stats().Injected == 5 })
		},
		check: func(t *testing.T, r *rig, errs []opErr, qs nvme.QueueStats) { wantErrs(t, errs, 1, 5) },
	},
	{
		name: "write faults",
		accept: func(op string, err error) bool {
			var se *nvme.StatusError
			return op == "write" && errors.As(err, &se) && se.SC == spec.SCWriteFault && errors.Is(err, syscall.EIO)
		},
		inject: func(t *testing.T, r *rig, l *load) {
			r.fake.InjectStatus(nvmetest.IO(spec.IOWrite), spec.SCTMediaError, spec.SCWriteFault, 5)
			waitFor(t, "5 injected write faults", 10*time.Second, func() bool { return r.fake.Stats().Injected == 5 })
		},
		check: func(t *testing.T, r *rig, errs []opErr, qs nvme.QueueStats) { wantErrs(t, errs, 1, 5) },
	},
	{
		name: "removal",
		gone: true,
		accept: func(op string, err error) bool {
			return errors.Is(err, nvme.ErrRemoved) && errors.Is(err, syscall.ENXIO)
		},
		inject: func(t *testing.T, r *rig, l *load) {
			// Hold everything in flight, then pull the device: every
			// worker has a Buf outstanding when it goes.
			r.fake.Stall(time.Hour)
			time.Sleep(30 * time.Millisecond)
			removed := time.Now()
			r.fake.Remove()
			waitFor(t, "every worker failed with ErrRemoved", 5*time.Second, func() bool {
				seen := map[int]bool{}
				for _, e := range l.failures() {
					seen[e.worker] = true
				}
				return len(seen) == len(l.workers)
			})
			first := map[int]time.Time{}
			for _, e := range l.failures() {
				if e.at.Before(removed) {
					t.Errorf("worker %d failed before the removal: %v", e.worker, e.err)
				}
				if _, ok := first[e.worker]; !ok {
					first[e.worker] = e.at
				}
			}
			var last time.Duration
			for _, at := range first {
				last = max(last, at.Sub(removed))
			}
			t.Logf("every outstanding Buf failed with ErrRemoved within %v of the removal", last.Round(time.Microsecond))
			if last > 2*time.Second {
				t.Errorf("outstanding Bufs took %v to fail, want under 2 s", last)
			}
			// A new transfer fails at once, with the same error.
			b, err := r.mem.Alloc(4096)
			if err != nil {
				t.Fatal(err)
			}
			defer r.mem.Free(b)
			bp := ddi.Getrbuf(ddi.KMSleep)
			defer ddi.Freerbuf(bp)
			bp.Flags |= ddi.BRead
			bp.Edev, bp.Bcount, bp.Addr = r.devs[0].Edev(), 4096, b.Bytes
			start := time.Now()
			ddi.Strategy(bp)
			err = ddi.Biowait(bp)
			if !errors.Is(err, nvme.ErrRemoved) || time.Since(start) > 100*time.Millisecond {
				t.Errorf("read after removal: %v after %v, want ErrRemoved at once", err, time.Since(start))
			}
		},
		check: func(t *testing.T, r *rig, errs []opErr, qs nvme.QueueStats) {
			if r.ctrl.State() != nvme.StateRemoved {
				t.Errorf("controller %v, want removed", r.ctrl.State())
			}
		},
	},
}

// TestFaults runs each fault nvmetest can inject while four workers read
// and write through ddi (two sharing a polled queue pair, one on another,
// one on a SyncSubmitter), and checks: no panic, every Buf delivered
// exactly once, only the errors the fault explains, and (unless the
// device is gone) every block of every partition as the model says.
func TestFaults(t *testing.T) {
	rounds := 1
	if long() {
		rounds = 10
	}
	for _, fc := range faultCases {
		t.Run(strings.ReplaceAll(fc.name, " ", "_"), func(t *testing.T) {
			for range rounds {
				runFault(t, fc)
				if t.Failed() {
					return
				}
			}
		})
	}
}

func runFault(t *testing.T, fc faultCase) {
	opts := slackOpts
	if fc.timeouts {
		opts = faultOpts
	}
	r := newFakeRig(t, nvmetest.Config{MDTS: 5, Namespaces: []nvmetest.NSConfig{{Blocks: 32 << 20 / 512}}}, opts)
	defer r.close()
	l1, l2, s1 := r.loop(32), r.loop(32), r.sync(16)
	var tgs []target
	for i, w := range []struct {
		sub ddi.Submitter
		via string
	}{{l1, "shared loop 1"}, {l1, "shared loop 1"}, {l2, "loop 2"}, {s1, "SyncSubmitter"}} {
		d := r.register(1, w.sub)
		lo, hi := part(d.Namespace().Blocks(), 4, i)
		tgs = append(tgs, target{dev: d, via: w.via, lo: lo, hi: hi})
	}
	before := ddi.ReadStats()
	l := r.start(loadConfig{run: newRun(), targets: tgs, maxBytes: 1 << 20, deliver: 10 * time.Second, accept: fc.accept})
	if !l.waitOps(40, 10*time.Second) {
		t.Fatal("no progress before the fault")
	}
	start := time.Now()
	fc.inject(t, r, l)
	took := time.Since(start)
	if !fc.gone && !l.waitOps(40, 10*time.Second) {
		t.Error("no progress after the fault")
	}
	l.stop()
	l.checkExactlyOnce()
	errs := l.failures()
	var swept uint64
	if !fc.gone {
		if r.ctrl.State() != nvme.StateReady {
			t.Errorf("controller %v after the fault", r.ctrl.State())
		}
		swept = l.sweep()
	}
	qs := r.qstats()
	s := l.totals()
	if fc.check != nil {
		fc.check(t, r, errs, qs)
	}
	if fc.accept == nil && len(errs) > 0 {
		t.Errorf("%d Bufs failed", len(errs))
	}
	for _, l := range r.loops {
		if n := l.refused.Load(); n > 0 && !fc.gone {
			t.Errorf("%s: %d requests refused by the queue pair", l.name, n)
		}
	}
	if after := ddi.ReadStats(); after.DoubleBiodone != before.DoubleBiodone || after.EarlyBiodone != before.EarlyBiodone {
		t.Errorf("ddi misuse counters moved: %+v -> %+v", before, after)
	}
	t.Logf("fault took effect in %v; %v; %d failed; sweep verified %.1f MiB", took.Round(time.Millisecond), s, len(errs), mib(swept))
}

// absurdCase is identify data no sane controller sends.
type absurdCase struct {
	name    string
	cfg     nvmetest.Config
	ctrl    func(b []byte)
	ns      func(nsid uint32, b []byte)
	openErr string   // Open must fail with ErrDevice and this in the message
	nsids   []uint32 // else: the namespaces that survive
	maxXfer int
	log     string // a log line must mention this
}

// TestAbsurdIdentifyUnderLoad: bring-up with absurd identify data gives a
// clear error or skips the namespace with a message, never a panic, and
// whatever survives carries the soak load with every block intact.
func TestAbsurdIdentifyUnderLoad(t *testing.T) {
	le := binary.LittleEndian
	twoNS := []nvmetest.NSConfig{{Blocks: 16 << 20 / 512}, {Blocks: 16 << 20 / 512}}
	cases := []absurdCase{
		{name: "mdts 0 (no limit)", cfg: nvmetest.Config{MDTS: -1}, nsids: []uint32{1}, maxXfer: 1 << 20},
		{name: "namespace count 2^32-1", ctrl: func(b []byte) { le.PutUint32(b[0x204:], 0xffffffff) }, nsids: []uint32{1}, maxXfer: 128 << 10},
		{name: "block format index beyond NLBAF", cfg: nvmetest.Config{Namespaces: twoNS}, ns: func(nsid uint32, b []byte) {
			if nsid == 2 {
				b[0x1a] = 9 // FLBAS
				b[0x19] = 0 // NLBAF: one format
			}
		}, nsids: []uint32{1}, maxXfer: 128 << 10, log: "namespace 2"},
		{name: "block size 2^40", cfg: nvmetest.Config{Namespaces: twoNS}, ns: func(nsid uint32, b []byte) {
			if nsid == 1 {
				b[0x80+2] = 40 // LBAF0.LBADS
			}
		}, nsids: []uint32{2}, maxXfer: 128 << 10, log: "namespace 1"},
		{name: "namespace size 2^63", ns: func(nsid uint32, b []byte) { le.PutUint64(b, 1<<63) }, nsids: []uint32{}, maxXfer: 128 << 10, log: "size"},
		{name: "active namespace list beyond NN", cfg: nvmetest.Config{Namespaces: twoNS}, ctrl: func(b []byte) { le.PutUint32(b[0x204:], 1) }, openErr: "active namespace list"},
		{name: "identify controller all ones", ctrl: func(b []byte) {
			for i := range b {
				b[i] = 0xff
			}
		}, openErr: "identify controller"},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) { runAbsurd(t, tc) })
	}
}

func runAbsurd(t *testing.T, tc absurdCase) {
	cfg := tc.cfg
	if cfg.Namespaces == nil {
		cfg.Namespaces = []nvmetest.NSConfig{{Blocks: 32 << 20 / 512}}
	}
	cfg.IdentifyController, cfg.IdentifyNamespace = tc.ctrl, tc.ns
	if tc.openErr != "" {
		fake, err := nvmetest.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer fake.Close()
		mem, err := dma.NewAllocator(fake.Mapper())
		if err != nil {
			t.Fatal(err)
		}
		c, err := nvme.Open(fake, mem, &nvme.Options{Logf: func(string, ...any) {}})
		if err == nil {
			c.Close()
			t.Fatal("bring-up succeeded")
		}
		t.Logf("bring-up refused: %v", err)
		if !errors.Is(err, nvme.ErrDevice) || !strings.Contains(err.Error(), tc.openErr) {
			t.Errorf("error %q: want ErrDevice naming %q", err, tc.openErr)
		}
		if err := mem.Close(); err != nil {
			t.Errorf("failed bring-up leaked DMA memory: %v", err)
		}
		return
	}
	r := newFakeRig(t, cfg, nvme.Options{})
	defer r.close()
	if got := r.ctrl.Namespaces(); len(got) != len(tc.nsids) || (len(got) > 0 && got[0] != tc.nsids[0]) {
		t.Fatalf("namespaces %v, want %v", got, tc.nsids)
	}
	if r.ctrl.MaxTransfer() != tc.maxXfer {
		t.Errorf("max transfer %d, want %d", r.ctrl.MaxTransfer(), tc.maxXfer)
	}
	if tc.log != "" {
		line := r.logs.Find(tc.log)
		if line == "" {
			t.Errorf("no log line mentions %q: %q", tc.log, r.logs.Lines())
		}
		t.Logf("driver said: %s", line)
	}
	for nsid := uint32(1); nsid <= uint32(len(cfg.Namespaces)); nsid++ {
		if !slices.Contains(tc.nsids, nsid) {
			if _, err := r.ctrl.Namespace(nsid); !errors.Is(err, nvme.ErrNoNamespace) {
				t.Errorf("skipped namespace %d: %v, want ErrNoNamespace", nsid, err)
			}
		}
	}
	if len(tc.nsids) == 0 {
		return
	}
	l1, s1 := r.loop(32), r.sync(16)
	var tgs []target
	for i, sub := range []ddi.Submitter{l1, l1, s1} {
		d := r.register(tc.nsids[0], sub)
		lo, hi := part(d.Namespace().Blocks(), 3, i)
		tgs = append(tgs, target{dev: d, via: "absurd", lo: lo, hi: hi})
	}
	if want := uint32(tc.maxXfer / 512); r.devs[0].MaxBlocks() != want {
		t.Errorf("ddi splits at %d blocks, want %d", r.devs[0].MaxBlocks(), want)
	}
	l := r.start(loadConfig{run: newRun(), targets: tgs, maxBytes: 4 << 20, duration: 300 * time.Millisecond})
	l.wg.Wait()
	l.checkExactlyOnce()
	swept := l.sweep()
	s := l.totals()
	if s.writes == 0 || swept == 0 {
		t.Errorf("no load ran: %v", s)
	}
	t.Logf("%v; sweep verified %.1f MiB", s, mib(swept))
}

// TestSplitTimeoutKeepsStatus: a Buf split into pieces, one of which the
// device never completes until the driver aborts it, fails with an error
// that says so, and keeps saying so: ErrTimeout and the Abort Requested
// status (errors.Is ErrAborted, errors.As *nvme.StatusError), with Resid
// the aborted piece.
func TestSplitTimeoutKeepsStatus(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{MDTS: 5, Namespaces: []nvmetest.NSConfig{{Blocks: 8192}}}, faultOpts)
	defer r.close()
	d := r.register(1, r.loop(32))
	b, err := r.mem.Alloc(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer r.mem.Free(b)
	run := newRun()
	fillBlocks(b.Bytes, 512, 0, 1, run)
	do := func(flags ddi.Flags) *ddi.Buf {
		bp := &ddi.Buf{}
		ddi.Bioinit(bp)
		bp.Flags |= flags
		bp.Edev, bp.Bcount, bp.Addr = d.Edev(), 1<<20, b.Bytes
		ddi.Strategy(bp)
		ddi.Biowait(bp)
		return bp
	}
	if bp := do(ddi.BWrite); bp.Error != nil {
		t.Fatal(bp.Error)
	}
	r.fake.DropCompletion(nvmetest.IO(spec.IORead).Range(300, 1), 1) // the third 128 KiB piece
	bp := do(ddi.BRead)
	err = ddi.Geterror(bp)
	t.Logf("error: %v", err)
	var se *nvme.StatusError
	switch {
	case bp.Children() != 8 || bp.Resid != 128<<10:
		t.Errorf("children %d resid %d, want 8 and the one piece", bp.Children(), bp.Resid)
	case !errors.Is(err, nvme.ErrTimeout) || !strings.Contains(err.Error(), "Abort Requested"):
		t.Errorf("error %v: want ErrTimeout naming the Abort Requested status", err)
	case !errors.Is(err, nvme.ErrAborted) || !errors.As(err, &se) || se.SC != spec.SCAbortRequested || se.Opcode != spec.IORead:
		t.Errorf("the error's *nvme.StatusError is %+v (errors.Is ErrAborted %v): the status of the aborted piece was lost "+
			"(it lived in the piece's header, which went back to the pool before the Buf was delivered)",
			se, errors.Is(err, nvme.ErrAborted))
	}
}
