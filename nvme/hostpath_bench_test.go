package nvme

import (
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// BenchmarkHostPath is the host's own CPU cost of one PCIe I/O, with no
// device in the loop: build a read, Submit, ring, and Poll a completion
// the benchmark posts itself into the completion queue, as the device
// would (the fake is stalled: it fetches nothing). One
// goroutine, no waiting: what the seam could cost shows here first.
func BenchmarkHostPath(b *testing.B) {
	fake, err := nvmetest.New(nvmetest.Config{Latency: nvmetest.Fixed(0)})
	if err != nil {
		b.Fatal(err)
	}
	defer fake.Close()
	mem, err := dma.NewAllocator(fake.Mapper())
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Close()
	c, err := Open(fake, mem, &Options{AsyncEvents: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	q, err := c.NewQueuePair(64)
	if err != nil {
		b.Fatal(err)
	}
	ns, err := c.Namespace(1)
	if err != nil {
		b.Fatal(err)
	}
	buf, err := mem.Alloc(4096)
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Free(buf)
	fake.Stall(time.Hour) // the device does nothing: only the host's work is timed
	var r Request
	r.Done = func(*Request) {}
	tail, phase := uint16(0), true
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ns.Read(&r, 0, buf.Bytes, 0); err != nil {
			b.Fatal(err)
		}
		sq := q.sqTail
		if err := q.Submit(&r); err != nil {
			b.Fatal(err)
		}
		q.Ring()
		cqe := &q.cq[tail]
		cqe.DW0, cqe.SQHead = 0, q.sqTail
		dw3 := uint32(q.sq[sq].CID)
		if phase {
			dw3 |= 1 << 16
		}
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&cqe.CID)), dw3)
		if tail++; tail == q.size {
			tail, phase = 0, !phase
		}
		if q.Poll() != 1 {
			b.Fatal("no completion reaped")
		}
	}
	b.StopTimer()
	fake.Stall(0)
	q.Close()
	_ = spec.CommandSize
}
