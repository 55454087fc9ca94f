package ddi_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// vmPollerDev opens the profile's first controller through VFIO and
// registers its first namespace behind a group of pollers on cpus.
func vmPollerDev(t *testing.T, env *vmtest.Env, popts *poller.Options, opts ...ddi.Option) (*nvme.Controller, *ddi.Device, *poller.Group) {
	t.Helper()
	c := env.Controllers()[0]
	addr := env.BindVFIO(t, c)
	ctrl, err := pcie.Open(addr, nil)
	if err != nil {
		t.Fatalf("open %s: %v", addr, err)
	}
	t.Cleanup(func() {
		if err := ctrl.Close(); err != nil {
			t.Errorf("close %s: %v", addr, err)
		}
	})
	g, err := poller.New([]*nvme.Controller{ctrl}, popts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	d := vmRegister(t, vmNS(t, ctrl, c.Namespaces[0].NSID), g.Handle(ctrl), opts...)
	return ctrl, d, g
}

func vmAlloc(t *testing.T, ctrl *nvme.Controller, n int) []byte {
	t.Helper()
	b, err := ctrl.Memory().Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctrl.Memory().Free(b) })
	return b.Bytes[:n:n]
}

// The reproduction through VFIO: a header pool of 2, a read of 4
// pieces (MDTS 16 KiB), one poller, Strategy from a Done callback on that
// poller. It completes with the data written before.
func TestVMSplitFromDoneSmallPool(t *testing.T) {
	env := vmtest.Require(t, "small-mdts")
	pool := mustPool(t, 2)
	ctrl, d, g := vmPollerDev(t, env, &poller.Options{CPUs: []int{1}}, ddi.WithPool(pool))
	const size = 64 << 10
	data := vmAlloc(t, ctrl, size)
	fill(data, 2048, 512, 21)
	if err := waitBufRun(t, newBuf(d.Edev(), ddi.BWrite, 2048, data)); err != nil {
		t.Fatal(err)
	}
	got := vmAlloc(t, ctrl, size)
	bp := newBuf(d.Edev(), ddi.BRead, 2048, got)
	trigger := &nvme.Request{Done: func(*nvme.Request) { ddi.Strategy(bp) }}
	if err := d.Namespace().Flush(trigger); err != nil {
		t.Fatal(err)
	}
	if err := g.Handle(ctrl).Submit(trigger); err != nil {
		t.Fatal(err)
	}
	if err := waitBuf(t, bp, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if bp.Children() != 4 || bp.Resid != 0 || !bytes.Equal(got, data) {
		t.Fatalf("children %d resid %d, data equal %v", bp.Children(), bp.Resid, bytes.Equal(got, data))
	}
	if pool.Free() != 2 {
		t.Fatalf("%d headers free, want 2", pool.Free())
	}
}

// Chains of split writes resubmitted from their Iodone on two pollers,
// against a pool of 3 headers and at most 2 pieces in flight each, and a
// 1 MiB write through a tiny ring under FullFail: everything completes
// and reads back intact.
func TestVMSplitPressure(t *testing.T) {
	env := vmtest.Require(t, "small-mdts")
	pool := mustPool(t, 3)
	ctrl, d, _ := vmPollerDev(t, env, &poller.Options{CPUs: []int{0, 1}, QueueDepth: 4, RingSize: 4, Full: poller.FullFail},
		ddi.WithPool(pool), ddi.WithMaxChildren(2))
	const chains, size, rounds = 4, 256 << 10, 4 // 16 pieces each
	data := vmAlloc(t, ctrl, chains*size)
	fill(data, 0, 512, 22)
	var wg sync.WaitGroup
	errs := make(chan error, chains*rounds+chains)
	for i := range chains {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bp := newBuf(d.Edev(), ddi.BWrite, int64(i*size/512), data[i*size:(i+1)*size])
			left := rounds
			done := make(chan struct{})
			bp.Iodone = func(bp *ddi.Buf) int {
				if err := ddi.Geterror(bp); err != nil {
					errs <- err
				}
				if left--; left == 0 {
					close(done)
				} else {
					ddi.Strategy(bp)
				}
				return 0
			}
			ddi.Strategy(bp)
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				errs <- errors.New("chain did not finish")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := vmAlloc(t, ctrl, chains*size)
	if err := waitBufRun(t, newBuf(d.Edev(), ddi.BRead, 0, got)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
	s := d.Stats()
	if pool.Free() != 3 || s.Failed != 0 || s.Parked == 0 {
		t.Fatalf("free %d, stats %+v: want every header back, no failure, splits parked on the pool", pool.Free(), s)
	}
	t.Logf("stats %+v", s)
}

// Getattr on QEMU's controller: the geometry the profile set up, the
// serial as GEOM::ident, Dataset Management (QEMU supports it).
func TestVMGetattr(t *testing.T) {
	env := vmtest.Require(t, "small-mdts")
	_, d, _ := vmPollerDev(t, env, &poller.Options{CPUs: []int{1}})
	c := env.Controllers()[0]
	ns := c.Namespaces[0]
	a, err := ddi.Getattr(d.Edev())
	if err != nil {
		t.Fatal(err)
	}
	if a.SectorSize != ns.BlockSize || a.MediaSize != int64(ns.Blocks)*int64(ns.BlockSize) || a.Ident != c.Serial || !a.CanDelete ||
		a.MaxTransfer != int(d.MaxBlocks())*ns.BlockSize || a.StripeOffset != 0 {
		t.Fatalf("attributes %+v; profile %+v", a, c)
	}
	if v, ok := a.Get("GEOM::candelete"); !ok || v != 1 {
		t.Fatalf("GEOM::candelete = %v, %v", v, ok)
	}
	t.Logf("attributes %+v", a)
}
