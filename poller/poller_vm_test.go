package poller_test

import (
	"encoding/binary"
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
	rng  uint64
}

func (x *randIO) nextLBA(span uint64) uint64 {
	x.rng ^= x.rng << 13
	x.rng ^= x.rng >> 7
	x.rng ^= x.rng << 17
	return x.rng % span * 8 // 4 KiB aligned in 512 B blocks
}

type randResult struct {
	issued, completed, errors int64
	elapsed                   time.Duration
	stats                     totals
}

// randRead runs 4 KiB random reads at depth qd for d on a new group with
// the given pollers, SPDK perf style, and checks that every I/O completed
// without error and that the pollers' counters agree.
func randRead(t *testing.T, c *nvme.Controller, ns *nvme.Namespace, cpus []int, qd int, d time.Duration) randResult {
	t.Helper()
	g, err := poller.New([]*nvme.Controller{c}, &poller.Options{CPUs: cpus, Idle: poller.IdleBusy, RouteByCPU: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	h := g.Handle(c)
	span := ns.Blocks() / 8
	mem := vmMem(t, c, qd*4096)
	var issued, completed, errs atomic.Int64
	var stop atomic.Bool
	var firstErr atomic.Pointer[error]
	ios := make([]randIO, qd)
	done := make(chan struct{})
	for i := range ios {
		x := &ios[i]
		x.data = mem[i*4096 : (i+1)*4096]
		x.rng = uint64(i)*0x9E3779B97F4A7C15 | 1
		x.req.Done = func(r *nvme.Request) {
			if r.Err != nil {
				errs.Add(1)
				e := r.Err
				firstErr.CompareAndSwap(nil, &e)
			}
			n := completed.Add(1)
			if stop.Load() {
				if n == issued.Load() {
					close(done)
				}
				return
			}
			if err := ns.Read(r, x.nextLBA(span), x.data, 0); err != nil {
				errs.Add(1)
				return
			}
			issued.Add(1)
			if err := h.Submit(r); err != nil {
				issued.Add(-1)
				errs.Add(1)
				e := err
				firstErr.CompareAndSwap(nil, &e)
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
				if err := ns.Read(&x.req, x.nextLBA(span), x.data, 0); err != nil {
					t.Error(err)
					return
				}
				issued.Add(1)
				if err := h.Submit(&x.req); err != nil {
					issued.Add(-1)
					t.Errorf("seed %d on cpu %d: %v", i, cpu, err)
				}
			}
		})
	}
	time.Sleep(d)
	stop.Store(true)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("qd %d: %d of %d I/Os completed 30 s after stopping", qd, completed.Load(), issued.Load())
	}
	el := time.Since(start)
	if e := firstErr.Load(); e != nil {
		t.Fatalf("qd %d: %d errors, first: %v", qd, errs.Load(), *e)
	}
	res := randResult{issued: issued.Load(), completed: completed.Load(), errors: errs.Load(), elapsed: el}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	res.stats = sum(g.Stats()) // published at exit
	n := uint64(res.issued)
	s := res.stats
	if res.completed != res.issued || s.completed != n || s.taken+s.local != n || s.submitted != n || s.qcompleted != n || s.lat.Count != n || s.inflight != 0 {
		t.Fatalf("qd %d: issued %d, completed %d, counters %+v", qd, res.issued, res.completed, s)
	}
	return res
}

func vmRandRead(t *testing.T, env *vmtest.Env) {
	c, ns := vmOpen(t, env)
	for _, cpus := range [][]int{{0}, {0, 1}} {
		for _, qd := range []int{1, 8, 32, 128} {
			name := fmt.Sprintf("pollers=%d/qd=%d", len(cpus), qd)
			t.Run(name, func(t *testing.T) {
				r := randRead(t, c, ns, cpus, qd, time.Second)
				iops := float64(r.completed) / r.elapsed.Seconds()
				l := &r.stats.lat
				t.Logf("%s %s: %d reads in %v: %.0f IOPS, latency p50 %v p99 %v mean %v (local %d, ring %d)",
					env.Profile(), name, r.completed, r.elapsed.Round(time.Millisecond), iops,
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
