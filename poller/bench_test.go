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
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// overheadRounds is how many times BenchmarkOverhead alternates between
// the loops it compares. On a shared machine the load changes from one
// millisecond to the next: the loops run in short interleaved rounds, and
// each is measured by its fastest round, the one the rest of the machine
// disturbed least.
const overheadRounds = 32

// bareRig is a bare submit/reap loop on its own fake controller (a
// BareQueue takes the whole controller, so it cannot share one with the
// driver).
type bareRig struct {
	bq   *nvmetest.BareQueue
	buf  *dma.Buffer
	cmds []spec.Command
	lba  uint64
}

func newBareRig(b *testing.B, qd int) *bareRig {
	fake, err := nvmetest.New(nvmetest.Config{Latency: nvmetest.Fixed(0)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fake.Close() })
	mem, err := dma.NewAllocator(fake.Mapper())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mem.Close() })
	bq, err := nvmetest.NewBareQueue(fake, mem, 256)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bq.Close() })
	buf, err := mem.Alloc(qd * 4096)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mem.Free(buf) })
	return &bareRig{bq: bq, buf: buf, cmds: make([]spec.Command, qd)}
}

// run does n 4 KiB reads at depth qd and returns the elapsed time.
func (r *bareRig) run(b *testing.B, qd, n int) time.Duration {
	issued, done := 0, 0
	submit := func(slot int) {
		r.lba = (r.lba + 8) % 65536
		r.cmds[slot] = nvmetest.ReadCommand(1, r.lba, 8, r.buf.IOVAAt(slot*4096), 4096)
		if _, ok := r.bq.Submit(&r.cmds[slot]); !ok {
			b.Fatal("bare queue full")
		}
		issued++
	}
	start := time.Now()
	for i := 0; i < qd && issued < n; i++ {
		submit(i)
	}
	r.bq.Ring()
	for done < n {
		reaped := 0
		for {
			cid, st, ok := r.bq.Reap()
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
			r.bq.Release()
			r.bq.Ring()
		}
	}
	return time.Since(start)
}

// Ways a Done callback sends its request down again.
const (
	viaHandle = iota // Handle.Submit: the path every caller uses
	viaLocal         // Poller.SubmitLocal
)

// job is depth requests on one poller, each resubmitted from its own Done
// callback until n have been issued, SPDK perf style. Everything is made
// once; a round allocates nothing.
type job struct {
	h      *poller.Handle
	p      *poller.Poller
	ctrl   *nvme.Controller
	ns     *nvme.Namespace
	how    int
	reqs   []nvme.Request
	data   [][]byte
	n      int64
	lba    atomic.Uint64
	issued atomic.Int64
	done   atomic.Int64
	fin    chan struct{}
	fail   atomic.Pointer[error]
}

func newJob(b *testing.B, ctrl *nvme.Controller, mem *dma.Allocator, qd, how int) *job {
	ns, err := ctrl.Namespace(1)
	if err != nil {
		b.Fatal(err)
	}
	buf, err := mem.Alloc(qd * 4096)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mem.Free(buf) })
	j := &job{ctrl: ctrl, ns: ns, how: how,
		reqs: make([]nvme.Request, qd), data: make([][]byte, qd), fin: make(chan struct{}, 1)}
	for i := range j.reqs {
		j.data[i] = buf.Bytes[i*4096 : (i+1)*4096]
		data := j.data[i]
		j.reqs[i].Done = func(r *nvme.Request) {
			if r.Err != nil {
				e := r.Err
				j.fail.Store(&e)
			}
			if j.done.Add(1) == j.n {
				j.fin <- struct{}{}
			}
			if j.issued.Add(1) > j.n {
				return
			}
			if err := j.start(r, data, true); err != nil {
				e := err
				j.fail.Store(&e)
			}
		}
	}
	return j
}

// start reads the next block into data with r. From r's Done (onPoller)
// a viaLocal job submits with SubmitLocal; the first submissions, from
// the benchmark's goroutine, go through the poller's ring (SubmitTo):
// SubmitLocal from another goroutine would race the poller for its
// queue pair (an unrung tail, a lost command: the benchmark hung in one
// run of three until it did this).
func (j *job) start(r *nvme.Request, data []byte, onPoller bool) error {
	if err := j.ns.Read(r, j.lba.Add(8)%65536, data, 0); err != nil {
		return err
	}
	switch {
	case j.how == viaLocal && onPoller:
		return j.p.SubmitLocal(j.ctrl, r)
	case j.how == viaLocal:
		return j.h.SubmitTo(j.p, r)
	}
	return j.h.Submit(r)
}

// run does n reads at the job's depth on g's first poller and returns the
// elapsed time.
func (j *job) run(b *testing.B, g *poller.Group, n int) time.Duration {
	j.h, j.p = g.Handle(j.ctrl), g.Pollers()[0]
	j.n = int64(n)
	j.issued.Store(0)
	j.done.Store(0)
	start := time.Now()
	for i := range j.reqs {
		if j.issued.Add(1) > j.n {
			break
		}
		if err := j.start(&j.reqs[i], j.data[i], false); err != nil {
			b.Fatal(err)
		}
	}
	<-j.fin
	el := time.Since(start)
	if e := j.fail.Load(); e != nil {
		b.Fatal(*e)
	}
	return el
}

// ddiJob is the same through the whole stack: a ddi Buf per slot whose
// Iodone (run on the poller) sends it down Strategy again; Strategy builds
// the command into the Buf's embedded request and submits it with
// Handle.Submit.
type ddiJob struct {
	dev    ddi.Edev
	bufs   []ddi.Buf
	data   [][]byte
	iodone func(*ddi.Buf) int
	n      int64
	lba    atomic.Int64
	issued atomic.Int64
	done   atomic.Int64
	fin    chan struct{}
	fail   atomic.Pointer[error]
}

func newDDIJob(b *testing.B, mem *dma.Allocator, qd int) *ddiJob {
	buf, err := mem.Alloc(qd * 4096)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mem.Free(buf) })
	j := &ddiJob{bufs: make([]ddi.Buf, qd), data: make([][]byte, qd), fin: make(chan struct{}, 1)}
	for i := range j.bufs {
		ddi.Bioinit(&j.bufs[i])
		j.data[i] = buf.Bytes[i*4096 : (i+1)*4096]
	}
	j.iodone = func(bp *ddi.Buf) int {
		if err := ddi.Geterror(bp); err != nil {
			e := err
			j.fail.Store(&e)
		}
		if j.done.Add(1) == j.n {
			j.fin <- struct{}{}
		}
		if j.issued.Add(1) <= j.n {
			j.start(bp, bp.Addr)
		}
		return 0
	}
	return j
}

func (j *ddiJob) start(bp *ddi.Buf, data []byte) {
	ddi.Bioreset(bp)
	bp.Flags |= ddi.BRead
	bp.Edev = j.dev
	bp.Addr = data
	bp.Bcount = 4096
	bp.Blkno = j.lba.Add(8) % 65536
	bp.Iodone = j.iodone
	ddi.Strategy(bp)
}

// run does n reads through Strategy on dev and returns the elapsed time.
func (j *ddiJob) run(b *testing.B, dev ddi.Edev, n int) time.Duration {
	j.dev = dev
	j.n = int64(n)
	j.issued.Store(0)
	j.done.Store(0)
	start := time.Now()
	for i := range j.bufs {
		if j.issued.Add(1) > j.n {
			break
		}
		j.start(&j.bufs[i], j.data[i])
	}
	<-j.fin
	el := time.Since(start)
	if e := j.fail.Load(); e != nil {
		b.Fatal(*e)
	}
	return el
}

// BenchmarkOverhead compares the full poller path with a bare submit/reap
// loop on a fake controller of its own, 4 KiB reads at depths 1 and 32:
//
//   - ratio: each Done resubmits its request with Handle.Submit (the
//     path every caller uses), over the bare loop (target 1.2 at QD1,
//     1.1 at QD32);
//   - local-ratio: the same with Poller.SubmitLocal;
//   - ddi-ratio: a ddi Buf whose Iodone passes it to Strategy again, with
//     the poller's Handle as Submitter (target 1.3 at QD1).
//
// The loops alternate in overheadRounds rounds of b.N/overheadRounds I/Os
// each; bare-ns/op, poller-ns/op and ddi-ns/op are the time per I/O of
// each loop's fastest round, and the ratios divide them (on an idle
// machine the fastest round and the mean agree within a few per cent; on
// a loaded one only the fastest says something about the code). A round
// starts a one-poller group (IdleBusy) for the driver's loops and stops it
// before the bare loop, so no idle poller competes with the bare loop for
// the CPUs. Setup (the fake controllers and their 64 MiB of storage, the
// groups, the buffers) is outside the timer and the allocation count, so
// B/op and allocs/op are those of the I/O: the fake devices, the pollers
// and the controller's watcher included.
func BenchmarkOverhead(b *testing.B) {
	for _, qd := range []int{1, 32} {
		b.Run(fmt.Sprintf("qd%d", qd), func(b *testing.B) {
			b.StopTimer()
			bare := newBareRig(b, qd)
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
			ctrl, err := nvme.Open(fake, mem, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer ctrl.Close()
			ns, err := ctrl.Namespace(1)
			if err != nil {
				b.Fatal(err)
			}
			full := newJob(b, ctrl, mem, qd, viaHandle)
			local := newJob(b, ctrl, mem, qd, viaLocal)
			withDDI := newDDIJob(b, mem, qd)
			per := max(b.N/overheadRounds, qd)
			// start makes a group and a ddi device on it, and warms every
			// path up (first use of the pool and the queue pair).
			start := func() (*poller.Group, ddi.Edev) {
				g, err := poller.New([]*nvme.Controller{ctrl}, &poller.Options{CPUs: []int{1}, Idle: poller.IdleBusy})
				if err != nil {
					b.Fatal(err)
				}
				dev, err := ddi.Register(ns, g.Handle(ctrl))
				if err != nil {
					b.Fatal(err)
				}
				full.run(b, g, 4*qd)
				local.run(b, g, 4*qd)
				withDDI.run(b, dev, 4*qd)
				return g, dev
			}
			stop := func(g *poller.Group, dev ddi.Edev) {
				want := uint64(3 * (per + 4*qd))
				if err := checkCounted(g, want); err != nil {
					b.Fatal(err)
				}
				ddi.Unregister(dev)
				if err := g.Close(); err != nil {
					b.Fatal(err)
				}
			}
			bare.run(b, qd, 4*qd)
			best := func(d *time.Duration, t time.Duration) {
				if *d == 0 || t < *d {
					*d = t
				}
			}
			var tBare, tFull, tLocal, tDDI time.Duration
			for range overheadRounds {
				g, dev := start()
				b.StartTimer()
				best(&tFull, full.run(b, g, per))
				best(&tLocal, local.run(b, g, per))
				best(&tDDI, withDDI.run(b, dev, per))
				b.StopTimer()
				stop(g, dev)
				b.StartTimer()
				best(&tBare, bare.run(b, qd, per))
				b.StopTimer()
			}
			n := float64(per)
			b.ReportMetric(float64(tBare.Nanoseconds())/n, "bare-ns/op")
			b.ReportMetric(float64(tFull.Nanoseconds())/n, "poller-ns/op")
			b.ReportMetric(float64(tDDI.Nanoseconds())/n, "ddi-ns/op")
			b.ReportMetric(float64(tFull)/float64(tBare), "ratio")
			b.ReportMetric(float64(tLocal)/float64(tBare), "local-ratio")
			b.ReportMetric(float64(tDDI)/float64(tBare), "ddi-ratio")
		})
	}
}

// checkCounted waits (up to two seconds: a poller publishes its counters
// every StatsInterval) until the group's poller has counted want
// submissions.
func checkCounted(g *poller.Group, want uint64) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		st := g.Stats()[0]
		if st.Local+st.Taken >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("poller counted %d submissions, want %d", st.Local+st.Taken, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkAdaptiveQD1 measures what the idle policy costs a request
// that keeps the device busy for a while: 4 KiB reads at depth 1, each
// resubmitted from its Done callback after stalling the fake controller
// for the sub-benchmark's time (100 µs, a NAND read's order of magnitude;
// 5 ms, a slow device), so every request spends that long in flight with
// nothing for the poller to do. It reports the median and mean
// submit-to-Done latency under IdleBusy and IdleAdaptive (the two runs
// alternate) and the poller thread's CPU time per wall second under
// IdleAdaptive (cpu-frac: 1 is a whole CPU). The 5 ms case does at most
// 200 reads whatever b.N says.
func BenchmarkAdaptiveQD1(b *testing.B) {
	for _, stall := range []time.Duration{100 * time.Microsecond, 5 * time.Millisecond} {
		b.Run(fmt.Sprintf("stall=%v", stall), func(b *testing.B) { adaptiveQD1(b, stall) })
	}
}

func adaptiveQD1(b *testing.B, stall time.Duration) {
	b.StopTimer()
	r := newRig(b, nvmetest.Config{}, nil)
	buf := r.buf(4096)
	n := max(b.N, 200)
	if stall > time.Millisecond {
		n = 200
	}
	var busyHist, adaptHist poller.Histogram
	var adaptCPU, adaptWall time.Duration
	for range 4 {
		for _, idle := range []poller.IdlePolicy{poller.IdleBusy, poller.IdleAdaptive} {
			g, err := poller.New([]*nvme.Controller{r.ctrl}, &poller.Options{CPUs: []int{1}, Idle: idle})
			if err != nil {
				b.Fatal(err)
			}
			h := g.Handle(r.ctrl)
			var left atomic.Int64
			left.Store(int64(n / 4))
			fin := make(chan error, 1)
			req := &nvme.Request{}
			lba := uint64(0)
			req.Done = func(q *nvme.Request) {
				if q.Err != nil {
					fin <- q.Err
					return
				}
				if left.Add(-1) == 0 {
					fin <- nil
					return
				}
				lba = (lba + 8) % 65536
				if err := r.ns.Read(q, lba, buf, 0); err != nil {
					fin <- err
					return
				}
				r.fake.Stall(stall)
				if err := h.Submit(q); err != nil {
					fin <- err
				}
			}
			if err := r.ns.Read(req, 0, buf, 0); err != nil {
				b.Fatal(err)
			}
			s0 := g.Pollers()[0].Stats()
			t0 := time.Now()
			b.StartTimer()
			r.fake.Stall(stall)
			if err := h.Submit(req); err != nil {
				b.Fatal(err)
			}
			if err := <-fin; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			wall := time.Since(t0)
			if err := g.Close(); err != nil {
				b.Fatal(err)
			}
			s1 := g.Pollers()[0].Stats() // published at exit
			if idle == poller.IdleBusy {
				busyHist.Add(&s1.Queues[0].Latency)
			} else {
				adaptHist.Add(&s1.Queues[0].Latency)
				adaptCPU += s1.CPUTime - s0.CPUTime
				adaptWall += wall
			}
		}
	}
	b.ReportMetric(float64(busyHist.Quantile(0.5).Nanoseconds())/1e3, "busy-p50-us")
	b.ReportMetric(float64(adaptHist.Quantile(0.5).Nanoseconds())/1e3, "adaptive-p50-us")
	b.ReportMetric(float64(busyHist.Mean().Nanoseconds())/1e3, "busy-mean-us")
	b.ReportMetric(float64(adaptHist.Mean().Nanoseconds())/1e3, "adaptive-mean-us")
	b.ReportMetric(float64(adaptCPU)/float64(adaptWall), "adaptive-cpu-frac")
}
