package tcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/seedb8fa28ef/gonvme/internal/nbsock"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
)

// Errors a queue's connection ends with. Callers of the package see them
// in log lines and, after CtrlLossTimeout, wrapped under nvme.ErrRemoved.
var (
	// ErrTerminated: the controller ended the connection with a
	// C2HTermReq.
	ErrTerminated = errors.New("nvme/tcp: the controller terminated the connection")
	// ErrProtocol: the controller sent something the protocol does not
	// allow for the commands outstanding (a CID that is not, data past a
	// command's length, an R2T for a read, ...). The host ends the
	// connection with an H2CTermReq.
	ErrProtocol = errors.New("nvme/tcp: protocol error")
	// ErrClosed: the connection was closed by the host (a reconnect or
	// Close under way).
	ErrClosed = errors.New("nvme/tcp: connection closed")
)

// adminInCapsule is the in-capsule data of admin commands: 8 KiB, as
// Linux's host and target use (NVME_TCP_ADMIN_CCSZ), room for Connect.
const adminInCapsule = 8192

// maxReads bounds the socket reads one Reap makes, so one busy connection
// cannot keep its poller from the others.
const maxReads = 16

// dir is the direction of a command's data.
type dir uint8

const (
	dirNone dir = iota
	dirH2C      // host to controller: in the capsule, or H2CData after R2T
	dirC2H      // controller to host: C2HData
)

// command is the transport's side of one outstanding command (one slot).
type command struct {
	active   bool
	cid      uint16
	dir      dir
	data     []byte
	recvd    uint32 // C2H: bytes received, the next DATAO
	asked    uint32 // H2C: bytes the R2Ts asked for, the next R2TO
	r2tOff   uint32 // the R2T being answered: the next byte to send
	r2tEnd   uint32 //   and its end
	ttag     uint16
	r2t      bool // an R2T is being answered
	inCap    bool // the write data went in the capsule
	queued   int  // PDUs of the command queued or being written
	ddgstErr bool // a C2HData of it failed its data digest

	head  [pdu.MaxHeadLen]byte // the CapsuleCmd header
	dhead [pdu.MaxHeadLen]byte // the H2CData header being sent
	cdg   [pdu.DigestLen]byte  // data digest of in-capsule data
	hdg   [pdu.DigestLen]byte  // data digest of the H2CData being sent
}

// Ends of PDUs in the send queue.
const (
	endNone uint8 = iota
	endCapsule
	endH2C
	endIC // the ICReq: a PDU of no command
)

// piece is one buffer of the send queue: a PDU header, data or digest.
type piece struct {
	b    []byte
	slot uint16
	end  uint8 // the last piece of a PDU of command slot
}

// sock is what a queue needs of its connection: *nbsock.Conn, non-blocking
// reads and writes (a test puts a scripted peer here).
type sock interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	Writev(bufs [][]byte) (int, error)
	Close() error
}

var _ sock = (*nbsock.Conn)(nil)

// queue is one queue's connection: an nvme.QueueTransport. Its owner is
// the nvme.QueuePair's owner; Close may be called by any goroutine.
type queue struct {
	name     string
	qid      uint16
	conn     sock
	rd       *pdu.Reader
	wr       pdu.Writer
	maxH2C   uint32
	inCap    int
	slotMask uint16
	cmds     []command

	out []piece  // the send queue; out[oh:] is unsent
	oh  int      // first unsent piece
	mid bool     // part of a PDU was sent: the stream is not at a PDU boundary
	iov [][]byte // scratch for Writev

	curC2H int             // slot whose C2HData is being received, -1
	cqe    spec.Completion // a completion the host makes (SUCCESS)
	err    error           // the connection's end, sticky
	closed atomic.Bool
	f      *fabric // to deregister at Close
}

// newQueue makes the queue of conn with room for slots commands.
func newQueue(f *fabric, name string, qid uint16, conn sock, slots int, slotBits uint8) *queue {
	q := &queue{
		name: name, qid: qid, conn: conn, f: f,
		rd:       pdu.NewReader(pdu.Host, 0),
		cmds:     make([]command, slots),
		out:      make([]piece, 0, 6*slots+8),
		iov:      make([][]byte, 0, 64),
		slotMask: uint16(1)<<slotBits - 1,
		curC2H:   -1,
	}
	if slotBits >= 16 {
		q.slotMask = 0xffff
	}
	return q
}

// push appends a non-empty piece to the send queue.
func (q *queue) push(b []byte, slot uint16) {
	if len(b) > 0 {
		q.out = append(q.out, piece{b: b, slot: slot})
	}
}

// endPDU marks the last piece pushed as the end of a PDU of slot.
func (q *queue) endPDU(end uint8) { q.out[len(q.out)-1].end = end }

// Issue implements nvme.QueueTransport.
func (q *queue) Issue(slot uint16, cmd *spec.Command, data []byte) {
	c := &q.cmds[slot]
	c.active, c.cid, c.data = true, cmd.CID, data
	c.recvd, c.asked, c.r2t, c.inCap, c.ddgstErr = 0, 0, false, false, false
	c.dir = dirNone
	n := len(data)
	if n > 0 {
		switch spec.Opcode(cmd.Opcode) {
		case spec.AdminFabrics:
			c.dir = dirH2C // Connect: the only fabrics command with data the host sends
		default:
			// NVMe Base 2.0, Figure "Opcodes for Data Transfer": bits
			// 1:0 of the opcode give the direction.
			if cmd.Opcode&3 == 1 {
				c.dir = dirH2C
			} else {
				c.dir = dirC2H
			}
		}
	}
	cmd.Flags = cmd.Flags&^spec.FlagPSDTMask | spec.FlagPSDTSGL
	icd := 0
	switch {
	case n == 0:
		cmd.SetSGL1(fabrics.TransportSGL(0))
	case c.dir == dirH2C && n <= q.inCap:
		cmd.SetSGL1(fabrics.InCapsuleSGL(0, uint32(n)))
		icd, c.inCap = n, true
	default:
		cmd.SetSGL1(fabrics.TransportSGL(uint32(n)))
	}
	q.push(q.wr.AppendCapsuleCmd(c.head[:0], cmd, icd), slot)
	if icd > 0 {
		q.push(data, slot)
		if q.wr.DataDigest {
			binary.LittleEndian.PutUint32(c.cdg[:], pdu.Digest(data))
			q.push(c.cdg[:], slot)
		}
	}
	q.endPDU(endCapsule)
	c.queued++
}

// pushH2C queues the next H2CData PDU answering slot's R2T: at most
// MAXH2CDATA bytes, LAST_PDU on the one that ends the R2T's range.
func (q *queue) pushH2C(slot uint16) {
	c := &q.cmds[slot]
	n := c.r2tEnd - c.r2tOff
	if q.maxH2C > 0 {
		n = min(n, q.maxH2C)
	}
	last := c.r2tOff+n == c.r2tEnd
	data := c.data[c.r2tOff : c.r2tOff+n]
	q.push(q.wr.AppendH2CData(c.dhead[:0], c.cid, c.ttag, c.r2tOff, int(n), last), slot)
	q.push(data, slot)
	if q.wr.DataDigest {
		binary.LittleEndian.PutUint32(c.hdg[:], pdu.Digest(data))
		q.push(c.hdg[:], slot)
	}
	q.endPDU(endH2C)
	c.r2tOff += n
	c.queued++
}

// Flush implements nvme.QueueTransport: one writev per 64 pieces, until
// the queue is empty or the socket takes no more.
func (q *queue) Flush() error {
	if q.err != nil {
		return q.err
	}
	for q.oh < len(q.out) {
		iov := q.iov[:0]
		total := 0
		for i := q.oh; i < len(q.out) && len(iov) < cap(q.iov); i++ {
			iov = append(iov, q.out[i].b)
			total += len(q.out[i].b)
		}
		n, err := q.conn.Writev(iov)
		clear(iov)
		if err != nil {
			return q.fail(fmt.Errorf("send: %w", err))
		}
		q.consume(n)
		if n < total {
			break // the socket is full: the rest goes with the next Flush
		}
	}
	switch {
	case q.oh == len(q.out):
		clear(q.out)
		q.out, q.oh = q.out[:0], 0
	case q.oh > 0 && q.oh >= len(q.out)/2:
		k := copy(q.out, q.out[q.oh:])
		clear(q.out[k:])
		q.out, q.oh = q.out[:k], 0
	}
	return nil
}

// consume drops n written bytes from the front of the send queue.
func (q *queue) consume(n int) {
	for n > 0 && q.oh < len(q.out) {
		p := &q.out[q.oh]
		if n < len(p.b) {
			p.b = p.b[n:]
			q.mid = true
			return
		}
		n -= len(p.b)
		q.oh++
		q.mid = p.end == endNone
		if p.end == endNone || p.end == endIC {
			continue
		}
		c := &q.cmds[p.slot]
		c.queued--
		if p.end == endH2C {
			if c.r2tOff < c.r2tEnd {
				q.pushH2C(p.slot)
			} else {
				c.r2t = false
			}
		}
	}
}

// Reap implements nvme.QueueTransport.
func (q *queue) Reap(max int, done func(*spec.Completion)) (int, error) {
	if q.err != nil {
		return 0, q.err
	}
	n, reads := 0, 0
	for n < max {
		p, err := q.rd.Next()
		if err != nil {
			var pe *pdu.Error
			if !errors.As(err, &pe) || pe.Fatal() || p == nil || q.curC2H < 0 {
				return n, q.fail(err)
			}
			// A data digest error: the data of this C2HData is bad; the
			// command fails (Transient Transport Error) and the stream
			// goes on.
			q.cmds[q.curC2H].ddgstErr = true
		}
		if p == nil {
			if reads == maxReads {
				break
			}
			if q.closed.Load() {
				return n, q.fail(ErrClosed)
			}
			k, err := q.conn.Read(q.rd.ReadBuffer())
			reads++
			if err != nil {
				return n, q.fail(fmt.Errorf("receive: %w", err))
			}
			if k == 0 {
				break
			}
			q.rd.Advance(k)
			continue
		}
		completed, err := q.handle(p, done)
		if err != nil {
			return n, q.fail(err)
		}
		if completed {
			n++
			if q.closed.Load() || q.err != nil {
				return n, q.err // done closed the queue
			}
		}
	}
	if q.oh < len(q.out) {
		// H2CData answering R2Ts that arrived.
		if err := q.Flush(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// protocolError is a fatal error in what the controller sent, for the
// H2CTermReq: the PDU's header is its error data.
func protocolError(fes pdu.FES, fei uint32, p *pdu.PDU, format string, args ...any) error {
	return fmt.Errorf("%w: %w", ErrProtocol, pdu.NewError(fes, fei, p.Type, p.Header, format, args...))
}

// lookup returns the command a received CID names, or a protocol error.
func (q *queue) lookup(cid uint16, p *pdu.PDU, fei uint32) (*command, uint16, error) {
	slot := cid & q.slotMask
	if int(slot) >= len(q.cmds) || !q.cmds[slot].active || q.cmds[slot].cid != cid {
		return nil, 0, protocolError(pdu.FESInvalidHeaderField, fei, p, "cid %#x is not outstanding", cid)
	}
	return &q.cmds[slot], slot, nil
}

// Offsets of the CID fields in a received header, reported as FEI.
const (
	feiCQECID = 8 + 12 // CapsuleResp: the CQE's CID
	feiCCCID  = 8      // C2HData, R2T: CCCID
)

// handle acts on one received PDU; it reports whether a command
// completed.
func (q *queue) handle(p *pdu.PDU, done func(*spec.Completion)) (bool, error) {
	switch p.Type {
	case pdu.TypeCapsuleResp:
		c, slot, err := q.lookup(p.Completion.CID, p, feiCQECID)
		if err != nil {
			return false, err
		}
		if c.queued > 0 || c.r2t {
			return false, protocolError(pdu.FESPDUSequenceError, 0, p, "response to cid %#x before its data was sent", c.cid)
		}
		if q.curC2H == int(slot) {
			q.curC2H = -1
		}
		q.cqe = p.Completion
		if c.ddgstErr && q.cqe.StatusField().Success() {
			q.cqe.Status = spec.MakeStatus(spec.SCTGeneric, spec.SCTransientTransportError).CQEField(false)
		}
		q.release(c)
		done(&q.cqe)
		return true, nil
	case pdu.TypeC2HData:
		if p.DataPending || p.DataLen == 0 {
			x := p.Transfer
			c, slot, err := q.lookup(x.CCCID, p, feiCCCID)
			if err != nil {
				return false, err
			}
			if c.dir != dirC2H {
				return false, protocolError(pdu.FESInvalidHeaderField, feiCCCID, p, "C2HData for cid %#x, which reads nothing", c.cid)
			}
			if err := pdu.CheckData(p, 0, c.recvd, uint32(len(c.data)), p.Header); err != nil {
				return false, fmt.Errorf("%w: %w", ErrProtocol, err)
			}
			q.curC2H = int(slot)
			if p.DataPending {
				if err := q.rd.SetDest(c.data[x.Offset : x.Offset+x.Length]); err != nil {
					return false, err
				}
				return false, nil
			}
		}
		if q.curC2H < 0 {
			return false, protocolError(pdu.FESPDUSequenceError, 0, p, "C2HData data without its header")
		}
		c := &q.cmds[q.curC2H]
		q.curC2H = -1
		c.recvd += p.DataLen
		if !p.Success() {
			return false, nil
		}
		if int(c.recvd) != len(c.data) {
			return false, protocolError(pdu.FESInvalidHeaderField, 1, p, "SUCCESS after %d of %d bytes of cid %#x", c.recvd, len(c.data), c.cid)
		}
		q.cqe = spec.Completion{CID: c.cid, SQID: q.qid}
		if c.ddgstErr {
			q.cqe.Status = spec.MakeStatus(spec.SCTGeneric, spec.SCTransientTransportError).CQEField(false)
		}
		q.release(c)
		done(&q.cqe)
		return true, nil
	case pdu.TypeR2T:
		x := p.Transfer
		c, slot, err := q.lookup(x.CCCID, p, feiCCCID)
		if err != nil {
			return false, err
		}
		if c.dir != dirH2C || c.inCap {
			return false, protocolError(pdu.FESInvalidHeaderField, feiCCCID, p, "R2T for cid %#x, which has no data to send", c.cid)
		}
		out := uint32(0)
		if c.r2t {
			out = 1
		}
		if err := pdu.CheckR2T(p, c.asked, uint32(len(c.data)), out, 0, p.Header); err != nil {
			return false, fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		c.ttag, c.r2tOff, c.r2tEnd = x.TTag, x.Offset, x.Offset+x.Length
		c.asked, c.r2t = c.r2tEnd, true
		q.pushH2C(slot)
		return false, nil
	case pdu.TypeC2HTermReq:
		return false, fmt.Errorf("%w: %v (FEI %#x)", ErrTerminated, p.Term.FES, p.Term.FEI)
	}
	return false, protocolError(pdu.FESInvalidHeaderField, 0, p, "unexpected %v", p.Type)
}

// release forgets a command that completed.
func (q *queue) release(c *command) {
	c.active, c.data = false, nil
}

// fail ends the connection with err: an H2CTermReq first when err is a
// protocol error with a status (best effort: the socket may take it or
// not), then the socket is closed. It returns err, sticky.
func (q *queue) fail(err error) error {
	if q.err != nil {
		return q.err
	}
	// The TermReq goes out only at a PDU boundary: after part of a PDU
	// it would be read as the rest of that one.
	var pe *pdu.Error
	if errors.As(err, &pe) && pe.FES != pdu.FESNone && !q.closed.Load() && !q.mid {
		var b [pdu.TermReqMaxLen]byte
		_, _ = q.conn.Write(pdu.AppendTermReqFor(b[:0], pdu.Host, pe))
	}
	q.err = err
	q.close()
	return q.err
}

// Close implements nvme.QueueTransport. Any goroutine.
func (q *queue) Close() error {
	q.close()
	return nil
}

func (q *queue) close() {
	if q.closed.Swap(true) {
		return
	}
	_ = q.conn.Close()
	if q.f != nil {
		q.f.forget(q)
	}
}

// The connection's set-up, before the queue pair uses it: blocking, with
// a deadline, on the non-blocking socket (it sleeps between attempts).

// wait flushes and reaps until cond holds or deadline passes.
func (q *queue) wait(deadline time.Time, what string, done func(*spec.Completion), cond func() bool) error {
	sleep := 10 * time.Microsecond
	for {
		if err := q.Flush(); err != nil {
			return err
		}
		n, err := q.Reap(1, done)
		if err != nil {
			return err
		}
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s: no answer in time", q.name, what)
		}
		if n == 0 {
			time.Sleep(sleep)
			sleep = min(2*sleep, 2*time.Millisecond)
		}
	}
}

// initialize exchanges ICReq and ICResp (NVMe/TCP 1.0a, 3.6.2.2, 3.6.2.3)
// and sets the Reader and Writer up with what was negotiated.
func (q *queue) initialize(deadline time.Time, hd, dd bool) error {
	req := pdu.ICReq{PFV: pdu.PFV10, HPDA: 0, HeaderDigest: hd, DataDigest: dd, MaxR2T: 0}
	var b [pdu.ICReqLen]byte
	q.push(q.wr.AppendICReq(b[:0], req), 0)
	q.endPDU(endIC)
	sleep := 10 * time.Microsecond
	for {
		if err := q.Flush(); err != nil {
			return err
		}
		p, err := q.rd.Next()
		if err != nil {
			return q.fail(err)
		}
		if p != nil {
			if p.Type != pdu.TypeICResp {
				return q.fail(protocolError(pdu.FESPDUSequenceError, 0, p, "%v before ICResp", p.Type))
			}
			params, w, err := pdu.AcceptICResp(req, p.ICResp, 0)
			if err != nil {
				return q.fail(err)
			}
			q.rd.SetParams(params)
			q.wr = w
			q.maxH2C = p.ICResp.MaxH2CData
			return nil
		}
		k, err := q.conn.Read(q.rd.ReadBuffer())
		if err != nil {
			return q.fail(fmt.Errorf("receive ICResp: %w", err))
		}
		if k > 0 {
			q.rd.Advance(k)
			continue
		}
		if time.Now().After(deadline) {
			return q.fail(fmt.Errorf("no ICResp in time"))
		}
		time.Sleep(sleep)
		sleep = min(2*sleep, 2*time.Millisecond)
	}
}

// connect sends the Fabrics Connect command (Base 2.0, 6.3) and returns
// its completion's dword 0 (the controller ID, for the admin queue).
func (q *queue) connect(deadline time.Time, c *fabrics.ConnectCommand, data *fabrics.ConnectData) (uint32, error) {
	buf := make([]byte, fabrics.ConnectDataSize)
	data.MarshalTo(buf)
	cmd := c.SQE()
	cmd.CID = 0
	q.Issue(0, &cmd, buf)
	var cqe spec.Completion
	got := false
	err := q.wait(deadline, "connect", func(c *spec.Completion) { cqe, got = *c, true }, func() bool { return got })
	if err != nil {
		return 0, err
	}
	if st := cqe.StatusField(); !st.Success() {
		off, inData := fabrics.ConnectResponse(cqe.DW0).InvalidParameter()
		return 0, fmt.Errorf("%s: connect: %s (status %#x; invalid parameter offset %#x, in data %t)", q.name, fabrics.StatusName(st), uint16(st), off, inData)
	}
	return cqe.DW0, nil
}
