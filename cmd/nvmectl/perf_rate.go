package main

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/internal/cpuset"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// perf --mode and --rate.
//
// With --rate the jobs' Done callbacks do not resubmit: they hand their
// slot to the job's idle channel, and one pacer goroutine starts I/O k at
// start + k/rate (open loop: on a schedule, not when an earlier one
// completes), taking the jobs in turn, preparing the slot's next command
// and submitting it with Handle.SubmitTo through the poller's ring. The
// channel hand-off orders the pacer's prepare after the poller's last use
// of the slot; the job's offsets (cursor, random state) are then the
// pacer's alone, its counters still the poller's.

// modeConfig validates --mode and --rate into c.
func (f *perfFlags) modeConfig(c *perfConfig) error {
	m, err := poller.ParseMode(f.mode)
	if err != nil {
		return usagef("--mode %q: want poll, interrupt or hybrid", f.mode)
	}
	c.mode = m
	if math.IsNaN(f.rate) || math.IsInf(f.rate, 0) || f.rate < 0 || f.rate > 1e9 {
		return usagef("--rate %v: want a number of I/Os per second above 0 (or 0 for no cap)", f.rate)
	}
	c.rate = f.rate
	return nil
}

// pacerRetry is the shortest wait before the pacer looks again for a
// request of a job whose requests are all in flight (the wait is a tenth
// of the pacing interval: a whole interval lost the tick of every I/O
// that completed a little late, 800 of 1000 IOPS at QD1 in the guest).
const pacerRetry = 20 * time.Microsecond

// pacerSchedEvery is the longest the pacer goes without passing through
// the Go scheduler: see poller's schedEvery (a goroutine that makes
// blocking system calls for 10 ms without being scheduled has its P
// retaken in every one of them).
const pacerSchedEvery = 5 * time.Millisecond

// pacer is the state of a --rate run's pacer goroutine.
type pacer struct {
	stop   chan struct{} // closed when the run stops
	done   chan struct{} // closed when the pacer has ended
	failed uint64        // submissions the pacer could not make (read after done)
	first  string
	sched  int64  // perfNow of the pacer's last runtime.Gosched
	scheds uint64 // those Gosched calls (read after done)
}

// seedPaced starts the workload of a --rate run: every slot waits in its
// job's idle channel and the pacer starts them on schedule.
func (r *perfRun) seedPaced() error {
	n := 0
	for _, j := range r.jobs {
		n += len(j.slots)
	}
	select {
	case <-r.drained:
	default:
	}
	r.active.Store(int64(n))
	for _, j := range r.jobs {
		for i := range j.slots {
			j.idle <- &j.slots[i]
		}
	}
	r.pace = &pacer{stop: make(chan struct{}), done: make(chan struct{})}
	go r.runPacer(r.pace) // with a P of its own (perfExec's GOMAXPROCS)
	return nil
}

// runPacer is the pacer goroutine. Its thread keeps off the pollers'
// CPUs when the process may run elsewhere: a pacer thread that the kernel
// put on a busy poller's CPU would share it in time slices of
// milliseconds. The thread ends with the goroutine (locked, never
// unlocked).
func (r *perfRun) runPacer(pc *pacer) {
	defer close(pc.done)
	runtime.LockOSThread()
	if allowed, err := cpuset.Allowed(); err == nil {
		var set unix.CPUSet
		for _, c := range allowed {
			if !slices.Contains(r.cfg.cpus, c) {
				set.Set(c)
			}
		}
		if set.Count() > 0 {
			_ = unix.SchedSetaffinity(0, &set)
		}
	}
	interval := float64(time.Second) / r.cfg.rate
	retry := max(pacerRetry, time.Duration(interval/10))
	start := time.Now()
pace:
	for k := 0; ; k++ {
		if !pc.sleepUntil(start.Add(time.Duration(float64(k) * interval))) {
			break pace
		}
		j := r.jobs[k%len(r.jobs)]
		var s *perfSlot
		for s == nil {
			select {
			case s = <-j.idle:
				continue
			default:
			}
			// Every request of the job is in flight (the device is
			// slower than the rate): look again a tenth of an
			// interval later; the schedule is open loop, so a late
			// I/O is caught up as soon as a request is free. The pacer never blocks on the channel: a
			// poller's Done that sent to a waiting pacer would make
			// it runnable on the poller's own P, which a spinning
			// poller does not give up.
			if !pc.sleepUntil(time.Now().Add(retry)) {
				break pace
			}
		}
		ph := r.phase.Load()
		if ph == phaseStop {
			r.slotStopped()
			break
		}
		err := j.prepare(s, ph)
		if err == nil {
			s.stamp = perfNow()
			err = j.h.SubmitTo(j.p, &s.req)
		}
		if err != nil {
			pc.failed++
			if pc.first == "" {
				pc.first = fmt.Sprintf("submit to namespace %d at lba %d: %v", j.nsid, s.lba, err)
			}
			r.slotStopped()
		}
	}
	// The run is over: the slots that wait (and those whose Done was
	// past its phase check when the run stopped) stop here.
	for r.active.Load() > 0 {
		for _, j := range r.jobs {
			for drained := false; !drained; {
				select {
				case <-j.idle:
					r.slotStopped()
				default:
					drained = true
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
}

// sleepUntil sleeps the pacer's thread until t, or less if the run
// stops; it reports whether the run goes on. It sleeps in
// clock_nanosleep, not on a Go timer: the runtime wakes a timer's
// goroutine from epoll_pwait, whose timeout is in whole milliseconds, and
// a locked goroutine then needs its thread handed a P, so a 1 ms pacing
// interval became several in a QEMU guest (60 to 440 IOPS at --rate
// 1000). The kernel's high-resolution timer wakes this thread itself.
// The sleep is cut into pieces of at most 10 ms to notice a stop.
func (pc *pacer) sleepUntil(t time.Time) bool {
	for {
		select {
		case <-pc.stop:
			return false
		default:
		}
		d := time.Until(t)
		if d <= 0 {
			return true
		}
		if now := perfNow(); now-pc.sched >= int64(pacerSchedEvery) {
			runtime.Gosched()
			pc.sched = now
			pc.scheds++
		}
		d = min(d, 10*time.Millisecond)
		ts := unix.NsecToTimespec(int64(d))
		_ = unix.ClockNanosleep(unix.CLOCK_MONOTONIC, 0, &ts, nil) // EINTR: the loop looks again
	}
}

// stopPacer tells the pacer the run is over (after phaseStop).
func (r *perfRun) stopPacer() {
	if r.pace != nil {
		close(r.pace.stop)
	}
}

// waitPacer waits for the pacer to end (it ends once every slot has
// stopped) and adds its failures to the report's.
func (r *perfRun) waitPacer() {
	if r.pace == nil {
		return
	}
	select {
	case <-r.pace.done:
	case <-time.After(perfDrainWait):
	}
}
