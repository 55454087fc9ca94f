package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
)

// Host CPU steal. The hosts this harness runs on are often virtual
// machines themselves: their hypervisor gives CPU time to other guests,
// and a QEMU guest under TCG then slows down by more. On the machine
// issue 16's tables were made on, steal went from 0-3% to 30-43% of the
// two CPUs for twenty seconds, and one boot's bare loop from 164k IOPS to
// 38k. A number taken meanwhile says nothing about the driver, so bench
// measures the steal over each run (/proc/stat, the host's "steal"
// column) and prints it under the table.

// stealLimit is the steal, in per cent of the host's CPU time, above
// which a run's numbers are called into doubt.
const stealLimit = 5.0

// cpuTimes reads the host's steal and total CPU time from /proc/stat's
// "cpu" line, in clock ticks.
type cpuTimes func() (steal, total uint64, err error)

// procStat is cpuTimes for this host.
func procStat() (steal, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseCPULine(line)
}

// parseCPULine parses /proc/stat's first line: "cpu" and at least eight
// counters (user nice system idle iowait irq softirq steal; guest and
// guest_nice, when present, are already counted in user and nice).
func parseCPULine(line string) (steal, total uint64, err error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %q: want cpu and at least 8 counters", line)
	}
	for i, s := range f[1:min(len(f), 9)] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: counter %d of %q: %w", i+1, line, err)
		}
		total += v
		if i == 7 {
			steal = v
		}
	}
	return steal, total, nil
}

// stealClock measures steal between laps.
type stealClock struct {
	read         cpuTimes
	steal, total uint64
	ok           bool
}

func newStealClock(read cpuTimes) *stealClock {
	c := &stealClock{read: read}
	c.lap()
	return c
}

// lap returns the steal since the last lap, in per cent of the host's CPU
// time, or NaN when /proc/stat could not be read or no tick passed.
func (c *stealClock) lap() float64 {
	s, t, err := c.read()
	if err != nil {
		c.ok = false
		return math.NaN()
	}
	pct := math.NaN()
	if c.ok && t > c.total && s >= c.steal {
		pct = 100 * float64(s-c.steal) / float64(t-c.total)
	}
	c.steal, c.total, c.ok = s, t, true
	return pct
}

// runID names one guest run: its table cell and repetition.
type runID struct {
	cellKey
	rep int
}

// runOf names the run a sample came from.
func runOf(s bench.Sample) runID { return runID{cellKey{s.Workload, s.Depth, s.Engine}, s.Rep} }

func (r runID) String() string {
	return fmt.Sprintf("%s QD%d %s rep %d", r.workload, r.depth, r.engine, r.rep+1)
}

// sampleSteal pairs each sample line of the console with the steal the
// tap measured when it arrived (stealAt, by line index): the steal over
// the run that printed it, from the sample line before.
func sampleSteal(lines []string, stealAt map[int]float64) map[runID]float64 {
	out := map[runID]float64{}
	for i, l := range lines {
		pct, ok := stealAt[i]
		if !ok {
			continue
		}
		s, err := bench.ParseLine(l)
		if err != nil {
			continue
		}
		out[runOf(s)] = pct
	}
	return out
}

// renderSteal says how much CPU the host lost to its hypervisor during
// the runs, and which runs lost more than stealLimit.
func renderSteal(steal map[runID]float64) string {
	var vals []float64
	var worst runID
	var bad []string
	maxv := math.Inf(-1)
	for id, v := range steal {
		if math.IsNaN(v) {
			continue
		}
		vals = append(vals, v)
		if v > maxv {
			maxv, worst = v, id
		}
		if v > stealLimit {
			bad = append(bad, fmt.Sprintf("%s (%.0f%%)", id, v))
		}
	}
	if len(vals) == 0 {
		return "\nHost CPU steal: not measured (/proc/stat unreadable).\n"
	}
	slices.Sort(vals)
	slices.Sort(bad)
	var b strings.Builder
	fmt.Fprintf(&b, "\nHost CPU steal during the runs (time the host's own hypervisor gave to other guests, from /proc/stat): median %.1f%%, max %.1f%% (%s), over %d runs.",
		vals[len(vals)/2], maxv, worst, len(vals))
	if len(bad) == 0 {
		fmt.Fprintf(&b, " No run above %.0f%%.\n", stealLimit)
		return b.String()
	}
	fmt.Fprintf(&b, " %d runs above %.0f%%, whose numbers measure the host more than the driver: %s.\n", len(bad), stealLimit, strings.Join(bad, ", "))
	return b.String()
}

// renderPairs divides gonvme's IOPS by the bare loop's repetition by
// repetition, at the deepest depth. The two run back to back in each
// repetition, so a boot that speeds up or slows down between repetitions
// (under TCG it does, by up to 2x) moves both; the ratio of the medians
// mixes repetitions. A repetition in which either run saw more than
// stealLimit of host steal is marked.
func renderPairs(o *benchOptions, groups map[cellKey][]bench.Sample, steal map[runID]float64) string {
	deepest := slices.Max(o.Depths)
	gs := groups[cellKey{bench.RandRead, deepest, bench.EngineGonvme}]
	bs := groups[cellKey{bench.RandRead, deepest, bench.EngineBare}]
	if len(gs) == 0 || len(bs) == 0 {
		return ""
	}
	bare := map[int]bench.Sample{}
	for _, s := range bs {
		bare[s.Rep] = s
	}
	slices.SortFunc(gs, func(a, b bench.Sample) int { return a.Rep - b.Rep })
	var parts []string
	var ratios []float64
	marked := false
	for _, g := range gs {
		b, ok := bare[g.Rep]
		if !ok || g.Err != "" || b.Err != "" || b.IOPS == 0 {
			parts = append(parts, "–")
			continue
		}
		r := g.IOPS / b.IOPS
		ratios = append(ratios, r)
		p := strconv.FormatFloat(r, 'f', 2, 64)
		if steal[runOf(g)] > stealLimit || steal[runOf(b)] > stealLimit {
			p += "*"
			marked = true
		}
		parts = append(parts, p)
	}
	if len(ratios) == 0 {
		return ""
	}
	line := fmt.Sprintf("- QD%d IOPS gonvme ÷ bare loop, repetition by repetition: %s; median %s", deepest,
		strings.Join(parts, ", "), fmtRatio(bench.Summarize(ratios).Median))
	if marked {
		line += fmt.Sprintf(" (* host steal above %.0f%% in that repetition)", stealLimit)
	}
	return line + "\n"
}
