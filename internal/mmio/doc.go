// Package mmio is the only place in gonvme that loads and stores device
// registers.
//
// A Region is a window of memory-mapped I/O space: a PCI BAR mapped through
// VFIO, or, for the in-process test controller, ordinary memory that another
// goroutine plays the device on. Every access is a sync/atomic operation of
// the register's width, so the compiler emits exactly one load or store per
// access and never merges, splits or reorders it. On amd64 an atomic store is
// an XCHG, a full fence: stores to a submission queue entry in DMA memory are
// globally visible before the doorbell store that follows them.
//
//	offset  0x00      0x08      0x14  0x1c  0x20 ...  0x1000 + (2y)*(4<<DSTRD)
//	        +---------+---------+-----+-----+---------+--------------------
//	BAR0    | CAP(64) | VS,INTMS| CC  | CSTS| ...     | SQyTDBL, CQyHDBL
//	        +---------+---------+-----+-----+---------+--------------------
//
// 64-bit registers are accessed as two 32-bit halves, low half first, as the
// NVMe base specification (3.1.2, "Register access") allows every host to
// do; PCIe hosts need not support 64-bit MMIO transactions.
//
// Offsets are checked against the region: an access outside it, or not
// aligned to its width, is a programming error in the caller and panics.
// Callers that derive an offset from device data (the doorbell stride in
// CAP.DSTRD) must validate it against Len first.
//
// Imports: the standard library only.
package mmio
