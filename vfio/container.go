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
)

// Container is a VFIO container (/dev/vfio/vfio): one IOMMU address space
// shared by the groups attached to it. Its DMA mappings translate I/O
// virtual addresses the devices use into this process's memory.
//
// Any goroutine may call any method; a mutex serialises them. Mapping and
// unmapping are not on the I/O path.
type Container struct {
	mu       sync.Mutex
	fd       int // -1 once closed
	iommuSet bool
	book     dmaBook
	caps     iommuCaps
	groups   int // groups attached
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
	c := &Container{fd: fd}
	v, err := ioctlInt(fd, ioctlGetAPIVersion, 0)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vfio get api version: %w", err)
	}
	if v != vfioAPIVersion {
		unix.Close(fd)
		return nil, fmt.Errorf("vfio api version %d, want %d: %w", v, vfioAPIVersion, ErrUnsupported)
	}
	ok, err := ioctlInt(fd, ioctlCheckExtension, vfioType1v2IOMMU)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vfio check extension TYPE1v2: %w", err)
	}
	if ok <= 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("vfio: the TYPE1v2 iommu is not available: %w; load vfio_iommu_type1 (modprobe vfio-pci pulls it in)", ErrUnsupported)
	}
	return c, nil
}

// setIOMMU selects the TYPE1v2 IOMMU once the first group is attached and
// reads the usable IOVA ranges. c.mu is held.
func (c *Container) setIOMMU() error {
	if c.iommuSet {
		return nil
	}
	if _, err := ioctlInt(c.fd, ioctlSetIOMMU, vfioType1v2IOMMU); err != nil {
		if isPerm(err) {
			return fmt.Errorf("vfio set iommu TYPE1v2: %w (%w): the IOMMU lacks interrupt remapping (QEMU: -device intel-iommu,intremap=on), or load vfio_iommu_type1 with allow_unsafe_interrupts=1", ErrPermission, err)
		}
		return fmt.Errorf("vfio set iommu TYPE1v2: %w", err)
	}
	c.iommuSet = true
	pg, caps, err := c.iommuInfo()
	if err != nil {
		return err
	}
	c.caps = caps
	c.book.pgsize = pg
	c.book.ranges = caps.ranges
	return nil
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
		if _, err := ioctlPtr(c.fd, ioctlIOMMUGetInfo, unsafe.Pointer(&words[0])); err != nil {
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
// as the kernel reported them when the IOMMU was set (nil before, or if the
// kernel does not report them).
func (c *Container) IOVARanges() []IOVARange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]IOVARange(nil), c.book.ranges...)
}

// PageSize returns the smallest page size the IOMMU maps (0 before the
// IOMMU is set). MapDMA wants iova and length in multiples of it.
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
	if c.fd < 0 || !c.iommuSet {
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

// MapDMA maps b for device reads and writes at I/O virtual address iova.
// b must be memory from mmap (not the Go heap) that stays mapped until
// UnmapDMA; its start and length, and iova, must be multiples of PageSize.
// The span must lie inside one of IOVARanges and overlap no earlier
// mapping (ErrOverlap). If pinning b exceeds RLIMIT_MEMLOCK the error is a
// *MemlockError.
func (c *Container) MapDMA(b []byte, iova uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return fmt.Errorf("map dma: container %w", ErrClosed)
	}
	if !c.iommuSet {
		return fmt.Errorf("map dma: no group attached to the container yet")
	}
	size := uint64(len(b))
	if err := c.book.check(iova, size); err != nil {
		return err
	}
	vaddr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if c.book.pgsize != 0 && uint64(vaddr)%c.book.pgsize != 0 {
		return fmt.Errorf("map dma at %#x: buffer address %#x is not aligned to the iommu page size %#x", iova, vaddr, c.book.pgsize)
	}
	m := dmaMap{
		ArgSz: sizeofDMAMap,
		Flags: vfioDMAMapFlagRead | vfioDMAMapFlagWrite,
		VAddr: uint64(vaddr),
		IOVA:  iova,
		Size:  size,
	}
	_, err := ioctlPtr(c.fd, ioctlIOMMUMapDMA, unsafe.Pointer(&m))
	runtime.KeepAlive(b)
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
	return nil
}

// memlockError builds the *MemlockError for a refused map of size bytes.
func memlockError(size uint64) error {
	var lim unix.Rlimit
	cur := uint64(0)
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) == nil {
		cur = lim.Cur
	}
	return &MemlockError{Current: cur, Needed: lockedBytes() + size}
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
// cover whole mappings made by MapDMA, at least one.
func (c *Container) UnmapDMA(iova, size uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return fmt.Errorf("unmap dma: container %w", ErrClosed)
	}
	lo, hi, err := c.book.covered(iova, size)
	if err != nil {
		return err
	}
	u := dmaUnmap{ArgSz: sizeofDMAUnmap, IOVA: iova, Size: size}
	if _, err := ioctlPtr(c.fd, ioctlIOMMUUnmapDMA, unsafe.Pointer(&u)); err != nil {
		return fmt.Errorf("unmap dma [%#x, %#x]: %w", iova, iova+size-1, err)
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
	err := unix.Close(c.fd)
	c.fd = -1
	c.book.maps = nil
	c.book.bytes = 0
	if err != nil {
		return fmt.Errorf("close vfio container: %w", err)
	}
	return nil
}
