package nvme_test

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// eventRig opens the driver with Options.OnEvent sending every event to
// the returned channel.
func eventRig(t *testing.T, cfg nvmetest.Config) (*rig, chan nvme.AsyncEvent) {
	t.Helper()
	evs := make(chan nvme.AsyncEvent, 16)
	opts := faultOpts
	opts.OnEvent = func(e nvme.AsyncEvent) { evs <- e }
	return newRig(t, cfg, &opts), evs
}

func nextEvent(t *testing.T, evs chan nvme.AsyncEvent) nvme.AsyncEvent {
	t.Helper()
	select {
	case e := <-evs:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no asynchronous event within 5 s")
	}
	panic("unreachable")
}

// TestNamespaceEvents: namespaces attached and detached on a running
// controller reach the callback, one event after another (each log read
// with RAE clear unmasks the next), and the rescan makes an attached
// namespace usable and fails the I/O of a detached one with a clear
// error, both at build time and in flight.
func TestNamespaceEvents(t *testing.T) {
	r, evs := eventRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1024}, {Blocks: 2048, Detached: true}}})
	c := r.ctrl
	if got := c.Namespaces(); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("namespaces %v, want [1]", got)
	}
	q := r.qp(16)
	ns1 := r.ns(1)
	b := r.buf(4096)

	r.fake.AttachNamespace(2)
	e := nextEvent(t, evs)
	if e.Event.Type() != spec.AEVTypeNotice || e.Event.Info() != spec.AEVNoticeNamespaceChanged || e.LogErr != nil || e.RescanErr != nil {
		t.Fatalf("event %v: log error %v, rescan error %v", e.Event, e.LogErr, e.RescanErr)
	}
	if got := binary.LittleEndian.Uint32(e.Log); got != 2 {
		t.Errorf("changed namespace list starts with %d, want 2", got)
	}
	if !slices.Equal(e.Attached, []uint32{2}) || len(e.Detached) != 0 {
		t.Errorf("event: attached %v detached %v, want namespace 2 attached", e.Attached, e.Detached)
	}
	ns2 := r.ns(2)
	if ns2.Blocks() != 2048 {
		t.Errorf("namespace 2: %d blocks, want 2048", ns2.Blocks())
	}
	pat(b, 5)
	if err := ns2.WriteAt(q, b, 7); err != nil {
		t.Fatalf("write to the attached namespace: %v", err)
	}

	// Detach namespace 1 with a read in flight. The event comes only
	// because the driver read the log of the first with RAE clear.
	r.fake.Slow(nvmetest.IO(spec.IORead), 100*time.Millisecond, 1)
	inflight := &nvme.Request{}
	done := false
	inflight.Done = func(*nvme.Request) { done = true }
	if err := ns1.Read(inflight, 0, b[:512], 0); err != nil {
		t.Fatal(err)
	}
	if err := q.Submit(inflight); err != nil {
		t.Fatal(err)
	}
	q.Poll()
	r.fake.DetachNamespace(1)
	e = nextEvent(t, evs)
	if !slices.Equal(e.Detached, []uint32{1}) || len(e.Attached) != 0 {
		t.Errorf("event: attached %v detached %v, want namespace 1 detached", e.Attached, e.Detached)
	}
	pollUntil(t, q, 5*time.Second, func() bool { return done })
	if !errors.Is(inflight.Err, nvme.ErrNoNamespace) {
		t.Errorf("read in flight during the detach: %v, want ErrNoNamespace", inflight.Err)
	}
	err := ns1.ReadAt(q, b[:512], 0)
	if !errors.Is(err, nvme.ErrNoNamespace) || !strings.Contains(err.Error(), "detached") {
		t.Errorf("read of the detached namespace: %v, want ErrNoNamespace saying it was detached", err)
	}
	if _, err := c.Namespace(1); !errors.Is(err, nvme.ErrNoNamespace) {
		t.Errorf("Namespace(1) after the detach: %v", err)
	}
	if ns2.Err() != nil {
		t.Errorf("namespace 2 marked %v", ns2.Err())
	}

	// Every event the fake sent was handled, each clearing its log.
	s := r.fake.Stats()
	if got := len(c.Events()); uint64(got) != s.Events || s.EventsOff != 0 {
		t.Errorf("driver handled %d events, fake sent %d (%d off)", got, s.Events, s.EventsOff)
	}
	if s.AdminCommands(spec.AdminGetLogPage) < s.Events {
		t.Errorf("%d log reads for %d events", s.AdminCommands(spec.AdminGetLogPage), s.Events)
	}
}

// TestEventsReadTheirLog: an error event and a SMART event of the same
// controller both reach the callback with the log page they name, and a
// second event of a type arrives after the first (its log read unmasked
// it).
func TestEventsReadTheirLog(t *testing.T) {
	r, evs := eventRig(t, smallNS())
	smart := uint32(spec.AEVTypeSMART) | uint32(spec.AEVSMARTTemperature)<<8 | uint32(spec.LogSMART)<<16
	for i := 0; i < 2; i++ {
		r.fake.TriggerEvent(smart)
		e := nextEvent(t, evs)
		if uint32(e.Event) != smart || e.LogErr != nil || len(e.Log) != 512 {
			t.Fatalf("event %d: %v, log of %d bytes, %v", i, e.Event, len(e.Log), e.LogErr)
		}
		if temp := binary.LittleEndian.Uint16(e.Log[1:]); temp != 313 {
			t.Errorf("SMART log in the event: temperature %d K, want 313", temp)
		}
	}
	// The controller reports a write to a doorbell that does not exist
	// with an error event naming the Error Information log. (The write
	// is this test's, on purpose: the fake records it as a host error,
	// checked and cleared below.)
	r.fake.Registers().Write32(spec.SQTailDoorbell(9, 0), 3)
	if n := len(r.fake.HostErrors()); n != 1 {
		t.Fatalf("%d host errors, want the one written on purpose", n)
	}
	e := nextEvent(t, evs)
	if e.Event.Type() != spec.AEVTypeError || e.Event.LogPage() != spec.LogErrorInformation || e.LogErr != nil {
		t.Fatalf("event %v, log error %v", e.Event, e.LogErr)
	}
	r.fake.ClearHostErrors()
}

// TestStaleChangedNamespaceList: a Changed Namespace List that an earlier
// user of the controller left unread (a process that attached a
// namespace and exited before the notice came) is read at bring-up, so
// the next change raises a notice. The fake, like QEMU's controller,
// raises no notice for a namespace already on the unread list: without
// the read, the detach below goes unnoticed.
func TestStaleChangedNamespaceList(t *testing.T) {
	fake, err := nvmetest.New(nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1024}, {Blocks: 2048, Detached: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if !fake.AttachNamespace(2) { // before the driver: the list now holds 2, unread
		t.Fatal("attach namespace 2")
	}
	mem, err := dma.NewAllocator(fake.Mapper())
	if err != nil {
		fake.Close()
		t.Fatal(err)
	}
	evs := make(chan nvme.AsyncEvent, 4)
	opts := faultOpts
	opts.OnEvent = func(e nvme.AsyncEvent) { evs <- e }
	c, err := nvme.Open(fake, mem, &opts)
	if err != nil {
		fake.Close()
		mem.Close()
		t.Fatal(err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		fake.Close()
		if err := mem.Close(); err != nil {
			t.Errorf("dma memory leaked: %v", err)
		}
	}()
	if got := c.Namespaces(); !slices.Equal(got, []uint32{1, 2}) {
		t.Fatalf("namespaces at bring-up %v, want [1 2]", got)
	}
	fake.DetachNamespace(2)
	e := nextEvent(t, evs)
	if !slices.Equal(e.Detached, []uint32{2}) {
		t.Fatalf("event %v: detached %v, want [2]", e.Event, e.Detached)
	}
}
