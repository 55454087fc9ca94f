// Package mmio is the only place in gonvme that loads and stores device
// registers.
//
// A Region is a window of memory-mapped I/O space: a PCI BAR mapped through
// VFIO, or, for the in-process test controller, ordinary memory that another
// goroutine plays the device on.
//
//	offset  0x00      0x08      0x14  0x1c  0x20 ...  0x1000 + (2y)*(4<<DSTRD)
//	        +---------+---------+-----+-----+---------+--------------------
//	BAR0    | CAP(64) | VS,INTMS| CC  | CSTS| ...     | SQyTDBL, CQyHDBL
//	        +---------+---------+-----+-----+---------+--------------------
//
// # Stores: one plain store instruction, in assembly
//
// A register store is one plain store instruction of the register's width,
// written by hand per architecture (store_amd64.s, store_arm64.s) and
// reached through a call the compiler cannot see into:
//
//	Write32(off, v) ── at(off, 4) ── CALL store32 ──► amd64:  MOVL v, (p)
//	                   bounds check                   arm64:  DMB OSHST; MOVW v, (p)  (STR)
//
// It is not sync/atomic. atomic.StoreUint32 compiles to XCHGL on amd64,
// and an exchange is a locked read-modify-write: on uncached device memory
// the processor cannot lock a cache line, so it locks the bus, which costs
// thousands of cycles, stalls every core and trips the kernel's bus-lock
// detection ("took a bus_lock trap" in the kernel log, and a throttled
// process under split_lock_detect=ratelimit). The exchange also
// reads the register back, which over PCIe is a non-posted read that waits
// a round trip to the device, where a plain store is a posted write that
// the processor does not wait for. Every doorbell paid both.
//
// Ordering without the fence. The driver's rule is that a submission queue
// entry written to DMA memory reaches the device before the doorbell that
// announces it, and a completion's fields are read only after its phase
// bit. Three things give that without a locked instruction:
//
//   - The call into assembly is a compiler barrier: the Go compiler emits
//     every store the caller made before the CALL, and keeps no memory value
//     in a register across it. store32 is never inlined.
//   - amd64 keeps stores in program order (x86-TSO), including a store to
//     write-back DMA memory followed by one to the uncached BAR that VFIO
//     maps, so the SQE stores are visible before the doorbell store; this is
//     all Linux's writel does on x86 (a MOV with a compiler barrier). A BAR
//     mapped write-combining would need an SFENCE: VFIO does not map it so.
//   - arm64 does not keep stores in order, so store32 issues DMB OSHST
//     first, the barrier Linux's writel uses there (__iowmb, dma_wmb):
//     every earlier store, to DMA memory or to a register, is observable by
//     the device before the register store.
//
// One full fence, for shadow doorbells. Fence (fence.go; MFENCE on amd64,
// DMB ISH on arm64) orders a store before a later load, which neither the
// x86 store order nor a store barrier gives. Only the shadow doorbell
// protocol needs it (store the new tail in memory, then read the
// controller's EventIdx); register stores never do.
//
// 64-bit registers are stored as two 32-bit stores, the low half first, as
// the NVMe base specification (3.1.2, "Register access") allows every host
// to do; PCIe hosts need not support 64-bit MMIO transactions. On arm64
// each half gets its own barrier, as two writel calls would.
//
// Under the race detector a store first tells the detector that it
// publishes the goroutine's earlier writes, as the atomic store did (race.go);
// the instruction that reaches the register is the same store32.
//
// # Loads
//
// Loads are sync/atomic loads of the register's width: one plain MOVL on
// amd64, LDARW (a load-acquire, no exclusive access) on arm64. The compiler
// emits exactly one load per access and never merges, splits or caches it.
// 64-bit registers are read low half, then high half.
//
// # Other architectures
//
// There are none: store_other.go makes the build fail with an error that
// names this package. A sync/atomic fallback would be wrong on several of
// them, where an atomic store is a read-modify-write sequence or an atomic
// memory operation that device memory need not support. A port writes
// store_$GOARCH.s with the barrier Linux's writel uses on that
// architecture.
//
// # Offsets
//
// Offsets are checked against the region: an access outside it, or not
// aligned to its width, is a programming error in the caller and panics.
// Callers that derive an offset from device data (the doorbell stride in
// CAP.DSTRD) must validate it against Len first.
//
// hack/qemu's lockcheck verb disassembles the built binaries and fails if a
// register store anywhere is a locked instruction or not store32/store64.
//
// Imports: the standard library only.
package mmio
