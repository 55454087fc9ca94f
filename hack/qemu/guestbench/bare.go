package main

import (
	"flag"
	"strconv"
	"strings"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/guest"
)

// The doorbell rows (issue 16): right after each gonvme run (shadow
// doorbells, when the controller offers them), the same workload through
// nvmectl perf --no-shadow-doorbells (engine gonvme-mmio), and through
// guestbare, a bare VFIO submit/reap loop on one queue pair (engine bare):
// the upper bound the table divides by; then guestbare -shadow=false
// (engine bare-mmio), the same loop with MMIO doorbells.

func doorbellFlags(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.bare, "bare", guest.BinDir+"/guestbare", "guestbare binary; \"\" for no MMIO-doorbell and bare rows")
}

// doorbellRows runs the two extra rows of one workload and depth.
func (r *runner) doorbellRows(rep int, wl string, qd int) {
	if r.o.bare == "" {
		return
	}
	r.perfAs(bench.EngineGonvmeMMIO, rep, wl, qd, "--no-shadow-doorbells")
	r.bareRun(bench.EngineBare, rep, wl, qd)
	r.bareRun(bench.EngineBareMMIO, rep, wl, qd, "-shadow=false")
}

func (r *runner) bareRun(engine string, rep int, wl string, qd int, extra ...string) {
	t0 := time.Now()
	args := append([]string{"-q", itoa(qd), "-t", itoa(r.o.seconds), "-warmup", itoa(r.o.warmup), "-w", wl}, extra...)
	out, err := output(r.o.bare, r.limit(), append(args, r.addr)...)
	took := time.Since(t0)
	s, perr := bench.ParseLine(lastLine(out))
	switch {
	case perr != nil && err != nil:
		s = bench.Sample{Err: err.Error()}
	case perr != nil:
		s = bench.Sample{Err: perr.Error()}
	case s.Err == "" && err != nil:
		s.Err = err.Error()
	}
	s.Engine, s.Workload, s.Depth, s.Rep = engine, wl, qd, rep
	r.emit(s, took)
}

func itoa(n int) string { return strconv.Itoa(n) }

// lastLine is the last non-empty line of out (guestbare prints its Sample
// last).
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}
