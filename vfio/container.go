package vfio

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/internal/dmamem"
)

// Container is a VFIO container (/dev/vfio/vfio): one IOMMU address space
// shared by the groups attached to it. Its DMA mappings translate I/O
// virtual addresses the devices use into this process's memory.
//
// The IOMMU exists only while a group is attached: the kernel sets it up
// for the first group (VFIO_SET_IOMMU) and tears it down, with every DMA
// mapping, when the last group detaches. The Container follows it: once
// its last group is gone, PageSize, IOVARanges and MappedBytes are back to
// zero and the next group sets the IOMMU up again. A mapping the kernel
// dropped that way may still be passed to UnmapDMA once, which then only
// forgets it. A group detaches when it is closed and no device opened
// through it is open any more (a device fd holds its group).
//
// Any goroutine may call any method; a mutex serialises them. Mapping and
// unmapping are not on the I/O path.
type Container struct {
	mu     sync.Mutex
	k      kernel
	fd     int // -1 once closed
	book   dmaBook
	caps   iommuCaps
	groups int // groups attached; the IOMMU is set while it is positive
	// dropped are mappings the book had and the kernel no longer has: it
	// dropped them with the last group, or unmapped less than asked.
	// UnmapDMA of one of them succeeds without asking the kernel.
	dropped dmaBook
}

// OpenContainer opens /dev/vfio/vfio and checks that the kernel speaks
// VFIO_API_VERSION and offers the TYPE1v2 IOMMU. The IOMMU itself is set
// when the first group joins (Group.SetContainer).
func OpenContainer() (*Container, error) { return hostFS.openContainer() }

func (s sysfs) openContainer() (*Container, error) {
	path := filepath.Join(s.dev, "vfio", "vfio")
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil, fmt.Errorf("open %s: %w: the vfio module is not loaded; run `modprobe vfio-pci`", path, ErrNoVFIOPCI)
		case isPerm(err):
			return nil, permError(path, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return newContainer(hostKernel{}, fd)
}

// newContainer checks the API version and the TYPE1v2 extension on an
// open container fd; it closes fd on failure.
func newContainer(k kernel, fd int) (*Container, error) {
	c := &Container{k: k, fd: fd}
	v, err := k.ioctl(fd, ioctlGetAPIVersion, 0)
	if err != nil {
		k.close(fd)
		return nil, fmt.Errorf("vfio get api version: %w", err)
	}
	if v != vfioAPIVersion {
		k.close(fd)
		return nil, fmt.Errorf("vfio api version %d, want %d: %w", v, vfioAPIVersion, ErrUnsupported)
	}
	ok, err := k.ioctl(fd, ioctlCheckExtension, vfioType1v2IOMMU)
	if err != nil {
		k.close(fd)
		return nil, fmt.Errorf("vfio check extension TYPE1v2: %w", err)
	}
	if ok <= 0 {
		k.close(fd)
		return nil, fmt.Errorf("vfio: the TYPE1v2 iommu is not available: %w; load vfio_iommu_type1 (modprobe vfio-pci pulls it in)", ErrUnsupported)
	}
	return c, nil
}

// attachLocked runs after VFIO_GROUP_SET_CONTAINER succeeded for a group:
// for the first group it selects the TYPE1v2 IOMMU, and for every group it
// reads the IOMMU's page sizes and usable IOVA ranges again, since a new
// group can bring reserved regions (RMRRs, MSI windows) that shrink them.
// On error the caller detaches the group (GROUP_UNSET_CONTAINER), which for
// the first group also drops the IOMMU, so the Container stays as it was.
// c.mu is held.
func (c *Container) attachLocked() error {
	if c.groups == 0 {
		if _, err := c.k.ioctl(c.fd, ioctlSetIOMMU, vfioType1v2IOMMU); err != nil {
			if isPerm(err) {
				return fmt.Errorf("vfio set iommu TYPE1v2: %w (%w): the IOMMU lacks interrupt remapping (QEMU: -device intel-iommu,intremap=on), or load vfio_iommu_type1 with allow_unsafe_interrupts=1", ErrPermission, err)
			}
			return fmt.Errorf("vfio set iommu TYPE1v2: %w", err)
		}
	}
	pg, caps, err := c.iommuInfo()
	if err != nil {
		return err
	}
	c.groups++
	c.caps = caps
	c.book.pgsize = pg
	c.book.ranges = caps.ranges
	return nil
}

// detachLocked runs when a group has left the container in the kernel.
// With the last group the kernel released the IOMMU and every mapping;
// the book follows. c.mu is held.
func (c *Container) detachLocked() {
	if c.groups == 0 {
		return
	}
	c.groups--
	if c.groups > 0 {
		return
	}
	for _, m := range c.book.maps {
		c.dropped.add(m)
	}
	c.book = dmaBook{}
	c.caps = iommuCaps{}
}

// iommuInfo issues VFIO_IOMMU_GET_INFO, growing the buffer once if the
// kernel asks for room for its capability chain. It returns the smallest
// page size and the parsed capabilities.
func (c *Container) iommuInfo() (uint64, iommuCaps, error) {
	size := uint32(sizeofIOMMUType1Info)
	for try := 0; ; try++ {
		words := make([]uint64, (size+7)/8) // 8-byte aligned for the kernel struct
		info := (*iommuType1Info)(unsafe.Pointer(&words[0]))
		info.ArgSz = size
		if _, err := c.k.ioctlPtr(c.fd, ioctlIOMMUGetInfo, unsafe.Pointer(&words[0])); err != nil {
			return 0, iommuCaps{}, fmt.Errorf("vfio iommu get info: %w", err)
		}
		if info.ArgSz > size && try == 0 {
			if info.ArgSz > 1<<20 {
				return 0, iommuCaps{}, fmt.Errorf("vfio iommu get info: kernel wants a %d-byte buffer", info.ArgSz)
			}
			size = info.ArgSz
			continue
		}
		var pg uint64
		if info.Flags&vfioIOMMUInfoPgsizes != 0 && info.IOVAPgsizes != 0 {
			pg = 1 << bits.TrailingZeros64(info.IOVAPgsizes)
		}
		var caps iommuCaps
		if info.Flags&vfioIOMMUInfoCaps != 0 && info.CapOffset != 0 {
			buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), int(size))
			var err error
			caps, err = parseIOMMUCaps(bytes.Clone(buf), info.CapOffset)
			if err != nil {
				return 0, iommuCaps{}, err
			}
		}
		return pg, caps, nil
	}
}

// IOVARanges returns the I/O virtual address ranges the IOMMU translates,
// as the kernel reported them when the last group was attached (nil while
// no group is attached, or if the kernel does not report them).
func (c *Container) IOVARanges() []IOVARange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]IOVARange(nil), c.book.ranges...)
}

// PageSize returns the smallest page size the IOMMU maps (0 while no group
// is attached). MapDMA wants the memory's address, its length and the iova
// in multiples of it.
func (c *Container) PageSize() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.book.pgsize
}

// DMAAvailable returns how many more DMA mappings the kernel allows this
// container (vfio_iommu_type1's dma_entry_limit), if the kernel reports it.
func (c *Container) DMAAvailable() (n uint32, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 || c.groups == 0 {
		return 0, false
	}
	if _, caps, err := c.iommuInfo(); err == nil {
		c.caps.dmaAvail, c.caps.hasAvail = caps.dmaAvail, caps.hasAvail
	}
	return c.caps.dmaAvail, c.caps.hasAvail
}

// MappedBytes returns the bytes currently mapped through this container.
func (c *Container) MappedBytes() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.book.bytes
}

// MapDMA maps m, all of it, for device reads and writes at I/O virtual
// address iova. m comes from package dma (a dma.Allocator maps its buffers
// through dma.NewVFIOMapper): only dma makes a dmamem.Memory, so Go heap
// memory can never be pinned for a device; a zero or unmapped Memory is
// refused with ErrNotDMA. m's address and length, and iova, must be
// multiples of PageSize; m must stay mapped until UnmapDMA. The span must
// lie inside one of IOVARanges and overlap no earlier mapping
// (ErrOverlap). If pinning m exceeds RLIMIT_MEMLOCK the error is a
// *MemlockError.
func (c *Container) MapDMA(m *dmamem.Memory, iova uint64) error {
	b := m.Bytes()
	if len(b) == 0 {
		return fmt.Errorf("map dma at %#x: %w: no memory (a zero or unmapped dmamem.Memory); allocate DMA memory with package dma", iova, ErrNotDMA)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return fmt.Errorf("map dma: container %w", ErrClosed)
	}
	if c.groups == 0 {
		return fmt.Errorf("map dma: no group attached to the container (the IOMMU exists only while one is)")
	}
	size := uint64(len(b))
	if err := c.book.check(iova, size); err != nil {
		return err
	}
	vaddr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if c.book.pgsize != 0 && uint64(vaddr)%c.book.pgsize != 0 {
		return fmt.Errorf("map dma at %#x: buffer address %#x is not aligned to the iommu page size %#x", iova, vaddr, c.book.pgsize)
	}
	dm := dmaMap{
		ArgSz: sizeofDMAMap,
		Flags: vfioDMAMapFlagRead | vfioDMAMapFlagWrite,
		VAddr: uint64(vaddr),
		IOVA:  iova,
		Size:  size,
	}
	_, err := c.k.ioctlPtr(c.fd, ioctlIOMMUMapDMA, unsafe.Pointer(&dm))
	runtime.KeepAlive(m)
	want := mapping{iova: iova, size: size, vaddr: vaddr}
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOMEM):
			return memlockError(size)
		case errors.Is(err, unix.EEXIST):
			return fmt.Errorf("map dma %v: %w (kernel: %w): another mapping on this container covers part of it", want, ErrOverlap, err)
		case errors.Is(err, unix.ENOSPC):
			return fmt.Errorf("map dma %v: %w: out of dma mappings (vfio_iommu_type1 dma_entry_limit); use fewer, larger buffers", want, err)
		}
		return fmt.Errorf("map dma %v: %w", want, err)
	}
	c.book.add(want)
	c.dropped.forget(iova, size)
	return nil
}

// memlockError builds the *MemlockError for a refused map of size bytes.
func memlockError(size uint64) error {
	var lim unix.Rlimit
	cur := uint64(0)
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) == nil {
		cur = lim.Cur
	}
	locked := lockedBytes()
	return &MemlockError{Current: cur, Locked: locked, Needed: locked + size}
}

// lockedBytes returns the process's locked memory (VmLck in
// /proc/self/status, where VFIO accounts pinned pages), 0 if unknown.
func lockedBytes() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) >= 2 && string(f[0]) == "VmLck:" {
			kb, err := strconv.ParseUint(string(f[1]), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// UnmapDMA removes the mappings inside [iova, iova+size). The span must
// cover whole mappings made by MapDMA, at least one. The kernel says how
// many bytes it unmapped; if that is not size, the book and the kernel had
// diverged: the error wraps ErrUnmapMismatch, and the span is unmapped
// all the same (nothing stays mapped in it), so the memory may be
// released. A span the kernel already dropped (its last group detached)
// is forgotten without asking it.
func (c *Container) UnmapDMA(iova, size uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return fmt.Errorf("unmap dma: container %w", ErrClosed)
	}
	lo, hi, err := c.book.covered(iova, size)
	if err != nil {
		if dlo, dhi, derr := c.dropped.covered(iova, size); derr == nil {
			c.dropped.remove(dlo, dhi)
			return nil
		}
		return err
	}
	u := dmaUnmap{ArgSz: sizeofDMAUnmap, IOVA: iova, Size: size}
	if _, err := c.k.ioctlPtr(c.fd, ioctlIOMMUUnmapDMA, unsafe.Pointer(&u)); err != nil {
		return fmt.Errorf("unmap dma [%#x, %#x]: %w", iova, iova+size-1, err)
	}
	if u.Size != size {
		// Type1v2 unmaps every mapping inside the span or fails: nothing
		// is left mapped there, whatever the book thought.
		for _, m := range c.book.maps[lo:hi] {
			c.dropped.add(m)
		}
		c.book.remove(lo, hi)
		return fmt.Errorf("unmap dma [%#x, %#x]: the kernel unmapped %d of %d bytes: %w: gonvme's record of the mappings had diverged from the kernel's", iova, iova+size-1, u.Size, size, ErrUnmapMismatch)
	}
	c.book.remove(lo, hi)
	return nil
}

// Close closes the container. The kernel drops its DMA mappings when the
// last group leaves. Close is idempotent; groups attached to the container
// keep it open in the kernel until they are closed too.
func (c *Container) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := c.k.close(c.fd)
	c.fd = -1
	c.book.maps = nil
	c.book.bytes = 0
	c.dropped = dmaBook{}
	if err != nil {
		return fmt.Errorf("close vfio container: %w", err)
	}
	return nil
}
