package main

import (
	"errors"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
)

func TestParseCPULine(t *testing.T) {
	steal, total, err := parseCPULine("cpu  722400 0 151162 542221 3060 0 1262 16015 7 0")
	if err != nil || steal != 16015 || total != 722400+151162+542221+3060+1262+16015 {
		t.Fatalf("steal %d total %d err %v", steal, total, err)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8", "cpu 1 2 3 4 5 6 7", "cpu 1 2 3 x 5 6 7 8"} {
		if _, _, err := parseCPULine(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, _, err := procStat(); err != nil {
		t.Errorf("this host's /proc/stat: %v", err)
	}
}

// fakeTimes returns the (steal, total) pairs given, one per call.
func fakeTimes(pairs ...[2]uint64) cpuTimes {
	return func() (uint64, uint64, error) {
		if len(pairs) == 0 {
			return 0, 0, errors.New("no more")
		}
		p := pairs[0]
		pairs = pairs[1:]
		return p[0], p[1], nil
	}
}

func TestStealClock(t *testing.T) {
	c := newStealClock(fakeTimes([2]uint64{10, 1000}, [2]uint64{30, 1200}, [2]uint64{30, 1200}, [2]uint64{40, 1400}))
	if got := c.lap(); got != 10 {
		t.Errorf("20 of 200 ticks: %v%%, want 10", got)
	}
	if got := c.lap(); !math.IsNaN(got) {
		t.Errorf("no tick passed: %v, want NaN", got)
	}
	if got := c.lap(); got != 5 {
		t.Errorf("10 of 200 ticks: %v%%, want 5", got)
	}
	if got := c.lap(); !math.IsNaN(got) {
		t.Errorf("unreadable: %v, want NaN", got)
	}
}

// TestStealPerRun: the tap measures steal at each sample line only, and
// sampleSteal names the run each belongs to.
func TestStealPerRun(t *testing.T) {
	tap := &lineTap{w: io.Discard, steal: newStealClock(fakeTimes([2]uint64{0, 100}, [2]uint64{50, 200}, [2]uint64{51, 300}))}
	io.WriteString(tap, "booting\n"+
		bench.SamplePrefix+`{"engine":"bare","workload":"randread","depth":32,"rep":0,"iops":1}`+"\n"+
		"noise\n"+
		bench.SamplePrefix+`{"engine":"gonvme","workload":"randread","depth":32,"rep":1,"iops":1}`+"\n")
	got := sampleSteal(tap.Lines(), tap.stealAt)
	want := map[runID]float64{
		{cellKey{bench.RandRead, 32, bench.EngineBare}, 0}:   50,
		{cellKey{bench.RandRead, 32, bench.EngineGonvme}, 1}: 1,
	}
	if len(got) != len(want) {
		t.Fatalf("steal %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%v: %v, want %v", k, got[k], v)
		}
	}
	out := renderSteal(got)
	for _, s := range []string{"median 50.0%", "max 50.0% (randread QD32 bare rep 1)", "1 runs above 5%", "randread QD32 bare rep 1 (50%)"} {
		if !strings.Contains(out, s) {
			t.Errorf("report lacks %q:\n%s", s, out)
		}
	}
	quiet := renderSteal(map[runID]float64{{cellKey{bench.RandRead, 1, bench.EngineBare}, 0}: 0.5, {cellKey{bench.RandRead, 1, bench.EngineBare}, 1}: math.NaN()})
	if !strings.Contains(quiet, "No run above 5%") || !strings.Contains(quiet, "over 1 runs") {
		t.Errorf("quiet report:\n%s", quiet)
	}
	if !strings.Contains(renderSteal(nil), "not measured") {
		t.Error("no measurement must say so")
	}
}

// TestRenderPairs: the ratio is taken within each repetition, and a
// repetition whose runs saw steal is marked.
func TestRenderPairs(t *testing.T) {
	o := &benchOptions{Depths: []int{1, 32}}
	groups := groupSamples([]bench.Sample{
		{Engine: bench.EngineGonvme, Workload: bench.RandRead, Depth: 32, Rep: 1, IOPS: 90},
		{Engine: bench.EngineGonvme, Workload: bench.RandRead, Depth: 32, Rep: 0, IOPS: 50},
		{Engine: bench.EngineBare, Workload: bench.RandRead, Depth: 32, Rep: 0, IOPS: 100},
		{Engine: bench.EngineBare, Workload: bench.RandRead, Depth: 32, Rep: 1, IOPS: 100},
	})
	steal := map[runID]float64{{cellKey{bench.RandRead, 32, bench.EngineBare}, 0}: 9}
	got := renderPairs(o, groups, steal)
	want := "- QD32 IOPS gonvme ÷ bare loop, repetition by repetition: 0.50*, 0.90; median 0.70× (* host steal above 5% in that repetition)\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got := renderPairs(o, groupSamples(nil), nil); got != "" {
		t.Errorf("no samples: %q", got)
	}
}
