package nvme_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// The shadow doorbell tests run on nvmetest's Doorbell Buffer Config,
// which behaves like QEMU's (nvmetest/dbbuf.go): a submission queue it
// caught up with sleeps until an MMIO doorbell write wakes it, so a
// doorbell the driver skipped although the EventIdx asked for it leaves
// commands unfetched and the test fails on its deadline.

// dbbufConfigs counts the Doorbell Buffer Config commands the fake saw.
func dbbufConfigs(f *nvmetest.Controller) uint64 {
	return f.Stats().AdminCommands(spec.AdminDoorbellBufferConfig)
}

// checkDoorbellSums: every doorbell update is a register write or one
// saved.
func checkDoorbellSums(t *testing.T, s nvme.QueueStats) {
	t.Helper()
	if s.MMIODoorbells+s.SavedDoorbells != s.SQDoorbells+s.CQDoorbells {
		t.Errorf("MMIO %d + saved %d doorbells != SQ %d + CQ %d updates", s.MMIODoorbells, s.SavedDoorbells, s.SQDoorbells, s.CQDoorbells)
	}
}

// runIO writes n blocks of bs bytes through q at depth qd (rounds of
// writes, then reads of the same blocks), checks every byte read back,
// and fails if anything is still outstanding after 20 s.
func runIO(t *testing.T, r *rig, q *nvme.QueuePair, n, qd, seed int) {
	t.Helper()
	ns := r.ns(1)
	bs := int(ns.BlockSize())
	blocks := ns.Blocks()
	wbuf, rbuf := r.buf(n*bs), r.buf(n*bs)
	pat(wbuf, seed)
	reqs := make([]nvme.Request, qd)
	for pass, write := range []bool{true, false} {
		next, done := 0, 0
		var failed error
		submit := func(req *nvme.Request) {
			i := next
			next++
			lba := uint64(i) % blocks
			var err error
			if write {
				err = ns.Write(req, lba, wbuf[i*bs:(i+1)*bs], 0)
			} else {
				err = ns.Read(req, lba, rbuf[i*bs:(i+1)*bs], 0)
			}
			if err == nil {
				err = q.Submit(req)
			}
			if err != nil {
				t.Fatalf("pass %d, block %d: %v", pass, i, err)
			}
		}
		for i := range reqs {
			reqs[i].Done = func(req *nvme.Request) {
				done++
				if req.Err != nil && failed == nil {
					failed = req.Err
				}
				if next < n {
					submit(req)
				}
			}
		}
		for i := 0; i < qd && next < n; i++ {
			submit(&reqs[i])
		}
		pollUntil(t, q, 20*time.Second, func() bool { return done == n })
		if failed != nil {
			t.Fatalf("pass %d: %v", pass, failed)
		}
	}
	checkData(t, "read back", rbuf, wbuf)
}

// TestShadowDoorbellsIO: with the fake offering Doorbell Buffer Config the
// driver sends it once and runs I/O through shadow doorbells on small
// queues (the tails go round hundreds of times) with late, out of order
// completions: every command completes and every byte reads back. (The
// fake fetches at once and goes back to sleep, so its EventIdx nearly
// always asks for the register write here; TestShadowDoorbellsSaving
// shows the saving.)
func TestShadowDoorbellsIO(t *testing.T) {
	for _, depth := range []int{2, 4, 32} {
		t.Run(fmt.Sprintf("depth%d", depth), func(t *testing.T) {
			r := newRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}}, nil)
			if !r.ctrl.ShadowDoorbells() {
				t.Fatal("ShadowDoorbells() = false on a controller that offers Doorbell Buffer Config")
			}
			q := r.qp(depth)
			runIO(t, r, q, 2000, depth-1, depth)
			s := q.Stats()
			checkDoorbellSums(t, s)
			t.Logf("%d commands: %d SQ + %d CQ doorbell updates, %d MMIO writes, %d saved; the fake was woken %d times",
				s.Submitted, s.SQDoorbells, s.CQDoorbells, s.MMIODoorbells, s.SavedDoorbells, r.fake.Stats().DoorbellWakes)
			if got := dbbufConfigs(r.fake); got != 1 {
				t.Errorf("%d Doorbell Buffer Config commands, want 1", got)
			}
		})
	}
}

// submitPaused submits n reads (one Ring each) while the fake is paused,
// so nothing moves its EventIdx: the first tail moves past it and is
// written to the register, the n-1 after it are only stored in the shadow
// buffer. Then it lets the fake run and waits for all n.
func submitPaused(t *testing.T, r *rig, q *nvme.QueuePair, n int) (before, after nvme.QueueStats) {
	t.Helper()
	ns := r.ns(1)
	bs := int(ns.BlockSize())
	buf := r.buf(n * bs)
	reqs := make([]nvme.Request, n)
	done := 0
	before = q.Stats()
	resume := r.fake.Pause()
	defer resume()
	for i := range reqs {
		reqs[i].Done = func(req *nvme.Request) {
			done++
			if req.Err != nil {
				t.Errorf("read %d: %v", i, req.Err)
			}
		}
		if err := ns.Read(&reqs[i], uint64(i), buf[i*bs:(i+1)*bs], 0); err != nil {
			t.Fatal(err)
		}
		if err := q.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
		q.Ring()
	}
	after = q.Stats()
	resume()
	pollUntil(t, q, 20*time.Second, func() bool { return done == n })
	return before, after
}

// TestShadowDoorbellsSaving: ten tails given one by one while the
// controller is not looking cost one register write, not ten; the
// controller fetches all ten.
func TestShadowDoorbellsSaving(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	q := r.qp(64)
	before, after := submitPaused(t, r, q, 10)
	if d := after.SQDoorbells - before.SQDoorbells; d != 10 {
		t.Errorf("%d submission doorbell updates, want 10", d)
	}
	if mmio, saved := after.MMIODoorbells-before.MMIODoorbells, after.SavedDoorbells-before.SavedDoorbells; mmio != 1 || saved != 9 {
		t.Errorf("10 tails: %d register writes and %d saved, want 1 and 9", mmio, saved)
	}
	// The controller went back to sleep: the next tail passes its
	// EventIdx again and is written to the register.
	before, after = submitPaused(t, r, q, 3)
	if mmio := after.MMIODoorbells - before.MMIODoorbells; mmio != 1 {
		t.Errorf("3 tails after the controller caught up: %d register writes, want 1", mmio)
	}
	checkDoorbellSums(t, q.Stats())
}

// TestShadowDoorbellsReset: a controller reset forgets the buffers; the
// driver sends Doorbell Buffer Config again before the queues come back,
// so shadow doorbells keep working (without it, the paused submissions
// below would be invisible to the controller, which reads the registers
// again, and the test would time out).
func TestShadowDoorbellsReset(t *testing.T) {
	r := newRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}}, nil)
	q := r.qp(16)
	runIO(t, r, q, 300, 15, 1)
	if err := r.ctrl.Reset(); err != nil {
		t.Fatal(err)
	}
	if got := dbbufConfigs(r.fake); got != 2 {
		t.Errorf("%d Doorbell Buffer Config commands after a reset, want 2", got)
	}
	runIO(t, r, q, 300, 15, 2)
	before, after := submitPaused(t, r, q, 8)
	if mmio := after.MMIODoorbells - before.MMIODoorbells; mmio != 1 {
		t.Errorf("8 tails after the reset: %d register writes, want 1", mmio)
	}
	checkDoorbellSums(t, q.Stats())
}

// TestShadowDoorbellsQueueReuse: a queue ID used again after its queue
// pair was closed starts from zeroed entries: a stale tail in the shadow
// buffer would make the controller fetch old entries, a stale EventIdx
// would make the driver skip the first doorbell.
func TestShadowDoorbellsQueueReuse(t *testing.T) {
	r := newRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}}, nil)
	q, err := r.ctrl.NewQueuePair(16)
	if err != nil {
		t.Fatal(err)
	}
	runIO(t, r, q, 101, 7, 3) // leaves the tail inside the queue
	id := q.ID()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q2 := r.qp(16)
	if q2.ID() != id {
		t.Fatalf("new queue pair got ID %d, want %d again", q2.ID(), id)
	}
	submitPaused(t, r, q2, 5)
	runIO(t, r, q2, 200, 15, 4)
	if s := q2.Stats(); s.BogusCIDs != 0 {
		t.Errorf("%d completions for commands never issued", s.BogusCIDs)
	}
}

// TestShadowDoorbellsNotOffered: a controller without OACS bit 8 is not
// sent Doorbell Buffer Config, and every doorbell is a register write.
func TestShadowDoorbellsNotOffered(t *testing.T) {
	r := newRig(t, nvmetest.Config{NoDoorbellBuffer: true}, nil)
	checkMMIOOnly(t, r)
}

// TestShadowDoorbellsOff: Options.NoShadowDoorbells keeps the registers
// even when the controller offers the buffers.
func TestShadowDoorbellsOff(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, &nvme.Options{NoShadowDoorbells: true})
	checkMMIOOnly(t, r)
}

func checkMMIOOnly(t *testing.T, r *rig) {
	t.Helper()
	if r.ctrl.ShadowDoorbells() {
		t.Error("ShadowDoorbells() = true")
	}
	q := r.qp(8)
	runIO(t, r, q, 300, 7, 5)
	if got := dbbufConfigs(r.fake); got != 0 {
		t.Errorf("%d Doorbell Buffer Config commands sent, want none", got)
	}
	s := q.Stats()
	checkDoorbellSums(t, s)
	if s.SavedDoorbells != 0 || s.MMIODoorbells != s.SQDoorbells+s.CQDoorbells {
		t.Errorf("%d register writes, %d saved, of %d updates: want every update written", s.MMIODoorbells, s.SavedDoorbells, s.SQDoorbells+s.CQDoorbells)
	}
	if w := r.fake.Stats().DoorbellWakes; w != 0 {
		t.Errorf("the fake woke %d shadow-doorbell queues", w)
	}
}

// TestShadowDoorbellsStride: the shadow and EventIdx entries follow the
// doorbell stride (CAP.DSTRD): entry 2y*(4<<DSTRD) for submission queue y,
// (2y+1)*(4<<DSTRD) for its completion queue, relative to 1000h. With
// DSTRD 3 a driver that laid them out 4 bytes apart would store its
// tails where the fake never looks, and the paused submissions would
// never be fetched.
func TestShadowDoorbellsStride(t *testing.T) {
	r := newRig(t, nvmetest.Config{DSTRD: 3, MaxQueuePairs: 4, Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}}, nil)
	q1, q2 := r.qp(8), r.qp(8)
	for _, q := range []*nvme.QueuePair{q1, q2} {
		before, after := submitPaused(t, r, q, 5)
		if mmio := after.MMIODoorbells - before.MMIODoorbells; mmio != 1 {
			t.Errorf("queue %d: 5 tails, %d register writes, want 1", q.ID(), mmio)
		}
		runIO(t, r, q, 200, 7, int(q.ID()))
	}
}
