package nvmetest

import (
	"encoding/binary"

	"github.com/seedb8fa28ef/gonvme/internal/mmio"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// sqState is one submission queue as the device sees it.
type sqState struct {
	live     bool
	id       uint16
	size     uint32
	base     uint64 // IOVA
	cq       *cqState
	head     uint32 // next entry to fetch
	lastTail uint32 // tail doorbell value last accepted
	rawTail  uint32 // tail doorbell register as last read
	tailR    uintptr
	cids     []uint64 // bitmap of the command identifiers outstanding
	ncid     int      // bits set in cids
}

// cqEntry is a completion waiting for room in its completion queue.
type cqEntry struct {
	dw0    uint32
	sqHead uint16
	sqid   uint16
	cid    uint16
	status spec.Status
}

// cqState is one completion queue as the device sees it.
type cqState struct {
	live  bool
	id    uint16
	size  uint32
	base  uint64 // IOVA
	tail  uint32
	head  uint32 // as last accepted from the head doorbell
	raw   uint32 // head doorbell register as last read
	phase bool
	headR uintptr
	nsq   int    // submission queues bound to it
	ien   bool   // interrupts enabled (always for the admin queue)
	iv    uint16 // interrupt vector

	// backlog holds completions that found the queue full, in order.
	// While it is not empty, no submission queue bound to this queue is
	// fetched from, so it stays short (at most the commands outstanding,
	// and the extra completions faults post).
	backlog []cqEntry
	bhead   int
	bn      int
}

func (q *cqState) reset(id uint16, size uint32, base uint64, dstrd uint8) {
	q.live, q.id, q.size, q.base = true, id, size, base
	q.tail, q.head, q.raw, q.phase, q.nsq = 0, 0, 0, true, 0
	q.headR = spec.CQHeadDoorbell(id, dstrd)
	q.ien, q.iv = id == 0, 0
	if cap(q.backlog) < int(size)+8 {
		q.backlog = make([]cqEntry, int(size)+8)
	}
	q.backlog = q.backlog[:cap(q.backlog)]
	q.bhead, q.bn = 0, 0
}

func (q *sqState) reset(id uint16, size uint32, base uint64, cq *cqState, dstrd uint8) {
	q.live, q.id, q.size, q.base, q.cq, q.head, q.lastTail, q.rawTail = true, id, size, base, cq, 0, 0, 0
	q.tailR = spec.SQTailDoorbell(id, dstrd)
	if q.cids == nil {
		q.cids = make([]uint64, 1<<16/64)
	}
	q.clearCIDs()
}

// markCID records cid as outstanding and reports whether it already was.
func (q *sqState) markCID(cid uint16) bool {
	w, m := &q.cids[cid/64], uint64(1)<<(cid%64)
	if *w&m != 0 {
		return true
	}
	*w |= m
	q.ncid++
	return false
}

// unmarkCID records that cid's completion was posted.
func (q *sqState) unmarkCID(cid uint16) {
	if q.cids == nil {
		return
	}
	if w, m := &q.cids[cid/64], uint64(1)<<(cid%64); *w&m != 0 {
		*w &^= m
		q.ncid--
	}
}

func (q *sqState) cidOutstanding(cid uint16) bool {
	return q.cids != nil && q.cids[cid/64]&(1<<(cid%64)) != 0
}

func (q *sqState) clearCIDs() {
	if q.ncid > 0 {
		clear(q.cids)
		q.ncid = 0
	}
}

// cqFull reports whether the completion queue has no free slot, reading
// the head doorbell first.
func (d *device) cqFull(q *cqState) bool {
	if (q.tail+1)%q.size != q.head {
		return false
	}
	d.readHead(q)
	return (q.tail+1)%q.size == q.head
}

// readHead reads the completion queue head doorbell. A value outside the
// queue, or one that releases entries the device has not posted (the
// head moved past the tail), is a host error and is ignored.
func (d *device) readHead(q *cqState) {
	if d.shadowed(q.id) {
		d.shadowHead(q) // dbbuf.go
		return
	}
	d.takeHead(q, d.c.regs.Read32(q.headR))
}

// takeHead takes a new head doorbell value h (from the register or the
// shadow buffer): raw keeps the last one read, so a bad value is reported
// once.
func (d *device) takeHead(q *cqState, h uint32) {
	if h == q.raw {
		return
	}
	q.raw = h
	if h >= q.size {
		d.c.cnt.badDB.Add(1)
		d.hostError("completion queue %d head doorbell %#x is outside the %d-entry queue", q.id, h, q.size)
		d.errorEvent(spec.AEVErrorInvalidDoorbellValue)
		return
	}
	posted := (q.tail + q.size - q.head) % q.size
	if (h+q.size-q.head)%q.size > posted {
		d.c.cnt.badDB.Add(1)
		d.hostError("completion queue %d head doorbell %d passes the tail %d (head was %d)", q.id, h, q.tail, q.head)
		d.errorEvent(spec.AEVErrorInvalidDoorbellValue)
		return
	}
	q.head = h
}

// post queues a completion: it is written at once if the queue has room
// and nothing is waiting before it, else it joins the backlog.
func (d *device) post(q *cqState, e cqEntry) {
	if q.bn == 0 && !d.cqFull(q) {
		d.write(q, &e)
		return
	}
	if q.bn == len(q.backlog) {
		// Commands whose latency passed together, with faults that
		// post extra completions: grow, in order.
		grown := make([]cqEntry, 2*len(q.backlog))
		for i := 0; i < q.bn; i++ {
			grown[i] = q.backlog[(q.bhead+i)%len(q.backlog)]
		}
		q.backlog, q.bhead = grown, 0
	}
	q.backlog[(q.bhead+q.bn)%len(q.backlog)] = e
	q.bn++
}

// flush writes backlogged completions while the queue has room. It
// reports whether it wrote any.
func (d *device) flush(q *cqState) bool {
	did := false
	for q.bn > 0 && !d.cqFull(q) {
		d.write(q, &q.backlog[q.bhead])
		q.bhead = (q.bhead + 1) % len(q.backlog)
		q.bn--
		did = true
	}
	return did
}

// write stores one completion queue entry: dwords 0-2 first with plain
// stores, then dword 3 (CID, phase, status) with one 32-bit atomic store,
// so a host that sees the new phase sees the whole entry.
func (d *device) write(q *cqState, e *cqEntry) {
	b, ok := d.c.translate(q.base+uint64(q.tail)*spec.CompletionSize, spec.CompletionSize)
	if !ok {
		return // the host unmapped its queue: nothing to write to
	}
	le := binary.LittleEndian
	le.PutUint32(b[0:], e.dw0)
	le.PutUint32(b[4:], 0)
	le.PutUint16(b[8:], e.sqHead)
	le.PutUint16(b[10:], e.sqid)
	if int(e.sqid) < len(d.sqs) {
		d.sqs[e.sqid].unmarkCID(e.cid)
	}
	dw3 := uint32(e.cid) | uint32(e.status.CQEField(q.phase))<<16
	mmio.New(b).Write32(12, dw3)
	q.tail++
	if q.tail == q.size {
		q.tail = 0
		q.phase = !q.phase
	}
	d.posted(q) // irq.go
}

// decode reads a submission queue entry from b (64 bytes of host memory).
func decode(b []byte, c *spec.Command) {
	le := binary.LittleEndian
	_ = b[63]
	c.Opcode = b[0]
	c.Flags = b[1]
	c.CID = le.Uint16(b[2:])
	c.NSID = le.Uint32(b[4:])
	c.CDW2 = le.Uint32(b[8:])
	c.CDW3 = le.Uint32(b[12:])
	c.MPTR = le.Uint64(b[16:])
	c.PRP1 = le.Uint64(b[24:])
	c.PRP2 = le.Uint64(b[32:])
	c.CDW10 = le.Uint32(b[40:])
	c.CDW11 = le.Uint32(b[44:])
	c.CDW12 = le.Uint32(b[48:])
	c.CDW13 = le.Uint32(b[52:])
	c.CDW14 = le.Uint32(b[56:])
	c.CDW15 = le.Uint32(b[60:])
}

// fetchBatch bounds the commands taken from one submission queue per pass,
// so that one busy queue does not starve the others.
const fetchBatch = 32

// service fetches and executes commands from q in order. It reports
// whether it did anything.
func (d *device) service(q *sqState) bool {
	cq := q.cq
	if cq.bn > 0 && !d.flush(cq) {
		return false
	}
	if cq.bn > 0 {
		return true
	}
	d.readHead(cq)
	if d.shadowed(q.id) {
		d.shadowTail(q) // dbbuf.go
	} else if raw := d.c.regs.Read32(q.tailR); raw != q.rawTail {
		q.rawTail = raw
		if d.checkTail(q, raw) {
			q.lastTail = raw
		}
	}
	tail := q.lastTail
	if tail == q.head {
		return false
	}
	n := 0
	for q.head != tail && n < fetchBatch && cq.bn == 0 {
		b, ok := d.c.translate(q.base+uint64(q.head)*spec.CommandSize, spec.CommandSize)
		q.head++
		if q.head == q.size {
			q.head = 0
		}
		n++
		if !ok {
			continue // nothing to read: the command is lost, as on a faulting device
		}
		var cmd spec.Command
		decode(b, &cmd)
		d.dispatch(q, &cmd)
		if d.fatal || !q.live || !d.enabled {
			break
		}
	}
	return true
}

// checkTail checks a new submission queue tail doorbell value: outside
// the queue, or past the head (more entries than the queue holds), it is
// a host error and is ignored.
func (d *device) checkTail(q *sqState, tail uint32) bool {
	if tail >= q.size {
		d.c.cnt.badDB.Add(1)
		d.hostError("submission queue %d tail doorbell %#x is outside the %d-entry queue", q.id, tail, q.size)
		d.errorEvent(spec.AEVErrorInvalidDoorbellValue)
		return false
	}
	used := (q.lastTail + q.size - q.head) % q.size
	if (tail+q.size-q.lastTail)%q.size > q.size-1-used {
		d.c.cnt.badDB.Add(1)
		d.hostError("submission queue %d tail doorbell %d passes the head %d (tail was %d)", q.id, tail, q.head, q.lastTail)
		d.errorEvent(spec.AEVErrorInvalidDoorbellValue)
		return false
	}
	return true
}
