package ddi

import (
	"fmt"
	"sync/atomic"
	"syscall"

	"github.com/seedb8fa28ef/gonvme/nvme"
)

// Flags is the buffer status, b_flags of buf(9S).
//
// The Solaris names map to Go names one to one: B_BUSY is BBusy, B_DONE
// BDone, B_ERROR BError, B_READ BRead. B_WRITE is BWrite, which is zero:
// as the page says it is a pseudo flag, "only detected as the NOT form of
// B_READ", so test writes with Flags&BRead == 0, never Flags&BWrite.
//
// The driver never clears Flags. BDone is set by Biodone only; BError
// together with Error by Bioerror (or by the package on a failed I/O).
type Flags uint32

const (
	// BBusy (B_BUSY): the header is in use. Getrbuf, Bioinit, Bioreset
	// and Bioclone hand out headers with it set; Freerbuf clears it.
	BBusy Flags = 1 << 0
	// BDone (B_DONE): the transfer has completed. Read-only for drivers;
	// Biodone sets it.
	BDone Flags = 1 << 1
	// BError (B_ERROR): the transfer failed; Error holds why. Set it with
	// Bioerror.
	BError Flags = 1 << 2
	// BRead (B_READ): data moves from the device into memory (Addr).
	BRead Flags = 1 << 3
	// BWrite (B_WRITE) is the absence of BRead: data moves from memory to
	// the device. It is zero and cannot be tested directly.
	BWrite Flags = 0
)

// String names the set flags ("BUSY|DONE|READ"); a write shows as WRITE.
func (f Flags) String() string {
	s := ""
	add := func(b Flags, n string) {
		if f&b != 0 {
			if s != "" {
				s += "|"
			}
			s += n
		}
	}
	add(BBusy, "BUSY")
	add(BDone, "DONE")
	add(BError, "ERROR")
	if f&BRead != 0 {
		add(BRead, "READ")
	} else {
		if s != "" {
			s += "|"
		}
		s += "WRITE"
	}
	if rest := f &^ (BBusy | BDone | BError | BRead); rest != 0 {
		s += fmt.Sprintf("|%#x", uint32(rest))
	}
	return s
}

// Cmd is the command a Buf carries, GEOM's bio_cmd for the commands an
// NVMe namespace has. The zero value, CmdData, is the buf(9S) transfer:
// a read when Flags has BRead, a write otherwise. CmdDelete (BIO_DELETE)
// deallocates the blocks [Blkno, Blkno+Bcount/blocksize) with Dataset
// Management and moves no data (Addr is not used). CmdFlush (BIO_FLUSH)
// commits the device's volatile write cache; Blkno, Bcount and Addr are not
// used.
type Cmd uint8

const (
	CmdData   Cmd = iota // read (BRead) or write
	CmdDelete            // deallocate (trim) the block range
	CmdFlush             // flush the volatile write cache
)

func (c Cmd) String() string {
	switch c {
	case CmdData:
		return "data"
	case CmdDelete:
		return "delete"
	case CmdFlush:
		return "flush"
	}
	return fmt.Sprintf("cmd(%d)", uint8(c))
}

// Buf is the buffer header of buf(9S): one block I/O request. The exported
// fields are the members a driver may use; everything else is the
// package's.
//
// Get a header with Getrbuf (from a bounded pool) or declare one and
// Bioinit it; set Flags (BRead or not), Edev, Bcount, Addr, Blkno (or
// Lblkno), Cmd if not a plain transfer, and Iodone if the completion
// should call a function rather than wake Biowait; then hand it to
// Strategy. A Buf must not be copied.
//
// Goroutines: the goroutine that owns a header sets it up and calls
// Strategy; from then until Biodone delivers it (Iodone runs, or Biowait
// returns), the package and the completion path own it and the caller must
// not touch it. Iodone runs on whichever goroutine completed the last piece
// of the transfer (see the package documentation).
type Buf struct {
	// Flags is the buffer status (b_flags).
	Flags Flags
	// AvForw and AvBack link the header into a driver's work lists
	// (av_forw, av_back). The package never touches them.
	AvForw, AvBack *Buf
	// Bcount is the number of bytes to transfer (b_bcount).
	Bcount int
	// Addr is the data (b_un.b_addr): DMA memory from the controller's
	// allocator, at least Bcount bytes long. A clone's Addr is a sub-slice
	// of its original's.
	Addr []byte
	// Blkno is the block number on the device (b_blkno). It is signed, as
	// daddr_t is, so that the end-of-device rules can see a negative
	// block. Use Blkno or Lblkno, not both: the block of a request is
	// Blkno when Lblkno is 0, Lblkno when Blkno is 0, and if both are set
	// they must agree (otherwise the request fails with EINVAL).
	Blkno int64
	// Lblkno is the 64-bit block number (b_lblkno); see Blkno.
	Lblkno uint64
	// Resid is the number of bytes not transferred (b_resid), set when
	// the request completes.
	Resid int
	// Bufsize is the size of the data buffer (b_bufsize), for the
	// driver's own bookkeeping; the package does not use it.
	Bufsize int
	// Iodone, if set, is called by Biodone instead of waking Biowait
	// (b_iodone). Its return value is ignored, as in Solaris.
	Iodone func(*Buf) int
	// Error is why the transfer failed (b_error), set with BError. See
	// Geterror and Bioerror.
	Error error
	// Private is for the driver (b_private); the package never touches it.
	Private any
	// Edev names the device (b_edev): a namespace registered with
	// Register.
	Edev Edev
	// Cmd is the command; the zero value is a read or write.
	Cmd Cmd

	// GEOM accounting (g_bio(9)), as an original with clones.
	parent    *Buf
	children  atomic.Int32 // clones made of this buffer
	inbed     atomic.Int32 // clones completed
	completed atomic.Int64 // bytes the clones transferred

	// st is the completion state as an original: outstanding pieces
	// (clones, the strategy routine's hold, its own command) in the low
	// 32 bits, and the stDoneReq and stDelivered bits.
	st       atomic.Uint64
	iflags   atomic.Uint32 // ifAccounted, ifInPool
	errClaim atomic.Bool   // a clone's (or early biodone's) error was recorded in cerr
	cerr     error         // the first error of the clones; written once, by the claimer

	pool *Pool
	wake chan struct{} // completion token for Biowait, capacity 1
	req  nvme.Request  // the command of this buffer's own transfer
	berr BufError      // storage for Error, so a failure allocates nothing
	serr nvme.StatusError

	// dev is the device whose Strategy runs the transfer, set by
	// Device.Strategy and cleared at delivery.
	dev *Device

	// Split state, for an original Strategy sends in pieces (split.go).
	// The sp* fields without atomics belong to the goroutine driving the
	// split, the one that set spRun in spState.
	spState atomic.Uint64       // flags and pieces in flight (split.go)
	spFree  atomic.Pointer[Buf] // headers back from pieces, a stack linked through spNext
	spNext  *Buf
	spHand  *Buf   // headers the driver holds, linked through spNext
	spPool  *Pool  // where the split's headers come from
	spOff   int    // byte offset of the next piece
	spLBA   uint64 // block of the next piece
	spLeft  uint64 // blocks not sent yet
	spSent  int    // pieces sent
	spHeld  int    // headers the split holds (in hand, free, or in flight)
	spWant  int    // headers it may hold: min(pieces, the device's MaxChildren)
	spBusy  bool   // the Submitter refused the last piece for want of room
}

// Completion state bits of Buf.st.
const (
	stCount     = 1<<32 - 1
	stDoneReq   = 1 << 32 // completion wanted: deliver when the count reaches 0
	stDelivered = 1 << 33 // delivered; later Biodones are ignored
	stEarly     = 1 << 34 // stDoneReq came from an early Biodone (clones outstanding)
)

// Internal header flags (Buf.iflags).
const (
	ifAccounted = 1 << 0 // this clone's result went into its parent
	ifInPool    = 1 << 1 // the header is free in its pool
	ifPiece     = 1 << 2 // a piece of a split Strategy made (split.go)
)

// Parent returns the original this buffer was cloned from (bio_parent), or
// nil.
func (bp *Buf) Parent() *Buf { return bp.parent }

// Children returns how many clones have been made of bp (bio_children).
// Any goroutine.
func (bp *Buf) Children() int { return int(bp.children.Load()) }

// Inbed returns how many of bp's clones have completed (bio_inbed). Any
// goroutine.
func (bp *Buf) Inbed() int { return int(bp.inbed.Load()) }

// Completed returns the bytes bp's clones transferred without error
// (bio_completed). Any goroutine.
func (bp *Buf) Completed() int64 { return bp.completed.Load() }

// Outstanding returns how many pieces of bp are still in flight: clones
// not yet completed, plus its own command while Strategy runs it. Any
// goroutine.
func (bp *Buf) Outstanding() int { return int(bp.st.Load() & stCount) }

// Block returns the block number of the request by the Blkno/Lblkno rule
// (see Blkno), and false if both are set and disagree.
func (bp *Buf) Block() (int64, bool) {
	switch {
	case bp.Lblkno == 0:
		return bp.Blkno, true
	case bp.Blkno == 0:
		if bp.Lblkno > 1<<63-1 {
			return -1, true // beyond any device: the range check refuses it
		}
		return int64(bp.Lblkno), true
	case bp.Blkno >= 0 && uint64(bp.Blkno) == bp.Lblkno:
		return bp.Blkno, true
	}
	return 0, false
}

// BufError is the error the package stores in Buf.Error: what was being
// done, on which device and blocks, why (Err, e.g. a *nvme.StatusError or
// one of this package's sentinels) and the errno a Solaris driver would
// have put in b_error. errors.Is matches both Err's chain and Errno.
type BufError struct {
	Op     string // "read", "write", "delete", "flush", "bioclone", "biodone"
	Dev    Edev
	Block  int64
	Bcount int
	Err    error
	Errno  syscall.Errno
}

func (e *BufError) Error() string {
	return fmt.Sprintf("ddi: %s dev %v block %d (%d bytes): %v", e.Op, e.Dev, e.Block, e.Bcount, e.Err)
}

// Unwrap returns the cause.
func (e *BufError) Unwrap() error { return e.Err }

// Is reports whether target is the error's errno.
func (e *BufError) Is(target error) bool {
	errno, ok := target.(syscall.Errno)
	return ok && e.Errno != 0 && errno == e.Errno
}

// Geterror returns the error of a completed buffer, as geterror(9F): nil
// unless BError is set; Error, or EIO (ErrIO) when BError is set without
// one. Call it after the buffer is delivered (in Iodone or after Biowait).
func Geterror(bp *Buf) error {
	if bp.Flags&BError == 0 {
		return nil
	}
	if bp.Error == nil {
		return ErrIO
	}
	return bp.Error
}

// Bioerror sets the error of bp, as bioerror(9F): a non-nil err sets Error
// and BError, nil clears both. Only the buffer's current owner may call it.
func Bioerror(bp *Buf, err error) {
	if err != nil {
		bp.Error = err
		bp.Flags |= BError
	} else {
		bp.Error = nil
		bp.Flags &^= BError
	}
}

// fail records a failure of bp's own request with the package's error
// storage (no allocation) and sets Resid to the whole request.
func (bp *Buf) fail(op string, blk int64, cause error, errno syscall.Errno) {
	bp.berr = BufError{Op: op, Dev: bp.Edev, Block: blk, Bcount: bp.Bcount, Err: cause, Errno: errno}
	if se, ok := cause.(*nvme.StatusError); ok {
		bp.serr = *se // the request's own storage is reused with the header
		bp.berr.Err = &bp.serr
	}
	Bioerror(bp, &bp.berr)
	bp.Resid = bp.Bcount
}

// claim records err as bp's first clone error unless one is recorded
// already (first error wins). src is the clone it came from, whose error
// storage is copied, because the clone's header is reused once freed.
func (bp *Buf) claim(src *Buf, err error) {
	if !bp.errClaim.CompareAndSwap(false, true) {
		return
	}
	if src != nil && err == error(&src.berr) {
		bp.berr = src.berr
		if bp.berr.Err == error(&src.serr) {
			bp.serr = src.serr
			bp.berr.Err = &bp.serr
		}
		err = &bp.berr
	}
	bp.cerr = err
}

// opName names the operation of bp for errors.
func (bp *Buf) opName() string {
	switch bp.Cmd {
	case CmdData:
		if bp.Flags&BRead != 0 {
			return "read"
		}
		return "write"
	case CmdDelete:
		return "delete"
	case CmdFlush:
		return "flush"
	}
	return "io"
}

// reset clears the header for a new use. It keeps the pool membership and
// the completion token channel, and wires the embedded request to the
// header. The caller owns bp.
func (bp *Buf) reset() {
	bp.req.Reset() // keeps the request's owner (nvme.Request.SetOwner)
	*bp = Buf{wake: bp.wake, pool: bp.pool, req: bp.req}
	if bp.wake == nil {
		bp.wake = make(chan struct{}, 1)
	}
	drain(bp.wake)
	bp.req.Done, bp.req.Private = reqDone, bp
	bp.Flags = BBusy
}

func drain(c chan struct{}) {
	select {
	case <-c:
	default:
	}
}

// Bioinit initializes a buffer header the caller allocated itself (a Buf
// in a struct or on the heap), as bioinit(9F): every field is cleared and
// Flags is BBusy. Call it once before first use; Bioreset before each
// reuse. It allocates the completion token; nothing else does.
func Bioinit(bp *Buf) {
	bp.pool = nil
	bp.reset()
}

// Bioreset readies a header whose I/O has completed for another request,
// as bioreset(9F): every field is cleared (Flags becomes BBusy) and no
// memory is allocated. The caller must own bp: its I/O delivered and no
// clone of it outstanding.
func Bioreset(bp *Buf) { bp.reset() }
