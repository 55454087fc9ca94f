package main

import (
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
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
