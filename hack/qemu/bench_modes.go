package main

import (
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
)

// The poller modes in the bench (issue 16): nvmectl perf rows per mode
// (poll is the table's gonvme row), in the same boot as the kernel rows,
// and the CPU of an idle `nvmectl serve` and of a QD1 `perf --rate`
// per mode. The guest half is guestbench/modes.go.

// modeFlags are bench's flags for the modes.
type modeFlags struct {
	list    string
	modes   []string
	cpuTime time.Duration
	rate    int
}

func (m *modeFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&m.list, "modes", "interrupt,hybrid", `poller modes to run nvmectl perf in besides poll, comma separated (interrupt, hybrid); "none" for none`)
	fs.DurationVar(&m.cpuTime, "mode-cpu", 10*time.Second, "measure the CPU of an idle nvmectl serve per mode over this long (whole seconds), and of a QD1 perf --rate per mode; 0 for none")
	fs.IntVar(&m.rate, "mode-rate", 1000, "the --rate (IOPS) of the QD1 CPU runs")
}

func (m *modeFlags) parse() error {
	m.modes = nil
	if l := strings.TrimSpace(m.list); l != "none" && l != "" {
		for _, x := range strings.Split(l, ",") {
			switch x = strings.TrimSpace(x); x {
			case "interrupt", "hybrid":
				m.modes = append(m.modes, x)
			default:
				return fmt.Errorf("bench: --modes: %q: want interrupt or hybrid", x)
			}
		}
	}
	if m.cpuTime < 0 || m.cpuTime%time.Second != 0 {
		return fmt.Errorf("bench: --mode-cpu %v: want whole seconds", m.cpuTime)
	}
	if m.rate < 1 {
		return fmt.Errorf("bench: --mode-rate %d: want at least 1", m.rate)
	}
	return nil
}

// guestArgs is the part of guestbench's command line for the modes.
func (m *modeFlags) guestArgs() []string {
	var a []string
	if len(m.modes) > 0 {
		a = append(a, "-modes", strings.Join(m.modes, ","))
	}
	if m.cpuTime > 0 {
		a = append(a, "-cpu-seconds", strconv.Itoa(int(m.cpuTime/time.Second)), "-cpu-rate", strconv.Itoa(m.rate))
	}
	return a
}

// time is what the mode runs add to the boot.
func (m *modeFlags) time(o *benchOptions) time.Duration {
	if o.TCP || o.NVMfTarget {
		return 0 // --tcp and --nvmf-target run no mode rows
	}
	runs := o.Reps * len(m.modes) * len(o.Workloads) * len(o.Depths)
	d := time.Duration(runs) * (o.Time + o.Warmup + 10*time.Second)
	if m.cpuTime > 0 {
		d += 4*(m.cpuTime+20*time.Second) + 3*(max(o.Time, 5*time.Second)+o.Warmup+20*time.Second)
	}
	return d
}

// renderModes prints the mode rows next to poll's, the CPU records and
// DESIGN.md's idle and hybrid targets.
func renderModes(o *benchOptions, samples []bench.Sample, lines []string) string {
	m := &o.Modes
	var cpus []bench.CPU
	var bad []string
	for _, l := range lines {
		c, ok, err := bench.ParseCPU(l)
		switch {
		case !ok:
		case err != nil:
			bad = append(bad, err.Error())
		default:
			cpus = append(cpus, c)
		}
	}
	if len(m.modes) == 0 && len(cpus) == 0 && len(bad) == 0 {
		return ""
	}
	groups := groupSamples(samples)
	cellOf := func(wl string, qd int, mode string) cell {
		e := bench.EngineGonvme
		if mode != "poll" {
			e += "-" + mode
		}
		return summarize(groups[cellKey{wl, qd, e}])
	}
	var b strings.Builder
	modes := append([]string{"poll"}, m.modes...)
	var failures []string
	if len(m.modes) > 0 {
		fmt.Fprintf(&b, "\n#### gonvme per poller mode (nvmectl perf --mode, 1 poller, same boot)\n\n")
		b.WriteString("poll spins; interrupt sleeps on the queue pair's MSI-X eventfd whenever a pass finds nothing; hybrid spins, then sleeps after 50 µs without work (1.05 ms with I/O in flight). Medians as above.\n\n")
		b.WriteString("| workload | QD | mode | IOPS | avg µs | p50 µs | p99 µs | p99.9 µs | IOPS ÷ poll | p50 ÷ poll |\n")
		b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, wl := range o.Workloads {
			for _, qd := range o.Depths {
				poll := cellOf(wl, qd, "poll")
				for _, mode := range modes {
					c := cellOf(wl, qd, mode)
					ri, rl := "", ""
					if mode != "poll" {
						ri = fmtRatio(bench.Ratio(c.IOPS.Median, poll.IOPS.Median))
						rl = fmtRatio(bench.Ratio(c.P50.Median, poll.P50.Median))
					}
					fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", wl, qd, mode,
						fmtIOPS(c.IOPS.Median), fmtUS(c.Avg), fmtUS(c.P50), fmtUS(c.P99), fmtUS(c.P999), ri, rl)
					for _, e := range c.Errors {
						failures = append(failures, fmt.Sprintf("%s QD%d %s mode, %s", wl, qd, mode, e))
					}
				}
			}
		}
	}
	idle := map[string]float64{}
	rateP50 := map[string]float64{}
	if len(cpus) > 0 {
		fmt.Fprintf(&b, "\n#### CPU per poller mode (utime + stime of the process from /proc/PID/stat, %% of one CPU)\n\n")
		b.WriteString("| run | mode | CPU % | over s | IOPS | p50 µs | p99 µs |\n|---|---|---:|---:|---:|---:|---:|\n")
		for _, c := range cpus {
			run := "idle `nvmectl serve`, 1 poller"
			mode := c.Mode
			if c.Idle != "" {
				mode += " (--idle " + c.Idle + ")"
			}
			if c.Run == bench.RunPerfRate {
				run = fmt.Sprintf("`nvmectl perf -q 1 --rate %g` randread", c.Rate)
			}
			if c.Err != "" {
				failures = append(failures, fmt.Sprintf("cpu %s %s: %s", c.Run, mode, c.Err))
				fmt.Fprintf(&b, "| %s | %s | failed | | | | |\n", run, mode)
				continue
			}
			iops, p50, p99 := "", "", ""
			if c.Run == bench.RunPerfRate {
				iops, p50, p99 = fmtIOPS(c.IOPS), fmtF(c.P50), fmtF(c.P99)
				rateP50[c.Mode] = c.P50
			} else if c.Idle != "busy" {
				idle[c.Mode] = c.CPUPct
			}
			fmt.Fprintf(&b, "| %s | %s | %.2f | %.1f | %s | %s | %s |\n", run, mode, c.CPUPct, c.Seconds, iops, p50, p99)
		}
	}
	b.WriteString("\nTargets (DESIGN.md, idle):\n")
	for _, mode := range []string{"interrupt", "hybrid"} {
		if v, ok := idle[mode]; ok {
			fmt.Fprintf(&b, "- idle serve, %s mode: %.2f%% of a CPU (want ≤ 2%%): %s\n", mode, v, metOr(v <= 2))
		}
	}
	if slicesContains(m.modes, "hybrid") && slicesContains(o.Depths, 1) && slicesContains(o.Workloads, bench.RandRead) {
		r := bench.Ratio(cellOf(bench.RandRead, 1, "hybrid").P50.Median, cellOf(bench.RandRead, 1, "poll").P50.Median)
		fmt.Fprintf(&b, "- QD1 randread p50, hybrid ÷ poll = %s (want ≤ 1.1×): %s\n", fmtRatio(r), metOr(!math.IsNaN(r) && r <= 1.1))
	}
	if h, p := rateP50["hybrid"], rateP50["poll"]; h > 0 && p > 0 {
		fmt.Fprintf(&b, "- at --rate %d, QD1 p50 hybrid ÷ poll = %s\n", m.rate, fmtRatio(h/p))
	}
	failures = append(failures, bad...)
	if len(failures) > 0 {
		b.WriteString("\nFailed mode runs:\n\n")
		for _, f := range failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	return b.String()
}

func fmtF(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func metOr(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

func slicesContains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
