package target

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
)

// expectTerm reads until the target's C2HTermReq and returns its FES;
// the connection must then close.
func expectTerm(t *testing.T, h *host) pdu.FES {
	t.Helper()
	for {
		p, err := h.next()
		if err != nil {
			t.Fatalf("want C2HTermReq, got %v", err)
		}
		if p.Type == pdu.TypeC2HTermReq {
			fes := p.Term.FES
			if _, err := h.c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("after TermReq: %v, want EOF", err)
			}
			return fes
		}
	}
}

// A host breaking the protocol gets a TermReq and loses its connection;
// another host's I/O queue on the same target carries on.
func TestProtocolErrors(t *testing.T) {
	r := newRig(t, Config{}, nvmetest.Config{})
	_, cntlid := r.bringUp(t, false, false)
	good := r.ioQueue(t, cntlid, 1, false, false, 0)

	cases := []struct {
		name string
		run  func(t *testing.T, h *host)
		want pdu.FES
	}{
		{"bad plen", func(t *testing.T, h *host) {
			b := h.w.AppendCapsuleResp(nil, &spec.Completion{}) // a C2H type from the host
			_ = h.send(b)
		}, pdu.FESInvalidHeaderField},
		{"capsule plen short", func(t *testing.T, h *host) {
			cmd := rw(spec.IORead, 0, 1)
			b := h.w.AppendCapsuleCmd(nil, &cmd, 0)
			binary.LittleEndian.PutUint32(b[4:], 40)
			_ = h.send(b)
		}, pdu.FESInvalidHeaderField},
		{"h2cdata nobody asked for", func(t *testing.T, h *host) {
			_ = h.send(h.w.AppendH2CData(nil, 77, 1, 0, 512, true), make([]byte, 512))
		}, pdu.FESInvalidHeaderField},
		{"h2cdata past the r2t", func(t *testing.T, h *host) {
			cmd, _ := h.submit(rw(spec.IOWrite, 0, 64), make([]byte, 32<<10), 0)
			p, err := h.next()
			if err != nil || p.Type != pdu.TypeR2T {
				t.Fatalf("want R2T: %v %v", p, err)
			}
			_ = h.send(h.w.AppendH2CData(nil, cmd.CID, p.Transfer.TTag, 0, 33<<10, true), make([]byte, 33<<10))
		}, pdu.FESDataOutOfRange},
		{"in-capsule beyond ioccsz", func(t *testing.T, h *host) {
			cmd := rw(spec.IOWrite, 0, 32)
			cmd.Flags = spec.FlagPSDTSGL
			cmd.SetSGL1(fabrics.InCapsuleSGL(0, 16<<10))
			_ = h.send(h.w.AppendCapsuleCmd(nil, &cmd, 16<<10), make([]byte, 16<<10))
		}, pdu.FESDataLimitExceeded},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := r.ioQueue(t, cntlid, 2, false, false, 0)
			c.run(t, h)
			if fes := expectTerm(t, h); fes != c.want {
				t.Errorf("FES %v, want %v", fes, c.want)
			}
			good.ok(rw(spec.IOWrite, 0, 1), pattern(512, 5), nil)
		})
	}
	t.Run("header digest", func(t *testing.T) {
		h := r.ioQueue(t, cntlid, 2, true, false, 0)
		cmd := rw(spec.IORead, 0, 1)
		cmd.Flags = spec.FlagPSDTSGL
		b := h.w.AppendCapsuleCmd(nil, &cmd, 0)
		b[len(b)-1] ^= 0xff
		_ = h.send(b)
		if fes := expectTerm(t, h); fes != pdu.FESHeaderDigestError {
			t.Errorf("FES %v", fes)
		}
	})
	t.Run("data digest fails the command only", func(t *testing.T) {
		h := r.ioQueue(t, cntlid, 2, false, true, 0)
		cmd := rw(spec.IOWrite, 0, 1)
		cmd.CID = 9
		cmd.Flags = spec.FlagPSDTSGL
		cmd.SetSGL1(fabrics.InCapsuleSGL(0, 512))
		_ = h.send(h.w.AppendCapsuleCmd(nil, &cmd, 512), make([]byte, 512), []byte{1, 2, 3, 4})
		p, err := h.next()
		if err != nil || p.Type != pdu.TypeCapsuleResp {
			t.Fatalf("%v %v", p, err)
		}
		if st := p.Completion.StatusField().Code(); st != spec.MakeStatus(spec.SCTGeneric, spec.SCTransientTransportError) {
			t.Errorf("status %v", fabrics.StatusName(st))
		}
		h.ok(rw(spec.IOWrite, 0, 1), pattern(512, 6), nil)
	})
	t.Run("garbage before ICReq", func(t *testing.T) {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		buf, _ := io.ReadAll(c)
		if len(buf) < pdu.TermReqHeaderLen || pdu.Type(buf[0]) != pdu.TypeC2HTermReq {
			t.Errorf("reply % x", buf)
		}
	})
	good.ok(rw(spec.IORead, 0, 1), nil, make([]byte, 512))
}

// A host that closes its connections with writes and reads in flight:
// the target releases the queues (the rig checks no DMA memory leaks at
// cleanup) and serves the next host.
func TestDisconnectMidIO(t *testing.T) {
	r := newRig(t, Config{}, nvmetest.Config{})
	for round := range 3 {
		a, cntlid := r.bringUp(t, false, false)
		q := r.ioQueue(t, cntlid, 1, false, false, 0)
		// Reads and in-capsule writes submitted, never waited for; one
		// R2T write left waiting for its data.
		for i := range 16 {
			if i%2 == 0 {
				_, _ = q.submit(rw(spec.IORead, uint64(i*256), 256), nil, 128<<10)
			} else {
				_, _ = q.submit(rw(spec.IOWrite, uint64(i*16), 16), make([]byte, 8192), 0)
			}
		}
		_, _ = q.submit(rw(spec.IOWrite, 0, 64), make([]byte, 32<<10), 0)
		q.c.Close()
		a.c.Close()
		deadline := time.Now().Add(10 * time.Second)
		for r.tgt.Controllers() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: controller still live", round)
			}
			time.Sleep(time.Millisecond)
		}
	}
	a, cntlid := r.bringUp(t, false, false)
	_ = a
	q := r.ioQueue(t, cntlid, 1, false, false, 0)
	q.ok(rw(spec.IOWrite, 0, 8), pattern(4096, 1), nil)
}

// A host that stops sending Keep Alive loses its controller and its I/O
// queues once KATO (and the grace) has passed.
func TestKeepAliveTimeout(t *testing.T) {
	old := katoGrace
	katoGrace = 0
	t.Cleanup(func() { katoGrace = old })
	r := newRig(t, Config{}, nvmetest.Config{})
	a := r.dial(t, false, false)
	cqe, err := a.connect(0, fabrics.CNTLIDDynamic, testNQN, 0, 1000) // 1 s: 10 times the keep-alive period below, for a loaded machine
	if err != nil || !cqe.StatusField().Success() {
		t.Fatal(err, cqe.StatusField())
	}
	cntlid := fabrics.ConnectResponse(cqe.DW0).CNTLID()
	a.propSet(spec.RegCC, uint64(spec.CC(0).WithIOSQES(6).WithIOCQES(4).WithEN(true)))
	q := r.ioQueue(t, cntlid, 1, false, false, 0)
	// Keep alives hold it up past several KATOs.
	for range 25 {
		time.Sleep(100 * time.Millisecond)
		a.ok(spec.Command{Opcode: uint8(spec.AdminKeepAlive)}, nil, nil)
	}
	// Silence ends it: both connections close.
	for _, h := range []*host{q, a} {
		_ = h.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.ReadAll(h.c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection still open after KATO")
		}
	}
	if n := r.tgt.Controllers(); n != 0 {
		t.Errorf("%d controllers after keep-alive expiry", n)
	}
}

// A host that sends Disconnect on an I/O queue and never reads its
// answer (the answer stuck behind megabytes of read data the host does
// not read either) loses the queue after closeGrace: the queue's DMA
// memory is freed (and its socket closed), rather than held until the
// target closes. (Before the bound, the queue waited for its answer to
// go out for good: the memory stayed allocated, as this test saw.)
func TestDisconnectUnread(t *testing.T) {
	old := closeGrace
	closeGrace = 200 * time.Millisecond
	t.Cleanup(func() { closeGrace = old })
	r := newRig(t, Config{MaxTransfer: 1 << 20}, nvmetest.Config{MDTS: 8, Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 17}}})
	_, cntlid := r.bringUp(t, false, false)
	before := r.tr.Mem.Stats().Bytes
	q := r.ioQueue(t, cntlid, 1, false, false, fabrics.CAttrDisableSQFlow)
	held := r.tr.Mem.Stats().Bytes
	if held < before+32<<20 {
		t.Fatalf("DMA memory %d bytes after the I/O queue's Connect, %d before: the queue's memory is not where the test looks", held, before)
	}
	// 30 reads of 1 MiB (more than the host's small receive buffer and
	// the target's send buffer, at most 4 MiB, hold), time for their
	// answers to fill the buffers, then Disconnect; nothing read.
	if err := q.c.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if _, err := q.submit(rw(spec.IORead, uint64(i*2048), 2048), nil, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	q.cid++
	dc := fabrics.DisconnectCommand{CID: q.cid}
	sqe := dc.SQE()
	sqe.Flags = spec.FlagPSDTSGL
	sqe.SetSGL1(fabrics.TransportSGL(0))
	if err := q.send(q.w.AppendCapsuleCmd(q.out[:0], &sqe, 0)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(closeGrace + 5*time.Second)
	for r.tr.Mem.Stats().Bytes > held-32<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("queue memory still held %v after an unread Disconnect (%d bytes of DMA memory, %d before the queue)",
				closeGrace+5*time.Second, r.tr.Mem.Stats().Bytes, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
