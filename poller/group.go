package poller

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/internal/cpuset"
	"github.com/seedb8fa28ef/gonvme/nvme"
)

// Sentinel errors.
var (
	// ErrBusy: the poller's inbound ring is full and Options.Full is
	// FullFail (or the submitter is itself a poller, which never waits
	// for another poller). The request was not taken; Done will not be
	// called. Try again later. It matches syscall.EAGAIN with errors.Is,
	// which is how package ddi recognizes a Submitter without room.
	ErrBusy error = busyError{}
	// ErrStopped: the Group is stopping or stopped. Returned by Submit
	// for new work (Done is not called), and delivered through Done (in
	// Request.Err, possibly inside a *StopError) for work that Stop's
	// context cut short.
	ErrStopped = errors.New("poller: stopped")
)

// Errors returned on the hot path are made once, so returning them
// allocates nothing.
var (
	errStoppedQueued = fmt.Errorf("%w: request was still in the submission ring when the stop deadline passed", ErrStopped)
	errStoppedLocal  = fmt.Errorf("%w: the poller is stopping and takes no new work", ErrStopped)
	errStoppedRing   = fmt.Errorf("%w: the poller's submission ring is closed", ErrStopped)
	errNoQueue       = fmt.Errorf("poller: %w: the controller is not served by this poller", nvme.ErrInvalid)
	errNotInGroup    = fmt.Errorf("poller: %w: the controller is not in this group", nvme.ErrInvalid)
	errNoDone        = fmt.Errorf("poller: %w: request has no Done callback", nvme.ErrInvalid)
)

// busyError is ErrBusy's type: a comparable value that also matches
// syscall.EAGAIN.
type busyError struct{}

func (busyError) Error() string { return "poller: submission ring full" }

// Is reports whether target is syscall.EAGAIN.
func (busyError) Is(target error) bool { return target == syscall.EAGAIN }

// StopError is delivered in Request.Err when Stop's context ended while
// the request was outstanding on the device, and the request failed with
// Cause when the poller closed its queue pair. The poller delivers it only
// once the device can no longer touch the request's memory: the
// controller deleted the queue pair's queues (a deleted submission queue
// has no command left), or, when deleting them failed, the controller was
// reset (which disables it first), removed or closed since. Until then the
// request stays undelivered and its queue pair's memory stays allocated,
// even after Stop returned (see Group.Stop). If the reset fails too (the
// controller is Failed), they are never delivered: only the controller's
// Close can stop it. It matches ErrStopped with errors.Is, and Cause
// through Unwrap.
type StopError struct {
	Cause error
}

func (e *StopError) Error() string {
	return "poller: stopped before the request completed: " + e.Cause.Error()
}

// Is reports whether target is ErrStopped.
func (e *StopError) Is(target error) bool { return target == ErrStopped }

// Unwrap returns the queue pair's error.
func (e *StopError) Unwrap() error { return e.Cause }

// IdlePolicy says what a poller does when a pass finds no work.
type IdlePolicy uint8

const (
	// IdleAdaptive, with nothing in flight, spins for SpinTime and then
	// parks: the poller's thread sleeps in futex(2) until a submission or
	// Stop wakes it. With requests in flight it spins (a completion may
	// come any moment) for SpinTime+YieldTime, and after that, the device
	// being slow, naps between passes: a futex wait with a timeout of a
	// sixteenth of the time it has waited so far (20 µs to 1 ms), which a
	// submission ends early. It never calls runtime.Gosched, whose two
	// thread hand-offs per call on a locked thread would delay a
	// completion. The default.
	IdleAdaptive IdlePolicy = iota
	// IdleBusy polls without pause: lowest latency, one CPU (and one Go
	// P) spent per poller at all times.
	IdleBusy
)

// FullPolicy says what a submitter does when the inbound ring is full.
type FullPolicy uint8

const (
	// FullWait spins, then yields, then sleeps briefly, until there is
	// room. The default.
	FullWait FullPolicy = iota
	// FullFail returns ErrBusy at once.
	FullFail
)

// Options configure a Group. The zero value gives the defaults.
type Options struct {
	// CPUs are the CPUs to run one poller each on. Default: every CPU
	// the process may run on.
	CPUs []int
	// QueueDepth is the depth of each I/O queue pair (0: the
	// controller's Options.IOQueueDepth).
	QueueDepth int
	// RingSize is the number of entries of each poller's inbound ring,
	// rounded up to a power of two. Default 1024.
	RingSize int
	// RouteByCPU routes a submission to the poller on the caller's CPU
	// when one runs there (one getcpu system call per submission), and
	// detects a Done callback resubmitting on its own poller (one gettid
	// more) to take the direct path. Off by default: submissions go to
	// the pollers in turn, which costs one atomic add, and callbacks that
	// resubmit use Poller.SubmitLocal for the direct path.
	RouteByCPU bool
	// Full is the backpressure policy.
	Full FullPolicy
	// Idle is the idle policy of ModePoll.
	Idle IdlePolicy
	// Mode is how pollers wait: ModePoll (the default), ModeInterrupt
	// or ModeHybrid (irq.go). The last two give every queue pair its
	// own interrupt vector (nvme.Controller.NewInterruptQueuePair).
	Mode Mode
	// SpinTime and YieldTime are the phases of IdleAdaptive: an idle
	// poller spins SpinTime before it parks; with requests in flight, it
	// spins SpinTime+YieldTime before it naps. Defaults 50 µs and 1 ms.
	// In ModeHybrid a poller spins SpinTime before it sleeps.
	SpinTime, YieldTime time.Duration
	// StopGrace bounds how long Stop waits for the pollers once its
	// context has ended (default 1 s): see Group.Stop.
	StopGrace time.Duration
	// StatsInterval is how often a busy poller publishes its counters.
	// Default 1 ms.
	StatsInterval time.Duration
}

func (o *Options) setDefaults() error {
	if len(o.CPUs) == 0 {
		cpus, err := cpuset.Allowed()
		if err != nil {
			return fmt.Errorf("poller: %w", err)
		}
		o.CPUs = cpus
	}
	seen := map[int]bool{}
	for _, c := range o.CPUs {
		if c < 0 || c >= 1024 || seen[c] {
			return fmt.Errorf("poller: %w: cpu list %v: each cpu once, 0 to 1023", nvme.ErrInvalid, o.CPUs)
		}
		seen[c] = true
	}
	if o.Mode > ModeHybrid {
		return fmt.Errorf("poller: %w: %v", nvme.ErrInvalid, o.Mode)
	}
	if o.RingSize <= 0 {
		o.RingSize = 1024
	}
	if o.SpinTime <= 0 {
		o.SpinTime = 50 * time.Microsecond
	}
	if o.YieldTime <= 0 {
		o.YieldTime = time.Millisecond
	}
	if o.StatsInterval <= 0 {
		o.StatsInterval = time.Millisecond
	}
	if o.StopGrace <= 0 {
		o.StopGrace = time.Second
	}
	return nil
}

// Group is a set of pollers, one per CPU, serving a set of controllers
// with one I/O queue pair per poller and controller (as far as each
// controller's IOQueues allows). Any goroutine may call its methods.
type Group struct {
	opts    Options
	ctrls   []*nvme.Controller
	pollers []*Poller
	handles []*Handle

	stopMu  sync.Mutex
	stopped bool
}

// Handle submits requests for one controller of a Group. It satisfies
// `interface{ Submit(*nvme.Request) error }`. Any goroutine.
type Handle struct {
	g       *Group
	ctrl    *nvme.Controller
	idx     int32
	pollers []*Poller // those with a queue pair for ctrl, for round robin
	byCPU   []*Poller // indexed by CPU: the poller there, if it serves ctrl
	rr      atomic.Uint32
}

// New starts one poller per CPU in opts.CPUs and gives each one queue
// pair on every controller, up to the controller's IOQueues (controller i
// takes its queue pairs on pollers i, i+1, ... in turn, so that controllers
// short of queues spread). Stop or Close ends it.
func New(ctrls []*nvme.Controller, opts *Options) (_ *Group, err error) {
	g := &Group{}
	if opts != nil {
		g.opts = *opts
		g.opts.CPUs = slices.Clone(opts.CPUs)
	}
	if err := g.opts.setDefaults(); err != nil {
		return nil, err
	}
	if len(ctrls) == 0 {
		return nil, fmt.Errorf("poller: %w: no controllers", nvme.ErrInvalid)
	}
	g.ctrls = slices.Clone(ctrls)
	maxCPU := slices.Max(g.opts.CPUs)
	for i, cpu := range g.opts.CPUs {
		p := &Poller{
			id: i, cpu: cpu, g: g,
			in:     newRing(g.opts.RingSize),
			byCtrl: make([]int32, len(ctrls)),
			done:   make(chan struct{}),
		}
		for j := range p.byCtrl {
			p.byCtrl[j] = -1
		}
		p.onDone = p.completeFunc()
		p.src.wakeFD = -1
		p.marks = make([]nvme.Request, len(ctrls))
		p.owned.Store(-1)
		g.pollers = append(g.pollers, p)
	}
	// Until the pollers start, this goroutine owns the queue pairs.
	defer func() {
		if err != nil {
			for _, p := range g.pollers {
				for _, q := range p.qps {
					q.qp.Close()
				}
			}
		}
	}()
	for ci, c := range ctrls {
		if slices.Index(ctrls, c) != ci || c == nil {
			return nil, fmt.Errorf("poller: %w: controller %d is nil or listed twice", nvme.ErrInvalid, ci)
		}
		h := &Handle{g: g, ctrl: c, idx: int32(ci), byCPU: make([]*Poller, maxCPU+1)}
		n := min(len(g.pollers), c.IOQueues())
		for k := range n {
			p := g.pollers[(ci+k)%len(g.pollers)]
			newQP := c.NewQueuePair
			if g.opts.Mode != ModePoll {
				newQP = c.NewInterruptQueuePair
			}
			qp, err := newQP(g.opts.QueueDepth)
			if err != nil {
				return nil, fmt.Errorf("poller: controller %d, poller %d: %w", ci, p.id, err)
			}
			p.byCtrl[ci] = int32(len(p.qps))
			p.qps = append(p.qps, &qstate{qp: qp, ctrl: int32(ci), qid: qp.ID(), depth: qp.Depth(),
				limit: 2 * (qp.Depth() - 1)})
			h.pollers = append(h.pollers, p)
			h.byCPU[p.cpu] = p
		}
		g.handles = append(g.handles, h)
	}
	for _, p := range g.pollers {
		p.pub = make([]atomic.Uint64, pubWords(len(p.qps)))
		p.scratch = make([]uint64, 0, len(p.pub))
		if g.opts.Mode != ModePoll {
			if p.irq, err = newIRQWait(p); err != nil {
				for _, q := range g.pollers {
					if q.irq != nil && q != p {
						closeFD(q.irq.wakeFD)
					}
				}
				return nil, err
			}
		}
	}
	for i, p := range g.pollers {
		started := make(chan error, 1)
		go p.run(started)
		if serr := <-started; serr != nil {
			// Pollers not started still belong to us; stop the others.
			for _, rest := range g.pollers[i:] {
				for _, q := range rest.qps {
					q.qp.Close()
				}
				if rest.irq != nil {
					closeFD(rest.irq.wakeFD)
				}
			}
			g.pollers = g.pollers[:i]
			g.Stop(context.Background())
			return nil, serr
		}
	}
	return g, nil
}

// Pollers returns the pollers, in the order of Options.CPUs.
func (g *Group) Pollers() []*Poller { return slices.Clone(g.pollers) }

// Handle returns the submission handle of controller c, or nil if c is
// not in the group.
func (g *Group) Handle(c *nvme.Controller) *Handle {
	if i := g.ctrlIndex(c); i >= 0 {
		return g.handles[i]
	}
	return nil
}

func (g *Group) ctrlIndex(c *nvme.Controller) int32 {
	for i, x := range g.ctrls {
		if x == c {
			return int32(i)
		}
	}
	return -1
}

// Submit submits r to controller c; see Handle.Submit.
func (g *Group) Submit(c *nvme.Controller, r *nvme.Request) error {
	i := g.ctrlIndex(c)
	if i < 0 {
		return errNotInGroup
	}
	return g.handles[i].Submit(r)
}

// Stats returns a snapshot of every poller's counters.
func (g *Group) Stats() []PollerStats {
	s := make([]PollerStats, len(g.pollers))
	for i, p := range g.pollers {
		s[i] = p.Stats()
	}
	return s
}

// Stop refuses new work (Submit returns ErrStopped), lets every poller
// finish what it accepted, closes the queue pairs on their pollers, and
// returns once every poller goroutine has ended and released its OS
// thread.
//
// If ctx ends first, the pollers fail what remains: requests still in a
// ring with ErrStopped, requests on the device with a *StopError when
// their queue pair is closed. Stop then waits at most Options.StopGrace
// more, and returns an error wrapping ErrStopped and the context's cause.
// A poller that has not finished by then (deleting its queues takes long,
// or failed and the poller waits for the controller reset it asked for, or
// a Done callback blocks) is reported in the error, which then also wraps
// nvme.ErrDeviceOwned and gives the number of requests that poller still
// had on the device: they are delivered later, with a *StopError, once
// the device cannot touch their memory any more (see StopError). Until a
// Stop returns without nvme.ErrDeviceOwned, do not close the controllers
// nor reuse the memory of requests not yet delivered. The one exception:
// an error that also wraps nvme.ErrFailed names a controller that failed
// (a reset did not complete); the poller has let go of its queue pairs,
// their requests are never delivered, and the controller's Close is what
// stops it (or leaves their memory mapped for good).
//
// So Stop returns by ctx's deadline plus StopGrace (the Done callbacks of
// the requests failed from the rings run in that time; they must not
// block). Every accepted request completes exactly once either way.
// Calling Stop again waits, by the same rule with its own ctx, for the
// pollers still running, and returns the errors of closing their queue
// pairs, or nil.
//
// Any goroutine except a poller's (from a Done callback it would wait for
// itself).
func (g *Group) Stop(ctx context.Context) error {
	g.stopMu.Lock()
	defer g.stopMu.Unlock()
	if !g.stopped {
		g.stopped = true
		for _, p := range g.pollers {
			p.beginStop()
		}
	}
	var errs []error
	ended := false
drain:
	for _, p := range g.pollers {
		select {
		case <-p.done:
		case <-ctx.Done():
			ended = true
			break drain
		}
	}
	if ended {
		for _, p := range g.pollers {
			p.state.Store(stateAborting)
			p.kick()
		}
		t := time.NewTimer(g.opts.StopGrace)
		defer t.Stop()
	grace:
		for _, p := range g.pollers {
			select {
			case <-p.done:
			case <-t.C:
				break grace
			}
		}
		errs = append(errs, fmt.Errorf("%w: %w", ErrStopped, context.Cause(ctx)))
	}
	for _, p := range g.pollers {
		select {
		case <-p.done:
			if !p.reported {
				p.reported = true
				errs = append(errs, p.closeErr)
			}
		default:
			errs = append(errs, p.pendingError())
		}
	}
	return errors.Join(errs...)
}

// Close stops the group, waiting as long as the outstanding requests take
// (their controllers' command timeouts bound that), and returns the errors
// of closing the queue pairs. The controllers stay open.
func (g *Group) Close() error { return g.Stop(context.Background()) }

// Controller returns the controller the handle submits to.
func (h *Handle) Controller() *nvme.Controller { return h.ctrl }

// Submit hands r to a poller that owns a queue pair on the handle's
// controller. Routing: a request resubmitted while its own Done runs (a
// Done callback sending it down again, as SPDK's perf does) stays on the
// poller running that Done, if it serves this controller, and goes to its
// queue pair when Done returns: no ring, no system call. Otherwise the
// next poller in round-robin order; with Options.RouteByCPU, the poller
// on the caller's CPU (one getcpu system call) if there is one serving
// this controller, and when the caller is that poller's own goroutine, r
// goes straight to the queue pair and its errors are returned. Otherwise r
// goes through the poller's inbound ring. An error the queue pair finds
// later (nvme.ErrInvalid, nvme.ErrNotDMA, nvme.ErrRemoved, ...), on the
// direct path after Done or through the ring, reaches the caller through
// Done, in r.Err.
//
// A full ring: with FullWait the caller waits for room, with FullFail it
// gets ErrBusy; a poller goroutine never waits on another poller's ring:
// it takes the request itself if it serves the controller, else gets
// ErrBusy. After Stop, ErrStopped. Done is called exactly once if and only
// if Submit returns nil.
//
// It allocates nothing. Any goroutine.
func (h *Handle) Submit(r *nvme.Request) error {
	if r.Done == nil {
		return errNoDone
	}
	if h.resubmit(r) {
		return nil
	}
	var p *Poller
	if h.g.opts.RouteByCPU {
		if cpu := currentCPU(); cpu >= 0 && cpu < len(h.byCPU) {
			if p = h.byCPU[cpu]; p != nil && p.onPoller() {
				return p.submitLocal(h.idx, r, int64(p.Now()))
			}
		}
	}
	if p == nil {
		p = h.pollers[int(h.rr.Add(1)-1)%len(h.pollers)]
	}
	return h.push(p, r)
}

// SubmitTo hands r to poller p, which must serve the handle's controller
// (one of Group.Pollers with a queue pair on it; otherwise an error
// wrapping nvme.ErrInvalid), through p's inbound ring, or directly when
// r's Done is running on p (as Submit): for callers that place work on a
// chosen poller, as nvmectl perf starts each job on its own. Backpressure,
// errors and Done as for Submit. It allocates nothing. Any goroutine.
func (h *Handle) SubmitTo(p *Poller, r *nvme.Request) error {
	if r.Done == nil {
		return errNoDone
	}
	if p == nil || p.g != h.g || p.byCtrl[h.idx] < 0 {
		return errNoQueue
	}
	if o, _ := r.Owner().(*Poller); o == p && h.resubmit(r) {
		return nil
	}
	return h.push(p, r)
}

// resubmit takes the direct path for r if r's Done is running on a
// poller of this group that serves the handle's controller: r is handed
// to that poller, which submits it to its queue pair as soon as Done
// returns, without the ring and without a system call (see
// Poller.completeFunc). The poller is the one nvme.Request.Owner names; the
// claim is one compare-and-swap on the poller's hand-off word, which
// holds r only while r's Done runs, so any goroutine may take this path
// and only a request whose Done is running takes it.
func (h *Handle) resubmit(r *nvme.Request) bool {
	p, _ := r.Owner().(*Poller)
	me := uintptr(unsafe.Pointer(r))
	if p == nil || p.g != h.g || p.byCtrl[h.idx] < 0 || p.hand.Load() != me || p.state.Load() != stateRunning {
		return false
	}
	return p.hand.CompareAndSwap(me, uintptr(unsafe.Pointer(&p.marks[h.idx])))
}

// push puts r on p's inbound ring, applying the backpressure policy.
func (h *Handle) push(p *Poller, r *nvme.Request) error {
	stamp := monotonic()
	for spins := 0; ; spins++ {
		switch p.in.push(r, h.idx, stamp) {
		case pushOK:
			p.kick()
			return nil
		case pushClosed:
			return errStoppedRing
		}
		if spins == 0 {
			p.fullWaits.Add(1)
			if self := h.g.self(); self != nil {
				if self.byCtrl[h.idx] >= 0 {
					return self.submitLocal(h.idx, r, stamp)
				}
				p.busy.Add(1)
				return ErrBusy
			}
			if h.g.opts.Full == FullFail {
				p.busy.Add(1)
				return ErrBusy
			}
		}
		switch {
		case spins < 64:
		case spins < 1024:
			runtime.Gosched()
		default:
			time.Sleep(10 * time.Microsecond)
		}
	}
}

// self returns the poller whose goroutine the caller is, or nil.
func (g *Group) self() *Poller {
	cpu := currentCPU()
	for _, p := range g.pollers {
		if p.cpu == cpu && p.onPoller() {
			return p
		}
	}
	return nil
}
