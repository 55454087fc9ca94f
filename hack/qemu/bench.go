package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/guest"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// benchOptions drive one `bench` run.
type benchOptions struct {
	Reps       int
	Time       time.Duration
	Warmup     time.Duration
	Profile    string
	Depths     []int
	Workloads  []string
	QemuImg    []string // workloads for the qemu-img rows, none for no rows
	HostBench  bool
	CPUProfile string // host file for the guest nvmectl perf CPU profile, "" for none
	Timeout    time.Duration
	Keep       bool
	Append     string    // extra guest kernel command line
	Smoke      bool      // --smoke: benchSmoke's fixed options, a pass/fail verdict
	NoIRQ      bool      // no fio rows on the kernel's interrupt-driven queues (the smoke)
	TCP        bool      // --tcp: only the NVMe/TCP rows (bench_tcp.go)
	NVMfTarget bool      // --nvmf-target: only the NVMe/TCP target rows (bench_target.go)
	Modes      modeFlags // poller mode rows and CPU (bench_modes.go)
}

// The host-side benchmark printed under the table (poller/bench_test.go).
var hostBenchArgs = []string{"test", "-run", "XXX", "-bench", "Overhead", "-benchtime", "200000x", "./poller"}

func parseBenchFlags(args []string) (*benchOptions, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := &benchOptions{}
	fs.IntVar(&o.Reps, "reps", 3, "repetitions of every run (the table shows medians and ranges)")
	fs.DurationVar(&o.Time, "time", 5*time.Second, "measured time of every run (whole seconds)")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "warm-up before every run (whole seconds; fio ramp_time, nvmectl perf --warmup)")
	fs.StringVar(&o.Profile, "profile", "null", "device profile: one controller (null or default, combinable with 4k, small-mdts, ...)")
	depths := fs.String("depths", "1,32", "queue depths, comma separated")
	workloads := fs.String("workloads", "randread,randwrite", "workloads, comma separated (randread, randwrite)")
	qemuImg := fs.String("qemu-img", bench.RandRead, "workloads for rows of QEMU's own userspace driver (qemu-img bench nvme://, sequential offsets), comma separated; \"none\" for no rows")
	fs.BoolVar(&o.HostBench, "host-bench", true, "run the poller overhead benchmark on the host after the guest")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "profile one extra guest nvmectl perf randread run (deepest depth): pprof with its --cpuprofile, else Linux perf's report; written to this file, top functions printed")
	fs.DurationVar(&o.Timeout, "timeout", 0, "time limit for the boot (0: scaled from reps, time and the runs)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the work directory")
	fs.StringVar(&o.Append, "append", "", "extra guest kernel command line (e.g. \"clocksource=tsc tsc=reliable\")")
	fs.BoolVar(&o.TCP, "tcp", false, "only the NVMe/TCP rows: the kernel's nvme-tcp initiator (fio io_uring) and gonvme's host (nvmectl perf tcp://) against one nvmet target in the guest, exporting the controller's namespace; adds nvmf to the profile, no qemu-img or host rows")
	fs.BoolVar(&o.NVMfTarget, "nvmf-target", false, "only the NVMe/TCP target rows: the guest kernel's initiator and fio on Linux's nvmet and on gonvme's target (bench_target.go)")
	o.Modes.add(fs)
	fs.BoolVar(&o.Smoke, "smoke", false, "the check ci runs: 1 repetition of 1 s runs, randread at QD1 and QD32, no qemu-img or host rows; fails on a failed run, a missing key or a zero IOPS or latency (takes no other flag)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.Smoke {
		var others []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name != "smoke" {
				others = append(others, "--"+f.Name)
			}
		})
		if len(others) > 0 || fs.NArg() > 0 {
			return nil, fmt.Errorf("bench: --smoke takes no other flag or argument (got %s)", strings.Join(append(others, fs.Args()...), " "))
		}
		return o, nil
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	if err := o.Modes.parse(); err != nil {
		return nil, err
	}
	if o.Reps < 1 {
		return nil, fmt.Errorf("bench: --reps %d: want at least 1", o.Reps)
	}
	if o.Time < time.Second || o.Time%time.Second != 0 {
		return nil, fmt.Errorf("bench: --time %v: want whole seconds, at least 1s", o.Time)
	}
	if o.Warmup < 0 || o.Warmup%time.Second != 0 {
		return nil, fmt.Errorf("bench: --warmup %v: want whole seconds", o.Warmup)
	}
	for _, d := range strings.Split(*depths, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(d))
		if err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("bench: --depths %q: %q is not a queue depth", *depths, d)
		}
		o.Depths = append(o.Depths, n)
	}
	var err error
	if o.Workloads, err = parseWorkloads(*workloads); err != nil {
		return nil, fmt.Errorf("bench: --workloads: %w", err)
	}
	if q := strings.TrimSpace(*qemuImg); q != "none" && q != "" {
		qw, err := parseWorkloads(q)
		if err != nil {
			return nil, fmt.Errorf("bench: --qemu-img: %w", err)
		}
		for _, w := range qw {
			if slices.Contains(o.Workloads, w) {
				o.QemuImg = append(o.QemuImg, w)
			}
		}
	}
	if o.TCP {
		o.tcpMode()
	}
	if o.NVMfTarget {
		nvmfTargetOptions(o)
	}
	p, err := vmtest.ParseProfile(o.Profile)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if len(p.Ctrls) != 1 {
		return nil, fmt.Errorf("bench: profile %s has %d controllers; the bench drives one", p.Name, len(p.Ctrls))
	}
	if p.Ctrls[0].Namespaces[0].MediaErrorLBAs != nil {
		return nil, fmt.Errorf("bench: profile %s injects media errors; pick one without", p.Name)
	}
	o.Profile = p.Name
	return o, nil
}

func parseWorkloads(list string) ([]string, error) {
	var out []string
	for _, w := range strings.Split(list, ",") {
		switch w = strings.TrimSpace(w); w {
		case bench.RandRead, bench.RandWrite:
			if !slices.Contains(out, w) {
				out = append(out, w)
			}
		default:
			return nil, fmt.Errorf("%q: want randread or randwrite", w)
		}
	}
	return out, nil
}

// runs is how many measured runs the guest does.
func (o *benchOptions) runs() int {
	engines := 3 + len(doorbellEngines) // io_uring irq and poll, gonvme, the doorbell rows (benchbare.go)
	switch {
	case o.TCP:
		engines = 2 // --tcp: the kernel initiator with interrupts, and gonvme
	case o.NoIRQ:
		engines = 2 + len(doorbellEngines)
	}
	perRep := len(o.Depths) * (engines*len(o.Workloads) + len(o.QemuImg)) // + qemu-img
	return o.Reps * perRep
}

// timeLimit is the host's limit for the boot: a fixed allowance for boot,
// module loading and binding, plus each run's time, warm-up and start-up.
func (o *benchOptions) timeLimit() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	d := 3*time.Minute + time.Duration(o.runs())*(o.Time+o.Warmup+10*time.Second)
	if o.CPUProfile != "" {
		d += o.Time + o.Warmup + time.Minute
	}
	return d + o.Modes.time(o)
}

// guestArgs is the guestbench command line.
func (o *benchOptions) guestArgs() []string {
	ds := make([]string, len(o.Depths))
	for i, d := range o.Depths {
		ds[i] = strconv.Itoa(d)
	}
	a := []string{guest.BinDir + "/guestbench",
		"-reps", strconv.Itoa(o.Reps),
		"-time", strconv.Itoa(int(o.Time / time.Second)),
		"-warmup", strconv.Itoa(int(o.Warmup / time.Second)),
		"-depths", strings.Join(ds, ","),
		"-workloads", strings.Join(o.Workloads, ","),
	}
	if len(o.QemuImg) > 0 {
		a = append(a, "-qemu-img", strings.Join(o.QemuImg, ","))
	}
	if o.CPUProfile != "" {
		a = append(a, "-cpuprofile")
	}
	if o.NoIRQ {
		a = append(a, "-irq=false")
	}
	if o.TCP {
		return append(a, "-tcp")
	}
	if o.NVMfTarget {
		return append(a, "-nvmf-target")
	}
	return append(a, o.Modes.guestArgs()...)
}

func benchVerb(args []string) error {
	o, err := parseBenchFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		fmt.Fprintln(os.Stderr, err)
		return exitError{2}
	}
	if o.Smoke {
		return benchSmoke(os.Stdout)
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	cmdline := benchCommandLine(args)
	started := time.Now()
	b, err := bootBench(os.Stdout, o)
	if err != nil {
		return err
	}
	defer b.cleanup()
	res, perr := b.res, b.perr

	var hostLines []string
	var hostErr error
	if o.HostBench {
		fmt.Printf("bench: host: go %s\n", strings.Join(hostBenchArgs, " "))
		hostLines, hostErr = runHostBench(os.Stdout)
	}
	var profTop string
	var profErr error
	if o.CPUProfile != "" {
		profTop, profErr = writeProfile(res, o.CPUProfile, filepath.Join(b.work, "nvmectl"))
	}

	h := tableHeader{
		Command: cmdline, Date: started, Opts: o, Info: res.Info,
		QEMU: qemuVersion(b.assets.QEMU), HostCPUs: runtime.NumCPU(), Steal: b.steal,
	}
	fmt.Println()
	if o.TCP {
		fmt.Print(renderTCPTable(h, res.Samples))
	} else if o.NVMfTarget {
		fmt.Print(renderNVMfTargetTable(h, res.Samples))
	} else {
		fmt.Print(renderTable(h, res.Samples))
		fmt.Print(renderModes(o, res.Samples, b.lines))
	}
	fmt.Print(renderSteal(b.steal))
	if o.HostBench {
		fmt.Println()
		fmt.Print(renderHostBench(hostLines, hostErr))
	}
	if o.CPUProfile != "" {
		fmt.Println()
		if profErr != nil {
			fmt.Printf("CPU profile: %v\n", profErr)
		} else {
			fmt.Printf("CPU profile of `%s` (guest), written to %s:\n\n```\n%s```\n", res.Info["cpuprofile"], o.CPUProfile, profTop)
		}
	}

	var problems []string
	if perr != nil {
		problems = append(problems, perr.Error())
	}
	problems = append(problems, bootProblems(b.v)...)
	if len(res.Samples) == 0 {
		problems = append(problems, "no results from the guest")
	}
	if hostErr != nil {
		problems = append(problems, "host bench: "+hostErr.Error())
	}
	if profErr != nil {
		problems = append(problems, "cpu profile: "+profErr.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("bench: %s", strings.Join(problems, "; "))
	}
	return nil
}

// bootProblems is what a bench boot's verdict says went wrong.
func bootProblems(v verdict) []string {
	if !v.Pass {
		return []string{"boot: " + v.Reason}
	}
	if v.ExitStatus != 0 {
		return []string{fmt.Sprintf("guestbench exited %d (failed runs are listed under the table)", v.ExitStatus)}
	}
	return nil
}

// benchBoot is one boot of the bench and what its console said.
type benchBoot struct {
	assets  *Assets
	work    string // holds the guest programs until cleanup
	v       verdict
	elapsed time.Duration // from QEMU's start to the verdict
	res     benchOutput
	perr    error    // from parseBenchOutput
	lines   []string // the console's lines (bench_modes.go reads its own)
	steal   map[runID]float64
	cleanup func()
}

// bootBench builds the guest programs, carries fio (and qemu-img, Linux
// perf when asked) into the initramfs, boots profile o.Profile once with
// guestbench and parses what it printed. The caller runs cleanup. The
// working directory must be in the module.
func bootBench(out io.Writer, o *benchOptions) (*benchBoot, error) {
	a, err := setup(out)
	if err != nil {
		return nil, err
	}
	fioBin, err := exec.LookPath("fio")
	if err != nil {
		return nil, fmt.Errorf("bench: fio is not installed (as root, `go run ./hack/qemu setup` installs it; else `sudo apt-get install fio`): %w", err)
	}
	qemuImgBin := ""
	if len(o.QemuImg) > 0 {
		if qemuImgBin, err = exec.LookPath("qemu-img"); err != nil {
			fmt.Fprintln(out, "bench: qemu-img not installed (package qemu-utils): no qemu-img rows")
			o.QemuImg = nil
		}
	}
	work, err := os.MkdirTemp("", "gonvme-bench-")
	if err != nil {
		return nil, err
	}
	b := &benchBoot{assets: a, work: work, cleanup: func() {}}
	if o.Keep {
		fmt.Fprintf(out, "hack/qemu: work dir %s (kept)\n", work)
	} else {
		b.cleanup = func() { os.RemoveAll(work) }
	}
	ok := false
	defer func() {
		if !ok {
			b.cleanup()
		}
	}()
	for _, bin := range []struct{ out, pkg string }{
		{"init", "/hack/qemu/guestinit"},
		{"guestbench", "/hack/qemu/guestbench"},
		{"nvmectl", "/cmd/nvmectl"},
		{"guestbare", "/hack/qemu/guestbare"}, // benchbare.go
	} {
		if err := goBuild(out, "build", "-o", filepath.Join(work, bin.out), modulePath+bin.pkg); err != nil {
			return nil, err
		}
	}
	cs := newCarrySet()
	if err := cs.add(fioBin, guest.BinDir+"/fio"); err != nil {
		return nil, err
	}
	if o.CPUProfile != "" {
		// Linux perf profiles nvmectl perf when it has no --cpuprofile.
		if perfBin, err := exec.LookPath("perf"); err == nil {
			if err := cs.add(perfBin, guest.BinDir+"/perf"); err != nil {
				return nil, err
			}
		}
	}
	if len(o.QemuImg) > 0 {
		if err := cs.add(qemuImgBin, guest.BinDir+"/qemu-img"); err != nil {
			return nil, err
		}
	}
	bin := strings.TrimPrefix(guest.BinDir, "/") + "/"
	extra := append(cs.list(),
		ramFile{Name: bin + "guestbench", Src: filepath.Join(work, "guestbench"), Perm: 0o755},
		ramFile{Name: bin + "nvmectl", Src: filepath.Join(work, "nvmectl"), Perm: 0o755},
		ramFile{Name: bin + "guestbare", Src: filepath.Join(work, "guestbare"), Perm: 0o755},
	)
	bt := &vmtest.Boot{Command: o.guestArgs(), Bind: "none"}
	tap := &lineTap{w: out, hide: []string{bench.SamplePrefix, bench.PerfPrefix, bench.ProfilePrefix, bench.ReportPrefix},
		steal: newStealClock(procStat)}
	limit := o.timeLimit()
	fmt.Fprintf(out, "bench: %d runs in one boot of profile %s, time limit %v\n", o.runs(), o.Profile, limit)
	b.v, b.elapsed, err = bootProfile(tap, a, work, o.Profile, bt, extra, &bootFlags{Profile: o.Profile, Timeout: limit, Keep: o.Keep, Append: o.Append})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "boot %s: %.1fs from start to verdict\n", o.Profile, b.elapsed.Seconds())
	b.lines = tap.Lines()
	b.res, b.perr = parseBenchOutput(b.lines)
	b.steal = sampleSteal(b.lines, tap.stealAt)
	ok = true
	return b, nil
}

// benchCommandLine is the command as a user would type it again: an
// argument with spaces or quotes is quoted.
func benchCommandLine(args []string) string {
	parts := []string{"go", "run", "./hack/qemu", "bench"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'\\$`") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// lineTap passes a boot's console through to w, except lines with a
// hidden prefix, and keeps every line.
type lineTap struct {
	w    io.Writer
	hide []string

	mu    sync.Mutex
	part  []byte
	lines []string
	// With steal set, the host's steal since the sample line before is
	// recorded for each sample line, by its index in lines (steal.go).
	steal   *stealClock
	stealAt map[int]float64
}

func (t *lineTap) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, p...)
	for {
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(t.part[:i]), "\r")
		t.part = t.part[i+1:]
		t.lines = append(t.lines, line)
		if t.steal != nil && strings.Contains(line, bench.SamplePrefix) {
			if t.stealAt == nil {
				t.stealAt = map[int]float64{}
			}
			t.stealAt[len(t.lines)-1] = t.steal.lap()
		}
		if !t.hidden(line) {
			if _, err := fmt.Fprintln(t.w, line); err != nil {
				return len(p), err
			}
		}
	}
	return len(p), nil
}

func (t *lineTap) hidden(line string) bool {
	for _, h := range t.hide {
		if strings.Contains(line, h) {
			return true
		}
	}
	return false
}

// Lines returns every complete line written so far, and a last partial one.
func (t *lineTap) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]string(nil), t.lines...)
	if len(t.part) > 0 {
		out = append(out, string(t.part))
	}
	return out
}

// benchOutput is what the guest printed for the host.
type benchOutput struct {
	Samples []bench.Sample
	Perf    []bench.Perf // every nvmectl perf report, decoded on the host too
	Info    map[string]string
	Profile []byte   // the CPU profile (pprof), decoded
	Report  []string // or Linux perf's report, line by line
}

// parseBenchOutput picks sample, perf, info and profile lines out of a
// console. A sample or perf line that does not decode (perf's JSON is
// decoded strictly) is an error, after the rest is read.
func parseBenchOutput(lines []string) (benchOutput, error) {
	out := benchOutput{Info: map[string]string{}}
	var errs []error
	var prof strings.Builder
	for _, l := range lines {
		if i := strings.Index(l, bench.ReportPrefix); i >= 0 {
			out.Report = append(out.Report, strings.TrimRight(l[i+len(bench.ReportPrefix):], "\r"))
			continue
		}
		if i := strings.Index(l, bench.PerfPrefix); i >= 0 {
			p, err := bench.ParsePerf([]byte(l[i+len(bench.PerfPrefix):]))
			if err != nil {
				errs = append(errs, fmt.Errorf("from the guest: %w", err))
			} else {
				out.Perf = append(out.Perf, p)
			}
			continue
		}
		if i := strings.Index(l, bench.ProfilePrefix); i >= 0 {
			prof.WriteString(strings.TrimSpace(l[i+len(bench.ProfilePrefix):]))
			continue
		}
		if k, v, ok := bench.ParseInfo(l); ok {
			out.Info[k] = v
			continue
		}
		s, err := bench.ParseLine(l)
		if errors.Is(err, bench.ErrNotSample) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.Samples = append(out.Samples, s)
	}
	if prof.Len() > 0 {
		b, err := base64.StdEncoding.DecodeString(prof.String())
		if err != nil {
			errs = append(errs, fmt.Errorf("cpu profile from the guest: %w", err))
		} else {
			out.Profile = b
		}
	}
	return out, errors.Join(errs...)
}

// runHostBench runs the poller overhead benchmark and returns its result
// lines.
func runHostBench(log io.Writer) ([]string, error) {
	cmd := exec.Command("go", hostBenchArgs...)
	var buf bytes.Buffer
	cmd.Stdout = io.MultiWriter(&buf, log)
	cmd.Stderr = cmd.Stdout
	err := cmd.Run()
	lines := benchResultLines(buf.String())
	if err != nil {
		return lines, fmt.Errorf("go %s: %w", strings.Join(hostBenchArgs, " "), err)
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("go %s printed no Benchmark lines", strings.Join(hostBenchArgs, " "))
	}
	return lines, nil
}

// benchResultLines keeps the lines of `go test -bench` output a reader of
// the table needs: the CPU and each Benchmark result.
func benchResultLines(out string) []string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimRight(l, "\r")
		if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "cpu:") {
			keep = append(keep, l)
		}
	}
	return keep
}

func renderHostBench(lines []string, err error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Host, `go %s` (nvmetest fake controller: bare submit/reap loop vs the full path; target ratio and ddi-ratio <= 1.5):\n\n```\n", strings.Join(hostBenchArgs, " "))
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	if err != nil {
		fmt.Fprintf(&b, "error: %v\n", err)
	}
	b.WriteString("```\n")
	return b.String()
}

// writeProfile saves the guest's CPU profile and returns `go tool pprof
// -top` of it; or, when the guest profiled with Linux perf, saves and
// returns perf report's text.
func writeProfile(res benchOutput, path, binary string) (string, error) {
	if len(res.Profile) == 0 && len(res.Report) > 0 {
		text := strings.Join(res.Report, "\n") + "\n"
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return "", fmt.Errorf("write perf report: %w", err)
		}
		return text, nil
	}
	if len(res.Profile) == 0 {
		return "", errors.New("the guest sent no CPU profile (nvmectl perf has no --cpuprofile and Linux perf is not installed on the host?)")
	}
	if err := os.WriteFile(path, res.Profile, 0o644); err != nil {
		return "", fmt.Errorf("write cpu profile: %w", err)
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", binary, path).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("go tool pprof: %w", err)
	}
	return string(out), nil
}

func qemuVersion(qemu string) string {
	out, err := exec.Command(qemu, "--version").Output()
	if err != nil {
		return "QEMU"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// tableHeader is what the table says about how it was made.
type tableHeader struct {
	Command   string
	Date      time.Time
	Opts      *benchOptions
	Info      map[string]string
	QEMU      string
	HostCPUs  int
	NoTargets bool // leave out DESIGN.md's targets (runs too short to judge them)
	// Steal is the host's CPU steal over each run (steal.go), nil when
	// not measured.
	Steal map[runID]float64
}

// facts begins a table's description line: the guest kernel, QEMU, the
// host's CPUs and fio's version, as far as the boot reported them.
func (h tableHeader) facts() []string {
	var facts []string
	if v := h.Info["kernel"]; v != "" {
		facts = append(facts, "guest kernel "+v)
	}
	facts = append(facts, h.QEMU+" (TCG, -smp 2)", fmt.Sprintf("host: %d CPUs", h.HostCPUs))
	if v := h.Info["fio"]; v != "" {
		facts = append(facts, v)
	}
	return facts
}

// engineRows is the order and the label of the table's rows.
var engineRows = []struct{ engine, label string }{
	{bench.EngineIRQ, "kernel nvme, fio io_uring, interrupts (hipri=0)"},
	{bench.EnginePoll, "kernel nvme, fio io_uring, polled (hipri=1)"},
	{bench.EngineGonvme, "**gonvme**, nvmectl perf, 1 poller, shadow doorbells"},
	{bench.EngineGonvmeMMIO, "gonvme, nvmectl perf, 1 poller, MMIO doorbells (--no-shadow-doorbells)"},
	{bench.EngineQemuImg, "QEMU nvme:// (qemu-img bench, sequential offsets)"},
	{bench.EngineBare, "bare VFIO submit/reap loop, 1 queue pair, shadow doorbells (upper bound)"},
	{bench.EngineBareMMIO, "bare VFIO submit/reap loop, 1 queue pair, MMIO doorbells (-shadow=false)"},
}

// cell is the summary of one (workload, depth, engine) over its runs.
type cell struct {
	IOPS                bench.Summary
	Avg, P50, P99, P999 bench.Summary
	Failed              int
	Errors              []string
}

func summarize(ss []bench.Sample) cell {
	var c cell
	var iops, avg, p50, p99, p999 []float64
	for _, s := range ss {
		if s.Err != "" {
			c.Failed++
			c.Errors = append(c.Errors, fmt.Sprintf("rep %d: %s", s.Rep+1, strings.Join(strings.Fields(s.Err), " ")))
			continue
		}
		iops = append(iops, s.IOPS)
		if s.Lat != nil {
			avg = append(avg, orNaN(s.Lat.Avg))
			p50 = append(p50, orNaN(s.Lat.P50))
			p99 = append(p99, orNaN(s.Lat.P99))
			p999 = append(p999, orNaN(s.Lat.P999))
		}
	}
	c.IOPS = bench.Summarize(iops)
	c.Avg, c.P50, c.P99, c.P999 = bench.Summarize(avg), bench.Summarize(p50), bench.Summarize(p99), bench.Summarize(p999)
	return c
}

func orNaN(v float64) float64 {
	if v == 0 {
		return math.NaN()
	}
	return v
}

type cellKey struct {
	workload string
	depth    int
	engine   string
}

// groupSamples groups samples by workload, depth and engine.
func groupSamples(samples []bench.Sample) map[cellKey][]bench.Sample {
	groups := map[cellKey][]bench.Sample{}
	for _, s := range samples {
		k := cellKey{s.Workload, s.Depth, s.Engine}
		groups[k] = append(groups[k], s)
	}
	return groups
}

// summarizeCells summarizes each group of samples into a table cell.
func summarizeCells(groups map[cellKey][]bench.Sample) map[cellKey]cell {
	cells := map[cellKey]cell{}
	for k, ss := range groups {
		cells[k] = summarize(ss)
	}
	return cells
}

func fmtIOPS(v float64) string {
	if v == 0 || math.IsNaN(v) {
		return "–"
	}
	return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
}

func fmtUS(s bench.Summary) string {
	if s.N == 0 {
		return "–"
	}
	if s.Median >= 100 {
		return strconv.FormatFloat(s.Median, 'f', 0, 64)
	}
	return strconv.FormatFloat(s.Median, 'f', 1, 64)
}

func fmtRatio(r float64) string {
	if math.IsNaN(r) {
		return "–"
	}
	return strconv.FormatFloat(r, 'f', 2, 64) + "×"
}

// renderTable prints the markdown table: the command and date on top, one
// row per workload, depth and driver, then the design targets and any
// failed runs.
func renderTable(h tableHeader, samples []bench.Sample) string {
	o := h.Opts
	groups := groupSamples(samples)
	cells := summarizeCells(groups)
	var b strings.Builder
	fmt.Fprintf(&b, "### gonvme vs the guest kernel's nvme driver: 4 KiB random I/O, one controller (profile %s)\n\n", o.Profile)
	fmt.Fprintf(&b, "`%s`, %s\n\n", h.Command, h.Date.UTC().Format("2006-01-02 15:04 UTC"))
	facts := h.facts()
	if v := h.Info["clocksource"]; v != "" {
		facts = append(facts, "clocksource "+v)
	}
	if h.Opts.Append != "" {
		facts = append(facts, "kernel command line + `"+h.Opts.Append+"`")
	}
	if v := h.Info["io_poll"]; v != "" {
		facts = append(facts, "nvme poll_queues=1, io_poll="+v)
	}
	if v := h.Info["qemu-img"]; v != "" {
		facts = append(facts, v)
	}
	b.WriteString(strings.Join(facts, "; ") + ".  \n")
	fmt.Fprintf(&b, "Each cell: median of %d runs of %v after %v of warm-up, all in one boot; IOPS also min–max. "+
		"Latency in µs from submission to completion (fio lat_ns, nvmectl perf latency_us). "+
		"The ÷ columns divide the row's median IOPS by the kernel's and by the bare loop's.\n\n",
		o.Reps, o.Time, o.Warmup)
	b.WriteString("| workload | QD | driver | IOPS | IOPS min–max | avg µs | p50 µs | p99 µs | p99.9 µs | ÷ io_uring polled | ÷ io_uring irq | ÷ bare |\n")
	b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var failures []string
	for _, wl := range o.Workloads {
		for _, qd := range o.Depths {
			poll := cells[cellKey{wl, qd, bench.EnginePoll}].IOPS.Median
			irq := cells[cellKey{wl, qd, bench.EngineIRQ}].IOPS.Median
			for _, er := range engineRows {
				ss, ok := groups[cellKey{wl, qd, er.engine}]
				if !ok {
					continue
				}
				c := cells[cellKey{wl, qd, er.engine}]
				rng := "–"
				if c.IOPS.N > 0 {
					rng = fmtIOPS(c.IOPS.Min) + "–" + fmtIOPS(c.IOPS.Max)
				}
				if c.Failed > 0 {
					rng += fmt.Sprintf(" (%d/%d failed)", c.Failed, len(ss))
				}
				vsPoll, vsIRQ := "", ""
				if er.engine != bench.EnginePoll && er.engine != bench.EngineIRQ {
					vsPoll = fmtRatio(bench.Ratio(c.IOPS.Median, poll))
					vsIRQ = fmtRatio(bench.Ratio(c.IOPS.Median, irq))
				}
				fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
					wl, qd, er.label, fmtIOPS(c.IOPS.Median), rng,
					fmtUS(c.Avg), fmtUS(c.P50), fmtUS(c.P99), fmtUS(c.P999), vsPoll, vsIRQ, vsBare(cells, wl, qd, er.engine))
				for _, e := range c.Errors {
					failures = append(failures, fmt.Sprintf("%s QD%d %s, %s", wl, qd, er.engine, e))
				}
			}
		}
	}
	if !h.NoTargets {
		b.WriteString(renderTargets(o, cells))
		b.WriteString(renderPairs(o, groups, h.Steal))
	}
	if len(failures) > 0 {
		b.WriteString("\nFailed runs:\n\n")
		for _, f := range failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	return b.String()
}

// renderTargets checks DESIGN.md's VM targets: randread IOPS at the
// deepest depth at least 2x io_uring polled, and p50 latency at depth 1
// at most half of it.
func renderTargets(o *benchOptions, cells map[cellKey]cell) string {
	var b strings.Builder
	deepest, has1 := 0, false
	for _, d := range o.Depths {
		deepest = max(deepest, d)
		has1 = has1 || d == 1
	}
	verdict := func(r float64, ok bool) string {
		switch {
		case math.IsNaN(r):
			return "not measured"
		case ok:
			return "met"
		}
		return "missed"
	}
	hasRead := false
	for _, w := range o.Workloads {
		hasRead = hasRead || w == bench.RandRead
	}
	if !hasRead {
		return ""
	}
	b.WriteString("\nTargets (DESIGN.md, VM, randread, one poller):\n")
	g := cells[cellKey{bench.RandRead, deepest, bench.EngineGonvme}]
	k := cells[cellKey{bench.RandRead, deepest, bench.EnginePoll}]
	r := bench.Ratio(g.IOPS.Median, k.IOPS.Median)
	fmt.Fprintf(&b, "- QD%d IOPS gonvme ÷ io_uring polled = %s (want ≥ 5×): %s\n", deepest, fmtRatio(r), verdict(r, r >= 5))
	if _, ok := cells[cellKey{bench.RandRead, deepest, bench.EngineBare}]; ok {
		r = bench.Ratio(g.IOPS.Median, cells[cellKey{bench.RandRead, deepest, bench.EngineBare}].IOPS.Median)
		fmt.Fprintf(&b, "- QD%d IOPS gonvme ÷ bare loop = %s (want ≥ 0.9×): %s\n", deepest, fmtRatio(r), verdict(r, r >= 0.9))
	}
	// The same ratio with MMIO doorbells on both sides: on QEMU 7.2 the
	// shadow doorbells slow the bare loop too (benchbare.go), so this is
	// gonvme's own cost with the doorbell mode taken out. No target.
	gm, okG := cells[cellKey{bench.RandRead, deepest, bench.EngineGonvmeMMIO}]
	bm, okB := cells[cellKey{bench.RandRead, deepest, bench.EngineBareMMIO}]
	if okG && okB {
		fmt.Fprintf(&b, "- QD%d IOPS gonvme-mmio ÷ bare-mmio = %s (both MMIO doorbells; for reference)\n", deepest, fmtRatio(bench.Ratio(gm.IOPS.Median, bm.IOPS.Median)))
	}
	if has1 {
		g = cells[cellKey{bench.RandRead, 1, bench.EngineGonvme}]
		k = cells[cellKey{bench.RandRead, 1, bench.EnginePoll}]
		r = bench.Ratio(g.P50.Median, k.P50.Median)
		fmt.Fprintf(&b, "- QD1 p50 latency gonvme ÷ io_uring polled = %s (want ≤ 0.5×): %s\n", fmtRatio(r), verdict(r, r <= 0.5))
	}
	return b.String()
}
