package nvme_test

import (
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// TestBadInput: requests the driver can judge are refused before they
// reach the device, with errors that name the problem.
func TestBadInput(t *testing.T) {
	r := newRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1024}}}, &nvme.Options{MaxTransfer: 64 << 10})
	q, ns := r.qp(8), r.ns(1)
	dmaBuf := r.buf(128 << 10)
	heap := make([]byte, 4096)
	nop := func(*nvme.Request) {}
	before := r.fake.Stats().TotalIO()

	tests := []struct {
		name  string
		build func(*nvme.Request) error // nil: the builder succeeds, Submit refuses
		want  error
		words []string
	}{
		{"heap buffer", func(req *nvme.Request) error { return ns.Read(req, 0, heap, 0) }, nvme.ErrNotDMA, []string{"not DMA", "bounce"}},
		{"not dword aligned", func(req *nvme.Request) error { return ns.Read(req, 0, dmaBuf[1:513], 0) }, nvme.ErrInvalid, []string{"dword aligned"}},
		{"not a block multiple", func(req *nvme.Request) error { return ns.Write(req, 0, dmaBuf[:100], 0) }, nvme.ErrInvalid, []string{"multiple", "512-byte block"}},
		{"past the end", func(req *nvme.Request) error { return ns.Read(req, 1020, dmaBuf[:8*512], 0) }, nvme.ErrInvalid, []string{"past the end", "1024 blocks"}},
		{"lba beyond the end", func(req *nvme.Request) error { return ns.Read(req, 1<<40, dmaBuf[:512], 0) }, nvme.ErrInvalid, []string{"past the end"}},
		{"zero length", func(req *nvme.Request) error { return ns.Read(req, 0, dmaBuf[:0], 0) }, nvme.ErrInvalid, []string{"zero length"}},
		{"zero blocks", func(req *nvme.Request) error { return ns.WriteZeroes(req, 0, 0, 0) }, nvme.ErrInvalid, []string{"zero length"}},
		{"too long", func(req *nvme.Request) error { return ns.Read(req, 0, dmaBuf[:128<<10], 0) }, nvme.ErrInvalid, []string{"maximum transfer"}},
		{"raw too long", func(req *nvme.Request) error { req.Data = dmaBuf[:128<<10]; return nil }, nvme.ErrInvalid, []string{"maximum transfer"}},
		{"no done", func(req *nvme.Request) error { req.Done = nil; return ns.Read(req, 0, dmaBuf[:512], 0) }, nvme.ErrInvalid, []string{"Done"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &nvme.Request{Done: nop}
			err := tt.build(req)
			if err == nil {
				err = q.Submit(req)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			for _, w := range tt.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if req.InFlight() {
				t.Error("refused request is in flight")
			}
		})
	}

	// A request in flight cannot be submitted or rebuilt.
	req := &nvme.Request{Done: nop}
	if err := ns.Read(req, 0, dmaBuf[:512], 0); err != nil {
		t.Fatal(err)
	}
	if err := q.Submit(req); err != nil {
		t.Fatal(err)
	}
	if err := q.Submit(req); !errors.Is(err, nvme.ErrBusy) {
		t.Errorf("second submit: %v, want ErrBusy", err)
	}
	if err := ns.Read(req, 0, dmaBuf[:512], 0); !errors.Is(err, nvme.ErrBusy) {
		t.Errorf("rebuild in flight: %v, want ErrBusy", err)
	}
	pollUntil(t, q, 2e9, func() bool { return !req.InFlight() })
	if got := r.fake.Stats().TotalIO() - before; got != 1 {
		t.Errorf("device saw %d I/O commands, want only the 1 valid one", got)
	}

	_, err := r.ctrl.Namespace(99)
	if !errors.Is(err, nvme.ErrNoNamespace) || !strings.Contains(err.Error(), "namespace 99") || !strings.Contains(err.Error(), "[1]") {
		t.Errorf("namespace 99: %v, want ErrNoNamespace listing the active ones", err)
	}
}

// TestZeroAlloc: building, submitting and reaping a read allocates
// nothing.
func TestZeroAlloc(t *testing.T) {
	r := newRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1024}}}, nil)
	q, ns := r.qp(8), r.ns(1)
	b := r.buf(4096)
	done := false
	req := &nvme.Request{Done: func(*nvme.Request) { done = true }}
	cycle := func() {
		if err := ns.Read(req, 8, b, 0); err != nil {
			panic(err)
		}
		if err := q.Submit(req); err != nil {
			panic(err)
		}
		for !done {
			if q.Poll() == 0 {
				runtime.Gosched() // AllocsPerRun runs with GOMAXPROCS 1: let the device goroutine in
			}
		}
		done = false
		if req.Err != nil {
			panic(req.Err)
		}
	}
	cycle()
	if n := testing.AllocsPerRun(200, cycle); n != 0 {
		t.Errorf("%v allocations per I/O, want 0", n)
	}
	// Failed commands allocate nothing either (the StatusError lives in
	// the Request).
	r.fake.InjectStatus(nvmetest.AnyIO(), 2, 0x81, -1)
	fail := func() {
		if err := ns.Read(req, 8, b, 0); err != nil {
			panic(err)
		}
		if err := q.Submit(req); err != nil {
			panic(err)
		}
		for !done {
			if q.Poll() == 0 {
				runtime.Gosched() // AllocsPerRun runs with GOMAXPROCS 1: let the device goroutine in
			}
		}
		done = false
	}
	fail()
	if n := testing.AllocsPerRun(100, fail); n != 0 {
		t.Errorf("%v allocations per failed I/O, want 0", n)
	}
	if !errors.Is(req.Err, nvme.ErrMedia) {
		t.Errorf("injected status: %v", req.Err)
	}
	r.fake.ClearFaults()
}

// TestAdminPassthruGuard: commands that change what the driver keeps are
// refused unless the caller names them, FUSE and PSDT values the driver
// does not implement are refused, the driver's own commands always; a
// refused command never reaches the device. An allowed Format NVM or
// Namespace Attachment rescans the namespaces.
func TestAdminPassthruGuard(t *testing.T) {
	r := newRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1024}, {Blocks: 1024}}}, nil)
	c := r.ctrl
	admin := func() uint64 { // but the event requests, which the fake may fetch late
		var n uint64
		for op, v := range r.fake.Stats().Admin {
			if spec.Opcode(op) != spec.AdminAsyncEventRequest {
				n += v
			}
		}
		return n
	}
	format := spec.Command{Opcode: uint8(spec.AdminFormatNVM), NSID: 1, CDW10: 1} // LBA format 1: 4 KiB
	refused := []struct {
		name  string
		cmd   spec.Command
		allow []string
		want  string
	}{
		{"format", format, nil, `pass "Format NVM"`},
		{"format, wrong name", format, []string{"Sanitize"}, `pass "Format NVM"`},
		{"number of queues", spec.Command{Opcode: uint8(spec.AdminSetFeatures), CDW10: uint32(spec.FeatureNumberOfQueues), CDW11: 0x10001}, nil, `pass "Set Features Number of Queues"`},
		{"event configuration", spec.Command{Opcode: uint8(spec.AdminSetFeatures), CDW10: uint32(spec.FeatureAsyncEventConfig)}, nil, `"Set Features Asynchronous Event Configuration"`},
		{"namespace attachment", spec.Command{Opcode: uint8(spec.AdminNamespaceAttachment), NSID: 2, CDW10: 1}, nil, `pass "Namespace Attachment"`},
		{"firmware commit", spec.Command{Opcode: uint8(spec.AdminFirmwareCommit)}, nil, `pass "Firmware Commit"`},
		{"sanitize", spec.Command{Opcode: uint8(spec.AdminSanitize)}, nil, `pass "Sanitize"`},
		{"create sq, even allowed", spec.Command{Opcode: uint8(spec.AdminCreateIOSQ)}, []string{"Create I/O Submission Queue"}, "is the driver's"},
		{"doorbell buffer config", spec.Command{Opcode: uint8(spec.AdminDoorbellBufferConfig)}, nil, "is the driver's"},
		{"fused", spec.Command{Opcode: uint8(spec.AdminGetLogPage), Flags: spec.FlagFuseFirst}, nil, "fused"},
		{"sgl", spec.Command{Opcode: uint8(spec.AdminIdentify), Flags: spec.FlagPSDTSGL}, nil, "PRPs only"},
	}
	before := admin()
	for _, tt := range refused {
		_, err := c.AdminPassthru(tt.cmd, make([]byte, 512), false, tt.allow...)
		if !errors.Is(err, nvme.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrInvalid saying %s", tt.name, err, tt.want)
		}
	}
	if n := admin() - before; n != 0 {
		t.Errorf("%d refused commands reached the device", n)
	}
	// Harmless commands need no opt-in.
	smart := make([]byte, 512)
	if _, err := c.AdminPassthru(spec.Command{Opcode: uint8(spec.AdminGetLogPage), NSID: spec.NSIDAll, CDW10: uint32(spec.LogSMART) | 127<<16}, smart, false); err != nil {
		t.Errorf("get log page: %v", err)
	}
	// Allowed by name: the namespaces are scanned again.
	if _, err := c.AdminPassthru(format, nil, false, "Format NVM"); err != nil {
		t.Fatalf("format allowed by name: %v", err)
	}
	if bs := r.ns(1).BlockSize(); bs != 4096 {
		t.Errorf("block size %d after the format, want 4096 (rescanned)", bs)
	}
	list := make([]byte, 4096)
	binary.LittleEndian.PutUint16(list, 1)
	binary.LittleEndian.PutUint16(list[2:], c.Identify().CNTLID)
	if _, err := c.AdminPassthru(spec.Command{Opcode: uint8(spec.AdminNamespaceAttachment), NSID: 2, CDW10: 1}, list, true, "Namespace Attachment"); err != nil {
		t.Fatalf("detach allowed by name: %v", err)
	}
	// The fake sends a Namespace Attribute Changed notice: the driver
	// rescans on it.
	deadline := time.Now().Add(5 * time.Second)
	for got := c.Namespaces(); len(got) != 1 || got[0] != 1; got = c.Namespaces() {
		if time.Now().After(deadline) {
			t.Fatalf("namespaces 5 s after the detach %v, want [1]", got)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSubmitFreedBuffer: a request submitted again with the same slice
// after its buffer was freed is refused with ErrNotDMA, not sent with the
// IOVA Submit looked up the first time (Submit keeps that lookup while the
// allocator's Generation says no buffer was freed since).
func TestSubmitFreedBuffer(t *testing.T) {
	r := newRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1024}}}, nil)
	q, ns := r.qp(8), r.ns(1)
	b, err := r.mem.Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	data := b.Bytes
	req := &nvme.Request{Done: func(*nvme.Request) {}}
	for i := range 2 { // the second submission takes the kept lookup
		if err := ns.Read(req, uint64(i), data, 0); err != nil {
			t.Fatal(err)
		}
		if err := q.Submit(req); err != nil {
			t.Fatalf("submission %d: %v", i, err)
		}
		pollUntil(t, q, 2e9, func() bool { return !req.InFlight() })
		if req.Err != nil {
			t.Fatalf("read %d: %v", i, req.Err)
		}
	}
	before := r.fake.Stats().TotalIO()
	if err := r.mem.Free(b); err != nil {
		t.Fatal(err)
	}
	if err := ns.Read(req, 0, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := q.Submit(req); !errors.Is(err, nvme.ErrNotDMA) {
		t.Fatalf("submit after free: %v, want ErrNotDMA", err)
	}
	if got := r.fake.Stats().TotalIO() - before; got != 0 {
		t.Errorf("device saw %d commands after the free, want 0", got)
	}
}
