package mmio

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Region is a mapped window of device registers. The zero Region is empty:
// every access to it panics. A Region is a small value; copies share the
// same memory.
//
// Any goroutine may use a Region; each access is one load or one store
// instruction of the register's width (two for the 64-bit ones).
// Coordinating who writes which register is the caller's business.
type Region struct {
	base unsafe.Pointer
	size uintptr
}

// New returns a Region over b, which must be memory that outlives the Region
// and that the Go garbage collector does not move: an mmap of a BAR, or
// memory mapped with mmap for a simulated device. New panics if b is not
// 8-byte aligned.
func New(b []byte) Region {
	if len(b) == 0 {
		return Region{}
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if uintptr(p)%8 != 0 {
		panic(fmt.Sprintf("mmio: region base %p is not 8-byte aligned", p))
	}
	return Region{base: p, size: uintptr(len(b))}
}

// Len returns the size of the region in bytes.
func (r Region) Len() int { return int(r.size) }

// at returns the address of the width-byte register at off, or panics if it
// lies outside the region or is misaligned.
func (r Region) at(off, width uintptr) unsafe.Pointer {
	if off%width != 0 || off > r.size || r.size-off < width {
		panic(accessError{off, width, r.size})
	}
	return unsafe.Add(r.base, off)
}

// Read32 loads the 32-bit register at off.
func (r Region) Read32(off uintptr) uint32 {
	return atomic.LoadUint32((*uint32)(r.at(off, 4)))
}

// Write32 stores v to the 32-bit register at off with one plain store
// instruction, never a locked one (doc.go). Every store the goroutine made
// before it, to DMA memory or to registers, reaches the device first: the
// call into assembly is a compiler barrier, amd64 keeps stores in order and
// arm64 gets a DMB OSHST before the store.
func (r Region) Write32(off uintptr, v uint32) {
	p := r.at(off, 4)
	raceRelease(p)
	store32(p, v)
}

// Read64 loads the 64-bit register at off as two 32-bit loads, the low half
// first. The halves are not read atomically together; registers that can
// change between them (none of the NVMe controller registers the host reads
// do in practice) need a retry protocol of the caller's.
func (r Region) Read64(off uintptr) uint64 {
	p := r.at(off, 8)
	lo := atomic.LoadUint32((*uint32)(p))
	hi := atomic.LoadUint32((*uint32)(unsafe.Add(p, 4)))
	return uint64(hi)<<32 | uint64(lo)
}

// Write64 stores v to the 64-bit register at off as two 32-bit stores, the
// low half first, each as Write32 makes it.
func (r Region) Write64(off uintptr, v uint64) {
	p := r.at(off, 8)
	raceRelease(p)
	raceRelease(unsafe.Add(p, 4))
	store64(p, v)
}

// accessError is the panic value of an access outside a Region or not
// aligned to its width: a programming error in the caller. It is formatted
// only when printed, which keeps at small enough to inline: Read32 makes no
// call and Write32 one, to store32.
type accessError struct{ off, width, size uintptr }

func (e accessError) Error() string {
	return fmt.Sprintf("mmio: %d-byte access at offset %#x outside region of %#x bytes or misaligned", e.width, e.off, e.size)
}
