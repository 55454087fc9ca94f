package main

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/internal/cpuset"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// TestPerfCoreMask: -c has SPDK's meaning. "2" is the mask of core 1 (one
// poller there), not two pollers; "0x3" and "[0-1]" are cores 0 and 1.
func TestPerfCoreMask(t *testing.T) {
	needCPUs(t, 2)
	allowed, _ := cpuset.Allowed()
	if !slices.Contains(allowed, 1) || !slices.Contains(allowed, 0) {
		t.Skipf("needs CPUs 0 and 1 (allowed %v)", allowed)
	}
	r := newPerfRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 14}}})
	for _, tc := range []struct {
		mask string
		want []int
	}{{"2", []int{1}}, {"0x3", []int{0, 1}}, {"[0-1]", []int{0, 1}}, {"1", []int{0}}} {
		code, out, errs := r.run("-o", "json", "perf", r.addrs[0], "-q", "2", "-t", "0.1", "-c", tc.mask)
		if code != exitOK {
			t.Fatalf("-c %s: exit %d, stderr %q", tc.mask, code, errs)
		}
		if p := decodePerf(t, out); !slices.Equal(p.CPUs, tc.want) || p.Pollers != len(tc.want) {
			t.Errorf("-c %s: pollers %d on cpus %v, want %v", tc.mask, p.Pollers, p.CPUs, tc.want)
		}
	}
}

// TestPerfNUMAPlacement: without -c the pollers go on the CPUs of the
// controller's NUMA node.
func TestPerfNUMAPlacement(t *testing.T) {
	allowed, err := cpuset.Allowed()
	if err != nil {
		t.Fatal(err)
	}
	sys := fakeSysfs(t,
		fakeDev{"0000:00:04.0", 0x1b36, 0x0010, vfio.ClassNVMe, "vfio-pci", 3}, // node 0
		fakeDev{"0000:00:05.0", 0x1b36, 0x0010, vfio.ClassNVMe, "vfio-pci", 4}, // node 1
	)
	last := allowed[len(allowed)-1]
	for node, cpus := range map[int]string{0: "", 1: strconv.Itoa(last)} {
		dir := filepath.Join(sys, "devices/system/node", "node"+strconv.Itoa(node))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "cpulist"), []byte(cpus+"\n"))
	}
	a := fromSysfs(sys)
	cfg := &perfConfig{addrs: []string{"0000:00:05.0"}, pollers: 1}
	if err := placePollers(a, cfg); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.cpus, []int{last}) || !strings.Contains(cfg.placement, "NUMA node 1 of 0000:00:05.0") {
		t.Errorf("placed on %v (%s), want cpu %d on node 1", cfg.cpus, cfg.placement, last)
	}
	// Node 0 has no CPU this process may use: the first allowed ones.
	cfg = &perfConfig{addrs: []string{"0000:00:04.0"}, pollers: 1}
	if err := placePollers(a, cfg); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.cpus, allowed[:1]) {
		t.Errorf("placed on %v, want %v", cfg.cpus, allowed[:1])
	}
}

// TestPerfSignalsEndTheRun: SIGTERM (timeout(1)) and SIGHUP end a run as
// Ctrl-C does: it stops early and prints what it measured.
func TestPerfSignalsEndTheRun(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			r := newPerfRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 14}}})
			fake := r.fakes[0]
			go func() {
				// I/O flows only after perf's signal handler is in place
				// (it is installed before the controller is opened).
				for fake.Stats().Commands(spec.IORead) < 1000 {
					time.Sleep(time.Millisecond)
				}
				syscall.Kill(os.Getpid(), sig)
			}()
			start := time.Now()
			code, out, errs := r.run("perf", r.addrs[0], "-q", "4", "-t", "60")
			if el := time.Since(start); el > 30*time.Second {
				t.Fatalf("perf ran %v after %v", el, sig)
			}
			if code != exitOK || !strings.Contains(out, "Total") || !strings.Contains(out, "IOPS") {
				t.Fatalf("after %v: exit %d, stdout %q, stderr %q", sig, code, out, errs)
			}
		})
	}
}

// TestPerfSeedReplays: the same --seed drives the same random offsets.
func TestPerfSeedReplays(t *testing.T) {
	cfg := &perfConfig{seed: 42}
	run := &perfRun{cfg: cfg, seed: cfg.seed}
	offsets := func() []uint64 {
		j := &perfJob{run: run, rng: jobSeed(run.seed, 0), random: true, span: 1 << 20}
		var out []uint64
		for range 16 {
			out = append(out, j.rand()%j.span)
		}
		return out
	}
	a, b := offsets(), offsets()
	if !slices.Equal(a, b) {
		t.Errorf("seed 42 gave %v, then %v", a, b)
	}
	run.seed = 43
	if c := offsets(); slices.Equal(a, c) {
		t.Errorf("seeds 42 and 43 gave the same offsets %v", a)
	}
}

// TestPerfReportV2: the JSON carries the run's metadata, per-second
// samples, histogram buckets and read and write latency apart; -L and
// -LL print SPDK's summary and histogram; a mixed workload's table has a
// row each for the reads and the writes.
func TestPerfReportV2(t *testing.T) {
	r := newPerfRig(t, nvmetest.Config{Serial: "SER9", Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 14}}})
	code, out, errs := r.run("-o", "json", "perf", r.addrs[0], "-q", "4", "-w", "randrw", "-M", "70", "-t", "2.2", "--seed", "12345")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	p := decodePerf(t, out) // perfjson.Decode: every key present, counts and histograms add up
	m := p.Run
	if m.NvmectlVersion == "" || m.GoVersion != runtime.Version() || m.Kernel == "" || m.StartTime == "" || m.DMAMemory == "" ||
		len(m.Controllers) != 1 || m.Controllers[0].Serial != "SER9" || m.Controllers[0].Address != r.addrs[0] {
		t.Errorf("run metadata %+v", m)
	}
	if p.Seed != 12345 {
		t.Errorf("seed %d, want 12345", p.Seed)
	}
	if len(p.Samples) < 2 || p.Samples[0].IOs == 0 || p.Samples[0].Second < 0.9 || p.Samples[0].Second > 1.5 {
		t.Errorf("samples %+v, want one per second of the 2.2 s measured", p.Samples)
	}
	tot := p.Total
	if tot.Reads == 0 || tot.Writes == 0 || tot.ReadLatency.P50 == 0 || tot.WriteLatency.P50 == 0 || len(tot.Histogram) == 0 {
		t.Errorf("total: reads %d writes %d read p50 %v write p50 %v, %d buckets", tot.Reads, tot.Writes, tot.ReadLatency.P50, tot.WriteLatency.P50, len(tot.Histogram))
	}

	code, out, errs = r.run("perf", r.addrs[0], "-q", "4", "-w", "randrw", "-M", "70", "-t", "1", "-a", "0.2", "-LL")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, s := range []string{"  reads ", "  writes ", "Summary latency data for " + r.addrs[0] + " NSID 1 from 1 poller(s)",
		" 99.99999% :", "  1.00000% :", "Summary latency data for " + r.addrs[0] + " NSID 1 reads", "Latency histogram for ",
		"Range in us     Cumulative    IO count", "100.0000%"} {
		if !strings.Contains(out, s) {
			t.Errorf("perf -LL output lacks %q:\n%s", s, out)
		}
	}
	if n := strings.Count(out, "% :"); n != 3*len(latencyPercentiles) {
		t.Errorf("%d percentile lines, want %d (all, reads, writes)", n, 3*len(latencyPercentiles))
	}
	code, out, _ = r.run("perf", r.addrs[0], "-q", "4", "-w", "randread", "-t", "0.5", "-a", "0.2", "-L")
	if code != exitOK || !strings.Contains(out, "Summary latency data") || strings.Contains(out, "Latency histogram") || strings.Contains(out, "  reads ") {
		t.Errorf("perf -L on randread:\n%s", out)
	}
}
