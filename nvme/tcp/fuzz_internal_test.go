package tcp

import (
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
)

// FuzzQueueReap feeds a queue with four commands outstanding (a read, an
// R2T write, an in-capsule write, a flush) whatever bytes a controller
// might send. The host must never panic, complete only commands that
// are outstanding, each at most once, and stop at the first fatal error.
// The first byte picks the digests.
func FuzzQueueReap(f *testing.F) {
	for _, dg := range []byte{0, 3} {
		w := pdu.Writer{HeaderDigest: dg&1 != 0, DataDigest: dg&2 != 0}
		var s []byte
		s = append(s, dg)
		data := make([]byte, readLen)
		s = append(s, w.AppendC2HData(nil, cidRead, 0, len(data), true, true)...)
		s = append(s, data...)
		s = append(s, w.AppendDataDigest(nil, data)...)
		s = append(s, w.AppendR2T(nil, cidWrite, 5, 0, writeLen)...)
		s = append(s, w.AppendCapsuleResp(nil, &spec.Completion{CID: cidWrite})...)
		s = append(s, w.AppendCapsuleResp(nil, &spec.Completion{CID: cidSmall, Status: 3 << 1})...)
		s = append(s, w.AppendCapsuleResp(nil, &spec.Completion{CID: cidNoData})...)
		f.Add(s)
		f.Add(append([]byte{dg}, pdu.AppendTermReq(nil, pdu.Controller, pdu.FESDataOutOfRange, 9, make([]byte, 24))...))
		f.Add(append([]byte{dg}, w.AppendC2HData(nil, cidRead, 0, 512, false, false)...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		r := newRig(t, b[0]&1 != 0, b[0]&2 != 0)
		r.s.in.Write(b[1:])
		r.s.rmax = 1 + int(b[0]>>2)*37
		seen := map[uint16]bool{}
		valid := map[uint16]bool{cidRead: true, cidWrite: true, cidSmall: true, cidNoData: true}
		for range 1000 {
			before := len(r.done)
			_, err := r.reap()
			for _, c := range r.done[before:] {
				if !valid[c.CID] || seen[c.CID] {
					t.Fatalf("completion of cid %#x (outstanding %t, seen %t)", c.CID, valid[c.CID], seen[c.CID])
				}
				seen[c.CID] = true
			}
			if err != nil {
				if _, err2 := r.reap(); err2 == nil {
					t.Fatal("reap after a fatal error succeeded")
				}
				return
			}
			if r.s.in.Len() == 0 && len(r.done) == before {
				return
			}
		}
	})
}
