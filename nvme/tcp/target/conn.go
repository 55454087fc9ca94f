package target

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
)

// conn is one TCP connection: one queue (admin or I/O) of one
// controller. Its reader goroutine (run) parses PDUs and starts commands;
// on an I/O queue a sender goroutine sends what completions the backing
// delivers. Sending is serialized by wmu.
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
	qid       uint16
	sqsize    uint16
	noSQFlow  bool
	success   bool
	connected bool

	// I/O queues only.
	sub      *subsystem
	mem      *dma.Buffer
	slots    []slot
	free     chan *slot // slots not in use
	done     chan *slot // slots whose backing I/O completed
	inflight sync.WaitGroup
	mu       sync.Mutex
	busy     map[uint16]bool  // CIDs outstanding; under mu
	waiting  map[uint16]*slot // writes waiting for H2CData; reader only
	icSlot   *slot            // slot taking the in-capsule data being received
	senderWG sync.WaitGroup
	cmdDone  func(*ddi.Buf) int
}

func newConn(t *Target, c net.Conn) *conn {
	bufSize := max(adminInCapsule, t.cfg.InCapsule) + 4*pdu.MaxHeadLen
	return &conn{t: t, c: c, r: pdu.NewReader(pdu.Controller, bufSize), head: make([]byte, 0, 2*pdu.MaxHeadLen)}
}

var (
	errHostTerm   = errors.New("host sent H2CTermReq")
	errDisconnect = errors.New("host disconnected the queue")
)

// run is the reader goroutine: it serves the connection until it ends,
// then releases the queue.
func (c *conn) run() {
	err := c.loop()
	switch {
	case err == nil, errors.Is(err, errDisconnect), errors.Is(err, errHostTerm):
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

// teardown releases the queue: closes the socket, waits for the backing
// to finish the commands it holds, stops the sender and frees the DMA
// memory. An admin queue takes its controller with it.
func (c *conn) teardown() {
	c.c.Close()
	if c.ctrl != nil {
		if c.qid == 0 {
			c.t.dropController(c.ctrl)
		} else {
			c.t.mu.Lock()
			if c.ctrl.ioConns[c.qid] == c {
				delete(c.ctrl.ioConns, c.qid)
			}
			c.t.mu.Unlock()
		}
	}
	if c.slots == nil {
		return
	}
	// Writes still waiting for data never reached the backing.
	for _, s := range c.waiting {
		c.release(s)
	}
	c.waiting = nil
	if c.icSlot != nil {
		c.release(c.icSlot)
		c.icSlot = nil
	}
	c.inflight.Wait()
	close(c.done)
	c.senderWG.Wait()
	if err := c.sub.backing.Memory().Free(c.mem); err != nil {
		c.t.logf("nvmf: free queue memory: %v", err)
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
	cqe := spec.Completion{DW0: dw0, DW1: dw1, SQHead: c.sqhd, SQID: c.qid, CID: cid, Status: st.CQEField(false)}
	if c.noSQFlow {
		cqe.SQHead = 0
	}
	return c.sendLocked(c.w.AppendCapsuleResp(c.head[:0], &cqe))
}

// sendData sends data for command cid in C2HData PDUs of at most
// maxXfer bytes, then completes it: with SUCCESS on the last PDU when
// the queue allows it, else with a CapsuleResp. data is never copied:
// each PDU is one writev of head, data and digest.
func (c *conn) sendData(cid uint16, data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	const chunk = 128 << 10
	for off := 0; off < len(data); off += chunk {
		d := data[off:min(off+chunk, len(data))]
		last := off+len(d) == len(data)
		h := c.w.AppendC2HData(c.head[:0], cid, uint32(off), len(d), last, last && c.success)
		var tail [pdu.DigestLen]byte
		if err := c.sendLocked(h, d, c.w.AppendDataDigest(tail[:0], d)); err != nil {
			return err
		}
	}
	if c.success && len(data) > 0 {
		c.sqhd++ // the host counts it as consumed all the same
		if c.sqhd > c.sqsize {
			c.sqhd = 0
		}
		return nil
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
			c.inCapsuleDest(p)
			return nil
		}
		s := c.icSlot
		c.icSlot = nil
		return c.command(&p.Command, p.Data, s)
	case pdu.TypeH2CData:
		return c.h2cData(p)
	}
	return pdu.NewError(pdu.FESInvalidHeaderField, 0, p.Type, p.Header, "unexpected %v", p.Type)
}

// inCapsuleDest sends the in-capsule data of a write on an I/O queue
// straight into a DMA slot; anything else is staged in the Reader.
func (c *conn) inCapsuleDest(p *pdu.PDU) {
	if c.slots == nil || spec.Opcode(p.Command.Opcode) != spec.IOWrite || int(p.DataLen) > c.sub.maxXfer {
		return
	}
	select {
	case s := <-c.free:
		c.inflight.Add(1)
		if c.r.SetDest(s.buf[:p.DataLen]) != nil {
			c.release(s)
			return
		}
		c.icSlot = s
	default:
	}
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

// command runs one capsule. s, if not nil, is the slot that already holds
// the in-capsule data (icd is then s's bytes).
func (c *conn) command(cmd *spec.Command, icd []byte, s *slot) error {
	if cmd.Flags&spec.FlagPSDTMask != spec.FlagPSDTSGL || cmd.Flags&0x3 != 0 {
		if s != nil {
			c.release(s)
		}
		return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
	}
	if fct, ok := fabrics.CommandFCType(cmd); ok {
		if s != nil {
			c.release(s)
		}
		return c.fabricsCommand(cmd, fct, icd)
	}
	if !c.connected {
		if s != nil {
			c.release(s)
		}
		return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCCommandSequenceError), 0, 0)
	}
	if c.qid == 0 {
		return c.adminCommand(cmd, icd)
	}
	return c.ioCommand(cmd, icd, s)
}

func (c *conn) fabricsCommand(cmd *spec.Command, fct fabrics.FCType, icd []byte) error {
	switch fct {
	case fabrics.FCTypeConnect:
		return c.connect(cmd, icd)
	case fabrics.FCTypePropertyGet, fabrics.FCTypePropertySet:
		if !c.connected || c.qid != 0 {
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
		if !c.connected || c.qid == 0 {
			return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
		}
		if err := c.respond(cmd.CID, 0, 0, 0); err != nil {
			return err
		}
		return errDisconnect
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
		c.t.mu.Lock()
		taken := ctrl.ioConns[cc.QID] != nil
		dead := ctrl.dead
		if !taken && !dead {
			ctrl.ioConns[cc.QID] = c
		}
		c.t.mu.Unlock()
		if taken || dead {
			return invalid(fabrics.ConnectOffQID, false, fmt.Sprintf("qid %d already connected", cc.QID))
		}
		c.ctrl = ctrl
		c.qid = cc.QID
		if err := c.setupIO(sub, int(cc.SQSize)+1); err != nil {
			c.t.logf("nvmf: %v: i/o queue %d: %v", c.c.RemoteAddr(), cc.QID, err)
			c.t.mu.Lock()
			delete(ctrl.ioConns, cc.QID)
			c.t.mu.Unlock()
			c.ctrl, c.qid = nil, 0
			return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInternalError), 0, 0)
		}
	}
	c.qid, c.sqsize, c.connected = cc.QID, cc.SQSize, true
	c.sub = sub
	c.noSQFlow = cc.CAttr&fabrics.CAttrDisableSQFlow != 0
	c.success = c.noSQFlow && !c.t.cfg.NoSuccess
	return c.respond(cmd.CID, 0, uint32(fabrics.ConnectSuccess(c.ctrl.id, 0)), 0)
}
