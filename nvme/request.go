package nvme

import (
	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// IOFlags modify an I/O command.
type IOFlags uint32

const (
	// FUA: Force Unit Access, the data is on non-volatile media before
	// the command completes (reads: read from media).
	FUA IOFlags = IOFlags(spec.IOFUA)
	// LimitedRetry: the controller applies limited retry effort.
	LimitedRetry IOFlags = IOFlags(spec.IOLimitedRetry)
)

// reqState tracks a Request through a queue pair.
type reqState uint8

const (
	reqIdle     reqState = iota // not submitted, or completed
	reqWaiting                  // on the queue pair's wait list
	reqInFlight                 // in the submission queue, owns a command ID
)

// Request is one command with its data and its completion, the unit of the
// asynchronous API. The caller owns the memory: it is reused across
// submissions, so the I/O path allocates nothing.
//
// Fill it with one of the Namespace builders (Read, Write, ...) or set Cmd
// and Data directly for a raw command, set Done, and Submit it to a
// QueuePair. Once Submit accepted it, the queue pair owns it until Done is
// called, exactly once, on the queue pair's owner goroutine; the caller
// must not touch it in between. After Done the fields below "results" are
// valid and the Request may be reused.
type Request struct {
	// Cmd is the submission queue entry to send. The queue pair sets the
	// command identifier and the data pointer; everything else is the
	// builder's or the caller's.
	Cmd spec.Command
	// Data is the data buffer, DMA memory from the controller's
	// allocator (any memory on a fabric), or nil for commands without
	// data.
	Data []byte
	// Done is called on the owner goroutine when the command completes,
	// fails, or is given up. It must not block; it may submit again,
	// to this queue pair (the owner's goroutine) or any other.
	Done func(*Request)
	// Private is for the caller: the driver never touches it.
	Private any

	// Results, valid in Done.

	// Err is nil on success; otherwise a *StatusError from the device,
	// or an error wrapping ErrTimeout, ErrRemoved, ErrClosed or ErrFailed.
	Err error
	// DW0 is completion dword 0 (command specific).
	DW0 uint32
	// Status is the raw status field of the completion (zero when the
	// command never completed on the device).
	Status spec.Status

	// Internal state.
	state   reqState
	admin   bool // submitted to an admin queue
	dsm     spec.DSMRange
	dsmUsed bool        // Data is the single range above, placed in the tracker's scratch
	iova    dma.IOVA    // device address of Data, looked up by Submit
	looked  lookup      // which Data iova was looked up for (Submit)
	next    *Request    // wait list link
	serr    StatusError // storage for Err, so a failed command allocates nothing
	// dw1 is completion dword 1, kept on a fabric only (Property Get).
	dw1 uint32
	// deadline carries a command's deadline across its resubmission
	// after a reset, so that a reset does not restart its clock.
	deadline int64
	owner    any   // see SetOwner (owner.go)
	relay    Relay // see Relay (owner.go)
}

// lookup says which buffer a Request's iova belongs to: Data's address
// and length, the allocator, and the allocator's Generation read before
// the Lookup. Submit skips the Lookup when all four match (perf, fio-style
// loops and the pollers' resubmissions reuse one buffer per request).
type lookup struct {
	mem  *dma.Allocator
	addr uintptr
	n    int
	gen  uint64
}

// Reset clears the request for reuse with a new command. It keeps Done,
// Private and the owner (see SetOwner); it clears the Relay.
func (r *Request) Reset() {
	done, priv, owner := r.Done, r.Private, r.owner
	*r = Request{Done: done, Private: priv, owner: owner}
}

// InFlight reports whether the request is owned by a queue pair. Only the
// queue pair's owner goroutine may call it while the request is submitted.
func (r *Request) InFlight() bool { return r.state != reqIdle }
