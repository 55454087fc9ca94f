package main

import (
	"fmt"
	"io"

	"github.com/seedb8fa28ef/gonvme/poller"
)

// writeDoorbells prints, on perf's live stream (standard error), what the
// run's doorbells cost: the commands submitted, the doorbell updates, and
// how many of them were register (MMIO) writes and how many shadow
// doorbells saved, over every queue pair of the run (warm-up and a
// --verify fill included), as the pollers last published them.
func writeDoorbells(w io.Writer, g *poller.Group) {
	var cmds, updates, mmio, saved uint64
	for _, p := range g.Stats() {
		for _, q := range p.Queues {
			cmds += q.Submitted
			updates += q.SQDoorbells + q.CQDoorbells
			mmio += q.MMIODoorbells
			saved += q.SavedDoorbells
		}
	}
	fmt.Fprintf(w, "perf: doorbells: %d commands, %d doorbell updates, %d register (MMIO) writes, %d saved by shadow doorbells\n", cmds, updates, mmio, saved)
}
