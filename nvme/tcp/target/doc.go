// Package target is the controller side of NVMe/TCP (NVMe TCP Transport
// Specification 1.0a, fabrics parts of NVMe Base 2.0): it exports
// namespaces of controllers gonvme drives to any NVMe/TCP host, such as
// Linux's nvme-tcp initiator (`nvme connect -t tcp`) or gonvme's own host
// transport.
//
// # Shape
//
//	accept ──► conn goroutine: ICReq/ICResp, Fabrics Connect
//	             │ admin Connect: the goroutine stays and serves the admin
//	             │   queue (blocking reads; Property Get/Set, Identify, logs,
//	             │   features, Keep Alive, AERs) over a controller:
//	             │   CC/CSTS, KATO timer, AEN state, CNTLID
//	             └ I/O Connect: the socket and its queue go to a poll group
//
//	poller i of a poller.Group (Config.Pollers, or the target's own):
//	   ┌──────────────────────────────────────────────────────────────┐
//	   │ its ring: other users' submissions (ddi, metrics, perf)      │
//	   │ poll group i, a poller.Source:                               │
//	   │   each host I/O queue: writev(2) of the answers (sock.go)    │
//	   │   each host I/O queue: read(2) (sock.go, never waits) → PDUs │
//	   │     → ddi Strategy ──► Poller.SubmitLocal ──► its queue pair │
//	   │ each queue pair: doorbell, reap → Iodone → answer queued     │
//	   │ idle: the poller's policy; asleep, the group's epoll set     │
//	   │   (its sockets) is in the poller's sleep set                 │
//	   └──────────────────────────────────────────────────────────────┘
//
// At the hand-off the queue's socket leaves Go's network poller (a
// duplicate of its descriptor, the net.Conn closed: sock.go), so that
// the host's segments wake no runtime thread, and the poller reads and
// writes it with raw system calls that never block, which the runtime
// does not see either.
//
// A poll group is the target's share of one of gonvme's pollers: like an
// SPDK nvmf poll group on its thread, it uses that poller's queue pair on
// every backing controller (Backing.NewQueue, with one ddi device per
// namespace submitting straight to it through Poller.SubmitLocal) and
// owns the sockets of the host I/O queues given to it, round-robin at
// Connect. It is polled as a poller.Source on every pass of the poller,
// before the queue pairs, so a command read in a pass goes out with that
// pass's doorbell. A command goes from the socket to the device and its
// completion back to the socket on that one goroutine: no lock, no
// channel, no goroutine per connection, and no allocation per I/O in
// steady state (TestSteadyStateAllocs). The group reads a socket only
// when it polls it, so a host's commands wait in the socket (and TCP's
// window) while the poller is busy, and a host that sends more commands
// than its queue holds is a fatal error, as in Linux's nvmet. The idle
// policy is the poller's, written once (package poller): with nothing in
// flight and nothing for SpinTime it sleeps, and a socket with something
// to read (or room for a blocked answer) wakes it, since the group's
// epoll set is the source's file descriptor; with requests on the
// backing it spins, then naps. With Config.Pollers the target shares
// `nvmectl serve`'s pollers (and their queue pairs) with the metrics and
// ddi users; without, New starts a poller.Group of Config.PollGroups
// pollers over the backings' controllers and Close stops it.
//
// A Target holds subsystems, each over one backing controller or several
// (Subsystem.Backings: namespace IDs numbered across them, see
// Subsystem), and answers the discovery NQN on every connection it
// serves. The admin Connect makes a dynamic controller (CNTLIDs from 1,
// unique while live); I/O Connects name it by CNTLID and must come from
// the same host NQN and host ID. Hosts not in Config.AllowHosts (when
// set) are refused with Connect Invalid Host. Closing the admin
// connection, or a keep-alive timeout (KATO from Connect or Set Features,
// plus 5 s of grace), ends the association and shuts its I/O
// connections down; commands they had on the backing complete into the
// queue's buffers, which are freed once the last is back.
//
// # Namespace changes
//
// Target.Rescan reads the backings' namespaces again (Target.OnEvent does
// it on package nvme's Namespace Attribute Changed events) and publishes
// the new set to the poll groups (copy on write). Every host controller
// of the subsystem gets the changed NSIDs in its Changed Namespace List
// (log page 04h) and, when it enabled the notice and holds an AER, an
// AER completed with a Namespace Attribute Changed notice; the notice is
// masked until the host reads the log (with RAE clear).
//
// # Data path and copies
//
// Each I/O queue allocates, at Connect, one DMA buffer of queue depth ×
// MDTS bytes (in each distinct allocator of the subsystem's backings),
// cut into slots, one per outstanding command. Counting the copies of
// each data byte between the socket and that DMA memory, in user space
// (the kernel's copy between its socket buffers and the user buffer is
// the read(2) or writev(2) itself):
//
//   - Write through R2T: the H2CData header is parsed first, then
//     read(2) goes straight into the slot's DMA buffer
//     (pdu.Reader.SetDest): 0 copies.
//   - Write with in-capsule data: the same, into the slot, except the
//     bytes that arrived in the same read(2) as the capsule header, which
//     the Reader copies once from its buffer (at most one buffer's worth:
//     in steady state, with several capsules per read, usually all of a
//     small write): 0 or 1 copy.
//   - Read: one writev(2) of the C2HData header, the slot's DMA buffer
//     and the digest (and the CapsuleResp when SUCCESS is off): 0 copies.
//   - Digests are computed over the slot in place (a read of each byte,
//     not a copy).
//
// Admin data (Identify, log pages) is small and built in the heap.
//
// # Goroutines
//
// One per connection until its Connect; then one per admin queue (and a
// timer per controller for KATO); the pollers for every I/O queue.
// The exported methods of Target may be called from any goroutine.
//
// # Refusals
//
// Malformed PDUs, digests that do not match a header, data beyond a
// command, H2CData nobody asked for, more commands than the queue holds:
// a C2HTermReq and the connection closes; other connections carry on. A
// bad data digest fails only its command (Transient Transport Error).
// Unknown opcodes complete with Invalid Opcode, LBAs past the end with
// LBA Out of Range, transfers beyond MDTS with Invalid Field, a CID in use
// with Command ID Conflict, a Connect to an unknown NQN or CNTLID with
// Connect Invalid Parameters naming the field, an I/O Connect from
// another host with Connect Invalid Host.
package target
