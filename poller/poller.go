package poller

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

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
	limit int // most requests (in flight + waiting) taken from the ring
	hist  Histogram
	ops   opCounts     // completions by operation (stats.go)
	st    statusCounts // failed completions by status (stats.go)
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
	byCtrl []int32 // controller index -> index into qps, or -1
	tbl    *trackTable
	onDone func(*nvme.Request) // p.complete, made once

	tid      atomic.Int32  // kernel thread ID while the poller runs, else 0
	state    atomic.Uint32 // stateRunning, stateDraining, stateAborting
	sleeping uint32        // 1 while parked or about to park (atomic; a futex word)
	done     chan struct{} // closed when the goroutine has finished

	// Written by submitters.
	fullWaits atomic.Uint64
	busy      atomic.Uint64

	// Poller goroutine only.
	c         counters
	inflight  int   // requests handed to queue pairs, not completed
	idleSince int64 // monotonic ns of the first idle pass in a row, 0 when busy
	idleRun   int   // idle passes in a row
	yielding  bool  // the adaptive policy is in its yield phase
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

// kick wakes the poller if it is parked. Any goroutine.
func (p *Poller) kick() {
	if atomic.LoadUint32(&p.sleeping) != 0 && atomic.CompareAndSwapUint32(&p.sleeping, 1, 0) {
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
	return p.submitLocal(ci, r, monotonic())
}

func (p *Poller) submitLocal(ci int32, r *nvme.Request, stamp int64) error {
	if p.state.Load() != stateRunning {
		return errStoppedLocal
	}
	qi := p.byCtrl[ci]
	err := p.submit(qi, r, stamp)
	if err == nil {
		p.c.local++
	}
	return err
}

// submit hands r to queue pair qi with the poller's Done in place of the
// caller's. On error r is as the caller left it.
func (p *Poller) submit(qi int32, r *nvme.Request, stamp int64) error {
	if !p.tbl.put(tracked{req: r, done: r.Done, stamp: stamp, qp: qi}) {
		p.c.misuse++
		return nvme.ErrBusy
	}
	r.Done = p.onDone
	if err := p.qps[qi].qp.Submit(r); err != nil {
		e, _ := p.tbl.take(r)
		r.Done = e.done
		return err
	}
	p.inflight++
	return nil
}

// complete is the Done callback of every request the poller submits: it
// restores the caller's Done, records the latency, and calls it.
func (p *Poller) complete(r *nvme.Request) {
	e, ok := p.tbl.take(r)
	if !ok {
		// Not ours: cannot happen while requests are only submitted
		// through the poller. Nothing to call.
		p.c.misuse++
		return
	}
	r.Done = e.done
	p.inflight--
	p.c.completed++
	q := p.qps[e.qp]
	q.hist.record(monotonic() - e.stamp)
	q.count(r)
	if r.Err != nil && p.state.Load() == stateAborting {
		r.Err = &StopError{Cause: r.Err}
		p.c.failed++
	}
	e.done(r)
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
		if err := p.submit(qi, r, stamp); err != nil {
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
		n := p.take()
		for _, q := range p.qps {
			// Poll rings the doorbell for this pass's submissions
			// first (one write per queue pair), then reaps.
			n += q.qp.Poll()
		}
		p.c.loops++
		if p.c.loops&63 == 0 {
			if now := monotonic(); now-p.lastPub >= interval {
				p.publish(now)
			}
		}
		if n != 0 {
			p.idleRun, p.idleSince, p.yielding = 0, 0, false
			continue
		}
		p.c.idleLoops++
		if p.g.opts.Idle != IdleBusy {
			p.idle()
		}
	}
}

// idle runs after a pass that did nothing (adaptive policy): spin for
// SpinTime, then yield the processor on each pass until SpinTime+YieldTime,
// then park. With requests in flight it never parks (the device is
// expected to answer). The clock is read every 16 idle passes.
func (p *Poller) idle() {
	p.idleRun++
	if p.idleRun&15 != 0 {
		if p.yielding {
			p.c.yields++
			runtime.Gosched()
		}
		return
	}
	now := monotonic()
	if p.idleSince == 0 {
		p.idleSince = now
	}
	spin, yield := int64(p.g.opts.SpinTime), int64(p.g.opts.YieldTime)
	switch idleFor := now - p.idleSince; {
	case idleFor < spin:
	case idleFor < spin+yield || p.inflight != 0:
		p.yielding = true
		p.c.yields++
		runtime.Gosched()
	default:
		p.yielding = false
		p.park(now)
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
	if !p.in.empty() || p.state.Load() != stateRunning {
		atomic.StoreUint32(&p.sleeping, 0)
		return
	}
	for atomic.LoadUint32(&p.sleeping) == 1 {
		futexWait(&p.sleeping, 1)
	}
	p.idleRun, p.idleSince = 0, 0
}

// abort fails everything that remains: the ring's entries with ErrStopped,
// and (by closing the queue pairs) what is in flight, with a StopError.
func (p *Poller) abort() {
	for spins := 0; !p.in.drained(); spins++ {
		c, ok := p.in.peek()
		if !ok {
			// A submitter claimed a cell and has not published it yet.
			if spins > 64 {
				runtime.Gosched()
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

// closeQueues closes every queue pair (outstanding requests complete with
// an error, through complete). Poller goroutine only.
func (p *Poller) closeQueues() {
	var errs []error
	for _, q := range p.qps {
		if err := q.qp.Close(); err != nil {
			errs = append(errs, fmt.Errorf("poller %d: close queue %d of controller %d: %w", p.id, q.qid, q.ctrl, err))
		}
	}
	if p.closeErr == nil {
		p.closeErr = errors.Join(errs...)
	}
}

// beginStop closes the ring and asks the poller to drain. Any goroutine.
func (p *Poller) beginStop() {
	p.in.close()
	p.state.CompareAndSwap(stateRunning, stateDraining)
	p.kick()
}

// waitStop waits for the poller to finish draining, or for ctx to end, in
// which case it tells the poller to fail what remains and waits for that.
func (p *Poller) waitStop(ctx context.Context) error {
	select {
	case <-p.done:
		return p.closeErr
	case <-ctx.Done():
	}
	p.state.Store(stateAborting)
	p.kick()
	<-p.done
	return errors.Join(fmt.Errorf("poller %d: %w: %w", p.id, ErrStopped, context.Cause(ctx)), p.closeErr)
}

// clock is the monotonic time base of latency stamps.
var clockBase = time.Now()

func monotonic() int64 { return int64(time.Since(clockBase)) }
