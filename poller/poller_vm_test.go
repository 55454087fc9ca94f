package poller_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
	"github.com/seedb8fa28ef/gonvme/poller"
	"golang.org/x/sys/unix"
)

// vmOpen opens the profile's first controller through VFIO.
func vmOpen(t *testing.T, env *vmtest.Env) (*nvme.Controller, *nvme.Namespace) {
	t.Helper()
	cs := env.Controllers()
	addr := env.BindVFIO(t, cs[0])
	c, err := pcie.Open(addr, nil)
	if err != nil {
		t.Fatalf("open %s: %v", addr, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close %s: %v", addr, err)
		}
	})
	ns, err := c.Namespace(cs[0].Namespaces[0].NSID)
	if err != nil {
		t.Fatal(err)
	}
	return c, ns
}

// onCPU runs f on a goroutine locked to a thread pinned to cpu.
func onCPU(t *testing.T, cpu int, f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var set, old unix.CPUSet
		unix.SchedGetaffinity(0, &old)
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			t.Errorf("pin to cpu %d: %v", cpu, err)
			return
		}
		defer unix.SchedSetaffinity(0, &old)
		f()
	}()
	<-done
}

func vmMem(t *testing.T, c *nvme.Controller, n int) []byte {
	t.Helper()
	b, err := c.Memory().Alloc(n)
	if err != nil {
		t.Fatalf("alloc %d: %v", n, err)
	}
	t.Cleanup(func() { c.Memory().Free(b) })
	return b.Bytes
}

// randIO is one request of a random-read job, resubmitted from its own
// Done callback (on the poller) until the job stops.
type randIO struct {
	req  nvme.Request
	data []byte
	lba  uint64
	rng  uint64
}

func (x *randIO) nextLBA(span uint64) uint64 {
	x.rng ^= x.rng << 13
	x.rng ^= x.rng >> 7
	x.rng ^= x.rng << 17
	return x.rng % span * 8 // 4 KiB aligned in 512 B blocks
}

// randPoison fills a read buffer before each read, so that a read whose
// data never arrived cannot pass for one that did.
const randPoison = 0xA5

// randPattern is the word at byte off of the 4 KiB chunk at lba (512 B
// blocks) that writeRandPattern writes.
func randPattern(lba uint64, off int) uint64 {
	return (lba+uint64(off/512))<<20 ^ uint64(off%512) ^ 0x7a9d<<48
}

// writeRandPattern writes randPattern over the first span 4 KiB chunks of
// ns through a queue pair of its own.
func writeRandPattern(t testing.TB, c *nvme.Controller, ns *nvme.Namespace, span uint64) {
	t.Helper()
	qp, err := c.NewQueuePair(0)
	if err != nil {
		t.Fatal(err)
	}
	defer qp.Close()
	const chunk = 128 << 10
	b, err := c.Memory().Alloc(chunk)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Memory().Free(b)
	for lba := uint64(0); lba < span*8; lba += chunk / 512 {
		n := min(chunk, int(span*8-lba)*512)
		for off := 0; off < n; off += 8 {
			binary.LittleEndian.PutUint64(b.Bytes[off:], randPattern(lba, off))
		}
		if err := ns.WriteAt(qp, b.Bytes[:n], lba); err != nil {
			t.Fatalf("write the pattern at lba %d: %v", lba, err)
		}
	}
}

// checkRand compares what the read of lba returned with what the chunk
// holds: randPattern, or zeros on a null-co device (zeros).
func checkRand(data []byte, lba uint64, zeros bool) error {
	for off := 0; off < len(data); off += 8 {
		want := uint64(0)
		if !zeros {
			want = randPattern(lba, off)
		}
		if got := binary.LittleEndian.Uint64(data[off:]); got != want {
			return fmt.Errorf("read of lba %d: byte %d is %#016x, want %#016x", lba, off, got, want)
		}
	}
	return nil
}

// randJob counts the requests of a random-read job still cycling. A
// request stops once (it completes after stop, or cannot be resubmitted),
// and the last one to stop closes done. Counting requests rather than
// comparing completions with submissions matters with two pollers: one
// poller may complete a request and be about to resubmit it while the
// other completes the last request in flight, and both would see the
// counts equal. Any goroutine may call its methods.
type randJob struct {
	stop   atomic.Bool
	active atomic.Int64
	done   chan struct{}
}

func newRandJob(requests int) *randJob {
	j := &randJob{done: make(chan struct{})}
	j.active.Store(int64(requests))
	return j
}

// completed is called first in a request's Done: it reports whether the
// request goes on, and stops it when the job is stopping.
func (j *randJob) completed() bool {
	if j.stop.Load() {
		j.stopped()
		return false
	}
	return true
}

// stopped takes a request out of the job for good.
func (j *randJob) stopped() {
	if j.active.Add(-1) == 0 {
		close(j.done)
	}
}

type randResult struct {
	issued, completed, errors int64
	mismatches                int64
	elapsed                   time.Duration
	stats                     totals
	deviceReads               uint64 // SMART Host Read Commands, difference over the run
	deviceUnits               uint64 // SMART Data Units Read (1000 x 512 bytes), difference
}

// randRead runs 4 KiB random reads over the first span 4 KiB chunks of ns
// at depth qd for d on a new group with the given pollers, SPDK perf
// style. Every read's buffer is poisoned first and checked when it
// completes: it must hold randPattern (the chunks were written with
// writeRandPattern), or zeros when zeros is set (QEMU's null-co). It
// returns an error naming what is wrong: a failed I/O, a read that
// returned other data, pollers' counters that disagree with the I/Os
// issued, or the device's own SMART counts of read commands and data
// units that disagree with them.
func randRead(t *testing.T, c *nvme.Controller, ns *nvme.Namespace, cpus []int, qd int, d time.Duration, span uint64, zeros bool) (randResult, error) {
	t.Helper()
	smart0, err := c.SMARTLog()
	if err != nil {
		t.Fatal(err)
	}
	g, err := poller.New([]*nvme.Controller{c}, &poller.Options{CPUs: cpus, Idle: poller.IdleBusy, RouteByCPU: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	h := g.Handle(c)
	mem := vmMem(t, c, qd*4096)
	var issued, completed, errs, bad atomic.Int64
	var firstErr, firstBad atomic.Pointer[error]
	job := newRandJob(qd)
	ios := make([]randIO, qd)
	read := func(x *randIO) error {
		x.lba = x.nextLBA(span)
		for i := range x.data {
			x.data[i] = randPoison
		}
		return ns.Read(&x.req, x.lba, x.data, 0)
	}
	for i := range ios {
		x := &ios[i]
		x.data = mem[i*4096 : (i+1)*4096]
		x.rng = uint64(i)*0x9E3779B97F4A7C15 | 1
		x.req.Done = func(r *nvme.Request) {
			completed.Add(1)
			if r.Err != nil {
				errs.Add(1)
				e := r.Err
				firstErr.CompareAndSwap(nil, &e)
			} else if err := checkRand(x.data, x.lba, zeros); err != nil {
				bad.Add(1)
				firstBad.CompareAndSwap(nil, &err)
			}
			if !job.completed() {
				return
			}
			if err := read(x); err != nil {
				errs.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				job.stopped()
				return
			}
			issued.Add(1)
			if err := h.Submit(r); err != nil {
				issued.Add(-1)
				errs.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				job.stopped()
			}
		}
	}
	// Seed the queue pairs from a thread on each poller's CPU, so that the
	// routing rule spreads them; each poller's Done callbacks then keep
	// its share going.
	start := time.Now()
	for k, cpu := range cpus {
		onCPU(t, cpu, func() {
			for i := k; i < len(ios); i += len(cpus) {
				x := &ios[i]
				if err := read(x); err != nil {
					t.Error(err)
					job.stopped()
					continue
				}
				issued.Add(1)
				if err := h.Submit(&x.req); err != nil {
					issued.Add(-1)
					t.Errorf("seed %d on cpu %d: %v", i, cpu, err)
					job.stopped()
				}
			}
		})
	}
	time.Sleep(d)
	job.stop.Store(true)
	select {
	case <-job.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("qd %d: %d of %d I/Os completed 30 s after stopping", qd, completed.Load(), issued.Load())
	}
	el := time.Since(start)
	res := randResult{issued: issued.Load(), completed: completed.Load(), errors: errs.Load(), mismatches: bad.Load(), elapsed: el}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	res.stats = sum(g.Stats()) // published at exit
	smart1, err := c.SMARTLog()
	if err != nil {
		t.Fatal(err)
	}
	res.deviceReads = smart1.HostReadCommands.Lo - smart0.HostReadCommands.Lo
	res.deviceUnits = smart1.DataUnitsRead.Lo - smart0.DataUnitsRead.Lo

	var problems []error
	if e := firstErr.Load(); e != nil {
		problems = append(problems, fmt.Errorf("%d I/O errors, first: %w", res.errors, *e))
	}
	if e := firstBad.Load(); e != nil {
		problems = append(problems, fmt.Errorf("%d of %d reads returned other data than the chunk holds, first: %w", res.mismatches, res.completed, *e))
	}
	n := uint64(res.issued)
	s := res.stats
	if res.completed != res.issued || s.completed != n || s.taken+s.local != n || s.submitted != n || s.qcompleted != n || s.lat.Count != n || s.inflight != 0 {
		problems = append(problems, fmt.Errorf("issued %d, completed %d, poller counters %+v", res.issued, res.completed, s))
	}
	// The device counts what it executed: one read command per I/O, and
	// data units of 1000 x 512 bytes, each count rounded up.
	if res.deviceReads != n {
		problems = append(problems, fmt.Errorf("the device's SMART log counts %d read commands over the run, %d were issued", res.deviceReads, n))
	}
	if units := n * 4096 / 512; res.deviceUnits < units/1000 || res.deviceUnits > units/1000+1 {
		problems = append(problems, fmt.Errorf("the device's SMART log counts %d data units read over the run, %d reads of 4 KiB make %d", res.deviceUnits, n, units/1000))
	}
	return res, errors.Join(problems...)
}

// vmRandSpan is how many 4 KiB chunks the random reads pick from: 16 MiB.
const vmRandSpan = 4096

// vmRandRead runs randRead over pollers and depths. A null-co device must
// read zeros; on a file-backed one the chunks are written with
// randPattern first, and every read must return its chunk's pattern.
func vmRandRead(t *testing.T, env *vmtest.Env) {
	c, ns := vmOpen(t, env)
	zeros := env.Controllers()[0].Null
	if zeros {
		t.Logf("%s: null-co reads zeros: every read must return 4 KiB of zeros", env.Profile())
	} else {
		writeRandPattern(t, c, ns, vmRandSpan)
		t.Logf("%s: wrote the pattern over %d MiB: every read must return its chunk's pattern", env.Profile(), vmRandSpan*4096>>20)
	}
	for _, cpus := range [][]int{{0}, {0, 1}} {
		for _, qd := range []int{1, 8, 32, 128} {
			name := fmt.Sprintf("pollers=%d/qd=%d", len(cpus), qd)
			t.Run(name, func(t *testing.T) {
				// Half a second each: the runs check data, not rates (16
				// of them over the null and default boots).
				r, err := randRead(t, c, ns, cpus, qd, 500*time.Millisecond, vmRandSpan, zeros)
				if err != nil {
					t.Fatal(err)
				}
				if r.completed == 0 {
					t.Fatal("no read completed in 500 ms")
				}
				iops := float64(r.completed) / r.elapsed.Seconds()
				l := &r.stats.lat
				t.Logf("%s %s: %d reads checked in %v (device: %d read commands, %d data units): %.0f IOPS, latency p50 %v p99 %v mean %v (local %d, ring %d)",
					env.Profile(), name, r.completed, r.elapsed.Round(time.Millisecond), r.deviceReads, r.deviceUnits, iops,
					l.Quantile(0.5), l.Quantile(0.99), l.Mean(), r.stats.local, r.stats.taken)
			})
		}
	}
}

func TestVMRandReadNull(t *testing.T)    { vmRandRead(t, vmtest.Require(t, "null")) }
func TestVMRandReadDefault(t *testing.T) { vmRandRead(t, vmtest.Require(t, "default")) }

// TestVMConcurrentWrites: 8 goroutines write at once through two pollers;
// every block is read back and checked.
func TestVMConcurrentWrites(t *testing.T) {
	env := vmtest.Require(t, "default")
	c, ns := vmOpen(t, env)
	g, err := poller.New([]*nvme.Controller{c}, &poller.Options{CPUs: []int{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	h := g.Handle(c)
	const goroutines, perG, depth = 8, 256, 16 // 8 x 256 x 4 KiB = 8 MiB
	bs := ns.BlockSize()
	per := 4096 / bs
	fill := func(b []byte, lba uint64) {
		for off := 0; off < len(b); off += 8 {
			binary.LittleEndian.PutUint64(b[off:], lba<<20^uint64(off)^0x5eed<<48)
		}
	}
	run := func(gi int, write bool) error {
		mem, err := c.Memory().Alloc(depth * 4096)
		if err != nil {
			return err
		}
		defer c.Memory().Free(mem)
		reqs := make([]nvme.Request, depth)
		free := make(chan int, depth)
		var firstErr atomic.Pointer[error]
		for i := range reqs {
			free <- i
			reqs[i].Done = func(r *nvme.Request) {
				if r.Err != nil {
					e := r.Err
					firstErr.CompareAndSwap(nil, &e)
				}
				free <- i
			}
		}
		check := func(i int, lba uint64) error {
			if write {
				return nil
			}
			want := make([]byte, 4096)
			fill(want, lba)
			got := mem.Bytes[i*4096 : (i+1)*4096]
			for off := range want {
				if got[off] != want[off] {
					return fmt.Errorf("goroutine %d: lba %d: byte %d differs", gi, lba, off)
				}
			}
			return nil
		}
		lbaOf := make([]uint64, depth)
		for k := range perG {
			i := <-free
			if k >= depth {
				if err := check(i, lbaOf[i]); err != nil {
					return err
				}
			}
			lba := uint64((gi*perG + k) * per)
			lbaOf[i] = lba
			buf := mem.Bytes[i*4096 : (i+1)*4096]
			if write {
				fill(buf, lba)
				err = ns.Write(&reqs[i], lba, buf, 0)
			} else {
				clear(buf)
				err = ns.Read(&reqs[i], lba, buf, 0)
			}
			if err != nil {
				return err
			}
			if err := h.Submit(&reqs[i]); err != nil {
				return fmt.Errorf("goroutine %d: submit: %w", gi, err)
			}
		}
		for range depth {
			i := <-free
			if err := check(i, lbaOf[i]); err != nil {
				return err
			}
		}
		if e := firstErr.Load(); e != nil {
			return fmt.Errorf("goroutine %d: %w", gi, *e)
		}
		return nil
	}
	for _, write := range []bool{true, false} {
		var wg sync.WaitGroup
		errs := make([]error, goroutines)
		start := time.Now()
		for gi := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[gi] = run(gi, write)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("write=%v: %d x %d 4 KiB I/Os from %d goroutines in %v", write, goroutines, perG, goroutines, time.Since(start).Round(time.Millisecond))
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	s := sum(g.Stats())
	want := uint64(2 * goroutines * perG)
	if s.completed != want || s.submitted != want || s.qcompleted != want {
		t.Fatalf("counters %+v, want %d I/Os", s, want)
	}
}
