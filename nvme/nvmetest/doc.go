// Package nvmetest is an in-process NVMe controller for host tests, fault
// injection and overhead benchmarks of package nvme.
//
// A Controller plays a PCIe NVMe controller on a goroutine of its own:
//
//	test goroutine                    device goroutine (one per Controller)
//	  nvme.Open(fake, alloc, ...)       polls CC and every SQ tail doorbell
//	    │ mmio.Region (Registers) ───►  BAR0: CAP VS CC CSTS AQA ASQ ACQ, doorbells
//	    │ dma.Allocator on Mapper ───►  SoftMapper.Translate(iova, n): the only
//	    │                               way into host memory (SQ, CQ, PRP, data)
//	    └ InjectStatus, Remove, ... ──► control calls, run between commands
//
// The register window is an anonymous 16 KiB mapping that both sides
// access with sync/atomic through internal/mmio. The device reaches host
// memory only by translating IOVAs through the dma.SoftMapper returned by
// Mapper; an IOVA nothing is mapped at is a device-side DMA fault, and the
// command completes with Data Transfer Error (Stats.DMAFaults counts them).
// Storage is a []byte per namespace.
//
// What it implements (NVMe Base 2.0 and NVM Command Set 1.0, PCIe
// transport): CAP, VS 1.4, CC/CSTS (RDY follows EN, SHN completes at
// once, CFS on request), the admin queue from AQA/ASQ/ACQ, doorbells with
// CAP.DSTRD; Identify (CNS 0, 1, 2, 3), Get/Set Features, Get Log Page
// (Error Information, SMART / Health, Firmware Slot, Commands Supported
// and Effects), Create/Delete I/O CQ/SQ with the spec's checks, Abort,
// Asynchronous Event Request, Format NVM; Read, Write, Flush, Write Zeroes,
// Dataset Management (deallocated blocks read zeros), Compare, Write
// Uncorrectable, Verify, with PRP lists (chained) or, when configured, an
// SGL data block descriptor. Commands run in order per submission queue;
// completions are written dwords 0-2 first and dword 3 with one atomic
// store, and never overrun a full completion queue.
//
// Faults, armed from any goroutine while I/O runs: InjectStatus,
// DropCompletion, Lose, BogusCID, DuplicateCID, BadSQHead, FatalStatus,
// Remove and Stall. Stats counts commands per opcode, resets and every
// fault delivered.
//
// BareQueue is a minimal hand-written host queue pair over the same fake,
// without package nvme: the baseline that the driver's per-I/O overhead is
// measured against.
//
// Goroutines: every Controller method may be called from any goroutine;
// the hooks in Config run on the device goroutine. A BareQueue belongs to
// one goroutine.
//
// Imports: dma, internal/mmio, nvme/spec and the standard library; never
// package nvme (whose tests import this one).
package nvmetest
