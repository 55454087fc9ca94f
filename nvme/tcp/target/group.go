package target

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/poller"
)

// group is a poll group: the host I/O queues one poller of a
// poller.Group serves, as a poller.Source on it, as an SPDK nvmf poll
// group owns its sock group and its bdev channels. Its queues' commands
// go to the poller's queue pair on each backing controller
// (Poller.SubmitLocal), whose completions run their Iodones inside the
// poller's pass. Each pass of the poller:
//
//	take: submissions of other users of the Group (ddi, nvmectl perf)
//	Poll (this source): adopt new queues, stop;
//	      each queue: writev(2) the answers queued since the last pass,
//	      read(2) what its socket holds (sock.go, never waits) and run
//	      the PDUs: commands go to the poller's backing queue pairs
//	each queue pair: ring the doorbell, reap (Iodones queue answers)
//
// The poller's idle policy is the target's: with nothing in flight it
// spins SpinTime, then sleeps until a socket of the group has something
// (the group's epoll set is the source's file descriptor, in the
// poller's sleep set in every mode), a queue is adopted (Poller.Wake),
// or Stop; with requests on the backing it spins, then naps.
type group struct {
	t    *Target
	id   int
	p    *poller.Poller
	epfd int

	mu       sync.Mutex
	pending  []*ioConn
	stopping bool
	ctl      atomic.Bool // pending or stopping is set

	// Poller goroutine only (after stop: stop's caller).
	conns    []*ioConn
	finished bool          // control reported the stop done
	done     chan struct{} // closed when finished

	// Counters, written on the poller goroutine, read by Stats.
	commands  atomic.Uint64 // I/O commands answered
	backingNS atomic.Uint64 // their time from the first backing request to the last completion
	answerNS  atomic.Uint64 // their time from the capsule to the answer's last byte sent
}

// GroupStats are one poll group's counters, with its poller's idle
// counters.
type GroupStats struct {
	Commands uint64        // I/O commands answered
	Backing  time.Duration // their total time on the backing (first request to last completion)
	Answer   time.Duration // their total time from capsule received to answer sent
	Sleeps   uint64        // the poller's parks and sleeps with nothing in flight (poller.PollerStats Parks+Sleeps)
	Naps     uint64        // the poller's naps with requests in flight (poller.PollerStats Yields)
}

// Stats returns the poll groups' counters. Any goroutine.
func (t *Target) Stats() []GroupStats {
	out := make([]GroupStats, len(t.groups))
	for i, g := range t.groups {
		ps := g.p.Stats()
		out[i] = GroupStats{Commands: g.commands.Load(), Backing: time.Duration(g.backingNS.Load()),
			Answer: time.Duration(g.answerNS.Load()), Sleeps: ps.Parks + ps.Sleeps, Naps: ps.Yields}
	}
	return out
}

// closeGrace bounds how long a queue that got a TermReq waits for the
// host to close, and how long a Disconnect's answer waits to be read.
var closeGrace = 2 * time.Second

var clockBase = time.Now()

func monotonic() int64 { return int64(time.Since(clockBase)) }

func newGroup(t *Target, id int, p *poller.Poller) *group {
	return &group{t: t, id: id, p: p, epfd: -1, done: make(chan struct{})}
}

// open makes the group's epoll set.
func (g *group) open() error {
	var err error
	if g.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("poll group %d: epoll_create1: %w", g.id, err)
	}
	return nil
}

// start puts the group on its poller.
func (g *group) start() error {
	if err := g.p.AddSource(g, g.epfd); err != nil {
		return fmt.Errorf("poll group %d: %w", g.id, err)
	}
	return nil
}

func (g *group) closeFDs() {
	if g.epfd >= 0 {
		unix.Close(g.epfd)
		g.epfd = -1
	}
}

// adopt gives the group an I/O queue. Any goroutine.
func (g *group) adopt(c *ioConn) {
	c.g = g
	g.mu.Lock()
	g.pending = append(g.pending, c)
	g.ctl.Store(true)
	g.mu.Unlock()
	g.p.Wake()
}

// stop ends every queue of the group, waits for their commands on the
// backing and takes the group off its poller. Any goroutine but the
// poller's.
func (g *group) stop() {
	if g.epfd < 0 {
		return // never opened
	}
	g.mu.Lock()
	g.stopping = true
	g.ctl.Store(true)
	g.mu.Unlock()
	g.p.Wake()
	select {
	case <-g.done:
	case <-g.p.Done():
	}
	g.p.RemoveSource(g)
	select {
	case <-g.done:
	default:
		// The poller ended first (its Group was stopped under the
		// target): its queue pairs are closed, what was on them
		// completed; the group is ours now.
		g.control()
	}
	g.closeFDs()
}

// watch adds or removes EPOLLOUT for c (a send queue the socket did not
// take).
func (g *group) watch(c *ioConn, out bool) {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)}
	if out {
		ev.Events |= unix.EPOLLOUT
	}
	_ = unix.EpollCtl(g.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
}

// unwatch removes c's socket from the epoll set, before it is closed.
func (g *group) unwatch(c *ioConn) {
	_ = unix.EpollCtl(g.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
}

// Poll is the group's pass (poller.Source): answers out, then commands
// in. Poller goroutine only.
func (g *group) Poll() int {
	if g.finished {
		return 0
	}
	if g.ctl.Load() && g.control() {
		return 1
	}
	work := 0
	for i := 0; i < len(g.conns); {
		c := g.conns[i]
		work += c.flush()
		if c.gone() {
			g.conns[i] = g.conns[len(g.conns)-1]
			g.conns[len(g.conns)-1] = nil
			g.conns = g.conns[:len(g.conns)-1]
			continue
		}
		i++
	}
	now := int64(0)
	for _, c := range g.conns {
		if c.closeBy != 0 && now == 0 {
			now = monotonic()
		}
		work += c.poll(now)
	}
	return work
}

// Pending reports whether a queue waits for a time to pass (a TermReq or
// a Disconnect answer left unread: closeBy), which no socket announces
// (poller.Source). Poller goroutine only.
func (g *group) Pending() bool {
	for _, c := range g.conns {
		if c.closeBy != 0 && c.state != connDead {
			return true
		}
	}
	return false
}

// control adopts new queues and runs a stop: it reports true when the
// group stopped (every queue ended, nothing of theirs on the backing).
func (g *group) control() bool {
	g.mu.Lock()
	pending := g.pending
	g.pending = nil
	stopping := g.stopping
	if !stopping {
		g.ctl.Store(false)
	}
	g.mu.Unlock()
	for _, c := range pending {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)}
		if err := unix.EpollCtl(g.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
			c.t.logf("nvmf: poll group %d: epoll_ctl: %v", g.id, err)
			c.state = connDead // not in the epoll set: end must not remove it
			c.sk.Close()
			c.forget()
		}
		g.conns = append(g.conns, c)
	}
	if !stopping {
		return false
	}
	for _, c := range g.conns {
		c.end(ErrClosed)
	}
	for _, c := range g.conns {
		if !c.gone() {
			return false // their commands are still on the backing
		}
	}
	g.conns = g.conns[:0]
	if !g.finished {
		g.finished = true
		close(g.done)
	}
	return true
}
