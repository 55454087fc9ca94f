package poller

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/nvme"
)

// Poller states.
const (
	stateRunning  uint32 = iota
	stateDraining        // Stop called: refuse new work, finish what was accepted
	stateAborting        // Stop's context ended: fail what remains
)

// maxTake bounds the submissions one pass takes from the inbound ring, so
// completions are reaped between batches under a flood.
const maxTake = 256

// qstate is one queue pair of a poller.
type qstate struct {
	qp    *nvme.QueuePair
	ctrl  int32 // controller index in the Group
	qid   uint16
	depth int
	limit int          // most requests (in flight + waiting) taken from the ring
	ops   opCounts     // completions by operation (stats.go)
	st    statusCounts // failed completions by status (stats.go)
	done  bool         // closed, or left to a failed controller (closeQueues)
	irqs  uint64       // interrupts read from its eventfd (irq.go)
}

// Poller is one polling goroutine, locked to an OS thread pinned to one
// CPU, that owns one queue pair per controller it serves. It takes
// submissions from its inbound ring, submits them, rings each doorbell once
// per pass, and polls each queue pair; completion callbacks (Request.Done)
// run on it, inside that poll.
//
// Only the Group creates and stops pollers. Stats and CPU may be called
// from any goroutine; SubmitLocal only from the poller goroutine itself
// (from a Done callback).
type Poller struct {
	id  int
	cpu int
	g   *Group

	in     *ring
	qps    []*qstate
	byCtrl []int32             // controller index -> index into qps, or -1
	onDone func(*nvme.Request) // completeFunc's closure, made once

	tid      atomic.Int32  // kernel thread ID while the poller runs, else 0
	state    atomic.Uint32 // stateRunning, stateDraining, stateAborting
	sleeping uint32        // 1 (sleepFDs in fdSleep) while parked, napping or asleep, or about to (atomic; a futex word)
	irq      *irqWait      // ModeInterrupt, ModeHybrid: the eventfds it sleeps on (irq.go)
	src      sources       // work polled besides the queue pairs (source.go)
	kickers  atomic.Int32  // submitters about to write irq.wakeFD
	done     chan struct{} // closed when the goroutine has finished
	owned    atomic.Int64  // requests on the device while stopping (-1: not counted yet)
	reported bool          // Stop reported closeErr (Group.stopMu)

	// The direct path of a resubmission from Done (Handle.resubmit):
	// hand holds the address of the request whose Done runs, and a
	// submitter that resubmits it swaps in the address of marks[c] for
	// controller c. Addresses, not pointers: they are only compared
	// (the request and the marks stay reachable through their owners, and
	// Go's heap does not move), and an atomic.Uintptr is one instruction
	// where an atomic.Pointer is a runtime call with a write barrier,
	// twice per I/O (about 75 ns each in a TCG guest, issue 16).
	hand  atomic.Uintptr
	marks []nvme.Request // one per controller of the group; never submitted

	// Written by submitters.
	fullWaits atomic.Uint64
	busy      atomic.Uint64

	// Poller goroutine only.
	now       int64 // the pass's clock reading (Now), 0 until taken
	c         counters
	inflight  int   // requests handed to queue pairs, not completed
	idleSince int64 // monotonic ns of the first idle pass in a row, 0 when busy
	idleRun   int   // idle passes in a row
	lastPub   int64
	cpuNS     int64
	scratch   []uint64
	closeErr  error // errors closing the queue pairs, read after done

	pubSeq atomic.Uint64
	pub    []atomic.Uint64
}

// ID returns the poller's index in its Group. Any goroutine.
func (p *Poller) ID() int { return p.id }

// CPU returns the CPU the poller is pinned to. Any goroutine.
func (p *Poller) CPU() int { return p.cpu }

// onPoller reports whether the caller is p's goroutine: p's thread is
// locked to it, so the kernel thread ID tells. One gettid system call.
func (p *Poller) onPoller() bool {
	t := p.tid.Load()
	return t != 0 && t == threadID()
}

// kick wakes the poller if it is parked or asleep: one atomic load when
// it is not. Any goroutine.
func (p *Poller) kick() {
	s := atomic.LoadUint32(&p.sleeping)
	switch {
	case s == 0:
	case p.irq != nil:
		p.wakeIRQ()
	case s == sleepFDs:
		p.wakeFDs()
	case atomic.CompareAndSwapUint32(&p.sleeping, 1, 0):
		futexWake(&p.sleeping)
	}
}

// SubmitLocal submits r to this poller's queue pair for controller c,
// without going through the inbound ring. It is for Done callbacks that
// resubmit on the poller they run on (Handle.Submit detects that case
// only with Options.RouteByCPU, at two system calls a submission). Errors: ErrStopped once Stop
// was called, an error wrapping nvme.ErrInvalid when the poller has no
// queue pair for c, or what QueuePair.Submit returns; after an error Done
// is not called.
//
// Poller goroutine only.
func (p *Poller) SubmitLocal(c *nvme.Controller, r *nvme.Request) error {
	ci := p.g.ctrlIndex(c)
	if ci < 0 || p.byCtrl[ci] < 0 {
		return errNoQueue
	}
	if r.Done == nil {
		return errNoDone
	}
	return p.submit(p.byCtrl[ci], r, int64(p.Now()), true)
}

// submitLocal is SubmitLocal for a caller that knows r's controller by its
// index ci in the group.
func (p *Poller) submitLocal(ci int32, r *nvme.Request, stamp int64) error {
	return p.submit(p.byCtrl[ci], r, stamp, true)
}

// submit hands r to queue pair qi with the poller's Done in place of the
// caller's, which waits in r's Relay with the stamp and qi until the
// completion. local says the caller is a submission on the poller's
// goroutine (SubmitLocal and the like), refused once Stop was called and
// counted as local; take's submissions from the ring are neither. One
// function for both rather than a wrapper: a call costs about 40 ns in a
// TCG guest (issue 16). On error r is as the caller left it.
func (p *Poller) submit(qi int32, r *nvme.Request, stamp int64, local bool) error {
	if local && p.state.Load() != stateRunning {
		return errStoppedLocal
	}
	rl := r.Relay()
	if rl.Done != nil {
		// A poller holds r already: submitted twice while in flight.
		p.c.misuse++
		return nvme.ErrBusy
	}
	if o, _ := r.Owner().(*Poller); o != p {
		r.SetOwner(p)
	}
	*rl = nvme.Relay{Done: r.Done, Stamp: stamp, Index: qi}
	r.Done = p.onDone
	if err := p.qps[qi].qp.Submit(r); err != nil {
		r.Done = rl.Done
		*rl = nvme.Relay{}
		return err
	}
	p.inflight++
	if local {
		p.c.local++
	}
	return nil
}

// completeFunc returns the Done callback of every request the poller
// submits. It restores the caller's Done, records the latency, and calls
// it. While the caller's Done runs, p.hand holds r: a Handle.Submit of r
// then (from Done, or from any goroutine Done handed r to) claims it, and
// r goes to the claimed queue pair once Done has returned, on this
// goroutine, which owns the queue pairs. So the direct path needs no
// goroutine identity: whoever resubmits, the poller does the submission.
//
// A closure with the work in it rather than a method value:
// a method value is called through a wrapper the compiler makes, a second
// call per I/O (about 40 ns in a TCG guest, issue 16).
func (p *Poller) completeFunc() func(*nvme.Request) {
	return func(r *nvme.Request) {
		rl := r.Relay()
		done := rl.Done
		if done == nil || int(rl.Index) >= len(p.qps) {
			// Not ours: cannot happen while requests are only
			// submitted through the poller. Nothing to call.
			p.c.misuse++
			return
		}
		q := p.qps[rl.Index]
		now := int64(p.Now())
		lat := now - rl.Stamp
		*rl = nvme.Relay{}
		r.Done = done
		p.inflight--
		p.c.completed++
		op := opOf(r)
		o := &q.ops[op]
		if op != OpOther {
			o.bytes += uint64(len(r.Data)) // reads and writes only (OpStats.Bytes)
		}
		o.lat.record(lat)
		if !r.Status.Success() || r.Err != nil {
			q.countFailed(r)
		}
		if r.Err != nil && p.state.Load() == stateAborting {
			r.Err = &StopError{Cause: r.Err}
			p.c.failed++
		}
		me := uintptr(unsafe.Pointer(r))
		p.hand.Store(me)
		done(r)
		if m := p.hand.Swap(0); m != me {
			p.resubmitted(r, m, now)
		}
	}
}

// resubmitted submits r, which a Handle.Submit claimed during its Done by
// swapping in mark m, to the queue pair of m's controller. Its latency
// counts from now, when its previous command's completion was reaped (one
// clock read less per I/O; the Done in between is the caller's time). An
// error goes to r's Done: Submit already returned nil.
func (p *Poller) resubmitted(r *nvme.Request, m uintptr, now int64) {
	ci := int32(0)
	for ci < int32(len(p.marks)) && m != uintptr(unsafe.Pointer(&p.marks[ci])) {
		ci++
	}
	if err := p.submitLocal(ci, r, now); err != nil && !errors.Is(err, nvme.ErrBusy) {
		p.fail(r, err) // (ErrBusy: submitted twice while in flight; the first one completes it)
	}
}

// fail completes r, which never reached a queue pair, with err.
func (p *Poller) fail(r *nvme.Request, err error) {
	r.Err, r.DW0, r.Status = err, 0, 0
	p.c.completed++
	p.c.failed++
	r.Done(r)
}

// take moves submissions from the inbound ring to the queue pairs. A
// queue pair with limit requests in flight or waiting takes no more: the
// ring then fills and submitters see backpressure. The oldest entry
// blocks the ones behind it (one ring per poller keeps submission order).
func (p *Poller) take() int {
	n := 0
	for n < maxTake {
		c, ok := p.in.peek()
		if !ok {
			break
		}
		qi := p.byCtrl[c.ctrl]
		q := p.qps[qi]
		if q.qp.InFlight()+q.qp.Waiting() >= q.limit {
			break
		}
		r, stamp := c.req, c.stamp
		p.in.pop(c)
		p.c.taken++
		n++
		if err := p.submit(qi, r, stamp, false); err != nil {
			if errors.Is(err, nvme.ErrBusy) {
				continue // submitted twice while in flight: the first one completes it
			}
			p.fail(r, err)
		}
	}
	return n
}

// run is the poller goroutine.
func (p *Poller) run(started chan<- error) {
	runtime.LockOSThread()
	orig, err := threadAffinity()
	if err == nil {
		err = pinThread(p.cpu)
	}
	if err != nil {
		runtime.UnlockOSThread()
		started <- fmt.Errorf("poller %d: %w", p.id, err)
		return
	}
	p.tid.Store(threadID())
	p.publish(monotonic())
	started <- nil

	p.loop(int64(p.g.opts.StatsInterval))

	p.closeQueues()
	p.closeSources()
	p.closeIRQ()
	p.publish(monotonic())
	p.tid.Store(0)
	if restoreAffinity(orig) == nil {
		runtime.UnlockOSThread()
	} // else: exit locked, and the runtime ends the pinned thread
	close(p.done)
}

// loop polls until Stop's work is done.
func (p *Poller) loop(interval int64) {
	for {
		if st := p.state.Load(); st != stateRunning {
			if st == stateAborting {
				p.abort()
				return
			}
			if p.in.drained() && p.inflight == 0 {
				return
			}
		}
		// The ring's and the sources' checks inline here (take and
		// pollSources do not), so an idle pass makes no call for them.
		n := 0
		if _, ok := p.in.peek(); ok {
			n = p.take()
		}
		// Sources before the queue pairs: what they submit goes out
		// with this pass's doorbell.
		if p.src.active() {
			n += p.pollSources()
		}
		for _, q := range p.qps {
			// Poll rings the doorbell for this pass's submissions
			// first (one write per queue pair), then reaps.
			n += q.qp.Poll()
		}
		p.now = 0 // the next pass reads the clock again (Now)
		p.c.loops++
		if p.c.loops&63 == 0 {
			if now := monotonic(); now-p.lastPub >= interval {
				p.publish(now)
			}
		}
		if n != 0 {
			p.idleRun, p.idleSince = 0, 0
			continue
		}
		p.c.idleLoops++
		if p.irq == nil && p.g.opts.Idle == IdleBusy {
			continue
		}
		// The idle policies look at the clock every 16th idle pass
		// (ModeInterrupt sleeps after each). The count is kept here so
		// that the other 15 make no call: a completion waits for the
		// pass in progress to end.
		if p.idleRun++; p.idleRun&15 != 0 && p.g.opts.Mode != ModeInterrupt {
			continue
		}
		if p.irq != nil {
			p.idleIRQ()
		} else {
			p.idle()
		}
	}
}

// Naps of an adaptive poller with requests in flight last a sixteenth of
// the time it has waited so far, within these bounds.
const (
	napMin = 20 * time.Microsecond
	napMax = time.Millisecond
)

// idle runs after a pass that did nothing (adaptive policy). With nothing
// in flight it spins for SpinTime, then parks. With requests in flight it
// spins for SpinTime+YieldTime, then naps between passes. It never yields
// with runtime.Gosched: on a thread locked to the goroutine that is two
// thread hand-offs per call, paid by the next completion. The loop calls
// it every 16th idle pass, so the clock is read no more often.
func (p *Poller) idle() {
	now := monotonic()
	if p.idleSince == 0 {
		p.idleSince = now
	}
	idleFor := now - p.idleSince
	spin := int64(p.g.opts.SpinTime)
	switch {
	case !p.waiting():
		if idleFor >= spin {
			p.park(now)
		}
	case idleFor >= spin+int64(p.g.opts.YieldTime):
		p.nap(time.Duration(min(max(idleFor/16, int64(napMin)), int64(napMax))))
	}
}

// park sleeps until a submitter or Stop wakes the poller. Only called
// with nothing in flight, so no completion and no deadline can be missed.
// The poller's thread sleeps in futex(2) on the sleeping word, so the
// wake-up goes straight to it, not through the Go scheduler.
func (p *Poller) park(now int64) {
	p.c.parks++
	p.publish(now)
	atomic.StoreUint32(&p.sleeping, 1)
	// Re-check after announcing the sleep: a submitter that pushed before
	// it saw sleeping == 1 is seen here, one that pushed after wakes us
	// (and FUTEX_WAIT returns at once if the word is already 0).
	if !p.in.empty() || p.state.Load() != stateRunning || p.sourceWork() {
		atomic.StoreUint32(&p.sleeping, 0)
		return
	}
	if len(p.src.pfds) > 0 {
		atomic.StoreUint32(&p.sleeping, 0)
		p.fdSleep(-1)
		p.idleRun, p.idleSince = 0, 0
		return
	}
	for atomic.LoadUint32(&p.sleeping) == 1 {
		futexWait(&p.sleeping, 1)
	}
	p.idleRun, p.idleSince = 0, 0
}

// nap sleeps for d at most, with requests in flight: the device is slow,
// so the poller gives its CPU up for a fraction of the time it has been
// waiting. A submitter or Stop ends the nap early, as they end a park.
func (p *Poller) nap(d time.Duration) {
	p.c.yields++
	if len(p.src.pfds) > 0 {
		p.fdSleep(d)
		return
	}
	atomic.StoreUint32(&p.sleeping, 1)
	if p.in.empty() && p.state.Load() == stateRunning && !p.sourceWork() {
		futexWaitTimeout(&p.sleeping, 1, d)
	}
	atomic.StoreUint32(&p.sleeping, 0)
}

// abort fails everything that remains: the ring's entries with ErrStopped,
// and (by closing the queue pairs) what is in flight, with a StopError.
func (p *Poller) abort() {
	for spins := 0; !p.in.drained(); spins++ {
		c, ok := p.in.peek()
		if !ok {
			// A submitter claimed a cell and has not published it
			// yet: it is between two atomic operations.
			if spins > 64 {
				time.Sleep(time.Microsecond)
			}
			continue
		}
		r := c.req
		p.in.pop(c)
		p.c.taken++
		p.fail(r, errStoppedQueued)
	}
	p.closeQueues()
}

// Pauses between attempts to close a queue pair the device still owns.
const (
	reclosePauseMin = time.Millisecond
	reclosePauseMax = 50 * time.Millisecond
)

// closeQueues closes every queue pair (outstanding requests complete with
// an error, through complete). A queue pair whose queues could not be
// deleted while the controller may still use them (nvme.ErrDeviceOwned)
// keeps its requests and memory: the controller is reset, as Linux does
// when a queue cannot be deleted (the nvme package asks for that reset
// itself when the deletion timed out; the poller does if it did not, or
// if nothing happened within resetWait), and the poller closes the queue
// pair again once the reset (or a removal, or Close) let go of it; Stop
// reports the requests meanwhile. If the controller fails instead (a reset
// that did not complete), nothing can stop it but its Close: the poller
// leaves the queue pair to it, untouched, and its requests are never
// delivered (their buffers stay the device's). Poller goroutine only.
func (p *Poller) closeQueues() {
	p.owned.Store(int64(p.inflight))
	var errs []error
	var pending []*qstate
	for _, q := range p.qps {
		if !q.done {
			pending = append(pending, q)
		}
	}
	failedAt := map[int32]time.Time{}
	pause := reclosePauseMin
	for len(pending) > 0 {
		rest := pending[:0]
		for _, q := range pending {
			err := q.qp.Close()
			if !errors.Is(err, nvme.ErrDeviceOwned) {
				q.done = true
				if err != nil {
					errs = append(errs, fmt.Errorf("poller %d: close queue %d of controller %d: %w", p.id, q.qid, q.ctrl, err))
				}
				continue
			}
			c := p.g.ctrls[q.ctrl]
			if c.State() == nvme.StateFailed {
				q.done = true
				n := q.qp.InFlight() + q.qp.Waiting()
				errs = append(errs, fmt.Errorf("poller %d: queue %d of controller %d: %w: %w (a reset did not complete): the %d requests on it are never delivered, their memory stays the device's (the controller's Close stops it, or leaves that memory mapped for good)",
					p.id, q.qid, q.ctrl, nvme.ErrDeviceOwned, nvme.ErrFailed, n))
				continue
			}
			rest = append(rest, q)
			t, seen := failedAt[q.ctrl]
			if !seen {
				// Reported without wrapping ErrDeviceOwned: by the
				// time Stop returns this, it is over.
				failedAt[q.ctrl] = time.Now()
				errs = append(errs, fmt.Errorf("poller %d: close queue %d of controller %d: %v; the controller is reset to let go of it", p.id, q.qid, q.ctrl, err))
			}
			if (seen || !errors.Is(err, nvme.ErrTimeout)) && time.Since(t) >= resetWait && c.State() == nvme.StateReady {
				failedAt[q.ctrl] = time.Now()
				if err := c.Reset(); err != nil && c.State() != nvme.StateFailed {
					errs = append(errs, fmt.Errorf("poller %d: reset controller %d to release queue %d: %w", p.id, q.ctrl, q.qid, err))
				}
			}
		}
		pending = rest
		p.owned.Store(int64(p.inflight))
		if len(pending) > 0 {
			time.Sleep(pause)
			pause = min(2*pause, reclosePauseMax)
		}
	}
	p.closeErr = errors.Join(p.closeErr, errors.Join(errs...))
}

// resetWait is how long the poller waits for a reset someone else asked
// for before it resets a controller that holds a queue pair it closes.
const resetWait = time.Second

// beginStop closes the ring and asks the poller to drain. Any goroutine.
func (p *Poller) beginStop() {
	p.in.close()
	p.state.CompareAndSwap(stateRunning, stateDraining)
	p.kick()
}

// pendingError describes, for Stop, a poller that has not finished.
func (p *Poller) pendingError() error {
	n := p.owned.Load()
	if n < 0 {
		return fmt.Errorf("poller %d: %w: it has not finished and not yet closed its queue pairs (a Done callback may block)", p.id, nvme.ErrDeviceOwned)
	}
	return fmt.Errorf("poller %d: %w: %d requests still on the device; they are delivered with a *StopError once it lets go of them", p.id, nvme.ErrDeviceOwned, n)
}

// clock is the monotonic time base of latency stamps.
var clockBase = time.Now()

func monotonic() int64 { return int64(time.Since(clockBase)) }

// Monotonic returns the time on the clock the pollers stamp requests
// with: the time since an origin of the package's choosing (the same for
// every poller and every goroutine). Any goroutine.
func Monotonic() time.Duration { return time.Duration(monotonic()) }

// Now returns the poller's reading of Monotonic for its current pass:
// the first call in a pass reads the clock, and the later ones (the
// pass's other completions, the submissions from their Done callbacks and
// from its work sources) return that reading. So a pass that reaps a
// batch pays for one clock read, not one per completion and one per
// resubmission, as a bare submit/reap loop would; on hardware a read
// costs tens of nanoseconds, in a TCG guest about half a microsecond
// (issue 16). A completion reaped later in the pass was already posted
// when the pass began, so its latency is measured no shorter than it was;
// a resubmission's counts from the pass's reading, no later than the
// doorbell that sends it. Outside a pass (before the first one, or in the
// Done callbacks Stop runs) the first call reads the clock and the later
// ones share that reading. Poller goroutine only (Done callbacks and work
// sources).
func (p *Poller) Now() time.Duration {
	if p.now == 0 {
		p.now = monotonic()
	}
	return time.Duration(p.now)
}
