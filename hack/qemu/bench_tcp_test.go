package main

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
)

func TestBenchTCPFlags(t *testing.T) {
	o, err := parseBenchFlags([]string{"--tcp", "--reps", "2"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Profile != "null+nvmf" || o.QemuImg != nil || o.HostBench {
		t.Errorf("--tcp: profile %q, qemu-img %v, host bench %v; want null+nvmf, none, off", o.Profile, o.QemuImg, o.HostBench)
	}
	if g := strings.Join(o.guestArgs(), " "); !strings.HasSuffix(g, " -tcp") || strings.Contains(g, "-qemu-img") {
		t.Errorf("guest args %q", g)
	}
	// 2 reps x 2 depths x 2 engines x 2 workloads.
	if o.runs() != 16 {
		t.Errorf("runs = %d, want 16", o.runs())
	}
	if n, err := parseBenchFlags([]string{"--tcp", "--profile", "nvmf+null"}); err != nil || n.Profile != "null+nvmf" {
		t.Errorf("--tcp with nvmf already: %+v, %v", n, err)
	}
}

func TestRenderTCPTable(t *testing.T) {
	o, err := parseBenchFlags([]string{"--tcp", "--workloads", "randread", "--reps", "2"})
	if err != nil {
		t.Fatal(err)
	}
	var ss []bench.Sample
	for rep := range 2 {
		ss = append(ss,
			sample(bench.EngineTCPKernelIRQ, bench.RandRead, 1, rep, 1000, 900),
			sample(bench.EngineTCPGonvme, bench.RandRead, 1, rep, 1800, 500),
			sample(bench.EngineTCPKernelIRQ, bench.RandRead, 32, rep, 2200, 14000),
		)
	}
	ss = append(ss, sample(bench.EngineTCPGonvme, bench.RandRead, 32, 0, 3300, 9000),
		bench.Sample{Engine: bench.EngineTCPGonvme, Workload: bench.RandRead, Depth: 32, Rep: 1, Err: "connect: unsupported operation"})
	h := tableHeader{Command: "go run ./hack/qemu bench --tcp", Date: time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC), Opts: o,
		Info: map[string]string{"kernel": "6.1.0-57-amd64", "tcp_target": "nvmet nqn.x on 127.0.0.1:4420, namespace /dev/nvme0n1"},
		QEMU: "QEMU emulator version 7.2.22", HostCPUs: 2}
	got := renderTCPTable(h, ss)
	for _, want := range []string{
		"profile null+nvmf", "nvmet nqn.x on 127.0.0.1:4420",
		"| randread | 1 | **gonvme** host, nvmectl perf tcp://, 1 poller | 1800 | 1800–1800 |",
		"| 1.50× |",                         // 1800 / the better kernel row, 1200
		"| 3300 | 3300–3300 (1/2 failed) |", // the failed run is not in the median
		"| 1.50× |\n",
		"QD32 randread IOPS gonvme ÷ kernel initiator = 1.50× (want ≥ 1.2×): met",
		"- randread QD32 gonvme-tcp, rep 2: connect: unsupported operation",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	// Nothing measured by gonvme: the target is not met, it is not measured.
	got = renderTCPTable(h, ss[:6])
	if !strings.Contains(got, "(want ≥ 1.2×): not measured") {
		t.Errorf("without gonvme rows:\n%s", got)
	}
}

func TestRunNVMetFlags(t *testing.T) {
	parse := func(args ...string) (*bootFlags, string, error) {
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		var f bootFlags
		f.register(fs, "default")
		bind := fs.String("bind", "vfio", "")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		err := nvmetRun(fs, &f, bind)
		return &f, *bind, err
	}
	if f, bind, err := parse(); err != nil || bind != "kernel" || f.Profile != "default+nvmf" {
		t.Errorf("--nvmet: profile %q, bind %q, %v; want default+nvmf, kernel", f.Profile, bind, err)
	}
	if f, bind, err := parse("--profile", "nvmf+4k", "--bind", "kernel"); err != nil || bind != "kernel" || f.Profile != "nvmf+4k" {
		t.Errorf("--nvmet --profile nvmf+4k: profile %q, bind %q, %v", f.Profile, bind, err)
	}
	if _, _, err := parse("--bind", "vfio"); err == nil || !strings.Contains(err.Error(), "--bind kernel") {
		t.Errorf("--nvmet --bind vfio: %v", err)
	}
}
