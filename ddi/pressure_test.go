package ddi_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// waitBuf is Biowait with a limit, so that a hang fails the test instead
// of timing the whole binary out.
func waitBuf(t *testing.T, bp *ddi.Buf, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := ddi.BiowaitContext(ctx, bp)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("buffer not delivered within %v (flags %v, outstanding %d)", d, bp.Flags, bp.Outstanding())
	}
	return err
}

// The substitute-iodone pattern of biodone(9F)'s NOTES after Strategy: a
// driver saves b_iodone, puts its own, and its routine restores the saved
// one and calls biodone again to release the buffer. Biowait returns (the
// saved Iodone was nil), or the saved Iodone runs.
func TestNotesPatternAfterStrategy(t *testing.T) {
	r := newRig(t, nvmetest.Config{MDTS: 2})
	d := r.dev(1)
	for _, split := range []bool{false, true} {
		size := 4096
		if split {
			size = 64 << 10 // 4 pieces
		}
		data := r.buf(size)

		// The saved Iodone is nil: the second Biodone wakes Biowait.
		bp := newBuf(d.Edev(), ddi.BRead, 0, data)
		saved := bp.Iodone
		var subs atomic.Int32
		bp.Iodone = func(bp *ddi.Buf) int {
			subs.Add(1)
			bp.Iodone = saved
			ddi.Biodone(bp)
			return 0
		}
		ddi.Strategy(bp)
		if err := waitBuf(t, bp, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if subs.Load() != 1 {
			t.Fatalf("split %v: substitute ran %d times", split, subs.Load())
		}

		// The saved Iodone is the driver's own: it runs after the
		// substitute, once.
		bp = newBuf(d.Edev(), ddi.BRead, 0, data)
		var outer atomic.Int32
		done := make(chan struct{})
		bp.Iodone = func(*ddi.Buf) int { outer.Add(1); close(done); return 0 }
		saved = bp.Iodone
		bp.Iodone = func(bp *ddi.Buf) int {
			bp.Iodone = saved
			ddi.Biodone(bp)
			return 0
		}
		ddi.Strategy(bp)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("split %v: the restored Iodone never ran", split)
		}
		if outer.Load() != 1 {
			t.Fatalf("split %v: restored Iodone ran %d times", split, outer.Load())
		}
	}
}

// pollerDev registers namespace 1 of r behind a one-poller group.
func pollerDev(t *testing.T, r *rig, popts *poller.Options, opts ...ddi.Option) (*ddi.Device, *poller.Group) {
	t.Helper()
	g, err := poller.New([]*nvme.Controller{r.ctrl}, popts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := g.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	d, err := ddi.RegisterDevice(r.ns(1), g.Handle(r.ctrl), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ddi.Unregister(d.Edev()) })
	return d, g
}

// The reproduction of the issue: a header pool of 2, a request of 4
// pieces, one poller, Strategy called from a Done callback on that poller.
// Before, Strategy waited for a header inside the callback, on the only
// goroutine that could free one: the request never completed and Stop
// hung. Now the split continues as its pieces come back.
func TestSplitFromDoneSmallPool(t *testing.T) {
	r := newRig(t, nvmetest.Config{MDTS: 2}) // 16 KiB per command
	pool := mustPool(t, 2)
	d, g := pollerDev(t, r, &poller.Options{CPUs: []int{1}}, ddi.WithPool(pool))
	const size = 64 << 10 // 4 pieces
	data := r.buf(size)
	fill(data, 0, 512, 9)
	if err := run(newBuf(d.Edev(), ddi.BWrite, 0, data)); err != nil {
		t.Fatal(err)
	}
	got := r.buf(size)
	bp := newBuf(d.Edev(), ddi.BRead, 0, got)
	// A raw request whose Done (on the poller) starts the split.
	trigger := &nvme.Request{Done: func(q *nvme.Request) { ddi.Strategy(bp) }}
	if err := r.ns(1).Flush(trigger); err != nil {
		t.Fatal(err)
	}
	if err := g.Handle(r.ctrl).Submit(trigger); err != nil {
		t.Fatal(err)
	}
	if err := waitBuf(t, bp, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if bp.Resid != 0 || bp.Children() != 4 || !bytes.Equal(got, data) {
		t.Fatalf("resid %d children %d, data equal %v", bp.Resid, bp.Children(), bytes.Equal(got, data))
	}
	if pool.Free() != 2 {
		t.Fatalf("%d headers free after the transfer, want 2", pool.Free())
	}
}

// Many split transfers at once, from Iodone callbacks on two pollers and
// from plain goroutines, against a pool far smaller than their pieces:
// every transfer completes with the right data, splits wait on the pool's
// queue, and the pool gets every header back.
func TestSplitPressure(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run(map[bool]string{false: "pollers", true: "SyncSubmitter"}[sync], func(t *testing.T) {
			r := newRig(t, nvmetest.Config{MDTS: 2})
			pool := mustPool(t, 3)
			var d *ddi.Device
			if sync {
				d = r.dev(1, ddi.WithPool(pool), ddi.WithMaxChildren(2))
			} else {
				d, _ = pollerDev(t, r, &poller.Options{CPUs: []int{0, 1}}, ddi.WithPool(pool), ddi.WithMaxChildren(2))
			}
			splitPressure(t, r, d, pool)
		})
	}
}

func splitPressure(t *testing.T, r *rig, d *ddi.Device, pool *ddi.Pool) {
	const n, size, rounds = 8, 96 << 10, 6 // 6 pieces each
	data := r.buf(n * size)
	fill(data, 0, 512, 11)
	var wg sync.WaitGroup
	errs := make(chan error, n*rounds)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mem := data[i*size : (i+1)*size]
			blk := int64(i * size / 512)
			bp := newBuf(d.Edev(), ddi.BWrite, blk, mem)
			left := rounds
			done := make(chan struct{})
			bp.Iodone = func(bp *ddi.Buf) int {
				if err := ddi.Geterror(bp); err != nil {
					errs <- err
				}
				if left--; left == 0 {
					close(done)
					return 0
				}
				ddi.Strategy(bp) // again, from the completion goroutine
				return 0
			}
			ddi.Strategy(bp)
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				errs <- errors.New("transfer chain did not finish")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := r.buf(n * size)
	if err := run(newBuf(d.Edev(), ddi.BRead, 0, got)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
	if pool.Free() != 3 {
		t.Fatalf("%d headers free, want 3", pool.Free())
	}
	if s := d.Stats(); s.Parked == 0 || s.Failed != 0 {
		t.Fatalf("stats %+v: want splits parked on the pool, none failed", s)
	}
}

// holder is a Submitter that keeps every request until the test completes
// it, to watch how many pieces of a transfer are in flight at once.
type holder struct {
	mu      sync.Mutex
	held    []*nvme.Request
	maxHeld int
	total   int
}

func (h *holder) Submit(r *nvme.Request) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held = append(h.held, r)
	h.maxHeld = max(h.maxHeld, len(h.held))
	h.total++
	return nil
}

// completeOne completes the oldest held request successfully, on the
// caller's goroutine; false if none is held.
func (h *holder) completeOne() bool {
	h.mu.Lock()
	if len(h.held) == 0 {
		h.mu.Unlock()
		return false
	}
	r := h.held[0]
	h.held = h.held[1:]
	h.mu.Unlock()
	r.Err, r.Status = nil, 0
	r.Done(r)
	return true
}

// At most MaxChildren pieces of a transfer are in flight; each piece that
// comes back carries the next one.
func TestMaxChildren(t *testing.T) {
	r := newRig(t, nvmetest.Config{MDTS: 2})
	h := &holder{}
	d, err := ddi.RegisterDevice(r.ns(1), h, ddi.WithMaxChildren(4))
	if err != nil {
		t.Fatal(err)
	}
	defer ddi.Unregister(d.Edev())
	data := r.buf(1 << 20) // 64 pieces
	bp := newBuf(d.Edev(), ddi.BWrite, 0, data)
	ddi.Strategy(bp)
	for h.completeOne() {
	}
	if err := waitBuf(t, bp, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if h.total != 64 || h.maxHeld != 4 || bp.Children() != 64 || bp.Resid != 0 {
		t.Fatalf("%d pieces, at most %d in flight (want 64, 4); children %d resid %d", h.total, h.maxHeld, bp.Children(), bp.Resid)
	}
}

// StrategyNoSleep takes every header a transfer will hold up front, or
// refuses it with ErrNoHeaders (ENOMEM) before anything is sent.
func TestStrategyNoSleep(t *testing.T) {
	r := newRig(t, nvmetest.Config{MDTS: 2})
	pool := mustPool(t, 3)
	d := r.dev(1, ddi.WithPool(pool))
	data := r.buf(64 << 10) // 4 pieces
	bp := newBuf(d.Edev(), ddi.BWrite, 0, data)
	r.rec.start(data)
	ddi.StrategyNoSleep(bp)
	err := waitBuf(t, bp, 5*time.Second)
	if sent := r.rec.stop(); len(sent) != 0 {
		t.Fatalf("%d pieces sent before the refusal", len(sent))
	}
	if !errors.Is(err, ddi.ErrNoHeaders) || !errors.Is(err, syscall.ENOMEM) || bp.Resid != bp.Bcount {
		t.Fatalf("error %v resid %d: want ErrNoHeaders, ENOMEM, everything left", err, bp.Resid)
	}
	if pool.Free() != 3 || d.Stats().Refused != 1 || d.Stats().Failed != 1 {
		t.Fatalf("free %d stats %+v", pool.Free(), d.Stats())
	}
	// With MaxChildren 3 the same transfer needs only 3 headers.
	d3 := r.dev(1, ddi.WithPool(pool), ddi.WithMaxChildren(3))
	bp = newBuf(d3.Edev(), ddi.BWrite, 0, data)
	ddi.StrategyNoSleep(bp)
	if err := waitBuf(t, bp, 5*time.Second); err != nil || bp.Children() != 4 {
		t.Fatalf("error %v children %d", err, bp.Children())
	}
}

// busyOnce is a SyncSubmitter that refuses the n-th and the (n+1)-th
// request as a full poller ring does (poller.ErrBusy).
type busyOnce struct {
	sub  ddi.Submitter
	n    int
	seen int
}

func (b *busyOnce) Submit(r *nvme.Request) error {
	b.seen++
	if b.seen == b.n || b.seen == b.n+1 {
		return poller.ErrBusy
	}
	return b.sub.Submit(r)
}

func (b *busyOnce) MaxTransfer() int { return b.sub.(interface{ MaxTransfer() int }).MaxTransfer() }

// A Submitter without room (ErrBusy, EAGAIN): for the first command of a
// transfer the whole Buf is refused with EAGAIN, nothing sent; for a later
// piece the transfer waits for room and completes without error, even
// when no piece of it is in flight to resume it (the pool's helper
// retries).
func TestBusySubmitter(t *testing.T) {
	r := newRig(t, nvmetest.Config{MDTS: 2})
	data := r.buf(64 << 10) // 4 pieces
	fill(data, 0, 512, 5)
	for _, tc := range []struct {
		name    string
		n       int
		refused bool
	}{{"first piece", 1, true}, {"third piece", 3, false}} {
		t.Run(tc.name, func(t *testing.T) {
			sub := &busyOnce{sub: r.sync, n: tc.n}
			d, err := ddi.RegisterDevice(r.ns(1), sub)
			if err != nil {
				t.Fatal(err)
			}
			defer ddi.Unregister(d.Edev())
			io0 := r.fake.Stats().TotalIO()
			bp := newBuf(d.Edev(), ddi.BWrite, 0, data)
			ddi.Strategy(bp)
			err = waitBuf(t, bp, 5*time.Second)
			sent := r.fake.Stats().TotalIO() - io0
			if tc.refused {
				var be *ddi.BufError
				if !errors.As(err, &be) || be.Errno != syscall.EAGAIN || !errors.Is(err, poller.ErrBusy) || bp.Resid != bp.Bcount || sent != 0 {
					t.Fatalf("error %v resid %d, %d commands: want Errno EAGAIN, everything left, none sent", err, bp.Resid, sent)
				}
				if s := d.Stats(); s.Refused != 1 {
					t.Fatalf("stats %+v: want one refusal", s)
				}
				return
			}
			if err != nil || bp.Resid != 0 || sent != 4 {
				t.Fatalf("error %v resid %d, %d commands: want the whole transfer", err, bp.Resid, sent)
			}
			// The first refusal is retried at once (a piece came back
			// meanwhile), the second waits for the pool's helper:
			// nothing of the transfer is in flight to resume it.
			if s := d.Stats(); s.BusyWaits != 2 || s.Parked != 1 {
				t.Fatalf("stats %+v: want two busy waits, parked once", s)
			}
		})
	}
}

// ErrBusy from a real poller under FullFail mid-split, with the device
// stalled and a tiny ring: the transfer waits for room and completes
// intact instead of failing with EIO.
func TestBusyPollerMidSplit(t *testing.T) {
	r := newRig(t, nvmetest.Config{MDTS: 2})
	d, _ := pollerDev(t, r, &poller.Options{CPUs: []int{1}, QueueDepth: 4, RingSize: 4, Full: poller.FullFail})
	const size = 512 << 10 // 32 pieces
	data := r.buf(size)
	fill(data, 0, 512, 7)
	r.fake.Stall(30 * time.Millisecond)
	bp := newBuf(d.Edev(), ddi.BWrite, 0, data)
	ddi.Strategy(bp)
	if err := waitBuf(t, bp, 10*time.Second); err != nil {
		t.Fatalf("error %v (resid %d): a full ring mid-split must not fail the transfer", err, bp.Resid)
	}
	if d.Stats().BusyWaits == 0 {
		t.Fatal("the ring never ran full: the test proves nothing")
	}
	got := r.buf(size)
	if err := waitBufRun(t, newBuf(d.Edev(), ddi.BRead, 0, got)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
}

func waitBufRun(t *testing.T, bp *ddi.Buf) error {
	ddi.Strategy(bp)
	return waitBuf(t, bp, 10*time.Second)
}

// A header resubmitted without Bioreset after a failed transfer does its
// new transfer: the old error does not complete it at once.
func TestResubmitWithoutBioreset(t *testing.T) {
	r := newRig(t, nvmetest.Config{MDTS: 2})
	d := r.dev(1)
	for _, size := range []int{4096, 64 << 10} {
		data := r.buf(size)
		fill(data, 100, 512, 3)
		if err := run(newBuf(d.Edev(), ddi.BWrite, 100, data)); err != nil {
			t.Fatal(err)
		}
		r.fake.InjectStatus(nvmetest.IO(spec.IORead).Range(100, 1), spec.SCTMediaError, spec.SCUnrecoveredReadError, 1)
		got := r.buf(size)
		bp := newBuf(d.Edev(), ddi.BRead, 100, got)
		if err := run(bp); !errors.Is(err, nvme.ErrMedia) {
			t.Fatalf("first read: %v, want the injected media error", err)
		}
		io0 := r.fake.Stats().Commands(spec.IORead)
		err := run(bp) // same header, no Bioreset
		if n := r.fake.Stats().Commands(spec.IORead) - io0; err != nil || n == 0 || bp.Resid != 0 || !bytes.Equal(got, data) {
			t.Fatalf("size %d: resubmitted without Bioreset: error %v, %d reads sent, resid %d", size, err, n, bp.Resid)
		}
	}
}

// DeviceStats.Failed counts the buffers Strategy delivered with an error,
// once each.
func TestDeviceStatsFailed(t *testing.T) {
	r := newRig(t, nvmetest.Config{})
	d := r.dev(1)
	data := r.buf(4096)
	if err := run(newBuf(d.Edev(), ddi.BRead, 0, data)); err != nil {
		t.Fatal(err)
	}
	bp := newBuf(d.Edev(), ddi.BRead, int64(d.Namespace().Blocks())+5, data)
	if err := run(bp); !errors.Is(err, ddi.ErrPastEnd) {
		t.Fatal(err)
	}
	ddi.Biodone(bp) // a stray second biodone does not count again
	r.fake.InjectStatus(nvmetest.IO(spec.IORead), spec.SCTMediaError, spec.SCUnrecoveredReadError, 1)
	if err := run(newBuf(d.Edev(), ddi.BRead, 0, data)); err == nil {
		t.Fatal("injected error not seen")
	}
	if s := d.Stats(); s.Strategies != 3 || s.Failed != 2 {
		t.Fatalf("stats %+v: want 3 strategies, 2 failed", s)
	}
}

// A storm: goroutines write and read back transfers of random size (1 to
// 40 pieces) through two pollers under FullFail, once with headers scarce
// (a pool of 8, at most 3 pieces in flight each) and once with room
// scarce (tiny rings and queues, up to 16 pieces in flight each). Every
// transfer is delivered once, and either succeeds or is refused whole
// before anything was sent (EAGAIN: its first piece found the ring full);
// what was written reads back, and the pool gets every header back.
func TestSplitStorm(t *testing.T) {
	for _, tc := range []struct {
		name               string
		pool, children     int
		depth, ring        int
		rounds             int
		wantParked, wantBW bool
	}{
		{"headers scarce", 8, 3, 16, 64, 12, true, false},
		{"room scarce", 256, 16, 4, 8, 5, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nvmetest.Config{MDTS: 2})
			pool := mustPool(t, tc.pool)
			d, _ := pollerDev(t, r, &poller.Options{CPUs: []int{0, 1}, QueueDepth: tc.depth, RingSize: tc.ring, Full: poller.FullFail},
				ddi.WithPool(pool), ddi.WithMaxChildren(tc.children))
			refused := splitStorm(t, r, d, tc.rounds)
			if pool.Free() != tc.pool {
				t.Fatalf("%d headers free, want %d", pool.Free(), tc.pool)
			}
			s := d.Stats()
			if s.Failed != uint64(refused) || s.Refused != uint64(refused) || (tc.wantParked && s.Parked == 0) || (tc.wantBW && s.BusyWaits == 0) {
				t.Fatalf("stats %+v, %d refusals seen", s, refused)
			}
			// The pool's helper retries a waiting split when a header
			// is freed or after a pause, not in a loop.
			if s.Parked > 200*s.Strategies {
				t.Fatalf("stats %+v: splits parked %d times, the helper spins", s, s.Parked)
			}
			t.Logf("stats %+v, %d refusals", s, refused)
		})
	}
}

func splitStorm(t *testing.T, r *rig, d *ddi.Device, rounds int) int64 {
	const workers, maxPieces = 8, 40
	const span = maxPieces * 16 << 10
	var wg sync.WaitGroup
	var refused atomic.Int64
	errs := make(chan error, workers)
	for w := range workers {
		out, in := r.buf(span), r.buf(span)
		wg.Add(1)
		go func() {
			defer wg.Done()
			seed := uint64(w)*0x9E3779B97F4A7C15 | 1
			base := int64(w * span / 512)
			do := func(flags ddi.Flags, mem []byte, size int) error {
				for {
					bp := newBuf(d.Edev(), flags, base, mem[:size])
					ddi.Strategy(bp)
					err := waitBufQuiet(bp, 20*time.Second)
					if !errors.Is(err, syscall.EAGAIN) {
						return err
					}
					if bp.Resid != size {
						return errors.New("a refused transfer moved bytes")
					}
					refused.Add(1)
					time.Sleep(50 * time.Microsecond)
				}
			}
			for i := range rounds {
				seed ^= seed << 13
				seed ^= seed >> 7
				seed ^= seed << 17
				size := int(seed%(span/512)+1) * 512
				fill(out[:size], uint64(base), 512, uint64(i))
				if err := do(ddi.BWrite, out, size); err != nil {
					errs <- err
					return
				}
				if err := do(ddi.BRead, in, size); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(in[:size], out[:size]) {
					errs <- errors.New("read back differs")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return refused.Load()
}

// waitBufQuiet is waitBuf that reports a timeout as an error (for use off
// the test goroutine).
func waitBufQuiet(bp *ddi.Buf, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return ddi.BiowaitContext(ctx, bp)
}
