package perfjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"
)

// SchemaVersion is the version of the keys below; Write stamps it and
// Decode accepts nothing else. Bump it with any change to the keys.
const SchemaVersion = 3

// Report is the whole of `nvmectl perf -o json`.
type Report struct {
	SchemaVersion int      `json:"schema_version"`
	Workload      string   `json:"workload"`
	IOSize        int      `json:"io_size"`     // bytes per I/O
	QueueDepth    int      `json:"queue_depth"` // per namespace and poller
	RWMixRead     int      `json:"rwmixread"`   // percent reads
	Pollers       int      `json:"pollers"`
	CPUs          []int    `json:"cpus"` // the pollers' CPUs
	Seconds       float64  `json:"seconds"`
	WarmupSeconds float64  `json:"warmup_seconds"`
	Seed          uint64   `json:"seed"`      // of the random offsets (and --verify's pattern): --seed replays them
	Mode          string   `json:"mode"`      // how the pollers waited: poll, interrupt or hybrid
	RateIOPS      float64  `json:"rate_iops"` // --rate: the IOPS cap (open-loop pacing), 0 for none
	Run           Run      `json:"run"`
	Results       []Result `json:"results"` // one per namespace
	Total         Result   `json:"total"`
	Verify        Verify   `json:"verify"`
	Samples       []Sample `json:"samples"` // one per second of the measured phase
}

// Run is what a comparison of two reports needs to know about where and
// when each ran.
type Run struct {
	NvmectlVersion string `json:"nvmectl_version"` // module version and VCS revision
	GoVersion      string `json:"go_version"`
	StartTime      string `json:"start_time"` // RFC 3339, UTC, when the measured phase began
	Kernel         string `json:"kernel"`     // uname release
	CPUModel       string `json:"cpu_model"`
	// DMAMemory is the page size of the run's DMA buffers: "2MiB
	// hugepages", "4KiB pages", or "mixed" when some buffers fell back.
	DMAMemory string `json:"dma_memory"`
	// HugepageFallback says buffers that wanted hugepages got base pages;
	// HugepageFallbackReason says why (the shortage and how to fix it).
	HugepageFallback       bool         `json:"hugepage_fallback"`
	HugepageFallbackReason string       `json:"hugepage_fallback_reason,omitempty"`
	Controllers            []Controller `json:"controllers"`
}

// Controller is one controller the run drove, as it identified itself.
type Controller struct {
	Address  string `json:"address"`
	Model    string `json:"model"`
	Serial   string `json:"serial"`
	Firmware string `json:"firmware"`
	// ShadowDoorbells says the run used shadow doorbells (Doorbell
	// Buffer Config) on this controller; false: every doorbell was a
	// register write (not offered, or --no-shadow-doorbells).
	ShadowDoorbells bool `json:"shadow_doorbells"`
}

// Sample is one second of the measured phase, all namespaces together.
type Sample struct {
	Second float64 `json:"second"` // end of the interval, from the start of the measured phase
	IOs    uint64  `json:"ios"`    // completed in the interval
	IOPS   float64 `json:"iops"`
	MiBps  float64 `json:"mibps"`
}

// Bucket is one bucket of a latency histogram: the count of I/Os whose
// latency lay in [LowUs, HighUs) microseconds. Only non-empty buckets
// are listed, in ascending order.
type Bucket struct {
	LowUs  float64 `json:"low_us"`
	HighUs float64 `json:"high_us"`
	Count  uint64  `json:"count"`
}

// Result is one row: a namespace driven by all its pollers, or the total.
type Result struct {
	Controller string  `json:"controller"` // PCI address, or "total"
	NSID       uint32  `json:"nsid"`       // 0 in the total
	Workload   string  `json:"workload"`
	IOSize     int     `json:"io_size"`
	QueueDepth int     `json:"queue_depth"`
	Pollers    int     `json:"pollers"`
	IOs        uint64  `json:"ios"` // completed in the measured phase
	Reads      uint64  `json:"reads"`
	Writes     uint64  `json:"writes"`
	Errors     uint64  `json:"errors"` // of IOs, completed with an error
	Seconds    float64 `json:"seconds"`
	IOPS       float64 `json:"iops"`
	MiBps      float64 `json:"mibps"`
	Latency    Latency `json:"latency_us"`
	// ReadLatency and WriteLatency summarize the reads and the writes
	// alone (all zero without any): a mixed workload's blended latency
	// hides either.
	ReadLatency  Latency  `json:"read_latency_us"`
	WriteLatency Latency  `json:"write_latency_us"`
	Histogram    []Bucket `json:"histogram"` // every measured I/O; counts add up to ios
}

// Latency is a row's latency summary in microseconds, from submission to
// completion. All zero when the row measured no I/O.
type Latency struct {
	Avg   float64 `json:"avg"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	P9999 float64 `json:"p99_99"`
}

// Verify is the summary of --verify; all zero without it.
type Verify struct {
	Enabled       bool   `json:"enabled"`
	Seed          uint64 `json:"seed"`
	Blocks        uint64 `json:"blocks"`     // blocks of the written pattern
	Checked       uint64 `json:"checked"`    // reads compared with the pattern
	Mismatches    uint64 `json:"mismatches"` // reads that differed
	FirstMismatch string `json:"first_mismatch,omitempty"`
}

// Write prints r as indented JSON with a final newline, stamped with
// SchemaVersion (r itself is not changed).
func Write(w io.Writer, r *Report) error {
	v := *r
	v.SchemaVersion = SchemaVersion
	b, err := json.MarshalIndent(&v, "", "  ")
	if err != nil {
		return fmt.Errorf("perf json: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("perf json: %w", err)
	}
	return nil
}

// ErrSchema is wrapped by every error of Decode about the input's shape
// or content (as opposed to its syntax).
var ErrSchema = errors.New("perf json does not match schema")

// Decode reads one report, which must be the whole of b (surrounding white
// space aside), strictly: unknown keys, missing keys, another schema
// version, trailing data, and reports that Report.Check rejects are errors
// that name the key or row.
func Decode(b []byte) (*Report, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r Report
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("perf json: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the report", ErrSchema)
	}
	// Unmarshal succeeded, so the input is one valid object: walk it again
	// for the keys it lacks.
	if err := requireKeys(reflect.TypeOf(r), json.RawMessage(bytes.TrimSpace(b)), ""); err != nil {
		return nil, err
	}
	if err := r.Check(); err != nil {
		return nil, err
	}
	return &r, nil
}

// requireKeys checks that raw, a JSON value of Go type t, has every key
// t's struct tags name without omitempty, at every depth.
func requireKeys(t reflect.Type, raw json.RawMessage, path string) error {
	switch t.Kind() {
	case reflect.Pointer:
		if string(raw) == "null" {
			return nil
		}
		return requireKeys(t.Elem(), raw, path)
	case reflect.Slice, reflect.Array:
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return fmt.Errorf("perf json: %s: %w", path, err)
		}
		for i, e := range elems {
			if err := requireKeys(t.Elem(), e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return fmt.Errorf("perf json: %s: %w", path, err)
		}
		if obj == nil {
			return fmt.Errorf("%w: %s is null, want an object", ErrSchema, strings.TrimPrefix(path, "."))
		}
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			name, opts, _ := strings.Cut(tag, ",")
			if !f.IsExported() || name == "-" || name == "" {
				continue
			}
			key := path + "." + name
			v, ok := obj[name]
			if !ok {
				if opts == "omitempty" {
					continue
				}
				return fmt.Errorf("%w: missing key %q", ErrSchema, strings.TrimPrefix(key, "."))
			}
			if err := requireKeys(f.Type, v, key); err != nil {
				return err
			}
		}
	}
	return nil
}

// Check reports the first thing about r that perf cannot have printed:
// another schema version, no rows, a total that is not the sum of the
// rows, or a row whose counts, rates or latencies disagree (see
// Result.Check).
func (r *Report) Check() error {
	if r.SchemaVersion != SchemaVersion {
		return fmt.Errorf("%w: schema_version %d, want %d", ErrSchema, r.SchemaVersion, SchemaVersion)
	}
	if len(r.Results) == 0 {
		return fmt.Errorf("%w: no results", ErrSchema)
	}
	switch r.Mode {
	case "poll", "interrupt", "hybrid":
	default:
		return fmt.Errorf("%w: mode %q, want poll, interrupt or hybrid", ErrSchema, r.Mode)
	}
	if r.RateIOPS < 0 || math.IsNaN(r.RateIOPS) || math.IsInf(r.RateIOPS, 0) {
		return fmt.Errorf("%w: rate_iops %v", ErrSchema, r.RateIOPS)
	}
	if r.Pollers < 1 || r.Pollers != len(r.CPUs) {
		return fmt.Errorf("%w: %d pollers on cpus %v", ErrSchema, r.Pollers, r.CPUs)
	}
	if r.Total.Controller != "total" || r.Total.NSID != 0 {
		return fmt.Errorf("%w: total row names controller %q nsid %d, want \"total\" and 0", ErrSchema, r.Total.Controller, r.Total.NSID)
	}
	var sum Result
	for i := range r.Results {
		x := &r.Results[i]
		if err := x.Check(); err != nil {
			return fmt.Errorf("results[%d] (%s nsid %d): %w", i, x.Controller, x.NSID, err)
		}
		sum.IOs += x.IOs
		sum.Reads += x.Reads
		sum.Writes += x.Writes
		sum.Errors += x.Errors
	}
	if err := r.Total.Check(); err != nil {
		return fmt.Errorf("total: %w", err)
	}
	t := &r.Total
	if t.IOs != sum.IOs || t.Reads != sum.Reads || t.Writes != sum.Writes || t.Errors != sum.Errors {
		return fmt.Errorf("%w: total has %d ios (%d reads, %d writes, %d errors), the rows add up to %d (%d, %d, %d)",
			ErrSchema, t.IOs, t.Reads, t.Writes, t.Errors, sum.IOs, sum.Reads, sum.Writes, sum.Errors)
	}
	v := &r.Verify
	switch {
	case !v.Enabled && *v != (Verify{}):
		return fmt.Errorf("%w: verify not enabled but has %+v", ErrSchema, *v)
	case v.Mismatches > v.Checked:
		return fmt.Errorf("%w: verify: %d mismatches in %d reads checked", ErrSchema, v.Mismatches, v.Checked)
	case (v.Mismatches > 0) != (v.FirstMismatch != ""):
		return fmt.Errorf("%w: verify: %d mismatches, first_mismatch %q", ErrSchema, v.Mismatches, v.FirstMismatch)
	}
	return nil
}

// Check reports what is wrong with one row: reads and writes that do not
// add up to ios, more errors than ios, and, when the row measured I/O
// (ios > 0), a seconds, iops, mibps or any latency that is zero or
// negative, a rate that disagrees with the counts by more than 1%, or
// latencies out of order (min <= p50 <= p90 <= p99 <= p99_9 <= p99_99 <=
// max, min <= avg <= max). A row without I/O must have zero rates and
// latencies.
func (x *Result) Check() error {
	if x.Reads+x.Writes != x.IOs || x.Errors > x.IOs {
		return fmt.Errorf("%w: ios %d, reads %d, writes %d, errors %d", ErrSchema, x.IOs, x.Reads, x.Writes, x.Errors)
	}
	for _, l := range []struct {
		key string
		n   uint64
		l   *Latency
	}{{"read_latency_us", x.Reads, &x.ReadLatency}, {"write_latency_us", x.Writes, &x.WriteLatency}} {
		if err := checkLatency(l.key, l.n, l.l); err != nil {
			return err
		}
	}
	var n uint64
	for i, b := range x.Histogram {
		if b.Count == 0 || !(b.HighUs > b.LowUs) || b.LowUs < 0 || (i > 0 && b.LowUs < x.Histogram[i-1].HighUs) {
			return fmt.Errorf("%w: histogram[%d] %+v", ErrSchema, i, b)
		}
		n += b.Count
	}
	if n != x.IOs {
		return fmt.Errorf("%w: histogram holds %d I/Os, ios %d", ErrSchema, n, x.IOs)
	}
	return x.checkTotals()
}

// checkLatency checks a latency summary of n I/Os: zero without I/O,
// else positive and in order.
func checkLatency(key string, n uint64, l *Latency) error {
	lat := []struct {
		key string
		v   float64
	}{{"min", l.Min}, {"p50", l.P50}, {"p90", l.P90}, {"p99", l.P99}, {"p99_9", l.P999}, {"p99_99", l.P9999}, {"max", l.Max}, {"avg", l.Avg}}
	if n == 0 {
		if *l != (Latency{}) {
			return fmt.Errorf("%w: %s %+v without I/O", ErrSchema, key, *l)
		}
		return nil
	}
	for _, f := range lat {
		if !(f.v > 0) || math.IsInf(f.v, 0) {
			return fmt.Errorf("%w: %s.%s is %v with %d I/Os", ErrSchema, key, f.key, f.v, n)
		}
	}
	for i := 1; i < 7; i++ {
		if lat[i-1].v > lat[i].v {
			return fmt.Errorf("%w: %s.%s %v above %s %v", ErrSchema, key, lat[i-1].key, lat[i-1].v, lat[i].key, lat[i].v)
		}
	}
	if l.Avg < l.Min || l.Avg > l.Max {
		return fmt.Errorf("%w: %s.avg %v outside [min %v, max %v]", ErrSchema, key, l.Avg, l.Min, l.Max)
	}
	return nil
}

// checkTotals is Check's part for the blended latency and the rates.
func (x *Result) checkTotals() error {
	l := &x.Latency
	lat := []struct {
		key string
		v   float64
	}{{"min", l.Min}, {"p50", l.P50}, {"p90", l.P90}, {"p99", l.P99}, {"p99_9", l.P999}, {"p99_99", l.P9999}, {"max", l.Max}, {"avg", l.Avg}}
	if x.IOs == 0 {
		if x.IOPS != 0 || x.MiBps != 0 || *l != (Latency{}) {
			return fmt.Errorf("%w: no I/O measured, yet iops %v, mibps %v, latency %+v", ErrSchema, x.IOPS, x.MiBps, *l)
		}
		return nil
	}
	for _, f := range []struct {
		key string
		v   float64
	}{{"seconds", x.Seconds}, {"iops", x.IOPS}, {"mibps", x.MiBps}} {
		if !(f.v > 0) || math.IsInf(f.v, 0) {
			return fmt.Errorf("%w: %s is %v with %d I/Os measured", ErrSchema, f.key, f.v, x.IOs)
		}
	}
	for _, f := range lat {
		if !(f.v > 0) || math.IsInf(f.v, 0) {
			return fmt.Errorf("%w: latency_us.%s is %v with %d I/Os measured", ErrSchema, f.key, f.v, x.IOs)
		}
	}
	if want := float64(x.IOs) / x.Seconds; !near(x.IOPS, want) {
		return fmt.Errorf("%w: iops %v, but %d I/Os in %v s make %v", ErrSchema, x.IOPS, x.IOs, x.Seconds, want)
	}
	if want := x.IOPS * float64(x.IOSize) / (1 << 20); !near(x.MiBps, want) {
		return fmt.Errorf("%w: mibps %v, but %v IOPS of %d bytes make %v", ErrSchema, x.MiBps, x.IOPS, x.IOSize, want)
	}
	for i := 1; i < 7; i++ {
		if lat[i-1].v > lat[i].v {
			return fmt.Errorf("%w: latency_us.%s %v above %s %v", ErrSchema, lat[i-1].key, lat[i-1].v, lat[i].key, lat[i].v)
		}
	}
	if l.Avg < l.Min || l.Avg > l.Max {
		return fmt.Errorf("%w: latency_us.avg %v outside [min %v, max %v]", ErrSchema, l.Avg, l.Min, l.Max)
	}
	return nil
}

// near reports whether got is within 1% of want (plus the 0.001 that
// rounding to three decimals may cost).
func near(got, want float64) bool {
	return math.Abs(got-want) <= 0.01*want+0.001
}
