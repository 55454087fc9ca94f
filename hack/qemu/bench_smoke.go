package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
)

// bench --smoke: the bench as a check, not a measurement. One boot runs
// every engine whose output the table is made of on real guest output, as
// briefly as that can be done: one repetition of 1 s runs, no warm-up, 4 KiB
// random reads at QD1 and QD32, through the kernel driver under fio
// (polled, hipri=1), through gonvme (nvmectl perf, with shadow doorbells
// and without) and through guestbare (the bare loop). No fio rows with
// interrupts (their output is parsed the same way as the polled rows', and
// each fio start costs seconds under TCG), no qemu-img rows (they rebind
// the controller per run and report no latency) and no host benchmark. It fails on a failed run, a run missing from the output,
// nvmectl perf JSON that perfjson.Decode refuses (a missing, renamed or
// unknown key), and a zero IOPS, I/O count, time or latency in any row: a
// key that one of the tools renamed shows up here as an error, not as 0 µs
// in a table nobody reads. ci runs it.

// smokeTimeout bounds the smoke's boot. It normally ends well within a
// minute; a hang must not eat ci's time.
const smokeTimeout = 3 * time.Minute

// smokeEngines are the rows the smoke expects at every depth.
var smokeEngines = []string{bench.EnginePoll, bench.EngineGonvme, bench.EngineGonvmeMMIO, bench.EngineBare}

// smokeOptions are the fixed options of bench --smoke.
func smokeOptions() *benchOptions {
	return &benchOptions{
		Reps: 1, Time: time.Second, Warmup: 0, Profile: "null",
		Depths: []int{1, 32}, Workloads: []string{bench.RandRead},
		NoIRQ: true, Timeout: smokeTimeout,
	}
}

// benchSmoke runs bench --smoke, printing the build and boot log and the
// table to out, and returns an error that names every problem. It changes
// the working directory to the module root. ci calls it; it is not safe
// to run two at once in one process (the working directory is shared).
func benchSmoke(out io.Writer) error {
	t0 := time.Now()
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	o := smokeOptions()
	b, err := bootBench(out, o)
	if err != nil {
		return fmt.Errorf("bench smoke: %w", err)
	}
	defer b.cleanup()
	verr := smokeVerdict(o, b.v, b.res, b.perr)
	h := tableHeader{
		Command: "go run ./hack/qemu bench --smoke", Date: t0, Opts: o, Info: b.res.Info,
		QEMU: qemuVersion(b.assets.QEMU), HostCPUs: runtime.NumCPU(), NoTargets: true,
	}
	fmt.Fprintln(out)
	fmt.Fprint(out, renderTable(h, b.res.Samples))
	status := "ok"
	if verr != nil {
		status = "FAIL"
	}
	fmt.Fprintf(out, "bench smoke: %s, %d runs checked in %.1fs (boot %.1fs)\n", status, o.runs(), time.Since(t0).Seconds(), b.elapsed.Seconds())
	return verr
}

// smokeVerdict judges a smoke boot: the verdict of the boot, the parsed
// console and its parse error.
func smokeVerdict(o *benchOptions, v verdict, res benchOutput, perr error) error {
	var problems []string
	if perr != nil {
		problems = append(problems, perr.Error())
	}
	problems = append(problems, bootProblems(v)...)
	for _, wl := range o.Workloads {
		for _, qd := range o.Depths {
			for _, eng := range smokeEngines {
				name := fmt.Sprintf("%s %s QD%d", eng, wl, qd)
				var ss []bench.Sample
				for _, s := range res.Samples {
					if s.Engine == eng && s.Workload == wl && s.Depth == qd {
						ss = append(ss, s)
					}
				}
				if len(ss) != o.Reps {
					problems = append(problems, fmt.Sprintf("%s: %d runs in the guest's output, want %d", name, len(ss), o.Reps))
					continue
				}
				for _, s := range ss {
					problems = append(problems, smokeSample(name, s, res.Perf)...)
				}
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New("bench smoke: " + strings.Join(problems, "; "))
}

// smokeSample checks one run: it succeeded, every number the table shows
// is above zero, and a gonvme run came with perf's own JSON, which the
// host decoded (perf holds the reports that decoded).
func smokeSample(name string, s bench.Sample, perf []bench.Perf) []string {
	if s.Err != "" {
		return []string{fmt.Sprintf("%s: failed in the guest: %s", name, s.Err)}
	}
	tool := "fio"
	switch s.Engine {
	case bench.EngineGonvme, bench.EngineGonvmeMMIO:
		tool = "nvmectl perf"
	case bench.EngineBare, bench.EngineBareMMIO:
		tool = "guestbare"
	}
	var ps []string
	zero := func(what string, v float64) {
		if !(v > 0) {
			ps = append(ps, fmt.Sprintf("%s: %s is %v (a key of %s's JSON missing or renamed?)", name, what, v, tool))
		}
	}
	zero("iops", s.IOPS)
	zero("ios", float64(s.IOs))
	zero("seconds", s.Seconds)
	if s.Lat == nil {
		ps = append(ps, fmt.Sprintf("%s: no latency (a key of %s's JSON missing or renamed?)", name, tool))
	} else {
		l := s.Lat
		for _, f := range []struct {
			key string
			v   float64
		}{{"avg", l.Avg}, {"min", l.Min}, {"max", l.Max}, {"p50", l.P50}, {"p90", l.P90}, {"p99", l.P99}, {"p99.9", l.P999}} {
			zero("latency "+f.key, f.v)
		}
	}
	if s.Engine == bench.EngineGonvme || s.Engine == bench.EngineGonvmeMMIO {
		found := false
		for _, p := range perf {
			if p.Workload == s.Workload && p.QueueDepth == s.Depth && p.IOs == s.IOs && p.IOPS == s.IOPS {
				found = true
			}
		}
		if !found {
			ps = append(ps, fmt.Sprintf("%s: no nvmectl perf JSON on the console that decodes and matches the run (%s line)", name, bench.PerfPrefix))
		}
	}
	return ps
}
