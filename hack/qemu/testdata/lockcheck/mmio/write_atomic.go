//go:build !lockcheck_plain && !lockcheck_asm

package mmio

import (
	"sync/atomic"
	"unsafe"
)

// Write32 is internal/mmio's store before the assembly: XCHGL on amd64.
func (r Region) Write32(off uintptr, v uint32) {
	atomic.StoreUint32((*uint32)(r.at(off, 4)), v)
}

func (r Region) Write64(off uintptr, v uint64) {
	p := r.at(off, 8)
	atomic.StoreUint32((*uint32)(p), uint32(v))
	atomic.StoreUint32((*uint32)(unsafe.Add(p, 4)), uint32(v>>32))
}
