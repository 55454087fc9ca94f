package nvme_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// vmCtrl opens controller i of the guest's profile through VFIO.
func vmCtrl(t *testing.T, env *vmtest.Env, i int, opts *nvme.Options) (*nvme.Controller, vmtest.Ctrl) {
	t.Helper()
	cs := env.Controllers()
	if i >= len(cs) {
		t.Fatalf("profile %s has %d controllers, want index %d", env.Profile(), len(cs), i)
	}
	addr := env.BindVFIO(t, cs[i])
	c, err := pcie.Open(addr, opts)
	if err != nil {
		t.Fatalf("open %s: %v", addr, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close %s: %v", addr, err)
		}
	})
	return c, cs[i]
}

// vmBuf allocates DMA memory freed when the test ends (before the
// controller closes: cleanups run last-in first-out).
func vmBuf(t *testing.T, c *nvme.Controller, n int) []byte {
	t.Helper()
	b, err := c.Memory().Alloc(n)
	if err != nil {
		t.Fatalf("alloc %d: %v", n, err)
	}
	t.Cleanup(func() { c.Memory().Free(b) })
	return b.Bytes
}

func vmQP(t *testing.T, c *nvme.Controller, depth int) *nvme.QueuePair {
	t.Helper()
	qp, err := c.NewQueuePair(depth)
	if err != nil {
		t.Fatalf("new queue pair: %v", err)
	}
	t.Cleanup(func() {
		if err := qp.Close(); err != nil {
			t.Errorf("close queue pair: %v", err)
		}
	})
	return qp
}

// vmFill writes a pattern that names the LBA of every 8 bytes and a seed.
func vmFill(b []byte, lba uint64, bs int, seed uint64) {
	for off := 0; off+8 <= len(b); off += 8 {
		binary.LittleEndian.PutUint64(b[off:], (lba+uint64(off/bs))<<20^uint64(off%bs)^seed<<48)
	}
}

func checkBringUp(t *testing.T, profile string, env *vmtest.Env) {
	c, want := vmCtrl(t, env, 0, nil)
	if c.State() != nvme.StateReady {
		t.Fatalf("state %v", c.State())
	}
	id := c.Identify()
	if id.MN != "QEMU NVMe Ctrl" || id.SN != want.Serial {
		t.Errorf("model %q serial %q, want QEMU NVMe Ctrl / %s", id.MN, id.SN, want.Serial)
	}
	if v := c.Version(); v.Major() != 1 || v.Minor() != 4 {
		t.Errorf("version %v, want 1.4", v)
	}
	if got, exp := c.MaxTransfer(), min(4096<<want.MDTS, 1<<20); got != exp {
		t.Errorf("max transfer %d, want %d (mdts %d)", got, exp, want.MDTS)
	}
	ids := c.Namespaces()
	if len(ids) != len(want.Namespaces) {
		t.Fatalf("%s: namespaces %v, want %d", profile, ids, len(want.Namespaces))
	}
	for _, w := range want.Namespaces {
		ns, err := c.Namespace(w.NSID)
		if err != nil {
			t.Fatal(err)
		}
		if ns.BlockSize() != w.BlockSize || ns.Blocks() != w.Blocks {
			t.Errorf("ns %d: %d blocks of %d, want %d of %d", w.NSID, ns.Blocks(), ns.BlockSize(), w.Blocks, w.BlockSize)
		}
	}
	if c.IOQueues() < 1 {
		t.Errorf("io queues %d", c.IOQueues())
	}
	// A write and read on every namespace proves the queues work.
	qp := vmQP(t, c, 0)
	for _, w := range want.Namespaces {
		ns, _ := c.Namespace(w.NSID)
		buf := vmBuf(t, c, 8192)
		vmFill(buf, 7, w.BlockSize, uint64(w.NSID))
		if err := ns.WriteAt(qp, buf, 7); err != nil {
			t.Fatalf("ns %d write: %v", w.NSID, err)
		}
		got := vmBuf(t, c, 8192)
		if err := ns.ReadAt(qp, got, 7); err != nil {
			t.Fatalf("ns %d read: %v", w.NSID, err)
		}
		if want.Null {
			continue // null-co drops writes and reads zeros
		}
		if !bytes.Equal(buf, got) {
			t.Errorf("ns %d: read back differs", w.NSID)
		}
	}
}

func TestVMBringUpDefault(t *testing.T) { checkBringUp(t, "default", vmtest.Require(t, "default")) }
func TestVMBringUp4K(t *testing.T)      { checkBringUp(t, "4k", vmtest.Require(t, "4k")) }
func TestVMBringUpMultiNS(t *testing.T) { checkBringUp(t, "multi-ns", vmtest.Require(t, "multi-ns")) }
func TestVMBringUpNull(t *testing.T)    { checkBringUp(t, "null", vmtest.Require(t, "null")) }
func TestVMBringUpSmallMDTS(t *testing.T) {
	checkBringUp(t, "small-mdts", vmtest.Require(t, "small-mdts"))
}

// qemuOptional is what QEMU's emulated controller advertises in OACS
// (optional admin commands) and ONCS (optional NVM commands), by the QEMU
// version it reports as its firmware revision (FR, "7.2.22").
var qemuOptional = map[string]struct{ oacs, oncs uint16 }{
	// QEMU 7.2 (measured in the guest): Format NVM, Namespace Management
	// and Doorbell Buffer Config; Compare, Dataset Management, Write
	// Zeroes, Save/Select, Timestamp and Copy, but not Write
	// Uncorrectable and not Verify.
	"7.2": {
		oacs: spec.OACSFormatNVM | spec.OACSNamespaceMgmt | spec.OACSDoorbellBuffer, // 0x10a
		oncs: spec.ONCSCompare | spec.ONCSDatasetManagement | spec.ONCSWriteZeroes |
			spec.ONCSSaveSelect | spec.ONCSTimestamp | spec.ONCSCopy, // 0x15d
	},
}

// TestVMCommands runs every I/O command. An optional one (ONCS) takes one
// of two branches: the command runs and does what it should, or the
// driver refuses it before it reaches the device. Which branch each one
// must take is known in advance from qemuOptional; the test logs and asserts
// the branch that ran.
func TestVMCommands(t *testing.T) {
	env := vmtest.Require(t, "default")
	c, _ := vmCtrl(t, env, 0, nil)
	ns, err := c.Namespace(1)
	if err != nil {
		t.Fatal(err)
	}
	qp := vmQP(t, c, 0)
	bs := ns.BlockSize()
	buf := vmBuf(t, c, 16*bs)
	got := vmBuf(t, c, 16*bs)
	id := c.Identify()
	const lba = 2048

	version := id.FR // "major.minor" of QEMU's "7.2.22"
	if p := strings.SplitN(id.FR, ".", 3); len(p) >= 2 {
		version = p[0] + "." + p[1]
	}
	adv, known := qemuOptional[version]
	t.Logf("QEMU NVMe controller, firmware %q: OACS %#x, ONCS %#x", id.FR, id.OACS, id.ONCS)
	if !known {
		t.Fatalf("nothing on record for QEMU %s (firmware %q): add what it advertises (OACS %#x, ONCS %#x; nvmectl id-ctrl -H decodes them) to qemuOptional, so that this test knows which branch each command must take", version, id.FR, id.OACS, id.ONCS)
	}
	if id.OACS != adv.oacs || id.ONCS != adv.oncs {
		t.Errorf("OACS %#x, ONCS %#x, but QEMU %s advertises %#x, %#x", id.OACS, id.ONCS, version, adv.oacs, adv.oncs)
	}
	want := adv.oncs

	// optional takes the branch of an optional command that ONCS selects,
	// records it, and checks it against what QEMU advertises. The
	// unsupported branch must be refused before submission (ErrInvalid).
	var ran []string
	optional := func(name string, bit uint16, supports bool, run func(), refused func() error) {
		t.Helper()
		advertised := id.ONCS&bit != 0
		if supports != advertised {
			t.Errorf("%s: Identify's Supports method says %v, ONCS %#x bit %#x says %v", name, supports, id.ONCS, bit, advertised)
		}
		branch := "unsupported (refused before submission)"
		if advertised {
			run()
			branch = "supported (ran on the device)"
		} else if err := refused(); !errors.Is(err, nvme.ErrInvalid) {
			t.Fatalf("%s: not advertised, yet the driver built it: %v, want ErrInvalid", name, err)
		}
		if exp := want&bit != 0; advertised != exp {
			t.Errorf("%s: the %s branch ran, but QEMU %s advertises %s: %v", name, branch, version, name, exp)
		}
		t.Logf("%s: ONCS bit %#x %v: %s branch", name, bit, advertised, branch)
		ran = append(ran, fmt.Sprintf("%s=%v", name, advertised))
	}

	vmFill(buf, lba, bs, 1)
	if err := ns.WriteAt(qp, buf, lba); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := ns.ReadAt(qp, got, lba); err != nil || !bytes.Equal(buf, got) {
		t.Fatalf("read back: err %v equal %v", err, bytes.Equal(buf, got))
	}
	// FUA write and read.
	var r nvme.Request
	vmFill(buf, lba, bs, 2)
	if err := ns.Write(&r, lba, buf, nvme.FUA); err != nil {
		t.Fatal(err)
	}
	if err := ns.Exec(qp, &r); err != nil {
		t.Fatalf("fua write: %v", err)
	}
	if err := ns.ReadAt(qp, got, lba); err != nil || !bytes.Equal(buf, got) {
		t.Fatalf("read after fua write: %v", err)
	}
	if err := ns.Sync(qp); err != nil {
		t.Fatalf("flush: %v", err)
	}

	// Compare: same data matches, other data is a Compare Failure.
	optional("compare", spec.ONCSCompare, id.SupportsCompare(), func() {
		r = nvme.Request{}
		if err := ns.Compare(&r, lba, buf, 0); err != nil {
			t.Fatal(err)
		}
		if err := ns.Exec(qp, &r); err != nil {
			t.Fatalf("compare of equal data: %v", err)
		}
		other := vmBuf(t, c, 16*bs)
		vmFill(other, lba, bs, 99)
		r = nvme.Request{}
		if err := ns.Compare(&r, lba, other, 0); err != nil {
			t.Fatal(err)
		}
		err := ns.Exec(qp, &r)
		var se *nvme.StatusError
		if !errors.As(err, &se) || !errors.Is(err, nvme.ErrMedia) {
			t.Fatalf("compare of different data: %v, want a media StatusError", err)
		}
		t.Logf("compare mismatch: %v", err)
	}, func() error { return ns.Compare(&nvme.Request{}, lba, buf, 0) })

	// Write Zeroes reads back zeros.
	optional("write zeroes", spec.ONCSWriteZeroes, id.SupportsWriteZeroes(), func() {
		r = nvme.Request{}
		if err := ns.WriteZeroes(&r, lba, 16, 0); err != nil {
			t.Fatal(err)
		}
		if err := ns.Exec(qp, &r); err != nil {
			t.Fatalf("write zeroes: %v", err)
		}
		if err := ns.ReadAt(qp, got, lba); err != nil || !bytes.Equal(got, make([]byte, len(got))) {
			t.Fatalf("after write zeroes: err %v, zeros %v", err, bytes.Equal(got, make([]byte, len(got))))
		}
	}, func() error { return ns.WriteZeroes(&nvme.Request{}, lba, 16, 0) })

	// Deallocate, then read: zeros where DLFEAT says deallocated blocks read as zeros.
	optional("dataset management (deallocate)", spec.ONCSDatasetManagement, id.SupportsDSM(), func() {
		vmFill(buf, lba, bs, 3)
		if err := ns.WriteAt(qp, buf, lba); err != nil {
			t.Fatal(err)
		}
		r = nvme.Request{}
		if err := ns.Deallocate(&r, lba, 16); err != nil {
			t.Fatal(err)
		}
		if err := ns.Exec(qp, &r); err != nil {
			t.Fatalf("deallocate: %v", err)
		}
		if err := ns.ReadAt(qp, got, lba); err != nil {
			t.Fatalf("read after deallocate: %v", err)
		}
		if ns.Identify().DLFEAT&7 == 1 && !bytes.Equal(got, make([]byte, len(got))) {
			t.Errorf("deallocated blocks do not read as zeros though DLFEAT=%#x", ns.Identify().DLFEAT)
		}
	}, func() error { return ns.Deallocate(&nvme.Request{}, lba, 16) })

	// Verify.
	optional("verify", spec.ONCSVerify, id.SupportsVerify(), func() {
		r = nvme.Request{}
		if err := ns.Verify(&r, lba, 16, 0); err != nil {
			t.Fatal(err)
		}
		if err := ns.Exec(qp, &r); err != nil {
			t.Fatalf("verify: %v", err)
		}
	}, func() error { return ns.Verify(&nvme.Request{}, lba, 16, 0) })

	// Write Uncorrectable: the blocks fail to read until rewritten.
	optional("write uncorrectable", spec.ONCSWriteUncorrectable, id.SupportsWriteUncorrectable(), func() {
		r = nvme.Request{}
		if err := ns.WriteUncorrectable(&r, lba, 1); err != nil {
			t.Fatal(err)
		}
		if err := ns.Exec(qp, &r); err != nil {
			t.Fatalf("write uncorrectable: %v", err)
		}
		if err := ns.ReadAt(qp, got[:bs], lba); !errors.Is(err, nvme.ErrMedia) {
			t.Fatalf("read of an uncorrectable block: %v, want a media error", err)
		}
		if err := ns.WriteAt(qp, buf[:bs], lba); err != nil {
			t.Fatalf("rewrite: %v", err)
		}
		if err := ns.ReadAt(qp, got[:bs], lba); err != nil {
			t.Fatalf("read after rewrite: %v", err)
		}
	}, func() error { return ns.WriteUncorrectable(&nvme.Request{}, lba, 1) })

	t.Logf("optional commands, supported=true/false: %s", strings.Join(ran, ", "))
	if len(ran) != 5 {
		t.Errorf("%d optional commands took a branch, want 5", len(ran))
	}
}

// TestVMTransferSizes moves every size up to MDTS through PRP lists, from
// buffers at page offsets 0, 4, 512 and 4092, and checks the data.
func TestVMTransferSizes(t *testing.T) {
	env := vmtest.Require(t, "default")
	c, _ := vmCtrl(t, env, 0, nil)
	transferSizes(t, c)
}

// TestVMTransferSizesSGL does the same with SGL data pointers.
func TestVMTransferSizesSGL(t *testing.T) {
	env := vmtest.Require(t, "default")
	c, _ := vmCtrl(t, env, 0, &nvme.Options{SGL: true})
	if !c.Identify().SupportsSGL() {
		t.Fatalf("QEMU's controller advertises SGL support (SGLS %#x) but identify says no", c.Identify().SGLS)
	}
	transferSizes(t, c)
}

func transferSizes(t *testing.T, c *nvme.Controller) {
	ns, _ := c.Namespace(1)
	qp := vmQP(t, c, 0)
	bs, max := ns.BlockSize(), c.MaxTransfer()
	src := vmBuf(t, c, max+8192)
	dst := vmBuf(t, c, max+8192)
	sizes := []int{}
	for n := bs; n <= max; {
		sizes = append(sizes, n)
		switch {
		case n < 16384:
			n += bs
		default:
			n += 4096 + bs // a mix of page multiples and not
		}
	}
	sizes = append(sizes, max)
	count := 0
	for _, off := range []int{0, 4, 512, 4092} {
		for _, n := range sizes {
			if off+n > len(src) {
				continue
			}
			lba := uint64(count%64) * uint64(max/bs)
			w, r := src[off:off+n], dst[off:off+n]
			vmFill(w, lba, bs, uint64(n+off))
			clear(r)
			if err := ns.WriteAt(qp, w, lba); err != nil {
				t.Fatalf("write %d bytes at page offset %d: %v", n, off, err)
			}
			if err := ns.ReadAt(qp, r, lba); err != nil {
				t.Fatalf("read %d bytes at page offset %d: %v", n, off, err)
			}
			if !bytes.Equal(w, r) {
				t.Fatalf("%d bytes at page offset %d: data differs", n, off)
			}
			count++
		}
	}
	t.Logf("%d transfers verified, sizes %d..%d bytes", count, bs, max)
}

// TestVMFullQueue drives a 4-entry queue with 64 requests: they wait for
// command IDs, and every one completes with its data.
func TestVMFullQueue(t *testing.T) {
	env := vmtest.Require(t, "default")
	c, _ := vmCtrl(t, env, 0, nil)
	ns, _ := c.Namespace(1)
	qp := vmQP(t, c, 4)
	bs := ns.BlockSize()
	const n = 64
	bufs := vmBuf(t, c, n*4096)
	reqs := make([]nvme.Request, n)
	done := 0
	for i := range reqs {
		b := bufs[i*4096 : (i+1)*4096]
		vmFill(b, uint64(i*8), bs, 5)
		if err := ns.Write(&reqs[i], uint64(i*8), b, 0); err != nil {
			t.Fatal(err)
		}
		reqs[i].Done = func(r *nvme.Request) {
			if r.Err != nil {
				t.Errorf("write %d: %v", i, r.Err)
			}
			done++
		}
		if err := qp.Submit(&reqs[i]); err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	if qp.Waiting() == 0 {
		t.Fatalf("nothing waited on a 4-entry queue with %d requests", n)
	}
	for done < n {
		qp.Poll()
	}
	if s := qp.Stats(); s.Waits == 0 || s.Completed < n {
		t.Errorf("stats %+v", s)
	}
	got := vmBuf(t, c, 4096)
	for i := 0; i < n; i++ {
		if err := ns.ReadAt(qp, got, uint64(i*8)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, bufs[i*4096:(i+1)*4096]) {
			t.Fatalf("request %d: data differs", i)
		}
	}
}

// TestVMResetInFlight resets the controller while writes are in flight:
// each completes exactly once, and the data is all there afterwards.
func TestVMResetInFlight(t *testing.T) {
	env := vmtest.Require(t, "default")
	c, _ := vmCtrl(t, env, 0, nil)
	ns, _ := c.Namespace(1)
	qp := vmQP(t, c, 32)
	bs := ns.BlockSize()
	const n = 96
	bufs := vmBuf(t, c, n*8192)
	reqs := make([]nvme.Request, n)
	calls := make([]int, n)
	var errs []error
	for i := range reqs {
		b := bufs[i*8192 : (i+1)*8192]
		vmFill(b, uint64(i*16), bs, 6)
		ns.Write(&reqs[i], uint64(i*16), b, 0)
		reqs[i].Done = func(r *nvme.Request) {
			calls[i]++
			if r.Err != nil {
				errs = append(errs, r.Err)
			}
		}
		if err := qp.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	qp.Ring()
	// Reset while nothing polls the queue pair: every command is still
	// owned by it. Those the device completed are reaped after the
	// disable, the others resubmitted; each completes exactly once.
	inflight := qp.InFlight()
	if err := c.Reset(); err != nil {
		t.Fatalf("reset: %v", err)
	}
	total := func() (s int) {
		for _, c := range calls {
			s += c
		}
		return s
	}
	for total() < n {
		qp.Poll()
	}
	for i, k := range calls {
		if k != 1 {
			t.Errorf("request %d completed %d times", i, k)
		}
	}
	if len(errs) > 0 {
		t.Errorf("%d requests failed, first: %v", len(errs), errs[0])
	}
	st := qp.Stats()
	t.Logf("after the reset: %d completions reaped, %d commands resubmitted", st.Reaped, st.Requeued)
	if st.Reaped+st.Requeued != uint64(inflight) {
		t.Errorf("%d reaped + %d resubmitted after the reset, want the %d in flight", st.Reaped, st.Requeued, inflight)
	}
	got := vmBuf(t, c, 8192)
	for i := 0; i < n; i++ {
		if err := ns.ReadAt(qp, got, uint64(i*16)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, bufs[i*8192:(i+1)*8192]) {
			t.Fatalf("request %d: data differs after reset", i)
		}
	}
}

// TestVMCloseReopen closes the controller (CC.SHN) and opens it again: the
// data written before is still there.
func TestVMCloseReopen(t *testing.T) {
	env := vmtest.Require(t, "default")
	ctrl := env.Controllers()[0]
	addr := env.BindVFIO(t, ctrl)
	pattern := make([]byte, 4096)
	vmFill(pattern, 300, 512, 7)
	for round := 0; round < 2; round++ {
		c, err := pcie.Open(addr, nil)
		if err != nil {
			t.Fatalf("round %d open: %v", round, err)
		}
		ns, _ := c.Namespace(1)
		qp, err := c.NewQueuePair(0)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.Memory().Alloc(4096)
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			copy(b.Bytes, pattern)
			if err := ns.WriteAt(qp, b.Bytes, 300); err != nil {
				t.Fatal(err)
			}
		} else {
			if err := ns.ReadAt(qp, b.Bytes, 300); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b.Bytes, pattern) {
				t.Fatal("data written before close is gone")
			}
		}
		qp.Close()
		c.Memory().Free(b)
		if err := c.Close(); err != nil {
			t.Fatalf("round %d close: %v", round, err)
		}
		if c.State() != nvme.StateClosed {
			t.Fatalf("state after close %v", c.State())
		}
	}
}

// TestVMBadInput: requests the driver must refuse before the device sees them.
func TestVMBadInput(t *testing.T) {
	env := vmtest.Require(t, "default")
	c, want := vmCtrl(t, env, 0, nil)
	ns, _ := c.Namespace(1)
	qp := vmQP(t, c, 0)
	dmaBuf := vmBuf(t, c, 8192)
	heap := make([]byte, 4096)
	before := qp.Stats().Submitted
	cases := []struct {
		name string
		err  error
		run  func() error
	}{
		{"not dma memory", nvme.ErrNotDMA, func() error { return ns.ReadAt(qp, heap, 0) }},
		{"misaligned", nvme.ErrInvalid, func() error { return ns.ReadAt(qp, dmaBuf[2:514], 0) }},
		{"not a block multiple", nvme.ErrInvalid, func() error { return ns.ReadAt(qp, dmaBuf[:1000], 0) }},
		{"past the end", nvme.ErrInvalid, func() error { return ns.ReadAt(qp, dmaBuf[:1024], want.Namespaces[0].Blocks-1) }},
		{"zero length", nvme.ErrInvalid, func() error { return ns.ReadAt(qp, dmaBuf[:0], 0) }},
		{"inactive namespace", nvme.ErrNoNamespace, func() error { _, err := c.Namespace(9); return err }},
	}
	for _, tc := range cases {
		err := tc.run()
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	if got := qp.Stats().Submitted; got != before {
		t.Errorf("%d commands reached the device", got-before)
	}
	_ = dma.ErrNotDMA
}

// TestVMNamespaceAttach attaches and detaches a namespace on a running
// controller (QEMU's nvme-subsys: namespace 2 starts detached) with the
// Namespace Attachment command: each change reaches Options.OnEvent as a
// Namespace Attribute Changed notice whose log the driver read (so the
// next notice comes), the rescan makes the attached namespace usable,
// and I/O to the detached one fails with ErrNoNamespace.
func TestVMNamespaceAttach(t *testing.T) {
	env := vmtest.Require(t, "ns-mgmt")
	evs := make(chan nvme.AsyncEvent, 8)
	c, _ := vmCtrl(t, env, 0, &nvme.Options{OnEvent: func(e nvme.AsyncEvent) { evs <- e }})
	if c.Identify().OACS&spec.OACSNamespaceMgmt == 0 {
		t.Fatalf("OACS %#x: no namespace management", c.Identify().OACS)
	}
	if got := c.Namespaces(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("namespaces %v, want [1] (namespace 2 detached)", got)
	}
	qp := vmQP(t, c, 0)
	list := make([]byte, 4096)
	binary.LittleEndian.PutUint16(list, 1)
	binary.LittleEndian.PutUint16(list[2:], c.Identify().CNTLID)
	attach := func(sel uint32) {
		t.Helper()
		cmd := spec.Command{Opcode: uint8(spec.AdminNamespaceAttachment), NSID: 2, CDW10: sel}
		if _, err := c.AdminPassthru(cmd, list, true, "Namespace Attachment"); err != nil {
			t.Fatalf("namespace attachment (sel %d): %v", sel, err)
		}
	}
	event := func(what string) nvme.AsyncEvent {
		t.Helper()
		select {
		case e := <-evs:
			if e.Event.Type() != spec.AEVTypeNotice || e.Event.Info() != spec.AEVNoticeNamespaceChanged || e.LogErr != nil || e.RescanErr != nil {
				t.Fatalf("%s: event %v, log error %v, rescan error %v", what, e.Event, e.LogErr, e.RescanErr)
			}
			t.Logf("%s: event %v: attached %v, detached %v", what, e.Event, e.Attached, e.Detached)
			return e
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no Namespace Attribute Changed event within 10 s", what)
		}
		panic("unreachable")
	}
	buf := vmBuf(t, c, 4096)
	got := vmBuf(t, c, 4096)
	for round := 0; round < 2; round++ {
		attach(0)
		if e := event("attach"); len(e.Attached) != 1 || e.Attached[0] != 2 {
			t.Fatalf("attach: attached %v, want [2]", e.Attached)
		}
		ns, err := c.Namespace(2)
		if err != nil {
			t.Fatal(err)
		}
		if ns.BlockSize() != 4096 || ns.Blocks() != 64<<20/4096 {
			t.Errorf("namespace 2: %d blocks of %d B, want %d of 4096 B", ns.Blocks(), ns.BlockSize(), 64<<20/4096)
		}
		vmFill(buf, 9, ns.BlockSize(), uint64(round))
		if err := ns.WriteAt(qp, buf, 9); err != nil {
			t.Fatalf("write to the attached namespace: %v", err)
		}
		if err := ns.ReadAt(qp, got, 9); err != nil || !bytes.Equal(got, buf) {
			t.Fatalf("read back from the attached namespace: %v (equal %t)", err, bytes.Equal(got, buf))
		}
		attach(1)
		if e := event("detach"); len(e.Detached) != 1 || e.Detached[0] != 2 {
			t.Fatalf("detach: detached %v, want [2]", e.Detached)
		}
		if err := ns.ReadAt(qp, got, 9); !errors.Is(err, nvme.ErrNoNamespace) {
			t.Errorf("read of the detached namespace: %v, want ErrNoNamespace", err)
		}
		if got := c.Namespaces(); len(got) != 1 || got[0] != 1 {
			t.Errorf("namespaces after the detach %v, want [1]", got)
		}
	}
}
