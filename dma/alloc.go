package dma

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/internal/dmamem"
)

// hugeMode says when the Allocator uses hugepages.
type hugeMode int

const (
	hugeAuto hugeMode = iota // for buffers of at least HugePageSize, when enough are free
	hugeOn                   // for every buffer; fail with ErrHugePages when short
	hugeOff                  // never
)

// config collects the Options.
type config struct {
	huge     hugeMode
	pageSize int
}

// Option configures an Allocator.
type Option func(*config)

// WithHugePages demands (true) or forbids (false) 2 MiB hugepages.
//
// Without this option the Allocator puts every buffer of HugePageSize bytes
// or more in hugepages when enough are free, and falls back to base pages
// (counting Stats.HugeFallbacks) when they are not; smaller buffers use base
// pages, since a hugepage per small buffer would waste most of it (carve
// small buffers from a Pool instead). With WithHugePages(true) every buffer
// is rounded up to whole hugepages and a shortage is an error wrapping
// ErrHugePages that gives the current counts and the command to raise them.
func WithHugePages(on bool) Option {
	return func(c *config) {
		if on {
			c.huge = hugeOn
		} else {
			c.huge = hugeOff
		}
	}
}

// WithPageSize sets the page size of buffers in base pages: their sizes are
// rounded up to it and their IOVAs aligned to it. It must be a power of two
// and a multiple of the system page size; the default is the system page
// size (4 KiB on x86-64). Use it when the device's memory page size (NVMe
// CC.MPS) is larger.
func WithPageSize(n int) Option {
	return func(c *config) { c.pageSize = n }
}

// Allocator hands out Buffers of pinned memory outside the Go heap, each
// mapped for the device at an IOVA inside the Mapper's windows, and answers
// "which IOVA is this slice at" for any slice of them.
//
// An Allocator owns the IOVA windows of its Mapper: use one Allocator per
// Mapper (per VFIO container), or their IOVAs collide.
//
// Any goroutine may call any method. Alloc, Free and Close serialize on a
// mutex (allocations are rare); Lookup takes no lock and never blocks: it
// reads a copy-on-write table with one atomic load.
type Allocator struct {
	m       Mapper
	limiter mappingLimiter // nil when the Mapper states no limit
	lock    bool           // mlock buffers: the Mapper does not pin them
	cfg     config

	table atomic.Pointer[[]region] // sorted by start; never modified once published
	// removals counts the buffers taken out of table (Generation).
	removals atomic.Uint64

	mu     sync.Mutex
	space  *space
	live   map[*Buffer]struct{}
	stats  Stats
	closed bool
	// lastFallback is why the last buffer that wanted hugepages got base
	// pages (an ErrHugePages error), nil if none did.
	lastFallback error
}

// region is one Buffer as Lookup sees it: the address range of its Bytes.
// The addresses are only compared, never turned back into pointers.
type region struct {
	start, size uintptr
	iova        IOVA
}

// Stats counts an Allocator's memory, for leak checks and metrics.
type Stats struct {
	Buffers       int    // live buffers; each holds one mapping
	Bytes         int64  // bytes locked and mapped for live buffers (whole pages)
	HugeBytes     int64  // the part of Bytes in hugepages
	Allocs        uint64 // successful Alloc calls
	Frees         uint64 // buffers released by Free or Close
	HugeFallbacks uint64 // buffers that wanted hugepages and got base pages
}

// NewAllocator returns an Allocator that maps its buffers with m.
func NewAllocator(m Mapper, opts ...Option) (*Allocator, error) {
	if m == nil {
		return nil, errors.New("dma: new allocator: nil mapper")
	}
	cfg := config{huge: hugeAuto, pageSize: osPageSize}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.pageSize < osPageSize || bits.OnesCount(uint(cfg.pageSize)) != 1 {
		return nil, fmt.Errorf("dma: new allocator: page size %d is not a power of two of at least %d", cfg.pageSize, osPageSize)
	}
	if ps, ok := m.(iommuPageSizer); ok {
		if n := ps.IOMMUPageSize(); n > cfg.pageSize {
			if bits.OnesCount(uint(n)) != 1 {
				return nil, fmt.Errorf("dma: new allocator: the mapper's iommu page size %d is not a power of two", n)
			}
			cfg.pageSize = n
		}
	}
	a := &Allocator{
		m:    m,
		cfg:  cfg,
		live: make(map[*Buffer]struct{}),
	}
	a.limiter, _ = m.(mappingLimiter)
	a.lock = true
	if p, ok := m.(memoryPinner); ok && p.PinsMemory() {
		a.lock = false
	}
	// IOVA 0 is never handed out: a zero IOVA always means "none".
	a.space = newSpace(m.Ranges(), IOVA(cfg.pageSize))
	if len(a.space.free) == 0 {
		return nil, fmt.Errorf("dma: new allocator: the mapper offers no usable IOVA window (%v): %w", m.Ranges(), ErrIOVASpace)
	}
	empty := []region{}
	a.table.Store(&empty)
	return a, nil
}

// PageSize returns the page size of buffers in base pages.
func (a *Allocator) PageSize() int { return a.cfg.pageSize }

// Buffer is pinned DMA memory: Bytes for the CPU, IOVA for the device.
//
// Bytes never moves, is never swapped out, and is not Go heap memory: it
// stays valid until Free or the Allocator's Close, and using it after that
// faults. Sub-slices of Bytes may be given to Allocator.Lookup. A Buffer may
// be read and written by any goroutine; coordinating with the device is the
// caller's business.
type Buffer struct {
	Bytes []byte // the requested length; starts on a page boundary
	IOVA  IOVA   // device address of Bytes[0]; page aligned

	mem  []byte // the whole mapping, page rounded: dm.Bytes()
	dm   *dmamem.Memory
	huge bool
	a    *Allocator
}

// Len returns len(b.Bytes).
func (b *Buffer) Len() int { return len(b.Bytes) }

// IOVAAt returns the device address of b.Bytes[off]; off may be Len() (the
// address just past the end). It panics if off is out of range, like an
// index expression.
func (b *Buffer) IOVAAt(off int) IOVA {
	if off < 0 || off > len(b.Bytes) {
		panic(fmt.Sprintf("dma: IOVAAt(%d) outside a %d-byte buffer", off, len(b.Bytes)))
	}
	return b.IOVA + IOVA(off)
}

// Zero clears b.Bytes. Fresh buffers are already zero.
func (b *Buffer) Zero() { clear(b.Bytes) }

// Huge reports whether the buffer lives in hugepages.
func (b *Buffer) Huge() bool { return b.huge }

// Mapped returns the number of bytes locked and mapped for the buffer: Len
// rounded up to whole pages.
func (b *Buffer) Mapped() int { return len(b.mem) }

// Alloc returns a zeroed Buffer of size bytes, locked in memory and mapped
// for the device. Any goroutine may call it.
//
// Errors wrap ErrMemlock, ErrHugePages (only with WithHugePages(true)),
// ErrMappingLimit, ErrIOVASpace, ErrClosed, or the Mapper's error.
func (a *Allocator) Alloc(size int) (*Buffer, error) {
	if size <= 0 {
		return nil, fmt.Errorf("dma: alloc %d bytes: size must be positive", size)
	}
	dm, huge, fellBack, err := a.mapFor(size)
	if err != nil {
		return nil, fmt.Errorf("dma: alloc %d bytes: %w", size, err)
	}
	mem := dm.Bytes()
	align := uint64(a.cfg.pageSize)
	if huge {
		align = max(align, HugePageSize)
	}
	b := &Buffer{Bytes: mem[:size:size], mem: mem, dm: dm, huge: huge, a: a}

	a.mu.Lock()
	defer a.mu.Unlock()
	if fellBack != nil {
		a.stats.HugeFallbacks++
		a.lastFallback = fmt.Errorf("dma: alloc %d bytes: fell back to base pages: %w", size, fellBack)
	}
	fail := func(err error) (*Buffer, error) {
		_ = unmapMemory(dm)
		return nil, fmt.Errorf("dma: alloc %d bytes: %w", size, err)
	}
	if a.closed {
		return fail(fmt.Errorf("allocator: %w", ErrClosed))
	}
	if a.limiter != nil {
		if n, ok := a.limiter.MaxMappings(); ok && a.stats.Buffers >= n {
			return fail(mappingLimitError(a.stats.Buffers, n, nil))
		}
	}
	iova, err := a.space.alloc(uint64(len(mem)), align, a.m.Ranges())
	if err != nil {
		return fail(err)
	}
	if err := a.m.Map(mem, iova); err != nil {
		a.space.release(iova, uint64(len(mem)))
		if isNoSpace(err) || errors.Is(err, ErrMappingLimit) {
			return fail(mappingLimitError(a.stats.Buffers, -1, err))
		}
		return fail(fmt.Errorf("map %d bytes at %v: %w", len(mem), iova, err))
	}
	b.IOVA = iova
	a.live[b] = struct{}{}
	a.publishLocked(b, true)
	a.stats.Buffers++
	a.stats.Bytes += int64(len(mem))
	if huge {
		a.stats.HugeBytes += int64(len(mem))
	}
	a.stats.Allocs++
	return b, nil
}

// mapFor maps memory for a size-byte buffer, in hugepages when the mode
// says so and the kernel has them, aligned to the page size (an IOMMU's
// page may be larger than the system's, and VFIO wants the address
// aligned to it as well as the IOVA). fellBack is the hugepage shortage
// that base pages covered, if any.
func (a *Allocator) mapFor(size int) (mem *dmamem.Memory, huge bool, fellBack error, err error) {
	wantHuge := a.cfg.huge == hugeOn || (a.cfg.huge == hugeAuto && size >= HugePageSize)
	if wantHuge {
		page := max(a.cfg.pageSize, HugePageSize)
		n, ok := roundUp(size, page)
		if !ok {
			return nil, false, nil, fmt.Errorf("size overflows when rounded to hugepages")
		}
		// No look at the free count first: the mmap reserves the pages
		// and fails with ENOMEM when there are too few (mapMemory turns
		// that into ErrHugePages), and a count read first may be stale.
		mem, err = mapMemory(n, page, true, a.lock)
		if err == nil {
			return mem, true, nil, nil
		}
		if a.cfg.huge == hugeOn || !errors.Is(err, ErrHugePages) {
			return nil, false, nil, err
		}
		fellBack = err
	}
	n, ok := roundUp(size, a.cfg.pageSize)
	if !ok {
		return nil, false, fellBack, fmt.Errorf("size overflows when rounded to pages")
	}
	mem, err = mapMemory(n, a.cfg.pageSize, false, a.lock)
	return mem, false, fellBack, err
}

// roundUp rounds n up to a multiple of the power of two p.
func roundUp(n, p int) (int, bool) {
	r := (n + p - 1) &^ (p - 1)
	return r, r >= n
}

// mappingLimitError explains a full mapping table. limit < 0: unknown.
func mappingLimitError(inUse, limit int, cause error) error {
	lim := "its limit"
	if limit >= 0 {
		lim = fmt.Sprint(limit)
	}
	msg := fmt.Sprintf("%d mappings in use, the mapper allows %s: raise vfio_iommu_type1's dma_entry_limit (module parameter, /sys/module/vfio_iommu_type1/parameters/dma_entry_limit), or carve small buffers from a dma.Pool", inUse, lim)
	if cause != nil {
		return fmt.Errorf("%s (%w): %w", msg, cause, ErrMappingLimit)
	}
	return fmt.Errorf("%s: %w", msg, ErrMappingLimit)
}

// publishLocked adds (or removes) b in the lookup table: a new sorted copy,
// published with one atomic store. a.mu must be held.
func (a *Allocator) publishLocked(b *Buffer, add bool) {
	start := addrOf(b.mem)
	old := *a.table.Load()
	i := searchRegions(old, start)
	var next []region
	if add {
		next = make([]region, 0, len(old)+1)
		next = append(next, old[:i]...)
		next = append(next, region{start: start, size: uintptr(len(b.Bytes)), iova: b.IOVA})
		next = append(next, old[i:]...)
	} else {
		i-- // the region starting at start
		next = make([]region, 0, len(old))
		next = append(next, old[:i]...)
		next = append(next, old[i+1:]...)
	}
	a.table.Store(&next)
	if !add {
		// After the store, so that a count read before a Lookup is
		// never newer than the table that Lookup reads.
		a.removals.Add(1)
	}
}

// Generation counts the buffers this Allocator has freed so far. A Lookup
// result can only go stale when a buffer is freed (an Alloc adds to what
// Lookup finds and changes nothing it found before), so a caller that
// reads Generation before a Lookup may reuse that lookup's IOVA for the
// same slice for as long as Generation returns the same value. The queue
// pairs of package nvme do so for a request submitted again with the same
// buffer: one atomic load in place of a Lookup per I/O. Any goroutine.
func (a *Allocator) Generation() uint64 { return a.removals.Load() }

// addrOf returns the address of b's first byte, for comparisons only.
func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// searchRegions returns the index of the first region starting above addr.
func searchRegions(regs []region, addr uintptr) int {
	lo, hi := 0, len(regs)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if regs[mid].start <= addr {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// Lookup returns the IOVA of b[0]. b must be a non-empty slice of the Bytes
// of a live Buffer from this Allocator (or of a Pool item carved from one);
// anything else (Go heap memory, a freed buffer, a slice reaching past its
// buffer) returns an error wrapping ErrNotDMA that says how to fix it.
//
// Lookup is meant for the I/O path: any goroutine may call it, it takes no
// lock, is O(log buffers), and does not allocate when it succeeds.
func (a *Allocator) Lookup(b []byte) (IOVA, error) {
	if len(b) == 0 {
		return 0, notDMAError(b)
	}
	addr := addrOf(b)
	regs := *a.table.Load()
	i := searchRegions(regs, addr) - 1
	if i < 0 {
		return 0, notDMAError(b)
	}
	r := regs[i]
	off := addr - r.start
	if off >= r.size || uintptr(len(b)) > r.size-off {
		return 0, notDMAError(b)
	}
	return r.iova + IOVA(off), nil
}

// notDMAError is out of line so that Lookup's success path stays small.
func notDMAError(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("dma: lookup: an empty slice has no device address: %w", ErrNotDMA)
	}
	return fmt.Errorf("dma: lookup %d bytes at %#x: not (entirely) inside a live buffer of this allocator; allocate I/O buffers with dma.Allocator.Alloc or a dma.Pool, or copy through an explicit bounce buffer: %w",
		len(b), addrOf(b), ErrNotDMA)
}

// Free unmaps b from the device, unlocks and unmaps its memory, and returns
// its IOVA range. The device must be done with it. Afterwards b.Bytes is nil
// and b.IOVA zero; slices of the old Bytes must not be used. Any goroutine
// may call it.
//
// If the Mapper fails to unmap, b stays allocated (the device may still
// reach it) and Free returns the error.
func (a *Allocator) Free(b *Buffer) error {
	if b == nil {
		return fmt.Errorf("dma: free: nil buffer: %w", ErrNotDMA)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.live[b]; !ok || b.a != a {
		return fmt.Errorf("dma: free %d bytes at %v: not a live buffer of this allocator (freed already, or from another allocator): %w", len(b.Bytes), b.IOVA, ErrNotDMA)
	}
	return a.freeLocked(b)
}

// freeLocked releases a live buffer. a.mu must be held.
func (a *Allocator) freeLocked(b *Buffer) error {
	if err := a.m.Unmap(b.mem, b.IOVA); err != nil {
		return fmt.Errorf("dma: free %d bytes at %v: unmap: %w", len(b.mem), b.IOVA, err)
	}
	a.publishLocked(b, false)
	delete(a.live, b)
	a.space.release(b.IOVA, uint64(len(b.mem)))
	a.stats.Buffers--
	a.stats.Bytes -= int64(len(b.mem))
	if b.huge {
		a.stats.HugeBytes -= int64(len(b.mem))
	}
	a.stats.Frees++
	err := unmapMemory(b.dm)
	b.Bytes, b.mem, b.dm, b.IOVA = nil, nil, nil, 0
	if err != nil {
		return fmt.Errorf("dma: free: %w", err)
	}
	return nil
}

// Stats returns a snapshot of the counters. Any goroutine may call it.
func (a *Allocator) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// LastHugeFallback returns why the most recent buffer that wanted hugepages
// got base pages instead (an error wrapping ErrHugePages with the counts and
// the command to raise them), or nil if none has. Any goroutine may call it.
func (a *Allocator) LastHugeFallback() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastFallback
}

// Close frees every buffer still allocated and refuses further Allocs.
// If buffers were still allocated it returns an error wrapping ErrLeaked
// that counts them and lists the first few. Any goroutine may call it;
// calling it again returns nil.
func (a *Allocator) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	if len(a.live) == 0 {
		return nil
	}
	bufs := make([]*Buffer, 0, len(a.live))
	for b := range a.live {
		bufs = append(bufs, b)
	}
	slices.SortFunc(bufs, func(x, y *Buffer) int {
		switch {
		case x.IOVA < y.IOVA:
			return -1
		case x.IOVA > y.IOVA:
			return 1
		}
		return 0
	})
	var total int64
	var list []string
	var errs []error
	for _, b := range bufs {
		total += int64(len(b.Bytes))
		if len(list) < 8 {
			list = append(list, fmt.Sprintf("%d bytes at %v", len(b.Bytes), b.IOVA))
		}
		if err := a.freeLocked(b); err != nil {
			errs = append(errs, err)
		}
	}
	if len(bufs) > len(list) {
		list = append(list, fmt.Sprintf("and %d more", len(bufs)-len(list)))
	}
	leak := fmt.Errorf("dma: close: %d buffers (%d bytes) still allocated, freed them: %s: %w",
		len(bufs), total, strings.Join(list, ", "), ErrLeaked)
	return errors.Join(append([]error{leak}, errs...)...)
}
