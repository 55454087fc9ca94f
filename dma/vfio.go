package dma

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/seedb8fa28ef/gonvme/internal/dmamem"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// VFIOMapper adapts a vfio.Container to the Mapper interface, for an
// Allocator over a real device. Use one VFIOMapper, and one Allocator over
// it, per container.
//
// Only memory an Allocator mapped is mapped: Map refuses any other slice
// (Go heap memory above all) with ErrNotDMA, and vfio.Container.MapDMA
// takes nothing but the dmamem.Memory the Allocator made.
//
// RLIMIT_MEMLOCK: VFIO charges the pages it pins to the process's locked
// memory. VFIOMapper reports PinsMemory, so the Allocator does not also
// mlock them, and a buffer counts once against the limit.
//
// Any goroutine may call its methods; the container serializes them.
type VFIOMapper struct {
	c    *vfio.Container
	live atomic.Int64 // mappings this mapper holds
}

// NewVFIOMapper returns a Mapper over c. c must have its IOMMU set (a group
// attached) before the first Map.
func NewVFIOMapper(c *vfio.Container) *VFIOMapper { return &VFIOMapper{c: c} }

// fallbackRanges is used when the kernel does not report the usable IOVA
// ranges: the low 4 GiB without page 0 and the x86 MSI window, which every
// IOMMU translates.
var fallbackRanges = []Range{{Start: 0x1000, Last: 0xfedf_ffff}}

// Map maps b for device reads and writes at iova (VFIO_IOMMU_MAP_DMA).
// A refusal because of RLIMIT_MEMLOCK wraps ErrMemlock (and vfio's own
// sentinel); one because dma_entry_limit is used up wraps ENOSPC, which the
// Allocator reports as ErrMappingLimit.
func (v *VFIOMapper) Map(b []byte, iova IOVA) error {
	m := dmamem.Find(b)
	if m == nil {
		return fmt.Errorf("dma: vfio map %d bytes at %#x for %v: not a whole buffer a dma.Allocator mapped (Go heap memory, part of a buffer, or a freed one); "+
			"a device may only reach memory from dma.Allocator.Alloc: %w", len(b), addrOf(b), iova, ErrNotDMA)
	}
	if err := v.c.MapDMA(m, uint64(iova)); err != nil {
		if errors.Is(err, vfio.ErrMemlock) {
			return fmt.Errorf("%w: %w", err, ErrMemlock)
		}
		return err
	}
	v.live.Add(1)
	return nil
}

// Unmap removes the mapping of b at iova (VFIO_IOMMU_UNMAP_DMA).
func (v *VFIOMapper) Unmap(b []byte, iova IOVA) error {
	if err := v.c.UnmapDMA(uint64(iova), uint64(len(b))); err != nil {
		return err
	}
	v.live.Add(-1)
	return nil
}

// Ranges returns the IOVA ranges the IOMMU translates, as the kernel
// reports them, or the low 4 GiB (minus page 0 and the MSI window) when it
// does not.
func (v *VFIOMapper) Ranges() []Range {
	rs := v.c.IOVARanges()
	if len(rs) == 0 {
		return append([]Range(nil), fallbackRanges...)
	}
	out := make([]Range, len(rs))
	for i, r := range rs {
		out[i] = Range{Start: IOVA(r.Start), Last: IOVA(r.Last)}
	}
	return out
}

// PinsMemory reports true: VFIO pins every page it maps (and charges it to
// RLIMIT_MEMLOCK), so the Allocator does not mlock memory for this mapper.
func (v *VFIOMapper) PinsMemory() bool { return true }

// MaxMappings returns how many mappings this mapper may hold in total: the
// ones it holds plus what the kernel still allows the container
// (dma_entry_limit), when the kernel reports it.
func (v *VFIOMapper) MaxMappings() (n int, ok bool) {
	avail, ok := v.c.DMAAvailable()
	if !ok {
		return 0, false
	}
	return int(avail) + int(v.live.Load()), true
}

// IOMMUPageSize returns the smallest page the IOMMU maps (0 if not yet
// known); the Allocator sizes and aligns buffers to at least this.
func (v *VFIOMapper) IOMMUPageSize() int { return int(v.c.PageSize()) }
