// Package target is the controller side of NVMe/TCP (NVMe TCP Transport
// Specification 1.0a, fabrics parts of NVMe Base 2.0): it exports
// namespaces that gonvme drives (through ddi and the pollers) to any
// NVMe/TCP host, such as Linux's nvme-tcp initiator (`nvme connect -t
// tcp`) or gonvme's own host transport.
//
// # Shape
//
//	host ──TCP──► conn (one per queue) ──► controller (one per association)
//	               │ reader goroutine:          CC/CSTS, KATO timer, AERs,
//	               │  ICReq/ICResp, Connect,    features, CNTLID
//	               │  admin commands,
//	               │  I/O: slot, Strategy ──► Backing namespace (ddi) ──► poller
//	               │                                 │ Iodone (poller goroutine)
//	               └ sender goroutine ◄── done chan ◄┘  C2HData + CapsuleResp
//
// A Target holds subsystems (an NQN and a Backing each) and answers the
// discovery NQN on every connection it serves. The admin Connect makes a
// dynamic controller (CNTLIDs from 1, unique while live); I/O Connects
// name it by CNTLID and must come from the same host NQN and host ID.
// Hosts not in Config.AllowHosts (when set) are refused with Connect
// Invalid Host. Closing the admin connection, or a keep-alive timeout
// (KATO from Connect or Set Features, plus 5 s of grace), ends the
// association and closes its I/O connections.
//
// # Data path and copies
//
// Each I/O queue allocates, at Connect, one DMA buffer of queue depth ×
// MDTS bytes, cut into slots, one per outstanding command. Counting the
// copies of each data byte between the socket and that DMA memory:
//
//   - Write through R2T: H2CData payload is read by recv(2) straight into
//     the slot (pdu.Reader.SetDest): 0 copies in user space (the kernel's
//     one copy from the socket buffer is the read itself).
//   - Write with in-capsule data: the same, into the slot, except the
//     bytes that arrived in the same recv as the capsule header, which
//     the Reader copies once from its buffer (at most one buffer's worth).
//     If no slot is free (a host overrunning its queue), the data is staged
//     and copied once.
//   - Read: C2HData is sent with one writev of header, slot and digest:
//     0 copies in user space.
//   - Digests are computed over the slot in place (a read of each byte,
//     not a copy).
//
// Admin data (Identify, log pages) is small and built in the heap.
//
// # Goroutines
//
// Per connection: a reader goroutine, and for an I/O queue a sender
// goroutine; completions come from the pollers through Iodone, which only
// hands the slot to the sender (never blocks a poller on a socket). The
// exported methods of Target may be called from any goroutine.
//
// # Refusals
//
// Malformed PDUs, digests that do not match a header, data beyond a
// command, H2CData nobody asked for: a C2HTermReq and the connection
// closes; other connections carry on. A bad data digest fails only its
// command (Transient Transport Error). Unknown opcodes complete with
// Invalid Opcode, LBAs past the end with LBA Out of Range, transfers
// beyond MDTS with Invalid Field, a Connect to an unknown NQN or CNTLID
// with Connect Invalid Parameters naming the field.
package target
