package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Engines: who drove the I/O of a run. They name the table's rows.
const (
	// EngineIRQ is fio with io_uring (hipri=0) through the guest kernel's
	// nvme driver on its interrupt-driven queues.
	EngineIRQ = "io_uring-irq"
	// EnginePoll is fio with io_uring and hipri=1: the kernel driver's
	// polled queue (nvme poll_queues=1).
	EnginePoll = "io_uring-poll"
	// EngineGonvme is `nvmectl perf` through VFIO with one poller.
	EngineGonvme = "gonvme"
	// EngineQemuImg is qemu-img bench on QEMU's own VFIO NVMe driver
	// (nvme://). It issues sequential offsets, not random ones.
	EngineQemuImg = "qemu-img"
	// EngineGonvmeMMIO is `nvmectl perf --no-shadow-doorbells`: gonvme
	// writing every doorbell to its register.
	EngineGonvmeMMIO = "gonvme-mmio"
	// EngineBare is guestbare: a bare VFIO submit/reap loop on one queue
	// pair, the upper bound of the table.
	EngineBare = "bare"
	// EngineBareMMIO is guestbare -shadow=false: the same loop writing
	// every doorbell to its register, beside gonvme-mmio.
	EngineBareMMIO = "bare-mmio"
)

// Workloads the bench runs.
const (
	RandRead  = "randread"
	RandWrite = "randwrite"
)

// Latency is one run's latency distribution in microseconds, from
// submission to completion. Zero means "not reported".
type Latency struct {
	Avg  float64 `json:"avg"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
}

// Sample is one measured run: the guest prints it as a Line, the host reads
// it back with ParseLine.
type Sample struct {
	Engine   string   `json:"engine"`
	Workload string   `json:"workload"`
	Depth    int      `json:"depth"`
	Rep      int      `json:"rep"` // 0-based repetition
	IOPS     float64  `json:"iops"`
	MiBps    float64  `json:"mibps,omitempty"`
	IOs      uint64   `json:"ios,omitempty"`
	Seconds  float64  `json:"seconds,omitempty"` // measured time, when the tool reports it
	Lat      *Latency `json:"lat_us,omitempty"`  // nil: the tool reports no latency
	Err      string   `json:"err,omitempty"`     // the run failed; the numbers mean nothing
}

// Prefixes of the lines the guest prints for the host.
const (
	// SamplePrefix precedes a Sample as one line of JSON.
	SamplePrefix = "GONVME-BENCH "
	// PerfPrefix precedes the JSON one `nvmectl perf -o json` run printed,
	// compacted to one line, so that the host decodes perf's own output
	// (ParsePerf) as well as the Sample the guest made of it.
	PerfPrefix = "GONVME-BENCH-PERF "
	// InfoPrefix precedes "key=value": facts about the guest (versions,
	// io_poll) the host prints above the table.
	InfoPrefix = "GONVME-BENCH-INFO "
	// ProfilePrefix precedes one base64 chunk of a CPU profile; the
	// chunks, in order, make the file.
	ProfilePrefix = "GONVME-BENCH-PPROF "
	// ReportPrefix precedes one line of `perf report --stdio`, the CPU
	// profile taken with Linux perf when nvmectl perf has no --cpuprofile.
	ReportPrefix = "GONVME-BENCH-REPORT "
)

// Line renders s as the line the guest prints (without the newline).
func (s Sample) Line() string {
	b, err := json.Marshal(s)
	if err != nil {
		// A Sample holds only numbers and strings; this cannot fail.
		return SamplePrefix + `{"err":"` + strings.ReplaceAll(err.Error(), `"`, `'`) + `"}`
	}
	return SamplePrefix + string(b)
}

// ErrNotSample says a console line is not a sample line.
var ErrNotSample = errors.New("not a bench sample line")

// ParseLine reads a sample line back. Lines without SamplePrefix give
// ErrNotSample; a sample line that does not decode is an error.
func ParseLine(line string) (Sample, error) {
	line = strings.TrimRight(line, "\r\n")
	i := strings.Index(line, SamplePrefix)
	if i < 0 {
		return Sample{}, ErrNotSample
	}
	var s Sample
	dec := json.NewDecoder(strings.NewReader(line[i+len(SamplePrefix):]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Sample{}, fmt.Errorf("bench sample %q: %w", line, err)
	}
	if s.Engine == "" || s.Workload == "" || s.Depth <= 0 {
		return Sample{}, fmt.Errorf("bench sample %q: engine, workload or depth missing", line)
	}
	return s, nil
}

// ParseInfo reads an info line: "key=value" after InfoPrefix.
func ParseInfo(line string) (key, value string, ok bool) {
	i := strings.Index(line, InfoPrefix)
	if i < 0 {
		return "", "", false
	}
	key, value, ok = strings.Cut(strings.TrimRight(line[i+len(InfoPrefix):], "\r\n"), "=")
	return strings.TrimSpace(key), strings.TrimSpace(value), ok && strings.TrimSpace(key) != ""
}
