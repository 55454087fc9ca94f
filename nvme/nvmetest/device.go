package nvmetest

import (
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// device is the controller's state as its goroutine owns it. Nothing
// here is touched by any other goroutine: they go through Controller.call.
type device struct {
	c *Controller

	lastCC   spec.CC
	enabled  bool // CC.EN seen and the admin queue set up: CSTS.RDY
	fatal    bool // CSTS.CFS: nothing is processed until a disable
	shutdown bool // CC.SHN seen: CSTS.SHST complete, nothing processed

	sqs  []sqState // by queue ID; index 0 is the admin queue
	cqs  []cqState
	live []uint16 // IDs of live submission queues, admin first

	grantSQ, grantCQ int // Number of Queues granted
	features         [256]uint32

	ns []*namespace

	aers    []uint16 // CIDs of outstanding Asynchronous Event Requests
	pending []uint32 // events waiting for an Asynchronous Event Request
	held    []heldCmd

	faults faults

	errLog   [errLogEntries]errEntry
	errCount uint64

	// SMART counters.
	bytesRead, bytesWritten uint64
	reads, writes           uint64
	mediaErrors             uint64
	powerOn                 int64

	ext extState // admin_ext.go: namespace management, firmware, self-test, sanitize

	scratch []byte // identify data and log pages
	dsm     []byte // Dataset Management ranges
	x       xfer
}

// heldCmd is a command the device executed but did not complete
// (DropCompletion, Lose).
type heldCmd struct {
	sqid      uint16
	cq        *cqState
	e         cqEntry
	abortable bool
}

const errLogEntries = 64

type errEntry struct {
	count  uint64
	sqid   uint16
	cid    uint16
	status spec.Status
	lba    uint64
	nsid   uint32
}

// aerLimit is AERL+1, the Asynchronous Event Requests the fake holds.
const aerLimit = 4

func (d *device) init(c *Controller) {
	d.c = c
	n := c.cfg.MaxQueuePairs + 1
	d.sqs = make([]sqState, n)
	d.cqs = make([]cqState, n)
	d.live = make([]uint16, 0, n)
	d.grantSQ, d.grantCQ = c.cfg.MaxQueuePairs, c.cfg.MaxQueuePairs
	for i, nc := range c.cfg.Namespaces {
		d.ns = append(d.ns, newNamespace(uint32(i+1), nc))
	}
	d.scratch = make([]byte, 4096)
	d.dsm = make([]byte, spec.DSMMaxRanges*16)
	d.powerOn = now()
	d.defaultFeatures()
}

func (d *device) defaultFeatures() {
	clear(d.features[:])
	d.features[spec.FeatureTemperatureThreshold] = 343
	if d.c.cfg.VWC {
		d.features[spec.FeatureVolatileWriteCache] = spec.VolatileWriteCacheEnable
	}
	d.features[spec.FeatureArbitration] = 7 // no burst limit
}

// setCSTS writes CSTS from the device state.
func (d *device) setCSTS() {
	var v uint32
	if d.enabled {
		v |= 1
	}
	if d.fatal {
		v |= 2
	}
	if d.shutdown {
		v |= spec.SHSTComplete << 2
	}
	d.c.regs.Write32(spec.RegCSTS, v)
}

// step is one pass of the device: react to CC, then service every
// submission queue. It reports whether it did anything.
func (d *device) step() bool {
	work := false
	cc := spec.CC(d.c.regs.Read32(spec.RegCC))
	if cc != d.lastCC {
		d.ccChanged(cc)
		work = true
	}
	if !d.enabled || d.fatal || d.shutdown {
		return work
	}
	for i := 0; i < len(d.live); i++ {
		q := &d.sqs[d.live[i]]
		if q.live && d.service(q) {
			work = true
		}
		if !d.enabled || d.fatal || d.shutdown {
			break
		}
	}
	return work
}

func (d *device) ccChanged(cc spec.CC) {
	old := d.lastCC
	d.lastCC = cc
	switch {
	case old.EN() && !cc.EN():
		d.disable()
		d.c.cnt.resets.Add(1)
	case !old.EN() && cc.EN():
		d.enable(cc)
	}
	if cc.EN() && cc.SHN() != spec.SHNNone && !d.shutdown {
		// Shutdown (NVMe Base 2.0, 3.6.2): stop processing, forget the
		// queues, report completion at once.
		d.dropQueues()
		d.shutdown = true
		d.c.cnt.shutdowns.Add(1)
	}
	d.setCSTS()
}

// disable is a controller reset: queues, held commands and features are
// forgotten, doorbells read zero. Storage is kept.
func (d *device) disable() {
	d.dropQueues()
	d.enabled, d.fatal, d.shutdown = false, false, false
	d.grantSQ, d.grantCQ = d.c.cfg.MaxQueuePairs, d.c.cfg.MaxQueuePairs
	d.defaultFeatures()
	d.setCSTS()
}

func (d *device) dropQueues() {
	for i := range d.sqs {
		d.sqs[i].live = false
		d.cqs[i].live = false
	}
	d.live = d.live[:0]
	d.held = d.held[:0]
	d.aers = d.aers[:0]
	for off := uintptr(spec.RegDoorbellBase); off < RegisterSize; off += 4 {
		d.c.regs.Write32(off, 0)
	}
}

// enable sets up the admin queue from AQA, ASQ and ACQ. Settings the fake
// cannot work with set CSTS.CFS, as a controller would.
func (d *device) enable(cc spec.CC) {
	d.shutdown = false
	regs := d.c.regs
	aqa := spec.AQA(regs.Read32(spec.RegAQA))
	asq, acq := regs.Read64(spec.RegASQ), regs.Read64(spec.RegACQ)
	sqn, cqn := uint32(aqa.ASQS())+1, uint32(aqa.ACQS())+1
	ok := sqn >= 2 && cqn >= 2 && asq&(pageSize-1) == 0 && acq&(pageSize-1) == 0 &&
		cc.MPS() == 0 && cc.CSS() == spec.CCCSSNVM
	if ok {
		_, ok1 := d.c.translate(asq, int(sqn)*spec.CommandSize)
		_, ok2 := d.c.translate(acq, int(cqn)*spec.CompletionSize)
		ok = ok1 && ok2
	}
	if !ok {
		d.fatal = true
		return
	}
	d.cqs[0].reset(0, cqn, acq, d.c.cfg.DSTRD)
	d.sqs[0].reset(0, sqn, asq, &d.cqs[0], d.c.cfg.DSTRD)
	d.cqs[0].nsq = 1
	d.live = append(d.live[:0], 0)
	d.enabled = true
	d.c.cnt.enables.Add(1)
}

// execute runs one fetched command and posts its completion, applying
// whatever faults are armed.
func (d *device) execute(q *sqState, cmd *spec.Command) {
	admin := q.id == 0
	if admin {
		d.c.cnt.admin[cmd.Opcode].Add(1)
	} else {
		d.c.cnt.io[cmd.Opcode].Add(1)
	}
	var act action
	if d.faults.armed() {
		act = d.faults.match(admin, cmd)
	}
	var st spec.Status
	var dw0 uint32
	post := true
	if act.inject {
		st = act.status
		d.c.cnt.injected.Add(1)
	} else if admin {
		st, dw0, post = d.admin(q, cmd)
	} else {
		st, dw0 = d.io(cmd)
	}
	if !st.Success() {
		d.logError(q.id, cmd, st)
	}
	if !post {
		return
	}
	e := cqEntry{dw0: dw0, sqHead: uint16(q.head), sqid: q.id, cid: cmd.CID, status: st}
	if act.drop || act.lose {
		d.held = append(d.held, heldCmd{sqid: q.id, cq: q.cq, e: e, abortable: act.drop})
		d.c.cnt.dropped.Add(1)
		return
	}
	if !admin && d.faults.badHead > 0 && q.size < 0x10000 {
		d.faults.badHead--
		e.sqHead = uint16(q.size) + uint16(d.faults.badHead%4)
		if e.sqHead < uint16(q.size) { // wrapped: use the largest value
			e.sqHead = 0xffff
		}
		d.c.cnt.badHeads.Add(1)
	}
	d.post(q.cq, e)
	if admin {
		return
	}
	if d.faults.dup > 0 {
		d.faults.dup--
		d.post(q.cq, e)
		d.c.cnt.duplicated.Add(1)
	}
	if d.faults.bogus > 0 {
		d.faults.bogus--
		e.cid = d.bogusCID(q)
		d.post(q.cq, e)
		d.c.cnt.bogus.Add(1)
	}
}

// bogusCID returns a command identifier that no command the device can
// see on q carries: not held, not waiting in the submission queue up to
// the tail doorbell. (A command the host wrote but has not rung the
// doorbell for is invisible to any device.)
func (d *device) bogusCID(q *sqState) uint16 {
	for k := uint16(0); k < 256; k++ {
		cid := 0xffff - k
		if !d.outstanding(q, cid) {
			return cid
		}
	}
	return 0xffff
}

func (d *device) outstanding(q *sqState, cid uint16) bool {
	for i := range d.held {
		if d.held[i].sqid == q.id && d.held[i].e.cid == cid {
			return true
		}
	}
	tail := d.c.regs.Read32(q.tailR)
	if tail >= q.size {
		return false
	}
	for i := q.head; i != tail; i = (i + 1) % q.size {
		b, ok := d.c.translate(q.base+uint64(i)*spec.CommandSize, spec.CommandSize)
		if ok && uint16(b[2])|uint16(b[3])<<8 == cid {
			return true
		}
	}
	return false
}

// logError records a failed command in the Error Information log.
func (d *device) logError(sqid uint16, cmd *spec.Command, st spec.Status) {
	d.errCount++
	e := &d.errLog[d.errCount%errLogEntries]
	*e = errEntry{count: d.errCount, sqid: sqid, cid: cmd.CID, status: st, nsid: cmd.NSID}
	if sqid != 0 {
		e.lba = uint64(cmd.CDW11)<<32 | uint64(cmd.CDW10)
	}
	if st.SCT() == spec.SCTMediaError {
		d.mediaErrors++
	}
}

// triggerEvent completes the oldest outstanding Asynchronous Event
// Request with ev, or keeps ev until one arrives.
func (d *device) triggerEvent(ev uint32) {
	if !d.enabled || len(d.aers) == 0 {
		d.pending = append(d.pending, ev)
		return
	}
	cid := d.aers[0]
	d.aers = append(d.aers[:0], d.aers[1:]...)
	d.post(&d.cqs[0], cqEntry{dw0: ev, sqHead: uint16(d.sqs[0].head), cid: cid})
	d.c.cnt.events.Add(1)
}
