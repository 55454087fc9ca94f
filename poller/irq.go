package poller

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
)

// Mode says how a poller waits for completions and submissions.
type Mode uint8

const (
	// ModePoll polls the queue pairs; Options.Idle says what an idle
	// poller does (IdleAdaptive parks in futex(2) with nothing in
	// flight, IdleBusy never stops). The queues raise no interrupts. The
	// default.
	ModePoll Mode = iota
	// ModeInterrupt sleeps whenever a pass found nothing to reap and
	// nothing to submit: on the eventfds of its queue pairs' interrupt
	// vectors and on its own wake-up eventfd, which a submission or Stop
	// writes. Every completion costs an interrupt; an idle poller costs
	// nothing. A sleeping poller keeps its Go P in the system call: give
	// the process GOMAXPROCS above the number of threads that sleep so
	// (pollers, a pacer), or the runtime retakes a P in every sleep.
	ModeInterrupt
	// ModeHybrid polls while there is work, and sleeps as ModeInterrupt
	// does once passes have found nothing for SpinTime (with nothing in
	// flight) or SpinTime+YieldTime (with requests in flight): the
	// latency of polling under load, the idle cost of interrupts. Once it
	// has reaped quietAfter (16) completions by polling without sleeping,
	// it disconnects its queue pairs' vectors (one system call each, where
	// the transport can: nvme.QueuePair.SetInterrupts), so a busy poller
	// takes no interrupt per completion; it connects them again just
	// before it sleeps.
	ModeHybrid
)

var modeNames = [...]string{"poll", "interrupt", "hybrid"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode returns the Mode named s: "poll", "interrupt" or "hybrid".
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if s == n {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("poller: %w: mode %q: want poll, interrupt or hybrid", nvme.ErrInvalid, s)
}

// schedEvery is the longest a poller that sleeps goes without passing
// through the Go scheduler (runtime.Gosched before a sleep). The
// runtime's monitor (sysmon) takes a goroutine that has held its P for
// 10 ms without being scheduled (forcePreemptNS) for one that runs too
// long, and then retakes its P in every blocking system call it makes:
// each sleep would cost a P hand-off, a wake-up of the monitor and often
// of a spinning thread, and a preemption signal (measured in a QEMU guest:
// a paced QD1 run at 1000 IOPS used more than a CPU in interrupt mode,
// most of it in the monitor's and the scheduler's threads). A Gosched on
// a locked thread costs two thread hand-offs, so it is paid at most once
// per schedEvery, and only by a poller about to sleep.
const schedEvery = 5 * time.Millisecond

// sleepBound bounds a sleep with requests in flight, so that command
// deadlines (aborts, resets) and a controller's reset or removal are
// acted on while no interrupt comes.
const sleepBound = 10 * time.Millisecond

// irqWait is what a poller in ModeInterrupt or ModeHybrid sleeps on:
// pfds[0] is its wake-up eventfd, pfds[1+i] the interrupt eventfd of
// qps[i]. Poller goroutine only, but for wakeFD, which submitters write.
type irqWait struct {
	wakeFD    int
	pfds      []pollFd
	ts        timespec
	buf       [8]byte
	lastScan  int64  // monotonic ns of the last deadline scan after a sleep
	lastSched int64  // monotonic ns of the last runtime.Gosched before a sleep
	scheds    uint64 // those Gosched calls
	pubWork   uint64 // completed+taken+local at the last publication before a sleep
	published bool   // published before a sleep at least once

	// ModeHybrid: the vectors are disconnected while the poller reaps
	// by polling (quietAfter).
	canQuiet bool   // every queue pair's vector can be switched
	quiet    bool   // the vectors are disconnected
	wokeDone uint64 // p.c.completed when the poller last woke (or went quiet)
	quiets   uint64 // times the vectors were disconnected
}

// quietAfter is how many completions a ModeHybrid poller reaps by polling
// without sleeping before it disconnects its queue pairs' interrupt
// vectors (nvme.QueuePair.SetInterrupts): a busy poller then takes no
// interrupt per completion (under QEMU's TCG each one cost the poller's
// vCPU the delivery and the other vCPU's time, and doubled the QD1
// latency). The vectors are connected again just before the poller
// sleeps. A poller that sleeps between I/Os (a paced load) never reaches
// the count, and keeps its vectors and the interrupts it sleeps on,
// without two system calls per sleep.
const quietAfter = 16

// newIRQWait makes the wake-up eventfd and the poll set of p's queue
// pairs, which must all have interrupt vectors.
func newIRQWait(p *Poller) (*irqWait, error) {
	fd, err := newEventfd()
	if err != nil {
		return nil, fmt.Errorf("poller %d: wake-up eventfd: %w", p.id, err)
	}
	w := &irqWait{wakeFD: fd, pfds: make([]pollFd, 1+len(p.qps))}
	w.pfds[0] = pollIn(fd)
	w.canQuiet = p.g.opts.Mode == ModeHybrid
	for i, q := range p.qps {
		w.pfds[1+i] = pollIn(q.qp.InterruptFD())
		w.canQuiet = w.canQuiet && q.qp.CanSwitchInterrupts()
	}
	return w, nil
}

// testHookBeforeArm, when set (by a test), runs on the poller goroutine
// just before it announces a sleep: a submission made there is exactly
// the one the re-check after arming must catch.
var testHookBeforeArm func(*Poller)

// sleep puts the poller to sleep until an interrupt, a submission or Stop
// (ModeInterrupt and ModeHybrid; now is the time of the idle pass). It
// follows the rule that loses nothing:
//
//  1. announce the sleep (sleeping = 1, a sequentially consistent store);
//  2. look again at everything that could have arrived before the
//     announcement: the inbound ring, the stop state, each completion
//     queue's head (QueuePair.HasWork); if anything is there, do not sleep;
//  3. sleep in ppoll(2) on the eventfds.
//
// A submitter pushes to the ring, then loads sleeping (kick): if its load
// comes before the store of step 1, the poller's re-check comes after the
// push and sees it; if after, the submitter sees 1, takes the flag and
// writes the wake-up eventfd, whose count makes ppoll return even if it
// was written before ppoll began. A completion queue entry is written by
// the device before it signals the vector's eventfd: posted before step 2,
// the re-check sees it; after, the count wakes the sleep. With requests in
// flight the sleep is bounded by sleepBound, and deadlines are scanned
// when the poller wakes.
func (p *Poller) sleep(now int64) {
	w := p.irq
	if now-w.lastSched >= int64(schedEvery) {
		runtime.Gosched()
		now = monotonic()
		w.lastSched = now
		w.scheds++
	}
	if w.quiet {
		// Connect the vectors before the announcement: a completion
		// posted while they were off is pending and signals now, and
		// one posted before is seen by the re-check.
		p.setVectors(true)
	}
	if testHookBeforeArm != nil {
		testHookBeforeArm(p)
	}
	atomic.StoreUint32(&p.sleeping, 1)
	if !p.in.empty() || p.state.Load() != stateRunning || p.hasWork() {
		atomic.StoreUint32(&p.sleeping, 0)
		return
	}
	var ts *timespec
	if p.waiting() {
		w.ts = nsToTimespec(int64(sleepBound))
		ts = &w.ts
	}
	p.c.sleeps++
	if work := p.c.completed + p.c.taken + p.c.local; work != w.pubWork || !w.published {
		// A sleeping poller's published counters are up to date (a
		// submission meanwhile makes ppoll return at once).
		w.pubWork, w.published = work, true
		p.publish(now)
	}
	ppoll(w.pfds, ts)
	atomic.StoreUint32(&p.sleeping, 0)
	woke := monotonic()
	w.wokeDone = p.c.completed
	p.c.asleep += uint64(woke - now)
	// Drain the counts before the next pass reaps: a completion posted
	// after the read signals again.
	for i := range w.pfds {
		if w.pfds[i].Revents == 0 || i > len(p.qps) { // (after the vectors: sources' fds, source.go)
			continue
		}
		n := readEventfd(int(w.pfds[i].Fd), &w.buf)
		if i == 0 {
			p.c.wakeups++
		} else {
			p.c.irqs += n
			p.qps[i-1].irqs += n
		}
	}
	if p.inflight > 0 && woke-w.lastScan >= int64(sleepBound) {
		w.lastScan = woke
		for _, q := range p.qps {
			q.qp.CheckDeadlines()
		}
	}
	p.idleRun, p.idleSince = 0, 0
}

// setVectors connects (on) or disconnects the interrupt vectors of the
// poller's queue pairs (ModeHybrid). A queue pair that fails to switch
// ends the attempts: the poller keeps its vectors connected from then on.
func (p *Poller) setVectors(on bool) {
	w := p.irq
	for _, q := range p.qps {
		if q.done {
			continue
		}
		if err := q.qp.SetInterrupts(on); err != nil && !on {
			w.canQuiet = false
			on = true // connect the ones switched off so far
			for _, r := range p.qps {
				if !r.done {
					_ = r.qp.SetInterrupts(true)
				}
			}
			break
		}
	}
	w.quiet = !on
	if !on {
		w.quiets++
	}
	w.wokeDone = p.c.completed
}

// hasWork reports whether a queue pair has something to reap or issue
// (or must catch up with a reset).
func (p *Poller) hasWork() bool {
	if p.sourceWork() {
		return true
	}
	for _, q := range p.qps {
		if !q.done && q.qp.HasWork() {
			return true
		}
	}
	return false
}

// idleIRQ runs after a pass that did nothing, in ModeInterrupt (sleep at
// once) and ModeHybrid: there, with nothing in flight the poller sleeps
// once SpinTime has passed without work; with requests in flight it
// spins SpinTime+YieldTime (1.05 ms, longer than most device reads, as
// IdleAdaptive does before it naps), so that a completion is seen by
// polling, and only a slow device puts it to sleep. In ModeHybrid the
// loop calls it every 16th idle pass, so the clock is read and the
// vectors are quieted no more often.
func (p *Poller) idleIRQ() {
	if p.g.opts.Mode == ModeInterrupt {
		p.sleep(monotonic())
		return
	}
	if w := p.irq; w.canQuiet && !w.quiet && p.c.completed-w.wokeDone >= quietAfter {
		p.setVectors(false)
	}
	now := monotonic()
	if p.idleSince == 0 {
		p.idleSince = now
	}
	spin := int64(p.g.opts.SpinTime)
	if p.waiting() {
		spin += int64(p.g.opts.YieldTime)
	}
	if now-p.idleSince >= spin {
		p.sleep(now)
	}
}

// wake writes the wake-up eventfd (kick, in ModeInterrupt and
// ModeHybrid). kickers counts the submitters between taking the sleeping
// flag and their write, so that the poller closes the eventfd only when
// none can still write it (closeIRQ).
func (p *Poller) wakeIRQ() {
	p.kickers.Add(1)
	if atomic.CompareAndSwapUint32(&p.sleeping, 1, 0) {
		signalEventfd(p.irq.wakeFD)
	}
	p.kickers.Add(-1)
}

// closeIRQ closes the wake-up eventfd when the poller ends. sleeping is
// 0 for good: a submitter that had not yet taken the flag cannot any
// more, one that had is waited for.
func (p *Poller) closeIRQ() {
	if p.irq == nil {
		return
	}
	atomic.StoreUint32(&p.sleeping, 0)
	for p.kickers.Load() != 0 {
		time.Sleep(time.Microsecond)
	}
	closeFD(p.irq.wakeFD)
	p.irq.wakeFD = -1
}
