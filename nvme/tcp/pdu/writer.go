package pdu

import (
	"encoding/binary"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Writer builds the PDUs one side of a connection sends, with the
// connection's negotiated digests and the peer's data alignment. It does no
// I/O and holds no buffer: each Append method appends the head of one PDU
// (common header, PDU specific header, header digest, padding up to PDO) to
// b and returns the extended slice, and never allocates when b has
// MaxHeadLen bytes of spare capacity.
//
// A PDU with data is sent as three pieces, for one writev (net.Buffers):
//
//	head := w.AppendC2HData(hbuf[:0], cid, off, len(data), true, false)
//	tail := w.AppendDataDigest(dbuf[:0], data)   // empty without data digests
//	bufs := net.Buffers{head, data, tail}
//
// The data itself is never copied; small PDUs without data can be appended
// one after the other into one buffer and sent with one write.
//
// The zero Writer (no digests, PDA 0) is what both sides use for ICReq and
// ICResp. A Writer is a value; the goroutine that owns the connection uses
// it.
type Writer struct {
	// HeaderDigest and DataDigest: the digests enabled on the connection.
	HeaderDigest, DataDigest bool
	// TxPDA is the PDU data alignment the peer asked for: CPDA from the
	// ICResp (host), HPDA from the ICReq (controller). Data starts at a
	// multiple of (TxPDA+1)*4 bytes from the start of the PDU.
	TxPDA uint8
}

var zeros [MaxHeadLen]byte

// noDigests writes the PDUs that never carry digests or padding: ICReq,
// ICResp, TermReq.
var noDigests Writer

// head appends the common header and hlen-8 zero bytes for the PDU
// specific header, and returns b, the offset of the PDU in b and PDO.
func (w *Writer) head(b []byte, t Type, flags Flags, hlen, dataLen int) ([]byte, int, int) {
	start := len(b)
	isIC := t == TypeICReq || t == TypeICResp
	isTerm := t == TypeH2CTermReq || t == TypeC2HTermReq
	full := hlen
	if w.HeaderDigest && !isIC && !isTerm {
		flags |= FlagHDGST
		full += DigestLen
	}
	pdo, plen := 0, full
	if dataLen > 0 {
		if isTerm {
			plen = hlen + dataLen
		} else {
			align := (int(min(w.TxPDA, MaxPDA)) + 1) * 4
			pdo = (full + align - 1) / align * align
			plen = pdo + dataLen
			if w.DataDigest {
				flags |= FlagDDGST
				plen += DigestLen
			}
		}
	}
	b = append(b, byte(t), byte(flags), byte(hlen), byte(pdo))
	b = binary.LittleEndian.AppendUint32(b, uint32(plen))
	b = append(b, zeros[:hlen-CommonHeaderLen]...)
	return b, start, pdo
}

// finish appends the header digest of the header at b[start:] and the
// padding up to pdo.
func (w *Writer) finish(b []byte, start, pdo int) []byte {
	if Flags(b[start+1])&FlagHDGST != 0 {
		crc := Digest(b[start : start+int(b[start+2])])
		b = AppendDigest(b, crc)
	}
	if pad := pdo - (len(b) - start); pad > 0 {
		b = append(b, zeros[:pad]...)
	}
	return b
}

// AppendICReq appends an ICReq (no digests, whatever w says).
func (w *Writer) AppendICReq(b []byte, q ICReq) []byte {
	b, s, _ := noDigests.head(b, TypeICReq, 0, ICReqLen, 0)
	h := b[s:]
	binary.LittleEndian.PutUint16(h[offPFV:], q.PFV)
	h[offPDA] = q.HPDA
	h[11] = dgst(q.HeaderDigest, q.DataDigest)
	binary.LittleEndian.PutUint32(h[12:], q.MaxR2T)
	return b
}

// AppendICResp appends an ICResp (no digests, whatever w says).
func (w *Writer) AppendICResp(b []byte, q ICResp) []byte {
	b, s, _ := noDigests.head(b, TypeICResp, 0, ICReqLen, 0)
	h := b[s:]
	binary.LittleEndian.PutUint16(h[offPFV:], q.PFV)
	h[offPDA] = q.CPDA
	h[11] = dgst(q.HeaderDigest, q.DataDigest)
	binary.LittleEndian.PutUint32(h[offMaxH2C:], q.MaxH2CData)
	return b
}

func dgst(hd, dd bool) uint8 {
	var v uint8
	if hd {
		v |= DigestHeader
	}
	if dd {
		v |= DigestData
	}
	return v
}

// AppendCapsuleCmd appends the head of a CapsuleCmd carrying cmd and
// dataLen bytes of in-capsule data (0 for none). The data and
// AppendDataDigest of it follow.
func (w *Writer) AppendCapsuleCmd(b []byte, cmd *spec.Command, dataLen int) []byte {
	b, s, pdo := w.head(b, TypeCapsuleCmd, 0, CapsuleCmdLen, dataLen)
	putCommand(b[s+CommonHeaderLen:], cmd)
	return w.finish(b, s, pdo)
}

// AppendCapsuleResp appends a CapsuleResp carrying cqe.
func (w *Writer) AppendCapsuleResp(b []byte, cqe *spec.Completion) []byte {
	b, s, pdo := w.head(b, TypeCapsuleResp, 0, CapsuleRespLen, 0)
	putCompletion(b[s+CommonHeaderLen:], cqe)
	return w.finish(b, s, pdo)
}

// AppendH2CData appends the head of an H2CData PDU: dataLen bytes (at most
// MAXH2CDATA, more than 0) at offset of command cccid, answering the R2T
// with transfer tag ttag; last on the PDU that ends the R2T's range.
func (w *Writer) AppendH2CData(b []byte, cccid, ttag uint16, offset uint32, dataLen int, last bool) []byte {
	var f Flags
	if last {
		f |= FlagLastPDU
	}
	return w.appendTransfer(b, TypeH2CData, f, Transfer{CCCID: cccid, TTag: ttag, Offset: offset, Length: uint32(dataLen)}, dataLen)
}

// AppendC2HData appends the head of a C2HData PDU: dataLen bytes (more than
// 0) at offset of command cccid. last marks the command's last data PDU;
// success (with last) tells the host the command succeeded and no
// CapsuleResp follows.
func (w *Writer) AppendC2HData(b []byte, cccid uint16, offset uint32, dataLen int, last, success bool) []byte {
	var f Flags
	if last {
		f |= FlagLastPDU
		if success {
			f |= FlagSuccess
		}
	}
	return w.appendTransfer(b, TypeC2HData, f, Transfer{CCCID: cccid, Offset: offset, Length: uint32(dataLen)}, dataLen)
}

// AppendR2T appends an R2T asking for length bytes at offset of command
// cccid, to be sent in H2CData PDUs tagged ttag.
func (w *Writer) AppendR2T(b []byte, cccid, ttag uint16, offset, length uint32) []byte {
	return w.appendTransfer(b, TypeR2T, 0, Transfer{CCCID: cccid, TTag: ttag, Offset: offset, Length: length}, 0)
}

func (w *Writer) appendTransfer(b []byte, t Type, f Flags, x Transfer, dataLen int) []byte {
	b, s, pdo := w.head(b, t, f, DataHeaderLen, dataLen)
	h := b[s:]
	le := binary.LittleEndian
	le.PutUint16(h[8:], x.CCCID)
	le.PutUint16(h[10:], x.TTag)
	le.PutUint32(h[12:], x.Offset)
	le.PutUint32(h[16:], x.Length)
	return w.finish(b, s, pdo)
}

// AppendDataDigest appends the data digest of data when data digests are
// on and data is not empty; else it returns b unchanged. For data sent in
// pieces, compute UpdateDigest over them and use AppendDigest.
func (w *Writer) AppendDataDigest(b []byte, data []byte) []byte {
	if !w.DataDigest || len(data) == 0 {
		return b
	}
	return AppendDigest(b, Digest(data))
}

// AppendTermReq appends a whole H2CTermReq (a host) or C2HTermReq (a
// controller) with its error data, at most TermReqMaxErrorData bytes of
// errData: the header of the PDU in error. TermReqs carry no digests and
// PDO 0.
func AppendTermReq(b []byte, from Role, fes FES, fei uint32, errData []byte) []byte {
	t := TypeH2CTermReq
	if from == Controller {
		t = TypeC2HTermReq
	}
	errData = errData[:min(len(errData), TermReqMaxErrorData)]
	b, s, _ := noDigests.head(b, t, 0, TermReqHeaderLen, len(errData))
	binary.LittleEndian.PutUint16(b[s+8:], uint16(fes))
	binary.LittleEndian.PutUint32(b[s+10:], fei)
	return append(b, errData...)
}

// AppendTermReqFor appends the TermReq that reports e (its FES, FEI and
// header); nothing when e.FES is FESNone.
func AppendTermReqFor(b []byte, from Role, e *Error) []byte {
	if e == nil || e.FES == FESNone {
		return b
	}
	return AppendTermReq(b, from, e.FES, e.FEI, e.Header)
}

// putCommand encodes a 64-byte submission queue entry.
func putCommand(b []byte, c *spec.Command) {
	le := binary.LittleEndian
	_ = b[63]
	b[0], b[1] = c.Opcode, c.Flags
	le.PutUint16(b[2:], c.CID)
	le.PutUint32(b[4:], c.NSID)
	le.PutUint32(b[8:], c.CDW2)
	le.PutUint32(b[12:], c.CDW3)
	le.PutUint64(b[16:], c.MPTR)
	le.PutUint64(b[24:], c.PRP1)
	le.PutUint64(b[32:], c.PRP2)
	le.PutUint32(b[40:], c.CDW10)
	le.PutUint32(b[44:], c.CDW11)
	le.PutUint32(b[48:], c.CDW12)
	le.PutUint32(b[52:], c.CDW13)
	le.PutUint32(b[56:], c.CDW14)
	le.PutUint32(b[60:], c.CDW15)
}

// putCompletion encodes a 16-byte completion queue entry.
func putCompletion(b []byte, c *spec.Completion) {
	le := binary.LittleEndian
	_ = b[15]
	le.PutUint32(b[0:], c.DW0)
	le.PutUint32(b[4:], c.DW1)
	le.PutUint16(b[8:], c.SQHead)
	le.PutUint16(b[10:], c.SQID)
	le.PutUint16(b[12:], c.CID)
	le.PutUint16(b[14:], c.Status)
}
