package bench

import (
	"errors"
	"math"
	"os"
	"strings"
	"testing"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func approx(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// The samples were captured from fio 3.33 (Debian) with the options
// guestbench uses: --output-format=json --lat_percentiles=1
// --percentile_list=50:90:99:99.9:99.99.
func TestParseFioRandRead(t *testing.T) {
	jobs, err := ParseFio(readTestdata(t, "fio-randread.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].Name != "bench" || jobs[0].Error != 0 || jobs[0].Version != "fio-3.33" {
		t.Fatalf("jobs = %+v", jobs)
	}
	d := jobs[0].Dir(RandRead)
	want := Latency{Avg: 63.289918638, Min: 33.32, Max: 3215.509, P50: 59.136, P90: 70.144, P99: 98.816, P999: 618.496}
	if !approx(d.IOPS, 62939.060939) || d.TotalIOs != 63002 {
		t.Errorf("iops %v ios %d, want 62939.060939 and 63002", d.IOPS, d.TotalIOs)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"avg", d.Lat.Avg, want.Avg}, {"min", d.Lat.Min, want.Min}, {"max", d.Lat.Max, want.Max},
		{"p50", d.Lat.P50, want.P50}, {"p90", d.Lat.P90, want.P90}, {"p99", d.Lat.P99, want.P99},
		{"p99.9", d.Lat.P999, want.P999},
	} {
		if !approx(c.got, c.want) {
			t.Errorf("%s = %v us, want %v (lat_ns, not clat_ns)", c.name, c.got, c.want)
		}
	}
	if w := jobs[0].Dir(RandWrite); w.IOPS != 0 || w.TotalIOs != 0 {
		t.Errorf("a read job has write numbers: %+v", w)
	}
}

func TestParseFioRandWrite(t *testing.T) {
	jobs, err := ParseFio(readTestdata(t, "fio-randwrite.json"))
	if err != nil {
		t.Fatal(err)
	}
	d := jobs[0].Dir(RandWrite)
	if !approx(d.IOPS, 19013.986014) || !approx(d.Lat.P50, 46.336) || !approx(d.Lat.P999, 1028.096) {
		t.Errorf("write: iops %v p50 %v p99.9 %v", d.IOPS, d.Lat.P50, d.Lat.P999)
	}
	if r := jobs[0].Dir(RandRead); r.IOPS != 0 {
		t.Errorf("a write job has read IOPS %v", r.IOPS)
	}
}

func TestParseFioWarningsAndFallback(t *testing.T) {
	// fio prints some warnings on stdout before the JSON; without
	// lat_percentiles=1 the percentiles are only under clat_ns.
	out := `fio: io_uring: polled I/O on a device without poll queues
{
  "fio version" : "fio-3.33",
  "jobs" : [ { "jobname" : "x", "error" : 0,
    "read" : { "iops" : 1000.0, "total_ios" : 5000, "runtime" : 5000,
      "lat_ns" : { "min" : 1000, "max" : 9000, "mean" : 2000.0 },
      "clat_ns" : { "min" : 900, "max" : 8900, "mean" : 1900.0,
        "percentile" : { "50.000000" : 1800, "99.900000" : 8000 } } },
    "write" : { "iops" : 0.0 } } ]
}
`
	jobs, err := ParseFio([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	d := jobs[0].Dir(RandRead)
	if d.Lat.Avg != 2 || d.Lat.P50 != 1.8 || d.Lat.P999 != 8 || d.RuntimeS != 5 {
		t.Errorf("got %+v", d)
	}
}

func TestParseFioErrors(t *testing.T) {
	for name, out := range map[string]string{
		"empty":     "",
		"no json":   "fio: failed to open /dev/nvme0n1: No such file or directory\n",
		"no jobs":   `{"fio version": "fio-3.33", "jobs": []}`,
		"truncated": `{"fio version": "fio-3.33", "jobs": [{"jobname": "x"`,
	} {
		if _, err := ParseFio([]byte(out)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// nvmectl-perf.json is the output of `nvmectl perf -q 32 -s 4096 -w
// randread -t 2 --warmup 1 -c 1 -o json` in a guest of profile null
// (schema version 2).
func TestParsePerf(t *testing.T) {
	p, err := ParsePerf(readTestdata(t, "nvmectl-perf.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := Perf{Workload: RandRead, QueueDepth: 32, IOs: 120069, Seconds: 2.005, IOPS: 59876.842, MiBps: 233.894,
		Lat: Latency{Avg: 533.644, Min: 135.033, Max: 8535.805, P50: 344.064, P90: 1245.184, P99: 2752.512, P999: 4980.736}}
	if p != want {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}
}

// TestParsePerfErrors: what perf's JSON must not be. A renamed key, a
// missing one or a zero where I/O was measured is an error naming it, not
// a 0 in the table.
func TestParsePerfErrors(t *testing.T) {
	good := string(readTestdata(t, "nvmectl-perf.json"))
	total := strings.Index(good, `"total"`)
	inTotal := func(old, new string) string { return good[:total] + strings.Replace(good[total:], old, new, 1) }
	for name, tt := range map[string]struct{ out, msg string }{
		"empty":          {"", "no JSON object"},
		"no total":       {good[:total] + `"verify": {}}`, `missing key "total"`},
		"bad json":       {`{"total": {"ios": "many"}}`, "cannot unmarshal"},
		"old schema":     {strings.Replace(good, `"schema_version": 3,`, "", 1), `missing key "schema_version"`},
		"renamed p50":    {inTotal(`"p50"`, `"p50_us"`), `unknown field "p50_us"`},
		"missing iops":   {inTotal(`"iops": 59876.842,`, ""), `missing key "total.iops"`},
		"missing p99_9":  {inTotal(`"p99_9": 4980.736,`, ""), `missing key "total.latency_us.p99_9"`},
		"zero iops":      {inTotal(`"iops": 59876.842`, `"iops": 0`), "total: perf json does not match schema: iops is 0 with 120069 I/Os measured"},
		"zero latency":   {inTotal(`"p50": 344.064`, `"p50": 0`), "total: perf json does not match schema: latency_us.p50 is 0 with 120069 I/Os measured"},
		"trailing text":  {good + "perf: done\n", "data after the report"},
		"two reports":    {good + good, "data after the report"},
		"unknown at top": {strings.Replace(good, `"pollers": 1,`, `"pollers": 1, "poller": 1,`, 1), `unknown field "poller"`},
	} {
		_, err := ParsePerf([]byte(tt.out))
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: err %v, want %q", name, err, tt.msg)
		}
	}
	// Text before the object (a progress line on stdout) is skipped.
	p, err := ParsePerf([]byte("warming up 1s\n" + good))
	if err != nil || p.IOs != 120069 {
		t.Errorf("with a leading line: %+v, %v", p, err)
	}
	// Failed I/O: the report is printed, Errors says how many.
	p, err = ParsePerf([]byte(strings.ReplaceAll(good, `"errors": 0`, `"errors": 2`)))
	if err != nil || p.Errors != 2 {
		t.Errorf("errors: %+v, %v", p, err)
	}
}

func TestParseQemuImg(t *testing.T) {
	out := "Sending 2000 read requests, 4096 bytes each, 32 in parallel (starting at offset 0, step size 4096)\nRun completed in 0.032 seconds.\n"
	q, err := ParseQemuImg([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if q.Count != 2000 || q.Write || q.Size != 4096 || q.Depth != 32 || q.Seconds != 0.032 || !approx(q.IOPS(), 62500) {
		t.Errorf("got %+v, IOPS %v", q, q.IOPS())
	}
	w, err := ParseQemuImg([]byte(strings.Replace(out, "read", "write", 1)))
	if err != nil || !w.Write {
		t.Errorf("write: %+v, %v", w, err)
	}
	for _, bad := range []string{"", out[:60], strings.Replace(out, "0.032", "0.000", 1)} {
		if _, err := ParseQemuImg([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestSampleLineRoundTrip(t *testing.T) {
	s := Sample{Engine: EngineGonvme, Workload: RandRead, Depth: 32, Rep: 2, IOPS: 41234.5, IOs: 206172,
		Lat: &Latency{Avg: 700, P50: 650, P99: 2000, P999: 4000}}
	line := s.Line()
	if !strings.HasPrefix(line, SamplePrefix) || strings.Contains(line, "\n") {
		t.Fatalf("line %q", line)
	}
	// The console may put a carriage return or kernel noise in front.
	got, err := ParseLine("[  12.3] " + line + "\r")
	if err != nil {
		t.Fatal(err)
	}
	if got.Engine != s.Engine || got.Depth != 32 || got.Rep != 2 || got.IOPS != s.IOPS || got.Lat == nil || *got.Lat != *s.Lat {
		t.Errorf("round trip: got %+v", got)
	}
	if _, err := ParseLine("guestbench: rep 1/3 randread qd1 gonvme: 7000 IOPS"); !errors.Is(err, ErrNotSample) {
		t.Errorf("human line: %v, want ErrNotSample", err)
	}
	for _, bad := range []string{
		SamplePrefix + `{"engine":"gonvme"`,                                        // cut short
		SamplePrefix + `{"engine":"gonvme","workload":"randread","depth":0}`,       // no depth
		SamplePrefix + `{"engine":"gonvme","workload":"randread","depth":1,"x":1}`, // unknown field
	} {
		if _, err := ParseLine(bad); err == nil || errors.Is(err, ErrNotSample) {
			t.Errorf("%q: err %v, want a decode error", bad, err)
		}
	}
}

func TestParseInfo(t *testing.T) {
	k, v, ok := ParseInfo(InfoPrefix + "fio=fio-3.33\r")
	if !ok || k != "fio" || v != "fio-3.33" {
		t.Errorf("got %q %q %v", k, v, ok)
	}
	if _, _, ok := ParseInfo(InfoPrefix + "no equals sign"); ok {
		t.Error("a line without = parsed")
	}
	if _, _, ok := ParseInfo("fio=fio-3.33"); ok {
		t.Error("a line without the prefix parsed")
	}
}

func TestSummarize(t *testing.T) {
	for _, c := range []struct {
		in                     []float64
		n                      int
		median, min, max, mean float64
	}{
		{[]float64{3}, 1, 3, 3, 3, 3},
		{[]float64{5, 1, 3}, 3, 3, 1, 5, 3},
		{[]float64{4, 1, 3, 2}, 4, 2.5, 1, 4, 2.5},
		{[]float64{10, math.NaN(), 30}, 2, 20, 10, 30, 20},
	} {
		s := Summarize(c.in)
		if s.N != c.n || s.Median != c.median || s.Min != c.min || s.Max != c.max || s.Mean != c.mean {
			t.Errorf("Summarize(%v) = %+v", c.in, s)
		}
	}
	if s := Summarize(nil); s != (Summary{}) {
		t.Errorf("empty: %+v", s)
	}
	if s := Summarize([]float64{2, 6}); s.RangeFactor != 3 {
		t.Errorf("range factor %v, want 3", s.RangeFactor)
	}
	in := []float64{3, 1, 2}
	Summarize(in)
	if in[0] != 3 {
		t.Error("Summarize sorted its argument")
	}
}

func TestRatio(t *testing.T) {
	if r := Ratio(30, 10); r != 3 {
		t.Errorf("Ratio(30, 10) = %v", r)
	}
	for _, c := range [][2]float64{{0, 10}, {10, 0}, {math.NaN(), 1}} {
		if r := Ratio(c[0], c[1]); !math.IsNaN(r) {
			t.Errorf("Ratio(%v, %v) = %v, want NaN", c[0], c[1], r)
		}
	}
}
