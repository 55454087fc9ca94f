package pdu

import (
	"bytes"
	"errors"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// got is one PDU a test reader returned, with its data copied out.
type got struct {
	PDU
	data []byte
	err  error
}

// readAll feeds stream to a reader chunk bytes at a time and collects
// every PDU. dest, when not nil, gives the destination for each PDU with
// DataPending (nil from dest: stage it). It stops at the first fatal error
// and returns it.
func readAll(t testing.TB, r *Reader, stream []byte, chunk int, dest func(*PDU) []byte) ([]got, error) {
	t.Helper()
	var out []got
	for {
		for {
			p, err := r.Next()
			if err != nil && (p == nil || !errors.Is(err, ErrDataDigest)) {
				return out, err
			}
			if p == nil {
				break
			}
			if p.DataPending {
				if dest != nil {
					if d := dest(p); d != nil {
						if err := r.SetDest(d); err != nil {
							t.Fatalf("SetDest: %v", err)
						}
					}
				}
				continue
			}
			out = append(out, got{PDU: *p, data: bytes.Clone(p.Data), err: err})
		}
		if len(stream) == 0 {
			return out, nil
		}
		buf := r.ReadBuffer()
		if len(buf) == 0 {
			t.Fatal("ReadBuffer empty after Next returned nil")
		}
		n := copy(buf[:min(len(buf), chunk)], stream)
		r.Advance(n)
		stream = stream[n:]
	}
}

// established returns a reader of role past connection initialization,
// with params p.
func established(t testing.TB, role Role, p Params) *Reader {
	t.Helper()
	return establishedSize(t, role, p, 0)
}

func establishedSize(t testing.TB, role Role, p Params, bufSize int) *Reader {
	t.Helper()
	r := NewReader(role, bufSize)
	var w Writer
	var ic []byte
	if role == Host {
		ic = w.AppendICResp(nil, ICResp{MaxH2CData: 65536, HeaderDigest: p.HeaderDigest, DataDigest: p.DataDigest})
	} else {
		ic = w.AppendICReq(nil, ICReq{HeaderDigest: p.HeaderDigest, DataDigest: p.DataDigest})
	}
	out, err := readAll(t, r, ic, len(ic), nil)
	if err != nil || len(out) != 1 {
		t.Fatalf("initialize: %v, %d pdus", err, len(out))
	}
	r.SetParams(p)
	return r
}

func testCommand(cid uint16) spec.Command {
	return spec.Command{Opcode: uint8(spec.IOWrite), Flags: spec.FlagPSDTSGL, CID: cid, NSID: 1,
		PRP1: 0, PRP2: uint64(0x01) << 56, CDW10: 0x1000, CDW12: 7, CDW15: 0xdeadbeef}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7) + byte(i>>8)
	}
	return b
}
