// Package dma provides the memory an NVMe controller reads and writes:
// pinned buffers outside the Go heap, each mapped for the device at an I/O
// virtual address (IOVA), and pools of fixed-size items carved from them.
//
// # Why not the Go heap
//
// The garbage collector may move nothing today, but it frees and reuses heap
// memory as soon as no Go pointer refers to it, and it cannot see the
// device's references. The kernel may also swap or migrate ordinary pages.
// DMA memory therefore comes from anonymous mmap (internal/dmamem),
// populated, marked MADV_DONTFORK, in 2 MiB hugepages when the kernel has
// enough, else in base pages aligned to the IOMMU's page, and held in
// place: pinned by VFIO when it is mapped (VFIO charges the pins to
// RLIMIT_MEMLOCK), or locked with MAP_LOCKED and mlock for a Mapper that
// does not pin (the SoftMapper); never both, which would count it twice.
// It lives until Allocator.Free or Close. vfio.Container.MapDMA takes only
// the dmamem.Memory this package makes, and NewVFIOMapper's Map refuses any
// other slice with ErrNotDMA: Go heap memory never reaches an IOMMU.
//
//	 process address space                          device (IOVA) space
//	+--------------------------+                   +-------------------------+
//	| Go heap: make([]byte, n) |   no mapping:     | page 0: never handed out|
//	|  Lookup -> ErrNotDMA     |   unreachable     +-------------------------+
//	+--------------------------+                   | window 1 (Mapper.Ranges)|
//	| mmap, locked, 4 KiB pages|    Mapper.Map     |  Buffer A   @0x1000     |
//	|  Buffer A.Bytes ---------+------------------>|  Buffer B   @0x200000   |
//	| mmap, locked, 2 MiB huge |                   |  (free)                 |
//	|  Buffer B.Bytes ---------+------------------>|                         |
//	|   +----+----+----+----+  |                   +-------------------------+
//	|   |item|item|item|... |  |  Pool: one Buffer | hole (e.g. MSI window)  |
//	|   +----+----+----+----+  |  = one mapping    +-------------------------+
//	+--------------------------+                   | window 2 ...            |
//
// An IOVA is a number in the device's space. Nothing converts it back into a
// pointer; the CPU side always goes through Buffer.Bytes. Allocator.Lookup
// answers the question the I/O path asks ("where does the device find this
// slice?") for any sub-slice of a live Buffer, and refuses every other slice
// with ErrNotDMA: data in the Go heap must be copied, explicitly, into DMA
// memory by the caller; nothing copies silently.
//
// # Pieces
//
//   - Mapper installs mappings: NewVFIOMapper over a vfio.Container for real
//     devices, SoftMapper (an in-process IOMMU whose Translate lets a fake
//     device reach memory through IOVAs only) for tests and nvme/nvmetest.
//   - Allocator mmaps and locks memory, picks an IOVA inside the Mapper's
//     windows (first fit, aligned to the buffer's page size, never page 0),
//     maps it, and keeps the table Lookup searches.
//   - Pool carves count items of one size from a single Buffer (one mapping:
//     VFIO limits the number of mappings, 65535 by default) and hands them out
//     with an index stack.
//
// # Limits, and the errors that name them
//
// Every limit has a sentinel, wrapped with the numbers and how to raise it:
// ErrMemlock (RLIMIT_MEMLOCK; ulimit -l, LimitMEMLOCK=, CAP_IPC_LOCK),
// ErrHugePages (nr_hugepages; the kernel refuses the hugetlb mmap with
// ENOMEM, and the shortage falls back to base pages unless WithHugePages(true)
// demanded them), ErrMappingLimit (the Mapper's
// MaxMappings, VFIO's dma_entry_limit), ErrIOVASpace (the windows are full).
//
// # Goroutines
//
//   - Allocator: any goroutine may call any method. Alloc, Free, Close and
//     Stats take a mutex; Lookup takes none (it reads a copy-on-write table
//     with one atomic load), never blocks and never allocates on success.
//   - Buffer: plain memory; the caller coordinates CPU and device access.
//   - Pool: owned by one goroutine (a queue pair's poller); not safe for
//     concurrent use. Get and Put are O(1) and allocate nothing.
//   - SoftMapper: any goroutine; Translate is lock-free and allocation-free
//     (the fake device translates while the driver maps).
//
// # Imports
//
// The standard library, golang.org/x/sys/unix (only in sys_linux.go, the one
// file that makes system calls, through internal/dmamem for the mappings),
// and gonvme/vfio (only in vfio.go, the adapter). It must not import nvme or
// anything above it.
package dma
