package reliability_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// TestSoak is the integrity soak on nvmetest: six workers on two
// namespaces (512 B blocks; 4096 B blocks with a 256 KiB NOIOB stripe),
// transfers from one block to 4 MiB split at MDTS 5 (128 KiB), through
// two shared polling submitters and two SyncSubmitters of their own;
// every read is verified, then every block of every partition.
func TestSoak(t *testing.T) {
	dur := 2 * time.Second
	if long() {
		dur = 60 * time.Second
	}
	r := newFakeRig(t, nvmetest.Config{MDTS: 5, Namespaces: []nvmetest.NSConfig{
		{Blocks: 96 << 20 / 512, BlockSize: 512},
		{Blocks: 64 << 20 / 4096, BlockSize: 4096, NOIOB: 64},
	}}, nvme.Options{IOQueueDepth: 64})
	if mx := r.ctrl.MaxTransfer(); mx != 128<<10 {
		t.Fatalf("max transfer %d, want 128 KiB (MDTS 5)", mx)
	}
	l1, l2, s1, s2 := r.loop(64), r.loop(32), r.sync(16), r.sync(16)
	var tgs []target
	// ns 1: four workers, two on one shared loop, one on the other, one
	// on a SyncSubmitter of its own. ns 2: two workers.
	for i, w := range []struct {
		nsid uint32
		sub  ddi.Submitter
		via  string
	}{
		{1, l1, "ns 1, shared loop 1"}, {1, l1, "ns 1, shared loop 1"}, {1, l2, "ns 1, shared loop 2"}, {1, s1, "ns 1, own SyncSubmitter"},
		{2, l2, "ns 2, shared loop 2"}, {2, s2, "ns 2, own SyncSubmitter"},
	} {
		d := r.register(w.nsid, w.sub)
		k, parts := i, 4
		if w.nsid == 2 {
			k, parts = i-4, 2
		}
		lo, hi := part(d.Namespace().Blocks(), parts, k)
		tgs = append(tgs, target{dev: d, via: w.via, lo: lo, hi: hi})
	}
	for _, d := range r.devs {
		if d.Namespace().ID() == 2 && d.StripeBlocks() != 64 {
			t.Fatalf("ns 2 stripe %d blocks, want 64", d.StripeBlocks())
		}
	}
	before := ddi.ReadStats()
	start := time.Now()
	l := r.start(loadConfig{run: newRun(), targets: tgs, maxBytes: 4 << 20, duration: dur, deliver: 20 * time.Second})
	l.wg.Wait()
	ran := time.Since(start)
	l.checkExactlyOnce()
	s := l.totals()
	swept := l.sweep()
	t.Logf("soak %v: %v", ran.Round(time.Millisecond), s)
	t.Logf("final sweep: %.1f MiB of tagged blocks verified across %d partitions", mib(swept), len(tgs))
	if s.writes == 0 || s.reads == 0 || swept == 0 {
		t.Fatalf("the soak did nothing: %v", s)
	}
	if len(l.failures()) > 0 {
		t.Fatalf("%d failed Bufs", len(l.failures()))
	}
	qs := r.qstats()
	var pieces uint64
	for _, d := range r.devs {
		pieces += d.Stats().Pieces
	}
	t.Logf("%d commands submitted on the queue pairs, %d waited for a command ID, %d ddi pieces", qs.Submitted, qs.Waits, pieces)
	if qs.Submitted < pieces || pieces <= s.started {
		t.Errorf("%d commands on the queues, %d pieces, %d Bufs: the transfers were not split", qs.Submitted, pieces, s.started)
	}
	if qs.Errors != 0 || qs.BogusCIDs != 0 || qs.Failed != 0 {
		t.Errorf("queue stats %+v", qs)
	}
	after := ddi.ReadStats()
	if after.DoubleBiodone != before.DoubleBiodone || after.EarlyBiodone != before.EarlyBiodone || after.Busy != before.Busy {
		t.Errorf("ddi misuse counters moved: %+v -> %+v", before, after)
	}
}

// captureTB records the errors a load reports instead of failing the test.
type captureTB struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

func (c *captureTB) Errorf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, fmt.Sprintf(format, args...))
}

func (c *captureTB) Helper() {}

// liar is a Submitter that damages every few writes the way a broken
// device (or driver) would, without saying so.
type liar struct {
	sub   ddi.Submitter
	mode  string
	every int64
	n     atomic.Int64
	lies  atomic.Int64
}

func (l *liar) Submit(r *nvme.Request) error {
	if spec.Opcode(r.Cmd.Opcode) != spec.IOWrite || l.n.Add(1)%l.every != 0 {
		return l.sub.Submit(r)
	}
	l.lies.Add(1)
	switch l.mode {
	case "drop": // complete without writing
		r.Err = nil
		r.Done(r)
		return nil
	case "misdirect": // one block further on
		r.Cmd.CDW10++
	case "corrupt": // one bit of the last block
		r.Data[len(r.Data)-1] ^= 0x40
	}
	return l.sub.Submit(r)
}

// TestSoakCatches shows the soak's checks fail when data is lost: a
// Submitter that silently drops, misdirects or corrupts one write in
// seven must make the load report it.
func TestSoakCatches(t *testing.T) {
	for _, tc := range []struct{ mode, want string }{
		{"drop", "no tag|lost or stale"},
		{"misdirect", "misdirected"},
		{"corrupt", "corrupt"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			r := newFakeRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 16 << 20 / 512}}}, nvme.Options{})
			lr := &liar{sub: r.loop(32), mode: tc.mode, every: 7}
			d := r.register(1, lr)
			var tgs []target
			for i := range 2 {
				lo, hi := part(d.Namespace().Blocks(), 2, i)
				tgs = append(tgs, target{dev: d, via: "liar", lo: lo, hi: hi})
			}
			ct := &captureTB{TB: t}
			l := newLoad(ct, loadConfig{run: newRun(), mem: r.mem, targets: tgs, maxBytes: 1 << 20, duration: 300 * time.Millisecond, accept: func(string, error) bool { return true }})
			r.loads = append(r.loads, l)
			l.run()
			l.wg.Wait()
			l.sweep()
			if lr.lies.Load() == 0 {
				t.Fatal("the liar never lied")
			}
			found := ""
			for _, m := range ct.msgs {
				for _, w := range strings.Split(tc.want, "|") {
					if strings.Contains(m, w) {
						found = m
					}
				}
			}
			if found == "" {
				t.Fatalf("%d lies, and the load reported %q; want a message with %q", lr.lies.Load(), ct.msgs, tc.want)
			}
			t.Logf("%d lies; %d reports, e.g. %s", lr.lies.Load(), len(ct.msgs), found)
		})
	}
}
