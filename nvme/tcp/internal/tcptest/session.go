package tcptest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
)

// session is one connection: one queue of one controller.
type session struct {
	t   *Target
	c   net.Conn
	r   *pdu.Reader
	w   pdu.Writer
	out []byte

	ctrl      *controller
	discovery bool
	qid       uint16
	sqsize    uint16
	sqhd      uint16
	noSQFlow  bool // the host disabled SQ flow control: SUCCESS allowed
	ttag      uint16
	xfers     map[uint16]*xfer // writes waiting for H2CData, by CCCID
}

// xfer is a write whose data comes through R2T and H2CData.
type xfer struct {
	cmd    spec.Command
	buf    []byte
	off    int // namespace byte offset
	ttag   uint16
	next   uint32 // next byte expected
	r2tEnd uint32 // end of the current R2T's range
	failed bool   // a data digest error: complete with Transient Transport Error
}

func newSession(t *Target, c net.Conn) *session {
	bufSize := max(fabrics.ConnectDataSize, AdminInCapsule, int(t.cfg.InCapsule)) + 4*pdu.MaxHeadLen
	return &session{t: t, c: c, r: pdu.NewReader(pdu.Controller, bufSize), out: make([]byte, 0, 2*pdu.MaxHeadLen), xfers: map[uint16]*xfer{}}
}

var errHostTerminated = errors.New("host sent H2CTermReq")

func (s *session) run() error {
	defer func() {
		if s.ctrl != nil && s.qid == 0 {
			s.t.dropController(s.ctrl.id)
		}
	}()
	for {
		p, err := s.r.Next()
		var pe *pdu.Error
		if err != nil && errors.As(err, &pe) && !pe.Fatal() && p != nil {
			// A data digest error fails the command the data belongs to.
			if err := s.dataDigestError(p); err != nil {
				return s.fatal(err)
			}
			continue
		}
		if err != nil {
			return s.fatal(err)
		}
		if p == nil {
			n, err := s.c.Read(s.r.ReadBuffer())
			s.r.Advance(n)
			if err != nil && n == 0 {
				if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
					return nil
				}
				return err
			}
			continue
		}
		if err := s.handle(p); err != nil {
			return s.fatal(err)
		}
	}
}

// fatal ends the connection: a TermReq when err is a protocol error with a
// status, recorded as a host mistake.
func (s *session) fatal(err error) error {
	if errors.Is(err, errHostTerminated) || errors.Is(err, errDisconnect) {
		return err
	}
	s.t.record(err)
	var pe *pdu.Error
	if errors.As(err, &pe) {
		_, _ = s.c.Write(pdu.AppendTermReqFor(nil, pdu.Controller, pe))
	}
	// Close our side, then read what the host still sends until it
	// closes: closing with unread bytes would reset the connection, and a
	// reset can discard the TermReq before the host reads it.
	if cw, ok := s.c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = s.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.Copy(io.Discard, s.c)
	return err
}

// send writes bufs with one writev where the connection has it. Empty
// pieces are left out: on a net.Pipe even an empty Write waits for a reader.
func (s *session) send(bufs ...[]byte) error {
	nb := make(net.Buffers, 0, len(bufs))
	for _, b := range bufs {
		if len(b) > 0 {
			nb = append(nb, b)
		}
	}
	_, err := nb.WriteTo(s.c)
	return err
}

func (s *session) handle(p *pdu.PDU) error {
	switch p.Type {
	case pdu.TypeICReq:
		resp, params, w := pdu.AcceptICReq(p.ICReq, pdu.ControllerLimits{
			CPDA: s.t.cfg.CPDA, MaxH2CData: s.t.cfg.MaxH2CData, MaxInCapsule: uint32(max(AdminInCapsule, int(s.t.cfg.InCapsule)))})
		s.r.SetParams(params)
		s.w = w
		return s.send(s.w.AppendICResp(s.out[:0], resp))
	case pdu.TypeH2CTermReq:
		return fmt.Errorf("%w: %v, fei %#x", errHostTerminated, p.Term.FES, p.Term.FEI)
	case pdu.TypeCapsuleCmd:
		if p.DataPending {
			return nil // staged in the reader: in-capsule data is small
		}
		return s.command(&p.Command, p.Data)
	case pdu.TypeH2CData:
		return s.h2cData(p)
	}
	return pdu.NewError(pdu.FESInvalidHeaderField, 0, p.Type, p.Header, "unexpected %v", p.Type)
}

func (s *session) h2cData(p *pdu.PDU) error {
	x := s.xfers[p.Transfer.CCCID]
	if x == nil {
		return pdu.NewError(pdu.FESInvalidHeaderField, 8, p.Type, p.Header, "CCCID %d has no data outstanding", p.Transfer.CCCID)
	}
	if p.DataPending {
		if err := pdu.CheckData(p, x.ttag, x.next, x.r2tEnd, p.Header); err != nil {
			return err
		}
		return s.r.SetDest(x.buf[p.Transfer.Offset : p.Transfer.Offset+p.Transfer.Length])
	}
	return s.h2cDone(x, p)
}

func (s *session) h2cDone(x *xfer, p *pdu.PDU) error {
	x.next += p.Transfer.Length
	if p.Last() && x.next != x.r2tEnd {
		return pdu.NewError(pdu.FESInvalidHeaderField, 1, p.Type, p.Header, "LAST_PDU at %d, the R2T ends at %d", x.next, x.r2tEnd)
	}
	if x.next < x.r2tEnd {
		return nil
	}
	if int(x.next) < len(x.buf) {
		return s.r2t(x)
	}
	delete(s.xfers, x.cmd.CID)
	if x.failed {
		return s.respond(&x.cmd, spec.MakeStatus(spec.SCTGeneric, spec.SCTransientTransportError), 0, 0)
	}
	s.t.mu.Lock()
	copy(s.t.data[x.off:], x.buf)
	s.t.mu.Unlock()
	return s.respond(&x.cmd, 0, 0, 0)
}

func (s *session) dataDigestError(p *pdu.PDU) error {
	switch p.Type {
	case pdu.TypeCapsuleCmd:
		return s.respond(&p.Command, spec.MakeStatus(spec.SCTGeneric, spec.SCTransientTransportError), 0, 0)
	case pdu.TypeH2CData:
		x := s.xfers[p.Transfer.CCCID]
		if x == nil {
			return pdu.NewError(pdu.FESInvalidHeaderField, 8, p.Type, p.Header, "CCCID %d has no data outstanding", p.Transfer.CCCID)
		}
		x.failed = true
		return s.h2cDone(x, p)
	}
	return nil
}

// r2t asks for the next chunk of x.
func (s *session) r2t(x *xfer) error {
	s.ttag++
	x.ttag = s.ttag
	x.r2tEnd = min(x.next+s.t.cfg.R2TChunk, uint32(len(x.buf)))
	return s.send(s.w.AppendR2T(s.out[:0], x.cmd.CID, x.ttag, x.next, x.r2tEnd-x.next))
}

func (s *session) respond(cmd *spec.Command, st spec.Status, dw0, dw1 uint32) error {
	s.sqhd = (s.sqhd + 1) % (s.sqsize + 1)
	cqe := spec.Completion{DW0: dw0, DW1: dw1, SQHead: s.sqhd, SQID: s.qid, CID: cmd.CID, Status: st.CQEField(false)}
	if s.noSQFlow {
		cqe.SQHead = 0
	}
	return s.send(s.w.AppendCapsuleResp(s.out[:0], &cqe))
}

func status(sct, sc uint8) spec.Status { return spec.MakeStatus(sct, sc) | 1<<14 } // DNR

// sendData sends data for cmd in C2HData PDUs, then completes it: with
// SUCCESS on the last PDU when allowed, else with a CapsuleResp.
func (s *session) sendData(cmd *spec.Command, data []byte) error {
	success := s.t.cfg.Success && s.noSQFlow
	chunk := int(s.t.cfg.C2HChunk)
	for off := 0; off < len(data); off += chunk {
		d := data[off:min(off+chunk, len(data))]
		last := off+len(d) == len(data)
		head := s.w.AppendC2HData(s.out[:0], cmd.CID, uint32(off), len(d), last, last && success)
		var tail [pdu.DigestLen]byte
		if err := s.send(head, d, s.w.AppendDataDigest(tail[:0], d)); err != nil {
			return err
		}
	}
	if success && len(data) > 0 {
		return nil
	}
	return s.respond(cmd, 0, 0, 0)
}

// dataSGL checks SGL1 of cmd against the data it must describe: want bytes
// from the host (in-capsule data in icd) or to it.
func (s *session) dataSGL(cmd *spec.Command, want int, toHost bool, icd []byte) (spec.Status, bool) {
	kind, off, length, err := fabrics.ParseDataSGL(cmd.SGL1())
	switch {
	case err != nil:
		return status(spec.SCTGeneric, spec.SCSGLDescriptorTypeInvalid), false
	case int(length) != want && !(toHost && int(length) >= want):
		return status(spec.SCTGeneric, spec.SCDataSGLLengthInvalid), false
	case kind == fabrics.DataInCapsule && (toHost || off != 0 || len(icd) != int(length)):
		return status(spec.SCTGeneric, spec.SCSGLOffsetInvalid), false
	case kind == fabrics.DataTransport && len(icd) != 0:
		return status(spec.SCTGeneric, spec.SCDataSGLLengthInvalid), false
	}
	return 0, true
}

func (s *session) command(cmd *spec.Command, icd []byte) error {
	if cmd.Flags&spec.FlagPSDTMask != spec.FlagPSDTSGL {
		return s.respond(cmd, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
	}
	if fct, ok := fabrics.CommandFCType(cmd); ok {
		return s.fabricsCommand(cmd, fct, icd)
	}
	if s.ctrl == nil && !s.discovery {
		return s.respond(cmd, status(spec.SCTGeneric, spec.SCCommandSequenceError), 0, 0)
	}
	if s.qid == 0 {
		return s.adminCommand(cmd, icd)
	}
	return s.ioCommand(cmd, icd)
}

var errDisconnect = errors.New("host disconnected the queue")

func (s *session) fabricsCommand(cmd *spec.Command, fct fabrics.FCType, icd []byte) error {
	switch fct {
	case fabrics.FCTypeConnect:
		return s.connect(cmd, icd)
	case fabrics.FCTypePropertyGet, fabrics.FCTypePropertySet:
		if s.ctrl == nil || s.qid != 0 {
			return s.respond(cmd, status(spec.SCTGeneric, spec.SCCommandSequenceError), 0, 0)
		}
		if fct == fabrics.FCTypePropertyGet {
			c, _ := fabrics.PropertyGetFromSQE(cmd)
			v, ok := s.t.propertyGet(s.ctrl, c.Offset, c.Size())
			if !ok {
				return s.respond(cmd, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
			}
			return s.respond(cmd, 0, uint32(v), uint32(v>>32))
		}
		c, _ := fabrics.PropertySetFromSQE(cmd)
		if !s.t.propertySet(s.ctrl, c.Offset, c.Size(), c.Value) {
			return s.respond(cmd, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
		}
		return s.respond(cmd, 0, 0, 0)
	case fabrics.FCTypeDisconnect:
		if s.qid == 0 {
			return s.respond(cmd, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
		}
		if err := s.respond(cmd, 0, 0, 0); err != nil {
			return err
		}
		return errDisconnect
	}
	return s.respond(cmd, status(spec.SCTGeneric, spec.SCInvalidOpcode), 0, 0)
}

func (s *session) connect(cmd *spec.Command, icd []byte) error {
	invalid := func(off uint16, inData bool, why string) error {
		s.t.record(fmt.Errorf("connect refused: %s", why))
		return s.respond(cmd, status(spec.SCTCommandSpecific, fabrics.SCConnectInvalidParams), uint32(fabrics.ConnectInvalidParameter(off, inData)), 0)
	}
	if s.ctrl != nil || s.discovery {
		return s.respond(cmd, status(spec.SCTGeneric, spec.SCCommandSequenceError), 0, 0)
	}
	c, _ := fabrics.ConnectFromSQE(cmd)
	if st, ok := s.dataSGL(cmd, fabrics.ConnectDataSize, false, icd); !ok {
		return s.respond(cmd, st, 0, 0)
	}
	if c.RecFmt != fabrics.ConnectRecFmt {
		return s.respond(cmd, status(spec.SCTCommandSpecific, fabrics.SCIncompatibleFormat), 0, 0)
	}
	d, err := fabrics.ParseConnectData(icd)
	if err != nil {
		return invalid(fabrics.ConnectOffSubNQN, true, err.Error())
	}
	sub, host := d.SubsystemNQN(), d.HostNQNString()
	if fabrics.CheckNQN(host) != nil {
		return invalid(fabrics.ConnectOffHostNQN, true, "host nqn "+host)
	}
	discovery := sub == fabrics.DiscoveryNQN
	if sub != s.t.cfg.SubNQN && !discovery {
		return invalid(fabrics.ConnectOffSubNQN, true, "subsystem nqn "+sub)
	}
	if c.SQSize > mqes || c.SQSize == 0 {
		return invalid(fabrics.ConnectOffSQSize, false, fmt.Sprintf("sqsize %d", c.SQSize))
	}
	if c.QID == 0 {
		if c.SQSize < fabrics.ConnectSQSizeAdminMin {
			return invalid(fabrics.ConnectOffSQSize, false, fmt.Sprintf("admin sqsize %d", c.SQSize))
		}
		if d.CNTLID != fabrics.CNTLIDDynamic {
			return invalid(fabrics.ConnectOffCNTLID, true, fmt.Sprintf("cntlid %#x for an admin queue", d.CNTLID))
		}
		s.ctrl = s.t.newController(host, d.HostID)
		s.discovery = discovery
	} else {
		ctrl := s.t.controller(d.CNTLID)
		switch {
		case discovery:
			return invalid(fabrics.ConnectOffQID, false, "i/o queue on a discovery controller")
		case ctrl == nil:
			return invalid(fabrics.ConnectOffCNTLID, true, fmt.Sprintf("no controller %d", d.CNTLID))
		case ctrl.hostNQN != host || ctrl.hostID != d.HostID:
			s.t.record(fmt.Errorf("connect refused: host %s is not the controller's", host))
			return s.respond(cmd, status(spec.SCTCommandSpecific, fabrics.SCConnectInvalidHost), 0, 0)
		case c.QID > ctrl.queues:
			return invalid(fabrics.ConnectOffQID, false, fmt.Sprintf("qid %d, %d queues", c.QID, ctrl.queues))
		}
		s.t.mu.Lock()
		ready := ctrl.csts&1 != 0
		s.t.mu.Unlock()
		if !ready {
			return s.respond(cmd, status(spec.SCTGeneric, spec.SCCommandSequenceError), 0, 0)
		}
		s.ctrl = ctrl
	}
	s.qid, s.sqsize = c.QID, c.SQSize
	s.noSQFlow = c.CAttr&fabrics.CAttrDisableSQFlow != 0
	return s.respond(cmd, 0, uint32(fabrics.ConnectSuccess(s.ctrl.id, 0)), 0)
}

func (s *session) adminCommand(cmd *spec.Command, icd []byte) error {
	switch spec.Opcode(cmd.Opcode) {
	case spec.AdminIdentify:
		var data []byte
		switch cns := uint8(cmd.CDW10); {
		case cns == spec.CNSController:
			data = s.t.identifyController(s.ctrl)
			if s.discovery {
				data[0x06f] = spec.CtrlTypeDiscovery
			}
		case cns == spec.CNSNamespace && cmd.NSID == 1 && !s.discovery:
			data = s.t.identifyNamespace()
		case cns == spec.CNSActiveNamespaces && !s.discovery:
			data = make([]byte, spec.IdentifySize)
			if cmd.NSID < 1 {
				data[0] = 1
			}
		default:
			return s.respond(cmd, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
		}
		if st, ok := s.dataSGL(cmd, len(data), true, icd); !ok {
			return s.respond(cmd, st, 0, 0)
		}
		return s.sendData(cmd, data)
	case spec.AdminGetLogPage:
		lid := uint8(cmd.CDW10)
		n := int((cmd.CDW10>>16|cmd.CDW11<<16)+1) * 4
		off := int(uint64(cmd.CDW12) | uint64(cmd.CDW13)<<32)
		if lid != spec.LogDiscovery || !s.discovery || off%4 != 0 || off > 1<<20 || n > 1<<20 {
			return s.respond(cmd, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
		}
		if st, ok := s.dataSGL(cmd, n, true, icd); !ok {
			return s.respond(cmd, st, 0, 0)
		}
		log := s.t.discoveryLog()
		data := make([]byte, n)
		if off < len(log) {
			copy(data, log[off:])
		}
		return s.sendData(cmd, data)
	case spec.AdminKeepAlive:
		return s.respond(cmd, 0, 0, 0)
	case spec.AdminSetFeatures, spec.AdminGetFeatures:
		switch uint8(cmd.CDW10) {
		case spec.FeatureNumberOfQueues:
			if spec.Opcode(cmd.Opcode) == spec.AdminSetFeatures {
				n := min(uint16(cmd.CDW11)+1, uint16(cmd.CDW11>>16)+1, 4)
				s.t.mu.Lock()
				s.ctrl.queues = n
				s.t.mu.Unlock()
			}
			s.t.mu.Lock()
			q := uint32(s.ctrl.queues - 1)
			s.t.mu.Unlock()
			return s.respond(cmd, 0, q|q<<16, 0)
		case spec.FeatureKeepAlive:
			return s.respond(cmd, 0, 0, 0)
		}
		return s.respond(cmd, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
	}
	return s.respond(cmd, status(spec.SCTGeneric, spec.SCInvalidOpcode), 0, 0)
}

func (s *session) ioCommand(cmd *spec.Command, icd []byte) error {
	bs := s.t.cfg.BlockSize
	switch spec.Opcode(cmd.Opcode) {
	case spec.IOFlush:
		return s.respond(cmd, 0, 0, 0)
	case spec.IORead, spec.IOWrite:
	default:
		return s.respond(cmd, status(spec.SCTGeneric, spec.SCInvalidOpcode), 0, 0)
	}
	if cmd.NSID != 1 {
		return s.respond(cmd, status(spec.SCTGeneric, spec.SCInvalidNamespace), 0, 0)
	}
	slba := uint64(cmd.CDW10) | uint64(cmd.CDW11)<<32
	nlb := uint64(cmd.CDW12&0xffff) + 1
	n := int(nlb) * bs
	if slba+nlb > uint64(s.t.cfg.Blocks) {
		return s.respond(cmd, status(spec.SCTGeneric, spec.SCLBAOutOfRange), 0, 0)
	}
	if n > 4096<<s.t.cfg.MDTS {
		return s.respond(cmd, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
	}
	off := int(slba) * bs
	read := spec.Opcode(cmd.Opcode) == spec.IORead
	if st, ok := s.dataSGL(cmd, n, read, icd); !ok {
		return s.respond(cmd, st, 0, 0)
	}
	if read {
		data := make([]byte, n)
		s.t.ReadAt(data, off)
		return s.sendData(cmd, data)
	}
	if len(icd) > 0 {
		if len(icd) > int(s.t.cfg.InCapsule) {
			return s.respond(cmd, status(spec.SCTGeneric, spec.SCDataSGLLengthInvalid), 0, 0)
		}
		s.t.mu.Lock()
		copy(s.t.data[off:], icd)
		s.t.mu.Unlock()
		return s.respond(cmd, 0, 0, 0)
	}
	if s.xfers[cmd.CID] != nil {
		return s.respond(cmd, status(spec.SCTGeneric, spec.SCCIDConflict), 0, 0)
	}
	x := &xfer{cmd: *cmd, buf: make([]byte, n), off: off}
	s.xfers[cmd.CID] = x
	return s.r2t(x)
}
