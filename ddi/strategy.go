package ddi

import (
	"syscall"

	"github.com/seedb8fa28ef/gonvme/nvme"
)

// Strategy starts the transfer bp describes on the device bp.Edev names, as
// a block driver's strategy(9E) routine: see Device.Strategy. A bp whose
// Edev names no registered device completes with ErrNoDevice (ENXIO).
// Any goroutine.
func Strategy(bp *Buf) {
	if bp == nil {
		return
	}
	if d := Lookup(bp.Edev); d != nil {
		d.strategy(bp, KMSleep)
		return
	}
	if !begin(bp) {
		return
	}
	if bp.Flags&BError == 0 {
		bp.fail(bp.opName(), bp.Blkno, ErrNoDevice, syscall.ENXIO)
	} else {
		bp.Resid = max(bp.Bcount, 0) // failed already: see Device.Strategy, step 1
	}
	release(bp)
}

// Strategy validates bp, splits it into commands the device accepts, and
// submits them; bp is delivered (Biodone: Iodone, or Biowait wakes) when
// every command is in. Every outcome, errors included, arrives through
// that delivery: Strategy itself returns nothing. It uses d whatever
// bp.Edev says.
//
// In order:
//  1. A bp with BError already set (a clone Bioclone refused, or one the
//     driver failed with Bioerror) completes at once without I/O, Resid =
//     Bcount. A header delivered before and not Bioreset since (BDone
//     set) is a new transfer: the results of the last one (BDone, BError,
//     Error, Resid) are cleared first, so a stale error never fails it.
//  2. CmdFlush is one Flush command; Blkno, Bcount and Addr are ignored.
//  3. The end-of-device rules of biodone(9F)'s RAM-disk example, with the
//     block from Blkno/Lblkno (see Buf.Blkno): a block outside [0, size)
//     fails with ErrPastEnd (ENXIO) and BError, except a read (CmdData with
//     BRead) of exactly block == size, which completes without error and
//     with Resid = Bcount (end of file). A request that starts inside the
//     namespace and runs past its end fails the same way (ENXIO).
//  4. Bcount must be a multiple of the block size, and for CmdData Addr
//     must hold at least Bcount bytes of DMA memory from the controller's
//     allocator (checked before any command is sent, so a bad buffer never
//     leads to a partial transfer): ErrInvalid (EINVAL) or ErrNotDMA
//     (EFAULT). Bcount 0 completes at once with no error.
//  5. Split: a command never crosses a multiple of the stripe boundary
//     (NOIOB, data commands only) and carries at most MaxBlocks blocks
//     (data) or 65536 (delete). A request that fits in one command is
//     submitted with bp's own embedded request; otherwise each piece is a
//     clone of bp (as Bioclone makes, headers from the device's pool) at
//     its block and offset, with its own embedded request. At most
//     MaxChildren pieces of bp are in flight; the header of a piece that
//     completes carries the next one.
//  6. Strategy never waits. When the pool has no header for the next
//     piece, or every header bp holds is in flight, the rest of the split
//     waits on a queue and continues on the goroutine that gives a header
//     back (a completing piece's), or on the pool's helper goroutine when
//     nothing of bp is in flight (see StrategyNoSleep for the form that
//     refuses instead).
//  7. A Submitter without room (Submit returns an error matching
//     syscall.EAGAIN, as package poller's ErrBusy does under FullFail):
//     for the first command of bp, the whole bp is refused, BError with
//     that error and Errno EAGAIN, Resid = Bcount, nothing sent; for a
//     later piece the transfer was accepted, so the rest waits for room
//     (retried when a piece of bp completes, or by the pool's helper) and
//     never turns into an I/O error.
//  8. Completion: a failed command marks its piece BError with a
//     *BufError wrapping the cause (a *nvme.StatusError from the device,
//     or the queue pair's error) and Resid = its whole length. The first
//     failed piece's error becomes bp's error (first error wins); the
//     other pieces still run to completion, so nothing is left in flight.
//     bp.Resid = Bcount minus the bytes of the pieces that succeeded: for
//     one failed piece, exactly its length. A piece the Submitter refuses
//     for good (any other error from Submit) fails the same way and no
//     further pieces are made; their bytes count in Resid too.
//
// bp is delivered on the goroutine that completed its last piece (a
// poller's with package poller), or on the caller's when nothing was sent
// or the Submitter completes synchronously (SyncSubmitter). It allocates
// nothing once the header's completion token exists (Bioinit, Getrbuf, or
// an earlier Strategy), except when a split first has to wait on the
// pool's queue (the helper goroutine).
//
// Strategy on a bp still in flight is ignored and counted in Stats.Busy.
// Any goroutine, a Done or Iodone callback on a poller included.
func (d *Device) Strategy(bp *Buf) { d.strategy(bp, KMSleep) }

// StrategyNoSleep is Strategy that never waits for headers: a transfer
// that needs pieces takes every header it will hold (the smaller of its
// number of pieces and MaxChildren) from the pool at once, and if the
// pool has fewer free, bp is refused before anything is sent: BError with
// ErrNoHeaders (ENOMEM), Resid = Bcount. Otherwise as Strategy. Any
// goroutine.
func (d *Device) StrategyNoSleep(bp *Buf) { d.strategy(bp, KMNoSleep) }

// StrategyNoSleep is the package form of Device.StrategyNoSleep: see
// Strategy for the devices and errors. Any goroutine.
func StrategyNoSleep(bp *Buf) {
	if bp == nil {
		return
	}
	if d := Lookup(bp.Edev); d != nil {
		d.StrategyNoSleep(bp)
		return
	}
	Strategy(bp)
}

func (d *Device) strategy(bp *Buf, flag KMFlag) {
	if bp == nil {
		return
	}
	if !begin(bp) {
		return
	}
	bp.dev = d
	d.strategies.Add(1)
	if d.start(bp, flag) {
		release(bp)
	}
}

// begin takes hold of bp for a new transfer: it resets the completion
// state of an earlier one and sets the strategy routine's hold.
func begin(bp *Buf) bool {
	if bp.st.Load()&stCount != 0 {
		stats.busy.Add(1)
		return false
	}
	if bp.wake == nil {
		bp.wake = make(chan struct{}, 1)
	}
	drain(bp.wake)
	bp.req.Done, bp.req.Private = reqDone, bp
	bp.children.Store(0)
	bp.inbed.Store(0)
	bp.completed.Store(0)
	bp.errClaim.Store(false)
	bp.cerr = nil
	if bp.Flags&BDone != 0 {
		// Delivered and not Bioreset: what it says about its last
		// transfer is not about this one.
		bp.Flags &^= BDone | BError
		bp.Error = nil
		bp.Resid = 0
	}
	bp.st.Store(1)
	return true
}

// release drops the strategy routine's hold and requests delivery; the
// last piece in delivers.
func release(bp *Buf) {
	for {
		old := bp.st.Load()
		next := (old - 1) | stDoneReq
		if bp.st.CompareAndSwap(old, next) {
			if due(next) {
				finish(bp)
			}
			return
		}
	}
}

// start runs the transfer: it fails bp, or submits its one command, or
// starts the split. It reports whether the caller drops the strategy hold
// (false: the split drops it when its last piece is sent).
func (d *Device) start(bp *Buf, flag KMFlag) bool {
	if bp.Flags&BError != 0 {
		bp.Resid = max(bp.Bcount, 0)
		return true
	}
	op := bp.opName()
	switch bp.Cmd {
	case CmdFlush:
		d.submit(bp, 0, 0)
		return true
	case CmdData, CmdDelete:
	default:
		bp.fail(op, bp.Blkno, invalidf("unknown command %v", bp.Cmd), syscall.EINVAL)
		return true
	}
	blk, ok := bp.Block()
	if !ok {
		bp.fail(op, bp.Blkno, invalidf("Blkno %d and Lblkno %d disagree", bp.Blkno, bp.Lblkno), syscall.EINVAL)
		return true
	}
	if bp.Bcount < 0 {
		bp.fail(op, blk, invalidf("negative Bcount %d", bp.Bcount), syscall.EINVAL)
		return true
	}
	// End-of-device rules, first, as in biodone(9F)'s ramdstrategy.
	if blk < 0 || uint64(blk) >= d.blocks {
		if blk >= 0 && uint64(blk) == d.blocks && bp.Cmd == CmdData && bp.Flags&BRead != 0 {
			bp.Resid = bp.Bcount // EOF
			return true
		}
		bp.fail(op, blk, ErrPastEnd, syscall.ENXIO)
		return true
	}
	if bp.Bcount%d.bsize != 0 {
		bp.fail(op, blk, invalidf("Bcount %d is not a multiple of the %d-byte block", bp.Bcount, d.bsize), syscall.EINVAL)
		return true
	}
	nblk := uint64(bp.Bcount / d.bsize)
	if nblk > d.blocks-uint64(blk) {
		bp.fail(op, blk, ErrPastEnd, syscall.ENXIO)
		return true
	}
	if nblk == 0 {
		bp.Resid = 0
		return true
	}
	if bp.Cmd == CmdData {
		if len(bp.Addr) < bp.Bcount {
			bp.fail(op, blk, invalidf("Addr holds %d bytes, Bcount is %d", len(bp.Addr), bp.Bcount), syscall.EINVAL)
			return true
		}
		if _, err := d.mem.Lookup(bp.Addr[:bp.Bcount]); err != nil {
			bp.fail(op, blk, err, syscall.EFAULT)
			return true
		}
	}
	lba := uint64(blk)
	if d.piece(bp.Cmd, lba, nblk) == nblk {
		d.submit(bp, lba, nblk)
		return true
	}
	return d.startSplit(bp, lba, nblk, flag)
}

// piece returns how many of the left blocks at lba the next command takes.
func (d *Device) piece(cmd Cmd, lba, left uint64) uint64 {
	if cmd == CmdDelete {
		return min(left, uint64(d.maxDelete))
	}
	n := min(left, uint64(d.maxBlocks))
	if d.noiob > 0 {
		n = min(n, uint64(d.noiob)-lba%uint64(d.noiob))
	}
	return n
}

// submit sends bp's own command for n blocks at lba, holding one count on
// bp for it. If it is not accepted, bp fails (refused as a whole with
// EAGAIN when the Submitter had no room) and the count is dropped.
func (d *Device) submit(bp *Buf, lba, n uint64) {
	bp.st.Add(1)
	if err := d.send(bp, lba, n); err != nil {
		errno := errnoFor(err)
		if busy(err) {
			d.refused.Add(1)
			errno = syscall.EAGAIN
		}
		bp.fail(bp.opName(), int64(lba), err, errno)
		put(bp)
	}
}

// send builds bp's embedded request for n blocks at lba and submits it.
// An error means it was not accepted (its Done will not run).
func (d *Device) send(bp *Buf, lba, n uint64) error {
	r := &bp.req
	var err error
	switch bp.Cmd {
	case CmdData:
		if bp.Flags&BRead != 0 {
			err = d.ns.Read(r, lba, bp.Addr[:bp.Bcount], 0)
		} else {
			err = d.ns.Write(r, lba, bp.Addr[:bp.Bcount], 0)
		}
	case CmdDelete:
		err = d.ns.Deallocate(r, lba, uint32(n))
	case CmdFlush:
		err = d.ns.Flush(r)
	}
	if err != nil {
		return err
	}
	if err = d.sub.Submit(r); err == nil {
		d.pieces.Add(1)
	}
	return err
}

// reqDone is the Done of every embedded request: it records the result in
// the request's buffer and drops the buffer's count for it. It runs on the
// Submitter's completion goroutine.
func reqDone(r *nvme.Request) {
	bp := r.Private.(*Buf)
	if r.Err != nil {
		blk, _ := bp.Block()
		bp.fail(bp.opName(), blk, r.Err, errnoFor(r.Err))
	} else {
		bp.Resid = 0
	}
	put(bp)
}
