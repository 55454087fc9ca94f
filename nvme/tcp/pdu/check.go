package pdu

import "fmt"

// The Reader checks each PDU on its own. What depends on the commands in
// flight is checked by the transport with these functions, which return
// the same *Error as the Reader, ready for a TermReq.

// CheckData checks the data PDU p (C2HData on a host, H2CData on a
// controller) against its command: data arrives in order, so DATAO must be
// next, the first byte not yet received, and the data must end at or
// before end: the command's transfer length for C2HData, R2TO+R2TL of the
// R2T being answered for H2CData. For H2CData, ttag is the R2T's transfer
// tag; it is not checked for C2HData. header is the PDU's header for the
// TermReq's error data (nil is allowed).
func CheckData(p *PDU, ttag uint16, next, end uint32, header []byte) error {
	x := p.Transfer
	if p.Type == TypeH2CData && x.TTag != ttag {
		return NewError(FESInvalidHeaderField, 10, p.Type, header, "TTAG %#x, the R2T gave %#x", x.TTag, ttag)
	}
	if x.Offset != next {
		return NewError(FESInvalidHeaderField, offDataO, p.Type, header, "DATAO %d, expected %d", x.Offset, next)
	}
	if uint64(x.Offset)+uint64(x.Length) > uint64(end) {
		return NewError(FESDataOutOfRange, offDataL, p.Type, header, "DATAO %d + DATAL %d past %d", x.Offset, x.Length, end)
	}
	return nil
}

// CheckR2T checks an R2T a host received for a command of total bytes:
// R2TO must be next, the first byte no earlier R2T asked for, the range
// must lie inside the command's data, and with this one the command may
// not have more than maxR2T+1 R2Ts outstanding (outstanding counts the
// earlier ones not yet answered in full; maxR2T is ICReq MAXR2T, 0's
// based).
func CheckR2T(p *PDU, next, total, outstanding, maxR2T uint32, header []byte) error {
	x := p.Transfer
	if x.Offset != next {
		return NewError(FESInvalidHeaderField, offDataO, p.Type, header, "R2TO %d, expected %d", x.Offset, next)
	}
	if uint64(x.Offset)+uint64(x.Length) > uint64(total) {
		return NewError(FESDataOutOfRange, offDataL, p.Type, header, "R2TO %d + R2TL %d past %d", x.Offset, x.Length, total)
	}
	if uint64(outstanding) >= uint64(maxR2T)+1 {
		return NewError(FESR2TLimitExceeded, 0, p.Type, header, "%d R2Ts outstanding, MAXR2T %d (0's based)", outstanding+1, maxR2T)
	}
	return nil
}

// ControllerLimits are what a controller announces and enforces on a
// connection.
type ControllerLimits struct {
	CPDA         uint8  // alignment for H2C data, usually 0
	MaxH2CData   uint32 // MAXH2CDATA; at least MinMaxH2CData, a multiple of 4
	MaxInCapsule uint32 // in-capsule data accepted
}

// AcceptICReq is the controller's side of connection initialization: given
// the host's ICReq (already checked by the Reader), it returns the ICResp
// to send, the Params for the controller's Reader and its Writer. The
// controller enables every digest the host asked for, as Linux's nvmet
// does.
func AcceptICReq(q ICReq, l ControllerLimits) (ICResp, Params, Writer) {
	resp := ICResp{PFV: PFV10, CPDA: min(l.CPDA, MaxPDA), HeaderDigest: q.HeaderDigest, DataDigest: q.DataDigest,
		MaxH2CData: max(l.MaxH2CData&^3, MinMaxH2CData)}
	p := Params{HeaderDigest: q.HeaderDigest, DataDigest: q.DataDigest, RxPDA: resp.CPDA,
		MaxH2CData: resp.MaxH2CData, MaxInCapsule: l.MaxInCapsule}
	w := Writer{HeaderDigest: q.HeaderDigest, DataDigest: q.DataDigest, TxPDA: q.HPDA}
	return resp, p, w
}

// AcceptICResp is the host's side: it checks the controller's ICResp
// against the host's ICReq and returns the Params for the host's Reader
// (maxC2HData: the host's largest transfer, 0 for no limit) and its
// Writer. A controller may enable only the digests the host asked for, and
// like Linux's nvme-tcp the host refuses one it asked for and did not get.
func AcceptICResp(q ICReq, r ICResp, maxC2HData uint32) (Params, Writer, error) {
	if r.HeaderDigest != q.HeaderDigest || r.DataDigest != q.DataDigest {
		return Params{}, Writer{}, NewError(FESInvalidHeaderField, 11, TypeICResp, nil,
			"%s, asked for %s", digestString(r.HeaderDigest, r.DataDigest), digestString(q.HeaderDigest, q.DataDigest))
	}
	p := Params{HeaderDigest: r.HeaderDigest, DataDigest: r.DataDigest, RxPDA: q.HPDA, MaxC2HData: maxC2HData}
	w := Writer{HeaderDigest: r.HeaderDigest, DataDigest: r.DataDigest, TxPDA: r.CPDA}
	return p, w, nil
}

func digestString(h, d bool) string {
	return fmt.Sprintf("header digest %t, data digest %t", h, d)
}
