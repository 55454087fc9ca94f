package ddi

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme"
)

// Sentinel errors. A failed Buf carries a *BufError whose Err is one of
// these (or the device's *nvme.StatusError, or the queue pair's error) and
// whose Errno is what a Solaris driver would have set in b_error; callers
// branch with errors.Is on either.
var (
	// ErrPastEnd: the block range lies outside the namespace (ENXIO), by
	// the end-of-device rules of biodone(9F).
	ErrPastEnd = errors.New("ddi: block range past the end of the device")
	// ErrNoDevice: Edev names no registered device (ENXIO).
	ErrNoDevice = errors.New("ddi: no such device")
	// ErrInvalid: the request is malformed (EINVAL): Bcount not a block
	// multiple, Addr shorter than Bcount, Blkno and Lblkno disagreeing,
	// an unknown Cmd.
	ErrInvalid = errors.New("ddi: invalid request")
	// ErrCloneRange: Bioclone was asked for off+len beyond the original's
	// Bcount (or Addr) (EINVAL). The clone it returned carries this error.
	ErrCloneRange = errors.New("ddi: bioclone range outside the original request")
	// ErrClonesOutstanding: Biodone was called on an original while some
	// of its clones had not completed (EINVAL). The original completes
	// when the last clone does, with this error unless a clone failed
	// first.
	ErrClonesOutstanding = errors.New("ddi: biodone on an original with clones outstanding")
	// ErrNotDMA: Addr is not DMA memory of the controller's allocator
	// (EFAULT). It is dma.ErrNotDMA.
	ErrNotDMA = dma.ErrNotDMA
	// ErrIO is what Geterror returns for a buffer with BError set and no
	// Error: EIO, as geterror(9F).
	ErrIO = fmt.Errorf("ddi: i/o error: %w", syscall.EIO)
	// ErrNoHeaders: StrategyNoSleep found fewer free headers in the pool
	// than the transfer's pieces need (ENOMEM); nothing was sent.
	ErrNoHeaders = errors.New("ddi: no free buffer headers for the pieces of the transfer")
	// ErrNotInitialized: Biowait on a header that was never Bioinit'ed,
	// taken from a pool, or passed to Strategy.
	ErrNotInitialized = errors.New("ddi: buffer header not initialized (use Bioinit or Getrbuf)")
)

// errnoFor maps an I/O error to the errno a Solaris driver would report.
func errnoFor(err error) syscall.Errno {
	switch {
	case errors.Is(err, ErrPastEnd), errors.Is(err, ErrNoDevice):
		return syscall.ENXIO
	case errors.Is(err, dma.ErrNotDMA):
		return syscall.EFAULT
	case errors.Is(err, ErrInvalid), errors.Is(err, nvme.ErrInvalid), errors.Is(err, ErrCloneRange),
		errors.Is(err, ErrClonesOutstanding):
		return syscall.EINVAL
	case errors.Is(err, nvme.ErrRemoved):
		return syscall.ENXIO
	case errors.Is(err, ErrNoHeaders):
		return syscall.ENOMEM
	case busy(err):
		return syscall.EAGAIN
	}
	return syscall.EIO
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
