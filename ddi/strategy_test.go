package ddi_test

import (
	"bytes"
	"errors"
	"slices"
	"syscall"
	"testing"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

func repeat(n uint32, times int) []uint32 { return slices.Repeat([]uint32{n}, times) }

// A 1 MiB write with MDTS 2 (16 KiB) splits into 64 pieces of 32 blocks at
// consecutive LBAs and offsets; reading it back with a 12 KiB split gives
// the same bytes.
func TestSplitMDTS(t *testing.T) {
	r := newRig(t, nvmetest.Config{MDTS: 2})
	d := r.dev(1)
	if d.MaxBlocks() != 32 {
		t.Fatalf("max blocks %d, want 32 (16 KiB of 512 B)", d.MaxBlocks())
	}
	const lba = 1000
	data := r.buf(1 << 20)
	fill(data, lba, 512, 1)
	before := r.fake.Stats().Commands(spec.IOWrite)

	bp := newBuf(d.Edev(), ddi.BWrite, lba, data)
	r.rec.start(data)
	if err := run(bp); err != nil {
		t.Fatalf("write: %v", err)
	}
	wantPieces(t, r.rec.stop(), spec.IOWrite, lba, 512, repeat(32, 64))
	if n := r.fake.Stats().Commands(spec.IOWrite) - before; n != 64 {
		t.Errorf("device saw %d writes, want 64", n)
	}
	if bp.Children() != 64 || bp.Inbed() != 64 || bp.Completed() != 1<<20 || bp.Resid != 0 {
		t.Errorf("children %d inbed %d completed %d resid %d", bp.Children(), bp.Inbed(), bp.Completed(), bp.Resid)
	}
	if bp.Flags&(ddi.BDone|ddi.BError) != ddi.BDone {
		t.Errorf("flags %v", bp.Flags)
	}

	// A second device on the same namespace, split at 12 KiB (24 blocks).
	d12 := r.dev(1, ddi.WithMaxTransfer(12<<10))
	got := r.buf(1 << 20)
	rb := newBuf(d12.Edev(), ddi.BRead, lba, got)
	r.rec.start(got)
	if err := run(rb); err != nil {
		t.Fatalf("read: %v", err)
	}
	wantPieces(t, r.rec.stop(), spec.IORead, lba, 512, append(repeat(24, 85), 8))
	if !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
	if r.qp.InFlight() != 0 || r.qp.Waiting() != 0 {
		t.Errorf("in flight %d waiting %d", r.qp.InFlight(), r.qp.Waiting())
	}
}

// NOIOB: no command crosses a multiple of the stripe boundary.
func TestSplitNOIOB(t *testing.T) {
	r := newRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{NOIOB: 64}}})
	d := r.dev(1)
	if d.StripeBlocks() != 64 || d.MaxBlocks() != 256 {
		t.Fatalf("stripe %d max %d, want 64 and 256", d.StripeBlocks(), d.MaxBlocks())
	}
	data := r.buf(300 * 512)
	fill(data, 50, 512, 2)
	bp := newBuf(d.Edev(), ddi.BWrite, 50, data)
	r.rec.start(data)
	if err := run(bp); err != nil {
		t.Fatal(err)
	}
	wantPieces(t, r.rec.stop(), spec.IOWrite, 50, 512, []uint32{14, 64, 64, 64, 64, 30})

	// Both limits: a device capped at 40 blocks splits at 40 and at 64.
	d40 := r.dev(1, ddi.WithMaxTransfer(40*512))
	got := r.buf(300 * 512)
	rb := newBuf(d40.Edev(), ddi.BRead, 50, got)
	r.rec.start(got)
	if err := run(rb); err != nil {
		t.Fatal(err)
	}
	wantPieces(t, r.rec.stop(), spec.IORead, 50, 512, []uint32{14, 40, 24, 40, 24, 40, 24, 40, 24, 30})
	if !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
}

// A request that fits one command uses the buffer's own request: no clone.
func TestNoSplit(t *testing.T) {
	r := newRig(t, nvmetest.Config{})
	d := r.dev(1)
	data := r.buf(8192)
	fill(data, 7, 512, 3)
	free := ddi.DefaultPool().Free()
	bp := newBuf(d.Edev(), ddi.BWrite, 7, data)
	r.rec.start(data)
	if err := run(bp); err != nil {
		t.Fatal(err)
	}
	wantPieces(t, r.rec.stop(), spec.IOWrite, 7, 512, []uint32{16})
	if bp.Children() != 0 || ddi.DefaultPool().Free() != free {
		t.Errorf("children %d, pool free %d -> %d", bp.Children(), free, ddi.DefaultPool().Free())
	}
}

// A media error in one piece fails the parent with that piece's error;
// Resid is that piece's length; the other pieces complete.
func TestMediaErrorInOnePiece(t *testing.T) {
	r := newRig(t, nvmetest.Config{MDTS: 2})
	d := r.dev(1)
	const lba = 4096
	data := r.buf(256 << 10) // 16 pieces of 16 KiB
	fill(data, lba, 512, 4)
	if err := run(newBuf(d.Edev(), ddi.BWrite, lba, data)); err != nil {
		t.Fatal(err)
	}
	// Fail the read touching block lba+70: piece 2 (blocks 64..95).
	r.fake.InjectStatus(nvmetest.IO(spec.IORead).Range(lba+70, 1), spec.SCTMediaError, spec.SCUnrecoveredReadError, 1)
	got := r.buf(256 << 10)
	bp := newBuf(d.Edev(), ddi.BRead, lba, got)
	r.rec.start(got)
	err := run(bp)
	pieces := r.rec.stop()
	if len(pieces) != 16 {
		t.Fatalf("%d pieces, want all 16 submitted", len(pieces))
	}
	var se *nvme.StatusError
	if !errors.As(err, &se) || se.SCT != spec.SCTMediaError || se.SC != spec.SCUnrecoveredReadError {
		t.Fatalf("error %v, want the piece's Unrecovered Read Error", err)
	}
	if !errors.Is(err, nvme.ErrMedia) || !errors.Is(err, syscall.EIO) {
		t.Errorf("error %v: want nvme.ErrMedia and EIO", err)
	}
	var be *ddi.BufError
	if !errors.As(err, &be) || be.Block != lba+64 || be.Bcount != 16<<10 || be.Op != "read" {
		t.Errorf("buf error %+v, want read of block %d, 16 KiB", be, lba+64)
	}
	if bp.Flags&ddi.BError == 0 || bp.Error != err {
		t.Errorf("flags %v error %v", bp.Flags, bp.Error)
	}
	if bp.Resid != 16<<10 || bp.Completed() != 240<<10 || bp.Inbed() != 16 || bp.Children() != 16 {
		t.Errorf("resid %d completed %d inbed %d children %d", bp.Resid, bp.Completed(), bp.Inbed(), bp.Children())
	}
	if r.qp.InFlight() != 0 || r.qp.Waiting() != 0 {
		t.Errorf("in flight %d waiting %d", r.qp.InFlight(), r.qp.Waiting())
	}
	if !bytes.Equal(got[:32<<10], data[:32<<10]) || !bytes.Equal(got[48<<10:], data[48<<10:]) {
		t.Error("the pieces that succeeded read different data")
	}
	// The error survives the reuse of the failed piece's header.
	for range 4 {
		if err := run(newBuf(d.Edev(), ddi.BRead, lba, got)); err != nil {
			t.Fatal(err)
		}
	}
	if !errors.As(bp.Error, &se) || se.SC != spec.SCUnrecoveredReadError || bp.Error.(*ddi.BufError).Block != lba+64 {
		t.Errorf("stored error changed: %v", bp.Error)
	}
}

// The end-of-device rules of biodone(9F)'s RAM-disk example, and the other
// validation, all before any command reaches the device.
func TestEndOfDevice(t *testing.T) {
	const blocks = 4096
	r := newRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: blocks}}})
	d := r.dev(1)
	data := r.buf(4096)
	heap := make([]byte, 4096)
	before := r.fake.Stats().TotalIO()
	for _, tc := range []struct {
		name  string
		flags ddi.Flags
		cmd   ddi.Cmd
		blk   int64
		lblk  uint64
		n     int
		addr  []byte
		errno syscall.Errno // 0: no error
		sent  error
		resid int
	}{
		{name: "read at size is EOF", flags: ddi.BRead, blk: blocks, n: 4096, addr: data, resid: 4096},
		{name: "read at size via Lblkno is EOF", flags: ddi.BRead, lblk: blocks, n: 1024, addr: data, resid: 1024},
		{name: "write at size", blk: blocks, n: 4096, addr: data, errno: syscall.ENXIO, sent: ddi.ErrPastEnd, resid: 4096},
		{name: "delete at size", cmd: ddi.CmdDelete, blk: blocks, n: 4096, errno: syscall.ENXIO, sent: ddi.ErrPastEnd, resid: 4096},
		{name: "read past size", flags: ddi.BRead, blk: blocks + 1, n: 4096, addr: data, errno: syscall.ENXIO, sent: ddi.ErrPastEnd, resid: 4096},
		{name: "negative block", flags: ddi.BRead, blk: -1, n: 512, addr: data, errno: syscall.ENXIO, sent: ddi.ErrPastEnd, resid: 512},
		{name: "read running past the end", flags: ddi.BRead, blk: blocks - 1, n: 1024, addr: data, errno: syscall.ENXIO, sent: ddi.ErrPastEnd, resid: 1024},
		{name: "huge Lblkno", flags: ddi.BRead, lblk: 1 << 63, n: 512, addr: data, errno: syscall.ENXIO, sent: ddi.ErrPastEnd, resid: 512},
		{name: "not a block multiple", flags: ddi.BRead, blk: 0, n: 1000, addr: data, errno: syscall.EINVAL, sent: ddi.ErrInvalid, resid: 1000},
		{name: "Addr too short", blk: 0, n: 8192, addr: data, errno: syscall.EINVAL, sent: ddi.ErrInvalid, resid: 8192},
		{name: "Addr not DMA", blk: 0, n: 4096, addr: heap, errno: syscall.EFAULT, sent: ddi.ErrNotDMA, resid: 4096},
		{name: "Blkno and Lblkno disagree", blk: 1, lblk: 2, n: 512, addr: data, errno: syscall.EINVAL, sent: ddi.ErrInvalid, resid: 512},
		{name: "unknown command", cmd: 9, n: 512, addr: data, errno: syscall.EINVAL, sent: ddi.ErrInvalid, resid: 512},
		{name: "zero length", blk: 5, n: 0, addr: data},
		{name: "last block", flags: ddi.BRead, blk: blocks - 8, n: 4096, addr: data},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bp := newBuf(d.Edev(), tc.flags, tc.blk, tc.addr)
			bp.Lblkno, bp.Bcount, bp.Cmd = tc.lblk, tc.n, tc.cmd
			bp.Resid = -1
			err := run(bp)
			if bp.Flags&ddi.BDone == 0 {
				t.Fatal("not done")
			}
			if bp.Resid != tc.resid {
				t.Errorf("resid %d, want %d", bp.Resid, tc.resid)
			}
			if tc.errno == 0 {
				if err != nil || bp.Flags&ddi.BError != 0 {
					t.Fatalf("error %v flags %v", err, bp.Flags)
				}
				return
			}
			if bp.Flags&ddi.BError == 0 || !errors.Is(err, tc.errno) || !errors.Is(err, tc.sent) || bp.Error != err {
				t.Fatalf("error %v (flags %v), want %v / %v", err, bp.Flags, tc.errno, tc.sent)
			}
		})
	}
	if n := r.fake.Stats().TotalIO() - before; n != 1 { // only "last block" reached the device
		t.Errorf("device saw %d commands, want 1", n)
	}

	// An Edev nobody registered.
	bp := newBuf(ddi.Makedevice(1<<30, 1), ddi.BRead, 0, data)
	if err := run(bp); !errors.Is(err, syscall.ENXIO) || !errors.Is(err, ddi.ErrNoDevice) {
		t.Errorf("unregistered device: %v", err)
	}
	dev := d.Edev()
	ddi.Unregister(dev)
	if err := run(newBuf(dev, ddi.BRead, 0, data)); !errors.Is(err, ddi.ErrNoDevice) {
		t.Errorf("after unregister: %v", err)
	}
	if err := ddi.Unregister(dev); !errors.Is(err, ddi.ErrNoDevice) {
		t.Errorf("second unregister: %v", err)
	}
}

// Delete (deallocate, split at 65536 blocks) and flush.
func TestDeleteFlush(t *testing.T) {
	r := newRig(t, nvmetest.Config{VWC: true})
	d := r.dev(1)
	data := r.buf(64 << 10)
	for _, lba := range []int64{40000, 100000} { // in the first and the second piece
		fill(data, uint64(lba), 512, 5)
		if err := run(newBuf(d.Edev(), ddi.BWrite, lba, data)); err != nil {
			t.Fatal(err)
		}
	}
	del := newBuf(d.Edev(), ddi.BWrite, 40000, nil)
	del.Cmd, del.Bcount = ddi.CmdDelete, 70000*512
	r.rec.start(nil)
	if err := run(del); err != nil {
		t.Fatalf("delete: %v", err)
	}
	got := r.rec.stop()
	// Dataset Management carries its range in memory, not in CDW10-12.
	if len(got) != 2 || got[0].Op != spec.IODatasetManagement || got[1].Op != spec.IODatasetManagement ||
		del.Children() != 2 || del.Resid != 0 {
		t.Errorf("delete pieces %+v children %d resid %d", got, del.Children(), del.Resid)
	}
	if n := r.fake.Stats().Commands(spec.IODatasetManagement); n != 2 {
		t.Errorf("device saw %d deallocates", n)
	}
	rb := r.buf(64 << 10)
	for _, lba := range []int64{40000, 100000} {
		if err := run(newBuf(d.Edev(), ddi.BRead, lba, rb)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rb, make([]byte, len(rb))) {
			t.Errorf("deallocated blocks at %d do not read zeros", lba)
		}
	}
	fl := newBuf(d.Edev(), 0, 0, nil)
	fl.Cmd = ddi.CmdFlush
	if err := run(fl); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if n := r.fake.Stats().Commands(spec.IOFlush); n != 1 {
		t.Errorf("device saw %d flushes", n)
	}
}

// A Submitter that refuses a piece fails it; no further pieces are made;
// Resid counts everything not transferred.
func TestSubmitRefused(t *testing.T) {
	r := newRig(t, nvmetest.Config{MDTS: 2})
	ns := r.ns(1)
	sub := &refuseAfter{sub: r.sync, n: 3}
	d, err := ddi.RegisterDevice(ns, sub)
	if err != nil {
		t.Fatal(err)
	}
	defer ddi.Unregister(d.Edev())
	data := r.buf(128 << 10) // 8 pieces
	bp := newBuf(d.Edev(), ddi.BWrite, 0, data)
	err = run(bp)
	if !errors.Is(err, nvme.ErrRemoved) || !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("error %v", err)
	}
	if bp.Children() != 4 || bp.Inbed() != 4 || bp.Resid != 128<<10-3*16<<10 {
		t.Errorf("children %d inbed %d resid %d", bp.Children(), bp.Inbed(), bp.Resid)
	}
}

type refuseAfter struct {
	sub ddi.Submitter
	n   int
}

func (s *refuseAfter) Submit(r *nvme.Request) error {
	if s.n == 0 {
		return nvme.ErrRemoved
	}
	s.n--
	return s.sub.Submit(r)
}
