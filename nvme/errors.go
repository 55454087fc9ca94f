package nvme

import (
	"errors"
	"fmt"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Sentinel errors. Callers branch on them with errors.Is; the errors the
// package returns wrap them with context.
var (
	// ErrTimeout: a command did not complete within its deadline. The
	// driver aborted it and, if the abort did not help, reset the controller.
	ErrTimeout = errors.New("nvme: command timed out")
	// ErrRemoved: the controller is gone (its registers read all ones).
	ErrRemoved = errors.New("nvme: controller removed")
	// ErrClosed: the controller or queue pair was closed.
	ErrClosed = errors.New("nvme: closed")
	// ErrFailed: the controller failed and could not be reset.
	ErrFailed = errors.New("nvme: controller failed")
	// ErrInvalid: a request was refused before it reached the device
	// (bad length, alignment, range, or namespace).
	ErrInvalid = errors.New("nvme: invalid request")
	// ErrNoNamespace: the namespace is not active on the controller.
	ErrNoNamespace = errors.New("nvme: namespace not active")
	// ErrNotDMA: a data buffer is not DMA memory from the controller's
	// allocator. It is dma.ErrNotDMA, repeated here for convenience.
	ErrNotDMA = dma.ErrNotDMA
	// ErrBusy: the request is already in flight; a Request can be
	// submitted again only after its Done callback ran.
	ErrBusy = errors.New("nvme: request already in flight")
	// ErrMedia: the device reported a media or data integrity error
	// (status code type 2). Matched by StatusError.Is.
	ErrMedia = errors.New("nvme: media or data integrity error")
	// ErrAborted: the command was aborted (Abort Requested, SQ deletion).
	// Matched by StatusError.Is.
	ErrAborted = errors.New("nvme: command aborted")
	// ErrLBARange: the device reported LBA Out of Range. Matched by
	// StatusError.Is.
	ErrLBARange = errors.New("nvme: lba out of range")
	// ErrDevice: the device sent something that violates the protocol
	// (identify data out of bounds, an impossible register value).
	ErrDevice = errors.New("nvme: device misbehaved")
)

// StatusError is a command that completed with a status other than
// success. It carries the whole status field and which command it was for.
type StatusError struct {
	SCT    uint8       // status code type
	SC     uint8       // status code
	DNR    bool        // do not retry
	More   bool        // more information in the Error Information log page
	CRD    uint8       // command retry delay index
	Opcode spec.Opcode // opcode of the failed command
	Admin  bool        // the command was an admin command
	CID    uint16      // command identifier it carried
}

// newStatusError fills e from a completion status.
func (e *StatusError) set(st spec.Status, op spec.Opcode, admin bool, cid uint16) {
	*e = StatusError{SCT: st.SCT(), SC: st.SC(), DNR: st.DNR(), More: st.More(), CRD: st.CRD(), Opcode: op, Admin: admin, CID: cid}
}

// Status returns the status field the error was made from.
func (e *StatusError) Status() spec.Status {
	s := spec.Status(uint16(e.SC)<<0 | uint16(e.SCT&7)<<8 | uint16(e.CRD&3)<<11)
	if e.More {
		s |= 1 << 13
	}
	if e.DNR {
		s |= 1 << 14
	}
	return s
}

// Name returns the status name from the spec tables.
func (e *StatusError) Name() string { return spec.StatusName(e.SCT, e.SC) }

func (e *StatusError) Error() string {
	op := spec.IOOpcodeName(e.Opcode)
	if e.Admin {
		op = spec.AdminOpcodeName(e.Opcode)
	}
	s := fmt.Sprintf("nvme: %s (cid %d): %s (sct %#x sc %#02x)", op, e.CID, e.Name(), e.SCT, e.SC)
	if e.DNR {
		s += " dnr"
	}
	if e.More {
		s += " more"
	}
	return s
}

// Is maps device statuses onto the package sentinels: media errors onto
// ErrMedia, aborts onto ErrAborted, LBA Out of Range onto ErrLBARange,
// Invalid Namespace onto ErrNoNamespace.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrMedia:
		return e.SCT == spec.SCTMediaError
	case ErrAborted:
		return e.SCT == spec.SCTGeneric && (e.SC == spec.SCAbortRequested || e.SC == spec.SCAbortedSQDeletion)
	case ErrLBARange:
		return e.SCT == spec.SCTGeneric && e.SC == spec.SCLBAOutOfRange
	case ErrNoNamespace:
		return e.SCT == spec.SCTGeneric && e.SC == spec.SCInvalidNamespace
	}
	return false
}

// invalidf returns an ErrInvalid with a message naming the problem.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
