package dma

import (
	"fmt"
	"slices"
)

// space hands out aligned pieces of a Mapper's IOVA windows: a first-fit
// free list of extents, sorted by address and coalesced on release.
// Allocations are rare (queues, pools, large data buffers), so linear scans
// are fine. It is not safe for concurrent use; the Allocator's lock guards it.
type space struct {
	free []Range // sorted, disjoint, not adjacent
	win  []Range // the windows as given, for messages
}

// newSpace builds a free list from the windows, leaving out everything below
// minIOVA so that IOVA 0 is never handed out.
func newSpace(windows []Range, minIOVA IOVA) *space {
	s := &space{win: slices.Clone(windows)}
	for _, r := range windows {
		if r.Last < r.Start || r.Last < minIOVA {
			continue
		}
		r.Start = max(r.Start, minIOVA)
		s.free = append(s.free, r)
	}
	slices.SortFunc(s.free, func(a, b Range) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
	// Merge overlapping or adjacent windows, should a Mapper report them.
	out := s.free[:0]
	for _, r := range s.free {
		if n := len(out); n > 0 && (out[n-1].Last == ^IOVA(0) || r.Start <= out[n-1].Last+1) {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	s.free = out
	return s
}

// alloc carves size bytes (size > 0) aligned to align (a power of two) out
// of the lowest free extent that fits, inside one of within when within is
// not nil (the Mapper's windows as they are now: they can shrink after the
// space was built, when a VFIO group with reserved regions joins). What
// lies outside within stays free for when the windows grow back.
func (s *space) alloc(size, align uint64, within []Range) (IOVA, error) {
	for i, r := range s.free {
		parts := []Range{r}
		if within != nil {
			parts = parts[:0]
			for _, w := range within {
				if w.Last < r.Start || w.Start > r.Last || w.Last < w.Start {
					continue
				}
				parts = append(parts, Range{Start: max(r.Start, w.Start), Last: min(r.Last, w.Last)})
			}
		}
		for _, p := range parts {
			start := (uint64(p.Start) + align - 1) &^ (align - 1)
			if start < uint64(p.Start) || start > uint64(p.Last) { // wrapped, or past the end
				continue
			}
			if size-1 > uint64(p.Last)-start {
				continue
			}
			iova, last := IOVA(start), IOVA(start+size-1)
			// Split r into the part before the allocation and the part after.
			var repl []Range
			if iova > r.Start {
				repl = append(repl, Range{Start: r.Start, Last: iova - 1})
			}
			if last < r.Last {
				repl = append(repl, Range{Start: last + 1, Last: r.Last})
			}
			s.free = slices.Replace(s.free, i, i+1, repl...)
			return iova, nil
		}
	}
	total, largest := s.freeBytes()
	where := fmt.Sprint(s.win)
	if within != nil {
		where = fmt.Sprintf("%v (now %v)", s.win, within)
	}
	return 0, fmt.Errorf("no free window of %d bytes aligned to %#x in %s (%d bytes free in %d pieces, largest %d): free buffers, or carve small ones from a dma.Pool: %w",
		size, align, where, total, len(s.free), largest, ErrIOVASpace)
}

// release returns [iova, iova+size) to the free list, merging it with its
// neighbours.
func (s *space) release(iova IOVA, size uint64) {
	r := Range{Start: iova, Last: iova + IOVA(size-1)}
	i, _ := slices.BinarySearchFunc(s.free, r.Start, func(e Range, t IOVA) int {
		switch {
		case e.Start < t:
			return -1
		case e.Start > t:
			return 1
		}
		return 0
	})
	s.free = slices.Insert(s.free, i, r)
	if i+1 < len(s.free) && s.free[i].Last+1 == s.free[i+1].Start {
		s.free[i].Last = s.free[i+1].Last
		s.free = slices.Delete(s.free, i+1, i+2)
	}
	if i > 0 && s.free[i-1].Last+1 == s.free[i].Start {
		s.free[i-1].Last = s.free[i].Last
		s.free = slices.Delete(s.free, i, i+1)
	}
}

// freeBytes returns the free total and the largest free extent (saturating
// at the top of the 64-bit space).
func (s *space) freeBytes() (total, largest uint64) {
	for _, r := range s.free {
		n := r.Size()
		if n == 0 { // the whole 64-bit space
			n = ^uint64(0)
		}
		total += n
		if total < n {
			total = ^uint64(0)
		}
		largest = max(largest, n)
	}
	return total, largest
}
