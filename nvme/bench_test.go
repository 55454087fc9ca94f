package nvme_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// The benchmarks read 4 KiB (8 blocks of 512) on the in-process fake,
// configured lenient (benchFake): no latency, completions in order, so
// that they measure the host's per-I/O cost and not the fake's delays.
// BenchmarkSubmitReap* go through the driver's full queue pair path;
// BenchmarkBareLoop* through nvmetest.BareQueue, a hand-written minimal
// submit/reap loop against the same fake: the baseline the driver's
// per-I/O overhead is measured against. The numbers include the fake's
// own work (a goroutine on another core), the same in both.

func BenchmarkSubmitReap(b *testing.B)     { benchSubmitReap(b, 1) }
func BenchmarkSubmitReapQD32(b *testing.B) { benchSubmitReap(b, 32) }
func BenchmarkBareLoop(b *testing.B)       { benchBare(b, 1) }
func BenchmarkBareLoopQD32(b *testing.B)   { benchBare(b, 32) }

// benchFake is the fake of the benchmarks.
var benchFake = nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 8192}}, Latency: nvmetest.Fixed(0)}

func benchSubmitReap(b *testing.B, qd int) {
	r := newRig(b, benchFake, &nvme.Options{AsyncEvents: -1})
	q, ns := r.qp(64), r.ns(1)
	buf := r.buf(qd * 4096)
	reqs := make([]nvme.Request, qd)
	issued, completed := 0, 0
	var failed error
	done := func(req *nvme.Request) {
		completed++
		if req.Err != nil {
			failed = req.Err
		}
		if issued < b.N {
			issued++
			i := req.Private.(int)
			if err := ns.Read(req, uint64(i*8), buf[i*4096:(i+1)*4096], 0); err == nil {
				_ = q.Submit(req)
			}
		}
	}
	for i := range reqs {
		reqs[i].Private = i
		reqs[i].Done = done
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < qd && issued < b.N; i++ {
		issued++
		if err := ns.Read(&reqs[i], uint64(i*8), buf[i*4096:(i+1)*4096], 0); err != nil {
			b.Fatal(err)
		}
		if err := q.Submit(&reqs[i]); err != nil {
			b.Fatal(err)
		}
	}
	for completed < b.N {
		if q.Poll() == 0 {
			runtime.Gosched()
		}
	}
	b.StopTimer()
	if failed != nil {
		b.Fatal(failed)
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/io")
}

func benchBare(b *testing.B, qd int) {
	fake, err := nvmetest.New(benchFake)
	if err != nil {
		b.Fatal(err)
	}
	defer fake.Close()
	mem, err := newAllocator(fake)
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Close()
	q, err := nvmetest.NewBareQueue(fake, mem, 64)
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	data, err := mem.Alloc(qd * 4096)
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Free(data)
	cmds := make([]spec.Command, qd)
	for i := range cmds {
		cmds[i] = nvmetest.ReadCommand(1, uint64(i*8), 8, data.IOVAAt(i*4096), 4096)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	issued, completed := 0, 0
	for ; issued < qd && issued < b.N; issued++ {
		q.Submit(&cmds[issued])
	}
	q.Ring()
	for completed < b.N {
		n := 0
		for {
			_, st, ok := q.Reap()
			if !ok {
				break
			}
			if !st.Success() {
				b.Fatalf("status %v", st)
			}
			n++
		}
		if n == 0 {
			runtime.Gosched()
			continue
		}
		completed += n
		q.Release()
		for ; n > 0 && issued < b.N; n-- {
			q.Submit(&cmds[issued%qd])
			issued++
		}
		q.Ring()
	}
	b.StopTimer()
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/io")
}
