package poller

import (
	"sync/atomic"

	"github.com/seedb8fa28ef/gonvme/nvme"
)

// ring is a bounded multi-producer single-consumer queue of submissions,
// after Dmitry Vyukov's bounded MPMC queue with the consumer side reduced
// to one goroutine (the poller). Each cell carries a sequence number: a
// producer may fill cell i when its sequence equals the ticket it claimed
// (enq), and publishes it by storing ticket+1; the consumer takes it when
// the sequence is deq+1 and hands it back to the producers of the next lap
// by storing deq+size. Nothing is allocated per operation.
//
// The top bit of enq closes the ring: once it is set no producer can claim
// a ticket, so the consumer knows that every claimed cell will be
// published and that nothing arrives after the last one.
type ring struct {
	_    [64]byte
	enq  atomic.Uint64 // next ticket for producers; ringClosed when closed
	_    [56]byte
	deq  uint64 // next ticket for the consumer; consumer only
	_    [56]byte
	mask uint64
	cell []cell
}

// cell is one slot of the ring.
type cell struct {
	seq   atomic.Uint64
	req   *nvme.Request
	stamp int64 // monotonic ns at submission, for the latency histogram
	ctrl  int32 // index of the controller in the Group
}

const ringClosed = 1 << 63

// pushResult says what happened to a push.
type pushResult uint8

const (
	pushOK     pushResult = iota
	pushFull              // every cell is taken: try again later
	pushClosed            // the ring is closed for good
)

func newRing(size int) *ring {
	n := 2
	for n < size {
		n <<= 1
	}
	r := &ring{mask: uint64(n - 1), cell: make([]cell, n)}
	for i := range r.cell {
		r.cell[i].seq.Store(uint64(i))
	}
	return r
}

// push adds a submission. Any goroutine.
func (q *ring) push(req *nvme.Request, ctrl int32, stamp int64) pushResult {
	pos := q.enq.Load()
	for {
		if pos&ringClosed != 0 {
			return pushClosed
		}
		c := &q.cell[pos&q.mask]
		seq := c.seq.Load()
		switch d := int64(seq - pos); {
		case d == 0:
			if q.enq.CompareAndSwap(pos, pos+1) {
				c.req, c.ctrl, c.stamp = req, ctrl, stamp
				c.seq.Store(pos + 1) // publish
				return pushOK
			}
			pos = q.enq.Load()
		case d < 0:
			// The cell still holds the entry of the previous lap: full,
			// unless another producer moved on meanwhile.
			if now := q.enq.Load(); now != pos {
				pos = now
				continue
			}
			return pushFull
		default:
			pos = q.enq.Load()
		}
	}
}

// peek returns the oldest published entry without taking it. Consumer
// only.
func (q *ring) peek() (*cell, bool) {
	c := &q.cell[q.deq&q.mask]
	if c.seq.Load() != q.deq+1 {
		return nil, false
	}
	return c, true
}

// pop hands the cell returned by peek back to the producers. Consumer only.
func (q *ring) pop(c *cell) {
	c.req = nil
	c.seq.Store(q.deq + q.mask + 1)
	q.deq++
}

// close stops producers from claiming more tickets. Any goroutine.
func (q *ring) close() {
	for {
		pos := q.enq.Load()
		if pos&ringClosed != 0 || q.enq.CompareAndSwap(pos, pos|ringClosed) {
			return
		}
	}
}

// drained reports whether the ring is closed and the consumer has taken
// every entry a producer claimed. Consumer only.
func (q *ring) drained() bool {
	pos := q.enq.Load()
	return pos&ringClosed != 0 && q.deq == pos&^ringClosed
}

// empty reports whether no claimed entry is left to take (a producer may
// be between its claim and its publish: that counts as not empty).
// Consumer only.
func (q *ring) empty() bool { return q.deq == q.enq.Load()&^ringClosed }
