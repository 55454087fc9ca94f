package nvme

import (
	"runtime"
	"testing"
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/internal/mmio"
)

// TestNeedEvent checks the EventIdx rule against its meaning: the
// register write is needed when the controller's EventIdx lies in
// [old, new) going round the queue, whose values wrap at its size, not at
// 2^16. Every combination for small queues, a sample for 4096. A rule
// that compares without wrapping (old <= ei < new) fails every case where
// the tail went round.
func TestNeedEvent(t *testing.T) {
	for _, size := range []int{2, 3, 8, 64, 4096} {
		step := 1
		if size > 64 {
			step = 61
		}
		for old := 0; old < size; old += step {
			for new := 0; new < size; new += step {
				for ei := 0; ei < size; ei++ {
					// ei lies in [old, new) going round the queue.
					want := (ei-old+size)%size < (new-old+size)%size
					if got := needEvent(uint16(ei), uint16(new), uint16(old)); got != want {
						t.Fatalf("size %d: needEvent(ei %d, new %d, old %d) = %v, want %v", size, ei, new, old, got, want)
					}
				}
			}
		}
	}
	// The cases Linux's comment names, and a wrap at 2^16.
	for _, c := range []struct {
		ei, new, old uint16
		want         bool
	}{
		{0, 1, 0, true},
		{0, 2, 1, false},
		{5, 10, 5, true},
		{9, 10, 5, true},
		{10, 10, 5, false},
		{4, 10, 5, false},
		{1023, 0, 1023, true}, // a 1024-entry queue going round
		{1022, 0, 1023, false},
		{65535, 1, 65534, true},
	} {
		if got := needEvent(c.ei, c.new, c.old); got != c.want {
			t.Errorf("needEvent(ei %d, new %d, old %d) = %v, want %v", c.ei, c.new, c.old, got, c.want)
		}
	}
}

// benchRing measures ringDoorbells alone (one new tail and one new head
// per call) on plain memory standing in for the registers and the two
// buffers, with shadow doorbells or without: the host-side cost of the
// protocol (two stores, a fence, two loads) against two register stores,
// without a device. (What a trap costs a hypervisor, no host benchmark
// shows: the VM bench does.)
func benchRing(b *testing.B, shadow bool) {
	mem := make([]uint64, 3*4096/8) // registers, shadow buffer, EventIdx
	bytes := unsafe.Slice((*byte)(unsafe.Pointer(&mem[0])), 8*len(mem))
	regs := mmio.New(bytes[:4096])
	q := &QueuePair{ctrl: &Controller{}, id: 1, size: 1024}
	q.regs, q.sqDB, q.cqDB = regs, 8, 12
	if shadow {
		q.db = shadowDB{on: true, shadow: mmio.New(bytes[4096:8192]), ei: mmio.New(bytes[8192:]), sqOff: 8, cqOff: 12}
	}
	for b.Loop() {
		q.sqTail = (q.sqTail + 1) % q.size
		q.cqHead = (q.cqHead + 1) % q.size
		q.ringDoorbells(true)
	}
	runtime.KeepAlive(mem)
}

func BenchmarkRingMMIO(b *testing.B)   { benchRing(b, false) }
func BenchmarkRingShadow(b *testing.B) { benchRing(b, true) }
