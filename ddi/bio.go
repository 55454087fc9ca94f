package ddi

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
)

// Stats counts misuse the package detected and survived. Counters are
// process-wide; read them with ReadStats.
type Stats struct {
	// EarlyBiodone: Biodone on an original while clones were outstanding.
	EarlyBiodone uint64
	// DoubleBiodone: Biodone on a buffer already delivered (or whose
	// delivery was already requested); ignored.
	DoubleBiodone uint64
	// CloneRefused: Bioclone asked for a range outside the original.
	CloneRefused uint64
	// BadFree: Freerbuf of a header that is not a pool's, is free
	// already, or has clones outstanding; ignored.
	BadFree uint64
	// Busy: Strategy on a buffer still in flight; ignored.
	Busy uint64
}

var stats struct {
	early, double, refused, badFree, busy atomic.Uint64
}

// ReadStats returns the misuse counters. Any goroutine.
func ReadStats() Stats {
	return Stats{
		EarlyBiodone:  stats.early.Load(),
		DoubleBiodone: stats.double.Load(),
		CloneRefused:  stats.refused.Load(),
		BadFree:       stats.badFree.Load(),
		Busy:          stats.busy.Load(),
	}
}

// Biodone marks bp's transfer complete, as biodone(9F): it sets BDone and
// then calls bp.Iodone if set (and returns), or else wakes Biowait. After
// Biodone the caller must not touch bp.
//
// For a clone, Biodone first accounts it into its original (bio_inbed;
// bio_completed += Bcount-Resid when it succeeded; a failed clone counts
// as wholly untransferred and its error becomes the original's unless an
// earlier one did: first error wins), then calls the clone's Iodone.
//
// For an original with clones, completion sets Resid to Bcount minus the
// bytes the clones completed and, if a clone failed and the original has
// no error of its own, the clone's error and BError.
//
// Misuse is detected, counted in Stats and survived, never turned into a
// hang or a second completion:
//   - Biodone on an original while clones are outstanding (bioclone(9F)
//     requires every clone first) records ErrClonesOutstanding as the
//     original's error (unless a clone's error came first) and defers the
//     completion to the moment the last clone completes; a later Biodone
//     of the original is then ignored.
//   - Biodone on a buffer already delivered to Biowait, or whose delivery
//     is pending, is ignored. A buffer delivered to an Iodone, by Biodone
//     or by Strategy, is the driver's again and may be passed to Biodone
//     once more: the substitute-iodone pattern of the biodone(9F) NOTES
//     (save Iodone, put one's own, and in it restore the saved one and
//     call Biodone) then runs the restored Iodone or wakes Biowait. (After
//     an early Biodone, above, the deferred delivery is that Biodone's,
//     and a later one is ignored.)
//
// Any goroutine.
func Biodone(bp *Buf) {
	for {
		old := bp.st.Load()
		if old&(stDoneReq|stDelivered) != 0 {
			stats.double.Add(1)
			return
		}
		if old&stCount != 0 {
			// Clones outstanding: record the violation and let the last
			// clone deliver.
			if bp.errClaim.CompareAndSwap(false, true) {
				bp.berr = BufError{Op: "biodone", Dev: bp.Edev, Block: bp.Blkno, Bcount: bp.Bcount,
					Err: ErrClonesOutstanding, Errno: syscall.EINVAL}
				bp.cerr = &bp.berr
			}
			if bp.st.CompareAndSwap(old, old|stDoneReq|stEarly) {
				stats.early.Add(1)
				return
			}
			continue
		}
		if bp.Iodone != nil {
			break
		}
		if bp.st.CompareAndSwap(old, old|stDelivered) {
			break
		}
	}
	complete(bp)
}

// finish delivers bp after its last outstanding piece completed with
// completion requested. Exactly one goroutine calls it per delivery.
//
// A buffer Strategy delivers to its Iodone is the driver's again, as after
// a Biodone of a buffer no Strategy ran: its state goes back to idle, so
// the driver may pass it to Biodone once more (the substitute-iodone
// pattern of the biodone(9F) NOTES). One delivered to Biowait, or whose
// delivery an early Biodone asked for (see Biodone), stays delivered until
// Bioreset or the next Strategy.
func finish(bp *Buf) {
	if bp.Iodone != nil && bp.st.Load()&stEarly == 0 {
		bp.st.Store(0)
	} else {
		bp.st.Or(stDelivered)
	}
	complete(bp)
}

// due reports whether a completion state just reached by dropping a
// count asks for delivery now: nothing outstanding, completion requested.
func due(st uint64) bool { return st&(stCount|stDoneReq|stDelivered) == stDoneReq }

// put drops one outstanding piece of bp and delivers it if that was the
// last one and its completion was requested.
func put(bp *Buf) {
	if due(bp.st.Add(^uint64(0))) {
		finish(bp)
	}
}

// complete delivers bp: the clone accounting in both directions, BDone,
// then Iodone or the Biowait token.
func complete(bp *Buf) {
	if bp.children.Load() > 0 {
		if bp.errClaim.Load() && bp.Flags&BError == 0 {
			Bioerror(bp, bp.cerr)
		}
		resid := int64(bp.Bcount) - bp.completed.Load()
		bp.Resid = int(max(resid, 0))
	}
	if d := bp.dev; d != nil {
		// The end of a transfer Device.Strategy ran: count it once (a
		// later Biodone of the same buffer finds dev cleared).
		bp.dev = nil
		if bp.Flags&BError != 0 {
			d.failed.Add(1)
		}
	}
	p := bp.parent
	if p != nil && bp.iflags.Load()&ifPiece != 0 {
		pieceDone(p, bp)
		return
	}
	last := false
	if p != nil && bp.iflags.Or(ifAccounted)&ifAccounted == 0 {
		if bp.Flags&BError != 0 {
			p.claim(bp, Geterror(bp))
		} else {
			n := bp.Bcount - max(0, min(bp.Resid, bp.Bcount))
			p.completed.Add(int64(n))
		}
		p.inbed.Add(1)
		// Drop the clone's hold on its original before Iodone runs, so
		// that an Iodone which completes the original (stripe_done in
		// bioclone(9F)) finds no clone outstanding.
		last = due(p.st.Add(^uint64(0)))
	}
	bp.Flags |= BDone
	if bp.Iodone != nil {
		bp.Iodone(bp) // may free or reuse bp: touch it no more
	} else if bp.wake != nil {
		select {
		case bp.wake <- struct{}{}:
		default:
		}
	}
	if last {
		finish(p)
	}
}

// Biowait waits until bp is delivered and returns Geterror(bp), as
// biowait(9F). It returns at once if bp was delivered already; any number
// of goroutines may wait. A buffer with an Iodone is delivered to that
// function instead, so Biowait on it waits until the Iodone passes it to
// Biodone again with Iodone cleared.
func Biowait(bp *Buf) error {
	if bp.wake == nil {
		return ErrNotInitialized
	}
	<-bp.wake
	select { // leave the token for other waiters
	case bp.wake <- struct{}{}:
	default:
	}
	return Geterror(bp)
}

// BiowaitContext is Biowait that gives up when ctx is done. It then returns
// an error wrapping ctx.Err(); the I/O is still in flight, and bp still
// belongs to the package until it is delivered (wait again to find out).
func BiowaitContext(ctx context.Context, bp *Buf) error {
	if bp.wake == nil {
		return ErrNotInitialized
	}
	select {
	case <-bp.wake:
	case <-ctx.Done():
		return fmt.Errorf("ddi: biowait: %w", ctx.Err())
	}
	select {
	case bp.wake <- struct{}{}:
	default:
	}
	return Geterror(bp)
}

// Bioclone returns a header set up to perform I/O on bytes [off, off+length)
// of bp, as bioclone(9F): on device dev at block blkno, calling iodone on
// completion, sharing bp's memory (Addr is a sub-slice of bp.Addr), with
// bp's direction (BRead) and Cmd. The header is bpMem if not nil (it must
// have been initialized with Getrbuf or Bioinit), else one from the default
// pool: with KMSleep Bioclone waits until a header is free, with KMNoSleep
// it returns nil at once if none is. nil means exactly that: no header.
//
// The clone is linked to bp (GEOM's bio_parent; bp's Children grows by
// one) and accounted into it by Biodone. bp must outlive its clones, and
// every clone must be completed with Biodone before bp is.
//
// off+length beyond bp.Bcount (or beyond bp.Addr, when bp has one), or a
// negative off or length, is refused loudly rather than with nil (which
// would read as "no memory"): the clone is returned with Bcount 0, no
// Addr, and BError set with ErrCloneRange (EINVAL). Strategy completes
// such a clone at once without I/O, so its error reaches the original
// through the normal accounting. Stats.CloneRefused counts it.
//
// Any goroutine; with KMSleep, not one whose progress frees headers (a
// poller running completions). (Strategy makes its pieces without
// waiting; see Device.Strategy.)
func Bioclone(bp *Buf, off, length int, dev Edev, blkno int64, iodone func(*Buf) int, bpMem *Buf, sleepflag KMFlag) *Buf {
	return DefaultPool().Bioclone(bp, off, length, dev, blkno, iodone, bpMem, sleepflag)
}

// Bioclone is the package function Bioclone with headers from p.
func (p *Pool) Bioclone(bp *Buf, off, length int, dev Edev, blkno int64, iodone func(*Buf) int, bpMem *Buf, sleepflag KMFlag) *Buf {
	c := bpMem
	if c == nil {
		if c = p.Getrbuf(sleepflag); c == nil {
			return nil
		}
	} else {
		Bioreset(c)
	}
	end := off + length
	if off < 0 || length < 0 || end < off || end > bp.Bcount || (bp.Addr != nil && end > len(bp.Addr)) {
		initClone(c, bp, 0, 0, dev, blkno, iodone)
		stats.refused.Add(1)
		c.berr = BufError{Op: "bioclone", Dev: dev, Block: blkno, Bcount: length,
			Err:   fmt.Errorf("%w: off %d len %d, original has %d bytes (%d of Addr)", ErrCloneRange, off, length, bp.Bcount, len(bp.Addr)),
			Errno: syscall.EINVAL}
		Bioerror(c, &c.berr)
		c.Bcount, c.Bufsize, c.Addr = 0, 0, nil
		return c
	}
	initClone(c, bp, off, length, dev, blkno, iodone)
	return c
}

// initClone sets header c (reset, or fresh from a pool) up as the clone of
// bytes [off, off+length) of bp, which the caller checked, and links it to
// bp.
func initClone(c, bp *Buf, off, length int, dev Edev, blkno int64, iodone func(*Buf) int) {
	c.Flags = BBusy | bp.Flags&BRead
	c.Cmd = bp.Cmd
	c.Edev = dev
	c.Blkno = blkno
	if blkno >= 0 {
		c.Lblkno = uint64(blkno)
	}
	c.Iodone = iodone
	c.parent = bp
	bp.children.Add(1)
	bp.st.Add(1)
	c.Bcount, c.Bufsize = length, length
	if bp.Addr != nil {
		end := off + length
		c.Addr = bp.Addr[off:end:end]
	}
}
