package nvme_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

// rig is a driver on a fake controller, with the allocator both share.
type rig struct {
	t    testing.TB
	fake *nvmetest.Controller
	mem  *dma.Allocator
	ctrl *nvme.Controller
	logs *testrig.Log
}

// newRig opens the driver on a new fake. Cleanup closes the driver and
// checks that no DMA memory leaked.
func newRig(t testing.TB, cfg nvmetest.Config, opts *nvme.Options) *rig {
	t.Helper()
	r := &rig{t: t, logs: &testrig.Log{}}
	o := nvme.Options{}
	if opts != nil {
		o = *opts
	}
	if o.Logf == nil {
		o.Logf = r.logs.Logf
	}
	tr := testrig.Open(t, cfg, &o)
	t.Cleanup(func() {
		if t.Failed() { // the driver's log helps to see why
			for _, l := range r.logs.Lines() {
				t.Log(l)
			}
		}
	})
	r.fake, r.mem, r.ctrl = tr.Fake, tr.Mem, tr.Ctrl
	return r
}

// qp creates a queue pair closed at cleanup (before the controller).
func (r *rig) qp(depth int) *nvme.QueuePair {
	r.t.Helper()
	q, err := r.ctrl.NewQueuePair(depth)
	if err != nil {
		r.t.Fatalf("new queue pair: %v", err)
	}
	r.t.Cleanup(func() { q.Close() })
	return q
}

func (r *rig) ns(nsid uint32) *nvme.Namespace {
	r.t.Helper()
	ns, err := r.ctrl.Namespace(nsid)
	if err != nil {
		r.t.Fatal(err)
	}
	return ns
}

// buf allocates n bytes of DMA memory, freed at cleanup.
func (r *rig) buf(n int) []byte {
	r.t.Helper()
	b, err := r.mem.Alloc(n)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { r.mem.Free(b) })
	return b.Bytes
}

// fill writes a pattern that differs for every seed and offset.
func pat(b []byte, seed int) {
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
}

func checkData(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: data differs at byte %d of %d", what, i, len(want))
	}
}

// pollUntil polls q until cond holds or d passes.
func pollUntil(t testing.TB, q *nvme.QueuePair, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if q.Poll() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("condition not met within %v (in flight %d, waiting %d)", d, q.InFlight(), q.Waiting())
			}
			time.Sleep(5 * time.Microsecond)
		}
	}
}

func newAllocator(f *nvmetest.Controller) (*dma.Allocator, error) {
	return dma.NewAllocator(f.Mapper())
}
