package tcp

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
)

// fakeSock is a scripted peer: Read returns what the test queued in in (at
// most rmax bytes a call), Writev records the host's bytes (at most wmax a
// call: partial writes).
type fakeSock struct {
	in, out    bytes.Buffer
	rmax, wmax int
	eof        bool // once in is empty: io.EOF instead of "nothing yet"
	closed     bool
}

func (s *fakeSock) Read(p []byte) (int, error) {
	if s.closed {
		return 0, net.ErrClosed
	}
	if s.in.Len() == 0 {
		if s.eof {
			return 0, io.EOF
		}
		return 0, nil
	}
	if s.rmax > 0 && len(p) > s.rmax {
		p = p[:s.rmax]
	}
	return s.in.Read(p)
}

func (s *fakeSock) Write(p []byte) (int, error) { return s.Writev([][]byte{p}) }

func (s *fakeSock) Writev(bufs [][]byte) (int, error) {
	if s.closed {
		return 0, net.ErrClosed
	}
	n := 0
	for _, b := range bufs {
		if s.wmax > 0 && n+len(b) > s.wmax {
			b = b[:s.wmax-n]
		}
		s.out.Write(b)
		n += len(b)
		if s.wmax > 0 && n == s.wmax {
			break
		}
	}
	return n, nil
}

func (s *fakeSock) Close() error { s.closed = true; return nil }

// A test queue: slotBits 4, 15 slots, in-capsule limit 4 KiB, MAXH2CDATA
// 8 KiB, the IC exchange done with the given digests.
type rig struct {
	t    testing.TB
	s    *fakeSock
	q    *queue
	w    pdu.Writer // the controller's
	done []spec.Completion
	bufs [][]byte
}

const (
	cidRead    = 0x10     // slot 0 (gen 1): read 8 KiB
	cidWrite   = 0x10 | 1 // slot 1: write 16 KiB through R2T
	cidSmall   = 0x10 | 2 // slot 2: write 1 KiB in the capsule
	cidNoData  = 0x10 | 3 // slot 3: no data (flush)
	readLen    = 8192
	writeLen   = 16384
	smallLen   = 1024
	testMaxH2C = 8192
)

func newRig(t testing.TB, hd, dd bool) *rig {
	r := &rig{t: t, s: &fakeSock{}, w: pdu.Writer{HeaderDigest: hd, DataDigest: dd}}
	r.q = newQueue(nil, "queue 1", 1, r.s, 15, 4)
	r.q.inCap = 4096
	r.s.in.Write((&pdu.Writer{}).AppendICResp(nil, pdu.ICResp{PFV: pdu.PFV10, HeaderDigest: hd, DataDigest: dd, MaxH2CData: testMaxH2C}))
	if err := r.q.initialize(farFuture(), hd, dd); err != nil {
		t.Fatal(err)
	}
	r.s.out.Reset()
	issue := func(slot uint16, cid uint16, op spec.Opcode, n int) {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*3) + byte(slot)
		}
		r.bufs = append(r.bufs, b)
		cmd := spec.Command{Opcode: uint8(op), CID: cid, NSID: 1, CDW12: uint32(n/512 - 1)}
		r.q.Issue(slot, &cmd, b)
	}
	issue(0, cidRead, spec.IORead, readLen)
	issue(1, cidWrite, spec.IOWrite, writeLen)
	issue(2, cidSmall, spec.IOWrite, smallLen)
	cmd := spec.Command{Opcode: uint8(spec.IOFlush), CID: cidNoData, NSID: 1}
	r.q.Issue(3, &cmd, nil)
	r.bufs = append(r.bufs, nil)
	if err := r.q.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) reap() (int, error) {
	return r.q.Reap(64, func(c *spec.Completion) { r.done = append(r.done, *c) })
}

// sent parses what the host sent, as a controller would.
func (r *rig) sent() []pdu.PDU {
	rd := pdu.NewReader(pdu.Controller, 1<<20)
	rd.Feed((&pdu.Writer{}).AppendICReq(nil, pdu.ICReq{PFV: pdu.PFV10, HeaderDigest: r.w.HeaderDigest, DataDigest: r.w.DataDigest}))
	if p, err := rd.Next(); err != nil || p == nil {
		r.t.Fatalf("icreq: %v", err)
	}
	rd.SetParams(pdu.Params{HeaderDigest: r.w.HeaderDigest, DataDigest: r.w.DataDigest})
	var ps []pdu.PDU
	b := r.s.out.Bytes()
	for len(b) > 0 || rd.Buffered() > 0 {
		n := rd.Feed(b)
		b = b[n:]
		p, err := rd.Next()
		if err != nil {
			r.t.Fatalf("the host sent a bad pdu: %v", err)
		}
		if p == nil {
			if n == 0 {
				break
			}
			continue
		}
		if p.DataPending {
			continue // staged: Next returns it with its data
		}
		cp := *p
		cp.Data = append([]byte(nil), p.Data...)
		cp.Header = append([]byte(nil), p.Header...)
		ps = append(ps, cp)
	}
	r.s.out.Reset()
	return ps
}

func (r *rig) c2h(cid uint16, off int, data []byte, last, success bool) {
	r.s.in.Write(r.w.AppendC2HData(nil, cid, uint32(off), len(data), last, success))
	r.s.in.Write(data)
	r.s.in.Write(r.w.AppendDataDigest(nil, data))
}

func (r *rig) resp(cid uint16, st spec.Status) {
	r.s.in.Write(r.w.AppendCapsuleResp(nil, &spec.Completion{CID: cid, SQID: 1, Status: st.CQEField(false)}))
}

// The commands as sent: in-capsule data for the small write, transport
// SGLs for the others, then the whole exchange of a read (C2HData then
// SUCCESS) and an R2T write (H2CData in pieces of MAXH2CDATA).
func TestQueueExchange(t *testing.T) {
	for _, dg := range []bool{false, true} {
		r := newRig(t, dg, dg)
		r.s.rmax = 7 // the stream arrives in small pieces
		ps := r.sent()
		if len(ps) != 4 {
			t.Fatalf("%d pdus sent, want 4 capsules", len(ps))
		}
		for i, p := range ps {
			kind, _, length, err := parseSGL(p.Command.SGL1())
			if p.Type != pdu.TypeCapsuleCmd || err != nil {
				t.Fatalf("pdu %d: %v %v", i, p.Type, err)
			}
			wantLen := []int{readLen, writeLen, smallLen, 0}[i]
			if int(length) != wantLen || (i == 2) != (kind == 1) || p.Command.Flags&spec.FlagPSDTMask != spec.FlagPSDTSGL {
				t.Errorf("capsule %d: kind %d length %d flags %#x", i, kind, length, p.Command.Flags)
			}
			if i == 2 && !bytes.Equal(p.Data, r.bufs[2]) {
				t.Error("in-capsule data differs")
			}
		}
		// The read: two C2HData, SUCCESS on the last.
		want := bytes.Repeat([]byte{0xa5}, readLen)
		r.c2h(cidRead, 0, want[:4096], false, false)
		r.c2h(cidRead, 4096, want[4096:], true, true)
		// The write: one R2T for all of it.
		r.s.in.Write(r.w.AppendR2T(nil, cidWrite, 7, 0, writeLen))
		for i := 0; len(r.done) == 0 || r.s.in.Len() > 0; i++ {
			if _, err := r.reap(); err != nil {
				t.Fatal(err)
			}
			if i > 10000 {
				t.Fatal("the read does not complete")
			}
		}
		if len(r.done) != 1 || r.done[0].CID != cidRead || !r.done[0].StatusField().Success() {
			t.Fatalf("completions %+v, want the read's", r.done)
		}
		if !bytes.Equal(r.bufs[0], want) {
			t.Error("read data differs")
		}
		ps = r.sent()
		if len(ps) != 2 {
			t.Fatalf("%d pdus after the R2T, want 2 H2CData", len(ps))
		}
		for i, p := range ps {
			x := p.Transfer
			if p.Type != pdu.TypeH2CData || x.CCCID != cidWrite || x.TTag != 7 || x.Offset != uint32(i*testMaxH2C) ||
				x.Length != testMaxH2C || p.Last() != (i == 1) || !bytes.Equal(p.Data, r.bufs[1][i*testMaxH2C:(i+1)*testMaxH2C]) {
				t.Errorf("h2cdata %d: %v %+v last %t", i, p.Type, x, p.Last())
			}
		}
		r.resp(cidWrite, 0)
		r.resp(cidSmall, spec.MakeStatus(spec.SCTMediaError, 0x81))
		r.resp(cidNoData, 0)
		if _, err := r.reap(); err != nil {
			t.Fatal(err)
		}
		if len(r.done) != 4 || r.done[2].StatusField().SCT() != spec.SCTMediaError {
			t.Errorf("completions %+v", r.done)
		}
		for s := range 4 {
			if r.q.cmds[s].active {
				t.Errorf("slot %d still active", s)
			}
		}
	}
}

// A data digest error fails the command it belongs to (Transient
// Transport Error, even with SUCCESS) and keeps the connection.
func TestQueueDataDigest(t *testing.T) {
	r := newRig(t, false, true)
	data := make([]byte, readLen)
	r.s.in.Write(r.w.AppendC2HData(nil, cidRead, 0, len(data), true, true))
	r.s.in.Write(data)
	r.s.in.Write([]byte{1, 2, 3, 4}) // not its CRC32C
	r.resp(cidNoData, 0)
	if _, err := r.reap(); err != nil {
		t.Fatalf("a data digest error ended the connection: %v", err)
	}
	if len(r.done) != 2 {
		t.Fatalf("%d completions", len(r.done))
	}
	if st := r.done[0].StatusField(); st.SCT() != spec.SCTGeneric || st.SC() != spec.SCTransientTransportError {
		t.Errorf("status %v, want Transient Transport Error", st)
	}
	if !r.done[1].StatusField().Success() {
		t.Error("the next command failed too")
	}
}

// Bad input from the controller ends the connection with an error (and
// an H2CTermReq naming the fault where the spec has one); nothing
// panics, nothing completes twice.
func TestQueueBadInput(t *testing.T) {
	w := pdu.Writer{}
	bad := func(b []byte, i int, v byte) []byte { b[i] = v; return b }
	for _, c := range []struct {
		name string
		peer func(r *rig)
		want error
		fes  pdu.FES // 0: no TermReq expected
	}{
		{"unknown pdu type", func(r *rig) { r.s.in.Write(bad(w.AppendCapsuleResp(nil, &spec.Completion{}), 0, 0x7e)) }, pdu.ErrInvalidHeaderField, pdu.FESInvalidHeaderField},
		{"a controller-bound pdu", func(r *rig) { r.s.in.Write(w.AppendCapsuleCmd(nil, &spec.Command{}, 0)) }, pdu.ErrInvalidHeaderField, pdu.FESInvalidHeaderField},
		{"plen shorter than the header", func(r *rig) { r.s.in.Write(bad(w.AppendCapsuleResp(nil, &spec.Completion{}), 4, 8)) }, pdu.ErrInvalidHeaderField, pdu.FESInvalidHeaderField},
		{"hlen wrong", func(r *rig) { r.s.in.Write(bad(w.AppendCapsuleResp(nil, &spec.Completion{}), 2, 20)) }, pdu.ErrInvalidHeaderField, pdu.FESInvalidHeaderField},
		{"cid not outstanding", func(r *rig) { r.resp(0x77, 0) }, ErrProtocol, pdu.FESInvalidHeaderField},
		{"cid of an earlier use of the slot", func(r *rig) { r.resp(0x20, 0) }, ErrProtocol, pdu.FESInvalidHeaderField},
		{"c2hdata for a write", func(r *rig) { r.c2h(cidSmall, 0, make([]byte, 512), true, false) }, ErrProtocol, pdu.FESInvalidHeaderField},
		{"c2hdata past the command's length", func(r *rig) { r.c2h(cidRead, 0, make([]byte, readLen+512), true, false) }, pdu.ErrDataOutOfRange, pdu.FESDataOutOfRange},
		{"c2hdata out of order", func(r *rig) { r.c2h(cidRead, 512, make([]byte, 512), false, false) }, pdu.ErrInvalidHeaderField, pdu.FESInvalidHeaderField},
		{"success before all the data", func(r *rig) { r.c2h(cidRead, 0, make([]byte, 512), true, true) }, ErrProtocol, pdu.FESInvalidHeaderField},
		{"r2t for a read", func(r *rig) { r.s.in.Write(w.AppendR2T(nil, cidRead, 1, 0, 512)) }, ErrProtocol, pdu.FESInvalidHeaderField},
		{"r2t for in-capsule data", func(r *rig) { r.s.in.Write(w.AppendR2T(nil, cidSmall, 1, 0, 512)) }, ErrProtocol, pdu.FESInvalidHeaderField},
		{"r2t past the data", func(r *rig) { r.s.in.Write(w.AppendR2T(nil, cidWrite, 1, 0, writeLen+4)) }, pdu.ErrDataOutOfRange, pdu.FESDataOutOfRange},
		{"r2t out of order", func(r *rig) { r.s.in.Write(w.AppendR2T(nil, cidWrite, 1, 4096, 512)) }, pdu.ErrInvalidHeaderField, pdu.FESInvalidHeaderField},
		{"second r2t outstanding", func(r *rig) {
			r.s.in.Write(w.AppendR2T(nil, cidWrite, 1, 0, 4096))
			r.s.in.Write(w.AppendR2T(nil, cidWrite, 2, 4096, 4096))
		}, pdu.ErrLimitExceeded, pdu.FESR2TLimitExceeded},
		{"response before the data was sent", func(r *rig) {
			r.s.in.Write(w.AppendR2T(nil, cidWrite, 1, 0, 4096))
			r.resp(cidWrite, 0)
		}, ErrProtocol, pdu.FESPDUSequenceError},
		{"response with its data half sent", func(r *rig) {
			r.s.wmax = 100 // part of the H2CData leaves
			r.s.in.Write(w.AppendR2T(nil, cidWrite, 1, 0, 4096))
			if _, err := r.reap(); err != nil {
				r.t.Fatal(err)
			}
			r.s.out.Reset()
			r.s.wmax = 0
			r.resp(cidWrite, 0)
		}, ErrProtocol, 0}, // no TermReq in the middle of a PDU
		{"header digest", func(r *rig) {
			hw := pdu.Writer{HeaderDigest: true}
			r.s.in.Write(bad(hw.AppendCapsuleResp(nil, &spec.Completion{CID: cidNoData}), 25, 0))
		}, pdu.ErrInvalidHeaderField, pdu.FESInvalidHeaderField}, // digests not negotiated: the flag is wrong
		{"termreq", func(r *rig) { r.s.in.Write(pdu.AppendTermReq(nil, pdu.Controller, pdu.FESInvalidHeaderField, 3, nil)) }, ErrTerminated, 0},
		{"peer closed", func(r *rig) { r.s.eof = true }, io.EOF, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, false, false)
			r.sent()
			c.peer(r)
			var err error
			for range 10 {
				if err == nil {
					_, err = r.reap()
				}
				_ = r.q.Flush()
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("reap: %v, want %v", err, c.want)
			}
			if !r.s.closed || !r.q.closed.Load() {
				t.Error("the connection stays open")
			}
			if _, err2 := r.reap(); err2 == nil {
				t.Error("reap after the error: nil")
			}
			if len(r.done) != 0 {
				t.Errorf("completions %+v", r.done)
			}
			got := r.s.out.Bytes()
			if c.fes == 0 {
				if len(got) > 0 && got[0] == byte(pdu.TypeH2CTermReq) {
					t.Errorf("a TermReq sent in answer to %s", c.name)
				}
				return
			}
			i := bytes.IndexByte(got, byte(pdu.TypeH2CTermReq))
			if i < 0 || len(got) < i+pdu.TermReqHeaderLen {
				t.Fatalf("no H2CTermReq sent: % x", got)
			}
			if fes := pdu.FES(got[i+8]) | pdu.FES(got[i+9])<<8; fes != c.fes {
				t.Errorf("TermReq FES %v, want %v", fes, c.fes)
			}
		})
	}
}

func farFuture() time.Time { return time.Now().Add(time.Hour) }
