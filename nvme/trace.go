//go:build !gonvme_notrace

package nvme

import (
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Trace hooks: stable attach points for uprobes (nvmectl trace).
//
// The queue pair calls TraceSubmit when it writes a command to a submission
// queue (QueuePair.issue) and TraceComplete when it accepts a completion
// for an outstanding command (QueuePair.complete, after the CID check, so a
// bogus CID is never reported). Their bodies are empty: when no probe is
// attached a call costs one CALL and one RET (BenchmarkTraceHooks,
// BenchmarkSubmitReap against a -tags gonvme_notrace build, where
// trace_notrace.go makes them no-ops that inline away). A uprobe placed on
// the first instruction of either function reads the arguments from the
// registers the caller loaded them into.
//
// Go's register ABI (ABIInternal) on amd64 passes integer arguments, in
// order, in RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11. `go tool objdump -s
// 'nvme\.\(\*QueuePair\)\.issue'` on a built binary shows the loads before
// `CALL nvme.TraceSubmit` (verified with Go 1.26 on amd64):
//
//	TraceSubmit(ctrl uintptr, qid, cid uint16, opcode uint8, nsid uint32, slba uint64, nbytes uint32)
//	            RAX           BX   CX          DIL           SI           R8           R9
//	TraceComplete(ctrl uintptr, qid, cid, status uint16)
//	              RAX           BX   CX   DI
//
// Only the low bits named by each type are defined; a probe masks the
// register (the upper bits may hold anything). The function entry is the
// attach point, never the return: a uretprobe rewrites the return address
// on the goroutine's stack, which Go may move, and the program crashes.
// The symbols are "github.com/seedb8fa28ef/gonvme/nvme.TraceSubmit" and
// "...nvme.TraceComplete" in the binary's symbol table (a binary linked
// with -s has none and cannot be traced).
//
// These are part of gonvme's stable interface: the names, argument order
// and types do not change (a new argument would be appended, keeping the
// registers of the existing ones).

// TraceSubmit marks the submission of one command. ctrl identifies the
// controller within the process (an opaque value, stable while the
// controller is open; two controllers may have the same qid), qid is the
// queue (0 for the admin queue), cid the command identifier as written to
// the submission queue (it comes back in the completion), opcode the
// command's opcode, nsid its namespace, slba CDW11:CDW10 (the starting LBA
// of Read, Write and the other LBA commands; meaningless for the others),
// and nbytes the length of the data buffer.
//
// The body does nothing: it is an attach point. It runs on the queue
// pair's owner goroutine.
//
//go:noinline
func TraceSubmit(ctrl uintptr, qid, cid uint16, opcode uint8, nsid uint32, slba uint64, nbytes uint32) {
	// Deliberately empty. //go:noinline keeps the call: the Go compiler
	// does not remove calls to functions it does not inline, even empty
	// ones, and the linker keeps the function because it is called.
}

// TraceComplete marks the completion of the command cid on queue qid of
// controller ctrl (the same values TraceSubmit reported for it), with
// the completion's status field (spec.Status: SC in bits 7:0, SCT in
// 10:8, without the phase bit; 0 is success).
//
// The body does nothing: it is an attach point. It runs on the queue
// pair's owner goroutine.
//
//go:noinline
func TraceComplete(ctrl uintptr, qid, cid, status uint16) {
	// Deliberately empty; see TraceSubmit.
}

// traceSubmit reports cmd, just written under its CID, to TraceSubmit.
// Small enough to inline into issue; the call to the hook stays.
func (q *QueuePair) traceSubmit(cmd *spec.Command, nbytes int) {
	TraceSubmit(uintptr(unsafe.Pointer(q.ctrl)), q.id, cmd.CID, cmd.Opcode, cmd.NSID,
		uint64(cmd.CDW11)<<32|uint64(cmd.CDW10), uint32(nbytes))
}

// traceComplete reports an accepted completion to TraceComplete.
func (q *QueuePair) traceComplete(cid uint16, st spec.Status) {
	TraceComplete(uintptr(unsafe.Pointer(q.ctrl)), q.id, cid, uint16(st))
}
