package pdu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Every malformed PDU ends in the error the spec names, with the FEI that
// points at the field, and the reader stays failed.
func TestMalformed(t *testing.T) {
	cmd := testCommand(1)
	cqe := spec.Completion{CID: 1}
	plain := Writer{}
	hdgst := Writer{HeaderDigest: true}
	le := binary.LittleEndian
	// refresh recomputes the header digest after a mutation.
	refresh := func(b []byte) {
		if Flags(b[1])&FlagHDGST != 0 && int(b[2])+4 <= len(b) {
			le.PutUint32(b[b[2]:], Digest(b[:b[2]]))
		}
	}
	withData := func(head []byte, n int) []byte { return append(head, make([]byte, n)...) }

	cases := []struct {
		name   string
		role   Role
		params Params
		noIC   bool // the reader has not seen the IC exchange
		pdu    []byte
		mutate func([]byte)
		want   error
		fei    uint32
	}{
		{"unknown type", Host, Params{}, false, plain.AppendCapsuleResp(nil, &cqe), func(b []byte) { b[0] = 8 }, ErrInvalidHeaderField, 0},
		{"type 0xff", Controller, Params{}, false, plain.AppendCapsuleCmd(nil, &cmd, 0), func(b []byte) { b[0] = 0xff }, ErrInvalidHeaderField, 0},
		{"command to a host", Host, Params{}, false, plain.AppendCapsuleCmd(nil, &cmd, 0), nil, ErrInvalidHeaderField, 0},
		{"response to a controller", Controller, Params{}, false, plain.AppendCapsuleResp(nil, &cqe), nil, ErrInvalidHeaderField, 0},
		{"r2t to a controller", Controller, Params{}, false, plain.AppendR2T(nil, 1, 1, 0, 10), nil, ErrInvalidHeaderField, 0},
		{"capsule before icresp", Host, Params{}, true, plain.AppendCapsuleResp(nil, &cqe), nil, ErrPDUSequence, 0},
		{"second icresp", Host, Params{}, false, plain.AppendICResp(nil, ICResp{MaxH2CData: 8192}), nil, ErrPDUSequence, 0},
		{"second icreq", Controller, Params{}, false, plain.AppendICReq(nil, ICReq{}), nil, ErrPDUSequence, 0},
		{"last flag on a response", Host, Params{}, false, plain.AppendCapsuleResp(nil, &cqe), func(b []byte) { b[1] = byte(FlagLastPDU) }, ErrInvalidHeaderField, 1},
		{"success on h2c data", Controller, Params{}, false, withData(plain.AppendH2CData(nil, 1, 1, 0, 4, true), 4), func(b []byte) { b[1] |= byte(FlagSuccess) }, ErrInvalidHeaderField, 1},
		{"success without last", Host, Params{}, false, withData(plain.AppendC2HData(nil, 1, 0, 4, false, false), 4), func(b []byte) { b[1] = byte(FlagSuccess) }, ErrInvalidHeaderField, 1},
		{"header digest not negotiated", Host, Params{}, false, hdgst.AppendCapsuleResp(nil, &cqe), nil, ErrInvalidHeaderField, 1},
		{"header digest missing", Host, Params{HeaderDigest: true}, false, plain.AppendCapsuleResp(nil, &cqe), nil, ErrInvalidHeaderField, 1},
		{"data digest missing", Host, Params{DataDigest: true}, false, withData(plain.AppendC2HData(nil, 1, 0, 4, true, false), 4), nil, ErrInvalidHeaderField, 1},
		{"digest flag on icreq", Controller, Params{}, true, plain.AppendICReq(nil, ICReq{}), func(b []byte) { b[1] = 1 }, ErrInvalidHeaderField, 1},
		{"hlen of a response", Host, Params{}, false, plain.AppendCapsuleResp(nil, &cqe), func(b []byte) { b[2] = 25 }, ErrInvalidHeaderField, 2},
		{"hlen of a command", Controller, Params{}, false, plain.AppendCapsuleCmd(nil, &cmd, 0), func(b []byte) { b[2] = 64 }, ErrInvalidHeaderField, 2},
		{"pdo on a response", Host, Params{}, false, plain.AppendCapsuleResp(nil, &cqe), func(b []byte) { b[3] = 24 }, ErrInvalidHeaderField, 3},
		{"pdo inside the header", Host, Params{}, false, withData(plain.AppendC2HData(nil, 1, 0, 8, true, false), 8), func(b []byte) { b[3] = 20 }, ErrInvalidHeaderField, 3},
		{"pdo inside the header digest", Host, Params{HeaderDigest: true}, false, withData(hdgst.AppendC2HData(nil, 1, 0, 8, true, false), 8), func(b []byte) { b[3] = 24 }, ErrInvalidHeaderField, 3},
		{"pdo not aligned", Host, Params{RxPDA: 1}, false, withData(plain.AppendC2HData(nil, 1, 0, 8, true, false), 8), func(b []byte) { b[3] = 28 }, ErrInvalidHeaderField, 3},
		{"pdo past plen", Host, Params{}, false, withData(plain.AppendC2HData(nil, 1, 0, 8, true, false), 8), func(b []byte) { b[3] = 40 }, ErrInvalidHeaderField, 3},
		{"pdo 0 with data", Controller, Params{}, false, withData(plain.AppendCapsuleCmd(nil, &cmd, 16), 16), func(b []byte) { b[3] = 0 }, ErrInvalidHeaderField, 3},
		{"plen of a response", Host, Params{}, false, plain.AppendCapsuleResp(nil, &cqe), func(b []byte) { le.PutUint32(b[4:], 28) }, ErrInvalidHeaderField, 4},
		{"plen shorter than hlen", Controller, Params{}, false, plain.AppendCapsuleCmd(nil, &cmd, 0), func(b []byte) { le.PutUint32(b[4:], 10) }, ErrInvalidHeaderField, 4},
		{"plen of an icreq", Controller, Params{}, true, plain.AppendICReq(nil, ICReq{}), func(b []byte) { le.PutUint32(b[4:], 256) }, ErrInvalidHeaderField, 4},
		{"data digest without data", Host, Params{DataDigest: true}, false, withData(Writer{DataDigest: true}.appendC2H(4), 4), func(b []byte) { le.PutUint32(b[4:], 28) }, ErrInvalidHeaderField, 4},
		{"datal is not the data", Host, Params{}, false, withData(plain.AppendC2HData(nil, 1, 0, 8, true, false), 8), func(b []byte) { le.PutUint32(b[16:], 9) }, ErrInvalidHeaderField, 16},
		{"data past 4 GiB", Host, Params{}, false, withData(plain.AppendC2HData(nil, 1, 0xfffffffc, 8, true, false), 8), nil, ErrDataOutOfRange, 12},
		{"r2tl 0", Host, Params{}, false, plain.AppendR2T(nil, 1, 1, 0, 0), nil, ErrInvalidHeaderField, 16},
		{"pfv 1", Controller, Params{}, true, plain.AppendICReq(nil, ICReq{PFV: 1}), nil, ErrUnsupportedParameter, 8},
		{"hpda 32", Controller, Params{}, true, plain.AppendICReq(nil, ICReq{HPDA: 32}), nil, ErrInvalidHeaderField, 10},
		{"cpda 200", Host, Params{}, true, plain.AppendICResp(nil, ICResp{CPDA: 200, MaxH2CData: 8192}), nil, ErrInvalidHeaderField, 10},
		{"maxh2cdata small", Host, Params{}, true, plain.AppendICResp(nil, ICResp{MaxH2CData: 4092}), nil, ErrInvalidHeaderField, 12},
		{"maxh2cdata odd", Host, Params{}, true, plain.AppendICResp(nil, ICResp{MaxH2CData: 8190}), nil, ErrInvalidHeaderField, 12},
		{"h2c data over maxh2cdata", Controller, Params{MaxH2CData: 4096}, false, withData(plain.AppendH2CData(nil, 1, 1, 0, 4100, true), 4100), nil, ErrLimitExceeded, 4},
		{"in-capsule data over the limit", Controller, Params{MaxInCapsule: 4096}, false, withData(plain.AppendCapsuleCmd(nil, &cmd, 4097), 4097), nil, ErrLimitExceeded, 4},
		{"c2h data over the limit", Host, Params{MaxC2HData: 512}, false, withData(plain.AppendC2HData(nil, 1, 0, 513, true, false), 513), nil, ErrLimitExceeded, 4},
		{"term req too long", Host, Params{}, false, AppendTermReq(nil, Controller, 1, 0, make([]byte, 128)), func(b []byte) { le.PutUint32(b[4:], 153) }, ErrBadTermReq, 0},
		{"term req too short", Controller, Params{}, true, AppendTermReq(nil, Host, 1, 0, nil), func(b []byte) { le.PutUint32(b[4:], 23) }, ErrBadTermReq, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r *Reader
			if c.noIC {
				r = NewReader(c.role, 0)
				r.SetParams(c.params)
			} else {
				r = established(t, c.role, c.params)
			}
			b := append([]byte(nil), c.pdu...)
			if c.mutate != nil {
				c.mutate(b)
				refresh(b)
			}
			_, err := readAll(t, r, b, len(b), nil)
			var pe *Error
			if !errors.Is(err, c.want) || !errors.As(err, &pe) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			if pe.FEI != c.fei {
				t.Errorf("FEI %d, want %d (%v)", pe.FEI, c.fei, err)
			}
			if !pe.Fatal() {
				t.Error("not fatal")
			}
			if c.want != ErrBadTermReq && (len(pe.Header) == 0 || pe.Header[0] != b[0]) {
				t.Errorf("error data %x", pe.Header)
			}
			// Sticky: the reader says the same thing forever.
			if p, err2 := r.Next(); p != nil || err2 != err || r.Err() != err {
				t.Errorf("after the error: %v %v", p, err2)
			}
		})
	}
}

// appendC2H is a C2HData with data digests: a helper for a case above.
func (w Writer) appendC2H(n int) []byte { return w.AppendC2HData(nil, 1, 0, n, true, false) }

func TestHeaderDigestMismatch(t *testing.T) {
	w := Writer{HeaderDigest: true}
	cqe := spec.Completion{CID: 5}
	b := w.AppendCapsuleResp(nil, &cqe)
	b[12] ^= 0x40 // the CQE changed in flight
	r := established(t, Host, Params{HeaderDigest: true})
	_, err := readAll(t, r, b, 3, nil)
	var pe *Error
	if !errors.Is(err, ErrHeaderDigest) || !errors.As(err, &pe) || pe.FES != FESHeaderDigestError {
		t.Fatalf("%v", err)
	}
	if pe.FEI != binary.LittleEndian.Uint32(b[24:]) || len(pe.Header) != 28 {
		t.Errorf("FEI %#x, header %d bytes", pe.FEI, len(pe.Header))
	}
}

func TestStagingLimit(t *testing.T) {
	var w Writer
	b := w.AppendC2HData(nil, 1, 0, 100000, true, false)
	b = append(b, make([]byte, 100000)...)
	r := established(t, Host, Params{})
	_, err := readAll(t, r, b, 4096, nil) // no destination, too big to stage
	var pe *Error
	if !errors.Is(err, ErrLimitExceeded) || !errors.As(err, &pe) || len(pe.Header) != DataHeaderLen {
		t.Fatalf("%v", err)
	}
}

// A TermReq never carries digests; a peer that sets the digest flags on one
// anyway must not make the reader look for a header digest (found by
// FuzzReader: it read past the buffered header and panicked).
func TestTermReqWithDigestFlags(t *testing.T) {
	for _, flags := range []Flags{FlagHDGST, FlagHDGST | FlagDDGST, 0xff} {
		for _, errData := range [][]byte{nil, []byte("0000"), make([]byte, 128)} {
			b := AppendTermReq(nil, Controller, FESPDUSequenceError, 7, errData)
			b[1] = byte(flags)
			for _, chunk := range []int{1, len(b)} {
				out, err := readAll(t, NewReader(Host, 0), b, chunk, nil)
				if err != nil || len(out) != 1 || out[0].Term.FES != FESPDUSequenceError || out[0].Term.FEI != 7 || !bytes.Equal(out[0].data, errData) {
					t.Errorf("flags %#x, %d bytes of error data, chunk %d: %v %+v", flags, len(errData), chunk, err, out)
				}
			}
		}
	}
}
