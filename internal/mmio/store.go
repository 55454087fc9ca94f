//go:build amd64 || arm64

package mmio

import "unsafe"

// store32 stores v at p with one plain 32-bit store instruction, preceded
// by the architecture's I/O write barrier where it needs one
// (store_$GOARCH.s). It is not inlined and is opaque to the compiler: no
// memory access of the caller moves across the call.
//
//go:noescape
func store32(p unsafe.Pointer, v uint32)

// store64 stores v at p as two plain 32-bit stores, the low half at p,
// then the high half at p+4, each as store32 does it.
//
//go:noescape
func store64(p unsafe.Pointer, v uint64)
