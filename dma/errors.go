package dma

import "errors"

// Sentinel errors. Every error the package returns wraps one of these (or an
// error from the Mapper) together with the numbers that explain it and how to
// change them; callers branch with errors.Is.
var (
	// ErrNotDMA reports memory that did not come from this Allocator: Go heap
	// memory, a freed Buffer, or a slice of another allocator's Buffer. The
	// device cannot reach it. Allocate the data with Allocator.Alloc (or take
	// it from a Pool), or copy it through an explicit bounce buffer.
	ErrNotDMA = errors.New("memory is not DMA memory from this allocator")

	// ErrFault reports an IOVA range that no single mapping covers: the
	// SoftMapper's equivalent of an IOMMU fault.
	ErrFault = errors.New("iova fault")

	// ErrMemlock reports that locking the memory would exceed RLIMIT_MEMLOCK.
	ErrMemlock = errors.New("locked memory limit exceeded")

	// ErrHugePages reports that too few 2 MiB hugepages are reserved.
	ErrHugePages = errors.New("hugepages exhausted")

	// ErrMappingLimit reports that the Mapper holds as many mappings as it
	// allows (vfio_iommu_type1's dma_entry_limit, or a SoftMapper limit).
	ErrMappingLimit = errors.New("dma mapping limit reached")

	// ErrIOVASpace reports that no free window of the Mapper's IOVA ranges is
	// large enough for the allocation.
	ErrIOVASpace = errors.New("iova space exhausted")

	// ErrLeaked reports buffers or pool items still in use when their owner
	// was closed or freed. They have been released anyway.
	ErrLeaked = errors.New("dma memory leaked")

	// ErrClosed reports use of an Allocator or Pool after Close or Free.
	ErrClosed = errors.New("closed")

	// ErrDoublePut reports a Pool.Put of an item that is already free.
	ErrDoublePut = errors.New("pool item put twice")

	// ErrForeignItem reports a Pool.Put of an item that this pool did not
	// hand out.
	ErrForeignItem = errors.New("item does not belong to this pool")
)
