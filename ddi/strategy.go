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
		d.Strategy(bp)
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
//     Bcount.
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
//     Bioclone of bp (headers from the device's pool, KMSleep), at its
//     block and offset, with its own embedded request.
//  6. Completion: a failed command marks its piece BError with a
//     *BufError wrapping the cause (a *nvme.StatusError from the device,
//     or the queue pair's error) and Resid = its whole length. The first
//     failed piece's error becomes bp's error (first error wins); the
//     other pieces still run to completion, so nothing is left in flight.
//     bp.Resid = Bcount minus the bytes of the pieces that succeeded: for
//     one failed piece, exactly its length. A piece the Submitter refuses
//     (Submit returns an error) fails the same way and no further pieces
//     are made; their bytes count in Resid too.
//
// Strategy may wait for a free header (KMSleep), so it must not run on a
// goroutine whose progress frees headers (a poller's completion callback)
// unless the pool cannot run dry. It allocates nothing once the header's
// completion token exists (Bioinit, Getrbuf, or an earlier Strategy).
//
// A header is reused with Bioreset. Strategy on a bp still in flight is
// ignored and counted in Stats.Busy. Any goroutine.
func (d *Device) Strategy(bp *Buf) {
	if bp == nil {
		return
	}
	if !begin(bp) {
		return
	}
	d.strategies.Add(1)
	d.start(bp)
	release(bp)
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
	bp.Flags &^= BDone
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
			if next == stDoneReq {
				finish(bp)
			}
			return
		}
	}
}

func (d *Device) start(bp *Buf) {
	if bp.Flags&BError != 0 {
		bp.Resid = max(bp.Bcount, 0)
		return
	}
	op := bp.opName()
	switch bp.Cmd {
	case CmdFlush:
		bp.st.Add(1)
		d.submit(bp, 0, 0)
		return
	case CmdData, CmdDelete:
	default:
		bp.fail(op, bp.Blkno, invalidf("unknown command %v", bp.Cmd), syscall.EINVAL)
		return
	}
	blk, ok := bp.Block()
	if !ok {
		bp.fail(op, bp.Blkno, invalidf("Blkno %d and Lblkno %d disagree", bp.Blkno, bp.Lblkno), syscall.EINVAL)
		return
	}
	if bp.Bcount < 0 {
		bp.fail(op, blk, invalidf("negative Bcount %d", bp.Bcount), syscall.EINVAL)
		return
	}
	// End-of-device rules, first, as in biodone(9F)'s ramdstrategy.
	if blk < 0 || uint64(blk) >= d.blocks {
		if blk >= 0 && uint64(blk) == d.blocks && bp.Cmd == CmdData && bp.Flags&BRead != 0 {
			bp.Resid = bp.Bcount // EOF
			return
		}
		bp.fail(op, blk, ErrPastEnd, syscall.ENXIO)
		return
	}
	if bp.Bcount%d.bsize != 0 {
		bp.fail(op, blk, invalidf("Bcount %d is not a multiple of the %d-byte block", bp.Bcount, d.bsize), syscall.EINVAL)
		return
	}
	nblk := uint64(bp.Bcount / d.bsize)
	if nblk > d.blocks-uint64(blk) {
		bp.fail(op, blk, ErrPastEnd, syscall.ENXIO)
		return
	}
	if nblk == 0 {
		bp.Resid = 0
		return
	}
	if bp.Cmd == CmdData {
		if len(bp.Addr) < bp.Bcount {
			bp.fail(op, blk, invalidf("Addr holds %d bytes, Bcount is %d", len(bp.Addr), bp.Bcount), syscall.EINVAL)
			return
		}
		if _, err := d.mem.Lookup(bp.Addr[:bp.Bcount]); err != nil {
			bp.fail(op, blk, err, syscall.EFAULT)
			return
		}
	}
	lba := uint64(blk)
	if d.piece(bp.Cmd, lba, nblk) == nblk {
		bp.st.Add(1)
		d.submit(bp, lba, nblk)
		return
	}
	pool := d.pool
	if pool == nil {
		pool = DefaultPool()
	}
	for off, left := 0, nblk; left > 0; {
		n := d.piece(bp.Cmd, lba, left)
		size := int(n) * d.bsize
		c := pool.Bioclone(bp, off, size, bp.Edev, int64(lba), childDone, nil, KMSleep)
		c.st.Store(stDoneReq + 1) // its own command outstanding, delivery wanted
		if !d.submit(c, lba, n) {
			return
		}
		off += size
		lba += n
		left -= n
	}
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

// submit builds bp's embedded request for n blocks at lba and submits it;
// bp holds one count for it. If the request cannot be built or submitted,
// bp fails and its count is dropped here; submit then returns false.
func (d *Device) submit(bp *Buf, lba, n uint64) bool {
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
	if err == nil {
		d.pieces.Add(1)
		err = d.sub.Submit(r)
	}
	if err != nil {
		bp.fail(bp.opName(), int64(lba), err, errnoFor(err))
		put(bp)
		return false
	}
	return true
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

// childDone is the Iodone of the pieces Strategy clones: Biodone has
// accounted the piece into its original; the header goes back to its pool.
func childDone(c *Buf) int {
	Freerbuf(c)
	return 0
}
