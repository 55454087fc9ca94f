package target

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// group is a poll group: one goroutine, locked to an OS thread (pinned to
// a CPU when Config.CPUs says so), that owns a queue pair on every
// backing controller and the host I/O queues given to it, as an SPDK
// nvmf poll group owns its sock group and its bdev channels. Each pass:
//
//	control: adopt new queues, stop
//	each queue: read(2) what its socket holds (nbsock, never waits),
//	            run the PDUs: commands go to the backing queue pair
//	each backing queue pair: Poll (Iodones queue the answers)
//	each queue: writev(2) the answers (nbsock)
//
// With nothing in flight on the backing and no work for Config.SpinTime,
// the group sleeps in epoll_wait(2) on its sockets and an eventfd (new
// queues, stop); with requests on the backing it polls 1 ms more, then
// naps in epoll_pwait2 for a sixteenth of the time it waited (20 µs to
// 1 ms) until the completion comes (a slow device, or one whose emulation needs the CPU the group
// would spin on).
type group struct {
	t   *Target
	id  int
	cpu int // -1: not pinned

	epfd, evfd int

	mu       sync.Mutex
	pending  []*ioConn
	stopping bool
	ctl      atomic.Bool // pending or stopping is set

	// Group goroutine only.
	conns  []*ioConn
	queues []Queue
	events [64]unix.EpollEvent
	done   chan struct{}
	err    error // of closing the backing queues, read after done

	// Counters, written by the group goroutine, read by Stats.
	commands  atomic.Uint64 // I/O commands answered
	backingNS atomic.Uint64 // their time from the first backing request to the last completion
	answerNS  atomic.Uint64 // their time from the capsule to the answer's last byte sent
	sleeps    atomic.Uint64 // epoll_wait with nothing on the backing
	naps      atomic.Uint64 // epoll_wait of 1 ms with requests on the backing
}

// GroupStats are one poll group's counters.
type GroupStats struct {
	Commands uint64        // I/O commands answered
	Backing  time.Duration // their total time on the backing (first request to last completion)
	Answer   time.Duration // their total time from capsule received to answer sent
	Sleeps   uint64        // sleeps in epoll_wait with nothing in flight
	Naps     uint64        // 1 ms naps with requests on the backing
}

// Stats returns the poll groups' counters. Any goroutine.
func (t *Target) Stats() []GroupStats {
	out := make([]GroupStats, len(t.groups))
	for i, g := range t.groups {
		out[i] = GroupStats{Commands: g.commands.Load(), Backing: time.Duration(g.backingNS.Load()),
			Answer: time.Duration(g.answerNS.Load()), Sleeps: g.sleeps.Load(), Naps: g.naps.Load()}
	}
	return out
}

// closeGrace bounds how long a queue that got a TermReq waits for the
// host to close.
var closeGrace = 2 * time.Second

var clockBase = time.Now()

// processCPUs is the CPU mask of the main thread at start, before any
// poller pinned a thread.
var processCPUs = func() unix.CPUSet {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil || set.Count() == 0 {
		for i := range runtime.NumCPU() {
			set.Set(i)
		}
	}
	return set
}()

func monotonic() int64 { return int64(time.Since(clockBase)) }

func newGroup(t *Target, id int) *group {
	g := &group{t: t, id: id, cpu: -1, epfd: -1, evfd: -1, done: make(chan struct{})}
	if len(t.cfg.CPUs) > 0 {
		g.cpu = t.cfg.CPUs[id%len(t.cfg.CPUs)]
	}
	return g
}

// start opens the group's epoll and eventfd and starts its goroutine.
func (g *group) start() error {
	var err error
	if g.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("poll group %d: epoll_create1: %w", g.id, err)
	}
	if g.evfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		g.closeFDs()
		return fmt.Errorf("poll group %d: eventfd: %w", g.id, err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(g.evfd)}
	if err := unix.EpollCtl(g.epfd, unix.EPOLL_CTL_ADD, g.evfd, &ev); err != nil {
		g.closeFDs()
		return fmt.Errorf("poll group %d: epoll_ctl: %w", g.id, err)
	}
	for _, s := range g.t.subs {
		for _, p := range s.parts {
			g.queues = append(g.queues, p.queues[g.id])
		}
	}
	started := make(chan error, 1)
	go g.run(started)
	return <-started
}

func (g *group) closeFDs() {
	if g.epfd >= 0 {
		unix.Close(g.epfd)
		g.epfd = -1
	}
	if g.evfd >= 0 {
		unix.Close(g.evfd)
		g.evfd = -1
	}
}

// adopt gives the group an I/O queue. Any goroutine.
func (g *group) adopt(c *ioConn) {
	c.g = g
	g.mu.Lock()
	g.pending = append(g.pending, c)
	g.ctl.Store(true)
	g.mu.Unlock()
	g.kick()
}

// stop ends every queue of the group, waits for their commands on the
// backing, closes the backing queue pairs and ends the goroutine. Any
// goroutine but the group's.
func (g *group) stop() error {
	if g.epfd < 0 {
		return nil // never started
	}
	g.mu.Lock()
	g.stopping = true
	g.ctl.Store(true)
	g.mu.Unlock()
	g.kick()
	<-g.done
	g.closeFDs()
	return g.err
}

// kick wakes the group if it sleeps in epoll_wait. Any goroutine.
func (g *group) kick() {
	var one = [8]byte{1}
	_, _ = unix.Write(g.evfd, one[:])
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

// run is the group goroutine.
func (g *group) run(started chan<- error) {
	runtime.LockOSThread()
	set := processCPUs
	if g.cpu >= 0 {
		set = unix.CPUSet{}
		set.Set(g.cpu)
	}
	// Unpinned, the group may run on any CPU the process may: a new
	// thread inherits the mask of the thread that made it, which may be
	// a poller's, pinned to one CPU.
	if err := unix.SchedSetaffinity(0, &set); err != nil && g.cpu >= 0 {
		runtime.UnlockOSThread()
		started <- fmt.Errorf("poll group %d: pin to cpu %d: %w", g.id, g.cpu, err)
		close(g.done)
		return
	}
	// Exit locked: the runtime ends the thread, whose mask is ours.
	started <- nil
	defer close(g.done)
	var idleSince int64
	idle := 0
	for {
		if g.ctl.Load() && g.control() {
			return
		}
		work := 0
		now := int64(0)
		for _, c := range g.conns {
			if c.state == connClosing && now == 0 {
				now = monotonic()
			}
			work += c.poll(now)
		}
		for _, q := range g.queues {
			work += q.Poll()
		}
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
		if work != 0 {
			idle, idleSince = 0, 0
			continue
		}
		if idle++; idle&15 != 0 {
			continue
		}
		t := monotonic()
		if idleSince == 0 {
			idleSince = t
		}
		switch idleFor := t - idleSince; {
		case idleFor < int64(g.t.cfg.SpinTime):
		case g.backingIdle():
			g.sleeps.Add(1)
			g.sleep(-1)
			idle, idleSince = 0, 0
		case idleFor < int64(g.t.cfg.SpinTime+napAfter):
			// Requests on the backing: keep polling a while longer
			// (a NAND read, or an emulated device's round trip).
		default:
			// The backing is slow: nap a sixteenth of the time waited
			// so far (20 µs to 1 ms; a host sending something ends the
			// nap), leaving the CPU to whoever the device's completion
			// waits for: under TCG on a busy host, QEMU's own threads.
			g.naps.Add(1)
			g.sleep(time.Duration(min(max(idleFor/16, int64(napMin)), int64(napMax))))
		}
	}
}

// epollWait is epoll_pwait2(2), whose timeout is a timespec, for naps
// shorter than epoll_wait's millisecond; before Linux 5.11, epoll_wait
// with the timeout rounded up to a millisecond.
func (g *group) epollWait(d time.Duration) (int, error) {
	if d < 0 {
		return unix.EpollWait(g.epfd, g.events[:], -1)
	}
	if !noPwait2.Load() {
		ts := unix.NsecToTimespec(int64(d))
		r, _, e := unix.Syscall6(unix.SYS_EPOLL_PWAIT2, uintptr(g.epfd), uintptr(unsafe.Pointer(&g.events[0])), uintptr(len(g.events)),
			uintptr(unsafe.Pointer(&ts)), 0, 0)
		if e != unix.ENOSYS {
			if e != 0 {
				return 0, e
			}
			return int(r), nil
		}
		noPwait2.Store(true)
	}
	return unix.EpollWait(g.epfd, g.events[:], int((d+time.Millisecond-1)/time.Millisecond))
}

var noPwait2 atomic.Bool

// backingIdle reports whether nothing is in flight on the backing queues.
func (g *group) backingIdle() bool {
	for _, q := range g.queues {
		if q.InFlight() != 0 {
			return false
		}
	}
	return true
}

// A group with requests on the backing polls napAfter beyond SpinTime,
// then naps, as package poller's adaptive pollers do (their YieldTime).
const (
	napAfter = time.Millisecond
	napMin   = 20 * time.Microsecond
	napMax   = time.Millisecond
)

// sleep waits in epoll_wait until a socket has something (or can take
// what waits to be sent) or the eventfd is kicked, for at most d (<0: no
// limit); with a queue closing, at most 10 ms.
func (g *group) sleep(d time.Duration) {
	for _, c := range g.conns {
		if c.state == connClosing && (d < 0 || d > 10*time.Millisecond) {
			d = 10 * time.Millisecond
		}
	}
	n, err := g.epollWait(d)
	if err != nil && !errors.Is(err, unix.EINTR) {
		return
	}
	for i := range n {
		if g.events[i].Fd == int32(g.evfd) {
			var b [8]byte
			_, _ = unix.Read(g.evfd, b[:])
		}
	}
}

// control adopts new queues and runs a stop: it reports true when the
// group stopped (every queue ended and drained, the backing queue pairs
// closed).
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
	var errs []error
	for _, q := range g.queues {
		if err := q.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		g.err = fmt.Errorf("poll group %d: close backing queues: %w", g.id, errors.Join(errs...))
	}
	return true
}
