package main

import (
	"bytes"
	"encoding/base64"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
)

// fioLdd is ldd's output for Debian's fio 3.33, shortened.
const fioLdd = `	linux-vdso.so.1 (0x00007eff800fa000)
	libnuma.so.1 => /lib/x86_64-linux-gnu/libnuma.so.1 (0x00007eff800dc000)
	libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007eff800bd000)
	librados.so.2 => /lib/x86_64-linux-gnu/librados.so.2 (0x00007eff7fb71000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007eff7f01e000)
	/lib64/ld-linux-x86-64.so.2 (0x00007eff800fc000)
	libceph-common.so.2 => /usr/lib/x86_64-linux-gnu/ceph/libceph-common.so.2 (0x00007eff75c00000)
`

func TestParseLdd(t *testing.T) {
	d, err := parseLdd([]byte(fioLdd))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/lib/x86_64-linux-gnu/libnuma.so.1", "/lib/x86_64-linux-gnu/libz.so.1",
		"/lib/x86_64-linux-gnu/librados.so.2", "/lib/x86_64-linux-gnu/libc.so.6",
		"/usr/lib/x86_64-linux-gnu/ceph/libceph-common.so.2",
	}
	if strings.Join(d.Libs, " ") != strings.Join(want, " ") {
		t.Errorf("libs\n got %v\nwant %v", d.Libs, want)
	}
	if d.Loader != "/lib64/ld-linux-x86-64.so.2" {
		t.Errorf("loader %q", d.Loader)
	}

	for _, static := range []string{"\tstatically linked\n", "\tnot a dynamic executable\n"} {
		d, err := parseLdd([]byte(static))
		if err != nil || len(d.Libs) != 0 || d.Loader != "" {
			t.Errorf("%q: %+v, %v", static, d, err)
		}
	}
	if _, err := parseLdd([]byte(fioLdd + "\tlibgone.so.3 => not found\n")); err == nil || !strings.Contains(err.Error(), "libgone.so.3") {
		t.Errorf("missing library: err %v", err)
	}
	if _, err := parseLdd([]byte("\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x1)\n")); err == nil {
		t.Error("libraries without a loader: no error")
	}
}

// TestCarryIntoInitramfs carries a fake binary with fake libraries (the
// ldd output points at files in a temp dir) and checks that each lands in
// the archive at the path ldd named, with its content, symlinks followed.
func TestCarryIntoInitramfs(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, content string) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bin := write("usr/bin/tool", "ELF tool")
	libz := write("lib/libz.so.1.2.13", "ELF libz")
	link := filepath.Join(dir, "lib/libz.so.1")
	if err := os.Symlink("libz.so.1.2.13", link); err != nil {
		t.Fatal(err)
	}
	libc := write("lib/libc.so.6", "ELF libc")
	ld := write("lib64/ld.so", "ELF loader")
	other := write("usr/bin/other", "ELF other")

	cs := newCarrySet()
	cs.ldd = func(b string) ([]byte, error) {
		switch b {
		case bin:
			return []byte("\tlinux-vdso.so.1 (0x1)\n\tlibz.so.1 => " + link + " (0x2)\n\tlibc.so.6 => " + libc + " (0x3)\n\t" + ld + " (0x4)\n"), nil
		case other: // shares libc and the loader
			return []byte("\tlibc.so.6 => " + libc + " (0x3)\n\t" + ld + " (0x4)\n"), nil
		}
		t.Fatalf("ldd %s", b)
		return nil, nil
	}
	if err := cs.add(bin, "/gonvme/bin/tool"); err != nil {
		t.Fatal(err)
	}
	if err := cs.add(other, "/gonvme/bin/other"); err != nil {
		t.Fatal(err)
	}
	if err := cs.add(other, "relative/path"); err == nil {
		t.Error("a relative guest path was accepted")
	}
	files := cs.list()
	if len(files) != 5 {
		t.Fatalf("want 5 files (2 binaries, 2 libraries once each, the loader), got %d: %+v", len(files), files)
	}
	out := filepath.Join(dir, "initramfs.cpio")
	if err := writeInitramfs(out, files); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(f))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]cpio.Record{}
	for _, r := range recs {
		got[r.Name] = r
	}
	for name, src := range map[string]string{
		"gonvme/bin/tool":             bin,
		"gonvme/bin/other":            other,
		strings.TrimPrefix(link, "/"): libz, // the symlink's target content, at the symlink's path
		strings.TrimPrefix(libc, "/"): libc,
		strings.TrimPrefix(ld, "/"):   ld,
	} {
		r, ok := got[name]
		if !ok {
			t.Errorf("%s missing from the archive", name)
			continue
		}
		if r.Mode&cpio.S_IFMT != cpio.S_IFREG || r.Mode&0o111 == 0 {
			t.Errorf("%s: mode %o, want an executable regular file", name, r.Mode)
		}
		b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(src)
		if !bytes.Equal(b, want) {
			t.Errorf("%s: content %q, want %q", name, b, want)
		}
	}
	if _, ok := got[strings.TrimPrefix(filepath.Dir(link), "/")]; !ok {
		t.Errorf("the libraries' directory is not in the archive")
	}
}

// TestCarryRealBinary runs the real ldd on a host binary: the loader and
// libc must be found.
func TestCarryRealBinary(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	if _, err := exec.LookPath("ldd"); err != nil {
		t.Skip("no ldd")
	}
	out, err := runLdd(sh)
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseLdd(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Libs) == 0 {
		t.Skipf("%s is static", sh)
	}
	if d.Loader == "" {
		t.Fatalf("no loader in %q", out)
	}
	cs := newCarrySet()
	if err := cs.add(sh, "/gonvme/bin/sh"); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range cs.list() {
		names[f.Name] = true
		if _, err := os.Stat(f.Src); err != nil {
			t.Errorf("%s: %v", f.Name, err)
		}
	}
	if !names["gonvme/bin/sh"] || !names[strings.TrimPrefix(d.Loader, "/")] {
		t.Errorf("archive names %v lack the binary or the loader %s", names, d.Loader)
	}
}

func TestParseBenchFlags(t *testing.T) {
	o, err := parseBenchFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Reps != 3 || o.Time != 5*time.Second || o.Profile != "null" || len(o.Depths) != 2 ||
		len(o.Workloads) != 2 || strings.Join(o.QemuImg, ",") != "randread" {
		t.Errorf("defaults: %+v", o)
	}
	// 3 reps x 2 depths x (6 engines x 2 workloads + qemu-img x 1): the
	// engines are io_uring irq and polled, gonvme, gonvme with MMIO
	// doorbells, the bare loop with shadow and with MMIO doorbells.
	if o.runs() != 78 {
		t.Errorf("runs = %d, want 78", o.runs())
	}
	short, _ := parseBenchFlags([]string{"--reps", "1", "--time", "2s"})
	if !(short.timeLimit() < o.timeLimit()) || o.timeLimit() < time.Duration(o.runs())*(o.Time+o.Warmup) {
		t.Errorf("time limits: %v (1 rep, 2s) vs %v (defaults)", short.timeLimit(), o.timeLimit())
	}
	if g := strings.Join(o.guestArgs(), " "); g != "/gonvme/bin/guestbench -reps 3 -time 5 -warmup 1 -depths 1,32 -workloads randread,randwrite -qemu-img randread -modes interrupt,hybrid -cpu-seconds 10 -cpu-rate 1000" {
		t.Errorf("guest args %q", g)
	}
	n, err := parseBenchFlags([]string{"--qemu-img", "none", "--profile", "4k+null", "--workloads", "randread"})
	if err != nil || n.QemuImg != nil || n.Profile != "null+4k" || n.runs() != 3*2*6 {
		t.Errorf("--qemu-img none: %+v, %v", n, err)
	}
	for _, bad := range [][]string{
		{"--time", "1500ms"}, {"--time", "0s"}, {"--reps", "0"}, {"--depths", "1,x"},
		{"--workloads", "seqread"}, {"--profile", "two-ctrl"}, {"--profile", "media-errors"}, {"extra"},
		{"--modes", "adaptive"}, {"--mode-cpu", "1500ms"}, {"--mode-rate", "0"},
	} {
		if _, err := parseBenchFlags(bad); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

func TestBenchCommandLine(t *testing.T) {
	got := benchCommandLine([]string{"--reps", "3", "--append", "clocksource=tsc tsc=reliable"})
	if want := `go run ./hack/qemu bench --reps 3 --append "clocksource=tsc tsc=reliable"`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := benchCommandLine(nil); got != "go run ./hack/qemu bench" {
		t.Errorf("no args: %q", got)
	}
}

func TestLineTap(t *testing.T) {
	var shown bytes.Buffer
	tap := &lineTap{w: &shown, hide: []string{bench.SamplePrefix}}
	io.WriteString(tap, "booting\r\n"+bench.SamplePrefix+`{"engine":"gonvme"}`+"\nhalf a ")
	io.WriteString(tap, "line\nrest")
	if got := shown.String(); got != "booting\nhalf a line\n" {
		t.Errorf("shown %q", got)
	}
	lines := tap.Lines()
	if len(lines) != 4 || lines[1] != bench.SamplePrefix+`{"engine":"gonvme"}` || lines[3] != "rest" {
		t.Errorf("lines %q", lines)
	}
}

func sample(engine, wl string, qd, rep int, iops, p50 float64) bench.Sample {
	s := bench.Sample{Engine: engine, Workload: wl, Depth: qd, Rep: rep, IOPS: iops}
	if engine != bench.EngineQemuImg {
		s.Lat = &bench.Latency{Avg: p50 * 1.1, P50: p50, P99: p50 * 3, P999: p50 * 10}
	}
	return s
}

func TestParseBenchOutput(t *testing.T) {
	prof := []byte("pprof bytes \x00\x01\x02 that span chunks")
	enc := base64.StdEncoding.EncodeToString(prof)
	lines := []string{
		"gonvme-init: 6 VFIO modules loaded",
		bench.InfoPrefix + "fio=fio-3.33",
		sample(bench.EnginePoll, bench.RandRead, 1, 0, 13800, 29).Line(),
		"guestbench: rep 1/3 randread qd1 io_uring-poll: 13800 IOPS",
		bench.ProfilePrefix + enc[:10],
		bench.ProfilePrefix + enc[10:] + "\r",
		sample(bench.EngineGonvme, bench.RandRead, 1, 0, 20000, 12).Line(),
		bench.ReportPrefix + "    12.50%  nvmectl  nvmectl  [.] runtime.futex\r",
	}
	out, err := parseBenchOutput(lines)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Samples) != 2 || out.Samples[1].Engine != bench.EngineGonvme || out.Info["fio"] != "fio-3.33" {
		t.Errorf("got %+v", out)
	}
	if len(out.Report) != 1 || out.Report[0] != "    12.50%  nvmectl  nvmectl  [.] runtime.futex" {
		t.Errorf("report %q", out.Report)
	}
	if !bytes.Equal(out.Profile, prof) {
		t.Errorf("profile %q, want %q", out.Profile, prof)
	}
	_, err = parseBenchOutput(append(lines, bench.SamplePrefix+`{"engine":`))
	if err == nil {
		t.Error("a broken sample line gave no error")
	}
}

func TestRenderTable(t *testing.T) {
	o, err := parseBenchFlags([]string{"--workloads", "randread", "--reps", "3"})
	if err != nil {
		t.Fatal(err)
	}
	var ss []bench.Sample
	for rep, f := range []float64{1.0, 0.9, 1.2} {
		ss = append(ss,
			sample(bench.EngineIRQ, bench.RandRead, 1, rep, 6600*f, 60),
			sample(bench.EnginePoll, bench.RandRead, 1, rep, 13800*f, 30),
			sample(bench.EngineGonvme, bench.RandRead, 1, rep, 20000*f, 14+float64(rep)),
			sample(bench.EngineIRQ, bench.RandRead, 32, rep, 13800*f, 2000),
			sample(bench.EnginePoll, bench.RandRead, 32, rep, 17000*f, 1800),
			sample(bench.EngineQemuImg, bench.RandRead, 32, rep, 25000*f, 0),
			sample(bench.EngineGonvmeMMIO, bench.RandRead, 32, rep, 30000*f, 900),
			sample(bench.EngineBare, bench.RandRead, 32, rep, 40000*f, 600),
			sample(bench.EngineBareMMIO, bench.RandRead, 32, rep, 50000*f, 500),
		)
		g := sample(bench.EngineGonvme, bench.RandRead, 32, rep, 40000*f, 700)
		if rep == 2 {
			g = bench.Sample{Engine: bench.EngineGonvme, Workload: bench.RandRead, Depth: 32, Rep: 2, Err: "nvmectl: exit status 2:\nno DMA memory"}
		}
		ss = append(ss, g)
	}
	h := tableHeader{
		Command: "go run ./hack/qemu bench --reps 3", Date: time.Date(2026, 11, 24, 10, 30, 0, 0, time.UTC),
		Opts: o, Info: map[string]string{"kernel": "6.1.0-56-amd64", "fio": "fio-3.33", "io_poll": "1"},
		QEMU: "QEMU emulator version 7.2.22", HostCPUs: 2,
	}
	got := renderTable(h, ss)
	for _, want := range []string{
		"`go run ./hack/qemu bench --reps 3`, 2026-11-24 10:30 UTC",
		"guest kernel 6.1.0-56-amd64", "fio-3.33", "io_poll=1",
		"| workload | QD | driver | IOPS | IOPS min–max | avg µs | p50 µs | p99 µs | p99.9 µs | ÷ io_uring polled | ÷ io_uring irq | ÷ bare |",
		// median of 6600, 5940, 7920; no ratio on kernel rows, no bare loop at QD1
		"| randread | 1 | kernel nvme, fio io_uring, interrupts (hipri=0) | 6600 | 5940–7920 | 66.0 | 60.0 | 180 | 600 |  |  |  |",
		// gonvme QD1: IOPS median 20000; p50 median of 14, 15, 16; 20000/13800 and 20000/6600
		"| randread | 1 | **gonvme**, nvmectl perf, 1 poller, shadow doorbells | 20000 | 18000–24000 | 16.5 | 15.0 | 45.0 | 150 | 1.45× | 3.03× |  |",
		// one failed run: median of the two good ones, (36000+40000)/2; 38000/40000 of the bare loop
		"| randread | 32 | **gonvme**, nvmectl perf, 1 poller, shadow doorbells | 38000 | 36000–40000 (1/3 failed) | 770 | 700 | 2100 | 7000 | 2.24× | 2.75× | 0.95× |",
		"| randread | 32 | gonvme, nvmectl perf, 1 poller, MMIO doorbells (--no-shadow-doorbells) | 30000 | 27000–36000 | 990 | 900 | 2700 | 9000 | 1.76× | 2.17× | 0.75× |",
		"| randread | 32 | QEMU nvme:// (qemu-img bench, sequential offsets) | 25000 | 22500–30000 | – | – | – | – | 1.47× | 1.81× | 0.62× |",
		"| randread | 32 | bare VFIO submit/reap loop, 1 queue pair, shadow doorbells (upper bound) | 40000 | 36000–48000 | 660 | 600 | 1800 | 6000 | 2.35× | 2.90× |  |",
		"- QD32 IOPS gonvme ÷ io_uring polled = 2.24× (want ≥ 5×): missed",
		"- QD32 IOPS gonvme ÷ bare loop = 0.95× (want ≥ 0.9×): met",
		"| randread | 32 | bare VFIO submit/reap loop, 1 queue pair, MMIO doorbells (-shadow=false) | 50000 | 45000–60000 | 550 | 500 | 1500 | 5000 | 2.94× | 3.62× | 1.25× |",
		// 30000 / 50000
		"- QD32 IOPS gonvme-mmio ÷ bare-mmio = 0.60× (both MMIO doorbells; for reference)",
		"- QD1 p50 latency gonvme ÷ io_uring polled = 0.50× (want ≤ 0.5×): met",
		"- randread QD32 gonvme, rep 3: nvmectl: exit status 2: no DMA memory",
		// rep by rep: 40000/40000, 36000/36000, and rep 3 failed
		"- QD32 IOPS gonvme ÷ bare loop, repetition by repetition: 1.00, 1.00, –; median 1.00×\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q\n%s", want, got)
		}
	}
	// Rows come in a fixed order: QD1 before QD32, the kernel before gonvme.
	if i, j := strings.Index(got, "| randread | 1 | kernel nvme, fio io_uring, polled"), strings.Index(got, "| randread | 1 | **gonvme**"); i < 0 || j < i {
		t.Error("rows out of order")
	}
	if strings.Contains(got, "randwrite") {
		t.Error("a workload that did not run has rows")
	}
	// Every table line has the same number of cells.
	for _, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(l, "|") && strings.Count(l, "|") != 13 {
			t.Errorf("row with %d bars: %q", strings.Count(l, "|"), l)
		}
	}

	// A missed target says so; a missing measurement is "not measured".
	var slow []bench.Sample
	for _, s := range ss {
		if s.Engine == bench.EngineGonvme && s.Depth == 32 {
			s.IOPS /= 2
		}
		if s.Engine == bench.EngineGonvme && s.Depth == 1 {
			continue
		}
		slow = append(slow, s)
	}
	got = renderTable(h, slow)
	for _, want := range []string{"(want ≥ 0.9×): missed", "QD1 p50 latency gonvme ÷ io_uring polled = – (want ≤ 0.5×): not measured"} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q\n%s", want, got)
		}
	}
}

func TestBenchResultLines(t *testing.T) {
	out := "goos: linux\ngoarch: amd64\npkg: github.com/seedb8fa28ef/gonvme/poller\ncpu: AMD EPYC\n" +
		"BenchmarkOverhead/qd1-2   \t  200000\t      1234 ns/op\t 1.21 ratio\t 1.30 ddi-ratio\nPASS\nok  \tgithub.com/seedb8fa28ef/gonvme/poller\t3.2s\n"
	got := benchResultLines(out)
	if len(got) != 2 || got[0] != "cpu: AMD EPYC" || !strings.HasPrefix(got[1], "BenchmarkOverhead/qd1-2") {
		t.Errorf("got %q", got)
	}
	r := renderHostBench(got, nil)
	if !strings.Contains(r, "go test -run XXX -bench Overhead -benchtime 200000x ./poller") || !strings.Contains(r, "1.30 ddi-ratio") {
		t.Errorf("rendered %q", r)
	}
}

// The mode rows and CPU records of a console make their tables and the
// idle and hybrid target lines; --modes none --mode-cpu 0 asks the guest
// for none.
func TestRenderModes(t *testing.T) {
	o, err := parseBenchFlags([]string{"--workloads", "randread", "--depths", "1"})
	if err != nil {
		t.Fatal(err)
	}
	lat := func(p50 float64) *bench.Latency {
		return &bench.Latency{Avg: p50, Min: p50 / 2, Max: 3 * p50, P50: p50, P90: p50, P99: 2 * p50, P999: 2 * p50}
	}
	samples := []bench.Sample{
		{Engine: bench.EngineGonvme, Workload: "randread", Depth: 1, IOPS: 20000, Lat: lat(40)},
		{Engine: "gonvme-interrupt", Workload: "randread", Depth: 1, IOPS: 10000, Lat: lat(80)},
		{Engine: "gonvme-hybrid", Workload: "randread", Depth: 1, IOPS: 19000, Lat: lat(42)},
	}
	lines := []string{
		bench.CPU{Run: bench.RunServeIdle, Mode: "poll", Idle: "busy", Seconds: 10, CPUPct: 99.5}.Line(),
		bench.CPU{Run: bench.RunServeIdle, Mode: "interrupt", Seconds: 10, CPUPct: 0.4}.Line(),
		"guestbench: something else",
		bench.CPU{Run: bench.RunServeIdle, Mode: "hybrid", Seconds: 10, CPUPct: 3.5}.Line(),
		bench.CPU{Run: bench.RunPerfRate, Mode: "poll", Rate: 1000, Seconds: 4, CPUPct: 100, IOPS: 1000, P50: 40, P99: 90}.Line(),
		bench.CPU{Run: bench.RunPerfRate, Mode: "hybrid", Rate: 1000, Err: "boom"}.Line(),
	}
	out := renderModes(o, samples, lines)
	for _, want := range []string{
		"| randread | 1 | hybrid | 19000 | 42.0 | 42.0 | 84.0 | 84.0 | 0.95× | 1.05× |",
		"| idle `nvmectl serve`, 1 poller | poll (--idle busy) | 99.50 | 10.0 |",
		"- idle serve, interrupt mode: 0.40% of a CPU (want ≤ 2%): met",
		"- idle serve, hybrid mode: 3.50% of a CPU (want ≤ 2%): missed",
		"- QD1 randread p50, hybrid ÷ poll = 1.05× (want ≤ 1.1×): met",
		"- cpu perf-qd1-rate hybrid: boom",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("renderModes lacks %q:\n%s", want, out)
		}
	}
	none, err := parseBenchFlags([]string{"--workloads", "randread", "--depths", "1", "--modes", "none", "--mode-cpu", "0"})
	if err != nil {
		t.Fatal(err)
	}
	if g := strings.Join(none.guestArgs(), " "); strings.Contains(g, "-modes") || strings.Contains(g, "-cpu-seconds") {
		t.Errorf("--modes none --mode-cpu 0: guest args %q", g)
	}
	if none.timeLimit() >= o.timeLimit() {
		t.Errorf("time limit without modes %v, with %v", none.timeLimit(), o.timeLimit())
	}
}
