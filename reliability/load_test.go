package reliability_test

import (
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme"
)

// errLoopStopped: a request reached a loopSubmitter that was stopping.
var errLoopStopped = errors.New("loop submitter stopped")

// loopSubmitter is an asynchronous ddi.Submitter: one goroutine owns the
// queue pair, takes requests from a channel, and polls; completions (and
// so Biodone and every Iodone) run on it. Several workers share it, so
// their commands overlap on the queue pair, up to its depth and beyond
// (the queue pair's wait list). It is a test's small stand-in for package
// poller.
type loopSubmitter struct {
	name  string
	qp    *nvme.QueuePair
	in    chan *nvme.Request
	quit  chan struct{}
	done  chan struct{}
	stats nvme.QueueStats // copied when the loop ends
	// refused counts requests qp.Submit did not accept; the loop failed
	// them through Done (the Submitter contract: Submit returned nil).
	refused atomic.Uint64
}

func newLoop(name string, qp *nvme.QueuePair) *loopSubmitter {
	l := &loopSubmitter{name: name, qp: qp, in: make(chan *nvme.Request, 8192), quit: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
}

// Submit hands r to the loop. Any goroutine.
func (l *loopSubmitter) Submit(r *nvme.Request) error {
	select {
	case <-l.quit:
		return errLoopStopped
	default:
	}
	l.in <- r
	return nil
}

func (l *loopSubmitter) take(r *nvme.Request) {
	if err := l.qp.Submit(r); err != nil {
		l.refused.Add(1)
		r.Err = err
		r.Done(r)
	}
}

func (l *loopSubmitter) run() {
	defer close(l.done)
	idle := 0
	for {
		for more := true; more; {
			select {
			case r := <-l.in:
				l.take(r)
			default:
				more = false
			}
		}
		n := l.qp.Poll()
		switch {
		case n > 0:
			idle = 0
		case l.qp.InFlight()+l.qp.Waiting() > 0:
			// Outstanding commands: keep polling (deadlines, resets and
			// removal are noticed in Poll), yielding to the device.
			if idle++; idle > 2000 {
				time.Sleep(20 * time.Microsecond)
			} else {
				runtime.Gosched()
			}
		default:
			idle = 0
			select {
			case r := <-l.in:
				l.take(r)
			case <-l.quit:
				// Nothing outstanding; fail what raced the quit.
				for {
					select {
					case r := <-l.in:
						r.Err = errLoopStopped
						l.refused.Add(1)
						r.Done(r)
					default:
						l.stats = l.qp.Stats()
						return
					}
				}
			}
		}
	}
}

// stop ends the loop once nothing is outstanding and hands the queue pair
// back to the caller. Its workers must have stopped.
func (l *loopSubmitter) stop() {
	select {
	case <-l.quit:
	default:
		close(l.quit)
	}
	<-l.done
}

// target is what one worker runs on: a registered device and the
// partition [lo, hi) of its blocks that the worker owns.
type target struct {
	dev    *ddi.Device
	via    string // the submitter, for messages
	lo, hi uint64
}

// loadConfig drives startLoad.
type loadConfig struct {
	run      uint64
	mem      *dma.Allocator
	targets  []target
	maxBytes int           // largest transfer per Buf (a block multiple)
	duration time.Duration // the workers stop by themselves after it (0: only at stop)
	deliver  time.Duration // how long one Buf may take to be delivered
	// accept says whether an error on a Buf is one the test expects. Nil
	// accepts none.
	accept func(op string, err error) bool
	gens   *atomic.Uint64 // generation counter shared by the run
}

// opErr is one failed Buf.
type opErr struct {
	worker int
	op     string
	lba, n uint64
	err    error
	at     time.Time
}

// load is a running set of workers.
type load struct {
	t       testing.TB
	cfg     loadConfig
	workers []*worker
	quit    chan struct{}
	wg      sync.WaitGroup
	start   time.Time
	ops     atomic.Uint64 // Bufs delivered, all workers

	mu   sync.Mutex
	errs []opErr
}

// worker issues one Buf at a time on its partition.
type worker struct {
	l   *load
	id  int
	tg  target
	bs  int
	m   *model
	rng *rand.Rand
	buf *dma.Buffer
	bp  ddi.Buf
	// wake receives a token from Iodone; delivered counts Iodone calls.
	wake      chan struct{}
	delivered atomic.Uint64
	started   uint64

	// Results, read after the worker ended.
	writes, reads       uint64
	wBytes, rBytes      uint64
	verBlocks, blankBlk uint64
	lastLBA, lastN      uint64
	stuck               bool
}

// newLoad makes the workers of cfg, each with its DMA buffer and model;
// run starts them.
func newLoad(t testing.TB, cfg loadConfig) *load {
	t.Helper()
	if cfg.deliver == 0 {
		cfg.deliver = 30 * time.Second
	}
	if cfg.gens == nil {
		cfg.gens = &atomic.Uint64{}
	}
	l := &load{t: t, cfg: cfg, quit: make(chan struct{}), start: time.Now()}
	for i, tg := range cfg.targets {
		bs := tg.dev.Namespace().BlockSize()
		if tg.hi-tg.lo < uint64(cfg.maxBytes/bs) {
			t.Fatalf("worker %d: partition of %d blocks is smaller than a %d-byte transfer", i, tg.hi-tg.lo, cfg.maxBytes)
		}
		buf, err := cfg.mem.Alloc(cfg.maxBytes)
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
		w := &worker{l: l, id: i, tg: tg, bs: bs, m: newModel(tg.lo, tg.hi-tg.lo),
			rng: rand.New(rand.NewPCG(cfg.run, uint64(i))), buf: buf, wake: make(chan struct{}, 1)}
		ddi.Bioinit(&w.bp)
		l.workers = append(l.workers, w)
	}
	return l
}

// run starts the workers.
func (l *load) run() *load {
	l.start = time.Now()
	for _, w := range l.workers {
		l.wg.Add(1)
		go w.loop()
	}
	return l
}

// stop stops the workers after their current Buf and waits for them.
func (l *load) stop() {
	select {
	case <-l.quit:
	default:
		close(l.quit)
	}
	l.wg.Wait()
}

// waitOps waits until n more Bufs were delivered since the call, or d
// passed; it reports whether they were.
func (l *load) waitOps(n uint64, d time.Duration) bool {
	target := l.ops.Load() + n
	for deadline := time.Now().Add(d); l.ops.Load() < target; {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// freeBuffers returns the workers' DMA buffers (not those of a worker
// whose Buf never came back: the device may still write there).
func (l *load) freeBuffers() {
	for _, w := range l.workers {
		if !w.stuck && w.buf != nil {
			l.cfg.mem.Free(w.buf)
			w.buf = nil
		}
	}
}

func (l *load) stopped() bool {
	select {
	case <-l.quit:
		return true
	default:
	}
	return l.cfg.duration > 0 && time.Since(l.start) > l.cfg.duration
}

func (w *worker) loop() {
	defer w.l.wg.Done()
	maxBlk := uint64(w.l.cfg.maxBytes / w.bs)
	for !w.l.stopped() {
		// Sizes log-uniform from one block to maxBlk: small and large
		// transfers alike, most of the large ones split at MDTS.
		e := w.rng.IntN(bits.Len64(maxBlk))
		n := min(maxBlk, uint64(1)<<e+w.rng.Uint64N(uint64(1)<<e))
		lba := w.tg.lo + w.rng.Uint64N(w.tg.hi-w.tg.lo-n+1)
		var ok bool
		switch k := w.rng.IntN(3); {
		case k == 0 || w.lastN == 0:
			ok = w.write(lba, n)
			w.lastLBA, w.lastN = lba, n
		case k == 1:
			ok = w.read(lba, n)
		default:
			ok = w.read(w.lastLBA, w.lastN) // read back the last write
		}
		if !ok {
			return
		}
	}
}

// io runs one Buf to delivery and returns its error; false if it was not
// delivered in time (the worker must stop: the Buf is not ours again).
func (w *worker) io(flags ddi.Flags, cmd ddi.Cmd, lba, n uint64) (ok bool, err error) {
	bp := &w.bp
	ddi.Bioreset(bp)
	bp.Flags |= flags
	bp.Cmd = cmd
	bp.Edev = w.tg.dev.Edev()
	bp.Lblkno = lba
	bp.Bcount = int(n) * w.bs
	bp.Addr = w.buf.Bytes[:bp.Bcount]
	bp.Iodone = w.iodone
	w.started++
	ddi.Strategy(bp)
	select {
	case <-w.wake:
	case <-time.After(w.l.cfg.deliver):
		w.stuck = true
		w.l.t.Errorf("worker %d (%s): %v of %d blocks at %d not delivered within %v", w.id, w.tg.via, flags, n, lba, w.l.cfg.deliver)
		return false, nil
	}
	if d := w.delivered.Load(); d != w.started {
		w.l.t.Errorf("worker %d: %d Bufs started, %d deliveries", w.id, w.started, d)
	}
	w.l.ops.Add(1)
	if bp.Flags&ddi.BDone == 0 {
		w.l.t.Errorf("worker %d: delivered without BDone: %v", w.id, bp.Flags)
	}
	err = ddi.Geterror(bp)
	if err == nil && bp.Resid != 0 {
		w.l.t.Errorf("worker %d: success with Resid %d of %d", w.id, bp.Resid, bp.Bcount)
	}
	if err != nil && (bp.Resid <= 0 || bp.Resid > bp.Bcount) {
		w.l.t.Errorf("worker %d: failure (%v) with Resid %d of %d", w.id, err, bp.Resid, bp.Bcount)
	}
	return true, err
}

// iodone runs on the completion goroutine; it must not block.
func (w *worker) iodone(*ddi.Buf) int {
	w.delivered.Add(1)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return 0
}

func (w *worker) fail(op string, lba, n uint64, err error) {
	l := w.l
	err = detach(err)
	l.mu.Lock()
	l.errs = append(l.errs, opErr{worker: w.id, op: op, lba: lba, n: n, err: err, at: time.Now()})
	l.mu.Unlock()
	if l.cfg.accept == nil || !l.cfg.accept(op, err) {
		l.t.Errorf("worker %d (%s): %s of %d blocks at %d: unexpected error: %v", w.id, w.tg.via, op, n, lba, err)
	}
}

func (w *worker) write(lba, n uint64) bool {
	gen := w.l.cfg.gens.Add(1)
	data := w.buf.Bytes[:int(n)*w.bs]
	fillBlocks(data, w.bs, lba, gen, w.l.cfg.run)
	ok, err := w.io(ddi.BWrite, ddi.CmdData, lba, n)
	if !ok {
		w.m.unsure(lba, n, uint32(gen))
		return false
	}
	w.writes++
	if err != nil {
		w.m.unsure(lba, n, uint32(gen))
		w.fail("write", lba, n, err)
		return true
	}
	w.wBytes += uint64(len(data))
	w.m.wrote(lba, n, uint32(gen))
	return true
}

func (w *worker) read(lba, n uint64) bool {
	data := w.buf.Bytes[:int(n)*w.bs]
	// Poison the buffer: a read that claims success without moving data
	// must not pass on what the last write left there.
	clear(data)
	ok, err := w.io(ddi.BRead, ddi.CmdData, lba, n)
	if !ok {
		return false
	}
	w.reads++
	if err != nil {
		w.fail("read", lba, n, err)
		return true
	}
	w.rBytes += uint64(len(data))
	w.verify(lba, data, "read")
	return true
}

// verify checks data read from lba against the worker's model.
func (w *worker) verify(lba uint64, data []byte, what string) {
	ver, blk, errs, nbad := w.m.checkRange(lba, data, w.bs, w.l.cfg.run)
	w.verBlocks += uint64(ver)
	w.blankBlk += uint64(blk)
	if nbad > 0 {
		w.l.t.Errorf("worker %d (%s): %s of blocks [%d, %d): %d blocks wrong: %v", w.id, w.tg.via, what, lba, lba+uint64(len(data)/w.bs), nbad, errs)
	}
}

// sweep reads the whole partition of every worker through ddi and
// verifies each block; the workers must have stopped. It returns the
// bytes of tagged blocks verified.
func (l *load) sweep() uint64 {
	var total uint64
	for _, w := range l.workers {
		if w.stuck {
			continue
		}
		before := w.verBlocks
		chunk := uint64(l.cfg.maxBytes / w.bs)
		for lba := w.tg.lo; lba < w.tg.hi; lba += chunk {
			n := min(chunk, w.tg.hi-lba)
			data := w.buf.Bytes[:int(n)*w.bs]
			clear(data)
			ok, err := w.io(ddi.BRead, ddi.CmdData, lba, n)
			if !ok {
				break
			}
			if err != nil {
				l.t.Errorf("sweep: worker %d: read [%d, %d): %v", w.id, lba, lba+n, err)
				continue
			}
			w.verify(lba, data, "sweep")
		}
		total += (w.verBlocks - before) * uint64(w.bs)
	}
	return total
}

// totals sums the workers' counters.
type totals struct {
	writes, reads, wBytes, rBytes, verified, delivered, started uint64
}

func (l *load) totals() totals {
	var s totals
	for _, w := range l.workers {
		s.writes += w.writes
		s.reads += w.reads
		s.wBytes += w.wBytes
		s.rBytes += w.rBytes
		s.verified += w.verBlocks * uint64(w.bs)
		s.delivered += w.delivered.Load()
		s.started += w.started
	}
	return s
}

func (s totals) String() string {
	return fmt.Sprintf("%d writes (%.1f MiB), %d reads (%.1f MiB), %.1f MiB of tagged blocks verified; %d Bufs, %d deliveries",
		s.writes, mib(s.wBytes), s.reads, mib(s.rBytes), mib(s.verified), s.started, s.delivered)
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// detach copies the error a Buf carries out of the Buf, whose storage
// the next transfer reuses.
func detach(err error) error {
	var be *ddi.BufError
	if !errors.As(err, &be) {
		return err
	}
	c := *be
	var se *nvme.StatusError
	if errors.As(c.Err, &se) && c.Err == error(se) {
		sc := *se
		c.Err = &sc
	}
	return &c
}

// failures returns the failed Bufs recorded so far.
func (l *load) failures() []opErr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]opErr(nil), l.errs...)
}

// checkExactlyOnce fails the test unless every Buf was delivered exactly
// once, after a short grace period for late duplicates.
func (l *load) checkExactlyOnce() {
	time.Sleep(20 * time.Millisecond)
	s := l.totals()
	if s.delivered != s.started {
		l.t.Errorf("%d Bufs started, %d deliveries", s.started, s.delivered)
	}
}
