package nvmetest

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// host is a minimal host on a BareQueue for the tests of the fake's
// strictness: admin commands with chosen command identifiers, and
// completions of commands not waited for (Asynchronous Event Requests)
// kept aside.
type host struct {
	t     *testing.T
	c     *Controller
	mem   *dma.Allocator
	q     *BareQueue
	next  uint16
	other []cqe
}

type cqe struct {
	cid uint16
	st  spec.Status
	dw0 uint32
}

func newHost(t *testing.T, cfg Config, depth int) *host {
	t.Helper()
	c, mem := newFake(t, cfg)
	q, err := NewBareQueue(c, mem, depth)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := q.Close(); err != nil {
			t.Errorf("close bare queue: %v", err)
		}
	})
	return &host{t: t, c: c, mem: mem, q: q, next: 0x100}
}

// post submits an admin command without waiting for it.
func (h *host) post(cmd spec.Command) uint16 {
	h.t.Helper()
	cid := h.next
	h.next++
	if _, ok := h.q.admin.submitCID(&cmd, cid); !ok {
		h.t.Fatal("admin queue full")
	}
	h.q.admin.ring()
	return cid
}

// reap collects admin completions into other until none is posted.
func (h *host) reap() {
	n := 0
	for {
		cid, st, dw0, ok := h.q.admin.reap()
		if !ok {
			break
		}
		h.other = append(h.other, cqe{cid, st, dw0})
		n++
	}
	if n > 0 {
		h.q.admin.release()
	}
}

// admin runs an admin command and waits for its completion.
func (h *host) admin(cmd spec.Command) (spec.Status, uint32) {
	h.t.Helper()
	cid := h.post(cmd)
	deadline := time.Now().Add(2 * time.Second)
	for {
		h.reap()
		for i, e := range h.other {
			if e.cid == cid {
				h.other = slices.Delete(h.other, i, i+1)
				return e.st, e.dw0
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("admin opcode %#x: no completion", cmd.Opcode)
		}
		time.Sleep(20 * time.Microsecond)
	}
}

func (h *host) buf(n int) *dma.Buffer {
	h.t.Helper()
	b, err := h.mem.Alloc(n)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { h.mem.Free(b) })
	return b
}

func getLog(lid uint8, rae bool, off uint64, b *dma.Buffer, n int) spec.Command {
	numd := uint32(n/4 - 1)
	cdw10 := uint32(lid) | (numd&0xffff)<<16
	if rae {
		cdw10 |= 1 << 15
	}
	return spec.Command{Opcode: uint8(spec.AdminGetLogPage), NSID: spec.NSIDAll, PRP1: uint64(b.IOVA),
		CDW10: cdw10, CDW11: numd >> 16, CDW12: uint32(off), CDW13: uint32(off >> 32)}
}

// wantHostErrors checks that the fake caught exactly the host errors
// whose descriptions contain want, in order.
func wantHostErrors(t *testing.T, c *Controller, want ...string) {
	t.Helper()
	got := c.HostErrors()
	if len(got) != len(want) {
		t.Fatalf("host errors %v, want %d matching %q", got, len(want), want)
	}
	for i, w := range want {
		if !strings.Contains(got[i].What, w) {
			t.Errorf("host error %d: %q, want it to say %q", i, got[i].What, w)
		}
	}
}

// TestOutOfOrderCompletions: with a latency distribution, commands of one
// queue complete out of order and no sooner than the distribution's
// minimum; with Fixed(0) they complete in order.
func TestOutOfOrderCompletions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		lat     Latency
		min     time.Duration
		inOrder bool
	}{
		{"uniform", Uniform(time.Millisecond, 3*time.Millisecond), time.Millisecond, false},
		{"fixed 0", Fixed(0), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, Config{Latency: tc.lat, Seed: 7}, 64)
			buf := h.buf(32 * 4096)
			for i := 0; i < 32; i++ {
				cmd := ReadCommand(1, uint64(8*i), 8, buf.IOVAAt(4096*i), 4096)
				if _, ok := h.q.Submit(&cmd); !ok {
					t.Fatal("queue full")
				}
			}
			start := time.Now()
			h.q.Ring()
			var order []uint16
			first := time.Duration(0)
			deadline := start.Add(2 * time.Second)
			for len(order) < 32 {
				cid, st, ok := h.q.Reap()
				if !ok {
					if time.Now().After(deadline) {
						t.Fatalf("%d of 32 completions", len(order))
					}
					continue
				}
				if first == 0 {
					first = time.Since(start)
				}
				if !st.Success() {
					t.Fatalf("cid %d: %v", cid, st)
				}
				order = append(order, cid)
				h.q.Release()
			}
			if first < tc.min {
				t.Errorf("first completion after %v, before the %v minimum latency", first, tc.min)
			}
			if sorted := slices.IsSorted(order); sorted != tc.inOrder {
				t.Errorf("completion order %v: in order %t, want %t", order, sorted, tc.inOrder)
			}
			if e := h.c.HostErrors(); len(e) != 0 {
				t.Errorf("host errors %v", e)
			}
		})
	}
}

// TestTransitionsTakeTime: CSTS.RDY sets no sooner than ReadyDelay after
// CC.EN, clears no sooner than DisableDelay after it is cleared, and
// CSTS.SHST reports complete no sooner than ShutdownDelay after CC.SHN.
func TestTransitionsTakeTime(t *testing.T) {
	const delay = 30 * time.Millisecond
	c, mem := newFake(t, Config{ReadyDelay: delay, DisableDelay: delay, ShutdownDelay: delay})
	asq, _ := mem.Alloc(4096)
	acq, _ := mem.Alloc(4096)
	defer mem.Free(asq)
	defer mem.Free(acq)
	regs := c.Registers()
	regs.Write32(spec.RegAQA, uint32(spec.MakeAQA(3, 3)))
	regs.Write64(spec.RegASQ, uint64(asq.IOVA))
	regs.Write64(spec.RegACQ, uint64(acq.IOVA))
	cc := spec.CC(0).WithIOSQES(spec.SQESLog2).WithIOCQES(spec.CQESLog2).WithEN(true)
	timed := func(what string, write func(), ok func(spec.CSTS) bool) {
		t.Helper()
		start := time.Now()
		write()
		waitCSTS(t, c, ok)
		if d := time.Since(start); d < delay {
			t.Errorf("%s after %v, sooner than %v", what, d, delay)
		}
	}
	timed("RDY set", func() { regs.Write32(spec.RegCC, uint32(cc)) }, spec.CSTS.RDY)
	timed("SHST complete", func() { regs.Write32(spec.RegCC, uint32(cc.WithSHN(spec.SHNNormal))) },
		func(s spec.CSTS) bool { return s.SHST() == spec.SHSTComplete })
	timed("RDY clear", func() { regs.Write32(spec.RegCC, 0) }, func(s spec.CSTS) bool { return !s.RDY() })
	if s := c.Stats(); s.Enables != 1 || s.Shutdowns != 1 || s.Resets != 1 {
		t.Errorf("enables %d shutdowns %d resets %d, want 1 each", s.Enables, s.Shutdowns, s.Resets)
	}
	if e := c.HostErrors(); len(e) != 0 {
		t.Errorf("host errors %v", e)
	}
}

// TestEnableBeforeReadyClears: setting CC.EN again before CSTS.RDY
// cleared from a disable is a host error.
func TestEnableBeforeReadyClears(t *testing.T) {
	c, mem := newFake(t, Config{TO: 4, DisableDelay: 1500 * time.Millisecond})
	q, err := NewBareQueue(c, mem, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer q.free()
	regs := c.Registers()
	cc := regs.Read32(spec.RegCC)
	regs.Write32(spec.RegCC, 0)
	for c.Stats().Resets == 0 {
		time.Sleep(10 * time.Microsecond)
	}
	regs.Write32(spec.RegCC, cc)
	waitCSTS(t, c, spec.CSTS.RDY)
	wantHostErrors(t, c, "CC.EN set while CSTS.RDY is still 1")
	regs.Write32(spec.RegCC, 0)
	if err := q.waitRDY(false); err != nil {
		t.Fatal(err)
	}
}

const nsChanged = uint32(spec.AEVTypeNotice) | uint32(spec.AEVNoticeNamespaceChanged)<<8 | uint32(spec.LogChangedNamespaces)<<16

// TestEventsMaskedUntilLogRead: an event masks its type until the host
// reads the log page it names with Retain Asynchronous Event clear;
// events the configuration disables are not sent at all.
func TestEventsMaskedUntilLogRead(t *testing.T) {
	h := newHost(t, Config{}, 8)
	c := h.c
	aer := spec.Command{Opcode: uint8(spec.AdminAsyncEventRequest)}
	h.post(aer)
	h.post(aer)
	c.TriggerEvent(nsChanged)
	if s := c.Stats(); s.Events != 0 || s.EventsOff != 1 {
		t.Fatalf("events sent %d, off %d: want the notice held back by Asynchronous Event Configuration", s.Events, s.EventsOff)
	}
	if st, _ := h.admin(spec.Command{Opcode: uint8(spec.AdminSetFeatures), CDW10: uint32(spec.FeatureAsyncEventConfig), CDW11: spec.AECNamespaceAttribute}); !st.Success() {
		t.Fatal(st)
	}
	if !c.DetachNamespace(1) || !c.AttachNamespace(1) {
		t.Fatal("detach and attach of namespace 1 changed nothing")
	}
	c.TriggerEvent(nsChanged)
	if s := c.Stats(); s.Events != 1 {
		t.Fatalf("%d events sent after two namespace notices, want 1 (the second masked)", s.Events)
	}
	log := h.buf(4096)
	if st, _ := h.admin(getLog(spec.LogChangedNamespaces, true, 0, log, 4096)); !st.Success() {
		t.Fatal(st)
	}
	if s := c.Stats(); s.Events != 1 {
		t.Fatalf("%d events sent after a log read with RAE set, want 1", s.Events)
	}
	if got := binary.LittleEndian.Uint32(log.Bytes); got != 1 {
		t.Errorf("changed namespace list starts with %d, want 1", got)
	}
	if st, _ := h.admin(getLog(spec.LogChangedNamespaces, false, 0, log, 4096)); !st.Success() {
		t.Fatal(st)
	}
	if s := c.Stats(); s.Events != 2 {
		t.Fatalf("%d events sent after the log read with RAE clear, want 2", s.Events)
	}
	h.reap()
	if len(h.other) != 2 || h.other[0].dw0 != nsChanged || h.other[1].dw0 != nsChanged {
		t.Errorf("event completions %+v, want two namespace attribute notices", h.other)
	}
	// The log was cleared by the read with RAE clear.
	if st, _ := h.admin(getLog(spec.LogChangedNamespaces, false, 0, log, 4096)); !st.Success() || binary.LittleEndian.Uint32(log.Bytes) != 0 {
		t.Errorf("changed namespace list after it was read: %v %x", st, log.Bytes[:8])
	}
	if e := c.HostErrors(); len(e) != 0 {
		t.Errorf("host errors %v", e)
	}
}

// TestLogOffsetsNeedLPA: log page offsets are honoured with LPA bit 2 and
// a host error without it.
func TestLogOffsetsNeedLPA(t *testing.T) {
	for _, noOffsets := range []bool{false, true} {
		h := newHost(t, Config{NoLogOffsets: noOffsets}, 8)
		b := h.buf(4096)
		if st, _ := h.admin(spec.Command{Opcode: uint8(spec.AdminIdentify), PRP1: uint64(b.IOVA), CDW10: uint32(spec.CNSController)}); !st.Success() {
			t.Fatal(st)
		}
		id, err := spec.ParseIdentifyController(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if got := id.LPA&lpaExtendedData != 0; got == noOffsets {
			t.Errorf("NoLogOffsets %t: LPA %#x", noOffsets, id.LPA)
		}
		full := make([]byte, 512)
		if st, _ := h.admin(getLog(spec.LogSMART, false, 0, b, 512)); !st.Success() {
			t.Fatal(st)
		}
		copy(full, b.Bytes)
		st, _ := h.admin(getLog(spec.LogSMART, false, 0x40, b, 32))
		if noOffsets {
			if st != stInvalidFld {
				t.Errorf("offset without LPA: %v, want Invalid Field", st)
			}
			wantHostErrors(t, h.c, "without LPA bit 2")
			continue
		}
		if !st.Success() || string(b.Bytes[:32]) != string(full[0x40:0x60]) {
			t.Errorf("offset 0x40 with LPA: %v, data %x", st, b.Bytes[:32])
		}
	}
}

// TestHostErrors: each mistake a host can make on the queues is caught,
// once, and a doorbell mistake is also reported as an asynchronous error
// event.
func TestHostErrors(t *testing.T) {
	t.Run("doorbell of a queue that does not exist", func(t *testing.T) {
		h := newHost(t, Config{}, 8)
		h.post(spec.Command{Opcode: uint8(spec.AdminAsyncEventRequest)})
		h.c.Registers().Write32(spec.SQTailDoorbell(5, 0), 1)
		h.c.Registers().Write32(spec.CQHeadDoorbell(40, 0), 0)
		wantHostErrors(t, h.c, "submission queue tail doorbell of queue 5, which does not exist",
			"completion queue head doorbell of queue 40, which does not exist")
		deadline := time.Now().Add(2 * time.Second)
		for len(h.other) == 0 && time.Now().Before(deadline) {
			h.reap()
		}
		want := uint32(spec.AEVTypeError) | spec.AEVErrorInvalidDoorbell<<8 | uint32(spec.LogErrorInformation)<<16
		if len(h.other) != 1 || h.other[0].dw0 != want {
			t.Errorf("event completions %+v, want one Write to Invalid Doorbell Register", h.other)
		}
	})
	t.Run("doorbell value outside the queue", func(t *testing.T) {
		h := newHost(t, Config{}, 8)
		h.c.Registers().Write32(spec.SQTailDoorbell(1, 0), 8)
		h.c.Registers().Write32(spec.CQHeadDoorbell(1, 0), 9)
		deadline := time.Now().Add(2 * time.Second)
		for h.c.HostErrorCount() < 2 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Microsecond)
		}
		wantHostErrors(t, h.c, "completion queue 1 head doorbell 0x9 is outside", "submission queue 1 tail doorbell 0x8 is outside")
	})
	t.Run("tail past the head, head past the tail", func(t *testing.T) {
		c, _ := newFake(t, Config{})
		_ = c.call(func() {
			d := &c.dev
			sq, cq := &d.sqs[1], &d.cqs[1]
			cq.reset(1, 8, 0x10000, 0)
			sq.reset(1, 8, 0x20000, cq, 0)
			sq.head, sq.lastTail = 2, 3 // one entry not fetched
			if d.checkTail(sq, 2) {     // 7 more: 8 in the queue
				t.Error("a tail moved 7 past one waiting entry was accepted")
			}
			if !d.checkTail(sq, 1) { // 6 more: 7 in the queue
				t.Error("a tail filling the queue was refused")
			}
			cq.tail, cq.head = 3, 1 // two entries posted
			c.regs.Write32(cq.headR, 4)
			d.readHead(cq)
			if cq.head != 1 {
				t.Errorf("head moved to %d past the tail 3", cq.head)
			}
			c.regs.Write32(cq.headR, 3)
			d.readHead(cq)
			if cq.head != 3 {
				t.Errorf("head %d, want 3", cq.head)
			}
			d.stopProcessing()
		})
		wantHostErrors(t, c, "submission queue 1 tail doorbell 2 passes the head 2", "completion queue 1 head doorbell 4 passes the tail 3")
	})
	t.Run("command identifiers", func(t *testing.T) {
		h := newHost(t, Config{Latency: Fixed(20 * time.Millisecond)}, 8)
		buf := h.buf(4096)
		cmd := ReadCommand(1, 0, 1, buf.IOVA, 512)
		for _, cid := range []uint16{0xffff, 5, 5} {
			if _, ok := h.q.io.submitCID(&cmd, cid); !ok {
				t.Fatal("queue full")
			}
		}
		h.q.Ring()
		for n := 0; n < 3; {
			if _, _, ok := h.q.Reap(); ok {
				n++
				h.q.Release()
			}
		}
		wantHostErrors(t, h.c, "command identifier 0xFFFF", "command identifier 0x5 is already outstanding")
	})
	t.Run("queue memory freed while enabled", func(t *testing.T) {
		h := newHost(t, Config{}, 8)
		if err := h.mem.Free(h.q.sqb); err != nil {
			t.Fatal(err)
		}
		h.q.sqb = nil
		wantHostErrors(t, h.c, "unmapped while it holds live submission queue 1")
		// Deleting the queue first, or disabling and waiting for
		// CSTS.RDY to clear, makes freeing it fine.
		if err := h.q.adminCmd(spec.Command{Opcode: uint8(spec.AdminDeleteIOSQ), CDW10: 1}); err != nil {
			t.Fatal(err)
		}
		h.q.io.size = 0
		if err := h.mem.Free(h.q.cqb); err == nil { // CQ 1 still live
			h.q.cqb = nil
		}
		h.q.regs.Write32(spec.RegCC, 0)
		if err := h.q.waitRDY(false); err != nil {
			t.Fatal(err)
		}
		if err := h.q.free(); err != nil {
			t.Fatal(err)
		}
		wantHostErrors(t, h.c, "unmapped while it holds live submission queue 1", "unmapped while it holds live completion queue 1")
	})
	t.Run("too many event requests", func(t *testing.T) {
		h := newHost(t, Config{}, 8)
		for i := 0; i < aerLimit; i++ {
			h.post(spec.Command{Opcode: uint8(spec.AdminAsyncEventRequest)})
		}
		if st, _ := h.admin(spec.Command{Opcode: uint8(spec.AdminAsyncEventRequest)}); st != stAERLimit {
			t.Errorf("one AER too many: %v, want Asynchronous Event Request Limit Exceeded", st)
		}
		wantHostErrors(t, h.c, "more than AERL+1")
	})
}

// TestExecutionCounts: Count follows one command's executions; a command
// completed with an injected status did not execute.
func TestExecutionCounts(t *testing.T) {
	h := newHost(t, Config{}, 8)
	buf := h.buf(4096)
	w5 := h.c.Count(IO(spec.IOWrite).Range(5, 1))
	all := h.c.Count(AnyIO())
	run := func(cmd spec.Command) spec.Status {
		t.Helper()
		h.q.Submit(&cmd)
		h.q.Ring()
		for {
			if _, st, ok := h.q.Reap(); ok {
				h.q.Release()
				return st
			}
		}
	}
	write := func(lba uint64) spec.Command {
		cmd := ReadCommand(1, lba, 1, buf.IOVA, 512)
		cmd.Opcode = uint8(spec.IOWrite)
		return cmd
	}
	run(write(5))
	run(write(6))
	run(write(5))
	h.c.InjectStatus(IO(spec.IOWrite), spec.SCTMediaError, spec.SCWriteFault, 1)
	if st := run(write(5)); st.Success() {
		t.Fatal("injected status not delivered")
	}
	run(ReadCommand(1, 5, 1, buf.IOVA, 512))
	if w5.Load() != 2 || all.Load() != 4 {
		t.Errorf("writes of LBA 5 executed %d times, I/O commands %d; want 2 and 4", w5.Load(), all.Load())
	}
}

// TestNamespaceAttachment: the Namespace Attachment command attaches and
// detaches a namespace of the fake, which Identify then reports.
func TestNamespaceAttachment(t *testing.T) {
	h := newHost(t, Config{Namespaces: []NSConfig{{Blocks: 64}, {Blocks: 128, Detached: true}}}, 8)
	list := h.buf(4096)
	ids := h.buf(4096)
	active := func() []uint32 {
		t.Helper()
		if st, _ := h.admin(spec.Command{Opcode: uint8(spec.AdminIdentify), PRP1: uint64(ids.IOVA), CDW10: uint32(spec.CNSActiveNamespaces)}); !st.Success() {
			t.Fatal(st)
		}
		got, err := spec.ParseNamespaceList(ids.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	attach := func(sel uint32, nsid uint32, ctrl uint16) spec.Status {
		clear(list.Bytes)
		binary.LittleEndian.PutUint16(list.Bytes, 1)
		binary.LittleEndian.PutUint16(list.Bytes[2:], ctrl)
		st, _ := h.admin(spec.Command{Opcode: uint8(spec.AdminNamespaceAttachment), NSID: nsid, PRP1: uint64(list.IOVA), CDW10: sel})
		return st
	}
	if got := active(); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("active %v, want [1]", got)
	}
	if st := attach(0, 2, 1); !st.Success() {
		t.Fatal(st)
	}
	if got := active(); !slices.Equal(got, []uint32{1, 2}) {
		t.Fatalf("active after attach %v, want [1 2]", got)
	}
	for _, tc := range []struct {
		sel  uint32
		nsid uint32
		ctrl uint16
		sc   uint8
	}{
		{0, 2, 1, spec.SCNamespaceAlreadyAttached},
		{1, 2, 7, spec.SCControllerListInvalid},
	} {
		if st := attach(tc.sel, tc.nsid, tc.ctrl); st.SC() != tc.sc {
			t.Errorf("sel %d nsid %d ctrl %d: %v, want sc %#x", tc.sel, tc.nsid, tc.ctrl, st, tc.sc)
		}
	}
	if st := attach(1, 1, 1); !st.Success() {
		t.Fatal(st)
	}
	if got := active(); !slices.Equal(got, []uint32{2}) {
		t.Fatalf("active after detach %v, want [2]", got)
	}
	if st, _ := h.admin(spec.Command{Opcode: uint8(spec.AdminIdentify), NSID: 1, PRP1: uint64(ids.IOVA), CDW10: uint32(spec.CNSNamespace)}); !st.Success() || binary.LittleEndian.Uint64(ids.Bytes) != 0 {
		t.Errorf("identify of the detached namespace: %v, NSZE %d: want zeros", st, binary.LittleEndian.Uint64(ids.Bytes))
	}
	buf := h.buf(4096)
	cmd := ReadCommand(1, 0, 1, buf.IOVA, 512)
	h.q.Submit(&cmd)
	h.q.Ring()
	for {
		if _, st, ok := h.q.Reap(); ok {
			h.q.Release()
			if st != stInvalidNS {
				t.Errorf("read of a detached namespace: %v, want Invalid Namespace or Format", st)
			}
			break
		}
	}
}
