// Command lockcheck is the fixture of hack/qemu's TestLockCheckFixtures: a
// queue that rings its doorbell through a register package of
// internal/mmio's shape, whose stores are built one of three ways (see
// mmio/): the atomic.StoreUint32 internal/mmio used to have (default), a
// plain Go store (tag lockcheck_plain), and internal/mmio's assembly (tag
// lockcheck_asm).
package main

import (
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/testdata/lockcheck/mmio"
)

type queue struct {
	regs mmio.Region
	db   uintptr
	tail uint32
}

// ring writes the doorbell, as nvme's QueuePair.Ring does: Write32 is
// inlined here when it is small enough. ring itself is kept out of main so
// that the region is a pointer in a struct, not a value the compiler
// knows.
//
//go:noinline
func (q *queue) ring() { q.regs.Write32(q.db, q.tail) }

func main() {
	words := make([]uint64, 1024)
	q := &queue{regs: mmio.New(unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), 8*len(words))), db: 0x1000, tail: 1}
	q.regs.Write64(0x28, 0x1122334455667788)
	q.ring()
	println(q.regs.Read32(0x1000), q.regs.Read32(0x28))
}
