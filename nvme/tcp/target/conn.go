package target

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
)

// conn is one TCP connection on its way to being a queue, and an admin
// queue for good: its goroutine (run) runs the IC exchange and Connect,
// then serves admin commands with blocking reads and writes. An I/O
// queue's Connect hands the connection to a poll group (an ioConn) and
// the goroutine ends. Sending is serialized by wmu: AEN completions come
// from other goroutines.
type conn struct {
	t *Target
	c net.Conn
	r *pdu.Reader

	wmu    sync.Mutex
	w      pdu.Writer
	head   []byte // PDU heads, under wmu
	sqhd   uint16 // under wmu
	wbroke bool   // a send failed; under wmu

	// Set by Connect, on the reader goroutine, before any command runs.
	ctrl      *controller
	sqsize    uint16
	noSQFlow  bool
	connected bool
	handedOff bool // an I/O queue now served by a poll group
}

func newConn(t *Target, c net.Conn) *conn {
	bufSize := max(adminInCapsule, t.cfg.InCapsule) + 4*pdu.MaxHeadLen
	return &conn{t: t, c: c, r: pdu.NewReader(pdu.Controller, bufSize), head: make([]byte, 0, 2*pdu.MaxHeadLen)}
}

var (
	errHostTerm   = errors.New("host sent H2CTermReq")
	errDisconnect = errors.New("host disconnected the queue")
	errHandedOff  = errors.New("i/o queue handed to a poll group")
)

// run is the reader goroutine: it serves the connection until it ends,
// then releases the queue.
func (c *conn) run() {
	err := c.loop()
	switch {
	case err == nil, errors.Is(err, errDisconnect), errors.Is(err, errHostTerm), errors.Is(err, errHandedOff):
	default:
		c.t.logf("nvmf: %v: %v", c.c.RemoteAddr(), err)
	}
	c.teardown()
}

func (c *conn) loop() error {
	// Until the IC exchange, a peer that says nothing is not kept.
	_ = c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		p, err := c.r.Next()
		var pe *pdu.Error
		if err != nil && p != nil && errors.As(err, &pe) && !pe.Fatal() {
			if err := c.dataDigestError(p); err != nil {
				return c.fatal(err)
			}
			continue
		}
		if err != nil {
			return c.fatal(err)
		}
		if p == nil {
			n, err := c.c.Read(c.r.ReadBuffer())
			c.r.Advance(n)
			if err != nil && n == 0 {
				if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
					return nil
				}
				return err
			}
			continue
		}
		if err := c.handle(p); err != nil {
			return c.fatal(err)
		}
	}
}

// fatal ends the connection after a protocol error: a TermReq for an
// *pdu.Error with a status, then close.
func (c *conn) fatal(err error) error {
	var pe *pdu.Error
	if !errors.As(err, &pe) {
		return err
	}
	c.wmu.Lock()
	if !c.wbroke {
		_ = c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.c.Write(pdu.AppendTermReqFor(c.head[:0], pdu.Controller, pe))
	}
	c.wbroke = true
	c.wmu.Unlock()
	// Half-close and read what the host still sends until it closes:
	// closing with unread bytes resets the connection, and a reset can
	// discard the TermReq before the host reads it.
	if cw, ok := c.c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.Copy(io.Discard, c.c)
	return err
}

// teardown ends the connection, unless a poll group took it: an admin
// queue takes its controller with it.
func (c *conn) teardown() {
	if c.handedOff {
		return
	}
	c.c.Close()
	if c.ctrl != nil {
		c.t.dropController(c.ctrl)
	}
}

// send writes bufs (empty ones left out) with one writev, under wmu. A
// failed send marks the connection broken; the reader then sees the
// close.
func (c *conn) sendLocked(bufs ...[]byte) error {
	if c.wbroke {
		return net.ErrClosed
	}
	var arr [4][]byte
	nb := net.Buffers(arr[:0])
	for _, b := range bufs {
		if len(b) > 0 {
			nb = append(nb, b)
		}
	}
	if _, err := nb.WriteTo(c.c); err != nil {
		c.wbroke = true
		c.c.Close()
		return err
	}
	return nil
}

// respond sends the CapsuleResp of cmd.
func (c *conn) respond(cid uint16, st spec.Status, dw0, dw1 uint32) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.respondLocked(cid, st, dw0, dw1)
}

func (c *conn) respondLocked(cid uint16, st spec.Status, dw0, dw1 uint32) error {
	c.sqhd++
	if c.sqhd > c.sqsize {
		c.sqhd = 0
	}
	cqe := spec.Completion{DW0: dw0, DW1: dw1, SQHead: c.sqhd, CID: cid, Status: st.CQEField(false)}
	if c.noSQFlow {
		cqe.SQHead = 0
	}
	return c.sendLocked(c.w.AppendCapsuleResp(c.head[:0], &cqe))
}

// sendData sends data for admin command cid in C2HData PDUs, then its
// CapsuleResp.
func (c *conn) sendData(cid uint16, data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	const chunk = 128 << 10
	for off := 0; off < len(data); off += chunk {
		d := data[off:min(off+chunk, len(data))]
		last := off+len(d) == len(data)
		h := c.w.AppendC2HData(c.head[:0], cid, uint32(off), len(d), last, false)
		var tail [pdu.DigestLen]byte
		if err := c.sendLocked(h, d, c.w.AppendDataDigest(tail[:0], d)); err != nil {
			return err
		}
	}
	return c.respondLocked(cid, 0, 0, 0)
}

func status(sct, sc uint8) spec.Status { return spec.MakeStatus(sct, sc) | 1<<14 } // DNR

func (c *conn) handle(p *pdu.PDU) error {
	switch p.Type {
	case pdu.TypeICReq:
		resp, params, w := pdu.AcceptICReq(p.ICReq, pdu.ControllerLimits{
			MaxH2CData: c.t.cfg.MaxH2CData, MaxInCapsule: uint32(max(adminInCapsule, c.t.cfg.InCapsule))})
		c.r.SetParams(params)
		c.wmu.Lock()
		c.w = w
		// The zero Writer sends the ICResp; w is for what follows.
		var zero pdu.Writer
		err := c.sendLocked(zero.AppendICResp(c.head[:0], resp))
		c.wmu.Unlock()
		_ = c.c.SetReadDeadline(time.Time{})
		return err
	case pdu.TypeH2CTermReq:
		return fmt.Errorf("%w: %v, fei %#x", errHostTerm, p.Term.FES, p.Term.FEI)
	case pdu.TypeCapsuleCmd:
		if p.DataPending {
			return nil // in-capsule data staged in the Reader
		}
		return c.command(&p.Command, p.Data)
	}
	return pdu.NewError(pdu.FESInvalidHeaderField, 0, p.Type, p.Header, "unexpected %v", p.Type)
}

// dataSGL checks SGL1 of cmd against the data it must describe: want
// bytes to the host (toHost) or from it (in-capsule data in icd, or to be
// fetched through R2T).
func dataSGL(cmd *spec.Command, want int, toHost bool, icd []byte) (spec.Status, bool) {
	kind, off, length, err := fabrics.ParseDataSGL(cmd.SGL1())
	switch {
	case err != nil:
		return status(spec.SCTGeneric, spec.SCSGLDescriptorTypeInvalid), false
	case want == 0 && kind == fabrics.DataNone:
		return 0, true
	case int(length) != want && !(toHost && int(length) >= want):
		return status(spec.SCTGeneric, spec.SCDataSGLLengthInvalid), false
	case kind == fabrics.DataInCapsule && (toHost || off != 0 || len(icd) != int(length)):
		return status(spec.SCTGeneric, spec.SCSGLOffsetInvalid), false
	case kind == fabrics.DataTransport && len(icd) != 0:
		return status(spec.SCTGeneric, spec.SCDataSGLLengthInvalid), false
	}
	return 0, true
}

// command runs one capsule of the admin queue (or the Connect that makes
// the connection a queue).
func (c *conn) command(cmd *spec.Command, icd []byte) error {
	if cmd.Flags&spec.FlagPSDTMask != spec.FlagPSDTSGL || cmd.Flags&0x3 != 0 {
		return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
	}
	if fct, ok := fabrics.CommandFCType(cmd); ok {
		return c.fabricsCommand(cmd, fct, icd)
	}
	if !c.connected {
		return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCCommandSequenceError), 0, 0)
	}
	return c.adminCommand(cmd, icd)
}

func (c *conn) fabricsCommand(cmd *spec.Command, fct fabrics.FCType, icd []byte) error {
	switch fct {
	case fabrics.FCTypeConnect:
		return c.connect(cmd, icd)
	case fabrics.FCTypePropertyGet, fabrics.FCTypePropertySet:
		if !c.connected {
			return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCCommandSequenceError), 0, 0)
		}
		c.ctrl.kick()
		if fct == fabrics.FCTypePropertyGet {
			g, err := fabrics.PropertyGetFromSQE(cmd)
			if err != nil {
				return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
			}
			v, ok := c.ctrl.propertyGet(g.Offset, g.Size())
			if !ok {
				return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
			}
			return c.respond(cmd.CID, 0, uint32(v), uint32(v>>32))
		}
		ps, err := fabrics.PropertySetFromSQE(cmd)
		if err != nil || !c.ctrl.propertySet(ps.Offset, ps.Size(), ps.Value) {
			return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
		}
		return c.respond(cmd.CID, 0, 0, 0)
	case fabrics.FCTypeDisconnect:
		// Not on an admin queue: NVMe Base 2.0, 6.4.
		return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
	}
	return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInvalidOpcode), 0, 0)
}

// connect runs Fabrics Connect: NVMe Base 2.0, 6.3.
func (c *conn) connect(cmd *spec.Command, icd []byte) error {
	invalid := func(off uint16, inData bool, why string) error {
		c.t.logf("nvmf: %v: connect refused: %s", c.c.RemoteAddr(), why)
		return c.respond(cmd.CID, status(spec.SCTCommandSpecific, fabrics.SCConnectInvalidParams), uint32(fabrics.ConnectInvalidParameter(off, inData)), 0)
	}
	if c.connected {
		return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCCommandSequenceError), 0, 0)
	}
	cc, err := fabrics.ConnectFromSQE(cmd)
	if err != nil {
		return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
	}
	if st, ok := dataSGL(cmd, fabrics.ConnectDataSize, false, icd); !ok || len(icd) != fabrics.ConnectDataSize {
		if ok {
			st = status(spec.SCTGeneric, spec.SCDataSGLLengthInvalid) // Connect data must come in the capsule
		}
		return c.respond(cmd.CID, st, 0, 0)
	}
	if cc.RecFmt != fabrics.ConnectRecFmt {
		return c.respond(cmd.CID, status(spec.SCTCommandSpecific, fabrics.SCIncompatibleFormat), 0, 0)
	}
	d, err := fabrics.ParseConnectData(icd)
	if err != nil {
		return invalid(fabrics.ConnectOffSubNQN, true, err.Error())
	}
	subNQN, host := d.SubsystemNQN(), d.HostNQNString()
	if fabrics.CheckNQN(host) != nil {
		return invalid(fabrics.ConnectOffHostNQN, true, "host nqn "+host)
	}
	disc := subNQN == fabrics.DiscoveryNQN
	sub := c.t.subs[subNQN]
	if sub == nil && !disc {
		return invalid(fabrics.ConnectOffSubNQN, true, "no subsystem "+subNQN)
	}
	if !disc && !c.t.hostAllowed(host) {
		c.t.logf("nvmf: %v: connect refused: host %s not allowed on %s", c.c.RemoteAddr(), host, subNQN)
		return c.respond(cmd.CID, status(spec.SCTCommandSpecific, fabrics.SCConnectInvalidHost), 0, 0)
	}
	maxSQ := uint16(mqes)
	if cc.QID == 0 {
		maxSQ = adminMQES
	}
	if cc.SQSize > maxSQ || cc.SQSize == 0 || cc.QID == 0 && cc.SQSize < fabrics.ConnectSQSizeAdminMin {
		return invalid(fabrics.ConnectOffSQSize, false, fmt.Sprintf("sqsize %d", cc.SQSize))
	}
	if cc.QID == 0 {
		if d.CNTLID != fabrics.CNTLIDDynamic {
			return invalid(fabrics.ConnectOffCNTLID, true, fmt.Sprintf("cntlid %#x for an admin queue (dynamic model: want ffffh)", d.CNTLID))
		}
		kato := time.Duration(cc.KATO) * time.Millisecond
		if kato == 0 && !disc {
			kato = defaultKATO
		}
		ctrl, err := c.t.newController(sub, disc, host, d.HostID, kato)
		if err != nil {
			return c.respond(cmd.CID, status(spec.SCTCommandSpecific, fabrics.SCControllerBusy), 0, 0)
		}
		ctrl.mu.Lock()
		ctrl.admin = c
		ctrl.mu.Unlock()
		c.ctrl = ctrl
	} else {
		ctrl := c.t.controller(d.CNTLID)
		switch {
		case disc:
			return invalid(fabrics.ConnectOffQID, false, "i/o queue on a discovery controller")
		case ctrl == nil || ctrl.sub != sub:
			return invalid(fabrics.ConnectOffCNTLID, true, fmt.Sprintf("no controller %d on %s", d.CNTLID, subNQN))
		case ctrl.hostNQN != host || ctrl.hostID != d.HostID:
			c.t.logf("nvmf: %v: connect refused: host %s is not controller %d's", c.c.RemoteAddr(), host, d.CNTLID)
			return c.respond(cmd.CID, status(spec.SCTCommandSpecific, fabrics.SCConnectInvalidHost), 0, 0)
		}
		ctrl.mu.Lock()
		nq := ctrl.queues
		ctrl.mu.Unlock()
		if cc.QID > nq {
			return invalid(fabrics.ConnectOffQID, false, fmt.Sprintf("qid %d, %d queues", cc.QID, nq))
		}
		if !ctrl.ready() {
			return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCCommandSequenceError), 0, 0)
		}
		io, err := newIOConn(c, ctrl, sub, cc.QID, cc.SQSize, cc.CAttr&fabrics.CAttrDisableSQFlow != 0)
		if err != nil {
			c.t.logf("nvmf: %v: i/o queue %d: %v", c.c.RemoteAddr(), cc.QID, err)
			return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInternalError), 0, 0)
		}
		c.t.mu.Lock()
		taken := ctrl.ioConns[cc.QID] != nil
		dead := ctrl.dead
		if !taken && !dead {
			ctrl.ioConns[cc.QID] = io
		}
		c.t.mu.Unlock()
		if taken || dead {
			io.freeMemory()
			return invalid(fabrics.ConnectOffQID, false, fmt.Sprintf("qid %d already connected", cc.QID))
		}
		// The response goes out from here; then the poll group owns the
		// socket, the Reader (with what it holds past the Connect) and
		// the queue.
		c.wmu.Lock()
		io.w = c.w
		err = c.sendLocked(c.w.AppendCapsuleResp(c.head[:0], &spec.Completion{DW0: uint32(fabrics.ConnectSuccess(ctrl.id, 0)), SQHead: 1, SQID: cc.QID, CID: cmd.CID}))
		c.wbroke = true // nothing more from this goroutine
		c.wmu.Unlock()
		if err == nil {
			err = io.takeSocket(c.c) // closes c.c: teardown must not
			if err != nil {
				c.t.logf("nvmf: %v: i/o queue %d: %v", io.peer, cc.QID, err)
			}
		}
		if err != nil {
			c.t.mu.Lock()
			if ctrl.ioConns[cc.QID] == io {
				delete(ctrl.ioConns, cc.QID)
			}
			c.t.mu.Unlock()
			io.freeMemory()
			return err
		}
		c.handedOff = true
		io.r = c.r
		c.t.groups[int(c.t.next.Add(1)-1)%len(c.t.groups)].adopt(io)
		return errHandedOff
	}
	c.sqsize, c.connected = cc.SQSize, true
	c.noSQFlow = cc.CAttr&fabrics.CAttrDisableSQFlow != 0
	return c.respond(cmd.CID, 0, uint32(fabrics.ConnectSuccess(c.ctrl.id, 0)), 0)
}

// dataDigestError handles a capsule whose in-capsule data digest did not
// match: the command fails with Transient Transport Error, the stream
// goes on. (The admin queue asks for no H2CData.)
func (c *conn) dataDigestError(p *pdu.PDU) error {
	if p.Type != pdu.TypeCapsuleCmd {
		return pdu.NewError(pdu.FESInvalidHeaderField, 0, p.Type, p.Header, "unexpected %v", p.Type)
	}
	return c.respond(p.Command.CID, spec.MakeStatus(spec.SCTGeneric, spec.SCTransientTransportError), 0, 0)
}
