package tcp_test

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/internal/tcptest"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// proxy stands between the host and a target and breaks things on
// demand: it cuts every connection, refuses new ones, freezes the
// existing ones (they stay open and carry nothing: silence), or injects
// bytes towards the host.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []*pconn
	refuse atomic.Bool
	wg     sync.WaitGroup
}

type pconn struct {
	host, tgt net.Conn
	wmu       sync.Mutex // writes towards the host
	frozen    atomic.Bool
}

func newProxy(t testing.TB, to tcp.Address) (*proxy, tcp.Address) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: net.JoinHostPort(to.Host, strconv.Itoa(to.Port))}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	h, port, _ := net.SplitHostPort(l.Addr().String())
	n, _ := strconv.Atoi(port)
	return p, tcp.Address{Host: h, Port: n, NQN: to.NQN}
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		if p.refuse.Load() {
			c.Close()
			continue
		}
		tc, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pc := &pconn{host: c, tgt: tc}
		p.mu.Lock()
		p.conns = append(p.conns, pc)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(pc, tc, c, &pc.wmu)
		go p.pipe(pc, c, tc, nil)
	}
}

func (p *proxy) pipe(pc *pconn, src, dst net.Conn, mu *sync.Mutex) {
	defer p.wg.Done()
	defer pc.host.Close()
	defer pc.tgt.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !pc.frozen.Load() {
			if mu != nil {
				mu.Lock()
			}
			_, werr := dst.Write(buf[:n])
			if mu != nil {
				mu.Unlock()
			}
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// conn returns the i-th connection the proxy accepted.
func (p *proxy) conn(i int) *pconn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns[i]
}

func (p *proxy) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// cut closes every connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.host.Close()
		c.tgt.Close()
	}
}

// freeze silences the connections open now.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.frozen.Store(true)
	}
}

// inject writes b to the host on connection i.
func (p *proxy) inject(i int, b []byte) {
	c := p.conn(i)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, _ = c.host.Write(b)
}

func (p *proxy) close() {
	p.l.Close()
	p.cut()
	p.wg.Wait()
}

// The connections drop in the middle of I/O (peer close and reset): the
// host reconnects and resubmits what had no completion; every request
// completes exactly once, successfully, and the data is all there.
func TestReconnectMidIO(t *testing.T) {
	tg, a := fakeTarget(t, tcptest.Config{Blocks: 8192})
	p, pa := newProxy(t, a)
	ctrl := connect(t, pa, quick(t))
	ns, _ := ctrl.Namespace(1)
	q, err := ctrl.NewQueuePair(0)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	const n = 96 // three times what the queue holds: some wait
	reqs := make([]nvme.Request, n)
	bufs := make([][]byte, n)
	dones := make([]int, n)
	completed := 0
	for i := range reqs {
		bufs[i] = pattern(8192, byte(i))
		reqs[i].Private = i
		reqs[i].Done = func(r *nvme.Request) {
			dones[r.Private.(int)]++
			completed++
			if r.Err != nil {
				t.Errorf("request %d: %v", r.Private.(int), r.Err)
			}
		}
		if err := ns.Write(&reqs[i], uint64(i*16), bufs[i], 0); err != nil {
			t.Fatal(err)
		}
		if err := q.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	cuts := 0
	deadline := time.Now().Add(20 * time.Second)
	for completed < n {
		q.Poll()
		if cuts < 2 && completed >= 10*(cuts+1) {
			p.cut() // with commands and data in flight
			cuts++
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d completed; stats %+v", completed, n, q.Stats())
		}
	}
	for i, d := range dones {
		if d != 1 {
			t.Errorf("request %d completed %d times", i, d)
		}
	}
	if rs := ctrl.RecoveryStats(); rs.Resets < 1 {
		t.Errorf("recovery stats %+v: no reconnect", rs)
	}
	if s := q.Stats(); s.Requeued == 0 {
		t.Errorf("stats %+v: nothing was resubmitted", s)
	}
	for i := range n {
		got := make([]byte, 8192)
		tg.ReadAt(got, i*16*512)
		if !bytes.Equal(got, bufs[i]) {
			t.Errorf("write %d is not on the target", i)
		}
	}
}

// The target stays unreachable past CtrlLossTimeout: the controller is
// given up, requests in flight and new ones fail with ErrRemoved, and so
// do admin commands.
func TestCtrlLoss(t *testing.T) {
	_, a := fakeTarget(t, tcptestConfig())
	p, pa := newProxy(t, a)
	o := quick(t)
	o.CtrlLossTimeout = 300 * time.Millisecond
	ctrl := connect(t, pa, o)
	ns, _ := ctrl.Namespace(1)
	q, err := ctrl.NewQueuePair(0)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	p.refuse.Store(true)
	p.freeze() // the read below gets no answer
	var r nvme.Request
	if err := ns.Read(&r, 0, make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	errc := make(chan error, 1)
	go func() { time.Sleep(50 * time.Millisecond); p.cut() }()
	go func() {
		_, err := ctrl.IdentifyRaw(spec.CNSController, 0)
		errc <- err
	}()
	if err := q.Exec(&r); !errors.Is(err, nvme.ErrRemoved) {
		t.Fatalf("read: %v, want ErrRemoved", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("failed after %v", d)
	}
	if s := ctrl.State(); s != nvme.StateRemoved {
		t.Errorf("state %v", s)
	}
	if err := <-errc; !errors.Is(err, nvme.ErrRemoved) && !errors.Is(err, nvme.ErrAborted) {
		t.Errorf("identify: %v, want ErrRemoved", err)
	}
	r.Done = func(*nvme.Request) { t.Error("a request completed after removal") }
	if err := ns.Read(&r, 0, make([]byte, 4096), 0); err == nil {
		if err := q.Submit(&r); !errors.Is(err, nvme.ErrRemoved) {
			t.Errorf("submit after removal: %v", err)
		}
	}
}

// The target goes silent (the connections stay open, nothing comes
// back): the Keep Alive gets no answer within KATO, the host reconnects,
// and the read that was in flight completes.
func TestKeepAliveSilence(t *testing.T) {
	_, a := fakeTarget(t, tcptestConfig())
	p, pa := newProxy(t, a)
	o := quick(t)
	o.KeepAliveTimeout = 300 * time.Millisecond
	ctrl := connect(t, pa, o)
	ns, _ := ctrl.Namespace(1)
	q, err := ctrl.NewQueuePair(0)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	p.freeze()
	var r nvme.Request
	if err := ns.Read(&r, 0, make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := q.Exec(&r); err != nil {
		t.Fatalf("read across the silence: %v", err)
	}
	if rs := ctrl.RecoveryStats(); rs.Resets < 1 {
		t.Errorf("recovery stats %+v: no reconnect", rs)
	}
}

// Input that ends an I/O connection (a C2HTermReq from the target, a
// response naming no outstanding command): the host ends that connection
// and reconnects; the next I/O works.
func TestConnectionEndingInput(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"termreq", pdu.AppendTermReq(nil, pdu.Controller, pdu.FESInvalidHeaderField, 0, nil)},
		{"bogus cid", (&pdu.Writer{}).AppendCapsuleResp(nil, &spec.Completion{CID: 0xfffe})},
		{"garbage", bytes.Repeat([]byte{0xee}, 64)},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, a := fakeTarget(t, tcptestConfig())
			p, pa := newProxy(t, a)
			ctrl := connect(t, pa, quick(t))
			ns, _ := ctrl.Namespace(1)
			q, err := ctrl.NewQueuePair(0)
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			buf := pattern(4096, 3)
			exec(t, q, ns, true, 0, buf)
			p.inject(1, c.b) // the I/O queue's connection, idle
			got := make([]byte, 4096)
			exec(t, q, ns, false, 0, got)
			if !bytes.Equal(got, buf) {
				t.Error("read back differs")
			}
			if rs := ctrl.RecoveryStats(); rs.Resets < 1 {
				t.Errorf("recovery stats %+v: no reconnect", rs)
			}
			if p.count() < 4 {
				t.Errorf("%d connections: the queues did not reconnect", p.count())
			}
		})
	}
}

// Through ddi and a poller: connections cut while Strategy I/O runs on
// two goroutines; every buf completes without error and the data reads
// back.
func TestReconnectUnderPoller(t *testing.T) {
	tg, a := fakeTarget(t, tcptest.Config{Blocks: 8192})
	p, pa := newProxy(t, a)
	ctrl := connect(t, pa, quick(t))
	g, err := poller.New([]*nvme.Controller{ctrl}, &poller.Options{CPUs: []int{0}, Idle: poller.IdleBusy})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := g.Close(); err != nil {
			t.Error(err)
		}
	}()
	ns, _ := ctrl.Namespace(1)
	d, err := ddi.RegisterDevice(ns, g.Handle(ctrl))
	if err != nil {
		t.Fatal(err)
	}
	defer ddi.Unregister(d.Edev())
	const per, size = 40, 16 << 10
	var wg sync.WaitGroup
	var done atomic.Int64
	errs := make(chan error, 2*per)
	bufs := make([][]byte, 2)
	for w := range 2 {
		b, err := ctrl.Memory().Alloc(size)
		if err != nil {
			t.Fatal(err)
		}
		defer ctrl.Memory().Free(b)
		bufs[w] = b.Bytes
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				copy(b.Bytes, pattern(size, byte(w*per+i)))
				bp := ddi.Getrbuf(ddi.KMSleep)
				bp.Flags |= ddi.BWrite
				bp.Edev, bp.Blkno, bp.Bcount, bp.Addr = d.Edev(), int64((w*per+i)*size/512), size, b.Bytes
				ddi.Strategy(bp)
				if err := ddi.Biowait(bp); err != nil {
					errs <- err
				}
				ddi.Freerbuf(bp)
				done.Add(1)
			}
		}()
	}
	for cuts := 0; cuts < 2; {
		if done.Load() >= int64(15*(cuts+1)) {
			p.cut()
			cuts++
		}
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("strategy: %v", err)
	}
	for i := range 2 * per {
		got := make([]byte, size)
		tg.ReadAt(got, i*size)
		if !bytes.Equal(got, pattern(size, byte(i))) {
			t.Errorf("write %d is not on the target", i)
		}
	}
	if rs := ctrl.RecoveryStats(); rs.Resets < 2 {
		t.Errorf("recovery stats %+v: want two reconnects", rs)
	}
}

// Controller.Reset on a fabric is a reconnect: a new association; the
// queue pair reconnects its own queue at its next poll.
func TestResetReconnects(t *testing.T) {
	_, a := fakeTarget(t, tcptestConfig())
	p, pa := newProxy(t, a)
	ctrl := connect(t, pa, quick(t))
	ns, _ := ctrl.Namespace(1)
	q, err := ctrl.NewQueuePair(0)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	buf := pattern(4096, 5)
	exec(t, q, ns, true, 0, buf)
	before := p.count()
	if err := ctrl.Reset(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(buf))
	exec(t, q, ns, false, 0, got)
	if !bytes.Equal(got, buf) {
		t.Error("read back differs")
	}
	if n := p.count() - before; n != 2 {
		t.Errorf("%d new connections after the reset, want 2 (admin and the I/O queue)", n)
	}
	if rs := ctrl.RecoveryStats(); rs.Resets != 1 {
		t.Errorf("resets %d", rs.Resets)
	}
	if _, err := ctrl.IdentifyRaw(spec.CNSController, 0); err != nil {
		t.Errorf("identify after the reset: %v", err)
	}
}

// The admin connection ends, twice: each time the controller reconnects
// at once (not only when a Keep Alive times out).
func TestAdminConnectionLostTwice(t *testing.T) {
	_, a := fakeTarget(t, tcptestConfig())
	p, pa := newProxy(t, a)
	ctrl := connect(t, pa, quick(t))
	for i := 1; i <= 2; i++ {
		admin := p.count() - 1 // the newest connection: the admin queue's (no I/O queue here)
		p.inject(admin, pdu.AppendTermReq(nil, pdu.Controller, pdu.FESInvalidHeaderField, 0, nil))
		deadline := time.Now().Add(2 * time.Second)
		for ctrl.RecoveryStats().Resets < uint64(i) {
			if time.Now().After(deadline) {
				t.Fatalf("connection loss %d: no reconnect within 2 s (KATO is 5 s)", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if _, err := ctrl.IdentifyRaw(spec.CNSController, 0); err != nil {
		t.Errorf("identify: %v", err)
	}
}
