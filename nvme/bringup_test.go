package nvme_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// keepOpen is a Bus whose Close leaves the fake running, so a test can
// open the driver on it again.
type keepOpen struct{ *nvmetest.Controller }

func (keepOpen) Close() error { return nil }

func TestOpenIdentify(t *testing.T) {
	cfg := nvmetest.Config{
		Serial: "SN-4711", Model: "Test Model X", Firmware: "FW42",
		MDTS: 6, MaxQueuePairs: 4,
		Namespaces: []nvmetest.NSConfig{{Blocks: 2048, BlockSize: 512}, {Blocks: 256, BlockSize: 4096, NOIOB: 64}},
	}
	r := newRig(t, cfg, nil)
	c := r.ctrl
	if c.State() != nvme.StateReady {
		t.Fatalf("state %v, want ready", c.State())
	}
	id := c.Identify()
	if id.SN != cfg.Serial || id.MN != cfg.Model || id.FR != cfg.Firmware {
		t.Errorf("identify SN %q MN %q FR %q, want %q %q %q", id.SN, id.MN, id.FR, cfg.Serial, cfg.Model, cfg.Firmware)
	}
	if got := c.MaxTransfer(); got != 256<<10 {
		t.Errorf("max transfer %d, want %d (MDTS 6)", got, 256<<10)
	}
	if got := c.IOQueues(); got != 4 {
		t.Errorf("I/O queues granted %d, want 4", got)
	}
	if got := c.Version(); got != spec.VS1_4 {
		t.Errorf("version %v", got)
	}
	if got := c.Namespaces(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("namespaces %v, want [1 2]", got)
	}
	for i, nc := range cfg.Namespaces {
		ns := r.ns(uint32(i + 1))
		if ns.BlockSize() != nc.BlockSize || ns.Blocks() != nc.Blocks || ns.OptimalIOBoundary() != uint32(nc.NOIOB) {
			t.Errorf("namespace %d: block size %d blocks %d noiob %d, want %d %d %d", i+1, ns.BlockSize(), ns.Blocks(), ns.OptimalIOBoundary(), nc.BlockSize, nc.Blocks, nc.NOIOB)
		}
		if want := uint32(256 << 10 / nc.BlockSize); ns.MaxBlocks() != want {
			t.Errorf("namespace %d: max blocks %d, want %d", i+1, ns.MaxBlocks(), want)
		}
	}
	d, err := c.NamespaceDescriptors(2)
	if err != nil {
		t.Fatal(err)
	}
	eui, nguid, uuid := nvmetest.NamespaceIDs(cfg.Serial, 2)
	want := map[uint8][]byte{spec.NIDTEUI64: eui[:], spec.NIDTNGUID: nguid[:], spec.NIDTUUID: uuid[:], spec.NIDTCSI: {0}}
	if len(d) != len(want) {
		t.Fatalf("descriptors %v", d)
	}
	for _, x := range d {
		if !bytes.Equal(x.ID, want[x.Type]) {
			t.Errorf("descriptor type %d: %x, want %x", x.Type, x.ID, want[x.Type])
		}
	}
	ids, err := c.ActiveNamespaces(1)
	if err != nil || len(ids) != 1 || ids[0] != 2 {
		t.Errorf("active namespaces after 1: %v %v", ids, err)
	}
	if _, err := c.NewQueuePair(8); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		r.qp(8)
	}
	if _, err := c.NewQueuePair(8); err == nil {
		t.Error("a fifth queue pair was created with four granted")
	}
}

func TestCloseShutsDownAndReopens(t *testing.T) {
	fake, err := nvmetest.New(nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 64}}})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	defer testrig.CheckHost(t, fake)
	r := &rig{t: t, fake: fake}
	if r.mem, err = newAllocator(fake); err != nil {
		t.Fatal(err)
	}
	defer r.mem.Close()
	data, err := r.mem.Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	pat(data.Bytes, 1)
	want := bytes.Clone(data.Bytes)
	for round := 0; round < 2; round++ {
		before := r.mem.Stats().Buffers
		c, err := nvme.Open(keepOpen{fake}, r.mem, &nvme.Options{IOQueueDepth: 16})
		if err != nil {
			t.Fatalf("round %d: open: %v", round, err)
		}
		q, err := c.NewQueuePair(0)
		if err != nil {
			t.Fatal(err)
		}
		ns, _ := c.Namespace(1)
		if round == 0 {
			if err := ns.WriteAt(q, data.Bytes, 8); err != nil {
				t.Fatal(err)
			}
		} else {
			clear(data.Bytes)
			if err := ns.ReadAt(q, data.Bytes, 8); err != nil {
				t.Fatal(err)
			}
			checkData(t, "after reopen", data.Bytes, want)
		}
		shut := fake.Stats().Shutdowns
		if err := c.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if c.State() != nvme.StateClosed {
			t.Errorf("state after close %v", c.State())
		}
		if got := fake.Stats().Shutdowns; got != shut+1 {
			t.Errorf("shutdowns %d, want %d", got, shut+1)
		}
		// Shut down, then disabled: the controller reaches no memory
		// once Close returns.
		csts := spec.CSTS(fake.Registers().Read32(spec.RegCSTS))
		cc := spec.CC(fake.Registers().Read32(spec.RegCC))
		if cc.EN() || csts.RDY() {
			t.Errorf("after close CC %v CSTS %v: want EN and RDY clear", cc, csts)
		}
		if got := r.mem.Stats().Buffers; got != before {
			t.Errorf("DMA buffers %d after close, %d before open", got, before)
		}
		if err := q.Submit(&nvme.Request{Done: func(*nvme.Request) {}}); !errors.Is(err, nvme.ErrClosed) {
			t.Errorf("submit after close: %v, want ErrClosed", err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
	}
	r.mem.Free(data)
}

func TestAdminCommands(t *testing.T) {
	r := newRig(t, nvmetest.Config{Firmware: "FWX", Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}}, &nvme.Options{WatchInterval: 2 * time.Millisecond})
	c, q, ns := r.ctrl, r.qp(16), r.ns(1)
	b := r.buf(8192)
	for i := 0; i < 5; i++ {
		if err := ns.WriteAt(q, b, uint64(16*i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ns.ReadAt(q, b[:4096], 0); err != nil {
		t.Fatal(err)
	}
	smart, err := c.SMARTLog()
	if err != nil {
		t.Fatal(err)
	}
	if smart.CompositeTemperature != 313 {
		t.Errorf("composite temperature %d K, want 313", smart.CompositeTemperature)
	}
	if w, _ := smart.HostWriteCommands.Uint64(); w != 5 {
		t.Errorf("host write commands %d, want 5", w)
	}
	if rd, _ := smart.HostReadCommands.Uint64(); rd != 1 {
		t.Errorf("host read commands %d, want 1", rd)
	}
	if u, _ := smart.DataUnitsWritten.Uint64(); u != 1 { // 40 KiB = 80 units of 512 B: rounds up to 1 thousand
		t.Errorf("data units written %d, want 1", u)
	}
	// NUMD and offset: 16 bytes at 0x40 are the host read/write counters.
	full := make([]byte, 512)
	if err := c.GetLogPage(spec.LogSMART, spec.NSIDAll, 0, false, 0, full); err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 32)
	if err := c.GetLogPage(spec.LogSMART, spec.NSIDAll, 0, false, 0x40, part); err != nil {
		t.Fatal(err)
	}
	checkData(t, "SMART at offset 0x40", part, full[0x40:0x60])
	if err := c.GetLogPage(spec.LogSMART, spec.NSIDAll, 0, false, 1024, part); err == nil {
		t.Error("log page offset past the end accepted")
	}

	fw, err := c.FirmwareSlotLog()
	if err != nil {
		t.Fatal(err)
	}
	if fw.ActiveSlot() != 1 || fw.FRS[0] != "FWX" {
		t.Errorf("firmware slot log: active %d FRS1 %q", fw.ActiveSlot(), fw.FRS[0])
	}
	eff, err := c.CommandEffectsLog()
	if err != nil {
		t.Fatal(err)
	}
	if !eff.IO[spec.IORead].CSUPP() || !eff.IO[spec.IOWrite].LBCC() || !eff.Admin[spec.AdminIdentify].CSUPP() || eff.IO[0x7e].CSUPP() {
		t.Error("commands supported and effects log is wrong")
	}

	// An error shows up in the Error Information log.
	r.fake.InjectStatus(nvmetest.IO(spec.IORead), spec.SCTMediaError, spec.SCUnrecoveredReadError, 1)
	if err := ns.ReadAt(q, b[:512], 7); !errors.Is(err, nvme.ErrMedia) {
		t.Fatalf("read: %v, want a media error", err)
	}
	el, err := c.ErrorLog(4)
	if err != nil {
		t.Fatal(err)
	}
	if len(el) == 0 || el[0].LBA != 7 || el[0].SQID != q.ID() || el[0].Status.SC() != spec.SCUnrecoveredReadError {
		t.Errorf("error log %+v", el)
	}

	// Features: stored values come back; Number of Queues is the grant.
	if _, err := c.SetFeature(spec.FeatureArbitration, 0, 0x01020304, nil, false); err != nil {
		t.Fatal(err)
	}
	if v, err := c.GetFeature(spec.FeatureArbitration, spec.SelCurrent, 0, 0, nil); err != nil || v != 0x01020304 {
		t.Errorf("arbitration %#x %v", v, err)
	}
	if v, err := c.GetFeature(spec.FeatureNumberOfQueues, spec.SelCurrent, 0, 0, nil); err != nil || v != 15<<16|15 {
		t.Errorf("number of queues %#x %v, want 16 of each", v, err)
	}
	if _, err := c.GetFeature(0x77, spec.SelCurrent, 0, 0, nil); err == nil {
		t.Error("unknown feature accepted")
	}

	// Asynchronous events reach Events.
	ev := uint32(spec.AEVTypeNotice) | uint32(spec.AEVNoticeNamespaceChanged)<<8 | uint32(spec.LogChangedNamespaces)<<16
	r.fake.TriggerEvent(ev)
	deadline := time.Now().Add(2 * time.Second)
	for len(c.Events()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("asynchronous event not delivered")
		}
		time.Sleep(time.Millisecond)
	}
	if got := c.Events()[0].Event; uint32(got) != ev {
		t.Errorf("event %v, want %#x", got, ev)
	}

	// Abort of a command that is not outstanding.
	if ok, err := c.Abort(q.ID(), 0x1234); err != nil || ok {
		t.Errorf("abort of nothing: aborted %t err %v", ok, err)
	}

	// Format to 4 KiB blocks: the namespace is re-read and erased.
	pat(b, 3)
	if err := ns.WriteAt(q, b[:4096], 0); err != nil {
		t.Fatal(err)
	}
	if err := c.FormatNVM(1, 1, 0); err != nil {
		t.Fatal(err)
	}
	ns2 := r.ns(1)
	if ns2.BlockSize() != 4096 || ns2.Blocks() != 512 {
		t.Fatalf("after format: block size %d, %d blocks", ns2.BlockSize(), ns2.Blocks())
	}
	if err := ns2.ReadAt(q, b[:4096], 0); err != nil {
		t.Fatal(err)
	}
	checkData(t, "after format", b[:4096], make([]byte, 4096))
	if err := c.FormatNVM(1, 7, 0); err == nil {
		t.Error("format with a missing LBA format accepted")
	}
}

// TestCFSAtEnable: a controller that reports CSTS.CFS when enabled fails
// Open at once with an error naming CSTS.CFS, not after an Identify
// timed out.
func TestCFSAtEnable(t *testing.T) {
	fake, err := nvmetest.New(nvmetest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	defer testrig.CheckHost(t, fake)
	mem, err := newAllocator(fake)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := mem.Close(); err != nil {
			t.Errorf("leak: %v", err)
		}
	}()
	fake.FatalAtEnable(1)
	start := time.Now()
	c, err := nvme.Open(fake, mem, &nvme.Options{AdminTimeout: 5 * time.Second})
	if err == nil {
		c.Close()
		t.Fatal("open of a controller fatal at enable succeeded")
	}
	if d := time.Since(start); d > 2*time.Second || !errors.Is(err, nvme.ErrDevice) || !strings.Contains(err.Error(), "CSTS.CFS") {
		t.Errorf("open after %v: %v; want at once, ErrDevice naming CSTS.CFS", d, err)
	}
}

// TestCloseFailedController: a controller whose reset failed half way is
// still enabled, its admin queue live; Close disables it before freeing
// its memory (the fake's host-error check sees the order).
func TestCloseFailedController(t *testing.T) {
	r := newRig(t, smallNS(), &faultOpts)
	r.qp(16)
	r.fake.InjectStatus(nvmetest.Admin(spec.AdminSetFeatures), spec.SCTGeneric, spec.SCInternalError, -1)
	if err := r.ctrl.Reset(); err == nil {
		t.Fatal("reset succeeded with Set Features failing")
	}
	if s := r.ctrl.State(); s != nvme.StateFailed {
		t.Fatalf("state %v after the failed reset, want failed", s)
	}
	r.fake.ClearFaults()
	// Cleanup closes the queue pair and the controller, then checks
	// for host errors and leaks.
}

// TestCloseCannotDisable: a controller that cannot be disabled (CC
// ignored, function reset failing) keeps its memory: Close logs that it
// leaves it mapped, naming the controller, and frees none of it, so no
// IOVA of it is reused while the device may still write there.
func TestCloseCannotDisable(t *testing.T) {
	fake, err := nvmetest.New(nvmetest.Config{Serial: "WEDGED1"})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	mem, err := newAllocator(fake)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testrig.Log{}
	c, err := nvme.Open(fake, mem, &nvme.Options{Logf: logs.Logf, AdminTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	q, err := c.NewQueuePair(16)
	if err != nil {
		t.Fatal(err)
	}
	before := mem.Stats()
	fake.Wedge()
	q.Close()
	if err := c.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	if line := logs.Find("could not be disabled"); !strings.Contains(line, "WEDGED1") || !strings.Contains(line, "bytes of DMA memory mapped") {
		t.Errorf("log %q: want a line naming the controller and the memory left mapped", logs.Lines())
	}
	if after := mem.Stats(); after.Buffers != before.Buffers || after.Frees != before.Frees {
		t.Errorf("DMA buffers %d (%d frees) after close, %d (%d frees) before: the memory of a controller that may still write was freed",
			after.Buffers, after.Frees, before.Buffers, before.Frees)
	}
	testrig.CheckHost(t, fake)
	if err := mem.Close(); !errors.Is(err, dma.ErrLeaked) {
		t.Errorf("allocator close: %v, want the leak reported", err)
	}
}

// TestLogPagesWithoutLPAOffsets: a controller without LPA bit 2 takes no
// log page offset: the driver reads a log with one command from its
// start (8 KiB here, not two pieces at offsets 0 and 4096), and refuses
// an offset before sending anything. With LPA the offset is used.
func TestLogPagesWithoutLPAOffsets(t *testing.T) {
	for _, noOffsets := range []bool{true, false} {
		r := newRig(t, nvmetest.Config{NoLogOffsets: noOffsets}, nil)
		c := r.ctrl
		logs := r.fake.Stats().AdminCommands(spec.AdminGetLogPage)
		b := make([]byte, 8192)
		if err := c.GetLogPage(spec.LogErrorInformation, 0, 0, false, 0, b); err != nil {
			t.Fatalf("no offsets %t: error log of 8 KiB: %v", noOffsets, err)
		}
		if n := r.fake.Stats().AdminCommands(spec.AdminGetLogPage) - logs; n != 1 {
			t.Errorf("no offsets %t: 8 KiB read with %d commands, want 1", noOffsets, n)
		}
		if _, err := c.ErrorLog(64); err != nil {
			t.Errorf("no offsets %t: error log: %v", noOffsets, err)
		}
		part := make([]byte, 32)
		err := c.GetLogPage(spec.LogSMART, spec.NSIDAll, 0, false, 0x40, part)
		if noOffsets != errors.Is(err, nvme.ErrInvalid) {
			t.Errorf("no offsets %t: SMART log at offset 0x40: %v", noOffsets, err)
		}
	}
}

// TestShutdownWaitCapped: a controller that claims an RTD3E of 71 minutes
// and never completes its shutdown holds Close up for
// Options.ShutdownTimeout, not for RTD3E.
func TestShutdownWaitCapped(t *testing.T) {
	cfg := nvmetest.Config{IdentifyController: func(b []byte) { binary.LittleEndian.PutUint32(b[0x58:], 0xffffffff) }}
	r := newRig(t, cfg, &nvme.Options{ShutdownTimeout: 300 * time.Millisecond})
	if got := time.Duration(r.ctrl.Identify().RTD3E) * time.Microsecond; got < time.Hour {
		t.Fatalf("RTD3E %v", got)
	}
	r.fake.Stall(time.Hour) // CC.SHN is never seen
	done := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		r.ctrl.Close() // the disable after it fails too; the function reset works
		done <- time.Since(start)
	}()
	select {
	case d := <-done:
		if d < 300*time.Millisecond || d > 5*time.Second {
			t.Errorf("close took %v, want the 300 ms shutdown wait and the disable", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("close still waits for the shutdown after 30 s (RTD3E not capped)")
	}
}

// TestCRTOReadyTimeout: a controller with NVMe 2.0 ready timeouts
// (CAP.CRMS.CRWMS) that becomes ready after 800 ms, past its CAP.TO of
// 500 ms but within CRTO.CRWMT (2 s), is waited for.
func TestCRTOReadyTimeout(t *testing.T) {
	cfg := nvmetest.Config{TO: 1, CRWMT: 2 * time.Second, ReadyDelay: 800 * time.Millisecond}
	start := time.Now()
	r := newRig(t, cfg, nil)
	if d := time.Since(start); d < 800*time.Millisecond {
		t.Errorf("open after %v, before the controller was ready", d)
	}
	if c := r.ctrl.Capabilities(); c.TO() != 500*time.Millisecond || c.CRMS()&1 == 0 {
		t.Errorf("CAP %v", c)
	}
}
