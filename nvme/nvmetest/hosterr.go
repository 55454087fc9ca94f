package nvmetest

import (
	"fmt"
	"sync"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// HostError is a mistake of the host the fake caught: something a real
// controller would report with an asynchronous error event, refuse, or
// silently misbehave on. Tests assert that none happened
// (Controller.HostErrors); a test that provokes one on purpose says so.
type HostError struct {
	At   time.Duration // since the fake was created
	What string
}

func (e HostError) String() string { return fmt.Sprintf("%v: %s", e.At, e.What) }

// hostErrLimit bounds the host errors kept; further ones are counted.
const hostErrLimit = 64

type hostErrs struct {
	mu   sync.Mutex
	list []HostError
	n    uint64
}

// hostError records a host mistake. Device goroutine.
func (d *device) hostError(format string, args ...any) {
	e := &d.c.herr
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.list) < hostErrLimit {
		e.list = append(e.list, HostError{At: time.Duration(now()), What: fmt.Sprintf(format, args...)})
	}
}

// HostErrors returns the host mistakes the fake caught so far (the first
// 64), after checking every doorbell once more. Any goroutine.
//
// What is a host error: a write to the doorbell of a queue that does not
// exist (never created, deleted, or gone with a controller reset), a
// doorbell value outside its queue, a submission queue tail moved past the
// head (more than size-1 entries), a completion queue head moved past the
// tail, command identifier 0xFFFF, a command identifier already
// outstanding on the same submission queue, a Get Log Page offset (or
// NUMDU) when LPA does not allow it, CC.EN set again before CSTS.RDY
// cleared, freeing queue memory the controller could still reach (enabled
// and bus master on), more Asynchronous Event Requests than AERL+1, and
// more Abort commands outstanding than ACL+1, and an admin command whose
// data page is that of an admin command still in flight.
func (c *Controller) HostErrors() []HostError {
	_ = c.call(func() { c.dev.checkDoorbells(true) })
	c.herr.mu.Lock()
	defer c.herr.mu.Unlock()
	return append([]HostError(nil), c.herr.list...)
}

// ClearHostErrors forgets the host errors caught so far: for a test that
// made a mistake on purpose, after checking it was caught. Any goroutine.
func (c *Controller) ClearHostErrors() {
	_ = c.call(func() { c.dev.checkDoorbells(true) })
	c.herr.mu.Lock()
	defer c.herr.mu.Unlock()
	c.herr.list, c.herr.n = nil, 0
}

// HostErrorCount returns how many host errors the fake caught, including
// those beyond the 64 HostErrors keeps. Any goroutine.
func (c *Controller) HostErrorCount() uint64 {
	_ = c.call(func() { c.dev.checkDoorbells(true) })
	c.herr.mu.Lock()
	defer c.herr.mu.Unlock()
	return c.herr.n
}

// doorbellPoison is what the fake keeps in the doorbell register of a
// queue that does not exist. Doorbells are write-only for the host; a
// value other than the poison means the host wrote one.
const doorbellPoison = 0xdeadbeef

// poisonDoorbells marks every doorbell of the window as belonging to no
// queue. Device goroutine.
func (d *device) poisonDoorbells() {
	step := uintptr(4) << d.c.cfg.DSTRD
	for off := uintptr(spec.RegDoorbellBase); off+4 <= RegisterSize; off += step {
		d.c.regs.Write32(off, doorbellPoison)
	}
}

// checkDoorbells looks for host writes to the doorbells of queues that do
// not exist: those up to MaxQueuePairs, or (all) every doorbell of the
// window. A write found is a host error and an asynchronous error event
// (Write to Invalid Doorbell Register). Device goroutine.
func (d *device) checkDoorbells(all bool) {
	if d.c.removed.Load() {
		return
	}
	step := uintptr(4) << d.c.cfg.DSTRD
	last := uintptr(RegisterSize) - 4
	if !all {
		last = min(last, spec.CQHeadDoorbell(uint16(len(d.sqs)-1), d.c.cfg.DSTRD))
	}
	regs := d.c.regs
	for off := uintptr(spec.RegDoorbellBase); off <= last; off += step {
		idx := int((off - spec.RegDoorbellBase) / step)
		qid, isCQ := idx/2, idx%2 == 1
		if qid < len(d.sqs) {
			if !isCQ && d.sqs[qid].live || isCQ && d.cqs[qid].live {
				continue
			}
		}
		if v := regs.Read32(off); v != doorbellPoison {
			kind := "submission queue tail"
			if isCQ {
				kind = "completion queue head"
			}
			d.hostError("write of %#x to the %s doorbell of queue %d, which does not exist", v, kind, qid)
			regs.Write32(off, doorbellPoison)
			d.errorEvent(spec.AEVErrorInvalidDoorbell)
		}
	}
}

// claimDoorbell gives the doorbell at off to a queue being created (value
// 0), after checking that the host did not write it while the queue did
// not exist. Device goroutine.
func (d *device) claimDoorbell(off uintptr, qid uint16, isCQ bool) {
	if v := d.c.regs.Read32(off); v != doorbellPoison && !d.c.removed.Load() {
		kind := "submission queue tail"
		if isCQ {
			kind = "completion queue head"
		}
		d.hostError("write of %#x to the %s doorbell of queue %d, which did not exist", v, kind, qid)
		d.errorEvent(spec.AEVErrorInvalidDoorbell)
	}
	d.c.regs.Write32(off, 0)
}

// errorEvent reports an error status asynchronous event with info, as a
// controller does for a bad doorbell write: an entry in the Error
// Information log and an event naming that log. Device goroutine.
func (d *device) errorEvent(info uint8) {
	d.errCount++
	e := &d.errLog[d.errCount%errLogEntries]
	*e = errEntry{count: d.errCount, sqid: 0xffff, cid: 0xffff, status: stInvalidFld}
	d.queueEvent(uint32(spec.AEVTypeError) | uint32(info)<<8 | uint32(spec.LogErrorInformation)<<16)
}
