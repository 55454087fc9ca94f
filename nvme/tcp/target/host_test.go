package target

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
)

const testNQN = "nqn.2024-01.io.gonvme:target-test"

// rig is a target on loopback over a fake controller.
type rig struct {
	tr   *testrig.Rig   // the first controller
	trs  []*testrig.Rig // all of them
	tgt  *Target
	live atomic.Pointer[Target] // for OnEvent
	addr string
	logs chan string
}

func newRig(t testing.TB, cfg Config, fake nvmetest.Config) *rig {
	t.Helper()
	return newRigN(t, cfg, fake)
}

// newRigN is newRig over several fake controllers, exported as one
// subsystem (testNQN). Each controller's namespace events reach the
// target (Target.OnEvent).
func newRigN(t testing.TB, cfg Config, fakes ...nvmetest.Config) *rig {
	t.Helper()
	r := &rig{logs: make(chan string, 1000)}
	var bs []Backing
	for _, fake := range fakes {
		tr := testrig.Open(t, fake, &nvme.Options{IOQueues: 2, OnEvent: func(ev nvme.AsyncEvent) {
			if tgt := r.live.Load(); tgt != nil {
				tgt.OnEvent(ev)
			}
		}})
		if r.tr == nil {
			r.tr = tr
		}
		r.trs = append(r.trs, tr)
		b, err := DeviceBacking(tr.Ctrl)
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	cfg.Logf = func(f string, a ...any) {
		select {
		case r.logs <- fmt.Sprintf(f, a...):
		default:
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h, p, _ := net.SplitHostPort(l.Addr().String())
	cfg.Advertise = []Address{{h, p}}
	r.tgt, err = New(cfg, Subsystem{NQN: testNQN, Backings: bs})
	if err != nil {
		t.Fatal(err)
	}
	r.live.Store(r.tgt)
	r.addr = l.Addr().String()
	done := make(chan error, 1)
	go func() { done <- r.tgt.Serve(l) }()
	t.Cleanup(func() {
		r.live.Store(nil)
		if err := r.tgt.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return r
}

// host is a minimal synchronous NVMe/TCP host for tests: one command at
// a time on one connection.
type host struct {
	t       testing.TB
	c       net.Conn
	r       *pdu.Reader
	w       pdu.Writer
	cid     uint16
	maxH2C  uint32
	inCaps  int
	out     []byte
	hostID  [16]byte
	hostNQN string
}

var errTerm = errors.New("controller sent C2HTermReq")

func (r *rig) dial(t testing.TB, hd, dd bool) *host {
	t.Helper()
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	h := &host{t: t, c: c, r: pdu.NewReader(pdu.Host, 0), inCaps: adminInCapsule, out: make([]byte, 0, pdu.MaxHeadLen),
		hostID: [16]byte{1, 2, 3, 4}}
	h.hostNQN = fabrics.UUIDNQN(h.hostID)
	q := pdu.ICReq{HeaderDigest: hd, DataDigest: dd}
	if _, err := c.Write(h.w.AppendICReq(nil, q)); err != nil {
		t.Fatal(err)
	}
	p, err := h.next()
	if err != nil || p.Type != pdu.TypeICResp {
		t.Fatalf("ICResp: %v %v", p, err)
	}
	params, w, err := pdu.AcceptICResp(q, p.ICResp, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	h.r.SetParams(params)
	h.w, h.maxH2C = w, p.ICResp.MaxH2CData
	return h
}

func (h *host) next() (*pdu.PDU, error) {
	for {
		p, err := h.r.Next()
		if p != nil || err != nil {
			return p, err
		}
		n, err := h.c.Read(h.r.ReadBuffer())
		h.r.Advance(n)
		if err != nil && n == 0 {
			return nil, err
		}
	}
}

func (h *host) send(bufs ...[]byte) error {
	nb := net.Buffers{}
	for _, b := range bufs {
		if len(b) > 0 {
			nb = append(nb, b)
		}
	}
	_, err := nb.WriteTo(h.c)
	return err
}

// submit sends cmd (with in-capsule data if it fits) and returns its CID.
func (h *host) submit(cmd spec.Command, wdata []byte, rlen int) (spec.Command, error) {
	h.cid++
	cmd.CID = h.cid
	cmd.Flags = cmd.Flags&^spec.FlagPSDTMask | spec.FlagPSDTSGL
	var icd []byte
	if len(wdata) > 0 && len(wdata) <= h.inCaps {
		cmd.SetSGL1(fabrics.InCapsuleSGL(0, uint32(len(wdata))))
		icd = wdata
	} else {
		cmd.SetSGL1(fabrics.TransportSGL(uint32(len(wdata) + rlen)))
	}
	var tail [pdu.DigestLen]byte
	return cmd, h.send(h.w.AppendCapsuleCmd(h.out[:0], &cmd, len(icd)), icd, h.w.AppendDataDigest(tail[:0], icd))
}

// do runs one command: wdata goes to the controller, rdata is filled.
func (h *host) do(cmd spec.Command, wdata, rdata []byte) (spec.Completion, error) {
	cmd, err := h.submit(cmd, wdata, len(rdata))
	if err != nil {
		return spec.Completion{}, err
	}
	return h.wait(cmd, wdata, rdata)
}

func (h *host) wait(cmd spec.Command, wdata, rdata []byte) (spec.Completion, error) {
	var got, requested uint32
	var tail [pdu.DigestLen]byte
	for {
		p, err := h.next()
		if err != nil && !errors.Is(err, pdu.ErrDataDigest) {
			return spec.Completion{}, err
		}
		switch p.Type {
		case pdu.TypeC2HData:
			if p.Transfer.CCCID != cmd.CID {
				return spec.Completion{}, fmt.Errorf("c2h data for cid %d", p.Transfer.CCCID)
			}
			if p.DataPending {
				if err := pdu.CheckData(p, 0, got, uint32(len(rdata)), p.Header); err != nil {
					return spec.Completion{}, err
				}
				if err := h.r.SetDest(rdata[p.Transfer.Offset : p.Transfer.Offset+p.Transfer.Length]); err != nil {
					return spec.Completion{}, err
				}
				continue
			}
			if err != nil {
				return spec.Completion{}, err
			}
			got += p.Transfer.Length
			if p.Success() {
				if int(got) != len(rdata) {
					return spec.Completion{}, fmt.Errorf("SUCCESS after %d of %d bytes", got, len(rdata))
				}
				return spec.Completion{CID: cmd.CID}, nil
			}
		case pdu.TypeR2T:
			if err := pdu.CheckR2T(p, requested, uint32(len(wdata)), 0, 0, p.Header); err != nil {
				return spec.Completion{}, err
			}
			x := p.Transfer
			requested = x.Offset + x.Length
			for off := x.Offset; off < requested; {
				n := min(requested-off, h.maxH2C)
				d := wdata[off : off+n]
				hd := h.w.AppendH2CData(h.out[:0], cmd.CID, x.TTag, off, int(n), off+n == requested)
				if err := h.send(hd, d, h.w.AppendDataDigest(tail[:0], d)); err != nil {
					return spec.Completion{}, err
				}
				off += n
			}
		case pdu.TypeCapsuleResp:
			if p.Completion.CID != cmd.CID {
				return spec.Completion{}, fmt.Errorf("completion for cid %d, want %d", p.Completion.CID, cmd.CID)
			}
			if st := p.Completion.StatusField(); st.Success() && int(got) != len(rdata) {
				return spec.Completion{}, fmt.Errorf("completed after %d of %d bytes", got, len(rdata))
			}
			return p.Completion, nil
		case pdu.TypeC2HTermReq:
			return spec.Completion{}, fmt.Errorf("%w: %v fei %#x", errTerm, p.Term.FES, p.Term.FEI)
		default:
			return spec.Completion{}, fmt.Errorf("unexpected %v", p.Type)
		}
	}
}

func (h *host) ok(cmd spec.Command, wdata, rdata []byte) spec.Completion {
	h.t.Helper()
	cqe, err := h.do(cmd, wdata, rdata)
	if err != nil {
		h.t.Fatalf("opcode %#x: %v", cmd.Opcode, err)
	}
	if st := cqe.StatusField(); !st.Success() {
		h.t.Fatalf("opcode %#x: %v", cmd.Opcode, fabrics.StatusName(st))
	}
	return cqe
}

// status runs cmd and returns its status.
func (h *host) status(cmd spec.Command, wdata, rdata []byte) spec.Status {
	h.t.Helper()
	cqe, err := h.do(cmd, wdata, rdata)
	if err != nil {
		h.t.Fatalf("opcode %#x: %v", cmd.Opcode, err)
	}
	return cqe.StatusField().Code()
}

func (h *host) connect(qid, cntlid uint16, subnqn string, cattr uint8, kato uint32) (spec.Completion, error) {
	d, err := fabrics.NewConnectData(h.hostID, cntlid, subnqn, h.hostNQN)
	if err != nil {
		h.t.Fatal(err)
	}
	buf := make([]byte, fabrics.ConnectDataSize)
	d.MarshalTo(buf)
	cmd := fabrics.ConnectCommand{QID: qid, SQSize: 31, CAttr: cattr, KATO: kato}
	return h.do(cmd.SQE(), buf, nil)
}

func (h *host) propGet(off uint32) uint64 {
	h.t.Helper()
	size, _ := fabrics.PropertySize(off)
	cmd := fabrics.PropertyGetCommand{Attrib: fabrics.PropertyAttrib(size), Offset: off}
	cqe := h.ok(cmd.SQE(), nil, nil)
	return fabrics.PropertyValue(&cqe)
}

func (h *host) propSet(off uint32, v uint64) {
	h.t.Helper()
	cmd := fabrics.PropertySetCommand{Attrib: fabrics.PropertySize4, Offset: off, Value: v}
	h.ok(cmd.SQE(), nil, nil)
}

// bringUp connects an admin queue and enables the controller.
func (r *rig) bringUp(t testing.TB, hd, dd bool) (*host, uint16) {
	t.Helper()
	a := r.dial(t, hd, dd)
	cqe, err := a.connect(0, fabrics.CNTLIDDynamic, testNQN, 0, 30000)
	if err != nil || !cqe.StatusField().Success() {
		t.Fatalf("connect admin: %v %v", err, cqe.StatusField())
	}
	cntlid := fabrics.ConnectResponse(cqe.DW0).CNTLID()
	if cntlid == 0 || cntlid >= 0xfff0 {
		t.Fatalf("cntlid %#x", cntlid)
	}
	cc := spec.CC(0).WithIOSQES(6).WithIOCQES(4).WithEN(true)
	a.propSet(spec.RegCC, uint64(cc))
	if cs := spec.CSTS(a.propGet(spec.RegCSTS)); !cs.RDY() {
		t.Fatalf("CSTS %#x not ready", uint32(cs))
	}
	return a, cntlid
}

// ioQueue connects I/O queue qid of controller cntlid.
func (r *rig) ioQueue(t testing.TB, cntlid, qid uint16, hd, dd bool, cattr uint8) *host {
	t.Helper()
	q := r.dial(t, hd, dd)
	cqe, err := q.connect(qid, cntlid, testNQN, cattr, 0)
	if err != nil || !cqe.StatusField().Success() {
		t.Fatalf("connect io %d: %v %v", qid, err, fabrics.StatusName(cqe.StatusField()))
	}
	q.inCaps = 8192
	return q
}

func rw(op spec.Opcode, slba uint64, blocks int) spec.Command {
	return spec.Command{Opcode: uint8(op), NSID: 1, CDW10: uint32(slba), CDW11: uint32(slba >> 32), CDW12: uint32(blocks - 1)}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed ^ byte(i) ^ byte(i>>9)
	}
	return b
}
