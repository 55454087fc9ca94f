//go:build lockcheck_plain

package mmio

import "unsafe"

// Write32 with a plain Go store: not locked, but not a compiler barrier
// either, and not internal/mmio's assembly.
func (r Region) Write32(off uintptr, v uint32) {
	*(*uint32)(r.at(off, 4)) = v
}

func (r Region) Write64(off uintptr, v uint64) {
	p := r.at(off, 8)
	*(*uint32)(p) = uint32(v)
	*(*uint32)(unsafe.Add(p, 4)) = uint32(v >> 32)
}
