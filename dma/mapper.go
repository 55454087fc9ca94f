package dma

import "fmt"

// IOVA is an address in the device's view of memory (an I/O virtual address
// behind the IOMMU). It is a plain number: nothing in gonvme converts an IOVA
// back into a pointer, and the device only ever reaches memory through a
// mapping that a Mapper installed.
type IOVA uint64

// String formats the IOVA in hex.
func (v IOVA) String() string { return fmt.Sprintf("%#x", uint64(v)) }

// Range is an inclusive window of IOVAs, [Start, Last], that a Mapper
// accepts. Last is inclusive so that a window may end at the top of the
// 64-bit space.
type Range struct {
	Start, Last IOVA
}

// Size returns the number of bytes in the window (0 if the window is the
// whole 64-bit space, which cannot be expressed).
func (r Range) Size() uint64 { return uint64(r.Last-r.Start) + 1 }

// Contains reports whether [iova, iova+n) lies inside r. A zero n is
// contained if iova is.
func (r Range) Contains(iova IOVA, n uint64) bool {
	if iova < r.Start || iova > r.Last {
		return false
	}
	if n == 0 {
		return true
	}
	return n-1 <= uint64(r.Last-iova)
}

// String formats the window as [start, last].
func (r Range) String() string { return fmt.Sprintf("[%#x, %#x]", uint64(r.Start), uint64(r.Last)) }

// Mapper makes memory reachable by a device: VFIO's container (see
// NewVFIOMapper) or, in tests, a SoftMapper.
//
// Map makes b, which is page aligned and a whole number of pages, reachable at
// [iova, iova+len(b)). Unmap removes a mapping that Map installed, with the
// same b and iova. Ranges returns the IOVA windows Map accepts now. They
// may shrink while an Allocator uses the Mapper (a VFIO group with reserved
// regions joins the container) but must not grow past what they were when
// the Allocator was made: the Allocator hands out IOVAs inside the windows
// it was made with, and asks for Ranges again at each Alloc.
//
// A Mapper may also implement
//
//	interface{ MaxMappings() (n int, ok bool) }
//
// to report how many mappings it holds at most (ok false: no known limit);
// the Allocator then refuses an allocation beyond it with ErrMappingLimit
// instead of failing inside Map. A Map error that wraps ENOSPC (what VFIO
// returns when dma_entry_limit is exhausted) is reported as ErrMappingLimit too.
//
// A Mapper whose IOMMU maps pages larger than the system's may implement
//
//	interface{ IOMMUPageSize() int }
//
// and the Allocator sizes and aligns its buffers to at least that.
//
// A Mapper that pins the pages it maps (and charges them to
// RLIMIT_MEMLOCK, as VFIO does) may implement
//
//	interface{ PinsMemory() bool }
//
// and the Allocator then does not mlock its buffers: locked and pinned
// memory would count twice against the limit.
//
// The Allocator calls Map and Unmap with its own lock held, one at a time.
type Mapper interface {
	Map(b []byte, iova IOVA) error
	Unmap(b []byte, iova IOVA) error
	Ranges() []Range
}

// iommuPageSizer is the optional interface a Mapper implements when its
// IOMMU maps in pages larger than the system's: the Allocator then rounds
// and aligns base-page buffers to IOMMUPageSize (0: unknown).
type iommuPageSizer interface {
	IOMMUPageSize() int
}

// memoryPinner is the optional interface of a Mapper that pins what it
// maps; the Allocator then leaves the memory unlocked.
type memoryPinner interface {
	PinsMemory() bool
}

// mappingLimiter is the optional interface a Mapper implements to report how
// many mappings it allows.
type mappingLimiter interface {
	MaxMappings() (n int, ok bool)
}
