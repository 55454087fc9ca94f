package target

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// A host brings a controller up, identifies it, and writes then reads
// back through in-capsule data and R2T, with digests off and on, reads
// completed by CapsuleResp and by SUCCESS.
func TestEndToEnd(t *testing.T) {
	for _, dg := range []struct{ hd, dd bool }{{false, false}, {true, false}, {true, true}} {
		for _, cattr := range []uint8{0, fabrics.CAttrDisableSQFlow} {
			t.Run(fmt.Sprintf("hdgst=%t/ddgst=%t/cattr=%d", dg.hd, dg.dd, cattr), func(t *testing.T) {
				r := newRig(t, Config{}, nvmetest.Config{Serial: "SERIAL42", VWC: true})
				a, cntlid := r.bringUp(t, dg.hd, dg.dd)

				idc := make([]byte, spec.IdentifySize)
				a.ok(spec.Command{Opcode: uint8(spec.AdminIdentify), CDW10: spec.CNSController}, nil, idc)
				ic, err := spec.ParseIdentifyController(idc)
				if err != nil {
					t.Fatal(err)
				}
				if got := strings.TrimSpace(string(idc[4:24])); got != "SERIAL42" {
					t.Errorf("serial %q", got)
				}
				if ic.CNTRLTYPE != spec.CtrlTypeIO || ic.CNTLID != cntlid || ic.MDTS != 5 || !ic.SupportsSGL() {
					t.Errorf("identify: type %d cntlid %d mdts %d sgls %#x", ic.CNTRLTYPE, ic.CNTLID, ic.MDTS, ic.SGLS)
				}
				if sub := strings.TrimRight(string(idc[0x300:0x400]), "\x00"); sub != testNQN {
					t.Errorf("subnqn %q", sub)
				}
				le := func(o int) uint32 {
					return uint32(idc[o]) | uint32(idc[o+1])<<8 | uint32(idc[o+2])<<16 | uint32(idc[o+3])<<24
				}
				if le(0x700) != (64+8192)/16 || le(0x704) != 1 || idc[0x708] != 0 || idc[0x20d]&1 != 1 {
					t.Errorf("ioccsz %d iorcsz %d icdoff %d vwc %d", le(0x700), le(0x704), idc[0x708], idc[0x20d])
				}
				list := make([]byte, spec.IdentifySize)
				a.ok(spec.Command{Opcode: uint8(spec.AdminIdentify), CDW10: spec.CNSActiveNamespaces}, nil, list)
				if list[0] != 1 || list[4] != 0 {
					t.Errorf("active ns list % x", list[:8])
				}
				idns := make([]byte, spec.IdentifySize)
				a.ok(spec.Command{Opcode: uint8(spec.AdminIdentify), NSID: 1, CDW10: spec.CNSNamespace}, nil, idns)
				nsz := uint64(idns[0]) | uint64(idns[1])<<8 | uint64(idns[2])<<16 | uint64(idns[3])<<24
				if nsz != 64<<20/512 {
					t.Errorf("nsze %d", nsz)
				}
				// Number of queues, then two I/O queues.
				cqe := a.ok(spec.Command{Opcode: uint8(spec.AdminSetFeatures), CDW10: spec.FeatureNumberOfQueues, CDW11: 1 | 1<<16}, nil, nil)
				if cqe.DW0 != 1|1<<16 {
					t.Errorf("queues %#x", cqe.DW0)
				}
				q1 := r.ioQueue(t, cntlid, 1, dg.hd, dg.dd, cattr)
				q2 := r.ioQueue(t, cntlid, 2, dg.hd, dg.dd, cattr)
				// In-capsule write (4 KiB) on q1, R2T write (96 KiB) on q2.
				small := pattern(4096, 1)
				q1.ok(rw(spec.IOWrite, 8, 8), small, nil)
				big := pattern(96<<10, 2)
				q2.ok(rw(spec.IOWrite, 1000, len(big)/512), big, nil)
				got := make([]byte, len(small))
				q2.ok(rw(spec.IORead, 8, 8), nil, got)
				if !bytes.Equal(got, small) {
					t.Error("in-capsule write read back differs")
				}
				got = make([]byte, len(big))
				q1.ok(rw(spec.IORead, 1000, len(big)/512), nil, got)
				if !bytes.Equal(got, big) {
					t.Error("r2t write read back differs")
				}
				// What the backing holds, read directly.
				direct := r.tr.Buf(t, len(big))
				ns, _ := r.tr.Ctrl.Namespace(1)
				qp := r.tr.QueuePair(t, 8)
				if err := ns.ReadAt(qp, direct, 1000); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(direct, big) {
					t.Error("the backing does not hold what the host wrote")
				}
				// Write Zeroes, Flush, Dataset Management.
				// 300 blocks: two backing requests of at most 256.
				q1.ok(rw(spec.IOWriteZeroes, 1100, 300), nil, nil)
				q1.ok(rw(spec.IORead, 1000, len(big)/512), nil, got)
				if !bytes.Equal(got[:100*512], big[:100*512]) || !bytes.Equal(got[100*512:], make([]byte, len(big)-100*512)) {
					t.Error("write zeroes: wrong data after")
				}
				q1.ok(spec.Command{Opcode: uint8(spec.IOFlush), NSID: 1}, nil, nil)
				dsm := make([]byte, 16)
				dsm[4] = 8 // 8 blocks at LBA 0
				q1.ok(spec.Command{Opcode: uint8(spec.IODatasetManagement), NSID: 1, CDW11: 1 << 2}, dsm, nil)
				// Logs and features.
				smart := make([]byte, 512)
				a.ok(spec.Command{Opcode: uint8(spec.AdminGetLogPage), NSID: 0xffffffff, CDW10: spec.LogSMART | (512/4-1)<<16}, nil, smart)
				a.ok(spec.Command{Opcode: uint8(spec.AdminGetLogPage), CDW10: spec.LogChangedNamespaces | (4096/4-1)<<16}, nil, make([]byte, 4096))
				a.ok(spec.Command{Opcode: uint8(spec.AdminGetLogPage), CDW10: spec.LogErrorInformation | (64/4-1)<<16}, nil, make([]byte, 64))
				a.ok(spec.Command{Opcode: uint8(spec.AdminSetFeatures), CDW10: spec.FeatureAsyncEventConfig, CDW11: 1 << 8}, nil, nil)
				if c := a.ok(spec.Command{Opcode: uint8(spec.AdminGetFeatures), CDW10: spec.FeatureAsyncEventConfig}, nil, nil); c.DW0 != 1<<8 {
					t.Errorf("async event config %#x", c.DW0)
				}
				a.ok(spec.Command{Opcode: uint8(spec.AdminKeepAlive)}, nil, nil)
				// Shutdown.
				a.propSet(spec.RegCC, uint64(spec.CC(0).WithIOSQES(6).WithIOCQES(4).WithEN(true).WithSHN(1)))
				if cs := spec.CSTS(a.propGet(spec.RegCSTS)); cs.SHST() != spec.SHSTComplete {
					t.Errorf("CSTS %v after shutdown", cs)
				}
			})
		}
	}
}

// Commands the target must refuse with a status, on a connection that
// then carries on.
func TestRefusedCommands(t *testing.T) {
	r := newRig(t, Config{}, nvmetest.Config{})
	a, cntlid := r.bringUp(t, false, false)
	q := r.ioQueue(t, cntlid, 1, false, false, 0)
	blocks := uint64(64 << 20 / 512)
	cases := []struct {
		name string
		h    *host
		cmd  spec.Command
		w, r []byte
		want spec.Status
	}{
		{"unknown io opcode", q, spec.Command{Opcode: 0x55, NSID: 1}, nil, nil, spec.MakeStatus(spec.SCTGeneric, spec.SCInvalidOpcode)},
		{"unknown admin opcode", a, spec.Command{Opcode: 0x55}, nil, nil, spec.MakeStatus(spec.SCTGeneric, spec.SCInvalidOpcode)},
		{"read past the end", q, rw(spec.IORead, blocks-1, 2), nil, make([]byte, 1024), spec.MakeStatus(spec.SCTGeneric, spec.SCLBAOutOfRange)},
		{"write past the end", q, rw(spec.IOWrite, blocks, 1), make([]byte, 512), nil, spec.MakeStatus(spec.SCTGeneric, spec.SCLBAOutOfRange)},
		{"lba wraps", q, rw(spec.IORead, ^uint64(0), 2), nil, make([]byte, 1024), spec.MakeStatus(spec.SCTGeneric, spec.SCLBAOutOfRange)},
		{"over mdts", q, rw(spec.IORead, 0, 257), nil, make([]byte, 257*512), spec.MakeStatus(spec.SCTGeneric, spec.SCInvalidField)},
		{"bad nsid", q, spec.Command{Opcode: uint8(spec.IORead), NSID: 7}, nil, make([]byte, 512), spec.MakeStatus(spec.SCTGeneric, spec.SCInvalidNamespace)},
		{"sgl length short", q, rw(spec.IOWrite, 0, 2), make([]byte, 512), nil, spec.MakeStatus(spec.SCTGeneric, spec.SCDataSGLLengthInvalid)},
		{"identify bad cns", a, spec.Command{Opcode: uint8(spec.AdminIdentify), CDW10: 0x44}, nil, make([]byte, 4096), spec.MakeStatus(spec.SCTGeneric, spec.SCInvalidField)},
		{"unknown log", a, spec.Command{Opcode: uint8(spec.AdminGetLogPage), CDW10: 0x33}, nil, make([]byte, 4), spec.MakeStatus(spec.SCTCommandSpecific, spec.SCInvalidLogPage)},
		{"property set read-only", a, (&fabrics.PropertySetCommand{Attrib: fabrics.PropertySize4, Offset: spec.RegCSTS}).SQE(), nil, nil, spec.MakeStatus(spec.SCTGeneric, spec.SCInvalidField)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.h.status(c.cmd, c.w, c.r); got != c.want {
				t.Errorf("status %v, want %v", fabrics.StatusName(got), fabrics.StatusName(c.want))
			}
		})
	}
	// Both queues still work.
	q.ok(rw(spec.IOWrite, 0, 1), pattern(512, 9), nil)
	a.ok(spec.Command{Opcode: uint8(spec.AdminKeepAlive)}, nil, nil)
}

// Connect with the wrong NQN, CNTLID or host is refused with the status
// naming the problem; an allow-list keeps strangers out.
func TestConnectRefused(t *testing.T) {
	allowed := fabrics.UUIDNQN([16]byte{1, 2, 3, 4})
	r := newRig(t, Config{AllowHosts: []string{allowed}}, nvmetest.Config{})
	_, cntlid := r.bringUp(t, false, false)
	invalid := spec.MakeStatus(spec.SCTCommandSpecific, fabrics.SCConnectInvalidParams)
	badHost := spec.MakeStatus(spec.SCTCommandSpecific, fabrics.SCConnectInvalidHost)
	check := func(name string, h *host, qid, id uint16, nqn string, want spec.Status, wantOff uint16) {
		t.Helper()
		cqe, err := h.connect(qid, id, nqn, 0, 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := cqe.StatusField().Code(); got != want {
			t.Errorf("%s: %v, want %v", name, fabrics.StatusName(got), fabrics.StatusName(want))
		}
		if want == invalid {
			if off, _ := fabrics.ConnectResponse(cqe.DW0).InvalidParameter(); off != wantOff {
				t.Errorf("%s: invalid parameter at %#x, want %#x", name, off, wantOff)
			}
		}
	}
	check("wrong subsystem", r.dial(t, false, false), 0, fabrics.CNTLIDDynamic, "nqn.2024-01.io.gonvme:nope", invalid, fabrics.ConnectOffSubNQN)
	check("static cntlid on admin", r.dial(t, false, false), 0, 5, testNQN, invalid, fabrics.ConnectOffCNTLID)
	check("unknown cntlid", r.dial(t, false, false), 1, cntlid+100, testNQN, invalid, fabrics.ConnectOffCNTLID)
	check("qid past the granted queues", r.dial(t, false, false), 9, cntlid, testNQN, invalid, fabrics.ConnectOffQID)
	stranger := r.dial(t, false, false)
	stranger.hostID = [16]byte{9}
	stranger.hostNQN = fabrics.UUIDNQN(stranger.hostID)
	check("host not allowed", stranger, 0, fabrics.CNTLIDDynamic, testNQN, badHost, 0)
	// The discovery controller takes any host.
	check("discovery from a stranger", stranger, 0, fabrics.CNTLIDDynamic, fabrics.DiscoveryNQN, 0, 0)
	// The refused hosts did not disturb the live association.
	q := r.ioQueue(t, cntlid, 1, false, false, 0)
	q.ok(rw(spec.IOWrite, 0, 1), pattern(512, 3), nil)
}

// The discovery controller lists the subsystem at the advertised address.
func TestDiscovery(t *testing.T) {
	r := newRig(t, Config{}, nvmetest.Config{})
	d := r.dial(t, false, false)
	cqe, err := d.connect(0, fabrics.CNTLIDDynamic, fabrics.DiscoveryNQN, 0, 0)
	if err != nil || !cqe.StatusField().Success() {
		t.Fatalf("connect: %v %v", err, cqe.StatusField())
	}
	idc := make([]byte, spec.IdentifySize)
	d.ok(spec.Command{Opcode: uint8(spec.AdminIdentify), CDW10: spec.CNSController}, nil, idc)
	if idc[0x6f] != spec.CtrlTypeDiscovery {
		t.Errorf("controller type %d", idc[0x6f])
	}
	log := make([]byte, 4096)
	d.ok(spec.Command{Opcode: uint8(spec.AdminGetLogPage), CDW10: spec.LogDiscovery | (4096/4-1)<<16}, nil, log)
	dl, err := fabrics.ParseDiscoveryLog(log)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl.Entries) != 1 {
		t.Fatalf("%d entries", len(dl.Entries))
	}
	e := dl.Entries[0]
	if e.SubNQNString() != testNQN || e.TRAddrString()+":"+e.TRSvcIDString() != r.addr || e.TRType != fabrics.TRTypeTCP {
		t.Errorf("entry %s %s:%s", e.SubNQNString(), e.TRAddrString(), e.TRSvcIDString())
	}
}

// Two hosts at once, each with its own controller, writing and reading
// their own ranges concurrently.
func TestTwoHosts(t *testing.T) {
	r := newRig(t, Config{}, nvmetest.Config{})
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, cntlid := r.bringUp(t, i == 1, i == 1)
			_ = a
			q := r.ioQueue(t, cntlid, 1, i == 1, i == 1, 0)
			for j := range 20 {
				lba := uint64(i*10000 + j*64)
				data := pattern(32<<10, byte(i*31+j))
				if c, err := q.do(rw(spec.IOWrite, lba, 64), data, nil); err != nil || !c.StatusField().Success() {
					t.Errorf("host %d write: %v %v", i, err, c.StatusField())
					return
				}
				got := make([]byte, len(data))
				if c, err := q.do(rw(spec.IORead, lba, 64), nil, got); err != nil || !c.StatusField().Success() {
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
	wg.Wait()
	if n := r.tgt.Controllers(); n != 2 {
		t.Errorf("%d controllers", n)
	}
}
