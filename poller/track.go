package poller

import (
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/nvme"
)

// A tracked request is one the poller handed to a queue pair: its Done
// callback was replaced by the poller's, so the poller sees the completion
// and can count it and time it. The side table keeps what the request's
// own fields cannot (Private belongs to the caller): the caller's Done,
// the submission time and the queue pair.
type tracked struct {
	req   *nvme.Request
	done  func(*nvme.Request)
	stamp int64
	qp    int32 // index into Poller.qps
}

// trackTable is an open-addressing hash table keyed by request pointer,
// with linear probing and backward-shift deletion (no tombstones). It grows
// by doubling when half full; in steady state nothing is allocated. Poller
// goroutine only.
type trackTable struct {
	slot  []tracked
	mask  uintptr
	shift uint
	n     int
}

func newTrackTable(capacity int) *trackTable {
	n := 16
	for n < 2*capacity {
		n <<= 1
	}
	t := &trackTable{}
	t.resize(n)
	return t
}

func (t *trackTable) resize(n int) {
	t.slot = make([]tracked, n)
	t.mask = uintptr(n - 1)
	t.shift = 64
	for m := n; m > 1; m >>= 1 {
		t.shift--
	}
	t.n = 0
}

func (t *trackTable) home(r *nvme.Request) uintptr {
	// Fibonacci hashing of the address: the top bits of the product
	// depend on every bit of the pointer.
	h := uint64(uintptr(unsafe.Pointer(r))) * 0x9E3779B97F4A7C15
	return uintptr(h >> t.shift)
}

// put adds r; false if r is already present (submitted twice).
func (t *trackTable) put(e tracked) bool {
	if 2*(t.n+1) > len(t.slot) {
		t.grow()
	}
	i := t.home(e.req)
	for {
		s := &t.slot[i]
		if s.req == nil {
			*s = e
			t.n++
			return true
		}
		if s.req == e.req {
			return false
		}
		i = (i + 1) & t.mask
	}
}

// take removes r and returns its entry.
func (t *trackTable) take(r *nvme.Request) (tracked, bool) {
	i := t.home(r)
	for {
		s := &t.slot[i]
		if s.req == nil {
			return tracked{}, false
		}
		if s.req == r {
			break
		}
		i = (i + 1) & t.mask
	}
	e := t.slot[i]
	// Backward shift: move later entries of the probe run into the hole
	// when their home position allows it.
	j := i
	for {
		j = (j + 1) & t.mask
		s := &t.slot[j]
		if s.req == nil {
			break
		}
		h := t.home(s.req)
		// s may move to i if i lies cyclically in [h, j).
		if (j-h)&t.mask >= (j-i)&t.mask {
			t.slot[i] = *s
			i = j
		}
	}
	t.slot[i] = tracked{}
	t.n--
	return e, true
}

func (t *trackTable) grow() {
	old := t.slot
	t.resize(2 * len(old))
	for _, e := range old {
		if e.req != nil {
			t.put(e)
		}
	}
}

// each calls f for every entry. f must not change the table.
func (t *trackTable) each(f func(*tracked)) {
	for i := range t.slot {
		if t.slot[i].req != nil {
			f(&t.slot[i])
		}
	}
}
