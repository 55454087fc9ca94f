package dma

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// TestSpaceFirstFitModel checks the IOVA free list against a bitmap model:
// every alloc must return the lowest aligned free run (first fit over
// coalesced extents is exactly that), fail only when there is none, and
// every release must make the run allocatable again.
func TestSpaceFirstFitModel(t *testing.T) {
	windows := []Range{{Start: 3, Last: 100}, {Start: 101, Last: 130}, {Start: 160, Last: 255}}
	const minIOVA = 4
	s := newSpace(windows, minIOVA)
	var free [256]bool
	for _, w := range windows {
		for a := max(w.Start, minIOVA); a <= w.Last; a++ {
			free[a] = true
		}
	}
	type alloc struct{ iova, size uint64 }
	var live []alloc
	rng := rand.New(rand.NewPCG(1, 2))
	fits := func(start, size uint64) bool {
		for a := start; a < start+size; a++ {
			if a >= uint64(len(free)) || !free[a] {
				return false
			}
		}
		return true
	}
	for step := range 20000 {
		if len(live) > 0 && rng.IntN(3) == 0 {
			i := rng.IntN(len(live))
			a := live[i]
			live = append(live[:i], live[i+1:]...)
			s.release(IOVA(a.iova), a.size)
			for x := a.iova; x < a.iova+a.size; x++ {
				free[x] = true
			}
			continue
		}
		size := uint64(1 + rng.IntN(24))
		align := uint64(1) << rng.IntN(4)
		want, ok := uint64(0), false
		for c := uint64(0); c < uint64(len(free)); c += align {
			if fits(c, size) {
				want, ok = c, true
				break
			}
		}
		got, err := s.alloc(size, align, nil)
		switch {
		case ok && err != nil:
			t.Fatalf("step %d: alloc(%d, %d) = %v; the model has room at %d", step, size, align, err, want)
		case !ok && err == nil:
			t.Fatalf("step %d: alloc(%d, %d) = %d; the model has no room", step, size, align, got)
		case !ok:
			if !errors.Is(err, ErrIOVASpace) {
				t.Fatalf("step %d: error %v does not wrap ErrIOVASpace", step, err)
			}
			continue
		case uint64(got) != want:
			t.Fatalf("step %d: alloc(%d, %d) = %d, first fit is %d", step, size, align, got, want)
		}
		for x := want; x < want+size; x++ {
			free[x] = false
		}
		live = append(live, alloc{want, size})
	}
	for _, a := range live {
		s.release(IOVA(a.iova), a.size)
	}
	// Everything coalesced back into the merged windows.
	want := []Range{{Start: 4, Last: 130}, {Start: 160, Last: 255}}
	if len(s.free) != len(want) || s.free[0] != want[0] || s.free[1] != want[1] {
		t.Fatalf("free list after releasing everything = %v, want %v", s.free, want)
	}
}

func TestSpaceTopOfAddressSpace(t *testing.T) {
	s := newSpace([]Range{{Start: ^IOVA(0) - 0x2fff, Last: ^IOVA(0)}}, 0x1000)
	a, err := s.alloc(0x1000, 0x1000, nil)
	if err != nil || a != ^IOVA(0)-0x2fff {
		t.Fatalf("alloc = %v, %v", a, err)
	}
	b, err := s.alloc(0x2000, 0x1000, nil)
	if err != nil || b != ^IOVA(0)-0x1fff {
		t.Fatalf("alloc at the top = %v, %v", b, err)
	}
	if _, err := s.alloc(0x1000, 0x1000, nil); !errors.Is(err, ErrIOVASpace) {
		t.Fatalf("alloc in a full space = %v", err)
	}
	// An alignment that wraps past the top must fail, not wrap to 0.
	s.release(b, 0x2000)
	if _, err := s.alloc(0x1000, 1<<63, nil); !errors.Is(err, ErrIOVASpace) {
		t.Fatalf("alloc with a wrapping alignment = %v", err)
	}
	s.release(a, 0x1000)
	if len(s.free) != 1 || s.free[0].Last != ^IOVA(0) {
		t.Fatalf("free list = %v", s.free)
	}
}
