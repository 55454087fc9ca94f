package ddi_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

func mustPool(t testing.TB, n int) *ddi.Pool {
	t.Helper()
	p, err := ddi.NewPool(n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPoolNoSleep(t *testing.T) {
	p := mustPool(t, 2)
	a, b := p.Getrbuf(ddi.KMNoSleep), p.Getrbuf(ddi.KMNoSleep)
	if a == nil || b == nil || a == b || a.Flags != ddi.BBusy {
		t.Fatalf("headers %p %p flags %v", a, b, a.Flags)
	}
	if c := p.Getrbuf(ddi.KMNoSleep); c != nil {
		t.Fatal("KMNoSleep on an empty pool returned a header")
	}
	orig := &ddi.Buf{}
	ddi.Bioinit(orig)
	orig.Bcount = 4096
	if c := p.Bioclone(orig, 0, 512, 0, 0, nil, nil, ddi.KMNoSleep); c != nil {
		t.Fatal("Bioclone KMNoSleep on an empty pool returned a header")
	}
	if orig.Children() != 0 {
		t.Errorf("children %d after a failed clone", orig.Children())
	}
	bad := ddi.ReadStats().BadFree
	ddi.Freerbuf(a)
	ddi.Freerbuf(a)    // double
	ddi.Freerbuf(orig) // not a pool's
	if got := ddi.ReadStats().BadFree - bad; got != 2 {
		t.Errorf("bad frees counted %d, want 2", got)
	}
	if p.Free() != 1 {
		t.Errorf("free %d, want 1", p.Free())
	}
	if _, err := ddi.NewPool(0); err == nil {
		t.Error("pool of 0 accepted")
	}
}

// KMSleep waits until a header is freed, and gets that header.
func TestPoolSleep(t *testing.T) {
	p := mustPool(t, 1)
	a := p.Getrbuf(ddi.KMSleep)
	started := make(chan struct{})
	got := make(chan *ddi.Buf)
	go func() {
		close(started)
		got <- p.Getrbuf(ddi.KMSleep)
	}()
	<-started
	for range 100 {
		runtime.Gosched()
	}
	select {
	case bp := <-got:
		t.Fatalf("KMSleep returned %p while the pool was empty", bp)
	default:
	}
	ddi.Freerbuf(a)
	if bp := <-got; bp != a {
		t.Fatalf("KMSleep returned %p, want the freed header %p", bp, a)
	}

	// Bioclone KMSleep waits the same way.
	orig := &ddi.Buf{}
	ddi.Bioinit(orig)
	orig.Bcount = 1024
	go func() { got <- p.Bioclone(orig, 512, 512, 0, 9, nil, nil, ddi.KMSleep) }()
	select {
	case bp := <-got:
		t.Fatalf("Bioclone KMSleep returned %p while the pool was empty", bp)
	default:
	}
	ddi.Freerbuf(a)
	c := <-got
	if c != a || c.Parent() != orig || c.Bcount != 512 || c.Blkno != 9 || orig.Children() != 1 {
		t.Fatalf("clone %p parent %p bcount %d blkno %d children %d", c, c.Parent(), c.Bcount, c.Blkno, orig.Children())
	}
}

// off+len beyond Bcount is refused loudly: a clone with ErrCloneRange that
// Strategy completes without I/O, failing the original.
func TestBiocloneRange(t *testing.T) {
	p := mustPool(t, 4)
	data := make([]byte, 4096)
	orig := &ddi.Buf{}
	ddi.Bioinit(orig)
	orig.Bcount, orig.Addr, orig.Flags = 4096, data, orig.Flags|ddi.BRead
	refused := ddi.ReadStats().CloneRefused
	for _, tc := range []struct{ off, n int }{{0, 4097}, {4096, 1}, {-1, 10}, {10, -1}, {3000, 2000}} {
		c := p.Bioclone(orig, tc.off, tc.n, 0, 0, nil, nil, ddi.KMNoSleep)
		if c == nil {
			t.Fatalf("off %d len %d: nil, want a failed clone", tc.off, tc.n)
		}
		if c.Flags&ddi.BError == 0 || !errors.Is(c.Error, ddi.ErrCloneRange) || !errors.Is(c.Error, syscall.EINVAL) || c.Bcount != 0 || c.Addr != nil {
			t.Errorf("off %d len %d: flags %v error %v bcount %d", tc.off, tc.n, c.Flags, c.Error, c.Bcount)
		}
		ddi.Strategy(c) // no device needed: it fails at once
		if c.Flags&ddi.BDone == 0 {
			t.Errorf("off %d len %d: Strategy did not complete the refused clone", tc.off, tc.n)
		}
		ddi.Freerbuf(c)
	}
	if n := ddi.ReadStats().CloneRefused - refused; n != 5 {
		t.Errorf("refused %d, want 5", n)
	}
	ddi.Biodone(orig)
	if err := ddi.Biowait(orig); !errors.Is(err, ddi.ErrCloneRange) {
		t.Errorf("original error %v, want the clone's", err)
	}
	if orig.Children() != 5 || orig.Inbed() != 5 || orig.Resid != 4096 {
		t.Errorf("children %d inbed %d resid %d", orig.Children(), orig.Inbed(), orig.Resid)
	}

	// A good clone shares the original's memory.
	ddi.Bioreset(orig)
	orig.Bcount, orig.Addr = 4096, data
	c := p.Bioclone(orig, 1024, 512, ddi.Makedevice(3, 4), 77, nil, nil, ddi.KMNoSleep)
	if &c.Addr[0] != &data[1024] || len(c.Addr) != 512 || cap(c.Addr) != 512 || c.Edev != ddi.Makedevice(3, 4) || c.Flags&ddi.BRead != 0 {
		t.Errorf("clone addr/len/cap/edev/flags wrong: %d %d %v %v", len(c.Addr), cap(c.Addr), c.Edev, c.Flags)
	}
	// bp_mem: the caller's header is used.
	var mem ddi.Buf
	ddi.Bioinit(&mem)
	if c2 := p.Bioclone(orig, 0, 512, 0, 0, nil, &mem, ddi.KMNoSleep); c2 != &mem || mem.Parent() != orig {
		t.Errorf("bp_mem not used")
	}
	ddi.Biodone(c)
	ddi.Biodone(&mem)
	ddi.Biodone(orig)
	if err := ddi.Biowait(orig); err != nil || orig.Completed() != 1024 || orig.Resid != 3072 {
		t.Errorf("err %v completed %d resid %d", err, orig.Completed(), orig.Resid)
	}
}

// Biodone on the original before its clones is detected: counted, the
// original gets ErrClonesOutstanding and completes once, when the last
// clone does; a later Biodone of it is ignored.
func TestBiodoneEarly(t *testing.T) {
	p := mustPool(t, 4)
	var iodones atomic.Int32
	orig := &ddi.Buf{}
	ddi.Bioinit(orig)
	orig.Bcount = 2048
	orig.Iodone = func(*ddi.Buf) int { iodones.Add(1); return 0 }
	c1 := p.Bioclone(orig, 0, 1024, 0, 0, nil, nil, ddi.KMSleep)
	c2 := p.Bioclone(orig, 1024, 1024, 0, 2, nil, nil, ddi.KMSleep)
	before := ddi.ReadStats()
	ddi.Biodone(orig)
	if s := ddi.ReadStats(); s.EarlyBiodone-before.EarlyBiodone != 1 {
		t.Fatalf("early biodone not counted: %+v", s)
	}
	if iodones.Load() != 0 || orig.Flags&ddi.BDone != 0 || orig.Outstanding() != 2 {
		t.Fatalf("original completed with clones outstanding (iodones %d flags %v)", iodones.Load(), orig.Flags)
	}
	ddi.Biodone(c1)
	if iodones.Load() != 0 {
		t.Fatal("original completed with a clone outstanding")
	}
	ddi.Biodone(c2)
	if iodones.Load() != 1 || orig.Flags&ddi.BDone == 0 {
		t.Fatalf("iodones %d flags %v after the last clone", iodones.Load(), orig.Flags)
	}
	if !errors.Is(orig.Error, ddi.ErrClonesOutstanding) || orig.Flags&ddi.BError == 0 || orig.Resid != 0 {
		t.Errorf("error %v flags %v resid %d", orig.Error, orig.Flags, orig.Resid)
	}
	ddi.Biodone(orig) // the driver's "fragment == 0" biodone, now a second completion
	if iodones.Load() != 1 {
		t.Fatal("original completed twice")
	}
	if s := ddi.ReadStats(); s.DoubleBiodone-before.DoubleBiodone != 1 {
		t.Errorf("double biodone not counted")
	}
	// Biodone on a clone twice does not account it twice.
	ddi.Biodone(c1)
	if orig.Inbed() != 2 {
		t.Errorf("inbed %d", orig.Inbed())
	}
}

// The early biodone racing the last clone: exactly one completion.
func TestBiodoneEarlyRace(t *testing.T) {
	p := mustPool(t, 2)
	for i := range 2000 {
		var iodones atomic.Int32
		orig := &ddi.Buf{}
		ddi.Bioinit(orig)
		orig.Bcount = 1024
		orig.Iodone = func(*ddi.Buf) int { iodones.Add(1); return 0 }
		c := p.Bioclone(orig, 0, 1024, 0, 0, func(c *ddi.Buf) int { ddi.Freerbuf(c); return 0 }, nil, ddi.KMSleep)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); ddi.Biodone(c) }()
		go func() { defer wg.Done(); ddi.Biodone(orig) }()
		wg.Wait()
		if iodones.Load() != 1 {
			t.Fatalf("round %d: %d completions", i, iodones.Load())
		}
	}
}

// The seed's order (every clone, then the original) gives no error.
func TestBiodoneInOrder(t *testing.T) {
	p := mustPool(t, 4)
	orig := &ddi.Buf{}
	ddi.Bioinit(orig)
	orig.Bcount = 3000
	var cs []*ddi.Buf
	for off := 0; off < 3000; off += 1000 {
		cs = append(cs, p.Bioclone(orig, off, 1000, 0, 0, nil, nil, ddi.KMSleep))
	}
	cs[1].Resid = 100 // a short transfer
	for _, c := range cs {
		ddi.Biodone(c)
		if err := ddi.Biowait(c); err != nil {
			t.Fatal(err)
		}
		ddi.Freerbuf(c)
	}
	ddi.Biodone(orig)
	if err := ddi.Biowait(orig); err != nil || orig.Resid != 100 || orig.Completed() != 2900 || orig.Inbed() != 3 {
		t.Errorf("err %v resid %d completed %d inbed %d", err, orig.Resid, orig.Completed(), orig.Inbed())
	}
	if p.Free() != 4 {
		t.Errorf("pool free %d", p.Free())
	}
}

func TestBiowait(t *testing.T) {
	var bp ddi.Buf
	if err := ddi.Biowait(&bp); !errors.Is(err, ddi.ErrNotInitialized) {
		t.Errorf("uninitialized: %v", err)
	}
	ddi.Bioinit(&bp)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ddi.BiowaitContext(ctx, &bp); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled wait: %v", err)
	}
	done := make(chan error)
	go func() { done <- ddi.BiowaitContext(context.Background(), &bp) }()
	ddi.Bioerror(&bp, syscall.EIO)
	ddi.Biodone(&bp)
	if err := <-done; err != syscall.EIO {
		t.Errorf("waiter got %v", err)
	}
	// Delivered: every later wait returns at once, a second Biodone is ignored.
	for range 3 {
		if err := ddi.Biowait(&bp); err != syscall.EIO {
			t.Errorf("again: %v", err)
		}
	}
	double := ddi.ReadStats().DoubleBiodone
	ddi.Biodone(&bp)
	if ddi.ReadStats().DoubleBiodone != double+1 {
		t.Error("double biodone not counted")
	}
	// Geterror and Bioerror, as in the pages.
	ddi.Bioreset(&bp)
	if bp.Flags != ddi.BBusy || bp.Error != nil || ddi.Geterror(&bp) != nil {
		t.Errorf("after reset: %v %v", bp.Flags, bp.Error)
	}
	bp.Flags |= ddi.BError
	if err := ddi.Geterror(&bp); !errors.Is(err, syscall.EIO) {
		t.Errorf("BError without Error: %v", err)
	}
	ddi.Bioerror(&bp, nil)
	if bp.Flags&ddi.BError != 0 {
		t.Error("Bioerror(nil) left BError")
	}
	if s := (ddi.BBusy | ddi.BRead).String(); s != "BUSY|READ" {
		t.Errorf("flags string %q", s)
	}
	if s := ddi.BWrite.String(); s != "WRITE" {
		t.Errorf("flags string %q", s)
	}
}

// Strategy through an asynchronous submitter (a goroutine owning the queue
// pair, like a poller): completions arrive on another goroutine, many
// requests in flight, each delivered once with the right data.
func TestStrategyAsync(t *testing.T) {
	r := newRig(t, nvmetest.Config{MDTS: 2})
	ap := newAsyncPoller(r.qp)
	defer ap.stop()
	d, err := ddi.RegisterDevice(r.ns(1), ap, ddi.WithPool(mustPool(t, 8)))
	if err != nil {
		t.Fatal(err)
	}
	defer ddi.Unregister(d.Edev())
	const n, size = 16, 100 << 10
	data := r.buf(n * size)
	got := r.buf(n * size)
	for i := range n {
		fill(data[i*size:(i+1)*size], uint64(i*size/512), 512, 6)
	}
	for _, read := range []bool{false, true} {
		var wg sync.WaitGroup
		var delivered atomic.Int32
		bufs := make([]*ddi.Buf, n)
		for i := range n {
			mem, flags := data, ddi.BWrite
			if read {
				mem, flags = got, ddi.BRead
			}
			bp := newBuf(d.Edev(), flags, int64(i*size/512), mem[i*size:(i+1)*size])
			bp.Iodone = func(bp *ddi.Buf) int { delivered.Add(1); wg.Done(); return 0 }
			bufs[i] = bp
			wg.Add(1)
		}
		var sw sync.WaitGroup
		for i := range n {
			sw.Add(1)
			go func() { defer sw.Done(); ddi.Strategy(bufs[i]) }()
		}
		sw.Wait()
		wg.Wait()
		if delivered.Load() != n {
			t.Fatalf("%d deliveries", delivered.Load())
		}
		for i, bp := range bufs {
			if err := ddi.Geterror(bp); err != nil || bp.Resid != 0 || bp.Children() != 7 {
				t.Fatalf("buf %d: %v resid %d children %d", i, err, bp.Resid, bp.Children())
			}
		}
	}
	if string(got) != string(data) {
		t.Fatal("async read back differs")
	}
}

// asyncPoller is a minimal poller: one goroutine owns the queue pair,
// takes requests from a channel and polls.
type asyncPoller struct {
	qp   *nvme.QueuePair
	in   chan *nvme.Request
	quit chan struct{}
	done chan struct{}
}

func newAsyncPoller(qp *nvme.QueuePair) *asyncPoller {
	p := &asyncPoller{qp: qp, in: make(chan *nvme.Request, 256), quit: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

func (p *asyncPoller) Submit(r *nvme.Request) error { p.in <- r; return nil }
func (p *asyncPoller) MaxTransfer() int             { return p.qp.MaxTransfer() }

func (p *asyncPoller) run() {
	defer close(p.done)
	for {
		select {
		case r := <-p.in:
			if err := p.qp.Submit(r); err != nil {
				r.Err = err
				r.Done(r)
			}
			continue
		case <-p.quit:
			return
		default:
		}
		if p.qp.Poll() == 0 {
			runtime.Gosched()
		}
	}
}

func (p *asyncPoller) stop() { close(p.quit); <-p.done }
