package ddi

import (
	"errors"
	"syscall"
)

// Splitting without blocking.
//
// A transfer Strategy cuts into pieces draws headers for them from a Pool
// without ever waiting for one: it holds at most MaxChildren headers (its
// window), takes them from the pool as it goes, and reuses each header a
// piece gives back for the next piece, so at most MaxChildren pieces of
// one original are in flight. When it has no header in hand (every one is
// in flight, or the pool is empty), or the Submitter has no room for the
// next piece, the split parks: no goroutine waits for it. It resumes on
// the goroutine that gives a header back (a piece completing: a poller's,
// for package poller's Submitter), or, when nothing of it is in flight to
// do that (the pool was empty from the start, or the Submitter refused a
// piece with all the others already back), on the pool's helper
// goroutine, which runs only while such splits wait. SPDK's bdev layer
// splits the same way: on -ENOMEM the parent waits on a queue
// (spdk_bdev_queue_io_wait) and continues when memory frees.
//
//	     Strategy ──► start: reserve headers (KMNoSleep: all it needs, or ErrNoHeaders)
//	                    │
//	                    ▼
//	  ┌──────────────► drive (spRun) ── header in hand and room? ── yes ──► piece ──► Submit
//	  │                 │ no
//	  │                 ▼
//	  │               park (spPark) ── pieces in flight? ── no ──► pool's wait list (spQueued)
//	  │                 │ yes                                          │
//	  │                 ▼                                              ▼
//	  └── a piece completes: header back, kick ◄───────── the pool's helper: a header freed,
//	                                                     or a retry after the Submitter was busy
//
// spState is the handshake between the goroutine driving the split and
// the pieces that complete meanwhile. Its low bits are the flags below,
// the rest counts the pieces in flight (spOne each): a piece pushes its
// header on spFree and then, in one step, drops its count and kicks; a
// running driver sees spKick and looks again before it parks, a parked
// split is taken over by the kicker. Parking and the test "anything in
// flight?" are one step too, so no piece can come back unseen between
// them, and the driver never looks at the original after it parked (the
// one that takes it over may have delivered it by then). Only the driver
// touches the split's plain fields.

// Split state flags (Buf.spState); all clear: no split running.
const (
	spRun    = 1 << 0 // a goroutine drives the split
	spKick   = 1 << 1 // a header came back while it ran: look again before parking
	spPark   = 1 << 2 // parked, waiting for a piece to come back
	spQueued = 1 << 3 // parked on the pool's wait list: nothing in flight
	spFlags  = 1<<4 - 1
	spOne    = 1 << 4 // one piece in flight
)

// DefaultMaxChildren is how many pieces of one original may be in flight
// at once unless WithMaxChildren says otherwise.
const DefaultMaxChildren = 32

// busy reports whether a Submitter refused a request for want of room
// (package poller's ErrBusy): errors.Is(err, syscall.EAGAIN).
func busy(err error) bool { return errors.Is(err, syscall.EAGAIN) }

// countPieces returns how many commands the split of nblk blocks at lba
// takes.
func (d *Device) countPieces(cmd Cmd, lba, nblk uint64) int {
	n := 0
	for nblk > 0 {
		k := d.piece(cmd, lba, nblk)
		lba += k
		nblk -= k
		n++
	}
	return n
}

// startSplit sets bp up to be sent in pieces and drives the split as far
// as it goes now. It reports whether bp's strategy hold is to be dropped
// by the caller (the split ended before it started: no header with
// KMNoSleep); otherwise the split drops it when its last piece is sent.
func (d *Device) startSplit(bp *Buf, lba, nblk uint64, flag KMFlag) bool {
	pool := d.pool
	if pool == nil {
		pool = DefaultPool()
	}
	bp.spPool = pool
	bp.spOff, bp.spLBA, bp.spLeft = 0, lba, nblk
	bp.spSent, bp.spHeld, bp.spBusy, bp.spHand = 0, 0, false, nil
	bp.spWant = min(d.countPieces(bp.Cmd, lba, nblk), d.maxChildren)
	if flag == KMNoSleep && !pool.reserve(bp, bp.spWant) {
		d.refused.Add(1)
		bp.fail(bp.opName(), int64(lba), ErrNoHeaders, syscall.ENOMEM)
		return true
	}
	bp.spState.Store(spRun)
	d.drive(bp)
	return false
}

// drive sends bp's pieces while it has headers and the Submitter takes
// them, then parks the split or, once every piece is sent (or the rest
// failed), ends it. The caller holds spRun. It reports whether it sent
// anything. It does not touch bp after parking or ending the split.
func (d *Device) drive(bp *Buf) (sent bool) {
	bp.spBusy = false
	for {
		for bp.spLeft > 0 && !bp.spBusy {
			c := bp.popHeader()
			if c == nil {
				break
			}
			n := d.piece(bp.Cmd, bp.spLBA, bp.spLeft)
			size := int(n) * d.bsize
			initClone(c, bp, bp.spOff, size, bp.Edev, int64(bp.spLBA), nil)
			c.iflags.Store(ifPiece)
			c.st.Store(stDoneReq + 1) // its own command outstanding, delivery wanted
			bp.spState.Add(spOne)
			err := d.send(c, bp.spLBA, n)
			if err == nil {
				sent = true
				bp.spSent++
				bp.spOff += size
				bp.spLBA += n
				bp.spLeft -= n
				continue
			}
			if !busy(err) {
				// Refused for good: this piece fails (its header
				// comes back through the completion path), no
				// more are made, their bytes count in Resid.
				c.fail(bp.opName(), int64(bp.spLBA), err, errnoFor(err))
				put(c)
				bp.spLeft = 0
				break
			}
			// No room: the piece never existed.
			bp.spState.Add(^uint64(spOne - 1))
			bp.children.Add(-1)
			bp.st.Add(^uint64(0)) // the strategy hold keeps bp undelivered
			c.st.Store(0)
			c.spNext = bp.spHand
			bp.spHand = c
			if bp.spSent == 0 {
				// Nothing sent yet: refuse the whole transfer.
				d.refused.Add(1)
				bp.fail(bp.opName(), int64(bp.spLBA), err, syscall.EAGAIN)
				bp.spLeft = 0
				break
			}
			// Pieces were sent: the transfer was accepted, so the
			// rest waits for room.
			bp.spBusy = true
			d.busyWaits.Add(1)
		}
		if bp.spLeft == 0 {
			bp.endSplit()
			return sent
		}
		pool := bp.spPool
		switch bp.park() {
		case parkAgain:
			bp.spBusy = false // something came back meanwhile: try again
			continue
		case parkQueued:
			// Nothing in flight will resume it: the pool's helper
			// will, when a header is freed or after a pause (busy).
			d.parked.Add(1)
			pool.enqueue(bp)
		}
		return sent
	}
}

// popHeader returns a header for the next piece: one the split holds, or
// a new one from the pool while it holds fewer than spWant; nil if none.
// Driver only.
func (bp *Buf) popHeader() *Buf {
	if bp.spHand == nil {
		bp.spHand = bp.spFree.Swap(nil)
	}
	if c := bp.spHand; c != nil {
		bp.spHand = c.spNext
		c.reset() // a piece's header back: clear it, keeping its pool
		return c
	}
	if bp.spHeld < bp.spWant {
		if c := bp.spPool.Getrbuf(KMNoSleep); c != nil {
			bp.spHeld++
			return c
		}
	}
	return nil
}

// pushFree gives header c back to bp's split. Any goroutine; c is the
// split's from the moment the push lands.
func (bp *Buf) pushFree(c *Buf) {
	for {
		old := bp.spFree.Load()
		c.spNext = old
		if bp.spFree.CompareAndSwap(old, c) {
			return
		}
	}
}

// What park did.
const (
	parkAgain  = iota // a header came back since the driver looked: look again
	parkParked        // parked; a piece in flight resumes it
	parkQueued        // parked with nothing in flight: the caller queues it on the pool
)

// park stops driving. Driver only.
func (bp *Buf) park() int {
	for {
		s := bp.spState.Load()
		switch {
		case s&spKick != 0:
			if bp.spState.CompareAndSwap(s, s&^spKick) {
				return parkAgain
			}
		case s < spOne:
			if bp.spState.CompareAndSwap(s, spPark|spQueued) {
				return parkQueued
			}
		default:
			if bp.spState.CompareAndSwap(s, s&^spFlags|spPark) {
				return parkParked
			}
		}
	}
}

// What a returning piece found.
const (
	kickNoted = iota // the driver runs and will look again
	kickTake         // the split was parked: the caller drives it now
	kickOver         // the split is over: its headers go back to the pool
)

// kick drops one piece in flight and tells bp's split that its header
// came back.
func (bp *Buf) kick() int {
	for {
		s := bp.spState.Load()
		next, res := s-spOne, kickOver
		switch {
		case s&spFlags == 0:
		case s&spRun != 0:
			next, res = next|spKick, kickNoted
		default: // parked
			next, res = next&^spFlags|spRun, kickTake
		}
		if bp.spState.CompareAndSwap(s, next) {
			return res
		}
	}
}

// take resumes a split parked on the pool's wait list. Any goroutine.
func (bp *Buf) take() bool { return bp.spState.CompareAndSwap(spPark|spQueued, spRun) }

// endSplit ends bp's split once nothing more will be sent: the headers in
// hand go back to the pool (those still in flight follow when their pieces
// complete), and the strategy hold is dropped, which delivers bp if every
// piece is in. Driver only; bp must not be touched afterwards.
func (bp *Buf) endSplit() {
	for s := bp.spState.Load(); !bp.spState.CompareAndSwap(s, s&^spFlags); s = bp.spState.Load() {
	}
	bp.freeHeaders(bp.spHand)
	bp.spHand = nil
	bp.freeHeaders(bp.spFree.Swap(nil))
	release(bp)
}

// freeHeaders returns a chain of headers (linked through spNext) to
// their pool.
func (bp *Buf) freeHeaders(c *Buf) {
	for c != nil {
		next := c.spNext
		c.spNext = nil
		Freerbuf(c)
		c = next
	}
}

// pieceDone is the completion of piece c of original p, called by
// complete once c's own command is in: it accounts c into p, gives c's
// header back to the split (resuming it here if it was parked, or
// returning the header to the pool if the split is over), and only then
// drops c's count on p, delivering p if c was the last piece. Holding the
// count until then keeps p from being delivered, and reused, while this
// goroutine still looks at its split.
func pieceDone(p, c *Buf) {
	if c.iflags.Or(ifAccounted)&ifAccounted == 0 {
		if c.Flags&BError != 0 {
			p.claim(c, Geterror(c))
		} else {
			p.completed.Add(int64(c.Bcount - max(0, min(c.Resid, c.Bcount))))
		}
		p.inbed.Add(1)
	}
	c.Flags |= BDone
	p.pushFree(c) // c is the split's now
	switch p.kick() {
	case kickTake:
		p.dev.drive(p)
	case kickOver:
		p.freeHeaders(p.spFree.Swap(nil))
	}
	if due(p.st.Add(^uint64(0))) {
		finish(p)
	}
}
