package poller_test

import (
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// evSource is a Source whose work is an eventfd's count: Poll reads it
// (so the fd stops being readable) and submits a read for each signal
// with SubmitLocal, as the NVMe/TCP target does for a host's command.
type evSource struct {
	fd      int
	p       *poller.Poller
	r       *rig
	req     nvme.Request
	buf     []byte
	busy    bool
	signals atomic.Int64 // eventfd signals Poll saw
	done    atomic.Int64 // reads completed
	polls   atomic.Int64
	pending atomic.Bool
}

func (s *evSource) Poll() int {
	s.polls.Add(1)
	var b [8]byte
	n, err := unix.Read(s.fd, b[:])
	if err != nil || n != 8 {
		return 0
	}
	s.signals.Add(1)
	if !s.busy {
		s.busy = true
		s.r.ns.Read(&s.req, 0, s.buf, 0)
		s.req.Done = func(*nvme.Request) { s.busy = false; s.done.Add(1) }
		if err := s.p.SubmitLocal(s.r.ctrl, &s.req); err != nil {
			s.busy = false
			s.r.t.Errorf("SubmitLocal: %v", err)
		}
	}
	return 1
}

func (s *evSource) Pending() bool { return s.pending.Load() }

func newEvSource(t *testing.T, r *rig, p *poller.Poller) *evSource {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &evSource{fd: fd, p: p, r: r, buf: r.buf(4096)}
}

func signal(t *testing.T, fd int) {
	var one [8]byte
	one[0] = 1 // little endian
	if _, err := unix.Write(fd, one[:]); err != nil {
		t.Fatal(err)
	}
}

// asleep waits until the poller has gone to sleep (parked in ModePoll,
// slept on its eventfds in the interrupt modes) more than before times.
func asleep(t *testing.T, p *poller.Poller, before uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := p.Stats()
		if n := st.Parks + st.Sleeps; n > before {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("poller never slept (parks %d, sleeps %d)", st.Parks, st.Sleeps)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitCount(t *testing.T, what string, c *atomic.Int64, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d", what, c.Load(), want)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// A sleeping poller wakes for its source's file descriptor, in every
// mode, and the source's submission completes on it; without the fd in
// the sleep set the poller would sleep through it (ModePoll parks with no
// limit, the interrupt modes sleep until an interrupt or a submission).
func TestSourceFDWakesSleepingPoller(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			r := newRig(t, nvmetest.Config{}, nil)
			g := r.group(&poller.Options{CPUs: []int{0}, Mode: mode, SpinTime: 5 * time.Microsecond})
			p := g.Pollers()[0]
			s := newEvSource(t, r, p)
			if err := p.AddSource(s, s.fd); err != nil {
				t.Fatal(err)
			}
			slept := uint64(0)
			for i := int64(1); i <= 5; i++ {
				slept = asleep(t, p, slept)
				signal(t, s.fd)
				waitCount(t, "reads completed", &s.done, i)
			}
			p.RemoveSource(s)
			polls := s.polls.Load()
			signal(t, s.fd)
			time.Sleep(20 * time.Millisecond)
			if n := s.polls.Load(); n != polls {
				t.Errorf("source polled %d times after RemoveSource", n-polls)
			}
		})
	}
}

// A source without a file descriptor gets polled again after Wake, even
// when the poller sleeps in ppoll for another source's fd.
func TestSourceWake(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			r := newRig(t, nvmetest.Config{}, nil)
			g := r.group(&poller.Options{CPUs: []int{0}, Mode: mode, SpinTime: 5 * time.Microsecond})
			p := g.Pollers()[0]
			withFD := newEvSource(t, r, p)
			noFD := newEvSource(t, r, p)
			if err := p.AddSource(withFD, withFD.fd); err != nil {
				t.Fatal(err)
			}
			if err := p.AddSource(noFD, -1); err != nil {
				t.Fatal(err)
			}
			slept := uint64(0)
			for i := int64(1); i <= 5; i++ {
				slept = asleep(t, p, slept)
				signal(t, noFD.fd) // not in any sleep set
				p.Wake()
				waitCount(t, "reads completed", &noFD.done, i)
			}
			p.RemoveSource(withFD)
			p.RemoveSource(noFD)
		})
	}
}

// A pending source keeps an adaptive poller from parking: it naps.
func TestSourcePendingNaps(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	g := r.group(&poller.Options{CPUs: []int{0}, SpinTime: 5 * time.Microsecond, YieldTime: 10 * time.Microsecond})
	p := g.Pollers()[0]
	s := newEvSource(t, r, p)
	s.pending.Store(true)
	if err := p.AddSource(s, s.fd); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	before := p.Stats()
	time.Sleep(30 * time.Millisecond)
	after := p.Stats()
	if after.Parks != before.Parks {
		t.Errorf("poller parked %d times with a pending source", after.Parks-before.Parks)
	}
	if after.Yields == before.Yields {
		t.Errorf("poller never napped with a pending source")
	}
	s.pending.Store(false)
	asleep(t, p, after.Parks)
	p.RemoveSource(s)
}

// AddSource after Stop fails; RemoveSource after Stop returns.
func TestSourceAfterStop(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	g, err := poller.New([]*nvme.Controller{r.ctrl}, &poller.Options{CPUs: []int{0}})
	if err != nil {
		t.Fatal(err)
	}
	p := g.Pollers()[0]
	s := newEvSource(t, r, p)
	if err := p.AddSource(s, s.fd); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	p.RemoveSource(s)
	if err := p.AddSource(s, s.fd); err == nil {
		t.Error("AddSource after Stop succeeded")
	}
}
