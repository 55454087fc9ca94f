package vfio

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strings"
)

// IOVARange is a span of I/O virtual addresses the IOMMU can translate.
// Last is inclusive, as in the kernel's struct vfio_iova_range.
type IOVARange struct {
	Start uint64
	Last  uint64
}

// String formats the range as "[start, last]" in hex.
func (r IOVARange) String() string { return fmt.Sprintf("[%#x, %#x]", r.Start, r.Last) }

// mapping is one VFIO_IOMMU_MAP_DMA the container made.
type mapping struct {
	iova, size uint64
	vaddr      uintptr
}

func (m mapping) last() uint64 { return m.iova + m.size - 1 }

func (m mapping) String() string { return fmt.Sprintf("[%#x, %#x]", m.iova, m.last()) }

// dmaBook is the container's record of usable IOVA ranges and of the
// mappings made so far. It is plain data so host tests can drive it.
type dmaBook struct {
	ranges []IOVARange // from the IOMMU, sorted
	pgsize uint64      // smallest IOMMU page size
	maps   []mapping   // sorted by iova, disjoint
	bytes  uint64      // sum of maps' sizes
}

// check reports whether [iova, iova+size) may be mapped: aligned to the
// IOMMU page size, inside one usable range, overlapping no mapping.
func (b *dmaBook) check(iova, size uint64) error {
	if size == 0 {
		return fmt.Errorf("map dma at %#x: empty buffer", iova)
	}
	if size-1 > math.MaxUint64-iova {
		return fmt.Errorf("map dma at %#x size %#x: %w: the range wraps around", iova, size, ErrIOVARange)
	}
	if b.pgsize != 0 && (iova%b.pgsize != 0 || size%b.pgsize != 0) {
		return fmt.Errorf("map dma at %#x size %#x: iova and size must be multiples of the iommu page size %#x", iova, size, b.pgsize)
	}
	want := mapping{iova: iova, size: size}
	inside := len(b.ranges) == 0
	for _, r := range b.ranges {
		if iova >= r.Start && want.last() <= r.Last {
			inside = true
			break
		}
	}
	if !inside {
		rs := make([]string, len(b.ranges))
		for i, r := range b.ranges {
			rs[i] = r.String()
		}
		return fmt.Errorf("map dma %v: %w: the iommu translates only %s; pick an iova inside one of them", want, ErrIOVARange, strings.Join(rs, ", "))
	}
	if m, ok := b.overlap(iova, size); ok {
		return fmt.Errorf("map dma %v: %w: overlaps the mapping %v made earlier; unmap it first or pick another iova", want, ErrOverlap, m)
	}
	return nil
}

// overlap returns a mapping that intersects [iova, iova+size).
func (b *dmaBook) overlap(iova, size uint64) (mapping, bool) {
	last := iova + size - 1
	// First mapping that ends at or after iova.
	i := sort.Search(len(b.maps), func(i int) bool { return b.maps[i].last() >= iova })
	if i < len(b.maps) && b.maps[i].iova <= last {
		return b.maps[i], true
	}
	return mapping{}, false
}

// add records a mapping check accepted.
func (b *dmaBook) add(m mapping) {
	i := sort.Search(len(b.maps), func(i int) bool { return b.maps[i].iova > m.iova })
	b.maps = append(b.maps, mapping{})
	copy(b.maps[i+1:], b.maps[i:])
	b.maps[i] = m
	b.bytes += m.size
}

// covered returns the indexes [lo, hi) of the mappings inside
// [iova, iova+size), or an error if the span cuts a mapping in two or
// covers none.
func (b *dmaBook) covered(iova, size uint64) (lo, hi int, err error) {
	if size == 0 || size-1 > math.MaxUint64-iova {
		return 0, 0, fmt.Errorf("unmap dma at %#x size %#x: bad size", iova, size)
	}
	last := iova + size - 1
	lo = sort.Search(len(b.maps), func(i int) bool { return b.maps[i].last() >= iova })
	hi = lo
	for hi < len(b.maps) && b.maps[hi].iova <= last {
		m := b.maps[hi]
		if m.iova < iova || m.last() > last {
			return 0, 0, fmt.Errorf("unmap dma [%#x, %#x]: cuts the mapping %v in two; unmap whole mappings", iova, last, m)
		}
		hi++
	}
	if lo == hi {
		return 0, 0, fmt.Errorf("unmap dma [%#x, %#x]: nothing mapped there", iova, last)
	}
	return lo, hi, nil
}

// remove drops the mappings [lo, hi).
func (b *dmaBook) remove(lo, hi int) {
	for _, m := range b.maps[lo:hi] {
		b.bytes -= m.size
	}
	b.maps = append(b.maps[:lo], b.maps[hi:]...)
}

// forget drops every mapping that intersects [iova, iova+size).
func (b *dmaBook) forget(iova, size uint64) {
	for {
		m, ok := b.overlap(iova, size)
		if !ok {
			return
		}
		i := sort.Search(len(b.maps), func(i int) bool { return b.maps[i].iova >= m.iova })
		b.remove(i, i+1)
	}
}

// iommuCaps is what the capability chain of VFIO_IOMMU_GET_INFO says.
type iommuCaps struct {
	ranges   []IOVARange
	dmaAvail uint32
	hasAvail bool
}

// maxCaps bounds the walk of a capability chain so a malformed chain (a
// cycle) cannot loop forever.
const maxCaps = 64

// walkCaps walks a VFIO capability chain in buf (a whole info struct as
// the kernel filled it, whose fixed part is head bytes long), starting at
// offset first, and calls fn with each capability's ID and offset. Offsets
// in the chain are from the start of buf. The chain is kernel data: every
// offset is bounds-checked and the walk is bounded.
func walkCaps(what string, buf []byte, first uint32, head uint64, fn func(id uint16, off uint64) error) error {
	le := binary.LittleEndian
	off := uint64(first)
	for n := 0; off != 0; n++ {
		if n == maxCaps {
			return fmt.Errorf("%s: capability chain longer than %d entries", what, maxCaps)
		}
		if off < head || off%4 != 0 || off+sizeofInfoCapHeader > uint64(len(buf)) {
			return fmt.Errorf("%s: capability at %#x outside the %d-byte buffer", what, off, len(buf))
		}
		id := le.Uint16(buf[off:])
		next := uint64(le.Uint32(buf[off+4:]))
		if err := fn(id, off); err != nil {
			return err
		}
		if next != 0 && next <= off {
			return fmt.Errorf("%s: capability at %#x points back to %#x", what, off, next)
		}
		off = next
	}
	return nil
}

// parseIOMMUCaps walks the capability chain in buf, the whole
// struct vfio_iommu_type1_info as the kernel filled it, starting at offset
// first. Offsets in the chain are from the start of buf.
func parseIOMMUCaps(buf []byte, first uint32) (iommuCaps, error) {
	var caps iommuCaps
	le := binary.LittleEndian
	err := walkCaps("iommu info", buf, first, sizeofIOMMUType1Info, func(id uint16, off uint64) error {
		switch id {
		case vfioIOMMUType1InfoCapIOVA:
			if off+sizeofCapIOVARange > uint64(len(buf)) {
				return fmt.Errorf("iommu info: iova range capability at %#x truncated", off)
			}
			nr := uint64(le.Uint32(buf[off+8:]))
			body := off + sizeofCapIOVARange
			if nr > uint64(len(buf))/sizeofIOVARange || body+nr*sizeofIOVARange > uint64(len(buf)) {
				return fmt.Errorf("iommu info: %d iova ranges at %#x overrun the %d-byte buffer", nr, off, len(buf))
			}
			caps.ranges = caps.ranges[:0]
			for i := uint64(0); i < nr; i++ {
				p := body + i*sizeofIOVARange
				r := IOVARange{Start: le.Uint64(buf[p:]), Last: le.Uint64(buf[p+8:])}
				if r.Last < r.Start {
					return fmt.Errorf("iommu info: iova range %d is inverted: %v", i, r)
				}
				caps.ranges = append(caps.ranges, r)
			}
			sort.Slice(caps.ranges, func(i, j int) bool { return caps.ranges[i].Start < caps.ranges[j].Start })
		case vfioIOMMUType1InfoDMAAvail:
			if off+sizeofCapDMAAvail > uint64(len(buf)) {
				return fmt.Errorf("iommu info: dma avail capability at %#x truncated", off)
			}
			caps.dmaAvail = le.Uint32(buf[off+8:])
			caps.hasAvail = true
		}
		return nil
	})
	return caps, err
}

// regionCaps is what the capability chain of a region's info says.
type regionCaps struct {
	sparse       bool
	areas        []Area
	msixMappable bool
}

// maxSparseAreas bounds the areas of one region (the kernel lists a few).
const maxSparseAreas = 1024

// parseRegionCaps walks the capability chain of a struct vfio_region_info
// (buf, as the kernel filled it) for a region of size bytes. Each sparse
// area must lie inside the region.
func parseRegionCaps(buf []byte, first uint32, size uint64) (regionCaps, error) {
	var caps regionCaps
	le := binary.LittleEndian
	err := walkCaps("region info", buf, first, sizeofRegionInfo, func(id uint16, off uint64) error {
		switch id {
		case vfioRegionInfoCapSparseMmap:
			if off+sizeofCapSparseMmap > uint64(len(buf)) {
				return fmt.Errorf("region info: sparse mmap capability at %#x truncated", off)
			}
			nr := uint64(le.Uint32(buf[off+8:]))
			body := off + sizeofCapSparseMmap
			if nr > maxSparseAreas || body+nr*sizeofSparseArea > uint64(len(buf)) {
				return fmt.Errorf("region info: %d sparse mmap areas at %#x overrun the %d-byte buffer", nr, off, len(buf))
			}
			caps.sparse = true
			caps.areas = make([]Area, 0, nr)
			for i := uint64(0); i < nr; i++ {
				p := body + i*sizeofSparseArea
				a := Area{Offset: le.Uint64(buf[p:]), Size: le.Uint64(buf[p+8:])}
				if a.Size == 0 {
					continue
				}
				if a.Offset > size || a.Size > size-a.Offset {
					return fmt.Errorf("region info: sparse mmap area %d [%#x, +%#x) outside the %#x-byte region", i, a.Offset, a.Size, size)
				}
				caps.areas = append(caps.areas, a)
			}
			sort.Slice(caps.areas, func(i, j int) bool { return caps.areas[i].Offset < caps.areas[j].Offset })
			for i := 1; i < len(caps.areas); i++ {
				if p := caps.areas[i-1]; p.Offset+p.Size > caps.areas[i].Offset {
					return fmt.Errorf("region info: sparse mmap areas [%#x, +%#x) and [%#x, +%#x) overlap", p.Offset, p.Size, caps.areas[i].Offset, caps.areas[i].Size)
				}
			}
		case vfioRegionInfoCapMSIXMappable:
			caps.msixMappable = true
		}
		return nil
	})
	return caps, err
}
