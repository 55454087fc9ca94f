package poller_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// TestVMModes writes a pattern through a Group in each mode, on QEMU's
// controller through VFIO with per-queue MSI-X vectors, reads it back and
// checks it; in the interrupt and hybrid modes the pollers slept and took
// interrupts, and the admin queue's vector woke the watcher.
func TestVMModes(t *testing.T) {
	env := vmtest.Require(t, "default")
	cs := env.Controllers()
	addr := env.BindVFIO(t, cs[0])
	for mi, mode := range []poller.Mode{poller.ModePoll, poller.ModeInterrupt, poller.ModeHybrid} {
		t.Run(mode.String(), func(t *testing.T) {
			c, ns := openModeCtrl(t, addr, cs[0].Namespaces[0].NSID, mode != poller.ModePoll)
			g, err := poller.New([]*nvme.Controller{c}, &poller.Options{CPUs: []int{0, 1}, Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			h := g.Handle(c)
			const n, depth = 512, 8
			per := uint64(4096 / ns.BlockSize())
			base := uint64(mi) * n * per // each mode its own blocks
			mem, err := c.Memory().Alloc(depth * 4096)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Memory().Free(mem)
			pattern := func(b []byte, lba uint64) {
				for off := 0; off < len(b); off += 8 {
					binary.LittleEndian.PutUint64(b[off:], lba<<24^uint64(off)^uint64(mi+1)<<56)
				}
			}
			done := make(chan *nvme.Request, depth)
			reqs := make([]nvme.Request, depth)
			for i := range reqs {
				reqs[i].Done = func(r *nvme.Request) { done <- r }
			}
			pass := func(write bool) {
				lbaOf := make([]uint64, depth)
				want := make([]byte, 4096)
				k := 0
				next := func(i int) {
					lbaOf[i] = base + uint64(k)*per
					issue(t, h, ns, &reqs[i], mem.Bytes[i*4096:(i+1)*4096], lbaOf[i], write, pattern)
					k++
				}
				for i := 0; i < depth && k < n; i++ {
					next(i)
				}
				for got := 0; got < n; got++ {
					var r *nvme.Request
					select {
					case r = <-done:
					case <-time.After(30 * time.Second):
						t.Fatalf("%v: no completion in 30 s (%d of %d done)", mode, got, n)
					}
					if r.Err != nil {
						t.Fatalf("%v: %v", mode, r.Err)
					}
					i := 0
					for &reqs[i] != r {
						i++
					}
					if !write {
						pattern(want, lbaOf[i])
						buf := mem.Bytes[i*4096 : (i+1)*4096]
						for off := range want {
							if buf[off] != want[off] {
								t.Fatalf("%v: lba %d byte %d: got %#x want %#x", mode, lbaOf[i], off, buf[off], want[off])
							}
						}
					}
					if got%64 == 63 {
						// A pause: the pollers fall asleep.
						time.Sleep(2 * time.Millisecond)
					}
					if k < n {
						next(i)
					}
				}
			}
			pass(true)
			pass(false)
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			var sleeps, irqs, completed uint64
			for _, s := range g.Stats() {
				sleeps += s.Sleeps
				irqs += s.Interrupts
				completed += s.Completed
			}
			t.Logf("%v: %d completions, %d sleeps, %d interrupts taken, %d admin interrupts", mode, completed, sleeps, irqs, c.AdminInterrupts())
			if completed != 2*n {
				t.Errorf("%v: %d completions, want %d", mode, completed, 2*n)
			}
			switch mode {
			case poller.ModePoll:
				if sleeps != 0 || irqs != 0 || c.AdminInterrupts() != 0 {
					t.Errorf("poll mode: %d sleeps, %d interrupts, %d admin interrupts; want none", sleeps, irqs, c.AdminInterrupts())
				}
			default:
				if sleeps == 0 || irqs == 0 {
					t.Errorf("%v: %d sleeps, %d interrupts taken; want both > 0", mode, sleeps, irqs)
				}
				if c.AdminInterrupts() == 0 {
					t.Errorf("%v: the admin queue's interrupt never woke the watcher (queue creation completed on it)", mode)
				}
			}
		})
	}
}

// issue builds a write (with the pattern) or read of one 4 KiB block at
// lba into r and submits it.
func issue(t *testing.T, h *poller.Handle, ns *nvme.Namespace, r *nvme.Request, buf []byte, lba uint64, write bool, pattern func([]byte, uint64)) {
	t.Helper()
	var err error
	if write {
		pattern(buf, lba)
		err = ns.Write(r, lba, buf, 0)
	} else {
		clear(buf)
		err = ns.Read(r, lba, buf, 0)
	}
	if err == nil {
		err = h.Submit(r)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestVMHybridQuietVector drives QEMU's controller through VFIO in
// ModeHybrid at QD1, each Done resubmitting its read, so the poller reaps
// by polling: after a few completions it disconnects its queue's MSI-X
// vector (VFIO_DEVICE_SET_IRQS, fd -1), and the poller takes almost no
// interrupt on it (its own count, read from the vector's eventfd) where
// it took one per completion before. When the poller falls asleep the
// vector is connected again, and a read submitted then completes.
func TestVMHybridQuietVector(t *testing.T) {
	env := vmtest.Require(t, "default")
	cs := env.Controllers()
	addr := env.BindVFIO(t, cs[0])
	c, ns := openModeCtrl(t, addr, cs[0].Namespaces[0].NSID, true)
	g, err := poller.New([]*nvme.Controller{c}, &poller.Options{CPUs: []int{0}, Mode: poller.ModeHybrid})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	h := g.Handle(c)
	mem, err := c.Memory().Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Memory().Free(mem)
	ch := newReadChain(t, h, ns, mem.Bytes, func(left int32) uint64 { return uint64(left%256) * 8 }, nil)
	const n = 2000
	// The poller's own count of the signals its vector delivered (read
	// from the eventfd when it sleeps, so each run ends with a sleep).
	// Not the guest kernel's /proc/interrupts: disconnecting the vector
	// frees the kernel's interrupt and its count, and its line is gone
	// while the poller polls (which failed this test in ci).
	irqs := func() uint64 {
		time.Sleep(50 * time.Millisecond) // the poller falls asleep, its vector connected, its counts drained
		return g.Stats()[0].Interrupts
	}
	before := irqs()
	ch.run(n, 60*time.Second)
	got := irqs() - before
	t.Logf("%d reads back to back in hybrid mode: %d interrupts on the queue's vector", n, got)
	if got > n/4 {
		t.Errorf("%d interrupts on the queue's vector for %d reads reaped by polling: want the vector disconnected while the poller polls", got, n)
	}
	before = irqs()
	ch.run(1, 60*time.Second)
	t.Logf("one read after a sleep: %d interrupts", irqs()-before)
}

// openModeCtrl opens the vfio-bound controller at addr, with per-queue
// interrupt vectors when irqs is set, closes it when the test ends, and
// returns it with namespace nsid.
func openModeCtrl(t *testing.T, addr string, nsid uint32, irqs bool) (*nvme.Controller, *nvme.Namespace) {
	t.Helper()
	c, err := pcie.Open(addr, &nvme.Options{Interrupts: irqs})
	if err != nil {
		t.Fatalf("open %s: %v", addr, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	ns, err := c.Namespace(nsid)
	if err != nil {
		t.Fatal(err)
	}
	return c, ns
}
