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

// iommuCaps is what the capability chain of VFIO_IOMMU_GET_INFO says.
type iommuCaps struct {
	ranges   []IOVARange
	dmaAvail uint32
	hasAvail bool
}

// maxCaps bounds the walk of a capability chain so a malformed chain (a
// cycle) cannot loop forever.
const maxCaps = 64

// parseIOMMUCaps walks the capability chain in buf, the whole
// struct vfio_iommu_type1_info as the kernel filled it, starting at offset
// first. Offsets in the chain are from the start of buf.
func parseIOMMUCaps(buf []byte, first uint32) (iommuCaps, error) {
	var caps iommuCaps
	le := binary.LittleEndian
	off := uint64(first)
	for n := 0; off != 0; n++ {
		if n == maxCaps {
			return caps, fmt.Errorf("iommu info: capability chain longer than %d entries", maxCaps)
		}
		if off < sizeofIOMMUType1Info || off%4 != 0 || off+sizeofInfoCapHeader > uint64(len(buf)) {
			return caps, fmt.Errorf("iommu info: capability at %#x outside the %d-byte buffer", off, len(buf))
		}
		id := le.Uint16(buf[off:])
		next := uint64(le.Uint32(buf[off+4:]))
		switch id {
		case vfioIOMMUType1InfoCapIOVA:
			if off+sizeofCapIOVARange > uint64(len(buf)) {
				return caps, fmt.Errorf("iommu info: iova range capability at %#x truncated", off)
			}
			nr := uint64(le.Uint32(buf[off+8:]))
			body := off + sizeofCapIOVARange
			if nr > uint64(len(buf))/sizeofIOVARange || body+nr*sizeofIOVARange > uint64(len(buf)) {
				return caps, fmt.Errorf("iommu info: %d iova ranges at %#x overrun the %d-byte buffer", nr, off, len(buf))
			}
			caps.ranges = caps.ranges[:0]
			for i := uint64(0); i < nr; i++ {
				p := body + i*sizeofIOVARange
				r := IOVARange{Start: le.Uint64(buf[p:]), Last: le.Uint64(buf[p+8:])}
				if r.Last < r.Start {
					return caps, fmt.Errorf("iommu info: iova range %d is inverted: %v", i, r)
				}
				caps.ranges = append(caps.ranges, r)
			}
			sort.Slice(caps.ranges, func(i, j int) bool { return caps.ranges[i].Start < caps.ranges[j].Start })
		case vfioIOMMUType1InfoDMAAvail:
			if off+sizeofCapDMAAvail > uint64(len(buf)) {
				return caps, fmt.Errorf("iommu info: dma avail capability at %#x truncated", off)
			}
			caps.dmaAvail = le.Uint32(buf[off+8:])
			caps.hasAvail = true
		}
		if next != 0 && next <= off {
			return caps, fmt.Errorf("iommu info: capability at %#x points back to %#x", off, next)
		}
		off = next
	}
	return caps, nil
}
