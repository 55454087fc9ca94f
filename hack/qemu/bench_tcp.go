package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// `bench --tcp`: gonvme as an NVMe/TCP host against the kernel's own
// initiator, both on one nvmet target in one boot (guestbench/tcp.go).

// tcpMode adjusts the options for the NVMe/TCP rows: the profile carries
// the fabrics modules and nvme-cli (nvmf), and there are no qemu-img or
// host-benchmark rows.
func (o *benchOptions) tcpMode() {
	if p, err := vmtest.ParseProfile(o.Profile); err == nil && !p.Fabrics {
		o.Profile += "+nvmf"
	}
	o.QemuImg = nil
	o.HostBench = false
}

// tcpEngineRows is the order and the label of the NVMe/TCP table's rows.
var tcpEngineRows = []struct{ engine, label string }{
	{bench.EngineTCPKernelIRQ, "kernel nvme-tcp initiator, fio io_uring (hipri=0)"},
	{bench.EngineTCPGonvme, "**gonvme** host, nvmectl perf tcp://, 1 poller"},
}

// renderTCPTable prints the NVMe/TCP rows as renderTable prints the local
// ones; the ratio column divides by the kernel initiator's row, and
// DESIGN.md's target (QD32 at least 1.2x) is checked at the deepest depth.
func renderTCPTable(h tableHeader, samples []bench.Sample) string {
	o := h.Opts
	groups := groupSamples(samples)
	cells := summarizeCells(groups)
	kernelIOPS := func(wl string, qd int) float64 {
		if c, ok := cells[cellKey{wl, qd, bench.EngineTCPKernelIRQ}]; ok && c.IOPS.N > 0 {
			return c.IOPS.Median
		}
		return math.NaN()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### gonvme's NVMe/TCP host vs the guest kernel's initiator: 4 KiB random I/O, one nvmet target (profile %s)\n\n", o.Profile)
	fmt.Fprintf(&b, "`%s`, %s\n\n", h.Command, h.Date.UTC().Format("2006-01-02 15:04 UTC"))
	facts := h.facts()
	if v := h.Info["tcp_target"]; v != "" {
		facts = append(facts, v)
	}
	if v := h.Info["clocksource"]; v != "" {
		facts = append(facts, "clocksource "+v)
	}
	b.WriteString(strings.Join(facts, "; ") + ".  \n")
	fmt.Fprintf(&b, "Each cell: median of %d runs of %v after %v of warm-up, all in one boot, one host at a time "+
		"(the kernel's initiator is disconnected while gonvme runs); IOPS also min–max. Latency in µs from submission "+
		"to completion (fio lat_ns, nvmectl perf latency_us). The last column divides the row's median IOPS by the "+
		"kernel initiator's. The kernel row uses interrupts: a polled nvme-tcp queue (hipri=1) makes this "+
		"kernel (6.1) log a WARNING (a sleep in lock_sock inside bio_poll's RCU section).\n\n", o.Reps, o.Time, o.Warmup)
	b.WriteString("| workload | QD | host | IOPS | IOPS min–max | avg µs | p50 µs | p99 µs | p99.9 µs | ÷ kernel initiator |\n")
	b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
	var failures []string
	for _, wl := range o.Workloads {
		for _, qd := range o.Depths {
			for _, er := range tcpEngineRows {
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
				if er.engine == bench.EngineTCPGonvme {
					ratio = fmtRatio(bench.Ratio(c.IOPS.Median, kernelIOPS(wl, qd)))
				}
				fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n",
					wl, qd, er.label, fmtIOPS(c.IOPS.Median), rng,
					fmtUS(c.Avg), fmtUS(c.P50), fmtUS(c.P99), fmtUS(c.P999), ratio)
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
	for _, wl := range o.Workloads {
		if wl != bench.RandRead {
			continue
		}
		r := bench.Ratio(cells[cellKey{wl, deepest, bench.EngineTCPGonvme}].IOPS.Median, kernelIOPS(wl, deepest))
		verdict := "missed"
		switch {
		case math.IsNaN(r):
			verdict = "not measured"
		case r >= 1.2:
			verdict = "met"
		}
		fmt.Fprintf(&b, "\nTarget (DESIGN.md, NVMe/TCP host): QD%d randread IOPS gonvme ÷ kernel initiator = %s (want ≥ 1.2×): %s\n", deepest, fmtRatio(r), verdict)
	}
	if len(failures) > 0 {
		b.WriteString("\nFailed runs:\n\n")
		for _, f := range failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	return b.String()
}
