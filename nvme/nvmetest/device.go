package nvmetest

import (
	"math/rand/v2"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// device is the controller's state as its goroutine owns it. Nothing
// here is touched by any other goroutine: they go through Controller.call.
type device struct {
	c *Controller

	lastCC  spec.CC
	rdy     bool  // CSTS.RDY
	enabled bool  // processing commands: RDY set and not shut down
	fatal   bool  // CSTS.CFS: nothing is processed until a disable
	shst    uint8 // CSTS.SHST
	rdyAt   int64 // enabling: when RDY sets (0: not enabling)
	offAt   int64 // disabling: when RDY clears (0: not disabling)
	shnAt   int64 // shutting down: when SHST becomes complete
	hung    bool  // Hang: commands are fetched and never executed
	wedged  bool  // Wedge: CC is ignored, function reset fails
	bme     bool  // bus master enable: DMA possible

	// draining holds the queue memory of a controller being disabled:
	// the host may not free it before CSTS.RDY clears.
	draining []iovaRange

	sqs  []sqState // by queue ID; index 0 is the admin queue
	cqs  []cqState
	live []uint16 // IDs of live submission queues, admin first

	grantSQ, grantCQ int // Number of Queues granted
	features         [256]uint32

	ns []*namespace

	aers      []uint16 // CIDs of outstanding Asynchronous Event Requests
	pending   []uint32 // events waiting for an Asynchronous Event Request
	masked    [8]bool  // event types reported and not yet cleared
	clearLog  [8]uint8 // the log page that clears each masked type
	changedNS []uint32 // Changed Namespace List
	held      []heldCmd

	lat    Latency
	rng    *rand.Rand
	cmds   cmdHeap // fetched I/O commands waiting for their latency
	seq    uint64
	passes uint64

	faults      faults
	fatalEnable int // FatalAtEnable: enables still to fail
	counters    []*Counter

	errLog   [errLogEntries]errEntry
	errCount uint64

	// SMART counters.
	bytesRead, bytesWritten uint64
	reads, writes           uint64
	mediaErrors             uint64
	powerOn                 int64

	irq irqState // irq.go: interrupt vectors
	ext extState // admin_ext.go: namespace management, firmware, self-test, sanitize
	db  dbState  // dbbuf.go: Doorbell Buffer Config

	scratch []byte // identify data and log pages
	dsm     []byte // Dataset Management ranges
	x       xfer
}

type iovaRange struct{ start, end uint64 }

// heldCmd is a command the device took but did not complete
// (DropCompletion, Lose, Hang).
type heldCmd struct {
	sqid      uint16
	cq        *cqState
	e         cqEntry
	abortable bool
	op        uint8
	prp1      uint64 // data pointer, for admin commands
}

// checkAdminData is a host error when the data of admin command cmd lies
// in the first page of data of an admin command still in flight (held,
// or slow): the device may still write there, so the host handed one
// buffer to two commands.
func (d *device) checkAdminData(cmd *spec.Command) {
	page := func(p uint64) uint64 { return p &^ (pageSize - 1) }
	clash := func(op uint8, prp1 uint64) {
		if prp1 != 0 && page(prp1) == page(cmd.PRP1) {
			d.hostError("admin command %s uses data at %#x, where admin command %s still in flight may write",
				spec.AdminOpcodeName(spec.Opcode(cmd.Opcode)), cmd.PRP1, spec.AdminOpcodeName(spec.Opcode(op)))
		}
	}
	for _, h := range d.held {
		if h.sqid == 0 {
			clash(h.op, h.prp1)
		}
	}
	for i := range d.cmds.h {
		if p := &d.cmds.h[i]; p.sq.id == 0 {
			clash(p.cmd.Opcode, p.cmd.PRP1)
		}
	}
}

// abortLimit is ACL+1, the Abort commands the fake takes at once.
const abortLimit = 4

// abortsOutstanding counts the Abort commands the device holds (hung or
// slow): those fetched and not completed.
func (d *device) abortsOutstanding() int {
	n := 0
	for _, h := range d.held {
		if h.sqid == 0 && h.op == uint8(spec.AdminAbort) {
			n++
		}
	}
	for _, p := range d.cmds.h {
		if p.sq.id == 0 && p.cmd.Opcode == uint8(spec.AdminAbort) {
			n++
		}
	}
	return n
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

// cntlid is the fake's controller identifier.
const cntlid = 1

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
	d.lat = c.cfg.Latency
	d.rng = rand.New(rand.NewPCG(c.cfg.Seed, c.cfg.Seed^0x9e3779b97f4a7c15))
	d.bme = true
	d.irq.init(max(c.cfg.Vectors, 0))
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
	if d.rdy {
		v |= 1
	}
	if d.fatal {
		v |= 2
	}
	v |= uint32(d.shst) << 2
	d.c.regs.Write32(spec.RegCSTS, v)
}

// after returns the monotonic time delay d from now; a delay of zero or
// less means at once.
func after(t int64, d time.Duration) int64 {
	if d <= 0 {
		return t
	}
	return t + int64(d)
}

// step is one pass of the device: react to CC, finish timed transitions,
// service every submission queue, execute the commands whose latency
// passed. It reports whether it did anything.
func (d *device) step() bool {
	work := false
	if !d.wedged {
		cc := spec.CC(d.c.regs.Read32(spec.RegCC))
		if cc != d.lastCC {
			d.ccChanged(cc)
			work = true
		}
	}
	if d.rdyAt != 0 || d.offAt != 0 || d.shnAt != 0 {
		if d.timers(now()) {
			work = true
		}
	}
	if !d.enabled || d.fatal {
		return work
	}
	d.passes++
	if d.passes&63 == 0 {
		d.checkDoorbells(d.passes&4095 == 0)
	}
	for i := 0; i < len(d.live); i++ {
		q := &d.sqs[d.live[i]]
		if q.live && d.service(q) {
			work = true
		}
		if !d.enabled || d.fatal {
			return true
		}
	}
	if d.cmds.len() > 0 && d.runDue(now()) {
		work = true
	}
	if d.irq.npend > 0 {
		d.irqTimers(now())
	}
	return work
}

// busy reports whether commands wait for their latency to pass soon, so
// the device goroutine should not go to sleep.
func (d *device) busy() bool {
	return d.cmds.len() > 0 && d.cmds.peek().due-now() < int64(time.Millisecond)
}

// timers finishes the RDY and SHST transitions whose time has come.
func (d *device) timers(t int64) bool {
	did := false
	if d.offAt != 0 && t >= d.offAt {
		d.finishDisable()
		did = true
	}
	if d.rdyAt != 0 && t >= d.rdyAt {
		d.rdyAt = 0
		d.becomeReady()
		did = true
	}
	if d.shnAt != 0 && t >= d.shnAt {
		d.shnAt = 0
		d.shst = spec.SHSTComplete
		d.c.cnt.shutdowns.Add(1)
		did = true
	}
	if did {
		d.setCSTS()
	}
	return did
}

func (d *device) ccChanged(cc spec.CC) {
	old := d.lastCC
	d.lastCC = cc
	t := now()
	switch {
	case old.EN() && !cc.EN():
		d.disable(t)
		d.c.cnt.resets.Add(1)
	case !old.EN() && cc.EN():
		if d.rdy {
			d.hostError("CC.EN set while CSTS.RDY is still 1 from the previous disable")
			d.finishDisable()
		}
		d.enable(cc, t)
	}
	if cc.EN() && cc.SHN() != spec.SHNNone && d.shst == spec.SHSTNormal && (d.rdy || d.rdyAt != 0) {
		// Shutdown (NVMe Base 2.0, 3.6.2): stop processing, forget the
		// queues; SHST reports processing, then complete.
		d.stopProcessing()
		d.rdyAt = 0
		d.shst = spec.SHSTOccurring
		d.shnAt = after(t, d.c.cfg.ShutdownDelay)
		if d.shnAt == t {
			d.shnAt = 0
			d.shst = spec.SHSTComplete
			d.c.cnt.shutdowns.Add(1)
		}
	}
	d.setCSTS()
}

// disable starts a controller reset (CC.EN 1 -> 0): processing stops at
// once and every queue, held command and feature is forgotten; CSTS.RDY
// clears after DisableDelay. Storage is kept.
func (d *device) disable(t int64) {
	d.checkDoorbells(true)
	for _, id := range d.live {
		q := &d.sqs[id]
		d.draining = append(d.draining, iovaRange{q.base, q.base + uint64(q.size)*spec.CommandSize},
			iovaRange{q.cq.base, q.cq.base + uint64(q.cq.size)*spec.CompletionSize})
	}
	d.stopProcessing()
	d.dbbufReset() // dbbuf.go
	d.rdyAt = 0
	d.shnAt = 0
	d.hung = false
	d.grantSQ, d.grantCQ = d.c.cfg.MaxQueuePairs, d.c.cfg.MaxQueuePairs
	d.defaultFeatures()
	d.masked, d.clearLog = [8]bool{}, [8]uint8{}
	if d.rdy || d.fatal || d.shst != spec.SHSTNormal {
		d.offAt = after(t, d.c.cfg.DisableDelay)
		if d.offAt == t {
			d.finishDisable()
		}
	}
}

// finishDisable completes a controller reset: RDY, CFS and SHST clear.
func (d *device) finishDisable() {
	d.offAt = 0
	d.rdy, d.fatal, d.shst = false, false, spec.SHSTNormal
	d.draining = d.draining[:0]
}

// stopProcessing forgets every queue and every command the device holds;
// commands waiting for their latency are never executed.
func (d *device) stopProcessing() {
	d.enabled = false
	for i := range d.sqs {
		d.sqs[i].live = false
		d.sqs[i].clearCIDs()
		d.cqs[i].live = false
	}
	d.live = d.live[:0]
	d.held = d.held[:0]
	d.aers = d.aers[:0]
	d.cmds.filter(func(*pendingCmd) bool { return false })
	d.poisonDoorbells()
}

// enable starts enabling: the admin queue comes from AQA, ASQ and ACQ and
// CSTS.RDY sets after ReadyDelay. Settings the fake cannot work with set
// CSTS.CFS, as a controller would.
func (d *device) enable(cc spec.CC, t int64) {
	d.shst = spec.SHSTNormal
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
	d.rdyAt = after(t, d.c.cfg.ReadyDelay)
	if d.rdyAt == t {
		d.rdyAt = 0
		d.becomeReady()
	}
}

// becomeReady sets CSTS.RDY: the admin queue is live.
func (d *device) becomeReady() {
	if d.fatalEnable > 0 {
		d.fatalEnable--
		d.rdy, d.fatal = true, true
		return
	}
	regs := d.c.regs
	aqa := spec.AQA(regs.Read32(spec.RegAQA))
	asq, acq := regs.Read64(spec.RegASQ), regs.Read64(spec.RegACQ)
	sqn, cqn := uint32(aqa.ASQS())+1, uint32(aqa.ACQS())+1
	d.cqs[0].reset(0, cqn, acq, d.c.cfg.DSTRD)
	d.sqs[0].reset(0, sqn, asq, &d.cqs[0], d.c.cfg.DSTRD)
	d.cqs[0].nsq = 1
	d.claimDoorbell(d.sqs[0].tailR, 0, false)
	d.claimDoorbell(d.cqs[0].headR, 0, true)
	d.live = append(d.live[:0], 0)
	d.rdy, d.enabled = true, true
	d.c.cnt.enables.Add(1)
	d.deliverEvents()
}

// fetched checks the command identifier of a command just taken from q:
// 0xFFFF, or one already outstanding on q, is a host error.
func (d *device) fetched(q *sqState, cmd *spec.Command) {
	if cmd.CID == 0xffff {
		d.hostError("queue %d: command identifier 0xFFFF (opcode %#x)", q.id, cmd.Opcode)
	}
	if q.markCID(cmd.CID) {
		d.hostError("queue %d: command identifier %#x is already outstanding (opcode %#x)", q.id, cmd.CID, cmd.Opcode)
	}
}

// dispatch runs a fetched command now or queues it for its latency.
func (d *device) dispatch(q *sqState, cmd *spec.Command) {
	d.fetched(q, cmd)
	if q.id == 0 && spec.Opcode(cmd.Opcode) == spec.AdminAbort && d.abortsOutstanding() >= abortLimit {
		d.hostError("more than ACL+1 (%d) Abort commands outstanding", abortLimit)
		d.post(q.cq, cqEntry{dw0: 1, sqHead: uint16(q.head), cid: cmd.CID,
			status: spec.MakeStatus(spec.SCTCommandSpecific, spec.SCAbortCommandLimitExceeded)})
		return
	}
	if q.id == 0 && cmd.PRP1 != 0 {
		d.checkAdminData(cmd)
	}
	if d.hung {
		d.held = append(d.held, heldCmd{sqid: q.id, cq: q.cq, e: cqEntry{sqid: q.id, cid: cmd.CID}, op: cmd.Opcode, prp1: cmd.PRP1})
		return
	}
	if d.faults.armed() {
		if lat, ok := d.faults.slow(q.id == 0, cmd); ok {
			d.seq++
			d.cmds.push(pendingCmd{due: now() + int64(lat), seq: d.seq, sq: q, cmd: *cmd, inProgress: true})
			return
		}
	}
	if q.id != 0 && d.lat != nil {
		if lat := d.lat(d.rng); lat > 0 {
			d.seq++
			d.cmds.push(pendingCmd{due: now() + int64(lat), seq: d.seq, sq: q, cmd: *cmd})
			return
		}
	}
	d.execute(q, cmd)
}

// runDue executes the commands whose latency passed.
func (d *device) runDue(t int64) bool {
	did := false
	for d.cmds.len() > 0 && d.cmds.peek().due <= t && d.enabled && !d.fatal {
		c := d.cmds.remove(0)
		if c.sq.live {
			d.execute(c.sq, &c.cmd)
		}
		did = true
	}
	return did
}

// execute runs one command and posts its completion, applying whatever
// faults are armed.
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
	} else {
		for _, ctr := range d.counters {
			if ctr.m.matches(admin, cmd) {
				ctr.n.Add(1)
			}
		}
		if admin {
			st, dw0, post = d.admin(q, cmd)
		} else {
			st, dw0 = d.io(cmd)
		}
	}
	if !st.Success() {
		d.logError(q.id, cmd, st)
	}
	if !post {
		return
	}
	e := cqEntry{dw0: dw0, sqHead: uint16(q.head), sqid: q.id, cid: cmd.CID, status: st}
	if act.drop || act.lose {
		d.held = append(d.held, heldCmd{sqid: q.id, cq: q.cq, e: e, abortable: act.drop, op: cmd.Opcode, prp1: cmd.PRP1})
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
// see on q carries: not held, not waiting for its latency, not waiting in
// the submission queue up to the tail doorbell. (A command the host wrote
// but has not rung the doorbell for is invisible to any device.)
func (d *device) bogusCID(q *sqState) uint16 {
	for k := uint16(1); k < 256; k++ {
		cid := 0xffff - k
		if !d.outstanding(q, cid) {
			return cid
		}
	}
	return 0xffff
}

func (d *device) outstanding(q *sqState, cid uint16) bool {
	if q.cidOutstanding(cid) {
		return true
	}
	tail := d.hostTail(q) // dbbuf.go
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

// triggerEvent queues ev for the host (TriggerEvent).
func (d *device) triggerEvent(ev uint32) { d.queueEvent(ev) }

// checkUnmap is a host error when [iova, iova+n) holds a queue the
// controller can still reach: it is enabled (or has not yet reported
// the end of a disable) and bus mastering is on.
func (d *device) checkUnmap(iova uint64, n int) {
	if !d.bme || d.c.removed.Load() {
		return
	}
	end := iova + uint64(n)
	overlaps := func(r iovaRange) bool { return iova < r.end && r.start < end }
	for _, id := range d.live {
		q := &d.sqs[id]
		if overlaps(iovaRange{q.base, q.base + uint64(q.size)*spec.CommandSize}) {
			d.hostError("memory at %#x (%d bytes) unmapped while it holds live submission queue %d", iova, n, id)
		}
	}
	for i := range d.cqs {
		if cq := &d.cqs[i]; cq.live && overlaps(iovaRange{cq.base, cq.base + uint64(cq.size)*spec.CompletionSize}) {
			d.hostError("memory at %#x (%d bytes) unmapped while it holds live completion queue %d", iova, n, cq.id)
		}
	}
	d.dbbufCheckUnmap(iova, end) // dbbuf.go
	for _, r := range d.draining {
		if overlaps(r) {
			d.hostError("queue memory at %#x (%d bytes) unmapped before CSTS.RDY cleared after a disable", iova, n)
			return
		}
	}
}
