package pdu

import (
	"bytes"
	"errors"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// FuzzReader feeds arbitrary bytes, cut at arbitrary points, to a Reader of
// either role with any negotiated parameters. It must never panic, never
// stall (Next returning nil while ReadBuffer is empty), deliver exactly
// DataLen bytes of data for each PDU, stay failed after a fatal error, and
// never account for more bytes than it was given.
func FuzzReader(f *testing.F) {
	for _, hd := range []bool{false, true} {
		for _, dd := range []bool{false, true} {
			w := Writer{HeaderDigest: hd, DataDigest: dd}
			var cfg uint8
			if hd {
				cfg |= 2
			}
			if dd {
				cfg |= 4
			}
			f.Add(hostToController(w).b[:3000], cfg|1|32, uint8(7))
			f.Add(controllerToHost(w).b[:3000], cfg|32|64, uint8(50))
		}
	}
	var w Writer
	f.Add(w.AppendICReq(nil, ICReq{HPDA: 3, MaxR2T: 1}), uint8(1), uint8(1))
	f.Add(w.AppendICResp(nil, ICResp{MaxH2CData: 8192}), uint8(0), uint8(9))
	f.Add(AppendTermReq(nil, Controller, FESPDUSequenceError, 0, []byte("hello")), uint8(0), uint8(3))

	f.Fuzz(func(t *testing.T, in []byte, cfg uint8, chunk uint8) {
		role := Role(cfg & 1)
		p := Params{HeaderDigest: cfg&2 != 0, DataDigest: cfg&4 != 0, RxPDA: []uint8{0, 1, 7, 31}[cfg>>3&3]}
		if cfg&128 != 0 {
			p.MaxH2CData, p.MaxInCapsule, p.MaxC2HData = 4096, 512, 8192
		}
		useDest := cfg&64 != 0
		r := NewReader(role, 1024)
		if cfg&32 != 0 { // start past the IC exchange
			var ic []byte
			if role == Host {
				ic = w.AppendICResp(nil, ICResp{MaxH2CData: 4096, HeaderDigest: p.HeaderDigest, DataDigest: p.DataDigest})
			} else {
				ic = w.AppendICReq(nil, ICReq{HeaderDigest: p.HeaderDigest, DataDigest: p.DataDigest})
			}
			r.Feed(ic)
			if q, err := r.Next(); q == nil || err != nil {
				t.Fatalf("IC: %v", err)
			}
		}
		r.SetParams(p)
		step := int(chunk)%97 + 1
		fed, consumed := 0, 0
		var fatal error
		for iter := 0; iter < 1<<16; iter++ {
			q, err := r.Next()
			if fatal != nil {
				if q != nil || err != fatal {
					t.Fatalf("not sticky: %v then %v", fatal, err)
				}
				return
			}
			if err != nil && !errors.Is(err, ErrDataDigest) {
				var pe *Error
				if !errors.As(err, &pe) || !pe.Fatal() || len(pe.Header) > TermReqMaxErrorData {
					t.Fatalf("bad fatal error %#v", err)
				}
				_ = AppendTermReqFor(nil, role, pe)
				fatal = err
				continue
			}
			if q != nil {
				if q.DataPending {
					// A destination is the caller's memory: like a real
					// caller, size it from the command, not from DATAL.
					if useDest && q.DataLen <= 1<<20 {
						if err := r.SetDest(make([]byte, q.DataLen)); err != nil {
							t.Fatal(err)
						}
					}
					continue
				}
				if len(q.Data) != int(q.DataLen) {
					t.Fatalf("%v: %d bytes of data, DataLen %d", q.Type, len(q.Data), q.DataLen)
				}
				consumed += int(q.PLen)
				if consumed > fed {
					t.Fatalf("consumed %d of %d bytes", consumed, fed)
				}
				continue
			}
			if len(in) == 0 {
				return
			}
			buf := r.ReadBuffer()
			if len(buf) == 0 {
				t.Fatal("stalled: Next wants bytes and ReadBuffer is empty")
			}
			n := copy(buf[:min(len(buf), step)], in)
			r.Advance(n)
			in = in[n:]
			fed += n
		}
		t.Fatal("no progress")
	})
}

// FuzzRoundTrip builds PDUs from arbitrary field values with the Writer
// and reads them back: whatever the Writer makes, a Reader with the same
// parameters accepts and decodes to the same values.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(0), uint16(1), uint16(2), uint32(0), uint32(4096), uint64(0x0102030405060708), uint16(100), uint8(0))
	f.Add(uint8(0xff), uint16(0xffff), uint16(0xffff), uint32(0xfffff000), uint32(1), uint64(0), uint16(1), uint8(31))
	f.Fuzz(func(t *testing.T, cfg uint8, cid, ttag uint16, off, length uint32, v uint64, dataLen uint16, pda uint8) {
		hd, dd := cfg&1 != 0, cfg&2 != 0
		pda %= MaxPDA + 1
		w := Writer{HeaderDigest: hd, DataDigest: dd, TxPDA: pda}
		p := Params{HeaderDigest: hd, DataDigest: dd, RxPDA: pda}
		data := pattern(int(dataLen%9000)+1, byte(v))
		length = max(length, 1)
		off = min(off, ^uint32(0)-uint32(len(data)))

		cmd := spec.Command{Opcode: uint8(v), Flags: uint8(v >> 8), CID: cid, NSID: uint32(v >> 16), MPTR: v, PRP1: ^v, PRP2: v << 3,
			CDW2: uint32(v), CDW10: off, CDW11: length, CDW12: uint32(v >> 32), CDW15: uint32(ttag)}
		cqe := spec.Completion{DW0: uint32(v), DW1: uint32(v >> 32), SQHead: ttag, SQID: cid, CID: cid, Status: uint16(v)}
		inCapsule := data
		if cfg&4 != 0 {
			inCapsule = nil
		}
		last, success := cfg&8 != 0, cfg&16 != 0

		var toCtrl, toHost []byte
		toCtrl = w.AppendCapsuleCmd(toCtrl, &cmd, len(inCapsule))
		toCtrl = append(toCtrl, inCapsule...)
		toCtrl = w.AppendDataDigest(toCtrl, inCapsule)
		toCtrl = w.AppendH2CData(toCtrl, cid, ttag, off, len(data), last)
		toCtrl = append(toCtrl, data...)
		toCtrl = w.AppendDataDigest(toCtrl, data)
		toHost = w.AppendCapsuleResp(toHost, &cqe)
		toHost = w.AppendC2HData(toHost, cid, off, len(data), last, success)
		toHost = append(toHost, data...)
		toHost = w.AppendDataDigest(toHost, data)
		toHost = w.AppendR2T(toHost, cid, ttag, off, length)

		chunk := int(cfg>>5) + 1
		ctrl := establishedSize(t, Controller, p, 32<<10)
		out, err := readAll(t, ctrl, toCtrl, chunk*13, nil)
		if err != nil || len(out) != 2 {
			t.Fatalf("to controller: %v, %d pdus", err, len(out))
		}
		if out[0].Command != cmd || !bytes.Equal(out[0].data, inCapsule) {
			t.Fatalf("capsule cmd %+v", out[0].Command)
		}
		if x := out[1].Transfer; x != (Transfer{CCCID: cid, TTag: ttag, Offset: off, Length: uint32(len(data))}) || out[1].Last() != last || !bytes.Equal(out[1].data, data) {
			t.Fatalf("h2c data %+v", x)
		}
		host := establishedSize(t, Host, p, 32<<10)
		out, err = readAll(t, host, toHost, chunk*7, func(p *PDU) []byte { return make([]byte, p.DataLen) })
		if err != nil || len(out) != 3 {
			t.Fatalf("to host: %v, %d pdus", err, len(out))
		}
		if out[0].Completion != cqe {
			t.Fatalf("capsule resp %+v", out[0].Completion)
		}
		if out[1].Transfer.Offset != off || out[1].Last() != last || out[1].Success() != (last && success) || !bytes.Equal(out[1].data, data) {
			t.Fatalf("c2h data %+v", out[1].Transfer)
		}
		if x := out[2].Transfer; x != (Transfer{CCCID: cid, TTag: ttag, Offset: off, Length: length}) {
			t.Fatalf("r2t %+v", x)
		}
	})
}
