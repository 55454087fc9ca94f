package pdu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

func wire(t *testing.T, v any) []byte {
	t.Helper()
	b, err := binary.Append(nil, binary.LittleEndian, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The Writer's bytes are the declared wire structs, encoded field by field.
func TestWriterMatchesWireStructs(t *testing.T) {
	var w Writer
	cmd := testCommand(0x1234)
	cqe := spec.Completion{DW0: 1, DW1: 2, SQHead: 3, SQID: 4, CID: 0x1234, Status: 0x8003}
	cases := []struct {
		name string
		got  []byte
		want any
	}{
		{"icreq", w.AppendICReq(nil, ICReq{HPDA: 3, HeaderDigest: true, MaxR2T: 7}),
			ICReqPDU{CH: CommonHeader{Type: TypeICReq, HLen: 128, PLen: 128}, HPDA: 3, DGST: DigestHeader, MaxR2T: 7}},
		{"icresp", w.AppendICResp(nil, ICResp{CPDA: 1, DataDigest: true, MaxH2CData: 131072}),
			ICRespPDU{CH: CommonHeader{Type: TypeICResp, HLen: 128, PLen: 128}, CPDA: 1, DGST: DigestData, MaxH2CData: 131072}},
		{"capsule cmd", w.AppendCapsuleCmd(nil, &cmd, 0),
			CapsuleCmdPDU{CH: CommonHeader{Type: TypeCapsuleCmd, HLen: 72, PLen: 72}, SQE: cmd}},
		{"capsule resp", w.AppendCapsuleResp(nil, &cqe),
			CapsuleRespPDU{CH: CommonHeader{Type: TypeCapsuleResp, HLen: 24, PLen: 24}, CQE: cqe}},
		{"c2h data", w.AppendC2HData(nil, 9, 4096, 512, true, true),
			DataPDU{CH: CommonHeader{Type: TypeC2HData, Flags: FlagLastPDU | FlagSuccess, HLen: 24, PDO: 24, PLen: 24 + 512}, CCCID: 9, DataO: 4096, DataL: 512}},
		{"h2c data", w.AppendH2CData(nil, 9, 0x77, 8192, 100, false),
			DataPDU{CH: CommonHeader{Type: TypeH2CData, HLen: 24, PDO: 24, PLen: 124}, CCCID: 9, TTag: 0x77, DataO: 8192, DataL: 100}},
		{"r2t", w.AppendR2T(nil, 9, 0x77, 8192, 65536),
			R2TPDU{CH: CommonHeader{Type: TypeR2T, HLen: 24, PLen: 24}, CCCID: 9, TTag: 0x77, R2TO: 8192, R2TL: 65536}},
		{"c2h term", AppendTermReq(nil, Controller, FESHeaderDigestError, 0xaabbccdd, nil),
			TermReqPDU{CH: CommonHeader{Type: TypeC2HTermReq, HLen: 24, PLen: 24}, FES: 3, FEIL: 0xccdd, FEIU: 0xaabb}},
	}
	for _, c := range cases {
		if want := wire(t, c.want); !bytes.Equal(c.got, want) {
			t.Errorf("%s:\n got %x\nwant %x", c.name, c.got, want)
		}
	}
}

// The NVMe/TCP digest is standard CRC32C: the check value of "123456789"
// is 0xe3069283 (RFC 3720, B.4), stored little endian.
func TestDigest(t *testing.T) {
	if d := Digest([]byte("123456789")); d != 0xe3069283 {
		t.Fatalf("Digest = %#x", d)
	}
	if d := Digest(nil); d != 0 {
		t.Errorf("empty digest %#x", d)
	}
	a, b := pattern(1000, 1), pattern(3000, 2)
	if UpdateDigest(UpdateDigest(0, a), b) != Digest(append(bytes.Clone(a), b...)) {
		t.Error("UpdateDigest does not continue")
	}
	if got := AppendDigest(nil, 0xe3069283); !bytes.Equal(got, []byte{0x83, 0x92, 0x06, 0xe3}) {
		t.Errorf("AppendDigest %x", got)
	}
	if crc32.Checksum([]byte("x"), castagnoli) != Digest([]byte("x")) {
		t.Error("table")
	}
}

// A header digest covers HLEN bytes and sits right after them; the data
// digest follows the data; PDO rounds up to (PDA+1)*4.
func TestWriterDigestsAndPadding(t *testing.T) {
	cmd := testCommand(1)
	data := pattern(100, 3)
	for _, pda := range []uint8{0, 1, 3, 7, 15, 31} {
		w := Writer{HeaderDigest: true, DataDigest: true, TxPDA: pda}
		head := w.AppendCapsuleCmd(nil, &cmd, len(data))
		align := (int(pda) + 1) * 4
		wantPDO := (72 + 4 + align - 1) / align * align
		if int(head[3]) != wantPDO || len(head) != wantPDO {
			t.Fatalf("pda %d: PDO %d, head %d bytes, want %d", pda, head[3], len(head), wantPDO)
		}
		if Flags(head[1]) != FlagHDGST|FlagDDGST {
			t.Errorf("flags %#x", head[1])
		}
		if binary.LittleEndian.Uint32(head[72:]) != Digest(head[:72]) {
			t.Error("header digest")
		}
		if plen := binary.LittleEndian.Uint32(head[4:]); int(plen) != wantPDO+100+4 {
			t.Errorf("PLEN %d", plen)
		}
		for _, b := range head[76:] {
			if b != 0 {
				t.Fatal("padding not zero")
			}
		}
		tail := w.AppendDataDigest(nil, data)
		if binary.LittleEndian.Uint32(tail) != Digest(data) {
			t.Error("data digest")
		}
	}
	// No data: PDO 0, no data digest flag, PLEN = HLEN + HDGST.
	w := Writer{HeaderDigest: true, DataDigest: true}
	head := w.AppendCapsuleCmd(nil, &cmd, 0)
	if head[3] != 0 || Flags(head[1]) != FlagHDGST || binary.LittleEndian.Uint32(head[4:]) != 76 || len(head) != 76 {
		t.Errorf("no-data capsule: %x", head[:8])
	}
	if len(w.AppendDataDigest(nil, nil)) != 0 {
		t.Error("digest of no data")
	}
	// ICReq never carries digests.
	if ic := w.AppendICReq(nil, ICReq{}); ic[1] != 0 || len(ic) != 128 {
		t.Error("ICReq with digest")
	}
}

// stream builds a byte stream of PDUs from w and records what the reader
// must return.
type stream struct {
	w    Writer
	b    []byte
	want []got
}

func (s *stream) add(head []byte, data []byte, p PDU) {
	s.b = append(s.b, head...)
	s.b = append(s.b, data...)
	s.b = s.w.AppendDataDigest(s.b, data)
	p.DataLen = uint32(len(data))
	s.want = append(s.want, got{PDU: p, data: bytes.Clone(data)})
}

func hostToController(w Writer) *stream {
	s := &stream{w: w}
	for i := range 5 {
		cmd := testCommand(uint16(i))
		data := pattern([]int{0, 1, 4096, 333, 8192}[i], byte(i))
		s.add(w.AppendCapsuleCmd(nil, &cmd, len(data)), data, PDU{Type: TypeCapsuleCmd, Command: cmd})
	}
	for i, n := range []int{4096, 1, 65536, 7} {
		data := pattern(n, byte(i+10))
		x := Transfer{CCCID: uint16(i), TTag: uint16(100 + i), Offset: uint32(i * 65536), Length: uint32(n)}
		var f Flags
		if i%2 == 1 {
			f = FlagLastPDU
		}
		s.add(w.AppendH2CData(nil, x.CCCID, x.TTag, x.Offset, n, f != 0), data, PDU{Type: TypeH2CData, Flags: f, Transfer: x})
	}
	return s
}

func controllerToHost(w Writer) *stream {
	s := &stream{w: w}
	for i := range 4 {
		cqe := spec.Completion{DW0: uint32(i), SQHead: uint16(i), CID: uint16(i), Status: uint16(i * 2)}
		s.add(w.AppendCapsuleResp(nil, &cqe), nil, PDU{Type: TypeCapsuleResp, Completion: cqe})
	}
	for i, n := range []int{4096, 3, 131072, 513} {
		data := pattern(n, byte(i+20))
		x := Transfer{CCCID: uint16(i), Offset: uint32(i * 4096), Length: uint32(n)}
		var f Flags
		switch i {
		case 1:
			f = FlagLastPDU
		case 2:
			f = FlagLastPDU | FlagSuccess
		}
		s.add(w.AppendC2HData(nil, x.CCCID, x.Offset, n, f&FlagLastPDU != 0, f&FlagSuccess != 0), data, PDU{Type: TypeC2HData, Flags: f, Transfer: x})
		x = Transfer{CCCID: uint16(i), TTag: uint16(i + 50), Offset: uint32(i), Length: uint32(n)}
		s.add(w.AppendR2T(nil, x.CCCID, x.TTag, x.Offset, x.Length), nil, PDU{Type: TypeR2T, Transfer: x})
	}
	return s
}

func checkSame(t *testing.T, got, want []got) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d pdus, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Type != w.Type || g.Flags&^(FlagHDGST|FlagDDGST) != w.Flags || g.DataLen != w.DataLen || !bytes.Equal(g.data, w.data) {
			t.Fatalf("pdu %d: %v flags %#x len %d, want %v flags %#x len %d", i, g.Type, g.Flags, g.DataLen, w.Type, w.Flags, w.DataLen)
		}
		switch g.Type {
		case TypeCapsuleCmd:
			if g.Command != w.Command {
				t.Fatalf("pdu %d: command %+v", i, g.Command)
			}
		case TypeCapsuleResp:
			if g.Completion != w.Completion {
				t.Fatalf("pdu %d: completion %+v", i, g.Completion)
			}
		case TypeH2CData, TypeC2HData, TypeR2T:
			if g.Transfer != w.Transfer {
				t.Fatalf("pdu %d: transfer %+v, want %+v", i, g.Transfer, w.Transfer)
			}
		}
		if g.err != nil {
			t.Fatalf("pdu %d: %v", i, g.err)
		}
	}
}

// Every PDU survives the trip from Writer to Reader, whatever the digests,
// the alignment, how the stream is cut, and where the data goes.
func TestRoundTrip(t *testing.T) {
	for _, hd := range []bool{false, true} {
		for _, dd := range []bool{false, true} {
			for _, pda := range []uint8{0, 7, 31} {
				for _, chunk := range []int{1, 5, 64, 1500, 1 << 20} {
					if chunk == 1 && (pda != 0 || hd != dd) {
						continue // byte by byte is slow under -race: once per digest setting is enough
					}
					for _, mode := range []string{"staged", "dest"} {
						name := fmt.Sprintf("hd=%t/dd=%t/pda=%d/chunk=%d/%s", hd, dd, pda, chunk, mode)
						w := Writer{HeaderDigest: hd, DataDigest: dd, TxPDA: pda}
						var dest func(*PDU) []byte
						if mode == "dest" {
							dest = func(p *PDU) []byte { return make([]byte, p.DataLen) }
						}
						p := Params{HeaderDigest: hd, DataDigest: dd, RxPDA: pda}

						bufSize := 0
						if mode == "staged" {
							bufSize = 256 << 10 // room to stage 128 KiB
						}
						s := hostToController(w)
						r := establishedSize(t, Controller, p, bufSize)
						out, err := readAll(t, r, s.b, chunk, dest)
						if err != nil {
							t.Fatalf("%s: to controller: %v", name, err)
						}
						checkSame(t, out, s.want)

						s = controllerToHost(w)
						r = establishedSize(t, Host, p, bufSize)
						out, err = readAll(t, r, s.b, chunk, dest)
						if err != nil {
							t.Fatalf("%s: to host: %v", name, err)
						}
						checkSame(t, out, s.want)
						if r.Buffered() != 0 {
							t.Fatalf("%s: %d bytes left over", name, r.Buffered())
						}
					}
				}
			}
		}
	}
}

// With a destination, a large payload is read by the socket straight into
// it: only what came in the read that brought the header is copied.
func TestDirectRead(t *testing.T) {
	for _, dd := range []bool{false, true} {
		w := Writer{DataDigest: dd}
		data := pattern(128<<10, 9)
		var s []byte
		s = w.AppendC2HData(s, 1, 0, len(data), true, true)
		s = append(s, data...)
		s = w.AppendDataDigest(s, data)
		cqe := spec.Completion{CID: 2}
		s = w.AppendCapsuleResp(s, &cqe)

		r := established(t, Host, Params{DataDigest: dd})
		dst := make([]byte, len(data))
		var direct, viaBuffer, pdus int
		const readSize = 4096 // a socket read returns at most this much
		for len(s) > 0 || pdus < 2 {
			for {
				p, err := r.Next()
				if err != nil {
					t.Fatal(err)
				}
				if p == nil {
					break
				}
				if p.DataPending {
					if err := r.SetDest(dst); err != nil {
						t.Fatal(err)
					}
					continue
				}
				pdus++
				if p.Type == TypeC2HData && (&p.Data[0] != &dst[0] || !bytes.Equal(dst, data) || !p.Success()) {
					t.Fatal("data not delivered in place")
				}
			}
			if len(s) == 0 {
				break
			}
			buf := r.ReadBuffer()
			inDst := &buf[0] == &dst[len(dst)-len(buf)]
			n := copy(buf[:min(len(buf), readSize)], s)
			r.Advance(n)
			s = s[n:]
			if inDst {
				direct += n
			} else {
				viaBuffer += n
			}
		}
		if pdus != 2 {
			t.Fatalf("%d pdus", pdus)
		}
		// The first read brought the header and 4072 bytes of data; the
		// rest went straight to dst.
		if direct != len(data)-(readSize-24) {
			t.Errorf("dd=%t: %d bytes read in place, %d through the buffer", dd, direct, viaBuffer)
		}
	}
}

func TestSetDestMisuse(t *testing.T) {
	r := established(t, Host, Params{})
	if err := r.SetDest(make([]byte, 10)); err == nil {
		t.Error("SetDest with nothing pending")
	}
	var w Writer
	s := w.AppendC2HData(nil, 1, 0, 10, true, false)
	s = append(s, pattern(10, 1)...)
	r.Feed(s)
	p, err := r.Next()
	if err != nil || p == nil || !p.DataPending {
		t.Fatalf("%v %v", p, err)
	}
	if !bytes.Equal(p.Header, s[:DataHeaderLen]) {
		t.Errorf("Header %x, want %x", p.Header, s[:DataHeaderLen])
	}
	if err := r.SetDest(make([]byte, 9)); err == nil {
		t.Error("SetDest with a wrong length")
	}
	if err := r.SetDest(make([]byte, 10)); err != nil {
		t.Error(err)
	}
	if p, err := r.Next(); err != nil || p == nil || !bytes.Equal(p.Data, pattern(10, 1)) {
		t.Errorf("after SetDest: %v %v", p, err)
	}
}

// A data digest error fails that PDU only: the reader returns the PDU with
// the error and goes on with the next.
func TestDataDigestErrorIsNotFatal(t *testing.T) {
	w := Writer{DataDigest: true}
	data := pattern(1000, 4)
	s := w.AppendC2HData(nil, 3, 0, len(data), true, false)
	s = append(s, data...)
	s = AppendDigest(s, Digest(data)^1)
	cqe := spec.Completion{CID: 3, Status: 2}
	s = w.AppendCapsuleResp(s, &cqe)
	for _, staged := range []bool{true, false} {
		r := established(t, Host, Params{DataDigest: true})
		var dest func(*PDU) []byte
		if !staged {
			dest = func(p *PDU) []byte { return make([]byte, p.DataLen) }
		}
		out, err := readAll(t, r, s, 100, dest)
		if err != nil || len(out) != 2 {
			t.Fatalf("staged=%t: %v, %d pdus", staged, err, len(out))
		}
		var pe *Error
		if !errors.Is(out[0].err, ErrDataDigest) || !errors.As(out[0].err, &pe) || pe.Fatal() || pe.FES != FESNone {
			t.Errorf("staged=%t: first pdu error %v", staged, out[0].err)
		}
		if out[1].Type != TypeCapsuleResp || out[1].Completion != cqe || out[1].err != nil {
			t.Errorf("staged=%t: second pdu %+v", staged, out[1])
		}
	}
}

func TestTermReq(t *testing.T) {
	// A controller rejects a bad header; the host reads the C2HTermReq.
	bad := bytes.Repeat([]byte{0xee}, 200)
	s := AppendTermReq(nil, Controller, FESInvalidHeaderField, 2, bad)
	if len(s) != TermReqMaxLen {
		t.Fatalf("TermReq of %d bytes", len(s))
	}
	r := NewReader(Host, 0) // a TermReq may come before the ICResp
	out, err := readAll(t, r, s, 7, nil)
	if err != nil || len(out) != 1 {
		t.Fatalf("%v %d", err, len(out))
	}
	p := out[0]
	if p.Type != TypeC2HTermReq || p.Term.FES != FESInvalidHeaderField || p.Term.FEI != 2 || !bytes.Equal(p.data, bad[:128]) {
		t.Errorf("term %+v", p)
	}
	// Its own length must be sane, else the connection just closes.
	binary.LittleEndian.PutUint32(s[4:], 153)
	_, err = readAll(t, NewReader(Host, 0), s, 1000, nil)
	var pe *Error
	if !errors.Is(err, ErrBadTermReq) || !errors.As(err, &pe) || pe.FES != FESNone {
		t.Errorf("oversized TermReq: %v", err)
	}
	if len(AppendTermReqFor(nil, Host, pe)) != 0 {
		t.Error("TermReq for FESNone")
	}
	// The TermReq for a reader's error carries its FES, FEI and header.
	e := NewError(FESHeaderDigestError, 0x12345678, TypeCapsuleCmd, bytes.Repeat([]byte{1}, 76), "x")
	s = AppendTermReqFor(nil, Host, e)
	r = NewReader(Controller, 0)
	out, err = readAll(t, r, s, 1000, nil)
	if err != nil || len(out) != 1 || out[0].Type != TypeH2CTermReq || out[0].Term.FEI != 0x12345678 || out[0].Term.FES != FESHeaderDigestError || len(out[0].data) != 76 {
		t.Errorf("H2CTermReq: %v %+v", err, out)
	}
}

func TestNegotiation(t *testing.T) {
	q := ICReq{HPDA: 0, HeaderDigest: true, DataDigest: true, MaxR2T: 0}
	resp, cp, cw := AcceptICReq(q, ControllerLimits{MaxH2CData: 131073, MaxInCapsule: 8192})
	if !resp.HeaderDigest || !resp.DataDigest || resp.MaxH2CData != 131072 || !cp.HeaderDigest || cp.MaxH2CData != 131072 || !cw.DataDigest {
		t.Errorf("controller: %+v %+v %+v", resp, cp, cw)
	}
	hp, hw, err := AcceptICResp(q, resp, 1<<20)
	if err != nil || !hp.DataDigest || hp.MaxC2HData != 1<<20 || !hw.HeaderDigest {
		t.Errorf("host: %+v %+v %v", hp, hw, err)
	}
	resp.DataDigest = false
	if _, _, err := AcceptICResp(q, resp, 0); !errors.Is(err, ErrInvalidHeaderField) {
		t.Errorf("digest refused: %v", err)
	}
	if resp, _, _ := AcceptICReq(ICReq{}, ControllerLimits{MaxH2CData: 10}); resp.MaxH2CData != MinMaxH2CData {
		t.Errorf("MAXH2CDATA %d", resp.MaxH2CData)
	}
}

func TestCheckData(t *testing.T) {
	p := &PDU{Type: TypeC2HData, Transfer: Transfer{CCCID: 1, Offset: 4096, Length: 4096}}
	if err := CheckData(p, 0, 4096, 8192, nil); err != nil {
		t.Error(err)
	}
	if err := CheckData(p, 0, 0, 8192, nil); !errors.Is(err, ErrInvalidHeaderField) || err.(*Error).FEI != 12 {
		t.Errorf("out of order: %v", err)
	}
	if err := CheckData(p, 0, 4096, 8191, nil); !errors.Is(err, ErrDataOutOfRange) {
		t.Errorf("past the end: %v", err)
	}
	p.Transfer.Length = 0xffffffff
	if err := CheckData(p, 0, 4096, 0xffffffff, nil); !errors.Is(err, ErrDataOutOfRange) {
		t.Errorf("overflow: %v", err)
	}
	h := &PDU{Type: TypeH2CData, Transfer: Transfer{TTag: 5, Offset: 0, Length: 10}}
	if err := CheckData(h, 6, 0, 10, nil); !errors.Is(err, ErrInvalidHeaderField) || err.(*Error).FEI != 10 {
		t.Errorf("wrong ttag: %v", err)
	}
	r := &PDU{Type: TypeR2T, Transfer: Transfer{Offset: 0, Length: 8192}}
	if err := CheckR2T(r, 0, 8192, 0, 0, nil); err != nil {
		t.Error(err)
	}
	if err := CheckR2T(r, 0, 8192, 1, 0, nil); !errors.Is(err, ErrLimitExceeded) || err.(*Error).FES != FESR2TLimitExceeded {
		t.Errorf("r2t limit: %v", err)
	}
	if err := CheckR2T(r, 0, 8191, 0, 0, nil); !errors.Is(err, ErrDataOutOfRange) {
		t.Errorf("r2t range: %v", err)
	}
	if err := CheckR2T(r, 4096, 8192, 0, 3, nil); !errors.Is(err, ErrInvalidHeaderField) {
		t.Errorf("r2t offset: %v", err)
	}
}

func TestNames(t *testing.T) {
	if TypeCapsuleCmd.String() != "CapsuleCmd" || Type(8).String() != "PDU type 0x08" || Type(200).String() != "PDU type 0xc8" {
		t.Error("type names")
	}
	if FESR2TLimitExceeded.String() != "R2T Limit Exceeded" || FES(9).String() != "Reserved FES 0x9" {
		t.Error("FES names")
	}
	if Host.String() != "host" || Controller.String() != "controller" {
		t.Error("role names")
	}
}

// After Reset a reader takes a new connection from its start, whatever
// state the old one was left in.
func TestReset(t *testing.T) {
	var w Writer
	r := established(t, Host, Params{HeaderDigest: true})
	cqe := spec.Completion{CID: 1}
	bad := w.AppendCapsuleResp(nil, &cqe) // no header digest: a fatal error
	if _, err := readAll(t, r, append(bad, 1, 2, 3), 100, nil); !errors.Is(err, ErrInvalidHeaderField) {
		t.Fatalf("%v", err)
	}
	buf := &r.buf[0]
	allocs := testing.AllocsPerRun(10, r.Reset)
	if allocs != 0 || &r.buf[0] != buf || r.Err() != nil || r.Buffered() != 0 || r.Params() != (Params{}) {
		t.Fatalf("Reset: %v allocs, state %v %d %+v", allocs, r.Err(), r.Buffered(), r.Params())
	}
	s := w.AppendICResp(nil, ICResp{MaxH2CData: 8192})
	s = w.AppendCapsuleResp(s, &cqe)
	out, err := readAll(t, r, s, 7, nil)
	if err != nil || len(out) != 2 || out[1].Completion != cqe {
		t.Fatalf("after Reset: %v %d", err, len(out))
	}
}
