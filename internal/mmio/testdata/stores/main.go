// Command stores links internal/mmio's register stores into a small
// program, which TestStoreInstructions builds for each architecture and
// disassembles.
package main

import (
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/internal/mmio"
)

// The method expressions keep the out-of-line Write32 and Write64 in the
// binary even if every call to them is inlined.
var write32, write64 = mmio.Region.Write32, mmio.Region.Write64

// fence keeps mmio.Fence in the binary for TestFenceInstruction.
var fence = mmio.Fence

func main() {
	words := make([]uint64, 512)
	r := mmio.New(unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), 8*len(words)))
	write32(r, 0x1000, 1)
	write64(r, 0x28, 2)
	fence()
	r.Write32(0x1004, 3)
	println(r.Read32(0x1000), r.Read64(0x28), r.Read32(0x1004))
}
