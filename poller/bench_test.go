package poller_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// bareLoop runs n 4 KiB reads at depth qd through nvmetest.BareQueue on
// fake and returns the time per I/O.
func bareLoop(b *testing.B, fake *nvmetest.Controller, mem *dma.Allocator, qd, n int) time.Duration {
	bq, err := nvmetest.NewBareQueue(fake, mem, 256)
	if err != nil {
		b.Fatal(err)
	}
	defer bq.Close()
	buf, err := mem.Alloc(qd * 4096)
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Free(buf)
	issued, done := 0, 0
	submit := func(slot int) {
		cmd := nvmetest.ReadCommand(1, uint64(issued%8192)*8, 8, buf.IOVAAt(slot*4096), 4096)
		if _, ok := bq.Submit(&cmd); !ok {
			b.Fatal("bare queue full")
		}
		issued++
	}
	start := time.Now()
	for i := 0; i < qd && issued < n; i++ {
		submit(i)
	}
	bq.Ring()
	for done < n {
		reaped := 0
		for {
			cid, st, ok := bq.Reap()
			if !ok {
				break
			}
			if !st.Success() {
				b.Fatalf("bare read: status %v", st)
			}
			reaped++
			done++
			if issued < n {
				submit(int(cid) % qd)
			}
		}
		if reaped > 0 {
			bq.Release()
			bq.Ring()
		}
	}
	return time.Since(start) / time.Duration(n)
}

// pollerLoop runs n 4 KiB reads at depth qd through a one-poller Group,
// SPDK perf style: each Done resubmits its request through the handle
// (which detects it runs on the poller and submits directly).
func pollerLoop(b *testing.B, ctrl *nvme.Controller, mem *dma.Allocator, opts poller.Options, local bool, qd, n int) (time.Duration, poller.PollerStats) {
	g, err := poller.New([]*nvme.Controller{ctrl}, &opts)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	h := g.Handle(ctrl)
	p := g.Pollers()[0]
	ns, _ := ctrl.Namespace(1)
	buf, err := mem.Alloc(qd * 4096)
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Free(buf)
	var issued, completed atomic.Int64
	finished := make(chan struct{})
	var failure atomic.Pointer[error]
	reqs := make([]nvme.Request, qd)
	start := time.Now()
	for i := range reqs {
		r := &reqs[i]
		data := buf.Bytes[i*4096 : (i+1)*4096]
		r.Done = func(r *nvme.Request) {
			if r.Err != nil {
				e := r.Err
				failure.Store(&e)
			}
			if c := completed.Add(1); c == int64(n) {
				close(finished)
			}
			if k := issued.Add(1); k <= int64(n) {
				ns.Read(r, uint64(k%8192)*8, data, 0)
				var err error
				if local {
					err = p.SubmitLocal(ctrl, r)
				} else {
					err = h.Submit(r)
				}
				if err != nil {
					e := err
					failure.Store(&e)
				}
			}
		}
		if k := issued.Add(1); k <= int64(n) {
			ns.Read(r, uint64(k%8192)*8, data, 0)
			if err := h.Submit(r); err != nil {
				b.Fatal(err)
			}
		}
	}
	<-finished
	el := time.Since(start) / time.Duration(n)
	if e := failure.Load(); e != nil {
		b.Fatal(*e)
	}
	time.Sleep(2 * opts.StatsInterval)
	return el, g.Stats()[0]
}

// BenchmarkOverhead compares the full poller path (Handle.Submit from a
// Done callback, the poller's loop, the nvme queue pair) with a bare
// submit/reap loop on the same fake controller, 4 KiB reads at each depth,
// and reports the ratio (target: at most 1.5). "local" resubmits with
// Poller.SubmitLocal, which skips the getcpu + gettid detection.
func BenchmarkOverhead(b *testing.B) {
	for _, qd := range []int{1, 32} {
		b.Run(fmt.Sprintf("qd%d", qd), func(b *testing.B) {
			fake, err := nvmetest.New(nvmetest.Config{Latency: nvmetest.Fixed(0)}) // lenient: no latency, in order
			if err != nil {
				b.Fatal(err)
			}
			defer fake.Close()
			mem, err := dma.NewAllocator(fake.Mapper())
			if err != nil {
				b.Fatal(err)
			}
			defer mem.Close()
			n := max(b.N, qd)
			bare := bareLoop(b, fake, mem, qd, n)
			ctrl, err := nvme.Open(fake, mem, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer ctrl.Close()
			opts := poller.Options{CPUs: []int{1}, Idle: poller.IdleBusy, StatsInterval: time.Millisecond}
			full, st := pollerLoop(b, ctrl, mem, opts, false, qd, n)
			local, _ := pollerLoop(b, ctrl, mem, opts, true, qd, n)
			withDDI := ddiLoop(b, ctrl, mem, opts, qd, n)
			b.ReportMetric(float64(bare.Nanoseconds()), "bare-ns/op")
			b.ReportMetric(float64(full.Nanoseconds()), "poller-ns/op")
			b.ReportMetric(float64(full)/float64(bare), "ratio")
			b.ReportMetric(float64(local)/float64(bare), "local-ratio")
			b.ReportMetric(float64(withDDI.Nanoseconds()), "ddi-ns/op")
			b.ReportMetric(float64(withDDI)/float64(bare), "ddi-ratio")
			if st.Local+st.Taken < uint64(n) {
				b.Fatalf("poller counted %d submissions, want %d", st.Local+st.Taken, n)
			}
		})
	}
}

// ddiLoop runs n 4 KiB reads at depth qd through the whole stack: a ddi
// Buf per slot whose Iodone (run on the poller) sends it down Strategy
// again, Strategy building the command into the Buf's embedded request,
// Handle.Submit, the poller, the queue pair.
func ddiLoop(b *testing.B, ctrl *nvme.Controller, mem *dma.Allocator, opts poller.Options, qd, n int) time.Duration {
	g, err := poller.New([]*nvme.Controller{ctrl}, &opts)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	ns, _ := ctrl.Namespace(1)
	dev, err := ddi.Register(ns, g.Handle(ctrl))
	if err != nil {
		b.Fatal(err)
	}
	defer ddi.Unregister(dev)
	buf, err := mem.Alloc(qd * 4096)
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Free(buf)
	var issued, completed atomic.Int64
	finished := make(chan struct{})
	var failure atomic.Pointer[error]
	bufs := make([]ddi.Buf, qd)
	var start func(bp *ddi.Buf, k int64)
	iodone := func(bp *ddi.Buf) int {
		if err := ddi.Geterror(bp); err != nil {
			failure.Store(&err)
		}
		if c := completed.Add(1); c == int64(n) {
			close(finished)
		}
		if k := issued.Add(1); k <= int64(n) {
			start(bp, k)
		}
		return 0
	}
	start = func(bp *ddi.Buf, k int64) {
		data := bp.Addr
		ddi.Bioreset(bp)
		bp.Flags |= ddi.BRead
		bp.Edev = dev
		bp.Addr = data
		bp.Bcount = 4096
		bp.Blkno = (k % 8192) * 8
		bp.Iodone = iodone
		ddi.Strategy(bp)
	}
	t0 := time.Now()
	for i := range bufs {
		ddi.Bioinit(&bufs[i])
		bufs[i].Addr = buf.Bytes[i*4096 : (i+1)*4096]
		if k := issued.Add(1); k <= int64(n) {
			start(&bufs[i], k)
		}
	}
	<-finished
	el := time.Since(t0) / time.Duration(n)
	if e := failure.Load(); e != nil {
		b.Fatal(*e)
	}
	return el
}
