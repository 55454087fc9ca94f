package nvmetest

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Latency is a distribution of command latencies: the time from the
// device fetching an I/O command to executing it and posting its
// completion. It runs on the device goroutine with the fake's own random
// source (Config.Seed), so a seed gives the same sequence of draws.
//
// Commands on one queue are fetched in order but complete when their
// draw says, so completions come out of order within a queue, as they do
// on hardware with several flash channels.
type Latency func(rng *rand.Rand) time.Duration

// Fixed is a latency of exactly d for every command; Fixed(0) executes
// each command as soon as it is fetched, in order, which is what a test
// that needs an in-order device (or a benchmark of the host's overhead)
// asks for.
func Fixed(d time.Duration) Latency {
	return func(*rand.Rand) time.Duration { return d }
}

// Uniform draws latencies uniformly from [lo, hi].
func Uniform(lo, hi time.Duration) Latency {
	if hi < lo {
		lo, hi = hi, lo
	}
	return func(r *rand.Rand) time.Duration {
		return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
	}
}

// Exponential draws latencies from lo plus an exponential distribution
// of mean mean-lo, capped at hi: most commands are fast, a few are much
// slower (a long tail, as on flash).
func Exponential(lo, mean, hi time.Duration) Latency {
	return func(r *rand.Rand) time.Duration {
		x := r.ExpFloat64() * float64(mean-lo)
		if x >= float64(hi-lo) || math.IsNaN(x) {
			return hi
		}
		return lo + time.Duration(x)
	}
}

// DefaultLatency is the latency of a Config that sets none: 2 µs plus an
// exponential tail of mean 20 µs, capped at 1 ms.
var DefaultLatency = Exponential(2*time.Microsecond, 20*time.Microsecond, time.Millisecond)

// pendingCmd is an I/O command the device fetched and will execute at due.
type pendingCmd struct {
	due int64  // monotonic ns
	seq uint64 // fetch order, to keep equal dues in order
	sq  *sqState
	cmd spec.Command
	// inProgress: the device is executing it (Slow); Abort cannot stop
	// it.
	inProgress bool
}

// cmdHeap is a binary min-heap of pending commands by (due, seq). It is
// written out rather than built on container/heap, whose interface boxes
// every element it pushes.
type cmdHeap struct {
	h []pendingCmd
}

func (p *cmdHeap) len() int { return len(p.h) }

func (p *cmdHeap) less(i, j int) bool {
	a, b := &p.h[i], &p.h[j]
	return a.due < b.due || a.due == b.due && a.seq < b.seq
}

func (p *cmdHeap) push(c pendingCmd) {
	p.h = append(p.h, c)
	p.up(len(p.h) - 1)
}

// peek returns the earliest command; the heap must not be empty.
func (p *cmdHeap) peek() *pendingCmd { return &p.h[0] }

// remove takes out the command at index i and returns it.
func (p *cmdHeap) remove(i int) pendingCmd {
	c := p.h[i]
	last := len(p.h) - 1
	if i != last {
		p.h[i] = p.h[last]
		p.h = p.h[:last]
		p.down(i)
		p.up(i)
	} else {
		p.h = p.h[:last]
	}
	return c
}

// filter removes the commands keep rejects, calling it once per command.
func (p *cmdHeap) filter(keep func(*pendingCmd) bool) {
	n := 0
	for i := range p.h {
		if keep(&p.h[i]) {
			p.h[n] = p.h[i]
			n++
		}
	}
	p.h = p.h[:n]
	for i := n/2 - 1; i >= 0; i-- {
		p.down(i)
	}
}

func (p *cmdHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !p.less(i, parent) {
			return
		}
		p.h[i], p.h[parent] = p.h[parent], p.h[i]
		i = parent
	}
}

func (p *cmdHeap) down(i int) {
	n := len(p.h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && p.less(r, l) {
			m = r
		}
		if !p.less(m, i) {
			return
		}
		p.h[i], p.h[m] = p.h[m], p.h[i]
		i = m
	}
}
