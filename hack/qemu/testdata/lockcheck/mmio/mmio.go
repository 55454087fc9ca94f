// Package mmio is internal/mmio's shape with its store built three ways,
// for hack/qemu's lockcheck test.
package mmio

import (
	"sync/atomic"
	"unsafe"
)

type Region struct {
	base unsafe.Pointer
	size uintptr
}

func New(b []byte) Region {
	return Region{base: unsafe.Pointer(unsafe.SliceData(b)), size: uintptr(len(b))}
}

func (r Region) at(off, width uintptr) unsafe.Pointer {
	if off%width != 0 || off > r.size || r.size-off < width {
		panic("mmio: access outside region")
	}
	return unsafe.Add(r.base, off)
}

func (r Region) Read32(off uintptr) uint32 { return atomic.LoadUint32((*uint32)(r.at(off, 4))) }
