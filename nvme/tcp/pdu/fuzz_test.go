package pdu

import (
	"errors"
	"testing"
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
