package main

import (
	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
)

// The doorbell rows of the bench (issue 16): beside gonvme with shadow
// doorbells (the default gonvme row, when the controller offers Doorbell
// Buffer Config, as QEMU's does), gonvme with every doorbell written to
// its register (nvmectl perf --no-shadow-doorbells), and guestbare, a bare
// VFIO submit/reap loop on one queue pair with shadow doorbells: the upper
// bound; and the bare loop with MMIO doorbells (guestbare -shadow=false),
// the bound of the gonvme-mmio row: on QEMU 7.2 the shadow doorbells save
// next to no register write at QD32 and cost the controller four more DMAs
// per command, so the two bare rows show what the doorbell mode costs
// without gonvme. Every row also shows its IOPS divided by the bare loop's
// (÷ bare).
// The guest side is guestbench/bare.go.

// doorbellEngines are the rows guestbench adds after each gonvme run.
var doorbellEngines = []string{bench.EngineGonvmeMMIO, bench.EngineBare, bench.EngineBareMMIO}

// vsBare is the ÷ bare cell of a row: its median IOPS over the bare loop's
// at the same workload and depth; empty for the bare row itself and when
// the bare loop did not run.
func vsBare(cells map[cellKey]cell, wl string, qd int, engine string) string {
	bare, ok := cells[cellKey{wl, qd, bench.EngineBare}]
	if !ok || engine == bench.EngineBare {
		return ""
	}
	return fmtRatio(bench.Ratio(cells[cellKey{wl, qd, engine}].IOPS.Median, bare.IOPS.Median))
}
