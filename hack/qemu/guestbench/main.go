// Command guestbench is the guest half of `go run ./hack/qemu bench`. The
// guest init runs it (run mode, no binding) in a guest booted with one
// controller; it measures 4 KiB random reads and writes on that controller
// through three drivers, one after the other, in every repetition:
//
//  1. the guest kernel's nvme driver (loaded with poll_queues=1) under fio's
//     io_uring engine, with interrupts (hipri=0, unless -irq=false) and polled
//     (hipri=1);
//  2. gonvme, `nvmectl perf` with one poller, after binding to vfio-pci;
//  3. optionally QEMU's own userspace driver, `qemu-img bench nvme://`
//     (sequential offsets; QEMU.md: each open needs a fresh trip through
//     the kernel driver, so every run rebinds first).
//
// Every run becomes one bench.Sample line on stdout (bench.SamplePrefix);
// facts about the guest become bench.InfoPrefix lines. A failed run is a
// Sample with Err set, and the remaining runs go on. The exit status is 1
// when any run failed. The host applies the time limit; each child process
// also has one of its own.
//
// It is built statically (CGO_ENABLED=0) and may import vmtest,
// hack/qemu/internal/{guest,bench}, vfio and x/sys/unix. It is a single
// goroutine program.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/guest"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// options are the command line the host passes.
type options struct {
	reps       int
	seconds    int
	warmup     int
	depths     []int
	workloads  []string
	qemuImg    []string // workloads for qemu-img bench
	cpuprofile bool
	irq        bool // fio rows with interrupts (hipri=0) as well as polled
	fio        string
	nvmectl    string
	qemuImgBin string
	perf       string // Linux perf, for -cpuprofile when nvmectl perf has no --cpuprofile
	tcp        bool   // only the NVMe/TCP rows (tcp.go)
	bare       string // guestbare ("" or -doorbell-rows=false: no MMIO-doorbell and bare rows)
	nvmfTarget bool   // only the NVMe/TCP target rows (nvmf.go)
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "guestbench:", err)
		os.Exit(2)
	}
	failed, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "guestbench:", err)
		os.Exit(1)
	}
	if failed > 0 {
		fmt.Printf("guestbench: %d runs failed\n", failed)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("guestbench", flag.ContinueOnError)
	o := &options{}
	fs.IntVar(&o.reps, "reps", 3, "repetitions of every run")
	fs.IntVar(&o.seconds, "time", 5, "seconds of every measured run")
	fs.IntVar(&o.warmup, "warmup", 1, "seconds of warm-up before each measured run")
	depths := fs.String("depths", "1,32", "queue depths, comma separated")
	workloads := fs.String("workloads", bench.RandRead+","+bench.RandWrite, "workloads, comma separated")
	qemuWl := fs.String("qemu-img", "", "also run qemu-img bench on QEMU's nvme:// driver for these workloads, comma separated")
	fs.BoolVar(&o.irq, "irq", true, "also run fio on the kernel driver's interrupt-driven queues (hipri=0), not only polled")
	fs.BoolVar(&o.cpuprofile, "cpuprofile", false, "after the runs, profile one nvmectl perf randread run at the deepest depth and print the profile")
	fs.StringVar(&o.fio, "fio", guest.BinDir+"/fio", "fio binary")
	fs.StringVar(&o.nvmectl, "nvmectl", guest.BinDir+"/nvmectl", "nvmectl binary")
	fs.StringVar(&o.qemuImgBin, "qemu-img-bin", guest.BinDir+"/qemu-img", "qemu-img binary")
	fs.StringVar(&o.perf, "perf", guest.BinDir+"/perf", "Linux perf binary (for -cpuprofile)")
	fs.BoolVar(&o.tcp, "tcp", false, "only the NVMe/TCP rows: the kernel's initiator and gonvme's host against nvmet (needs the nvmf profile)")
	doorbellFlags(fs, o) // bare.go
	fs.BoolVar(&o.nvmfTarget, "nvmf-target", false, "run only the NVMe/TCP target rows: the kernel initiator on Linux's nvmet and on nvmectl serve --nvmf (nvmf.go)")
	addModeFlags(fs) // modes.go
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := parseModeFlags(); err != nil {
		return nil, err
	}
	if o.reps < 1 || o.seconds < 1 || o.warmup < 0 {
		return nil, fmt.Errorf("want --reps >= 1, --time >= 1, --warmup >= 0")
	}
	for _, d := range strings.Split(*depths, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(d))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--depths %q: %q is not a depth", *depths, d)
		}
		o.depths = append(o.depths, n)
	}
	var err error
	if o.workloads, err = parseWorkloads(*workloads); err != nil {
		return nil, fmt.Errorf("--workloads: %w", err)
	}
	if *qemuWl != "" {
		if o.qemuImg, err = parseWorkloads(*qemuWl); err != nil {
			return nil, fmt.Errorf("--qemu-img: %w", err)
		}
	}
	return o, nil
}

func parseWorkloads(list string) ([]string, error) {
	var out []string
	for _, w := range strings.Split(list, ",") {
		switch w = strings.TrimSpace(w); w {
		case bench.RandRead, bench.RandWrite:
			out = append(out, w)
		default:
			return nil, fmt.Errorf("%q: want randread or randwrite", w)
		}
	}
	return out, nil
}

func info(key, value string) {
	fmt.Printf("%s%s=%s\n", bench.InfoPrefix, key, strings.ReplaceAll(value, "\n", " "))
}

// run does everything and returns how many runs failed; an error means the
// guest could not be set up at all.
func run(o *options) (failed int, err error) {
	boot, err := vmtest.LoadBoot()
	if err != nil {
		return 0, err
	}
	if len(boot.Ctrls) == 0 {
		return 0, errors.New("the profile has no controller")
	}
	addr := boot.Ctrls[0].Addr
	// qemu-img's VFIO driver pins its queues; so does gonvme.
	inf := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &inf); err != nil {
		return 0, fmt.Errorf("raise RLIMIT_MEMLOCK: %w", err)
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		info("kernel", unix.ByteSliceToString(u.Release[:]))
	}
	// Every tool reads the clock per I/O; under TCG an HPET clock source
	// (no vDSO) costs more than the I/O path itself.
	if cs, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource"); err == nil {
		info("clocksource", strings.TrimSpace(string(cs)))
	}
	if err := guest.LoadModules(guest.ModuleDir, boot.NVMeModules, map[string]string{"nvme": "poll_queues=1"}); err != nil {
		return 0, err
	}
	if o.tcp {
		return runTCP(o, boot, addr)
	}
	// fio's version comes from its first JSON report ("fio version"): a
	// start of fio of its own costs seconds under TCG.
	if len(o.qemuImg) > 0 {
		if v, err := output(o.qemuImgBin, 30*time.Second, "--version"); err == nil {
			info("qemu-img", strings.SplitN(strings.TrimSpace(string(v)), "\n", 2)[0])
		} else {
			fmt.Printf("guestbench: qemu-img does not run, no qemu-img rows: %v\n", err)
			o.qemuImg = nil
		}
	}
	r := &runner{o: o, addr: addr, est: map[string]float64{}, estQemu: map[string]float64{}}
	if o.nvmfTarget {
		return r.nvmfTarget(boot)
	}
	for rep := 0; rep < o.reps; rep++ {
		name, err := toKernel(addr)
		if err != nil {
			return r.failed, err
		}
		dev := "/dev/" + name + "n1"
		if rep == 0 {
			poll, _ := os.ReadFile("/sys/block/" + name + "n1/queue/io_poll")
			info("io_poll", strings.TrimSpace(string(poll)))
			info("kernel_dev", dev)
		}
		for _, wl := range o.workloads {
			for _, qd := range o.depths {
				for _, hipri := range []bool{false, true} {
					if hipri || o.irq {
						r.fio(rep, wl, qd, dev, hipri)
					}
				}
			}
		}
		if _, err := vfio.Bind(addr); err != nil {
			return r.failed, fmt.Errorf("bind %s to vfio-pci: %w", addr, err)
		}
		for _, wl := range o.workloads {
			for _, qd := range o.depths {
				r.perf(rep, wl, qd)
				r.doorbellRows(rep, wl, qd) // bare.go
			}
		}
		r.modeRows(rep) // modes.go
		if len(o.qemuImg) > 0 {
			for _, wl := range o.qemuImg {
				for _, qd := range o.depths {
					r.qemuImg(rep, wl, qd)
				}
			}
		}
	}
	r.modeCPU() // modes.go
	if o.cpuprofile {
		if err := r.profile(); err != nil {
			fmt.Printf("guestbench: cpu profile: %v\n", err)
			r.failed++
		}
	}
	return r.failed, nil
}

// runner runs the measurements and prints their samples.
type runner struct {
	o      *options
	addr   string
	failed int
	est    map[string]float64 // workload/depth -> the kernel's best rate, to size qemu-img runs
	// estQemu is qemu-img's own rate in the last repetition.
	estQemu    map[string]float64
	fioVersion string // from fio's first report, printed as info once
	tcp        bool   // the runs go over NVMe/TCP: the samples take tcpEngine's names
}

// limit is the time a child gets before it is killed.
func (r *runner) limit() time.Duration {
	return time.Duration(r.o.seconds+r.o.warmup)*time.Second + 90*time.Second
}

func (r *runner) emit(s bench.Sample, took time.Duration) {
	s.Err = strings.Join(strings.Fields(s.Err), " ") // one line
	fmt.Println(s.Line())
	if s.Err != "" {
		r.failed++
		fmt.Printf("guestbench: rep %d/%d %s qd%d %s: FAILED: %s\n", s.Rep+1, r.o.reps, s.Workload, s.Depth, s.Engine, s.Err)
		return
	}
	lat := ""
	if s.Lat != nil {
		lat = fmt.Sprintf(", p50 %.1f us", s.Lat.P50)
	}
	fmt.Printf("guestbench: rep %d/%d %s qd%d %s: %.0f IOPS%s (%.1fs)\n", s.Rep+1, r.o.reps, s.Workload, s.Depth, s.Engine, s.IOPS, lat, took.Seconds())
}

func (r *runner) fio(rep int, wl string, qd int, dev string, hipri bool) {
	s := bench.Sample{Engine: bench.EngineIRQ, Workload: wl, Depth: qd, Rep: rep}
	hp := "0"
	if hipri {
		s.Engine, hp = bench.EnginePoll, "1"
	}
	s.Engine = r.engine(s.Engine)
	args := []string{
		"--name=" + fmt.Sprintf("%s-qd%d-%s", wl, qd, s.Engine),
		"--ioengine=io_uring", "--hipri=" + hp, "--direct=1", "--eta=never", "--output-format=json",
		"--time_based", fmt.Sprintf("--runtime=%ds", r.o.seconds), fmt.Sprintf("--ramp_time=%ds", r.o.warmup),
		"--filename=" + dev, "--bs=4k", "--rw=" + wl, fmt.Sprintf("--iodepth=%d", qd),
		"--norandommap", "--randrepeat=0", "--lat_percentiles=1", "--percentile_list=50:90:99:99.9",
	}
	t0 := time.Now()
	out, err := output(r.o.fio, r.limit(), args...)
	took := time.Since(t0)
	if err != nil {
		s.Err = err.Error()
		r.emit(s, took)
		return
	}
	jobs, err := bench.ParseFio(out)
	if err == nil && r.fioVersion == "" && jobs[0].Version != "" {
		r.fioVersion = jobs[0].Version
		info("fio", r.fioVersion)
	}
	switch {
	case err != nil:
		s.Err = err.Error()
	case jobs[0].Error != 0:
		s.Err = fmt.Sprintf("fio job error %d (%v)", jobs[0].Error, unix.Errno(jobs[0].Error))
	default:
		d := jobs[0].Dir(wl)
		lat := d.Lat
		s.IOPS, s.MiBps, s.IOs, s.Seconds, s.Lat = d.IOPS, d.BWBytes/(1<<20), d.TotalIOs, d.RuntimeS, &lat
		if s.IOPS <= 0 {
			s.Err = "fio measured no I/O"
		}
		k := fmt.Sprintf("%s/%d", wl, qd)
		r.est[k] = max(r.est[k], s.IOPS)
	}
	r.emit(s, took)
}

// perfArgs is the nvmectl perf command line for one run.
func (r *runner) perfArgs(wl string, qd int, extra ...string) []string {
	a := []string{"perf",
		"-q", strconv.Itoa(qd), "-s", "4096", "-w", wl,
		"-t", strconv.Itoa(r.o.seconds), "--warmup", strconv.Itoa(r.o.warmup),
		"-c", "1", "-o", "json"}
	return append(append(a, extra...), r.addr)
}

func (r *runner) perf(rep int, wl string, qd int) {
	r.perfAs(r.engine(bench.EngineGonvme), rep, wl, qd)
}

// perfAs is one nvmectl perf run, with extra flags, reported as engine.
func (r *runner) perfAs(engine string, rep int, wl string, qd int, extra ...string) {
	s := bench.Sample{Engine: engine, Workload: wl, Depth: qd, Rep: rep}
	t0 := time.Now()
	out, err := output(r.o.nvmectl, r.limit(), r.perfArgs(wl, qd, extra...)...)
	took := time.Since(t0)
	printPerf(out)
	// perf prints its JSON and exits 2 when I/O failed: read what it says.
	p, perr := bench.ParsePerf(out)
	switch {
	case perr != nil && err != nil:
		s.Err = err.Error()
	case perr != nil:
		s.Err = perr.Error()
	case p.Errors > 0:
		s.Err = fmt.Sprintf("%d of %d I/Os failed", p.Errors, p.IOs)
	case err != nil:
		s.Err = err.Error()
	case p.IOPS <= 0:
		s.Err = "nvmectl perf measured no I/O"
	default:
		lat := p.Lat
		s.IOPS, s.MiBps, s.IOs, s.Seconds, s.Lat = p.IOPS, p.MiBps, p.IOs, p.Seconds, &lat
	}
	r.emit(s, took)
}

// printPerf passes what nvmectl perf printed on to the host as one line
// (bench.PerfPrefix), for the host to decode too. Output that is not one
// JSON object is left out: the run's Sample already says why it failed.
func printPerf(out []byte) {
	i := bytes.IndexByte(out, '{')
	if i < 0 {
		return
	}
	var b bytes.Buffer
	if err := json.Compact(&b, out[i:]); err != nil {
		return
	}
	fmt.Println(bench.PerfPrefix + b.String())
}

func (r *runner) qemuImg(rep int, wl string, qd int) {
	s := bench.Sample{Engine: bench.EngineQemuImg, Workload: wl, Depth: qd, Rep: rep}
	// A second open of the same vfio-pci binding hangs (QEMU.md): send the
	// controller through the kernel driver and back first.
	if _, err := toKernel(r.addr); err != nil {
		s.Err = err.Error()
		r.emit(s, 0)
		return
	}
	if _, err := vfio.Bind(r.addr); err != nil {
		s.Err = fmt.Sprintf("bind %s to vfio-pci: %v", r.addr, err)
		r.emit(s, 0)
		return
	}
	// qemu-img bench counts requests, not seconds: size the run from its
	// own rate in the last repetition, else from the kernel's best.
	key := fmt.Sprintf("%s/%d", wl, qd)
	est := r.estQemu[key]
	if est <= 0 {
		est = r.est[key]
	}
	if est <= 0 {
		est = 10000
	}
	count := int(est * float64(r.o.seconds))
	count = max(2000, min(count, 20_000_000))
	args := []string{"bench", "-f", "raw", "-t", "writeback", "-c", strconv.Itoa(count), "-d", strconv.Itoa(qd), "-s", "4096"}
	if wl == bench.RandWrite {
		args = append(args, "-w")
	}
	args = append(args, "nvme://"+r.addr+"/1")
	t0 := time.Now()
	out, err := output(r.o.qemuImgBin, r.limit()+time.Duration(r.o.seconds)*time.Second, args...)
	took := time.Since(t0)
	if err != nil {
		s.Err = err.Error()
		r.emit(s, took)
		return
	}
	q, err := bench.ParseQemuImg(out)
	if err != nil {
		s.Err = err.Error()
	} else {
		s.IOPS, s.IOs, s.Seconds = q.IOPS(), uint64(q.Count), q.Seconds
		s.MiBps = s.IOPS * float64(q.Size) / (1 << 20)
		r.estQemu[key] = s.IOPS
	}
	r.emit(s, took)
}

// profile runs nvmectl perf once more, randread at the deepest depth, under
// a CPU profiler: its own --cpuprofile when it has one (the profile goes out
// in base64 chunks), else Linux perf when the host carried it (the report
// goes out line by line).
func (r *runner) profile() error {
	qd := r.o.depths[0]
	for _, d := range r.o.depths {
		qd = max(qd, d)
	}
	if _, err := toKernel(r.addr); err != nil {
		return err
	}
	if _, err := vfio.Bind(r.addr); err != nil {
		return fmt.Errorf("bind %s to vfio-pci: %w", r.addr, err)
	}
	help, _ := output(r.o.nvmectl, time.Minute, "perf", "--help")
	if bytes.Contains(help, []byte("--cpuprofile")) {
		return r.pprof(qd)
	}
	if _, err := os.Stat(r.o.perf); err == nil {
		return r.linuxPerf(qd)
	}
	return fmt.Errorf("nvmectl perf has no --cpuprofile and Linux perf was not carried (%s)", r.o.perf)
}

func (r *runner) pprof(qd int) error {
	const path = "/tmp/nvmectl-perf.pprof"
	args := r.perfArgs(bench.RandRead, qd, "--cpuprofile", path)
	out, err := output(r.o.nvmectl, r.limit(), args...)
	if err != nil {
		return err
	}
	if p, err := bench.ParsePerf(out); err == nil {
		fmt.Printf("guestbench: profiled run: randread qd%d: %.0f IOPS\n", qd, p.IOPS)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	info("cpuprofile", "nvmectl "+strings.Join(args, " "))
	enc := base64.StdEncoding.EncodeToString(b)
	for len(enc) > 0 {
		n := min(len(enc), 1024)
		fmt.Println(bench.ProfilePrefix + enc[:n])
		enc = enc[n:]
	}
	return nil
}

// linuxPerf samples the run with perf record (the cpu-clock software
// event: TCG has no PMU) and prints perf report's flat profile.
func (r *runner) linuxPerf(qd int) error {
	const data = "/tmp/perf.data"
	args := append([]string{"record", "-e", "cpu-clock", "-F", "999", "-g", "-o", data, "--", r.o.nvmectl},
		r.perfArgs(bench.RandRead, qd)...)
	out, err := output(r.o.perf, r.limit(), args...)
	if err != nil {
		return err
	}
	if p, err := bench.ParsePerf(out); err == nil {
		fmt.Printf("guestbench: profiled run: randread qd%d: %.0f IOPS\n", qd, p.IOPS)
	}
	info("cpuprofile", "perf "+strings.Join(args, " "))
	for _, fields := range []string{"overhead,dso,sym", "overhead,dso"} {
		rep, err := output(r.o.perf, 5*time.Minute, "report", "-i", data, "--stdio", "--no-children",
			"--fields", fields, "-g", "none", "--percent-limit", "0.5")
		if err != nil {
			return err
		}
		fmt.Println(bench.ReportPrefix)
		for _, l := range strings.Split(string(rep), "\n") {
			l = strings.TrimRight(l, " ")
			// Keep the samples count, the column names and the rows.
			if l == "" || strings.HasPrefix(l, "#") && !strings.Contains(l, "Samples:") && !strings.Contains(l, "Overhead") {
				continue
			}
			fmt.Println(bench.ReportPrefix + l)
		}
	}
	return nil
}

// toKernel gives the controller to the kernel nvme driver and waits for
// its first namespace; it returns the controller's name ("nvme0").
func toKernel(addr string) (string, error) {
	if guest.Driver(addr) == "vfio-pci" {
		if err := vfio.Release(addr, "nvme"); err != nil {
			return "", err
		}
	}
	return guest.BindKernel(addr, time.Minute)
}

// output runs a command with a time limit and returns its stdout, also
// when it fails; the error carries the end of its stderr.
func output(bin string, limit time.Duration, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = "/tmp"
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return stdout.Bytes(), fmt.Errorf("%s: killed after %v", bin, limit)
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 400 {
			msg = "..." + msg[len(msg)-400:]
		}
		if msg == "" {
			msg = strings.TrimSpace(string(clipTail(stdout.Bytes())))
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

func clipTail(b []byte) []byte {
	if len(b) > 400 {
		return b[len(b)-400:]
	}
	return b
}
