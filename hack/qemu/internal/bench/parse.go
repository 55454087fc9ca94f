package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"

	"github.com/seedb8fa28ef/gonvme/internal/perfjson"
)

// FioJob is one job of fio's JSON output, reduced to what the table uses.
type FioJob struct {
	Version string // of the fio that ran it ("fio-3.33")
	Name    string
	Error   int // fio's per-job error code (an errno), 0 when the job ran
	Read    FioDir
	Write   FioDir
}

// FioDir is one direction (read or write) of a fio job.
type FioDir struct {
	IOPS     float64
	BWBytes  float64 // bytes per second
	TotalIOs uint64
	RuntimeS float64
	Lat      Latency
}

// Dir returns the direction a workload measures: Write for randwrite and
// write, Read otherwise.
func (j FioJob) Dir(workload string) FioDir {
	if workload == RandWrite || workload == "write" {
		return j.Write
	}
	return j.Read
}

// fioOutput mirrors the part of fio 3.33's --output-format=json we read.
type fioOutput struct {
	Version string `json:"fio version"`
	Jobs    []struct {
		Name  string  `json:"jobname"`
		Error int     `json:"error"`
		Read  fioDirJ `json:"read"`
		Write fioDirJ `json:"write"`
	} `json:"jobs"`
}

type fioDirJ struct {
	IOPS     float64  `json:"iops"`
	BWBytes  float64  `json:"bw_bytes"`
	TotalIOs uint64   `json:"total_ios"`
	Runtime  float64  `json:"runtime"` // ms
	Lat      fioStatJ `json:"lat_ns"`  // submission to completion
	Clat     fioStatJ `json:"clat_ns"` // completion only; has percentiles without lat_percentiles=1
}

type fioStatJ struct {
	Min        float64            `json:"min"`
	Max        float64            `json:"max"`
	Mean       float64            `json:"mean"`
	N          uint64             `json:"N"`
	Percentile map[string]float64 `json:"percentile"`
}

// ParseFio reads fio's JSON output. fio may print warnings before the
// JSON; they are skipped. Latencies are lat_ns (submission to completion),
// with the percentiles of lat_ns when fio ran with lat_percentiles=1, else
// those of clat_ns.
func ParseFio(out []byte) ([]FioJob, error) {
	i := bytes.Index(out, []byte("{\n"))
	if i < 0 {
		i = bytes.IndexByte(out, '{')
	}
	if i < 0 {
		return nil, fmt.Errorf("fio output: no JSON object in %q", clip(out))
	}
	var o fioOutput
	if err := json.NewDecoder(bytes.NewReader(out[i:])).Decode(&o); err != nil {
		return nil, fmt.Errorf("fio output: %w", err)
	}
	if len(o.Jobs) == 0 {
		return nil, fmt.Errorf("fio output (%s): no jobs", o.Version)
	}
	jobs := make([]FioJob, len(o.Jobs))
	for k, j := range o.Jobs {
		jobs[k] = FioJob{Version: o.Version, Name: j.Name, Error: j.Error, Read: j.Read.dir(), Write: j.Write.dir()}
	}
	return jobs, nil
}

func (d fioDirJ) dir() FioDir {
	pct := d.Lat.Percentile
	if len(pct) == 0 {
		pct = d.Clat.Percentile
	}
	out := FioDir{
		IOPS: d.IOPS, BWBytes: d.BWBytes, TotalIOs: d.TotalIOs, RuntimeS: d.Runtime / 1000,
		Lat: Latency{Avg: d.Lat.Mean / 1000, Min: d.Lat.Min / 1000, Max: d.Lat.Max / 1000},
	}
	for k, v := range pct {
		p, err := strconv.ParseFloat(k, 64)
		if err != nil {
			continue
		}
		switch {
		case near(p, 50):
			out.Lat.P50 = v / 1000
		case near(p, 90):
			out.Lat.P90 = v / 1000
		case near(p, 99):
			out.Lat.P99 = v / 1000
		case near(p, 99.9):
			out.Lat.P999 = v / 1000
		}
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

// Perf is the total of one `nvmectl perf -o json` run.
type Perf struct {
	Workload   string
	QueueDepth int
	IOs        uint64
	Errors     uint64 // I/Os that completed with an error
	Seconds    float64
	IOPS       float64
	MiBps      float64
	Lat        Latency
}

// ParsePerf reads the JSON `nvmectl perf -o json` prints and returns its
// total. Text before the JSON object is skipped. The JSON is decoded by
// perfjson.Decode, strictly: a missing or unknown key, another schema
// version, or a total that measured I/O with a zero rate or latency is an
// error naming it. perf prints the JSON even when it exits 2 for failed
// I/O; Errors says how many failed.
func ParsePerf(out []byte) (Perf, error) {
	i := bytes.IndexByte(out, '{')
	if i < 0 {
		return Perf{}, fmt.Errorf("nvmectl perf output: no JSON object in %q", clip(out))
	}
	r, err := perfjson.Decode(out[i:])
	if err != nil {
		return Perf{}, fmt.Errorf("nvmectl perf output: %w", err)
	}
	t, l := r.Total, r.Total.Latency
	return Perf{Workload: r.Workload, QueueDepth: r.QueueDepth, IOs: t.IOs, Errors: t.Errors, Seconds: t.Seconds, IOPS: t.IOPS, MiBps: t.MiBps,
		Lat: Latency{Avg: l.Avg, Min: l.Min, Max: l.Max, P50: l.P50, P90: l.P90, P99: l.P99, P999: l.P999}}, nil
}

// QemuImg is one qemu-img bench run.
type QemuImg struct {
	Count   int // requests
	Write   bool
	Size    int // bytes per request
	Depth   int
	Seconds float64
}

// IOPS is requests per second of the run.
func (q QemuImg) IOPS() float64 {
	if q.Seconds <= 0 {
		return 0
	}
	return float64(q.Count) / q.Seconds
}

var (
	qemuImgSending = regexp.MustCompile(`Sending (\d+) (read|write) requests, (\d+) bytes each, (\d+) in parallel`)
	qemuImgDone    = regexp.MustCompile(`Run completed in ([0-9.]+) seconds`)
)

// ParseQemuImg reads qemu-img bench's output:
//
//	Sending 2000 read requests, 4096 bytes each, 32 in parallel (starting at offset 0, step size 4096)
//	Run completed in 0.032 seconds.
func ParseQemuImg(out []byte) (QemuImg, error) {
	m := qemuImgSending.FindSubmatch(out)
	d := qemuImgDone.FindSubmatch(out)
	if m == nil || d == nil {
		return QemuImg{}, fmt.Errorf("qemu-img bench output: no %q and %q lines in %q", "Sending", "Run completed", clip(out))
	}
	var q QemuImg
	q.Count, _ = strconv.Atoi(string(m[1]))
	q.Write = string(m[2]) == "write"
	q.Size, _ = strconv.Atoi(string(m[3]))
	q.Depth, _ = strconv.Atoi(string(m[4]))
	s, err := strconv.ParseFloat(string(d[1]), 64)
	if err != nil {
		return QemuImg{}, fmt.Errorf("qemu-img bench output: seconds %q: %w", d[1], err)
	}
	q.Seconds = s
	if q.Seconds <= 0 {
		return QemuImg{}, fmt.Errorf("qemu-img bench output: %d requests in %v seconds", q.Count, q.Seconds)
	}
	return q, nil
}

// clip shortens tool output quoted in an error.
func clip(b []byte) []byte {
	const limit = 300
	if len(b) > limit {
		return append(append([]byte{}, b[:limit]...), "..."...)
	}
	return b
}
