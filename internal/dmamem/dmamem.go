// Package dmamem is the memory gonvme lets a device reach: anonymous
// mappings outside the Go heap, populated, aligned to what the IOMMU maps,
// and kept out of forked children. Package dma makes every Memory (Map)
// and decides whether to lock it; package vfio maps nothing else for DMA:
// vfio.Container.MapDMA takes a *Memory, whose fields no other package can
// set, so Go heap memory (which the garbage collector reuses as soon as
// nothing points to it, whatever the device still does) cannot reach the
// IOMMU. Only dma calls Map (TestOnlyDMAMaps checks the tree).
//
// Find answers "is this slice a whole Memory that is still mapped?" for
// the code that receives plain []byte (dma.VFIOMapper.Map).
//
// Any goroutine may call Map and Find. A Memory belongs to the one owner
// that maps and unmaps it (a dma.Buffer); Bytes may be read by any
// goroutine while it is mapped.
package dmamem

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// HugePageSize is the size of the hugepages Map uses with huge set (x86-64
// and arm64 with 4 KiB base pages: 2 MiB, mapped with MAP_HUGE_2MB).
const HugePageSize = 2 << 20

// PageSize is the system's base page size.
var PageSize = unix.Getpagesize()

// Memory is one anonymous mapping made by Map. The zero Memory holds no
// memory and is refused wherever a Memory is mapped for a device.
type Memory struct {
	b    []byte // nil once unmapped
	huge bool
}

// Bytes returns the memory, nil once Unmap ran (or for a zero Memory).
func (m *Memory) Bytes() []byte {
	if m == nil {
		return nil
	}
	return m.b
}

// Huge reports whether the memory lives in hugepages.
func (m *Memory) Huge() bool { return m != nil && m.huge }

// Error is a failed step of Map, with the errno the kernel gave; package
// dma turns it into an explanation (memlock limit, hugepage shortage).
type Error struct {
	Op   string // "mmap", "mlock" or "madvise"
	Size int
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("%s %d bytes: %v", e.Op, e.Size, e.Err) }

// Unwrap returns the errno.
func (e *Error) Unwrap() error { return e.Err }

// registry maps the first address of each live Memory to it, for Find.
var registry = struct {
	sync.Mutex
	m map[uintptr]*Memory
}{m: map[uintptr]*Memory{}}

// Map maps size bytes (a multiple of the page size, or of HugePageSize with
// huge) of anonymous, private, populated memory whose first byte is
// aligned to align (a power of two; at most the page size means no extra
// alignment), in 2 MiB hugepages if huge. With lock the pages are locked
// (MAP_LOCKED, then mlock, which fails where MAP_LOCKED does not) and count
// against RLIMIT_MEMLOCK; without, the caller's IOMMU is expected to pin
// them (VFIO does, and counts them itself). MADV_DONTFORK keeps a forked
// child (every os/exec) from sharing the pages copy-on-write, which would
// leave the device writing pages the parent no longer sees.
//
// Only package dma calls Map. Errors are *Error.
func Map(size, align int, huge, lock bool) (*Memory, error) {
	if size <= 0 {
		return nil, &Error{Op: "mmap", Size: size, Err: unix.EINVAL}
	}
	natural := PageSize
	flags := unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_POPULATE
	if huge {
		natural = HugePageSize
		flags |= unix.MAP_HUGETLB | unix.MAP_HUGE_2MB
	}
	if lock {
		flags |= unix.MAP_LOCKED
	}
	prot := unix.PROT_READ | unix.PROT_WRITE
	var p unsafe.Pointer
	if align <= natural {
		var err error
		p, err = unix.MmapPtr(-1, 0, nil, uintptr(size), prot, flags)
		if err != nil {
			return nil, &Error{Op: "mmap", Size: size, Err: err}
		}
	} else {
		var err error
		p, err = mapAligned(size, align, prot, flags)
		if err != nil {
			return nil, &Error{Op: "mmap", Size: size, Err: err}
		}
	}
	b := unsafe.Slice((*byte)(p), size)
	fail := func(op string, err error) (*Memory, error) {
		_ = unix.MunmapPtr(p, uintptr(size))
		return nil, &Error{Op: op, Size: size, Err: err}
	}
	// MAP_LOCKED does not fail when it cannot lock every page; mlock does,
	// so it is the guarantee.
	if lock {
		if err := unix.Mlock(b); err != nil {
			return fail("mlock", err)
		}
	}
	if err := unix.Madvise(b, unix.MADV_DONTFORK); err != nil {
		return fail("madvise", err)
	}
	m := &Memory{b: b, huge: huge}
	registry.Lock()
	registry.m[uintptr(p)] = m
	registry.Unlock()
	return m, nil
}

// mapAligned reserves size+align bytes of address space with no access
// and no backing, maps the aligned part of it for real (MAP_FIXED), and
// gives back the rest. mmap itself aligns only to the page size.
func mapAligned(size, align, prot, flags int) (unsafe.Pointer, error) {
	span := uintptr(size + align)
	res, err := unix.MmapPtr(-1, 0, nil, span, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	start := uintptr(res)
	aligned := (start + uintptr(align) - 1) &^ (uintptr(align) - 1)
	p, err := unix.MmapPtr(-1, 0, unsafe.Add(res, aligned-start), uintptr(size), prot, flags|unix.MAP_FIXED)
	if err != nil {
		_ = unix.MunmapPtr(res, span)
		return nil, err
	}
	if head := aligned - start; head > 0 {
		_ = unix.MunmapPtr(res, head)
	}
	end := aligned + uintptr(size)
	if tail := start + span - end; tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(res, end-start), tail)
	}
	return p, nil
}

// Unmap releases the memory; Bytes returns nil afterwards and Find no
// longer knows it. Unmapping twice is an error.
func (m *Memory) Unmap() error {
	if m == nil || m.b == nil {
		return errors.New("dmamem: unmap: not mapped")
	}
	p := unsafe.Pointer(unsafe.SliceData(m.b))
	n := len(m.b)
	registry.Lock()
	delete(registry.m, uintptr(p))
	m.b = nil
	registry.Unlock()
	if err := unix.MunmapPtr(p, uintptr(n)); err != nil {
		return &Error{Op: "munmap", Size: n, Err: err}
	}
	return nil
}

// Find returns the live Memory whose bytes are exactly b (same start, same
// length), or nil: Go heap memory, a part of a Memory, or memory already
// unmapped.
func Find(b []byte) *Memory {
	if len(b) == 0 {
		return nil
	}
	registry.Lock()
	defer registry.Unlock()
	m := registry.m[uintptr(unsafe.Pointer(unsafe.SliceData(b)))]
	if m == nil || len(m.b) != len(b) {
		return nil
	}
	return m
}
