package tcp_test

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"testing"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/target"
	"github.com/seedb8fa28ef/gonvme/poller"
)

const targetNQN = "nqn.2024-01.io.gonvme:tcp-host-test"

// gonvmeTarget serves an nvmetest controller through gonvme's own target
// (package nvme/tcp/target, through its exported API only) on loopback.
// It returns the target, its address and the rig of the controller behind
// it.
func gonvmeTarget(t testing.TB, cfg target.Config, fake nvmetest.Config) (*target.Target, tcp.Address, *testrig.Rig) {
	t.Helper()
	tr := testrig.Open(t, fake, &nvme.Options{IOQueues: 2})
	b, err := target.DeviceBacking(tr.Ctrl)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h, p, _ := net.SplitHostPort(l.Addr().String())
	cfg.Advertise = []target.Address{{Host: h, Port: p}}
	tg, err := target.New(cfg, target.Subsystem{NQN: targetNQN, Backings: []target.Backing{b}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tg.Serve(l) }()
	t.Cleanup(func() {
		tg.Close()
		if err := <-done; !errors.Is(err, target.ErrClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	port, _ := strconv.Atoi(p)
	return tg, tcp.Address{Host: h, Port: port, NQN: targetNQN}, tr
}

// Discover lists what a discovery controller reports: gonvme's target and
// the test target.
func TestDiscover(t *testing.T) {
	_, a, _ := gonvmeTarget(t, target.Config{}, nvmetest.Config{})
	d := tcp.Address{Host: a.Host, Port: a.Port}
	es, err := tcp.Discover(d, quick(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 {
		t.Fatalf("%d entries, want 1", len(es))
	}
	e := es[0]
	if e.SubNQNString() != targetNQN || e.TRAddrString() != a.Host || e.TRSvcIDString() != strconv.Itoa(a.Port) ||
		e.TRType != fabrics.TRTypeTCP || e.SubType != fabrics.SubTypeNVM {
		t.Errorf("entry: %s %s:%s type %d subtype %d", e.SubNQNString(), e.TRAddrString(), e.TRSvcIDString(), e.TRType, e.SubType)
	}

	tg, b := fakeTarget(t, tcptestConfig())
	log, err := tcp.DiscoverLog(tcp.Address{Host: b.Host, Port: b.Port}, quick(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(log.Entries) != 1 || log.NumRec != 1 || log.GenCtr != 1 || log.Entries[0].SubNQNString() != tg.Config().SubNQN {
		t.Errorf("test target: genctr %d, %d records, %d entries", log.GenCtr, log.NumRec, len(log.Entries))
	}
}

// ddi and poller run unchanged over TCP: Strategy through a poller group
// against a controller on gonvme's target, transfers split at MDTS, data
// checked both through the host and on the controller behind the target.
func TestDDIPollerOverTCP(t *testing.T) {
	_, a, tr := gonvmeTarget(t, target.Config{MaxTransfer: 32 << 10}, nvmetest.Config{})
	for _, dg := range []bool{false, true} {
		o := quick(t)
		o.HeaderDigest, o.DataDigest = dg, dg
		ctrl := connect(t, a, o)
		if ctrl.MaxTransfer() != 32<<10 {
			t.Errorf("max transfer %d, want 32 KiB (the target's MDTS)", ctrl.MaxTransfer())
		}
		g, err := poller.New([]*nvme.Controller{ctrl}, &poller.Options{CPUs: []int{1}, Idle: poller.IdleBusy})
		if err != nil {
			t.Fatal(err)
		}
		ns, err := ctrl.Namespace(1)
		if err != nil {
			t.Fatal(err)
		}
		d, err := ddi.RegisterDevice(ns, g.Handle(ctrl))
		if err != nil {
			t.Fatal(err)
		}
		const size = 200 << 10 // 7 pieces of 32 KiB
		mem := ctrl.Memory()
		wb, err := mem.Alloc(size)
		if err != nil {
			t.Fatal(err)
		}
		rb, err := mem.Alloc(size)
		if err != nil {
			t.Fatal(err)
		}
		io := func(flags ddi.Flags, blk int64, buf []byte) error {
			bp := ddi.Getrbuf(ddi.KMSleep)
			defer ddi.Freerbuf(bp)
			bp.Flags |= flags
			bp.Edev, bp.Blkno, bp.Bcount, bp.Addr = d.Edev(), blk, len(buf), buf
			ddi.Strategy(bp)
			return ddi.Biowait(bp)
		}
		copy(wb.Bytes, pattern(size, 9))
		for i := range 8 {
			blk := int64(i * 1000)
			wb.Bytes[0] = byte(i)
			if err := io(ddi.BWrite, blk, wb.Bytes); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			clear(rb.Bytes)
			if err := io(ddi.BRead, blk, rb.Bytes); err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			if !bytes.Equal(rb.Bytes, wb.Bytes) {
				t.Fatalf("block %d: read back differs", blk)
			}
		}
		if p := d.Stats().Pieces; p < 16*7 {
			t.Errorf("%d pieces: the transfers were not split at MDTS", p)
		}
		// What the controller behind the target holds (its first 128
		// KiB: the fake's own MDTS).
		direct := tr.Buf(t, 128<<10)
		fq, err := tr.Ctrl.NewQueuePair(0)
		if err != nil {
			t.Fatal(err)
		}
		fns, _ := tr.Ctrl.Namespace(1)
		var r nvme.Request
		if err := fns.Read(&r, 7000, direct, 0); err != nil {
			t.Fatal(err)
		}
		if err := fq.Exec(&r); err != nil {
			t.Fatal(err)
		}
		fq.Close()
		if !bytes.Equal(direct, wb.Bytes[:len(direct)]) {
			t.Error("the controller behind the target holds other data")
		}
		ddi.Unregister(d.Edev())
		if err := g.Close(); err != nil {
			t.Error(err)
		}
		mem.Free(wb)
		mem.Free(rb)
	}
}
