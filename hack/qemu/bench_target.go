package main

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
)

// The NVMe/TCP target bench: `go run ./hack/qemu bench --nvmf-target`
// boots the profile (null by default) with the nvmf modifier, and the
// guest (guestbench -nvmf-target, guestbench/nvmf.go) reads 4 KiB at
// random through the guest kernel's NVMe/TCP initiator (nvme-cli connect,
// fio io_uring) from the same emulated controller exported by Linux's
// nvmet (block-device backend on the kernel nvme driver) and by gonvme's
// target (nvmectl serve --nvmf), in every repetition, in one boot.

// nvmfTargetOptions adapts the options to the target rows: the profile
// carries the fabrics modules and nvme-cli; no qemu-img, interrupt-queue
// or host rows; a time limit that allows for the rebinding, the
// connects and serve's start in every repetition.
func nvmfTargetOptions(o *benchOptions) {
	if !strings.Contains("+"+o.Profile+"+", "+nvmf+") {
		o.Profile += "+nvmf"
	}
	o.QemuImg, o.NoIRQ, o.HostBench = nil, true, false
	if o.Timeout == 0 {
		runs := o.Reps * len(o.Depths) * len(o.Workloads) * len(nvmfTargetRows)
		o.Timeout = 4*time.Minute + time.Duration(runs)*(o.Time+o.Warmup+20*time.Second) + time.Duration(o.Reps)*3*time.Minute
	}
}

// nvmfTargetRows is the order and the label of the target table's rows.
var nvmfTargetRows = []struct{ engine, label string }{
	{bench.EngineNVMet, "Linux nvmet (bdev on kernel nvme)"},
	{bench.EngineNVMfGonvme, "**gonvme** (nvmectl serve --nvmf)"},
	{bench.EngineNVMfGonvmeSpin, "**gonvme**, --nvmf-spin 10ms"},
}

// renderNVMfTargetTable prints the target table: one row per workload,
// depth and target, the ratio gonvme ÷ nvmet, and DESIGN.md's target
// (QD32 randread IOPS at least 1.0× nvmet's).
func renderNVMfTargetTable(h tableHeader, samples []bench.Sample) string {
	o := h.Opts
	groups := groupSamples(samples)
	cells := summarizeCells(groups)
	var b strings.Builder
	fmt.Fprintf(&b, "### NVMe/TCP target: gonvme vs Linux's nvmet, the guest kernel's initiator as the client (profile %s)\n\n", o.Profile)
	fmt.Fprintf(&b, "`%s`, %s\n\n", h.Command, h.Date.UTC().Format("2006-01-02 15:04 UTC"))
	facts := h.facts()
	if v := h.Info["clocksource"]; v != "" {
		facts = append(facts, "clocksource "+v)
	}
	if v := h.Info["nvmf_serve"]; v != "" {
		facts = append(facts, "gonvme: `nvmectl "+v+"`")
	}
	b.WriteString(strings.Join(facts, "; ") + ".  \n")
	fmt.Fprintf(&b, "Client: nvme-cli `connect -t tcp` on 127.0.0.1, fio io_uring (direct, 4 KiB). "+
		"Each cell: median of %d runs of %v after %v of warm-up, all in one boot; IOPS also min–max; "+
		"latency in µs (fio lat_ns). The controller moves between the kernel nvme driver (nvmet's backing) "+
		"and vfio-pci (gonvme's) in every repetition.\n\n", o.Reps, o.Time, o.Warmup)
	b.WriteString("| workload | QD | target | IOPS | IOPS min–max | avg µs | p50 µs | p99 µs | ÷ nvmet |\n")
	b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---:|\n")
	var failures []string
	for _, wl := range o.Workloads {
		for _, qd := range o.Depths {
			ref := cells[cellKey{wl, qd, bench.EngineNVMet}].IOPS.Median
			for _, er := range nvmfTargetRows {
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
				ratio := ""
				if er.engine != bench.EngineNVMet {
					ratio = fmtRatio(bench.Ratio(c.IOPS.Median, ref))
				}
				fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n",
					wl, qd, er.label, fmtIOPS(c.IOPS.Median), rng, fmtUS(c.Avg), fmtUS(c.P50), fmtUS(c.P99), ratio)
				for _, e := range c.Errors {
					failures = append(failures, fmt.Sprintf("%s QD%d %s, %s", wl, qd, er.engine, e))
				}
			}
		}
	}
	deepest := 0
	for _, d := range o.Depths {
		deepest = max(deepest, d)
	}
	k := cells[cellKey{bench.RandRead, deepest, bench.EngineNVMet}]
	b.WriteString("\nTarget (DESIGN.md): randread QD" + fmt.Sprint(deepest) + " IOPS gonvme's target ÷ nvmet, want ≥ 1.0×:\n")
	for _, er := range nvmfTargetRows[1:] {
		g := cells[cellKey{bench.RandRead, deepest, er.engine}]
		r := bench.Ratio(g.IOPS.Median, k.IOPS.Median)
		v := "missed"
		switch {
		case math.IsNaN(r):
			v = "not measured"
		case r >= 1:
			v = "met"
		}
		fmt.Fprintf(&b, "- %s: %s, %s\n", er.label, fmtRatio(r), v)
	}
	if len(failures) > 0 {
		b.WriteString("\nFailed runs:\n\n")
		for _, f := range failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	return b.String()
}
