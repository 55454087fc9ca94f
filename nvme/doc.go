// Package nvme is the NVMe protocol: controller bring-up, the admin and
// I/O queue pairs, the NVM command set, PRP and SGL data pointers, and
// status codes.
//
// It talks to hardware only through a Bus (the register window and a
// function reset) and a *dma.Allocator (memory the device can reach), so
// the same code runs over VFIO (package nvme/pcie) and over the in-process
// controller of package nvme/nvmetest; or, on a fabric, through a Fabric
// (OpenFabric: registers become Property Get/Set commands, queues are
// connections, a reset is a reconnect; package nvme/tcp). transport.go
// draws the seam: the PCIe ring code is in pcieq.go, the fabric side in
// fabric.go, and the rest (command IDs, wait lists, deadlines, aborts,
// resets, resubmission) is shared.
//
//	Controller ──admin queue (qid 0, serialized, synchronous)
//	    │        watcher goroutine: aborts, resets, removal, fatal status
//	    │        event goroutine: asynchronous events, namespace rescans
//	    ├── QueuePair 1 ── owned by one goroutine (a poller)
//	    ├── QueuePair 2 ── owned by another
//	    └── Namespace n ── immutable geometry + request builders
//
// One I/O: a Namespace builder (Read, Write, ...) validates and fills a
// caller-owned Request; QueuePair.Submit takes a command ID (a slot and a
// generation, so a stale or duplicate completion never matches a newer
// command), writes the 64-byte entry and its PRP list into DMA memory, and
// leaves the doorbell to the next Ring or Poll; Poll reaps completions by
// phase tag, checks each command ID, rings the CQ head doorbell once per
// batch and calls Request.Done. When every command ID is taken, requests
// wait in FIFO order on the queue pair and are issued as IDs free up.
//
// Shadow doorbells (dbbuf.go): when the controller offers Doorbell Buffer
// Config (OACS bit 8), as hypervisors' emulated controllers do, the I/O
// queue pairs store their tails and heads in a shadow doorbell buffer in
// DMA memory and write the doorbell register only when the controller's
// EventIdx asks for it, saving most traps into the hypervisor.
// Options.NoShadowDoorbells turns them off; QueueStats counts the register
// writes and the writes saved.
//
// Deadlines and recovery: a command late by Options.CommandTimeout is
// aborted; one still late Options.AbortTimeout later resets the
// controller, as does an Abort that got no answer within AbortTimeout.
// The watcher sends aborts asynchronously, at most ACL+1 outstanding (the
// rest wait in a queue a pending reset empties), and never waits for an
// admin command, so its CSTS checks (removal, fatal status) run every
// WatchInterval whatever the controller does. A reset request is sticky:
// it stands until a reset completes. A reset disables the controller,
// reaps what it completed, and brings the admin queue back; each queue
// pair, the next time its owner polls, reaps its own completions, then
// recreates its queues and resubmits only what had no completion, keeping
// each command's original deadline; the commands that were late fail with
// ErrTimeout. So on a controller that stops completing anything, every
// outstanding command is resolved within CommandTimeout + AbortTimeout +
// AdminTimeout + the reset's own time (AdminTimeout covers a queue
// re-creation that hangs); with the defaults, 30 + 5 + 30 s plus the reset
// (two waits bounded by CAP.TO or CRTO). A controller whose registers
// read all ones is removed: every queue pair fails its requests with
// ErrRemoved.
//
// Events: the driver keeps Asynchronous Event Requests outstanding and
// enables, with Asynchronous Event Configuration, the SMART warnings and
// the notices it handles. For each event, its event goroutine reads the
// log page the event names with Retain Asynchronous Event clear (the
// controller masks further events of that type until then), rescans the
// namespaces after a Namespace Attribute Changed notice (an attached
// namespace appears; a detached one's Namespace fails its builders with
// ErrNoNamespace, and the device fails its commands in flight), calls
// Options.OnEvent and arms the request again.
//
// Interrupts (irq.go): a Bus that is also an InterruptBus delivers the
// controller's MSI-X vectors as eventfds. NewInterruptQueuePair creates
// queue i's completion queue with interrupts on vector i, whose eventfd
// (QueuePair.InterruptFD) its owner may sleep on; Options.Interrupts
// enables the vectors before the admin queue comes up and lets vector 0
// wake the watcher, so events are reaped when they come (the watcher's
// ticker stays for CSTS and deadlines); Options.InterruptCoalescing sets
// Feature 08h at bring-up and after each reset.
//
// Goroutines: Controller methods may be called from any goroutine;
// QueuePair methods only by its owner; Namespace methods from any
// goroutine on Requests the caller owns. Nothing on the I/O path takes a
// lock or allocates.
//
// Imports: dma, internal/mmio, nvme/spec, nvme/fabrics (the Property Get
// and Set commands: wire definitions, no transport) and the standard
// library. Never vfio, never a transport.
package nvme
