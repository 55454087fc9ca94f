package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
)

// The poller modes (issue 16): nvmectl perf rows in the interrupt and
// hybrid modes, and the CPU an idle `nvmectl serve` and a QD1 `nvmectl
// perf --rate` use in each mode, from /proc/PID/stat (utime + stime).

// modeOpts are the flags of this part; main's parseFlags adds them.
var modeOpts struct {
	list       string
	modes      []string // perf rows besides the default (poll) one
	cpuSeconds int      // 0: no CPU measurements
	rate       int
}

// EngineMode names the rows of nvmectl perf in poller mode m.
func engineMode(m string) string { return bench.EngineGonvme + "-" + m }

func addModeFlags(fs *flag.FlagSet) {
	fs.StringVar(&modeOpts.list, "modes", "", "also run nvmectl perf in these poller modes (interrupt, hybrid), comma separated")
	fs.IntVar(&modeOpts.cpuSeconds, "cpu-seconds", 0, "measure the CPU of an idle nvmectl serve per mode over this many seconds, and of a QD1 perf --rate per mode (0: not)")
	fs.IntVar(&modeOpts.rate, "cpu-rate", 1000, "the --rate of the QD1 CPU runs")
}

func parseModeFlags() error {
	modeOpts.modes = nil
	for _, m := range strings.Split(modeOpts.list, ",") {
		switch m = strings.TrimSpace(m); m {
		case "":
		case "interrupt", "hybrid":
			modeOpts.modes = append(modeOpts.modes, m)
		default:
			return fmt.Errorf("--modes: %q: want interrupt or hybrid", m)
		}
	}
	if modeOpts.cpuSeconds < 0 || modeOpts.rate < 1 {
		return fmt.Errorf("want --cpu-seconds >= 0 and --cpu-rate >= 1")
	}
	return nil
}

// modeRows runs nvmectl perf in each extra mode, every workload and depth
// (the controller is bound to vfio-pci).
func (r *runner) modeRows(rep int) {
	for _, m := range modeOpts.modes {
		for _, wl := range r.o.workloads {
			for _, qd := range r.o.depths {
				r.perfMode(rep, wl, qd, m)
			}
		}
	}
}

func (r *runner) perfMode(rep int, wl string, qd int, mode string) {
	r.perfAs(engineMode(mode), rep, wl, qd, "--mode", mode)
}

// modeCPU measures, once per boot, the CPU of an idle serve and of a QD1
// perf --rate in every mode (the controller is bound to vfio-pci).
func (r *runner) modeCPU() {
	if modeOpts.cpuSeconds == 0 {
		return
	}
	for _, c := range []struct{ mode, idle string }{{"poll", "busy"}, {"poll", "adaptive"}, {"interrupt", ""}, {"hybrid", ""}} {
		r.emitCPU(r.serveIdle(c.mode, c.idle))
	}
	for _, m := range []string{"poll", "interrupt", "hybrid"} {
		r.emitCPU(r.perfRate(m))
	}
}

func (r *runner) emitCPU(c bench.CPU) {
	c.Err = strings.Join(strings.Fields(c.Err), " ")
	fmt.Println(c.Line())
	what := c.Run + " " + c.Mode
	if c.Idle != "" {
		what += " (" + c.Idle + ")"
	}
	if c.Err != "" {
		r.failed++
		fmt.Printf("guestbench: cpu %s: FAILED: %s\n", what, c.Err)
		return
	}
	fmt.Printf("guestbench: cpu %s: %.2f%% of a CPU over %.1f s\n", what, c.CPUPct, c.Seconds)
}

// userHZ is the unit of utime and stime in /proc/PID/stat (USER_HZ, 100
// on every architecture Linux runs gonvme on).
const userHZ = 100

// cpuTicks returns utime+stime of pid from /proc/PID/stat, and whether
// it is a zombie (exited, not yet reaped).
func cpuTicks(pid int) (ticks uint64, zombie bool, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, err
	}
	// The command name may hold spaces and parentheses: fields start
	// after the last ')'. Then state (3), ..., utime (14), stime (15).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return ut + st, f[0] == "Z", nil
}

// waitFor polls file path until it contains s, or d passes.
func waitFor(path, s string, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

// serveIdle runs nvmectl serve with one poller in mode (and idle policy),
// lets it settle, and measures its CPU over cpuSeconds.
func (r *runner) serveIdle(mode, idle string) (c bench.CPU) {
	c = bench.CPU{Run: bench.RunServeIdle, Mode: mode, Idle: idle}
	args := []string{"serve", r.addr, "--listen", "127.0.0.1:0", "--pollers", "1", "--mode", mode}
	if idle != "" {
		args = append(args, "--idle", idle)
	}
	const log = "/tmp/serve.out"
	f, err := os.Create(log)
	if err != nil {
		c.Err = err.Error()
		return c
	}
	defer f.Close()
	cmd := exec.Command(r.o.nvmectl, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = "/tmp", f, f
	if err := cmd.Start(); err != nil {
		c.Err = err.Error()
		return c
	}
	defer func() {
		cmd.Process.Signal(unix.SIGTERM)
		if err := cmd.Wait(); err != nil && c.Err == "" {
			b, _ := os.ReadFile(log)
			c.Err = fmt.Sprintf("nvmectl %s: %v: %s", strings.Join(args, " "), err, clipTail(b))
		}
	}()
	if !waitFor(log, "Serving metrics", time.Minute) {
		b, _ := os.ReadFile(log)
		c.Err = fmt.Sprintf("nvmectl %s: not serving after 1 min: %s", strings.Join(args, " "), clipTail(b))
		return c
	}
	time.Sleep(2 * time.Second) // the pollers park or sleep
	t0, _, err := cpuTicks(cmd.Process.Pid)
	start := time.Now()
	if err == nil {
		time.Sleep(time.Duration(modeOpts.cpuSeconds) * time.Second)
		var t1 uint64
		t1, _, err = cpuTicks(cmd.Process.Pid)
		c.Seconds = time.Since(start).Seconds()
		c.CPUPct = 100 * float64(t1-t0) / userHZ / c.Seconds
	}
	if err != nil {
		c.Err = err.Error()
	}
	return c
}

// perfRate runs nvmectl perf -q 1 --rate N in mode and measures its CPU
// between its first and last live line of the measured phase (one a
// second on standard error).
func (r *runner) perfRate(mode string) (c bench.CPU) {
	c = bench.CPU{Run: bench.RunPerfRate, Mode: mode, Rate: float64(modeOpts.rate)}
	secs := max(r.o.seconds, 5)
	args := []string{"perf", "-q", "1", "-s", "4096", "-w", bench.RandRead, "-t", strconv.Itoa(secs),
		"--warmup", strconv.Itoa(max(r.o.warmup, 1)), "-c", "1", "-o", "json",
		"--mode", mode, "--rate", strconv.Itoa(modeOpts.rate), r.addr}
	const outPath, errPath = "/tmp/perf-rate.out", "/tmp/perf-rate.err"
	fo, err1 := os.Create(outPath)
	fe, err2 := os.Create(errPath)
	if err1 != nil || err2 != nil {
		c.Err = fmt.Sprint(err1, err2)
		return c
	}
	defer fo.Close()
	defer fe.Close()
	cmd := exec.Command(r.o.nvmectl, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = "/tmp", fo, fe
	if err := cmd.Start(); err != nil {
		c.Err = err.Error()
		return c
	}
	pid := cmd.Process.Pid
	var first, last struct {
		at    time.Time
		ticks uint64
	}
	seen := 0
	deadline := time.Now().Add(r.limit())
	for time.Now().Before(deadline) {
		ticks, zombie, err := cpuTicks(pid)
		if err != nil || zombie {
			break
		}
		b, _ := os.ReadFile(errPath)
		if n := bytes.Count(b, []byte("perf run")); n > seen {
			seen = n
			last.at, last.ticks = time.Now(), ticks
			if first.at.IsZero() {
				first = last
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	werr := cmd.Wait()
	out, _ := os.ReadFile(outPath)
	printPerf(out)
	p, perr := bench.ParsePerf(out)
	switch {
	case perr != nil:
		eb, _ := os.ReadFile(errPath)
		c.Err = fmt.Sprintf("nvmectl %s: %v %v: %s", strings.Join(args, " "), werr, perr, clipTail(eb))
	case p.Errors > 0:
		c.Err = fmt.Sprintf("%d of %d I/Os failed", p.Errors, p.IOs)
	case seen < 2:
		c.Err = fmt.Sprintf("saw %d live lines of the measured phase: too few to time", seen)
	default:
		c.IOPS, c.P50, c.P99 = p.IOPS, p.Lat.P50, p.Lat.P99
		c.Seconds = last.at.Sub(first.at).Seconds()
		c.CPUPct = 100 * float64(last.ticks-first.ticks) / userHZ / c.Seconds
	}
	return c
}
