package dma

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// softPage is the granule the SoftMapper checks alignment against, the same
// 4 KiB an x86 IOMMU (and VFIO on it) requires.
const softPage = 4096

// SoftMapper is an in-process IOMMU for tests and for the fake controller in
// nvme/nvmetest: Map records which bytes sit at which IOVA, and Translate
// gives the "device" those bytes back for an IOVA range, so a fake device
// reaches memory only through IOVAs the driver mapped, never by turning a
// number into a pointer.
//
// Its default windows mimic an x86 IOMMU with a 48-bit address width: page 0
// is left out (IOVA 0 is never valid) and so is the MSI window
// 0xfee00000-0xfeefffff. Map enforces what VFIO enforces: 4 KiB alignment of
// the IOVA, the address and the length, no overlap, one window per mapping.
//
// A SoftMapper is safe for concurrent use. Translate never blocks and never
// allocates: it reads a sorted copy-on-write snapshot of the mappings with one
// atomic load and a binary search. Map and Unmap serialize on a mutex and
// publish a new snapshot.
type SoftMapper struct {
	mu     sync.Mutex                    // serializes Map and Unmap
	snap   atomic.Pointer[[]softMapping] // sorted by iova; never modified once published
	ranges []Range
	max    int // 0: no limit
	page   int // alignment Map demands, softPage unless SoftPageSize
}

// softMapping is one recorded mapping.
type softMapping struct {
	iova IOVA
	b    []byte
}

// SoftOption configures a SoftMapper.
type SoftOption func(*SoftMapper)

// SoftRanges replaces the SoftMapper's IOVA windows, e.g. with a tiny one to
// exercise ErrIOVASpace.
func SoftRanges(r ...Range) SoftOption {
	return func(m *SoftMapper) { m.ranges = slices.Clone(r) }
}

// SoftMaxMappings limits the SoftMapper to n live mappings, like VFIO's
// dma_entry_limit; MaxMappings reports it and Map refuses mapping n+1 with
// ErrMappingLimit.
func SoftMaxMappings(n int) SoftOption {
	return func(m *SoftMapper) { m.max = n }
}

// SoftPageSize makes the SoftMapper an IOMMU whose smallest page is n bytes
// (a power of two of at least 4 KiB): Map then demands the IOVA, the
// address and the length aligned to n, as VFIO's type1 IOMMU checks them
// (vfio_dma_do_map), and IOMMUPageSize reports n.
func SoftPageSize(n int) SoftOption {
	return func(m *SoftMapper) { m.page = n }
}

// DefaultSoftRanges are the windows of a SoftMapper made without SoftRanges.
var DefaultSoftRanges = []Range{
	{Start: softPage, Last: 0xfedf_ffff},
	{Start: 0xfef0_0000, Last: 1<<48 - 1},
}

// NewSoftMapper returns an empty SoftMapper.
func NewSoftMapper(opts ...SoftOption) *SoftMapper {
	m := &SoftMapper{ranges: slices.Clone(DefaultSoftRanges), page: softPage}
	for _, o := range opts {
		o(m)
	}
	if m.page < softPage || m.page&(m.page-1) != 0 {
		m.page = softPage
	}
	empty := []softMapping{}
	m.snap.Store(&empty)
	return m
}

// Ranges returns the IOVA windows Map accepts. Any goroutine may call it.
func (m *SoftMapper) Ranges() []Range { return slices.Clone(m.ranges) }

// MaxMappings returns the limit set with SoftMaxMappings (ok false: none).
// Any goroutine may call it.
func (m *SoftMapper) MaxMappings() (n int, ok bool) { return m.max, m.max > 0 }

// IOMMUPageSize returns the alignment Map demands (4 KiB, or SoftPageSize).
// Any goroutine may call it.
func (m *SoftMapper) IOMMUPageSize() int { return m.page }

// Mappings returns the number of live mappings. Any goroutine may call it.
func (m *SoftMapper) Mappings() int { return len(*m.snap.Load()) }

// Map records that b is reachable at [iova, iova+len(b)). Any goroutine may
// call it.
func (m *SoftMapper) Map(b []byte, iova IOVA) error {
	n := uint64(len(b))
	switch {
	case n == 0:
		return fmt.Errorf("dma: soft map at %v: empty buffer", iova)
	case uint64(iova)%uint64(m.page) != 0 || n%uint64(m.page) != 0 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%uintptr(m.page) != 0:
		return fmt.Errorf("dma: soft map %d bytes at %v (address %#x): iova, address and length must be %d-byte aligned, the iommu page: %w",
			n, iova, uintptr(unsafe.Pointer(unsafe.SliceData(b))), m.page, ErrFault)
	}
	in := false
	for _, r := range m.ranges {
		if r.Contains(iova, n) {
			in = true
			break
		}
	}
	if !in {
		return fmt.Errorf("dma: soft map %d bytes at %v: outside the windows %v: %w", n, iova, m.ranges, ErrFault)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.snap.Load()
	if m.max > 0 && len(old) >= m.max {
		return fmt.Errorf("dma: soft map %d bytes at %v: %d mappings of %d allowed: %w", n, iova, len(old), m.max, ErrMappingLimit)
	}
	i := searchMappings(old, iova) // first mapping with iova > the new one
	if i > 0 {
		p := old[i-1]
		if uint64(iova-p.iova) < uint64(len(p.b)) {
			return fmt.Errorf("dma: soft map %d bytes at %v: overlaps the mapping at %v", n, iova, p.iova)
		}
	}
	if i < len(old) && uint64(old[i].iova-iova) < n {
		return fmt.Errorf("dma: soft map %d bytes at %v: overlaps the mapping at %v", n, iova, old[i].iova)
	}
	next := make([]softMapping, 0, len(old)+1)
	next = append(next, old[:i]...)
	next = append(next, softMapping{iova: iova, b: b[:n:n]})
	next = append(next, old[i:]...)
	m.snap.Store(&next)
	return nil
}

// Unmap removes the mapping Map installed for b at iova. Any goroutine may
// call it. A slice that Translate returned earlier still aliases the memory;
// the fake device must not use it after the driver unmapped it, just as a
// real device faults then.
func (m *SoftMapper) Unmap(b []byte, iova IOVA) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.snap.Load()
	i := searchMappings(old, iova) - 1
	if i < 0 || old[i].iova != iova || len(old[i].b) != len(b) || unsafe.SliceData(old[i].b) != unsafe.SliceData(b) {
		return fmt.Errorf("dma: soft unmap %d bytes at %v: no such mapping: %w", len(b), iova, ErrFault)
	}
	next := make([]softMapping, 0, len(old)-1)
	next = append(next, old[:i]...)
	next = append(next, old[i+1:]...)
	m.snap.Store(&next)
	return nil
}

// Translate returns the mapped bytes at [iova, iova+n), which must lie inside
// one mapping; otherwise it returns an error wrapping ErrFault. The slice
// aliases the driver's DMA memory (writes to it are the device's writes) and
// is valid until the mapping is unmapped. Any goroutine may call it; it does
// not block and, when it succeeds, does not allocate.
func (m *SoftMapper) Translate(iova IOVA, n int) ([]byte, error) {
	maps := *m.snap.Load()
	i := searchMappings(maps, iova) - 1
	if n < 0 || i < 0 {
		return nil, faultError(iova, n)
	}
	mp := maps[i]
	off := uint64(iova - mp.iova)
	if off > uint64(len(mp.b)) || uint64(n) > uint64(len(mp.b))-off || (n == 0 && off == uint64(len(mp.b))) {
		return nil, faultError(iova, n)
	}
	return mp.b[off : off+uint64(n) : off+uint64(n)], nil
}

// faultError is kept out of line so that Translate's success path stays small.
func faultError(iova IOVA, n int) error {
	return fmt.Errorf("dma: translate %d bytes at %v: not inside one mapping: %w", n, iova, ErrFault)
}

// searchMappings returns the index of the first mapping whose iova is
// greater than iova (so the candidate containing iova is the one before).
// A hand-written binary search: no closure, no allocation.
func searchMappings(maps []softMapping, iova IOVA) int {
	lo, hi := 0, len(maps)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if maps[mid].iova <= iova {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}
