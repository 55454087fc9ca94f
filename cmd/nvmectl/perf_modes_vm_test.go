package main

import (
	"testing"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// nvmectl perf --mode with --verify on QEMU's controller: every read
// checked against the pattern, in each mode, and paced with --rate in the
// modes that sleep between the paced submissions (a submission must wake
// them); the JSON says the mode and the cap.
func TestVMPerfModes(t *testing.T) {
	env := vmtest.Require(t, "default")
	v, addr := perfVM(t, env)
	for _, mode := range []string{"poll", "interrupt", "hybrid"} {
		for _, rate := range []string{"0", "2000"} {
			if mode == "poll" && rate != "0" {
				continue // a polling poller never sleeps: pacing is perf's alone
			}
			code, out, errs := v.run("-o", "json", "perf", addr, "-q", "8", "-w", "randread", "-t", "1", "--warmup", "0",
				"-c", "0x3", "--verify", "--mode", mode, "--rate", rate)
			if code != exitOK {
				t.Fatalf("perf --mode %s --rate %s: exit %d, stderr %q", mode, rate, code, errs)
			}
			p := decodePerf(t, out)
			if p.Mode != mode || (rate == "2000") != (p.RateIOPS == 2000) {
				t.Errorf("perf --mode %s --rate %s: json mode %q rate_iops %v", mode, rate, p.Mode, p.RateIOPS)
			}
			if !p.Verify.Enabled || p.Verify.Checked == 0 || p.Verify.Mismatches != 0 || p.Total.Errors != 0 {
				t.Errorf("perf --mode %s --rate %s: verify %+v, %d errors", mode, rate, p.Verify, p.Total.Errors)
			}
			if rate == "2000" && p.Total.IOPS > 2000*1.1 {
				t.Errorf("perf --mode %s --rate 2000: %.0f IOPS", mode, p.Total.IOPS)
			}
			t.Logf("perf --mode %s --rate %s: %.0f IOPS, p50 %.1f µs, %d reads checked", mode, rate, p.Total.IOPS, p.Total.Latency.P50, p.Verify.Checked)
		}
	}
}
