//go:build !amd64 && !arm64

package mmio

import "unsafe"

// A register store is hand-written assembly (doc.go) and exists for amd64
// and arm64 only. sync/atomic is no substitute: on several architectures
// an atomic store is a read-modify-write, which device memory need not
// support. Porting gonvme means writing store_$GOARCH.s with the barrier
// Linux's writel uses on that architecture; until then the build fails on
// the undefined name below, which says so.
var _ = internal_mmio_has_no_register_store_for_this_GOARCH_see_doc_go

func store32(p unsafe.Pointer, v uint32) {}
func store64(p unsafe.Pointer, v uint64) {}
func Fence()                             {}
