package pdu

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Role is the side of the connection a Reader or Writer serves.
type Role uint8

// Roles.
const (
	Host       Role = iota // receives ICResp, C2HTermReq, CapsuleResp, C2HData, R2T
	Controller             // receives ICReq, H2CTermReq, CapsuleCmd, H2CData
)

// String returns "host" or "controller".
func (r Role) String() string {
	if r == Host {
		return "host"
	}
	return "controller"
}

// Params are what the Reader checks received PDUs against: the outcome of
// the ICReq/ICResp exchange and the limits the receiver announced.
type Params struct {
	// HeaderDigest and DataDigest: the digests enabled on the connection
	// (ICResp DGST). Every PDU but ICReq, ICResp and TermReq must carry a
	// header digest when HeaderDigest is set, and every PDU with data a
	// data digest when DataDigest is set; none may carry one otherwise.
	HeaderDigest, DataDigest bool
	// RxPDA is the PDU data alignment the receiver asked for: HPDA of the
	// host's ICReq (host), CPDA of the controller's ICResp (controller).
	// PDU data must start at a multiple of (RxPDA+1)*4 bytes.
	RxPDA uint8
	// MaxH2CData (controller) is MAXH2CDATA from the ICResp: the most data
	// in one H2CData PDU. 0: no limit.
	MaxH2CData uint32
	// MaxInCapsule (controller) is the most in-capsule data a CapsuleCmd
	// may carry: IOCCSZ*16 - 64 for an I/O queue, what the controller
	// supports for the admin queue (8 KiB on Linux). 0: no limit beyond the
	// Reader's buffer.
	MaxInCapsule uint32
	// MaxC2HData (host) is the most data in one C2HData PDU: at most the
	// largest transfer the host ever asks for. 0: no limit.
	MaxC2HData uint32
}

// PDU is one received PDU, decoded. The fields of its type are set; the
// others keep the values of an earlier PDU. A *PDU from Reader.Next points
// into the Reader and stays valid until the next call to Next.
type PDU struct {
	Type  Type
	Flags Flags
	HLen  uint8
	PDO   uint8
	PLen  uint32

	// DataLen is the number of data bytes the PDU carries, without
	// padding and digest; 0 when it carries none.
	DataLen uint32
	// DataPending is set when Next returns a PDU whose header is complete
	// but whose data has not been received: call SetDest to choose where
	// the data goes (or not, to have it staged in the Reader), then call
	// Next again; it returns the same PDU with Data set and DataPending
	// clear once the data and its digest are in.
	DataPending bool
	// Data is the PDU's data once received: the slice given to SetDest, or
	// a slice of the Reader's buffer valid until the next call to Next.
	Data []byte

	// Header is a copy of the PDU's header (HLEN bytes, no digest), valid
	// until the next call to Next: the error data of a TermReq for errors
	// found above the Reader (CheckData, an unknown CCCID).
	Header []byte

	ICReq      ICReq           // TypeICReq
	ICResp     ICResp          // TypeICResp
	Command    spec.Command    // TypeCapsuleCmd
	Completion spec.Completion // TypeCapsuleResp
	Transfer   Transfer        // TypeH2CData, TypeC2HData, TypeR2T
	Term       Term            // TypeH2CTermReq, TypeC2HTermReq (error data in Data)
}

// Last reports the LAST_PDU flag of a data PDU.
func (p *PDU) Last() bool { return p.Flags&FlagLastPDU != 0 }

// Success reports the SUCCESS flag of a C2HData PDU: the command completed
// successfully and no CapsuleResp will follow (set only with LAST_PDU).
func (p *PDU) Success() bool { return p.Flags&FlagSuccess != 0 }

// ICReq holds the fields of an Initialize Connection Request.
type ICReq struct {
	PFV          uint16 // PDU format version, PFV10
	HPDA         uint8  // host PDU data alignment, 0..MaxPDA
	HeaderDigest bool   // host asks for header digests
	DataDigest   bool   // host asks for data digests
	MaxR2T       uint32 // outstanding R2Ts per command, 0's based
}

// ICResp holds the fields of an Initialize Connection Response.
type ICResp struct {
	PFV          uint16 // PDU format version, PFV10
	CPDA         uint8  // controller PDU data alignment, 0..MaxPDA
	HeaderDigest bool   // header digests enabled
	DataDigest   bool   // data digests enabled
	MaxH2CData   uint32 // most data bytes per H2CData PDU
}

// Transfer holds the fields of H2CData, C2HData (DATAO, DATAL) and R2T
// (R2TO, R2TL).
type Transfer struct {
	CCCID  uint16 // CID of the command capsule
	TTag   uint16 // transfer tag (R2T and H2CData)
	Offset uint32 // DATAO or R2TO
	Length uint32 // DATAL or R2TL
}

// Term holds the fields of a TermReq.
type Term struct {
	FES FES
	FEI uint32
}

type readState uint8

const (
	stHeader    readState = iota // waiting for a header
	stAwaitDest                  // header returned with DataPending; SetDest or Next
	stData                       // receiving data (and its digest)
	stBroken                     // a fatal error; Next returns it forever
)

// DefaultBufferSize is the Reader's buffer unless NewReader is told
// otherwise: room for 8 KiB of in-capsule data, Linux's default for the
// admin queue, and the largest header.
const DefaultBufferSize = 8192 + 2*MaxHeadLen

// Reader frames the PDUs of one connection from its byte stream. It does
// no I/O: the owner reads from the socket into ReadBuffer, calls Advance,
// then calls Next until it returns nil. Steady state allocates nothing.
//
// Data of a data PDU can go straight to its destination: after Next
// returns the header with DataPending, SetDest names the destination and
// ReadBuffer then returns (the rest of) it, so the socket read copies the
// data in place. Only bytes that arrived in the same read as the header
// pass through the Reader's buffer, at most its size per PDU.
//
// A Reader belongs to the goroutine that owns the connection (its poller);
// none of its methods may be called concurrently.
type Reader struct {
	role   Role
	params Params
	icDone bool

	buf  []byte
	r, w int // unconsumed bytes: buf[r:w]

	state   readState
	p       PDU
	hdr     [MaxHeadLen]byte // p.Header
	headLen int              // bytes before the data: PDO, or HLEN+HDGST without data
	hdgst   bool             // a header digest follows the header
	ddgst   bool             // a data digest follows the data
	staged  bool             // the data is delivered from buf, not dst
	dst     []byte
	got     int    // data bytes received into dst
	crc     uint32 // data digest so far
	direct  bool   // the last ReadBuffer returned dst
	err     error
}

// NewReader returns a Reader for the given role with a buffer of bufSize
// bytes (DefaultBufferSize when 0; at least 2*MaxHeadLen+TermReqMaxLen).
// The buffer bounds the data a PDU can have staged: set it above
// Params.MaxInCapsule on a controller.
func NewReader(role Role, bufSize int) *Reader {
	if bufSize == 0 {
		bufSize = DefaultBufferSize
	}
	bufSize = max(bufSize, 2*MaxHeadLen+TermReqMaxLen)
	return &Reader{role: role, buf: make([]byte, bufSize)}
}

// Reset makes r a Reader for a new connection of the same role, keeping
// its buffer: for a host that reconnects, without allocating. Everything
// buffered, the parameters and any error are dropped.
func (r *Reader) Reset() {
	buf := r.buf
	*r = Reader{role: r.role, buf: buf}
}

// SetParams sets what the following PDUs are checked against. Call it
// after the ICReq/ICResp exchange, before Next parses the next PDU (the
// bytes may already be buffered: the Reader parses lazily).
func (r *Reader) SetParams(p Params) { r.params = p }

// Params returns the parameters in force.
func (r *Reader) Params() Params { return r.params }

// Err returns the fatal error that stopped the Reader, or nil.
func (r *Reader) Err() error {
	if r.state == stBroken {
		return r.err
	}
	return nil
}

// Buffered returns the number of received bytes not yet parsed.
func (r *Reader) Buffered() int { return r.w - r.r }

// ReadBuffer returns where the next read from the connection should put
// its bytes: the free part of the Reader's buffer, or the unfilled part of
// the destination given to SetDest. After Next returned nil it is never
// empty. Read into it, then call Advance with the count.
func (r *Reader) ReadBuffer() []byte {
	if r.state == stData && !r.staged && r.got < int(r.p.DataLen) && r.r == r.w {
		r.direct = true
		return r.dst[r.got:r.p.DataLen]
	}
	r.direct = false
	if r.r == r.w {
		r.r, r.w = 0, 0
	} else if r.r > 0 && len(r.buf)-r.w < len(r.buf)/4 {
		r.compact()
	}
	return r.buf[r.w:]
}

func (r *Reader) compact() {
	n := copy(r.buf, r.buf[r.r:r.w])
	r.r, r.w = 0, n
}

// Advance records that n bytes were read into the slice ReadBuffer
// returned last. n outside [0, len(that slice)] is clamped.
func (r *Reader) Advance(n int) {
	if n <= 0 {
		return
	}
	if r.direct {
		n = min(n, int(r.p.DataLen)-r.got)
		if r.ddgst {
			r.crc = UpdateDigest(r.crc, r.dst[r.got:r.got+n])
		}
		r.got += n
		r.direct = false
		return
	}
	r.w = min(r.w+n, len(r.buf))
}

// Feed copies bytes of the stream from b into the Reader and returns how
// many it took; fewer than len(b) when the buffer is full (call Next until
// it returns nil, then Feed the rest). For tests and callers that read
// into their own buffer; ReadBuffer avoids the copy.
func (r *Reader) Feed(b []byte) int {
	n := copy(r.ReadBuffer(), b)
	r.Advance(n)
	return n
}

// SetDest names where the data of the PDU Next just returned with
// DataPending goes. len(dst) must be its DataLen. It is an error to call it
// at any other time (a program error, not a network one: the Reader is
// unchanged).
func (r *Reader) SetDest(dst []byte) error {
	if r.state != stAwaitDest {
		return errors.New("pdu reader: SetDest without a pending data pdu")
	}
	if len(dst) != int(r.p.DataLen) {
		return fmt.Errorf("pdu reader: SetDest with %d bytes for %d bytes of data", len(dst), r.p.DataLen)
	}
	r.dst, r.got, r.crc, r.staged = dst, 0, 0, false
	r.state = stData
	return nil
}

// Next parses what has been received and returns the next PDU, or nil
// when it needs more bytes. See PDU.DataPending for data PDUs.
//
// A non-nil error is an *Error. A data digest error (ErrDataDigest) comes
// with the PDU it concerns and the Reader goes on; any other error is
// fatal: the Reader returns it from then on, and the owner sends a TermReq
// with its FES (unless FESNone) and closes the connection.
func (r *Reader) Next() (*PDU, error) {
	switch r.state {
	case stBroken:
		return nil, r.err
	case stAwaitDest:
		// No destination: stage the data in the buffer.
		if need := int(r.p.DataLen) + r.ddgstLen(); need > len(r.buf) {
			return nil, r.fail(NewError(FESDataLimitExceeded, offPLen, r.p.Type, r.p.Header,
				"%d bytes of data, more than the %d-byte reader buffer and no destination given", r.p.DataLen, len(r.buf)))
		}
		r.staged, r.crc = true, 0
		r.state = stData
		return r.data()
	case stData:
		return r.data()
	}
	return r.header()
}

func (r *Reader) ddgstLen() int {
	if r.ddgst {
		return DigestLen
	}
	return 0
}

func (r *Reader) fail(e *Error) error {
	r.state, r.err = stBroken, e
	return e
}

// ensure makes room in buf for n bytes from r.r on.
func (r *Reader) ensure(n int) {
	if r.r+n > len(r.buf) {
		r.compact()
	}
}

// recvTypeOK reports whether the role receives PDUs of type t at all.
func (r *Reader) recvTypeOK(t Type) bool {
	if r.role == Host {
		switch t {
		case TypeICResp, TypeC2HTermReq, TypeCapsuleResp, TypeC2HData, TypeR2T:
			return true
		}
		return false
	}
	switch t {
	case TypeICReq, TypeH2CTermReq, TypeCapsuleCmd, TypeH2CData:
		return true
	}
	return false
}

func (r *Reader) header() (*PDU, error) {
	avail := r.w - r.r
	if avail < CommonHeaderLen {
		r.ensure(CommonHeaderLen)
		return nil, nil
	}
	b := r.buf[r.r:r.w]
	if err := r.checkCommon(b); err != nil {
		return nil, r.fail(err)
	}
	if avail < r.headLen {
		r.ensure(r.headLen)
		return nil, nil
	}
	p := &r.p
	h := b[:p.HLen]
	if r.hdgst {
		got := binary.LittleEndian.Uint32(b[p.HLen:])
		if want := Digest(h); got != want {
			e := NewError(FESHeaderDigestError, got, p.Type, b[:int(p.HLen)+DigestLen], "header digest %#08x, computed %#08x", got, want)
			return nil, r.fail(e)
		}
	}
	if err := r.decode(h); err != nil {
		return nil, r.fail(err)
	}
	p.Header = r.hdr[:copy(r.hdr[:], h)]
	r.r += r.headLen
	p.Data = nil
	if p.DataLen == 0 {
		return p, nil
	}
	if p.Type == TypeH2CTermReq || p.Type == TypeC2HTermReq {
		r.staged, r.crc, r.state = true, 0, stData
		return r.data()
	}
	p.DataPending = true
	r.state = stAwaitDest
	return p, nil
}

// checkCommon validates the common header in b (at least 8 bytes) and sets
// r.p's header fields, DataLen, r.headLen and r.ddgst. Fields are checked
// in the order they appear, so the error names the first bad one.
func (r *Reader) checkCommon(b []byte) *Error {
	t, flags, hlen, pdo := Type(b[0]), Flags(b[1]), int(b[2]), int(b[3])
	plen := int64(binary.LittleEndian.Uint32(b[4:]))
	ch := b[:CommonHeaderLen]
	bad := func(off uint32, format string, args ...any) *Error {
		return NewError(FESInvalidHeaderField, off, t, ch, format, args...)
	}

	// PDU-Type: a known type, going our way, at the right time.
	if !r.recvTypeOK(t) {
		return bad(offType, "a %v cannot receive PDU type %#02x", r.role, uint8(t))
	}
	isIC := t == TypeICReq || t == TypeICResp
	isTerm := t == TypeH2CTermReq || t == TypeC2HTermReq
	switch {
	case isIC && r.icDone:
		return NewError(FESPDUSequenceError, 0, t, ch, "second %v", t)
	case !isIC && !isTerm && !r.icDone:
		return NewError(FESPDUSequenceError, 0, t, ch, "%v before the connection is initialized", t)
	}
	if isTerm {
		// A TermReq is the peer's last word: read it leniently, only its
		// length must be sane (NVMe/TCP 1.0a, 3.6.2.4: a bad one ends the
		// connection without a reply).
		if plen < TermReqHeaderLen || plen > TermReqMaxLen || hlen != TermReqHeaderLen {
			return NewError(FESNone, 0, t, nil, "PLEN %d, HLEN %d", plen, hlen)
		}
		r.setCommon(t, flags, hlen, pdo, plen)
		r.p.DataLen = uint32(plen - TermReqHeaderLen)
		// Whatever its flags say, a TermReq has no digests.
		r.headLen, r.hdgst, r.ddgst = TermReqHeaderLen, false, false
		return nil
	}

	// FLAGS: only the flags of this type, digest flags as negotiated.
	var valid Flags
	switch t {
	case TypeCapsuleCmd:
		valid = FlagHDGST | FlagDDGST
	case TypeCapsuleResp, TypeR2T:
		valid = FlagHDGST
	case TypeH2CData:
		valid = FlagHDGST | FlagDDGST | FlagLastPDU
	case TypeC2HData:
		valid = FlagHDGST | FlagDDGST | FlagLastPDU | FlagSuccess
	}
	if flags&^valid != 0 {
		return bad(offFlags, "flags %#02x, allowed %#02x", uint8(flags), uint8(valid))
	}
	hd := 0
	if flags&FlagHDGST != 0 {
		hd = DigestLen
	}
	fullHead := int64(hlen + hd)
	var dataAndDigest int64 // bytes from PDO to the end
	if plen != fullHead {
		dataAndDigest = plen - int64(pdo)
	}
	var want Flags
	if r.params.HeaderDigest && !isIC {
		want |= FlagHDGST
	}
	if r.params.DataDigest && dataAndDigest != 0 && valid&FlagDDGST != 0 {
		want |= FlagDDGST
	}
	if got := flags & (FlagHDGST | FlagDDGST); got != want {
		return bad(offFlags, "digest flags %#02x, the connection wants %#02x", uint8(got), uint8(want))
	}
	if flags&(FlagSuccess|FlagLastPDU) == FlagSuccess {
		return bad(offFlags, "SUCCESS without LAST_PDU")
	}

	// HLEN: fixed per type.
	if want := hlenOf(t); hlen != want {
		return bad(offHLen, "HLEN %d, want %d", hlen, want)
	}

	// A PLEN shorter than the header is wrong whatever PDO says.
	if plen < fullHead {
		return bad(offPLen, "PLEN %d shorter than the header (%d)", plen, fullHead)
	}

	// PDO: 0 without data; with data past the header and its digest,
	// aligned, inside the PDU.
	hasData := valid&FlagDDGST != 0 // the types that may carry data
	if !hasData {
		if pdo != 0 {
			return bad(offPDO, "PDO %d in a %v", pdo, t)
		}
	} else if dataAndDigest != 0 || pdo != 0 {
		align := (int64(r.params.RxPDA) + 1) * 4
		if int64(pdo) < fullHead || int64(pdo) > plen || int64(pdo)%align != 0 {
			return bad(offPDO, "PDO %d with header %d, PLEN %d, alignment %d", pdo, fullHead, plen, align)
		}
	}

	// PLEN: header, digests and data add up; data within the limits.
	if isIC {
		if plen != ICReqLen {
			return bad(offPLen, "PLEN %d, want %d", plen, ICReqLen)
		}
		r.setCommon(t, flags, hlen, pdo, plen)
		r.p.DataLen, r.headLen, r.hdgst, r.ddgst = 0, ICReqLen, false, false
		return nil
	}
	var dataLen int64
	if hasData && dataAndDigest > 0 {
		dataLen = dataAndDigest
		if flags&FlagDDGST != 0 {
			dataLen -= DigestLen
			if dataLen <= 0 {
				return bad(offPLen, "PLEN %d leaves no data before the data digest", plen)
			}
		}
	} else if plen != fullHead {
		return bad(offPLen, "PLEN %d, want %d for a %v", plen, fullHead, t)
	}
	var limit uint32
	switch t {
	case TypeCapsuleCmd:
		limit = r.params.MaxInCapsule
	case TypeH2CData:
		limit = r.params.MaxH2CData
	case TypeC2HData:
		limit = r.params.MaxC2HData
	}
	if limit != 0 && dataLen > int64(limit) {
		return NewError(FESDataLimitExceeded, offPLen, t, ch, "%d bytes of data, at most %d", dataLen, limit)
	}
	r.setCommon(t, flags, hlen, pdo, plen)
	r.p.DataLen = uint32(dataLen)
	r.hdgst, r.ddgst = flags&FlagHDGST != 0, flags&FlagDDGST != 0
	r.headLen = int(fullHead)
	if dataLen > 0 {
		r.headLen = pdo
	}
	return nil
}

func (r *Reader) setCommon(t Type, flags Flags, hlen, pdo int, plen int64) {
	p := &r.p
	p.Type, p.Flags, p.HLen, p.PDO, p.PLen = t, flags, uint8(hlen), uint8(pdo), uint32(plen)
	p.DataPending = false
}

// decode fills the type specific fields of r.p from the header h (HLEN
// bytes) and checks them.
func (r *Reader) decode(h []byte) *Error {
	le := binary.LittleEndian
	p := &r.p
	switch p.Type {
	case TypeICReq:
		q := &p.ICReq
		q.PFV, q.HPDA = le.Uint16(h[offPFV:]), h[offPDA]
		q.HeaderDigest, q.DataDigest = h[11]&DigestHeader != 0, h[11]&DigestData != 0
		q.MaxR2T = le.Uint32(h[12:])
		if err := checkIC(p.Type, h, q.PFV, q.HPDA); err != nil {
			return err
		}
		r.icDone = true
	case TypeICResp:
		q := &p.ICResp
		q.PFV, q.CPDA = le.Uint16(h[offPFV:]), h[offPDA]
		q.HeaderDigest, q.DataDigest = h[11]&DigestHeader != 0, h[11]&DigestData != 0
		q.MaxH2CData = le.Uint32(h[offMaxH2C:])
		if err := checkIC(p.Type, h, q.PFV, q.CPDA); err != nil {
			return err
		}
		if q.MaxH2CData < MinMaxH2CData || q.MaxH2CData%4 != 0 {
			return NewError(FESInvalidHeaderField, offMaxH2C, p.Type, h, "MAXH2CDATA %d", q.MaxH2CData)
		}
		r.icDone = true
	case TypeH2CTermReq, TypeC2HTermReq:
		p.Term = Term{FES: FES(le.Uint16(h[8:])), FEI: le.Uint32(h[10:])}
	case TypeCapsuleCmd:
		getCommand(&p.Command, h[CommonHeaderLen:])
	case TypeCapsuleResp:
		getCompletion(&p.Completion, h[CommonHeaderLen:])
	case TypeH2CData, TypeC2HData, TypeR2T:
		x := &p.Transfer
		x.CCCID, x.TTag = le.Uint16(h[8:]), le.Uint16(h[10:])
		x.Offset, x.Length = le.Uint32(h[12:]), le.Uint32(h[16:])
		if p.Type == TypeR2T {
			if x.Length == 0 {
				return NewError(FESInvalidHeaderField, offDataL, p.Type, h, "R2TL 0")
			}
			break
		}
		if x.Length != p.DataLen {
			return NewError(FESInvalidHeaderField, offDataL, p.Type, h, "DATAL %d, the PDU carries %d", x.Length, p.DataLen)
		}
		if uint64(x.Offset)+uint64(x.Length) > 1<<32 {
			return NewError(FESDataOutOfRange, offDataO, p.Type, h, "DATAO %d + DATAL %d past 4 GiB", x.Offset, x.Length)
		}
	}
	return nil
}

func checkIC(t Type, h []byte, pfv uint16, pda uint8) *Error {
	if pfv != PFV10 {
		return NewError(FESUnsupportedParameter, offPFV, t, h, "PFV %d", pfv)
	}
	if pda > MaxPDA {
		return NewError(FESInvalidHeaderField, offPDA, t, h, "PDA %d, at most %d", pda, MaxPDA)
	}
	return nil
}

func (r *Reader) data() (*PDU, error) {
	p := &r.p
	n := int(p.DataLen)
	if r.staged {
		need := n + r.ddgstLen()
		if r.w-r.r < need {
			r.ensure(need)
			return nil, nil
		}
		p.Data = r.buf[r.r : r.r+n]
		r.r += n
		if r.ddgst {
			r.crc = Digest(p.Data)
		}
	} else {
		if r.got < n {
			k := copy(r.dst[r.got:n], r.buf[r.r:r.w])
			if r.ddgst {
				r.crc = UpdateDigest(r.crc, r.dst[r.got:r.got+k])
			}
			r.got += k
			r.r += k
			if r.got < n {
				return nil, nil
			}
		}
		if r.ddgst && r.w-r.r < DigestLen {
			r.ensure(DigestLen)
			return nil, nil
		}
		p.Data = r.dst
	}
	p.DataPending = false
	r.state = stHeader
	r.dst = nil
	if r.ddgst {
		got := binary.LittleEndian.Uint32(r.buf[r.r:])
		r.r += DigestLen
		if got != r.crc {
			return p, dataDigestError(p.Type, got, r.crc)
		}
	}
	return p, nil
}

// getCommand decodes a 64-byte submission queue entry.
func getCommand(c *spec.Command, b []byte) {
	le := binary.LittleEndian
	_ = b[63]
	c.Opcode, c.Flags, c.CID = b[0], b[1], le.Uint16(b[2:])
	c.NSID, c.CDW2, c.CDW3 = le.Uint32(b[4:]), le.Uint32(b[8:]), le.Uint32(b[12:])
	c.MPTR, c.PRP1, c.PRP2 = le.Uint64(b[16:]), le.Uint64(b[24:]), le.Uint64(b[32:])
	c.CDW10, c.CDW11, c.CDW12 = le.Uint32(b[40:]), le.Uint32(b[44:]), le.Uint32(b[48:])
	c.CDW13, c.CDW14, c.CDW15 = le.Uint32(b[52:]), le.Uint32(b[56:]), le.Uint32(b[60:])
}

// getCompletion decodes a 16-byte completion queue entry.
func getCompletion(c *spec.Completion, b []byte) {
	le := binary.LittleEndian
	_ = b[15]
	c.DW0, c.DW1 = le.Uint32(b[0:]), le.Uint32(b[4:])
	c.SQHead, c.SQID = le.Uint16(b[8:]), le.Uint16(b[10:])
	c.CID, c.Status = le.Uint16(b[12:]), le.Uint16(b[14:])
}
