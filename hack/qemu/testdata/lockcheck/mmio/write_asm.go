//go:build lockcheck_asm

package mmio

import "unsafe"

// Write32 as internal/mmio has it, a call into assembly, but without the
// bounds check, so that it is inlined into ring: an inlined call to the
// assembly passes the check as the called one does.
func (r Region) Write32(off uintptr, v uint32) { store32(unsafe.Add(r.base, off), v) }

func (r Region) Write64(off uintptr, v uint64) { store64(r.at(off, 8), v) }

//go:noescape
func store32(p unsafe.Pointer, v uint32)

//go:noescape
func store64(p unsafe.Pointer, v uint64)
