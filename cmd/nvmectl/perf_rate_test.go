package main

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// Bad --mode and --rate values are usage errors, before any device work.
func TestPerfModeRateFlags(t *testing.T) {
	r := newPerfRig(t, nvmetest.Config{})
	a := r.addrs[0]
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"perf", a, "--mode", "irq"}, `--mode "irq": want poll, interrupt or hybrid`},
		{[]string{"perf", a, "--mode", ""}, `--mode "": want poll, interrupt or hybrid`},
		{[]string{"perf", a, "--rate", "-5"}, "--rate -5: want a number of I/Os per second"},
		{[]string{"perf", a, "--rate", "NaN"}, "--rate NaN"},
		{[]string{"perf", a, "--rate", "lots"}, `invalid argument "lots"`},
		{[]string{"serve", a, "--mode", "sleepy"}, `--mode "sleepy": want poll, interrupt or hybrid`},
		{[]string{"serve", a, "--idle", "lazy"}, `--idle "lazy": want adaptive or busy`},
		{[]string{"serve", a, "--mode", "interrupt", "--idle", "busy"}, "--idle busy applies to --mode poll"},
	} {
		code, out, errs := r.run(tt.args...)
		if code != exitUsage || !strings.Contains(errs, tt.msg) || out != "" {
			t.Errorf("nvmectl %q: exit %d, stdout %q, stderr %q; want exit 1 and %q", tt.args, code, out, errs, tt.msg)
		}
	}
	if n := r.fakes[0].Stats().TotalIO(); n != 0 {
		t.Errorf("%d I/O commands reached the device from refused runs", n)
	}
	if n := r.fakes[0].Stats().Enables; n != 0 {
		t.Errorf("refused runs enabled the controller %d times", n)
	}
}

// perf in every mode, capped with --rate: the JSON says the mode and the
// cap, the I/O ran at (about) the rate, the data was checked (--verify),
// and the interrupt modes took interrupts.
func TestPerfModesRate(t *testing.T) {
	for _, mode := range []string{"poll", "interrupt", "hybrid"} {
		t.Run(mode, func(t *testing.T) {
			r := newPerfRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 12}}})
			a := r.addrs[0]
			raised := r.fakes[0].InterruptsRaised()
			code, out, errs := r.run("-o", "json", "perf", a, "-q", "4", "-w", "randread", "-t", "1", "--verify",
				"--mode", mode, "--rate", "500")
			if code != exitOK {
				t.Fatalf("perf: exit %d, stderr %q, stdout %q", code, errs, out)
			}
			p := decodePerf(t, out)
			if p.Mode != mode || p.RateIOPS != 500 {
				t.Errorf("json says mode %q rate %v, want %s 500", p.Mode, p.RateIOPS, mode)
			}
			if !p.Verify.Enabled || p.Verify.Checked == 0 || p.Verify.Mismatches != 0 {
				t.Errorf("verify %+v", p.Verify)
			}
			// Open-loop pacing at 500/s never goes faster (slower, on a
			// loaded machine, it may).
			if p.Total.IOPS > 500*1.1 || p.Total.IOs == 0 {
				t.Errorf("%v IOPS (%d I/Os) with --rate 500", p.Total.IOPS, p.Total.IOs)
			}
			t.Logf("%s --rate 500: %.0f IOPS, p50 %.1f µs", mode, p.Total.IOPS, p.Total.Latency.P50)
			got := r.fakes[0].InterruptsRaised() - raised
			if mode == "poll" && got != 0 {
				t.Errorf("poll mode: the fake raised %d interrupts", got)
			}
			if mode != "poll" && got == 0 {
				t.Errorf("%s mode: no interrupt raised", mode)
			}
		})
	}
	// The table's header names the mode and the cap.
	r := newPerfRig(t, nvmetest.Config{})
	code, out, errs := r.run("perf", r.addrs[0], "-q", "1", "-t", "0.3", "--mode", "hybrid", "--rate", "200")
	if code != exitOK || !strings.Contains(out, ", hybrid mode, capped at 200 IOPS, ") {
		t.Errorf("perf --mode hybrid --rate 200: exit %d, stderr %q, stdout:\n%s", code, errs, out)
	}
}

// TestPerfRateQuietRuntime paces a QD1 run at 1000 IOPS in interrupt
// mode, where the pacer and the poller sleep in system calls between
// I/Os, and counts the wake-ups of the Go runtime's threads that sleep in
// nanosleep(2) (the monitor, sysmon, and spinning threads). A pacer (or
// poller) that never passes through the scheduler has its P retaken in
// every sleep once it has run 10 ms, and with no P left idle the monitor
// retakes one in every sleep anyway: more than a CPU in a QEMU guest at
// this rate. The pacer's Gosched (pacerSchedEvery) keeps those wake-ups
// well under one per I/O (0.1 to 0.2 on the host under -race; 3.5 to 4.7
// without the pacer's Gosched, 5.2 without the poller's too). The test
// gives the process its own P headroom for the fake device's goroutine,
// so it does not check perf's (without which a quiet host showed 3.5).
func TestPerfRateQuietRuntime(t *testing.T) {
	if testing.Short() {
		t.Skip("timed")
	}
	// The fake's device goroutine holds a P while it spins, which a
	// real device does not: two more keep one idle besides perf's.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.NumCPU() + 2))
	r := newPerfRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 12}}})
	ctrls, closeAll, err := perfOpen(r.a, r.addrs, &nvme.Options{IOQueues: 1, AsyncEvents: -1, Interrupts: true})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	var sleepers map[string]bool
	var before, after map[string]uint64
	cfg := &perfConfig{
		addrs: r.addrs, qd: 1, ioSize: 4096, wl: perfWorkloads[2], readPct: 100,
		dur: 600 * time.Millisecond, warmup: 100 * time.Millisecond, cpus: []int{0},
		mode: poller.ModeInterrupt, rate: 1000,
		onMeasure: func() {
			sleepers = testrig.NanosleepThreads(t)
			before = testrig.ThreadSwitches(t)
		},
		onMeasureEnd: func() { after = testrig.ThreadSwitches(t) },
	}
	rep := execPerf(t, cfg, ctrls)
	if len(sleepers) == 0 {
		t.Fatal("no thread sleeps in nanosleep(2): the runtime's monitor was not found")
	}
	var sw uint64
	for tid := range sleepers {
		sw += after[tid] - before[tid]
	}
	ios := rep.Total.IOs
	t.Logf("%d I/Os at --rate 1000: %d wake-ups of %d nanosleep threads (%.2f per I/O)", ios, sw, len(sleepers), float64(sw)/float64(max(ios, 1)))
	if ios < 200 {
		t.Fatalf("%d I/Os in %v at --rate 1000", ios, cfg.dur)
	}
	// The wake-ups are the effect, logged (0.1 to 0.2 per I/O on a quiet
	// host, 3.5 to 4.7 without the pacer's passes; with other processes
	// on the CPUs the monitor wakes as often either way). Asserted is
	// the remedy: the pacer passed through the scheduler, about once per
	// pacerSchedEvery (it runs a little longer than warm-up and
	// measurement: twice that bounds it, far below one pass per sleep).
	if most := 2*uint64((cfg.dur+cfg.warmup)/pacerSchedEvery) + 3; rep.pacerScheds == 0 || rep.pacerScheds > most {
		t.Errorf("the pacer passed through the scheduler %d times in %v: want 1 to %d", rep.pacerScheds, cfg.dur+cfg.warmup, most)
	}
}
