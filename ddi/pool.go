package ddi

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// KMFlag says whether a call may wait for a header (KM_SLEEP, KM_NOSLEEP).
type KMFlag int

const (
	// KMSleep (KM_SLEEP): wait until a header is freed.
	KMSleep KMFlag = 0
	// KMNoSleep (KM_NOSLEEP): return nil at once when none is free.
	KMNoSleep KMFlag = 1
)

// DefaultPoolSize is the number of headers of the default pool.
const DefaultPoolSize = 1024

// Pool is a bounded set of buffer headers, the memory getrbuf(9F) draws
// from. All headers are allocated when the pool is made, each with its
// completion token and its embedded nvme.Request, so Getrbuf and Freerbuf
// allocate nothing. Any goroutine may call its methods.
//
// Splits Strategy parks with nothing in flight (no header to start with,
// or the Submitter busy) wait on the pool's wait list; a helper goroutine
// resumes them when a header is freed or after a pause, and exits when
// the list is empty (see split.go).
type Pool struct {
	free chan *Buf
	hdrs []Buf

	nwait   atomic.Int32 // len(waiting), read without the lock by Freerbuf
	sig     chan struct{}
	mu      sync.Mutex // the fields below
	waiting []*Buf     // parked splits; may hold stale or repeated entries
	helping bool       // the helper goroutine runs
}

// NewPool returns a pool of n headers (n >= 1).
func NewPool(n int) (*Pool, error) {
	if n < 1 || n > 1<<24 {
		return nil, fmt.Errorf("ddi: header pool of %d: want 1 to %d", n, 1<<24)
	}
	p := &Pool{free: make(chan *Buf, n), hdrs: make([]Buf, n), sig: make(chan struct{}, 1)}
	for i := range p.hdrs {
		bp := &p.hdrs[i]
		bp.pool = p
		bp.reset()
		bp.Flags = 0
		bp.iflags.Store(ifInPool)
		p.free <- bp
	}
	return p, nil
}

// Size returns the number of headers of the pool.
func (p *Pool) Size() int { return len(p.hdrs) }

// Free returns how many headers are free now.
func (p *Pool) Free() int { return len(p.free) }

// Getrbuf returns a cleared header (Flags BBusy), as getrbuf(9F): with
// KMSleep it waits until one is free, with KMNoSleep it returns nil at once
// when the pool is empty. Return it with Freerbuf.
func (p *Pool) Getrbuf(flag KMFlag) *Buf {
	var bp *Buf
	if flag == KMNoSleep {
		select {
		case bp = <-p.free:
		default:
			return nil
		}
	} else {
		bp = <-p.free
	}
	bp.iflags.Store(0)
	bp.Flags = BBusy
	return bp
}

var (
	defaultPool   atomic.Pointer[Pool]
	defaultPoolMu sync.Mutex
)

// DefaultPool returns the pool Getrbuf and Bioclone use, making it with
// DefaultPoolSize headers on first use. Any goroutine.
func DefaultPool() *Pool {
	if p := defaultPool.Load(); p != nil {
		return p
	}
	defaultPoolMu.Lock()
	defer defaultPoolMu.Unlock()
	if p := defaultPool.Load(); p != nil {
		return p
	}
	p, _ := NewPool(DefaultPoolSize)
	defaultPool.Store(p)
	return p
}

// SetHeaderPool replaces the default pool with a new one of n headers and
// returns it. Headers of the old pool still in use go back to the old pool
// when freed. Any goroutine; meant for start-up and tests.
func SetHeaderPool(n int) (*Pool, error) {
	p, err := NewPool(n)
	if err != nil {
		return nil, err
	}
	defaultPoolMu.Lock()
	defaultPool.Store(p)
	defaultPoolMu.Unlock()
	return p, nil
}

// Getrbuf returns a header from the default pool; see Pool.Getrbuf.
func Getrbuf(flag KMFlag) *Buf { return DefaultPool().Getrbuf(flag) }

// Freerbuf returns a header to the pool it came from, as freerbuf(9F),
// waking a Getrbuf waiting with KMSleep. The header must not be used
// afterwards. A header that no pool handed out (Bioinit'ed), one already
// free, or one with clones outstanding is left alone and counted in
// Stats.BadFree. Any goroutine.
func Freerbuf(bp *Buf) {
	p := bp.pool
	if p == nil || bp.st.Load()&stCount != 0 {
		stats.badFree.Add(1)
		return
	}
	if bp.iflags.Or(ifInPool)&ifInPool != 0 {
		stats.badFree.Add(1)
		return
	}
	bp.reset()
	bp.Flags = 0
	bp.iflags.Store(ifInPool)
	select {
	case p.free <- bp:
	default:
		stats.badFree.Add(1) // cannot happen: the channel holds every header
	}
	if p.nwait.Load() != 0 {
		p.signal()
	}
}

// reserve moves n headers of p into bp's split, all or none; false if
// fewer are free.
func (p *Pool) reserve(bp *Buf, n int) bool {
	var got *Buf
	for i := 0; i < n; i++ {
		c := p.Getrbuf(KMNoSleep)
		if c == nil {
			bp.freeHeaders(got)
			return false
		}
		c.spNext = got
		got = c
	}
	bp.spHand, bp.spHeld = got, n
	return true
}

// enqueue puts a parked split on the wait list and makes sure the helper
// runs. It does not wake a helper that waits: the split needs a header
// freed (Freerbuf wakes it) or time to pass (the helper's pause), and
// the helper puts back on the list the splits it could not move. Any
// goroutine.
func (p *Pool) enqueue(bp *Buf) {
	p.mu.Lock()
	p.waiting = append(p.waiting, bp)
	p.nwait.Store(int32(len(p.waiting)))
	start := !p.helping
	p.helping = true
	p.mu.Unlock()
	if start {
		go p.help()
	}
}

func (p *Pool) signal() {
	select {
	case p.sig <- struct{}{}:
	default:
	}
}

// Pauses of the helper between attempts while splits wait and none of
// them made progress: a freed header ends a pause early.
const (
	helpPauseMin = 20 * time.Microsecond
	helpPauseMax = time.Millisecond
)

// help resumes the splits on the wait list until it is empty.
func (p *Pool) help() {
	var batch []*Buf
	pause := helpPauseMin
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		p.mu.Lock()
		if len(p.waiting) == 0 {
			p.helping = false
			p.mu.Unlock()
			return
		}
		batch, p.waiting = p.waiting, batch[:0]
		p.nwait.Store(0)
		p.mu.Unlock()
		progress := false
		for i, bp := range batch {
			batch[i] = nil
			if bp.take() && bp.dev.drive(bp) {
				progress = true
			}
		}
		if progress {
			pause = helpPauseMin
		}
		// Wait for a freed header (Freerbuf signals) or, for splits
		// waiting for room in their Submitter, the pause, before the
		// next pass: the splits that got nothing this pass would get
		// nothing again at once.
		t.Reset(pause)
		select {
		case <-p.sig:
		case <-t.C:
			pause = min(2*pause, helpPauseMax)
		}
	}
}
