package target

import (
	"bytes"
	"encoding/binary"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
)

// In steady state an I/O costs the target no allocation: a 4 KiB read
// (C2HData with SUCCESS) and a 4 KiB in-capsule write, the host side
// written with preallocated buffers. AllocsPerRun counts every
// goroutine's allocations: the poll group's, the fake device's, the
// runtime's network poller's.
func TestSteadyStateAllocs(t *testing.T) {
	r := newRig(t, Config{}, nvmetest.Config{})
	_, cntlid := r.bringUp(t, false, false)
	q := r.ioQueue(t, cntlid, 1, false, false, fabrics.CAttrDisableSQFlow)
	// Warm up through the checking host, then the same PDUs raw.
	data := pattern(4096, 3)
	q.ok(rw(spec.IOWrite, 16, 8), data, nil)
	got := make([]byte, 4096)
	q.ok(rw(spec.IORead, 16, 8), nil, got)
	if !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
	rd := rw(spec.IORead, 16, 8)
	rd.CID, rd.Flags = 100, spec.FlagPSDTSGL
	rd.SetSGL1(fabrics.TransportSGL(4096))
	rdPDU := q.w.AppendCapsuleCmd(nil, &rd, 0)
	wr := rw(spec.IOWrite, 32, 8)
	wr.CID, wr.Flags = 101, spec.FlagPSDTSGL
	wr.SetSGL1(fabrics.InCapsuleSGL(0, 4096))
	wrPDU := append(q.w.AppendCapsuleCmd(nil, &wr, 4096), data...)
	// C2HData header (24) + data; CapsuleResp (24).
	rdAns := make([]byte, 24+4096)
	wrAns := make([]byte, 24)
	var failed bool
	one := func() {
		if _, err := q.c.Write(rdPDU); err != nil {
			failed = true
			return
		}
		if _, err := io.ReadFull(q.c, rdAns); err != nil || pdu.Type(rdAns[0]) != pdu.TypeC2HData || !bytes.Equal(rdAns[24:], data) {
			failed = true
			return
		}
		if _, err := q.c.Write(wrPDU); err != nil {
			failed = true
			return
		}
		if _, err := io.ReadFull(q.c, wrAns); err != nil || pdu.Type(wrAns[0]) != pdu.TypeCapsuleResp || wrAns[8+14]&0xfe != 0 {
			failed = true
		}
	}
	for range 50 {
		one()
	}
	n := testing.AllocsPerRun(100, one)
	if failed {
		t.Fatalf("an I/O failed: read answer % x, write answer % x", rdAns[:24], wrAns)
	}
	if n != 0 {
		t.Errorf("%v allocations per read + write, want 0", n)
	}
}

// A namespace attached to and detached from the backing reaches the host
// as a Namespace Attribute Changed AEN; log page 04h lists it; Identify
// shows the new set; the notice stays masked until the log is read.
func TestNamespaceChangeAEN(t *testing.T) {
	r := newRig(t, Config{}, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 16}, {Blocks: 4096, Detached: true}}})
	a, cntlid := r.bringUp(t, false, false)
	q := r.ioQueue(t, cntlid, 1, false, false, 0)
	a.ok(spec.Command{Opcode: uint8(spec.AdminSetFeatures), CDW10: spec.FeatureAsyncEventConfig, CDW11: spec.AECNamespaceAttribute}, nil, nil)
	aer, err := a.submit(spec.Command{Opcode: uint8(spec.AdminAsyncEventRequest)}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	active := func() []uint32 {
		b := make([]byte, spec.IdentifySize)
		a.ok(spec.Command{Opcode: uint8(spec.AdminIdentify), CDW10: spec.CNSActiveNamespaces}, nil, b)
		var ids []uint32
		for i := 0; i < len(b) && binary.LittleEndian.Uint32(b[i:]) != 0; i += 4 {
			ids = append(ids, binary.LittleEndian.Uint32(b[i:]))
		}
		return ids
	}
	changedLog := func() []uint32 {
		b := make([]byte, 4096)
		a.ok(spec.Command{Opcode: uint8(spec.AdminGetLogPage), CDW10: spec.LogChangedNamespaces | (4096/4-1)<<16}, nil, b)
		var ids []uint32
		for i := 0; i < len(b) && binary.LittleEndian.Uint32(b[i:]) != 0; i += 4 {
			ids = append(ids, binary.LittleEndian.Uint32(b[i:]))
		}
		return ids
	}
	if got := active(); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("active namespaces %v", got)
	}
	r.tr.Fake.AttachNamespace(2)
	_ = a.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	cqe, err := a.wait(aer, nil, nil)
	if err != nil {
		t.Fatalf("AER: %v", err)
	}
	if cqe.DW0 != aenNSChanged {
		t.Errorf("AER completed with %#x, want %#x", cqe.DW0, aenNSChanged)
	}
	if got := changedLog(); !slices.Equal(got, []uint32{2}) {
		t.Errorf("changed namespace list %v, want [2]", got)
	}
	if got := active(); !slices.Equal(got, []uint32{1, 2}) {
		t.Errorf("active namespaces %v after attach", got)
	}
	// The new namespace takes I/O.
	q.ok(spec.Command{Opcode: uint8(spec.IOWrite), NSID: 2, CDW12: 7}, pattern(4096, 2), nil)
	// Detach namespace 1: a second AER (armed after the log was read)
	// reports it; I/O to it fails with Invalid Namespace.
	aer, err = a.submit(spec.Command{Opcode: uint8(spec.AdminAsyncEventRequest)}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	r.tr.Fake.DetachNamespace(1)
	if cqe, err := a.wait(aer, nil, nil); err != nil || cqe.DW0 != aenNSChanged {
		t.Fatalf("second AER: %#x %v", cqe.DW0, err)
	}
	if got := changedLog(); !slices.Equal(got, []uint32{1}) {
		t.Errorf("changed namespace list %v, want [1]", got)
	}
	if st := q.status(rw(spec.IORead, 0, 1), nil, make([]byte, 512)); st != spec.MakeStatus(spec.SCTGeneric, spec.SCInvalidNamespace) {
		t.Errorf("read from the detached namespace: %v", fabrics.StatusName(st))
	}
	// With no AER held, a change waits; the next AER takes it at once.
	r.tr.Fake.AttachNamespace(1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctrl := r.tgt.controller(cntlid)
		ctrl.mu.Lock()
		pending := ctrl.nsPending
		ctrl.mu.Unlock()
		if pending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the change never reached the controller")
		}
		time.Sleep(time.Millisecond)
	}
	if cqe, err := a.do(spec.Command{Opcode: uint8(spec.AdminAsyncEventRequest)}, nil, nil); err != nil || cqe.DW0 != aenNSChanged {
		t.Fatalf("AER after the change: %#x %v", cqe.DW0, err)
	}
	if got := changedLog(); !slices.Equal(got, []uint32{1}) {
		t.Errorf("changed namespace list %v, want [1]", got)
	}
	q.ok(rw(spec.IOWrite, 0, 8), pattern(4096, 4), nil)
}

// Two backing controllers as one subsystem: the second one's namespaces
// follow the first one's NN; I/O goes to the right backing.
func TestOneSubsystem(t *testing.T) {
	r := newRigN(t, Config{}, nvmetest.Config{Serial: "A"}, nvmetest.Config{Serial: "B", Namespaces: []nvmetest.NSConfig{{Blocks: 8192}, {Blocks: 4096}}})
	a, cntlid := r.bringUp(t, false, false)
	idc := make([]byte, spec.IdentifySize)
	a.ok(spec.Command{Opcode: uint8(spec.AdminIdentify), CDW10: spec.CNSController}, nil, idc)
	first := r.trs[0].Ctrl.Identify().NN
	second := r.trs[1].Ctrl.Identify().NN
	if got := binary.LittleEndian.Uint32(idc[0x204:]); got != first+second {
		t.Errorf("NN %d, want %d", got, first+second)
	}
	list := make([]byte, spec.IdentifySize)
	a.ok(spec.Command{Opcode: uint8(spec.AdminIdentify), CDW10: spec.CNSActiveNamespaces}, nil, list)
	want := []uint32{1, first + 1, first + 2}
	for i, id := range want {
		if got := binary.LittleEndian.Uint32(list[4*i:]); got != id {
			t.Errorf("active namespace %d: %d, want %d", i, got, id)
		}
	}
	q := r.ioQueue(t, cntlid, 1, false, false, 0)
	for i, id := range want {
		cmd := spec.Command{Opcode: uint8(spec.IOWrite), NSID: id, CDW10: 40, CDW12: 7}
		q.ok(cmd, pattern(4096, byte(i+1)), nil)
	}
	// Read each back through the driver on its own backing.
	qps := []*nvme.QueuePair{r.trs[0].QueuePair(t, 4), r.trs[1].QueuePair(t, 4)}
	for i, c := range []struct {
		tr   int
		nsid uint32
	}{{0, 1}, {1, 1}, {1, 2}} {
		ns, err := r.trs[c.tr].Ctrl.Namespace(c.nsid)
		if err != nil {
			t.Fatal(err)
		}
		buf := r.trs[c.tr].Buf(t, 4096)
		if err := ns.ReadAt(qps[c.tr], buf, 40); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, pattern(4096, byte(i+1))) {
			t.Errorf("backing %d namespace %d does not hold what was written to NSID %d", c.tr, c.nsid, want[i])
		}
	}
}

// Several hosts at once while others misbehave: each good host's data
// comes back intact, the bad ones get errors or a TermReq, nothing
// panics, and the good ones never notice.
func TestHostsAndVandals(t *testing.T) {
	r := newRig(t, Config{PollGroups: 2}, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 17}}})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, cntlid := r.bringUp(t, i == 1, i == 2)
			qs := []*host{r.ioQueue(t, cntlid, 1, i == 1, i == 2, 0), r.ioQueue(t, cntlid, 2, i == 1, i == 2, fabrics.CAttrDisableSQFlow)}
			for j := 0; ; j++ {
				select {
				case <-stop:
					if j < 10 {
						t.Errorf("host %d: only %d rounds", i, j)
					}
					return
				default:
				}
				q := qs[j%2]
				lba := uint64(i*20000 + (j%100)*128)
				data := pattern(4096*(1+j%16), byte(i*31+j))
				if c, err := q.do(rw(spec.IOWrite, lba, len(data)/512), data, nil); err != nil || !c.StatusField().Success() {
					t.Errorf("host %d write: %v %v", i, err, c.StatusField())
					return
				}
				got := make([]byte, len(data))
				if c, err := q.do(rw(spec.IORead, lba, len(data)/512), nil, got); err != nil || !c.StatusField().Success() {
					t.Errorf("host %d read: %v %v", i, err, c.StatusField())
					return
				}
				if !bytes.Equal(got, data) {
					t.Errorf("host %d: data differs", i)
					return
				}
			}
		}()
	}
	vandals := []struct {
		name string
		run  func(t *testing.T, q *host)
	}{
		{"flood past the queue size", func(t *testing.T, q *host) {
			// SQSize 32 entries; 200 reads without waiting.
			var b []byte
			for k := range 200 {
				cmd := rw(spec.IORead, uint64(k), 1)
				cmd.CID, cmd.Flags = uint16(k), spec.FlagPSDTSGL
				cmd.SetSGL1(fabrics.TransportSGL(512))
				b = q.w.AppendCapsuleCmd(b, &cmd, 0)
			}
			_ = q.send(b)
			for {
				p, err := q.next()
				if err != nil {
					t.Fatalf("flood: %v before a TermReq", err)
				}
				if p.Type == pdu.TypeC2HTermReq {
					return
				}
			}
		}},
		{"huge data length", func(t *testing.T, q *host) {
			cmd := rw(spec.IOWrite, 0, 1)
			cmd.Flags = spec.FlagPSDTSGL
			cmd.SetSGL1(fabrics.InCapsuleSGL(0, 512))
			b := q.w.AppendCapsuleCmd(nil, &cmd, 512)
			binary.LittleEndian.PutUint32(b[4:], 0xfffffff0) // PLEN
			_ = q.send(b)
			expectTerm(t, q)
		}},
		{"transfer past mdts through r2t", func(t *testing.T, q *host) {
			if st := q.status(rw(spec.IOWrite, 0, 4096), make([]byte, 4096*512), nil); st != spec.MakeStatus(spec.SCTGeneric, spec.SCInvalidField) {
				t.Errorf("oversize write: %v", fabrics.StatusName(st))
			}
		}},
		{"reserved opcode and fabrics type", func(t *testing.T, q *host) {
			if st := q.status(spec.Command{Opcode: 0xfe, NSID: 1}, nil, nil); st != spec.MakeStatus(spec.SCTGeneric, spec.SCInvalidOpcode) {
				t.Errorf("opcode fe: %v", fabrics.StatusName(st))
			}
			cmd := spec.Command{Opcode: 0x7f}
			cmd.NSID = 0x33 // fabrics command type 33h: none
			if st := q.status(cmd, nil, nil); st != spec.MakeStatus(spec.SCTGeneric, spec.SCInvalidOpcode) {
				t.Errorf("fabrics type 33h: %v", fabrics.StatusName(st))
			}
		}},
		{"cid reused while outstanding", func(t *testing.T, q *host) {
			cmd := rw(spec.IOWrite, 0, 64)
			c1, _ := q.submit(cmd, make([]byte, 32<<10), 0) // waits for R2T data
			p, err := q.next()
			if err != nil || p.Type != pdu.TypeR2T {
				t.Fatalf("want R2T: %v %v", p, err)
			}
			q.cid = c1.CID - 1 // the same CID again
			if st := q.status(rw(spec.IORead, 0, 1), nil, make([]byte, 512)); st != spec.MakeStatus(spec.SCTGeneric, spec.SCCIDConflict) {
				t.Errorf("cid conflict: %v", fabrics.StatusName(st))
			}
		}},
		{"disconnect mid-write", func(t *testing.T, q *host) {
			_, _ = q.submit(rw(spec.IOWrite, 0, 64), make([]byte, 32<<10), 0)
			_, _ = q.submit(rw(spec.IORead, 0, 256), nil, 128<<10)
			q.c.Close()
		}},
	}
	for round := range 3 {
		for _, v := range vandals {
			t.Run(v.name, func(t *testing.T) {
				_, cntlid := r.bringUp(t, round == 1, round == 2)
				v.run(t, r.ioQueue(t, cntlid, 1, round == 1, round == 2, 0))
			})
		}
	}
	close(stop)
	wg.Wait()
}

// A Connect to the I/O queue of another host's controller, or one already
// connected, is refused; the rightful host's queue carries on.
func TestConnectIOStolen(t *testing.T) {
	r := newRig(t, Config{}, nvmetest.Config{})
	_, cntlid := r.bringUp(t, false, false)
	q := r.ioQueue(t, cntlid, 1, false, false, 0)
	thief := r.dial(t, false, false)
	thief.hostID = [16]byte{7}
	thief.hostNQN = fabrics.UUIDNQN(thief.hostID)
	if cqe, err := thief.connect(2, cntlid, testNQN, 0, 0); err != nil || cqe.StatusField().Code() != spec.MakeStatus(spec.SCTCommandSpecific, fabrics.SCConnectInvalidHost) {
		t.Errorf("another host's controller: %v %v", err, fabrics.StatusName(cqe.StatusField()))
	}
	again := r.dial(t, false, false)
	if cqe, err := again.connect(1, cntlid, testNQN, 0, 0); err != nil || cqe.StatusField().Code() != spec.MakeStatus(spec.SCTCommandSpecific, fabrics.SCConnectInvalidParams) {
		t.Errorf("qid 1 twice: %v %v", err, fabrics.StatusName(cqe.StatusField()))
	}
	q.ok(rw(spec.IOWrite, 0, 8), pattern(4096, 1), nil)
}

// A namespace detached from the backing leaves ddi's registry at the
// rescan, and one attached again gets a new device: no device of a
// namespace that left stays registered until Close. (Before, every
// attach registered a device on each poll group's queue and nothing
// unregistered them until Close: this test found the old ones.)
func TestDetachUnregistersDevice(t *testing.T) {
	r := newRig(t, Config{PollGroups: 2}, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 16}, {Blocks: 4096}}})
	a, cntlid := r.bringUp(t, false, false)
	q := r.ioQueue(t, cntlid, 1, false, false, 0)
	sub := r.tgt.subs[testNQN]
	devsOf := func(id uint32) []*ddi.Device {
		if n := sub.tab.Load().byID[id]; n != nil {
			return n.devs
		}
		return nil
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	first := devsOf(2)
	if len(first) != len(r.tgt.groups) {
		t.Fatalf("namespace 2 has %d devices, want one per poll group (%d)", len(first), len(r.tgt.groups))
	}
	for _, d := range first {
		if ddi.Lookup(d.Edev()) != d {
			t.Fatalf("device %v of namespace 2 not registered", d.Edev())
		}
	}
	r.tr.Fake.DetachNamespace(2)
	waitFor("namespace 2 to leave", func() bool { return devsOf(2) == nil })
	for _, d := range first {
		if ddi.Lookup(d.Edev()) != nil {
			t.Errorf("device %v of detached namespace 2 still registered", d.Edev())
		}
	}
	r.tr.Fake.AttachNamespace(2)
	waitFor("namespace 2 to come back", func() bool { return devsOf(2) != nil })
	second := devsOf(2)
	for i, d := range second {
		if d == first[i] || ddi.Lookup(d.Edev()) != d {
			t.Errorf("poll group %d: namespace 2 device %v after re-attach: same as before or not registered", i, d.Edev())
		}
	}
	for _, d := range first {
		if ddi.Lookup(d.Edev()) != nil {
			t.Errorf("device %v of the first attachment registered again", d.Edev())
		}
	}
	q.ok(spec.Command{Opcode: uint8(spec.IOWrite), NSID: 2, CDW12: 7}, pattern(4096, 5), nil)
	got := make([]byte, 4096)
	q.ok(spec.Command{Opcode: uint8(spec.IORead), NSID: 2, CDW12: 7}, nil, got)
	if !bytes.Equal(got, pattern(4096, 5)) {
		t.Error("namespace 2 read back differs after re-attach")
	}
	_ = a
}
