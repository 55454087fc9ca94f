package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// nvmectl perf in the guest, through real VFIO and pollers. Package main:
// see list_vm_test.go.

// perfTable checks perf's normal output: the header with every column,
// one row per namespace and a Total row with IOPS > 0 and latencies
// ordered min <= p50 <= p90 <= p99 <= p99.9 <= p99.99 <= max. It returns
// the Total row's numbers (Read%, IOPS, MiB/s, then the latencies in
// column order).
func perfTable(t *testing.T, out string, rows int) []float64 {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 3+rows || !strings.HasPrefix(lines[0], "perf: ") {
		t.Fatalf("perf table:\n%s", out)
	}
	for _, c := range append([]string{"Controller", "NSID", "Read%"}, perfColumns...) {
		if !strings.Contains(lines[1], c) {
			t.Errorf("header %q lacks %q", lines[1], c)
		}
	}
	var total []float64
	for _, l := range lines[2 : 3+rows] {
		f := strings.Fields(l)
		nums := f[2:] // controller, nsid
		if f[0] == "Total" {
			nums = f[1:]
		}
		if len(nums) != 3+8 {
			t.Fatalf("row %q: %d numbers", l, len(nums))
		}
		v := make([]float64, len(nums))
		for i, s := range nums {
			x, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatalf("row %q: %v", l, err)
			}
			v[i] = x
		}
		// Read% IOPS MiB/s Avg Min p50 p90 p99 p99.9 p99.99 Max
		if v[1] <= 0 || v[2] <= 0 {
			t.Errorf("row %q: IOPS or MiB/s not positive", l)
		}
		for i := 5; i < len(v); i++ {
			if v[i-1] > v[i] {
				t.Errorf("row %q: latency column %d (%v) above the next (%v)", l, i-1, v[i-1], v[i])
			}
		}
		if v[3] < v[4] || v[3] > v[10] {
			t.Errorf("row %q: average %v outside [min %v, max %v]", l, v[3], v[4], v[10])
		}
		if f[0] == "Total" {
			total = v
		}
	}
	if total == nil {
		t.Fatalf("no Total row:\n%s", out)
	}
	return total
}

func perfVM(t *testing.T, env *vmtest.Env) (vm, string) {
	c := env.Controllers()[0]
	return vm{t}, env.BindVFIO(t, c)
}

func TestVMPerfNull(t *testing.T) {
	env := vmtest.Require(t, "null")
	v, addr := perfVM(t, env)

	// The README's two runs: 4 KiB random reads at QD32, one poller and
	// two.
	code, out, errs := v.run("perf", addr, "-q", "32", "-s", "4096", "-w", "randread", "-t", "2", "--warmup", "0", "-c", "1")
	if code != exitOK {
		t.Fatalf("perf: exit %d, stderr %q", code, errs)
	}
	one := perfTable(t, out, 1)
	if one[0] != 100 {
		t.Errorf("randread: Read%% %v", one[0])
	}
	if !strings.Contains(errs, "IOPS") || !strings.Contains(errs, "s left") {
		t.Errorf("no live line in 2 s: stderr %q", errs)
	}
	t.Logf("nvmectl perf %s -q 32 -s 4096 -w randread -t 2 -c 1:\n%s%s", addr, errs, out)

	code, out, errs = v.run("perf", addr, "-q", "32", "-s", "4096", "-w", "randread", "-t", "2", "--warmup", "0", "-c", "0x3")
	if code != exitOK {
		t.Fatalf("perf -c 2: exit %d, stderr %q", code, errs)
	}
	two := perfTable(t, out, 1)
	t.Logf("nvmectl perf %s -q 32 -s 4096 -w randread -t 2 -c 2:\n%s%s", addr, errs, out)
	t.Logf("IOPS: 1 poller %.0f, 2 pollers %.0f", one[1], two[1])

	code, out, errs = v.run("-o", "json", "perf", addr, "-q", "16", "-s", "8K", "-w", "randrw", "-M", "70", "-t", "1", "--warmup", "0", "--qpairs-per-ns", "2")
	if code != exitOK {
		t.Fatalf("perf -o json: exit %d, stderr %q", code, errs)
	}
	p := decodePerf(t, out)
	if p.Pollers != 2 || len(p.Results) != 1 || p.Results[0].Controller != addr || p.Results[0].NSID != 1 ||
		p.Total.IOSize != 8192 || p.Total.Errors != 0 || p.Verify.Enabled {
		t.Errorf("perf json: %+v", p)
	}
	if share := float64(p.Total.Reads) / float64(p.Total.IOs); share < 0.6 || share > 0.8 {
		t.Errorf("randrw -M 70: %.3f reads of %d I/Os", share, p.Total.IOs)
	}
	t.Logf("nvmectl -o json perf: %s", out)
}

func TestVMPerfDefault(t *testing.T) {
	env := vmtest.Require(t, "default")
	v, addr := perfVM(t, env)

	code, out, errs := v.run("perf", addr, "-q", "32", "-w", "randread", "-t", "1", "--warmup", "0")
	if code != exitOK {
		t.Fatalf("perf: exit %d, stderr %q", code, errs)
	}
	perfTable(t, out, 1)
	t.Logf("nvmectl perf %s -q 32 -w randread -t 1:\n%s", addr, out)

	code, out, errs = v.run("-o", "json", "perf", addr, "-q", "8", "-s", "16K", "-w", "write", "-t", "1", "--warmup", "0", "-c", "0x3")
	if code != exitOK {
		t.Fatalf("perf -o json -w write: exit %d, stderr %q", code, errs)
	}
	p := decodePerf(t, out)
	if p.Total.Reads != 0 || p.Total.Writes == 0 || p.Pollers != 2 || p.Total.Pollers != 2 {
		t.Errorf("perf json -w write: %+v", p.Total)
	}

	// Verify: write the pattern for 2 s, then a random mix over what was
	// written, every read checked.
	code, out, errs = v.run("-o", "json", "perf", addr, "-q", "16", "-w", "randrw", "-M", "70", "-t", "2", "--warmup", "0", "-c", "0x3", "--verify")
	if code != exitOK {
		t.Fatalf("perf --verify: exit %d, stderr %q, stdout %s", code, errs, out)
	}
	p = decodePerf(t, out)
	vr := p.Verify
	if !vr.Enabled || vr.Mismatches != 0 || vr.Checked == 0 || vr.Checked < p.Total.Reads || vr.Blocks == 0 || p.Total.Errors != 0 {
		t.Errorf("verify %+v, total %+v", vr, p.Total)
	}
	t.Logf("perf --verify: %d reads checked over %d blocks, %d mismatches; %.0f IOPS", vr.Checked, vr.Blocks, vr.Mismatches, p.Total.IOPS)

	// The same in the table.
	code, out, errs = v.run("perf", addr, "-q", "4", "-s", "64K", "-w", "read", "-t", "1", "--warmup", "0", "--verify")
	if code != exitOK || !strings.Contains(out, ", 0 mismatches\n") {
		t.Fatalf("perf --verify -w read: exit %d, stderr %q, stdout:\n%s", code, errs, out)
	}
	perfTable(t, out, 1)
	t.Logf("nvmectl perf --verify -w read -s 64K:\n%s", out)
}

// TestVMPerfMetrics runs perf --metrics-addr on QEMU's controller, scrapes
// /metrics over loopback about halfway through a 3 s run (the exposition parsed and
// linted), and checks the read command counter against perf's count.
func TestVMPerfMetrics(t *testing.T) {
	env := vmtest.Require(t, "default")
	loopbackUp(t)
	v, addr := perfVM(t, env)
	const qd = 16
	p, scraped := perfScrape(t, v.run, qd, 1500*time.Millisecond, addr, "-q", strconv.Itoa(qd), "-w", "randread", "-t", "3")
	if p.Total.Errors != 0 || p.Total.Reads == 0 {
		t.Errorf("perf: %d reads, %d errors", p.Total.Reads, p.Total.Errors)
	}
	t.Logf("scraped %.0f reads during the run; perf counted %d reads in %.1f s (%.0f IOPS)", scraped, p.Total.Reads, p.Total.Seconds, p.Total.IOPS)
}
