//go:build gonvme_notrace

package nvme

import "github.com/seedb8fa28ef/gonvme/nvme/spec"

// Built with -tags gonvme_notrace the trace hooks are empty functions the
// compiler inlines away, so the queue pair's hot path carries no call at
// all: the baseline BenchmarkSubmitReap is compared against (see trace.go).
// Binaries built this way cannot be traced with nvmectl trace.

// TraceSubmit does nothing in this build; see trace.go.
func TraceSubmit(ctrl uintptr, qid, cid uint16, opcode uint8, nsid uint32, slba uint64, nbytes uint32) {
}

// TraceComplete does nothing in this build; see trace.go.
func TraceComplete(ctrl uintptr, qid, cid, status uint16) {}

func (q *QueuePair) traceSubmit(cmd *spec.Command, nbytes int) {}

func (q *QueuePair) traceComplete(cid uint16, st spec.Status) {}
