package nvme

import (
	"fmt"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// This file is the fabric side of the controller and its queue pairs
// (transport.go has the seam): register access through Property Get and
// Set, connecting queues, Keep Alive, and the reconnect that replaces a
// PCIe reset. Linux keeps the same split: fabrics.c (property access,
// connect) is shared by every fabric transport under core.c.

// reg32 reads a 32-bit register: an MMIO load on PCIe, a Property Get on
// a fabric (adminMu held: bring-up, reset, shutdown).
func (c *Controller) reg32(off uint32) (uint32, error) {
	if c.fab == nil {
		return c.regs.Read32(uintptr(off)), nil
	}
	v, err := c.propertyGet(off, 4)
	return uint32(v), err
}

// reg64 reads a 64-bit register (CAP) as reg32 does.
func (c *Controller) reg64(off uint32) (uint64, error) {
	if c.fab == nil {
		return c.regs.Read64(uintptr(off)), nil
	}
	return c.propertyGet(off, 8)
}

// setReg32 writes a 32-bit register: an MMIO store on PCIe, a Property Set
// on a fabric (adminMu held).
func (c *Controller) setReg32(off, v uint32) error {
	if c.fab == nil {
		c.regs.Write32(uintptr(off), v)
		return nil
	}
	cmd := (&fabrics.PropertySetCommand{Attrib: fabrics.PropertyAttrib(4), Offset: off, Value: uint64(v)}).SQE()
	if _, err := c.adminExec(cmd, nil, nil, c.opts.AdminTimeout, true); err != nil {
		return fmt.Errorf("property set %#x: %w", off, err)
	}
	return nil
}

// propertyGet reads a property of size bytes (NVMe Base 2.0, 6.5).
// adminMu held.
func (c *Controller) propertyGet(off uint32, size int) (uint64, error) {
	cmd := (&fabrics.PropertyGetCommand{Attrib: fabrics.PropertyAttrib(size), Offset: off}).SQE()
	dw0, dw1, err := c.adminExecDW(cmd, nil, nil, c.opts.AdminTimeout, true)
	if err != nil {
		return 0, fmt.Errorf("property get %#x: %w", off, err)
	}
	if size == 4 {
		return uint64(dw0), nil
	}
	return uint64(dw0) | uint64(dw1)<<32, nil
}

// Property reads the controller register (property) at off: CAP (8
// bytes), VS, CC, CSTS, NSSR, CRTO (4 bytes); an MMIO load on PCIe, a
// Property Get on a fabric. For show-regs style tools. Any goroutine.
func (c *Controller) Property(off uint32) (uint64, error) {
	size, ok := fabrics.PropertySize(off)
	if !ok {
		return 0, invalidf("property %#x: not a controller property", off)
	}
	if c.fab == nil {
		if int(off)+size > c.regs.Len() {
			return 0, invalidf("property %#x: outside the register window", off)
		}
		if size == 8 {
			return c.regs.Read64(uintptr(off)), nil
		}
		return uint64(c.regs.Read32(uintptr(off))), nil
	}
	if err := c.waitReconnect(time.Now().Add(c.opts.AdminTimeout)); err != nil {
		return 0, fmt.Errorf("property %#x: %w", off, err)
	}
	c.adminMu.Lock()
	defer c.adminMu.Unlock()
	switch s := c.State(); s {
	case StateRemoved:
		return 0, ErrRemoved
	case StateClosed:
		return 0, ErrClosed
	}
	return c.propertyGet(off, size)
}

// Fabric returns the controller's fabric transport, nil on PCIe. Any
// goroutine.
func (c *Controller) Fabric() Fabric { return c.fab }

// connectAdmin connects the admin queue to a new controller (a new
// association). adminMu held.
func (c *Controller) connectAdmin() error {
	c.admin.dropTransport()
	kato := max(c.opts.KeepAliveTimeout, 0)
	xq, err := c.fab.ConnectQueue(QueueParams{QID: 0, Depth: int(c.admin.size), KeepAlive: kato, MaxTransfer: adminMaxXfer, SlotBits: c.admin.slotBits})
	if err != nil {
		return err
	}
	c.admin.setTransport(xq)
	c.ka.outstanding = false
	c.ka.last = time.Now()
	return nil
}

// inCapsule returns the in-capsule data an I/O command carries
// (IOCCSZ*16 bytes of capsule less the 64-byte command), 0 when the
// controller reports none.
func (c *Controller) inCapsule() int {
	if c.ident == nil || c.ident.IOCCSZ <= 4 {
		return 0
	}
	return int(min(c.ident.IOCCSZ, 1<<24))*16 - spec.CommandSize
}

// connectQueue connects I/O queue pair q on a fabric: a new connection
// and a Fabrics Connect to the current controller. It runs on q's owner
// (NewQueuePair, recovery after a reconnect) without the admin lock. The
// queue belongs to the epoch seen before connecting: if a reset starts
// meanwhile, the new connection is dropped and q stays out of step.
func (c *Controller) connectQueue(q *QueuePair) error {
	e := c.epoch.Load()
	if s := epochState(e); s != StateReady {
		return fmt.Errorf("connect io queue %d: controller is %v", q.id, s)
	}
	xq, err := c.fab.ConnectQueue(QueueParams{QID: q.id, Depth: int(q.size), InCapsule: c.inCapsule(), MaxTransfer: q.maxXfer, SlotBits: q.slotBits})
	if err != nil {
		return fmt.Errorf("connect io queue %d: %w", q.id, err)
	}
	if c.epoch.Load() != e {
		_ = xq.Close()
		return fmt.Errorf("connect io queue %d: the controller was reset meanwhile", q.id)
	}
	q.dropTransport()
	q.setTransport(xq)
	q.epoch = e
	return nil
}

// reconnect is a fabric controller's reset: it ends every connection
// (the association is gone), then connects the admin queue to a new
// controller and brings it up, every ReconnectDelay until it succeeds.
// When CtrlLossTimeout passes first, the controller is given up:
// StateRemoved, and every request fails with ErrRemoved. Each queue
// pair reconnects itself the next time its owner polls (recover). On
// success it returns with adminMu held.
func (c *Controller) reconnect() error {
	start := time.Now()
	loss := c.opts.CtrlLossTimeout
	for attempt := 1; ; attempt++ {
		c.fab.Disconnect()
		c.adminMu.Lock()
		var err error
		for _, s := range fabricReconnect {
			if err = s.run(c); err != nil {
				err = fmt.Errorf("%s: %w", s.name, err)
				break
			}
		}
		if err == nil {
			if attempt > 1 {
				c.logf("nvme: %s: reconnected after %d attempts in %v", c.name(), attempt, time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		// Commands that came in meanwhile wait no longer.
		c.admin.failAll(fmt.Errorf("admin queue: %w: reconnecting: %w", ErrAborted, err))
		c.adminMu.Unlock()
		c.logf("nvme: %s: reconnect attempt %d: %v", c.name(), attempt, err)
		if loss >= 0 && time.Since(start)+c.opts.ReconnectDelay > loss {
			c.fab.Disconnect()
			c.markRemoved(fmt.Sprintf("no reconnect within the controller loss timeout %v", loss))
			return fmt.Errorf("reconnect: %w: gave up after %d attempts in %v: %w", ErrRemoved, attempt, time.Since(start).Round(time.Millisecond), err)
		}
		t := time.NewTimer(c.opts.ReconnectDelay)
		select {
		case <-c.stop:
			t.Stop()
			return fmt.Errorf("reconnect: the controller is closing: %w", err)
		case <-t.C:
		}
	}
}

// waitReconnect waits while a fabric controller is being reconnected,
// until deadline.
func (c *Controller) waitReconnect(deadline time.Time) error {
	for c.State() == StateResetting {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: the controller is being reconnected", ErrTimeout)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// disconnectAll ends every connection of a fabric controller.
func (c *Controller) disconnectAll() {
	if c.fab != nil {
		c.fab.Disconnect()
	}
}

// keepAlive is the state of the Keep Alive commands a fabric controller
// sends every KATO/2 (NVMe Base 2.0, 3.9 "Keep Alive"). Guarded by
// adminMu.
type keepAlive struct {
	req         Request
	outstanding bool
	sent, last  time.Time
}

// keepAliveOnce sends a Keep Alive when KATO/2 passed since the last, and
// asks for a reconnect when one got no answer within KATO: the
// controller (or the path to it) went silent. adminMu held; the watcher.
func (c *Controller) keepAliveOnce() {
	kato := c.opts.KeepAliveTimeout
	if kato <= 0 || c.admin == nil {
		return
	}
	now := time.Now()
	if c.ka.outstanding {
		if now.Sub(c.ka.sent) > kato {
			c.requestReset(epochGen(c.epoch.Load()), fmt.Sprintf("keep alive: no answer within %v", kato))
		}
		return
	}
	if now.Sub(c.ka.last) < kato/2 {
		return
	}
	r := &c.ka.req
	if r.Done == nil {
		r.Done = func(r *Request) {
			c.ka.outstanding = false
			if r.Err != nil {
				c.logf("nvme: %s: keep alive: %v", c.name(), r.Err)
			}
		}
	}
	r.Cmd = spec.Command{Opcode: uint8(spec.AdminKeepAlive)}
	r.Data = nil
	if err := c.admin.Submit(r); err != nil {
		c.logf("nvme: %s: keep alive: %v", c.name(), err)
		return
	}
	c.admin.Ring()
	c.ka.outstanding, c.ka.sent, c.ka.last = true, now, now
}

// The queue pair's fabric side.

// initFabric makes q a fabric queue pair: no rings; a small scratch per
// tracker for the one Dataset Management range a namespace builder puts
// there; not connected yet.
func (q *QueuePair) initFabric() {
	q.fabric = true
	q.cqeFn = q.completeCQE
	scratch := make([]byte, 16*len(q.trk))
	for i := range q.trk {
		q.trk[i].prp = scratch[16*i : 16*i+16 : 16*i+16]
	}
	q.xerr = errNotConnected
}

// setTransport gives q its connection.
func (q *QueuePair) setTransport(xq QueueTransport) {
	q.xq, q.xerr = xq, nil
}

// dropTransport closes q's connection, if any; q waits for the next.
func (q *QueuePair) dropTransport() {
	if q.xq != nil {
		_ = q.xq.Close()
		q.xq = nil
	}
	if q.fabric && q.xerr == nil {
		q.xerr = errNotConnected
	}
}

// fabricFailed records that q's connection ended and asks the controller
// to reconnect. The commands in flight stay tracked: the reconnect
// resubmits those that had no completion.
func (q *QueuePair) fabricFailed(err error) {
	if q.xerr != nil {
		return
	}
	q.xerr = err
	reason := fmt.Sprintf("queue %d: %v", q.id, err)
	q.ctrl.logf("nvme: %s: %s", q.ctrl.name(), reason)
	// An I/O queue asks in step with its own epoch (a reconnect since
	// then already settled it); the admin queue is never out of step:
	// it asks for the generation in force.
	gen := epochGen(q.epoch)
	if q.admin {
		gen = epochGen(q.ctrl.epoch.Load())
	}
	q.ctrl.requestReset(gen, reason)
}

// issueFabric hands r, under cid in tracker t (slot), to the transport,
// and returns the command as issued.
func (q *QueuePair) issueFabric(t *tracker, slot, cid uint16, r *Request) *spec.Command {
	cmd := &q.xcmd
	*cmd = r.Cmd
	cmd.CID = cid
	data := r.Data
	if r.dsmUsed {
		putDSM(t.prp, &r.dsm)
		data = t.prp[:16]
	}
	q.xq.Issue(slot, cmd, data)
	q.xdirty = true
	return cmd
}

// flushFabric sends what was issued.
func (q *QueuePair) flushFabric() {
	if q.xerr != nil || !q.xdirty {
		return
	}
	q.xdirty = false
	if err := q.xq.Flush(); err != nil {
		q.fabricFailed(err)
		return
	}
	q.stats.SQDoorbells++
}

// pollFabric is Poll on a fabric queue pair: send what was issued, reap
// what arrived, issue waiting requests into the freed command IDs and
// send them.
func (q *QueuePair) pollFabric() int {
	if q.xerr != nil {
		q.stats.IdlePolls++
		return 0
	}
	q.flushFabric()
	n := 0
	if q.xerr == nil {
		var err error
		n, err = q.xq.Reap(maxReap, q.cqeFn)
		if q.term != nil || q.freed { // a Done callback closed us
			return n
		}
		if err != nil {
			q.fabricFailed(err)
		}
	}
	if n == 0 {
		q.stats.IdlePolls++
	}
	for q.waitHead != nil && q.freeN > 0 && !q.stale() && q.xerr == nil {
		q.issue(q.popWait())
	}
	q.flushFabric()
	return n
}

// reapFabricStale completes what the connection delivered before it
// ended (buffered, not yet parsed): those commands ran on the controller
// and are not resubmitted.
func (q *QueuePair) reapFabricStale() {
	if q.xq == nil {
		return
	}
	before := q.stats.Completed
	_, _ = q.xq.Reap(int(q.size), q.cqeFn)
	q.stats.Reaped += q.stats.Completed - before
}

// completeCQE is the transport's done callback: complete with the whole
// completion (dword 1 kept for Property Get).
func (q *QueuePair) completeCQE(cqe *spec.Completion) {
	cid := cqe.CID
	if slot := cid & (1<<q.slotBits - 1); int(slot) < len(q.trk) {
		if t := &q.trk[slot]; t.req != nil && t.gen == cid>>q.slotBits {
			t.req.dw1 = cqe.DW1
		}
	}
	q.complete(cid, cqe.StatusField(), cqe.DW0, cqe.SQHead)
}
