package pdu

import (
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// The hot path: encoding and decoding the PDUs of one 4 KiB I/O allocates
// nothing.

func encodeDecodeCapsuleCmd(w *Writer, r *Reader, head []byte, cmd *spec.Command) {
	head = w.AppendCapsuleCmd(head[:0], cmd, 0)
	r.Feed(head)
	if p, err := r.Next(); p == nil || err != nil {
		panic("capsule cmd")
	}
}

func TestZeroAllocs(t *testing.T) {
	for _, dg := range []bool{false, true} {
		w := Writer{HeaderDigest: dg, DataDigest: dg}
		p := Params{HeaderDigest: dg, DataDigest: dg}
		cmd := testCommand(1)
		head := make([]byte, 0, MaxHeadLen)
		tail := make([]byte, 0, DigestLen)
		data := pattern(4096, 1)
		dst := make([]byte, 4096)
		ctrl := established(t, Controller, p)
		host := established(t, Host, p)
		cqe := spec.Completion{CID: 1}
		n := testing.AllocsPerRun(1000, func() {
			encodeDecodeCapsuleCmd(&w, ctrl, head, &cmd)

			head = w.AppendCapsuleResp(head[:0], &cqe)
			host.Feed(head)
			if q, err := host.Next(); q == nil || err != nil {
				panic("capsule resp")
			}

			head = w.AppendC2HData(head[:0], 1, 0, len(data), true, true)
			tail = w.AppendDataDigest(tail[:0], data)
			host.Feed(head)
			host.Feed(data)
			host.Feed(tail)
			q, err := host.Next()
			if q == nil || err != nil || !q.DataPending {
				panic("c2h data header")
			}
			if err := host.SetDest(dst); err != nil {
				panic(err)
			}
			if q, err := host.Next(); q == nil || err != nil || len(q.Data) != 4096 {
				panic("c2h data")
			}
		})
		if n != 0 {
			t.Errorf("digests %t: %.1f allocations per I/O", dg, n)
		}
	}
}

func benchDigests(b *testing.B, f func(b *testing.B, w Writer, p Params)) {
	for _, dg := range []bool{false, true} {
		name := "nodigest"
		if dg {
			name = "digests"
		}
		b.Run(name, func(b *testing.B) {
			f(b, Writer{HeaderDigest: dg, DataDigest: dg}, Params{HeaderDigest: dg, DataDigest: dg})
		})
	}
}

func BenchmarkEncodeCapsuleCmd(b *testing.B) {
	benchDigests(b, func(b *testing.B, w Writer, _ Params) {
		cmd := testCommand(1)
		head := make([]byte, 0, MaxHeadLen)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			cmd.CID = uint16(i)
			head = w.AppendCapsuleCmd(head[:0], &cmd, 0)
		}
	})
}

func BenchmarkDecodeCapsuleCmd(b *testing.B) {
	benchDigests(b, func(b *testing.B, w Writer, p Params) {
		cmd := testCommand(1)
		pdu := w.AppendCapsuleCmd(nil, &cmd, 0)
		r := established(b, Controller, p)
		b.ReportAllocs()
		b.SetBytes(int64(len(pdu)))
		for b.Loop() {
			r.Feed(pdu)
			if q, err := r.Next(); q == nil || err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkEncodeCapsuleResp(b *testing.B) {
	benchDigests(b, func(b *testing.B, w Writer, _ Params) {
		cqe := spec.Completion{CID: 1}
		head := make([]byte, 0, MaxHeadLen)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			cqe.CID = uint16(i)
			head = w.AppendCapsuleResp(head[:0], &cqe)
		}
	})
}

func BenchmarkDecodeCapsuleResp(b *testing.B) {
	benchDigests(b, func(b *testing.B, w Writer, p Params) {
		cqe := spec.Completion{CID: 1}
		// 32 responses per read, as at queue depth 32.
		var stream []byte
		for range 32 {
			stream = w.AppendCapsuleResp(stream, &cqe)
		}
		r := established(b, Host, p)
		b.ReportAllocs()
		b.SetBytes(int64(len(stream) / 32))
		for b.Loop() {
			r.Feed(stream)
			for range 32 {
				if q, err := r.Next(); q == nil || err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*32), "ns/pdu")
	})
}

func BenchmarkEncodeC2HData4K(b *testing.B) {
	benchDigests(b, func(b *testing.B, w Writer, _ Params) {
		data := pattern(4096, 1)
		head := make([]byte, 0, MaxHeadLen)
		tail := make([]byte, 0, DigestLen)
		b.ReportAllocs()
		b.SetBytes(4096)
		for b.Loop() {
			head = w.AppendC2HData(head[:0], 1, 0, len(data), true, true)
			tail = w.AppendDataDigest(tail[:0], data)
		}
		_ = tail
	})
}

func BenchmarkDecodeC2HData4K(b *testing.B) {
	benchDigests(b, func(b *testing.B, w Writer, p Params) {
		data := pattern(4096, 1)
		pdu := w.AppendC2HData(nil, 1, 0, len(data), true, true)
		pdu = append(pdu, data...)
		pdu = w.AppendDataDigest(pdu, data)
		dst := make([]byte, 4096)
		r2 := establishedSize(b, Host, p, 64<<10)
		b.ReportAllocs()
		b.SetBytes(4096)
		for b.Loop() {
			r2.Feed(pdu)
			q, err := r2.Next()
			if err != nil || q == nil {
				b.Fatal(err)
			}
			if err := r2.SetDest(dst); err != nil {
				b.Fatal(err)
			}
			if q, err := r2.Next(); q == nil || err != nil {
				b.Fatal(err)
			}
		}
	})
}
