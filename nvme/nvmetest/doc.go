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
// transport): CAP, VS 1.4, CC/CSTS, the admin queue from AQA/ASQ/ACQ,
// doorbells with CAP.DSTRD; Identify (CNS 0, 1, 2, 3), Get/Set Features,
// Get Log Page (Error Information, SMART / Health, Firmware Slot, Changed
// Namespace List, Commands Supported and Effects), Create/Delete I/O
// CQ/SQ with the spec's checks, Abort, Asynchronous Event Request,
// Namespace Attachment, Format NVM, Doorbell Buffer Config (shadow
// doorbells with QEMU's EventIdx behaviour: a queue the controller caught
// up with sleeps until an MMIO doorbell write wakes it; dbbuf.go); Read,
// Write, Flush, Write Zeroes, Dataset Management (deallocated blocks read
// zeros), Compare, Write Uncorrectable, Verify, with PRP lists (chained) or, when configured, an
// SGL data block descriptor. Completions are written dwords 0-2 first and
// dword 3 with one atomic store, and never overrun a full completion
// queue.
//
// # Strict by default
//
// The fake is as strict as the spec and as rude as hardware unless a test
// says otherwise (DESIGN.md, test tiers):
//
//   - Latency: each I/O command executes and completes a random time
//     after it is fetched (Config.Latency, DefaultLatency), so completions
//     come late and out of order within a queue. Fixed(0) restores an
//     in-order, instant device; benchmarks of the host's overhead use it.
//   - CSTS.RDY sets Config.ReadyDelay after CC.EN, clears DisableDelay
//     after it is cleared; CSTS.SHST reports processing for ShutdownDelay.
//   - Asynchronous events go only where Asynchronous Event Configuration
//     lets them (notices and SMART warnings are off after a reset), and
//     an event masks its type until the host reads the log page it names
//     with Retain Asynchronous Event clear.
//   - Log page offsets need LPA bit 2 (Config.NoLogOffsets clears it).
//   - Every host mistake is recorded (HostErrors): a doorbell for a queue
//     that does not exist (the fake keeps a poison value in those
//     registers and notices when it changes), a doorbell value outside its
//     queue, a tail past the head or a head past the tail, CID 0xFFFF or
//     a CID already outstanding, log offsets without LPA, CC.EN set before
//     RDY cleared, queue memory unmapped while the controller can reach it
//     (through Mapper). Doorbell mistakes also post an asynchronous error
//     event, as a controller does. Tests assert that none happened
//     (internal/testrig.CheckHost).
//
// Faults, armed from any goroutine while I/O runs: InjectStatus,
// DropCompletion, Lose, BogusCID, DuplicateCID, BadSQHead, FatalStatus,
// FatalAtEnable, Hang, Wedge, Remove and Stall (and Pause, which stops the
// device goroutine until resumed); namespaces come and go with
// AttachNamespace and DetachNamespace. Stats counts commands per opcode,
// resets and every fault delivered; Count follows the executions of
// chosen commands (a command run twice is a host bug a reset can cause).
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
