package poller

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
)

// Source is work a poller does on every pass besides its queue pairs: the
// sockets of an NVMe/TCP target's host queues, for one, whose commands go
// to the poller's queue pairs with SubmitLocal and whose answers leave
// from the requests' Done callbacks. A source lives on one poller
// (Poller.AddSource) and shares its idle policy: the poller parks only
// when its ring, its queue pairs and every source are idle, and then
// sleeps until a submission, Stop, Poller.Wake, or a source's file
// descriptor becomes readable.
//
// Both methods run on the poller goroutine only, and must not block.
type Source interface {
	// Poll does the work the source has now and returns how much
	// (0: none). A pass that did work is followed by another at once.
	Poll() int
	// Pending reports whether the source waits for something that
	// neither its file descriptor nor a completion on the poller's queue
	// pairs announces (a timer, say). The poller then treats it as a
	// request in flight: it spins, then naps (at most 1 ms at a time in
	// ModePoll, sleepBound in the interrupt modes), and never parks.
	Pending() bool
}

// srcEntry is a source with its file descriptor.
type srcEntry struct {
	s  Source
	fd int
}

// srcRemove is a RemoveSource waiting for the poller.
type srcRemove struct {
	s    Source
	done chan struct{}
}

// sources is a poller's set of sources.
type sources struct {
	mu     sync.Mutex
	add    []srcEntry
	del    []srcRemove
	ended  bool        // the poller goroutine has ended (no more adds)
	ctl    atomic.Bool // add or del is not empty
	poke   atomic.Bool // Wake was called since the sources were last polled
	wakeFD int         // ModePoll with a source fd: the eventfd kick writes, else -1

	// Poller goroutine only.
	list []srcEntry
	pfds []pollFd // ModePoll: wakeFD, then each source's fd
	ts   timespec
}

// sleepFDs is the sleeping word's value while a ModePoll poller with
// source fds sleeps in ppoll(2), not in futex(2).
const sleepFDs = 2

// AddSource adds s to the sources the poller polls on every pass, from
// the next pass on. fd, if not negative, is a file descriptor that is
// readable whenever s has work (an epoll set of its sockets, an eventfd):
// a sleeping poller then wakes, whatever its Mode. With fd < 0 the
// source must call Wake when it gets work while the poller may sleep.
// The poller neither reads nor closes fd: it must stay open until
// RemoveSource returned, and s.Poll must consume what makes it readable
// (a descriptor that stays readable keeps the poller from sleeping).
// Errors: ErrStopped once the poller has ended. Any goroutine.
func (p *Poller) AddSource(s Source, fd int) error {
	if s == nil {
		return fmt.Errorf("poller: %w: nil source", nvme.ErrInvalid)
	}
	x := &p.src
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.ended {
		return errStoppedLocal
	}
	if fd >= 0 && p.irq == nil && x.wakeFD < 0 {
		wfd, err := newEventfd()
		if err != nil {
			return fmt.Errorf("poller %d: source wake-up eventfd: %w", p.id, err)
		}
		x.wakeFD = wfd
	}
	x.add = append(x.add, srcEntry{s: s, fd: fd})
	x.ctl.Store(true)
	p.kick()
	return nil
}

// RemoveSource removes s and returns once the poller will not call its
// methods again: at once if the poller has ended. Any goroutine but the
// poller's.
func (p *Poller) RemoveSource(s Source) {
	x := &p.src
	done := make(chan struct{})
	x.mu.Lock()
	if x.ended {
		x.mu.Unlock()
		return
	}
	x.del = append(x.del, srcRemove{s: s, done: done})
	x.ctl.Store(true)
	x.mu.Unlock()
	p.kick()
	select {
	case <-done:
	case <-p.done:
	}
}

// Wake ends the poller's park, nap or sleep, if it is in one, so that it
// polls its sources again: for a source without a file descriptor that
// got work. One atomic load when the poller is awake. Any goroutine.
func (p *Poller) Wake() {
	p.src.poke.Store(true)
	p.kick()
}

// Done returns a channel closed when the poller goroutine has ended
// (after Stop). Any goroutine.
func (p *Poller) Done() <-chan struct{} { return p.done }

// InFlight returns the number of requests the poller has handed to its
// queue pairs that have not completed. Poller goroutine only.
func (p *Poller) InFlight() int { return p.inflight }

// Serves reports whether the poller owns a queue pair on c (SubmitLocal
// takes requests for c). Any goroutine.
func (p *Poller) Serves(c *nvme.Controller) bool {
	ci := p.g.ctrlIndex(c)
	return ci >= 0 && p.byCtrl[ci] >= 0
}

// active reports whether pollSources has work: a source to poll, or a
// change or a Wake to take in. Poller goroutine only.
func (x *sources) active() bool { return len(x.list) > 0 || x.ctl.Load() || x.poke.Load() }

// pollSources runs the sources' changes, if any, and polls each source.
// Poller goroutine only.
func (p *Poller) pollSources() int {
	x := &p.src
	if x.ctl.Load() {
		p.sourceControl()
	}
	if x.poke.Load() {
		x.poke.Store(false) // before the polls: a Wake after them is seen
	}
	n := 0
	for _, e := range x.list {
		n += e.s.Poll()
	}
	return n
}

// sourceControl adds and removes sources and rebuilds the poll sets.
func (p *Poller) sourceControl() {
	x := &p.src
	x.mu.Lock()
	add, del := x.add, x.del
	x.add, x.del = nil, nil
	x.ctl.Store(false)
	x.mu.Unlock()
	x.list = append(x.list, add...)
	for _, d := range del {
		for i, e := range x.list {
			if e.s == d.s {
				x.list = append(x.list[:i], x.list[i+1:]...)
				break
			}
		}
		close(d.done)
	}
	// The sleep sets: ModePoll's own, or the interrupt modes' (irq.go),
	// whose first 1+len(qps) entries are the wake-up and the vectors.
	var set []pollFd
	if p.irq != nil {
		set = p.irq.pfds[:1+len(p.qps)]
	} else if x.wakeFD >= 0 {
		set = append(x.pfds[:0], pollIn(x.wakeFD))
	}
	for _, e := range x.list {
		if e.fd >= 0 {
			set = append(set, pollIn(e.fd))
		}
	}
	if p.irq != nil {
		p.irq.pfds = set
	} else {
		x.pfds = set
	}
}

// sourcesPending reports whether a source waits for something no file
// descriptor announces. Poller goroutine only.
func (p *Poller) sourcesPending() bool {
	for _, e := range p.src.list {
		if e.s.Pending() {
			return true
		}
	}
	return false
}

// sourceWork reports whether sources were added or removed, or Wake
// called, since the last pass: a sleep announced after that must not
// begin. Poller goroutine only.
func (p *Poller) sourceWork() bool { return p.src.ctl.Load() || p.src.poke.Load() }

// waiting reports whether the poller waits for something: requests in
// flight, or a pending source. Poller goroutine only.
func (p *Poller) waiting() bool { return p.inflight > 0 || p.sourcesPending() }

// fdSleep is park (d < 0) and nap (d >= 0) of a ModePoll poller whose
// sources have file descriptors: it sleeps in ppoll(2) on the wake-up
// eventfd and those descriptors, with the same announce-then-look-again
// rule as the futex sleep and the interrupt modes' sleep (irq.go).
func (p *Poller) fdSleep(d time.Duration) {
	x := &p.src
	atomic.StoreUint32(&p.sleeping, sleepFDs)
	if !p.in.empty() || p.state.Load() != stateRunning || p.sourceWork() {
		atomic.StoreUint32(&p.sleeping, 0)
		return
	}
	var ts *timespec
	if d >= 0 {
		x.ts = nsToTimespec(int64(d))
		ts = &x.ts
	}
	ppoll(x.pfds, ts)
	atomic.StoreUint32(&p.sleeping, 0)
	if x.pfds[0].Revents != 0 {
		var b [8]byte
		readEventfd(x.wakeFD, &b)
	}
}

// wakeFDs writes the sources' wake-up eventfd (kick, while the poller
// sleeps in fdSleep); kickers as in wakeIRQ.
func (p *Poller) wakeFDs() {
	p.kickers.Add(1)
	if atomic.CompareAndSwapUint32(&p.sleeping, sleepFDs, 0) {
		signalEventfd(p.src.wakeFD)
	}
	p.kickers.Add(-1)
}

// closeSources runs when the poller ends: no source is polled again,
// pending RemoveSource calls return, and the wake-up eventfd is closed
// once no kick can write it.
func (p *Poller) closeSources() {
	x := &p.src
	x.mu.Lock()
	x.ended = true
	for _, d := range x.del {
		close(d.done)
	}
	x.add, x.del, x.list = nil, nil, nil
	fd := x.wakeFD
	x.mu.Unlock()
	if fd < 0 {
		return
	}
	atomic.StoreUint32(&p.sleeping, 0)
	for p.kickers.Load() != 0 {
		time.Sleep(time.Microsecond)
	}
	closeFD(fd)
}
