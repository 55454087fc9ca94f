package ddi_test

import (
	"bytes"
	"errors"
	"slices"
	"syscall"
	"testing"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// vmOpen opens the first n controllers of the profile in one pcie.System,
// so that one allocator maps every buffer for all of them. Cleanups close
// queue pairs, then controllers, then the system.
func vmOpen(t *testing.T, env *vmtest.Env, n int) (*dma.Allocator, []*nvme.Controller, []*nvme.QueuePair) {
	t.Helper()
	cs := env.Controllers()
	if len(cs) < n {
		t.Fatalf("profile %s has %d controllers, want %d", env.Profile(), len(cs), n)
	}
	sys, err := pcie.NewSystem()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sys.Close(); err != nil {
			t.Errorf("close system: %v", err)
		}
	})
	var ctrls []*nvme.Controller
	var qps []*nvme.QueuePair
	for _, c := range cs[:n] {
		addr := env.BindVFIO(t, c)
		ctrl, err := sys.Open(addr, nil)
		if err != nil {
			t.Fatalf("open %s: %v", addr, err)
		}
		t.Cleanup(func() {
			if err := ctrl.Close(); err != nil {
				t.Errorf("close %s: %v", addr, err)
			}
		})
		qp, err := ctrl.NewQueuePair(0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { qp.Close() })
		ctrls = append(ctrls, ctrl)
		qps = append(qps, qp)
	}
	return sys.Memory(), ctrls, qps
}

func vmNS(t *testing.T, c *nvme.Controller, nsid uint32) *nvme.Namespace {
	t.Helper()
	ns, err := c.Namespace(nsid)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func vmRegister(t *testing.T, ns *nvme.Namespace, sub ddi.Submitter, opts ...ddi.Option) *ddi.Device {
	t.Helper()
	d, err := ddi.RegisterDevice(ns, sub, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ddi.Unregister(d.Edev()) })
	return d
}

// small-mdts: a 1 MiB write splits at 16 KiB into the expected pieces;
// a second device splitting at 12 KiB reads the same bytes back.
func TestVMSplitSmallMDTS(t *testing.T) {
	env := vmtest.Require(t, "small-mdts")
	mem, ctrls, qps := vmOpen(t, env, 1)
	ns := vmNS(t, ctrls[0], 1)
	bs := ns.BlockSize()
	rec := &recorder{sub: ddi.NewSyncSubmitter(qps[0]), mem: mem}
	d := vmRegister(t, ns, rec)
	per := uint32(16384 / bs)
	if d.MaxBlocks() != per || ctrls[0].MaxTransfer() != 16384 {
		t.Fatalf("max blocks %d (controller max transfer %d), want %d", d.MaxBlocks(), ctrls[0].MaxTransfer(), per)
	}
	const lba = 1000
	data := allocBuf(t, mem, 1<<20)
	fill(data, lba, bs, 11)
	bp := newBuf(d.Edev(), ddi.BWrite, lba, data)
	rec.start(data)
	if err := run(bp); err != nil {
		t.Fatalf("write: %v", err)
	}
	wantPieces(t, rec.stop(), spec.IOWrite, lba, bs, repeat(per, 64))
	if bp.Children() != 64 || bp.Inbed() != 64 || bp.Resid != 0 {
		t.Errorf("children %d inbed %d resid %d", bp.Children(), bp.Inbed(), bp.Resid)
	}

	d12 := vmRegister(t, ns, rec, ddi.WithMaxTransfer(12<<10))
	got := allocBuf(t, mem, 1<<20)
	rb := newBuf(d12.Edev(), ddi.BRead, lba, got)
	rec.start(got)
	if err := run(rb); err != nil {
		t.Fatalf("read: %v", err)
	}
	per12 := uint32(12 << 10 / bs)
	sizes := repeat(per12, (1<<20)/(12<<10))
	if rest := uint32((1 << 20) % (12 << 10) / bs); rest > 0 {
		sizes = append(sizes, rest)
	}
	wantPieces(t, rec.stop(), spec.IORead, lba, bs, sizes)
	if !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
	if qps[0].InFlight() != 0 {
		t.Errorf("in flight %d", qps[0].InFlight())
	}
}

// media-errors: a read spanning one of the failing LBAs fails the parent
// with the piece's error; Resid is that piece; the others complete.
func TestVMMediaErrorPiece(t *testing.T) {
	env := vmtest.Require(t, "media-errors")
	mem, ctrls, qps := vmOpen(t, env, 1)
	ns := vmNS(t, ctrls[0], 1)
	bs := ns.BlockSize()
	bad := env.Controllers()[0].Namespaces[0].MediaErrorLBAs
	if !slices.Contains(bad, 1000) {
		t.Fatalf("media error LBAs %v: want 1000 among them", bad)
	}
	d := vmRegister(t, ns, ddi.NewSyncSubmitter(qps[0]), ddi.WithMaxTransfer(16<<10))
	per := 16 << 10 / bs
	start := int64(1000 - 1000%per - per) // the failing piece is the second
	const size = 128 << 10
	pieces := size / (16 << 10)
	data := allocBuf(t, mem, size)
	fill(data, uint64(start), bs, 12)
	if err := run(newBuf(d.Edev(), ddi.BWrite, start, data)); err != nil { // writes succeed
		t.Fatalf("write: %v", err)
	}
	got := allocBuf(t, mem, size)
	bp := newBuf(d.Edev(), ddi.BRead, start, got)
	err := run(bp)
	t.Logf("read error: %v", err)
	var se *nvme.StatusError
	if !errors.As(err, &se) || !errors.Is(err, nvme.ErrMedia) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("error %v, want a media error (EIO)", err)
	}
	var be *ddi.BufError
	if !errors.As(err, &be) || be.Block != start+int64(per) || be.Bcount != 16<<10 {
		t.Errorf("failed piece %+v, want block %d", be, start+int64(per))
	}
	if bp.Flags&ddi.BError == 0 || bp.Resid != 16<<10 || bp.Children() != pieces || bp.Inbed() != pieces ||
		bp.Completed() != int64(size-16<<10) {
		t.Errorf("flags %v resid %d children %d inbed %d completed %d", bp.Flags, bp.Resid, bp.Children(), bp.Inbed(), bp.Completed())
	}
	if !bytes.Equal(got[:16<<10], data[:16<<10]) || !bytes.Equal(got[32<<10:], data[32<<10:]) {
		t.Error("the pieces that succeeded read different data")
	}
	if qps[0].InFlight() != 0 || qps[0].Waiting() != 0 {
		t.Errorf("in flight %d waiting %d", qps[0].InFlight(), qps[0].Waiting())
	}
}

// two-ctrl: the striping example across the two controllers; each
// controller, read directly, holds exactly its stripe units.
func TestVMStripeTwoCtrl(t *testing.T) {
	env := vmtest.Require(t, "two-ctrl")
	mem, ctrls, qps := vmOpen(t, env, 2)
	s := &stripe{unit: 8}
	var nss [2]*nvme.Namespace
	for i := range 2 {
		nss[i] = vmNS(t, ctrls[i], 1)
		s.devs[i] = vmRegister(t, nss[i], ddi.NewSyncSubmitter(qps[i])).Edev()
	}
	bs := nss[0].BlockSize()
	s.bsize = bs
	const lstart, size = 16384, 256 << 10 // logical blocks of the stripe
	data := allocBuf(t, mem, size)
	fill(data, lstart, bs, 13)
	bp := ddi.Getrbuf(ddi.KMSleep)
	bp.Blkno, bp.Bcount, bp.Addr = lstart, size, data
	s.strategy(bp)
	if err := ddi.Biowait(bp); err != nil {
		t.Fatalf("stripe write: %v", err)
	}
	nblk := int64(size / bs)
	if bp.Children() != int(nblk/s.unit) || bp.Resid != 0 {
		t.Errorf("children %d resid %d", bp.Children(), bp.Resid)
	}
	ddi.Freerbuf(bp)

	// Read each controller directly and map every block back.
	half := allocBuf(t, mem, size/2)
	for i := range 2 {
		dstart := (lstart / s.unit / 2) * s.unit
		if err := nss[i].ReadAt(qps[i], half, uint64(dstart)); err != nil {
			t.Fatalf("controller %d read: %v", i, err)
		}
		for b := int64(0); b < nblk/2; b++ {
			dblk := dstart + b
			lunit := 2*(dblk/s.unit) + int64(i)
			lblk := lunit*s.unit + dblk%s.unit
			off := int(lblk-lstart) * bs
			if !bytes.Equal(half[int(b)*bs:int(b+1)*bs], data[off:off+bs]) {
				t.Fatalf("controller %d block %d: not logical block %d", i, dblk, lblk)
			}
		}
	}

	// Read back through the stripe from an unaligned block.
	got := allocBuf(t, mem, size)
	bp = ddi.Getrbuf(ddi.KMSleep)
	bp.Flags |= ddi.BRead
	bp.Blkno, bp.Bcount, bp.Addr = lstart+3, size-8*bs, got[:size-8*bs]
	s.strategy(bp)
	if err := ddi.Biowait(bp); err != nil {
		t.Fatalf("stripe read: %v", err)
	}
	ddi.Freerbuf(bp)
	if !bytes.Equal(got[:size-8*bs], data[3*bs:size-5*bs]) {
		t.Fatal("stripe read back differs")
	}
}
