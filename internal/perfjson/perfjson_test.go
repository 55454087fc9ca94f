package perfjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// sample is a two-namespace report as perf prints it.
func sample() *Report {
	row := func(ctrl string, nsid uint32, ios uint64) Result {
		return Result{
			Controller: ctrl, NSID: nsid, Workload: "randrw", IOSize: 4096, QueueDepth: 8, Pollers: 2,
			IOs: ios, Reads: ios * 3 / 4, Writes: ios - ios*3/4, Errors: 1, Seconds: 2,
			IOPS: float64(ios) / 2, MiBps: float64(ios) / 2 * 4096 / (1 << 20),
			Latency:      Latency{Avg: 40, Min: 10, Max: 900, P50: 35, P90: 60, P99: 200, P999: 500, P9999: 800},
			ReadLatency:  Latency{Avg: 30, Min: 10, Max: 700, P50: 30, P90: 50, P99: 150, P999: 400, P9999: 700},
			WriteLatency: Latency{Avg: 70, Min: 20, Max: 900, P50: 60, P90: 90, P99: 300, P999: 600, P9999: 900},
			Histogram:    []Bucket{{LowUs: 8.192, HighUs: 9.216, Count: ios / 2}, {LowUs: 30.72, HighUs: 32.768, Count: ios - ios/2}},
		}
	}
	tot := row("total", 0, 3000)
	tot.Errors = 2
	return &Report{
		Workload: "randrw", IOSize: 4096, QueueDepth: 8, RWMixRead: 75, Pollers: 2, CPUs: []int{0, 1},
		Seconds: 2, WarmupSeconds: 1, Seed: 7, Mode: "hybrid", RateIOPS: 1000,
		Run: Run{NvmectlVersion: "(devel) 0123abcd", GoVersion: "go1.26.8", StartTime: "2026-12-02T04:00:00Z", Kernel: "6.1.0-57-amd64",
			CPUModel: "QEMU Virtual CPU", DMAMemory: "2MiB hugepages", Controllers: []Controller{{Address: "0000:00:04.0", Model: "QEMU NVMe Ctrl", Serial: "gonvme0", Firmware: "7.2.22", ShadowDoorbells: true}}},
		Samples: []Sample{{Second: 1, IOs: 1500, IOPS: 1500, MiBps: 5.859}, {Second: 2, IOs: 1500, IOPS: 1500, MiBps: 5.859}},
		Results: []Result{row("0000:00:04.0", 1, 1000), row("0000:00:04.0", 2, 2000)},
		Total:   tot,
		Verify:  Verify{Enabled: true, Seed: 7, Blocks: 4096, Checked: 2250, Mismatches: 1, FirstMismatch: "0000:00:04.0 namespace 1 lba 3 byte 0"},
	}
}

func encode(t *testing.T, r *Report) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	in := sample()
	b := encode(t, in)
	if in.SchemaVersion != 0 {
		t.Error("Write changed its argument")
	}
	if !bytes.HasPrefix(b, []byte("{\n  \"schema_version\": 3,\n")) || !bytes.HasSuffix(b, []byte("}\n")) {
		t.Errorf("output:\n%s", b)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := *in
	want.SchemaVersion = SchemaVersion
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", *got, want)
	}
	// first_mismatch is the one key that may be absent.
	in.Verify.Mismatches, in.Verify.FirstMismatch = 0, ""
	b = encode(t, in)
	if bytes.Contains(b, []byte("first_mismatch")) {
		t.Errorf("first_mismatch printed without a mismatch")
	}
	if _, err := Decode(b); err != nil {
		t.Errorf("without first_mismatch: %v", err)
	}
}

// keyPaths lists every key of the JSON object tree v, as paths of object
// keys and array indexes.
func keyPaths(v any, path []any, out *[][]any) {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := append(slices.Clone(path), k)
			*out = append(*out, p)
			keyPaths(x[k], p, out)
		}
	case []any:
		for i, e := range x {
			keyPaths(e, append(slices.Clone(path), i), out)
		}
	}
}

// edit decodes b into a generic tree, lets f change the object holding the
// last key of path, and encodes it again.
func edit(t *testing.T, b []byte, path []any, f func(obj map[string]any, key string)) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	cur := v
	for _, p := range path[:len(path)-1] {
		switch k := p.(type) {
		case string:
			cur = cur.(map[string]any)[k]
		case int:
			cur = cur.([]any)[k]
		}
	}
	f(cur.(map[string]any), path[len(path)-1].(string))
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func pathString(p []any) string {
	var b strings.Builder
	for _, x := range p {
		switch k := x.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		case int:
			b.WriteString("[" + strconv.Itoa(k) + "]")
		}
	}
	return b.String()
}

// TestEveryKeyRequired deletes, then renames, each key of a report in turn:
// every change must fail to decode, naming the key.
func TestEveryKeyRequired(t *testing.T) {
	b := encode(t, sample())
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var paths [][]any
	keyPaths(v, nil, &paths)
	if len(paths) < 60 {
		t.Fatalf("only %d keys found", len(paths))
	}
	for _, p := range paths {
		name := pathString(p)
		last := p[len(p)-1].(string)
		if last == "first_mismatch" || last == "hugepage_fallback_reason" {
			continue // omitempty: checked by TestRoundTrip and TestChecks
		}
		missing := edit(t, b, p, func(obj map[string]any, key string) { delete(obj, key) })
		_, err := Decode(missing)
		if err == nil || !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), `missing key "`+name+`"`) {
			t.Errorf("without %s: err %v, want missing key %q", name, err, name)
		}
		renamed := edit(t, b, p, func(obj map[string]any, key string) { obj[key+"_x"] = obj[key]; delete(obj, key) })
		if _, err := Decode(renamed); err == nil || !strings.Contains(err.Error(), last+"_x") {
			t.Errorf("%s renamed: err %v, want it to name %s_x", name, err, last)
		}
	}
}

// TestChecks: reports perf cannot have printed are refused.
func TestChecks(t *testing.T) {
	for _, tt := range []struct {
		name string
		f    func(r *Report)
		msg  string
	}{
		{"zero iops", func(r *Report) { r.Total.IOPS = 0 }, "total: perf json does not match schema: iops is 0 with 3000 I/Os"},
		{"zero mibps", func(r *Report) { r.Results[1].MiBps = 0 }, "results[1] (0000:00:04.0 nsid 2): perf json does not match schema: mibps is 0"},
		{"zero p50", func(r *Report) { r.Results[0].Latency.P50 = 0 }, "latency_us.p50 is 0 with 1000 I/Os measured"},
		{"zero avg", func(r *Report) { r.Total.Latency.Avg = 0 }, "latency_us.avg is 0"},
		{"zero p99_99", func(r *Report) { r.Total.Latency.P9999 = 0 }, "latency_us.p99_99 is 0"},
		{"zero seconds", func(r *Report) { r.Total.Seconds = 0 }, "seconds is 0"},
		{"iops off", func(r *Report) { r.Total.IOPS = 1650 }, "iops 1650, but 3000 I/Os in 2 s make 1500"},
		{"mibps off", func(r *Report) { r.Total.MiBps *= 2 }, "mibps"},
		{"order", func(r *Report) { r.Total.Latency.P90 = 1000 }, "latency_us.p90 1000 above p99 200"},
		{"avg", func(r *Report) { r.Total.Latency.Avg = 5 }, "latency_us.avg 5 outside"},
		{"reads", func(r *Report) { r.Results[0].Reads++ }, "ios 1000, reads 751, writes 250"},
		{"zero read p50", func(r *Report) { r.Results[0].ReadLatency.P50 = 0 }, "read_latency_us.p50 is 0 with 750 I/Os"},
		{"write latency without writes", func(r *Report) { r.Results[0].WriteLatency.Avg = 0 }, "write_latency_us.avg is 0"},
		{"histogram short", func(r *Report) { r.Results[1].Histogram[0].Count-- }, "histogram holds 1999 I/Os, ios 2000"},
		{"histogram order", func(r *Report) { h := r.Total.Histogram; h[0], h[1] = h[1], h[0] }, "histogram[1]"},
		{"idle row with rates", func(r *Report) {
			x := &r.Results[0]
			r.Total.IOs -= x.IOs
			r.Total.Reads -= x.Reads
			r.Total.Writes -= x.Writes
			r.Total.Errors -= x.Errors
			x.IOs, x.Reads, x.Writes, x.Errors = 0, 0, 0, 0
			x.ReadLatency, x.WriteLatency, x.Histogram = Latency{}, Latency{}, nil
		}, "no I/O measured, yet iops 500"},
		{"total sum", func(r *Report) { r.Total.Writes++; r.Total.IOs++; r.Total.Histogram[1].Count++ }, "the rows add up to 3000"},
		{"total name", func(r *Report) { r.Total.Controller = "Total" }, `names controller "Total"`},
		{"no rows", func(r *Report) { r.Results = nil }, "no results"},
		{"pollers", func(r *Report) { r.CPUs = []int{0} }, "2 pollers on cpus [0]"},
		{"verify off", func(r *Report) { r.Verify.Enabled = false }, "verify not enabled"},
		{"verify first", func(r *Report) { r.Verify.FirstMismatch = "" }, "1 mismatches, first_mismatch"},
	} {
		r := sample()
		tt.f(r)
		_, err := Decode(encode(t, r))
		if err == nil || !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: err %v, want %q", tt.name, err, tt.msg)
		}
	}

	// A run that measured nothing (interrupted at once) is a valid report.
	r := sample()
	r.Verify = Verify{}
	for _, x := range append([]*Result{&r.Total}, &r.Results[0], &r.Results[1]) {
		*x = Result{Controller: x.Controller, NSID: x.NSID, Workload: x.Workload, IOSize: x.IOSize, QueueDepth: x.QueueDepth, Pollers: x.Pollers, Histogram: []Bucket{}}
	}
	if _, err := Decode(encode(t, r)); err != nil {
		t.Errorf("a run without I/O: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	b := encode(t, sample())
	for name, in := range map[string]string{
		"empty":          "",
		"not an object":  "[1]",
		"cut short":      string(b[:len(b)/2]),
		"trailing":       string(b) + "{}",
		"version 2":      strings.Replace(string(b), `"schema_version": 3`, `"schema_version": 2`, 1),
		"wrong type":     strings.Replace(string(b), `"ios": 1000`, `"ios": "1000"`, 1),
		"null latency":   string(edit(t, b, []any{"total", "latency_us"}, func(o map[string]any, k string) { o[k] = nil })),
		"null results":   string(edit(t, b, []any{"results"}, func(o map[string]any, k string) { o[k] = nil })),
		"unknown nested": strings.Replace(string(b), `"p50": 35,`, `"p50": 35, "p75": 50,`, 1),
		"unknown mode":   strings.Replace(string(b), `"mode": "hybrid"`, `"mode": "adaptive"`, 1),
		"negative rate":  strings.Replace(string(b), `"rate_iops": 1000`, `"rate_iops": -1`, 1),
		"no mode":        strings.Replace(string(b), `"mode": "hybrid",`, ``, 1),
	} {
		if r, err := Decode([]byte(in)); err == nil {
			t.Errorf("%s: decoded %+v", name, r)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
