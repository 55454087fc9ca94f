package bench

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Runs of a CPU record.
const (
	// RunServeIdle is an idle `nvmectl serve`: no I/O at all.
	RunServeIdle = "serve-idle"
	// RunPerfRate is `nvmectl perf -q 1 --rate N`: QD1 at a fixed load.
	RunPerfRate = "perf-qd1-rate"
)

// CPUPrefix precedes a CPU record as one line of JSON.
const CPUPrefix = "GONVME-BENCH-CPU "

// CPU is the CPU time a gonvme process used in one poller mode: utime +
// stime from /proc/PID/stat over Seconds of wall time, in percent of one
// CPU. The guest prints it as a Line, the host reads it with ParseCPU.
type CPU struct {
	Run     string  `json:"run"`            // RunServeIdle or RunPerfRate
	Mode    string  `json:"mode"`           // poll, interrupt, hybrid
	Idle    string  `json:"idle,omitempty"` // serve --idle (poll mode): adaptive or busy
	Rate    float64 `json:"rate,omitempty"` // perf --rate
	Seconds float64 `json:"seconds"`
	CPUPct  float64 `json:"cpu_pct"`
	IOPS    float64 `json:"iops,omitempty"`   // perf: what it measured
	P50     float64 `json:"p50_us,omitempty"` // perf: latency
	P99     float64 `json:"p99_us,omitempty"`
	Err     string  `json:"err,omitempty"` // the measurement failed
}

// Line renders c as the line the guest prints.
func (c CPU) Line() string {
	b, err := json.Marshal(c)
	if err != nil {
		return CPUPrefix + `{"err":"unencodable"}`
	}
	return CPUPrefix + string(b)
}

// ParseCPU reads a CPU line back; ok is false for other lines.
func ParseCPU(line string) (c CPU, ok bool, err error) {
	i := strings.Index(line, CPUPrefix)
	if i < 0 {
		return CPU{}, false, nil
	}
	dec := json.NewDecoder(strings.NewReader(strings.TrimRight(line[i+len(CPUPrefix):], "\r\n")))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return CPU{}, true, fmt.Errorf("bench cpu record %q: %w", line, err)
	}
	if c.Run == "" || c.Mode == "" {
		return CPU{}, true, fmt.Errorf("bench cpu record %q: run or mode missing", line)
	}
	return c, true, nil
}
