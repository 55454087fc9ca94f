package ddi_test

import (
	"testing"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

// ioLoop returns a function doing one I/O of size bytes (split into
// pieces by a 16 KiB MDTS) through Strategy and Biowait, reusing one header.
func ioLoop(tb testing.TB, size int, read bool) (func(), *ddi.Device) {
	r := newRig(tb, nvmetest.Config{MDTS: 2, Latency: nvmetest.Fixed(0)}) // lenient: measures the host, not the fake's latency
	d, err := ddi.RegisterDevice(r.ns(1), r.sync)                         // no recorder: it allocates
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ddi.Unregister(d.Edev()) })
	data := r.buf(size)
	bp := &ddi.Buf{}
	ddi.Bioinit(bp)
	flags := ddi.BWrite
	if read {
		flags = ddi.BRead
	}
	lba := int64(0)
	return func() {
		ddi.Bioreset(bp)
		bp.Flags |= flags
		bp.Edev, bp.Blkno, bp.Bcount, bp.Addr = d.Edev(), lba, size, data
		ddi.Strategy(bp)
		if err := ddi.Biowait(bp); err != nil {
			tb.Fatal(err)
		}
		lba = (lba + int64(size/512)) % 65536
	}, d
}

// Zero allocations per I/O in steady state, split or not.
func TestStrategyAllocs(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		read bool
	}{{"4k-write", 4096, false}, {"128k-write-8-pieces", 128 << 10, false}, {"1m-read-64-pieces", 1 << 20, true}} {
		t.Run(tc.name, func(t *testing.T) {
			io, d := ioLoop(t, tc.size, tc.read)
			io() // warm up: first use of the pool and the queue pair
			before := d.Stats().Pieces
			if n := testing.AllocsPerRun(50, io); n != 0 {
				t.Errorf("%v allocations per I/O, want 0", n)
			}
			if tc.size > 16<<10 && d.Stats().Pieces-before < 51*uint64(tc.size/(16<<10)) {
				t.Errorf("pieces %d: the I/O was not split", d.Stats().Pieces-before)
			}
		})
	}
}

func BenchmarkStrategy(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
		read bool
	}{{"4k-read", 4096, true}, {"16k-read-1-piece", 16 << 10, true}, {"128k-read-8-pieces", 128 << 10, true}, {"128k-write-8-pieces", 128 << 10, false}} {
		b.Run(bc.name, func(b *testing.B) {
			io, d := ioLoop(b, bc.size, bc.read)
			io()
			p0 := d.Stats().Pieces
			b.SetBytes(int64(bc.size))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				io()
			}
			b.ReportMetric(float64(d.Stats().Pieces-p0)/float64(b.N), "cmds/op")
		})
	}
}
