package tcptest

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
)

// client is a minimal synchronous NVMe/TCP host: one command at a time on
// one connection. It exercises the codec from the host side; the real host
// transport reads non-blocking from a poller.
type client struct {
	t         testing.TB
	c         net.Conn
	r         *pdu.Reader
	w         pdu.Writer
	cid       uint16
	maxH2C    uint32
	maxR2T    uint32
	inCapsule int
	out       []byte
}

var errTerm = errors.New("controller sent C2HTermReq")

// dial initializes the connection (ICReq/ICResp) asking for the given
// digests.
func dial(t testing.TB, c net.Conn, hd, dd bool) *client { return dialPDA(t, c, hd, dd, 0) }

// dialPDA is dial asking for C2H data aligned to (hpda+1)*4 bytes.
func dialPDA(t testing.TB, c net.Conn, hd, dd bool, hpda uint8) *client {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(time.Minute)) // a hung test fails instead of hanging
	cl := &client{t: t, c: c, r: pdu.NewReader(pdu.Host, 0), inCapsule: AdminInCapsule, out: make([]byte, 0, pdu.MaxHeadLen)}
	q := pdu.ICReq{HeaderDigest: hd, DataDigest: dd, HPDA: hpda}
	if _, err := c.Write(cl.w.AppendICReq(nil, q)); err != nil {
		t.Fatal(err)
	}
	p, err := cl.next()
	if err != nil || p.Type != pdu.TypeICResp {
		t.Fatalf("ICResp: %v %v", p, err)
	}
	params, w, err := pdu.AcceptICResp(q, p.ICResp, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	cl.r.SetParams(params)
	cl.w, cl.maxH2C = w, p.ICResp.MaxH2CData
	return cl
}

// next returns the next PDU (header first for data PDUs), reading as
// needed. A data digest error comes with its PDU.
func (c *client) next() (*pdu.PDU, error) {
	for {
		p, err := c.r.Next()
		if p != nil || err != nil {
			return p, err
		}
		n, err := c.c.Read(c.r.ReadBuffer())
		c.r.Advance(n)
		if err != nil && n == 0 {
			return nil, err
		}
	}
}

// send writes bufs with one writev where the connection has it. Empty
// pieces are left out: on a net.Pipe even an empty Write waits for a reader.
func (c *client) send(bufs ...[]byte) error {
	nb := make(net.Buffers, 0, len(bufs))
	for _, b := range bufs {
		if len(b) > 0 {
			nb = append(nb, b)
		}
	}
	_, err := nb.WriteTo(c.c)
	return err
}

// do runs one command: wdata goes to the controller (in the capsule when
// it fits, else through R2T), rdata is filled from C2HData.
func (c *client) do(cmd spec.Command, wdata, rdata []byte) (spec.Completion, error) {
	c.cid++
	cmd.CID = c.cid
	cmd.Flags = cmd.Flags&^spec.FlagPSDTMask | spec.FlagPSDTSGL
	var head []byte
	var icd []byte
	if len(wdata) > 0 && len(wdata) <= c.inCapsule {
		cmd.SetSGL1(fabrics.InCapsuleSGL(0, uint32(len(wdata))))
		icd = wdata
	} else {
		cmd.SetSGL1(fabrics.TransportSGL(uint32(len(wdata) + len(rdata))))
	}
	head = c.w.AppendCapsuleCmd(c.out[:0], &cmd, len(icd))
	var tail [pdu.DigestLen]byte
	if err := c.send(head, icd, c.w.AppendDataDigest(tail[:0], icd)); err != nil {
		return spec.Completion{}, err
	}
	var got, requested uint32
	for {
		p, err := c.next()
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
				if err := c.r.SetDest(rdata[p.Transfer.Offset : p.Transfer.Offset+p.Transfer.Length]); err != nil {
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
			if err := pdu.CheckR2T(p, requested, uint32(len(wdata)), 0, c.maxR2T, p.Header); err != nil {
				return spec.Completion{}, err
			}
			x := p.Transfer
			requested = x.Offset + x.Length
			for off := x.Offset; off < requested; {
				n := min(requested-off, c.maxH2C)
				d := wdata[off : off+n]
				h := c.w.AppendH2CData(c.out[:0], cmd.CID, x.TTag, off, int(n), off+n == requested)
				if err := c.send(h, d, c.w.AppendDataDigest(tail[:0], d)); err != nil {
					return spec.Completion{}, err
				}
				off += n
			}
		case pdu.TypeCapsuleResp:
			if p.Completion.CID != cmd.CID {
				return spec.Completion{}, fmt.Errorf("completion for cid %d", p.Completion.CID)
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

// ok runs a command that must succeed.
func (c *client) ok(cmd spec.Command, wdata, rdata []byte) spec.Completion {
	c.t.Helper()
	cqe, err := c.do(cmd, wdata, rdata)
	if err != nil {
		c.t.Fatalf("opcode %#x: %v", cmd.Opcode, err)
	}
	if st := cqe.StatusField(); !st.Success() {
		c.t.Fatalf("opcode %#x: %v", cmd.Opcode, fabrics.StatusName(st))
	}
	return cqe
}

var testHostID = [16]byte{0x6b, 0x9e, 0x4c, 0x1a, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}

// connect sends Fabrics Connect for qid and returns the completion.
func (c *client) connect(qid uint16, cntlid uint16, subnqn string, cattr uint8) (spec.Completion, error) {
	d, err := fabrics.NewConnectData(testHostID, cntlid, subnqn, fabrics.UUIDNQN(testHostID))
	if err != nil {
		c.t.Fatal(err)
	}
	buf := make([]byte, fabrics.ConnectDataSize)
	d.MarshalTo(buf)
	cmd := fabrics.ConnectCommand{QID: qid, SQSize: 31, CAttr: cattr, KATO: 30000}
	return c.do(cmd.SQE(), buf, nil)
}

func (c *client) propGet(off uint32) uint64 {
	c.t.Helper()
	size, _ := fabrics.PropertySize(off)
	cmd := fabrics.PropertyGetCommand{Attrib: fabrics.PropertyAttrib(size), Offset: off}
	cqe := c.ok(cmd.SQE(), nil, nil)
	return fabrics.PropertyValue(&cqe)
}

func (c *client) propSet(off uint32, v uint64) {
	c.t.Helper()
	cmd := fabrics.PropertySetCommand{Attrib: fabrics.PropertySize4, Offset: off, Value: v}
	c.ok(cmd.SQE(), nil, nil)
}

func rw(op spec.Opcode, slba uint64, blocks int) spec.Command {
	return spec.Command{Opcode: uint8(op), NSID: 1, CDW10: uint32(slba), CDW11: uint32(slba >> 32), CDW12: uint32(blocks - 1)}
}
