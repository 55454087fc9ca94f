// Package tcp is gonvme's NVMe/TCP host: it reaches a controller that a
// target (Linux's nvmet, SPDK, gonvme's own nvme/tcp/target) serves over
// TCP, and gives back the same *nvme.Controller as pcie.Open. Package ddi
// and package poller run over it unchanged.
//
//	tcp.Connect(tcp://HOST:PORT/NQN) ── nvme.OpenFabric(fabric) ── *nvme.Controller
//	                                        │ the state machine, admin command set,
//	                                        │ CIDs, timeouts, aborts, reconnects
//	   connection 0  admin queue ───────────┤ Property Get/Set, Identify, Keep Alive, AER
//	   connection 1  I/O queue 1 ──── QueuePair owned by poller A (read non-blocking)
//	   connection 2  I/O queue 2 ──── QueuePair owned by poller B
//
// # One connection per queue
//
// Each queue is a TCP connection, set up by connectQueue (fabric.go):
// connect, ICReq/ICResp (PFV 0, HPDA 0, the digests the Options ask for,
// MAXR2T 0: one R2T outstanding per command, as Linux asks), then the
// Fabrics Connect command as the connection's first capsule: the admin
// queue's with CNTLID FFFFh and KATO makes a new controller, whose ID the
// I/O queues' Connects name; I/O queues disable SQ flow control (the host
// never has more commands outstanding than the queue holds), so the
// controller may complete reads with the C2HData SUCCESS flag.
//
// # The I/O path (queue.go)
//
// The nvme.QueuePair keeps the command IDs; the queue here keeps, per
// slot, the command's data and where its transfer stands. Nothing on the
// path allocates, nothing blocks, and no goroutine runs per connection:
// the queue pair's owner (a poller) calls Issue, Flush and Reap.
//
//	Issue   CapsuleCmd header into the slot's buffer; writes up to the
//	        in-capsule limit (IOCCSZ) carry their data in the capsule
//	        (SGL Data Block, offset 0), larger ones and reads get a
//	        Transport SGL Data Block descriptor
//	Flush   one writev of the queued headers, data and digests; partial
//	        writes resume at the next Flush
//	Reap    reads the socket (nbsock: one read(2), EAGAIN is "nothing")
//	        through the pdu Reader: C2HData lands straight in the
//	        command's buffer; an R2T queues H2CData PDUs of at most
//	        MAXH2CDATA; a CapsuleResp, or the last C2HData with SUCCESS,
//	        completes the command
//
// # Faults
//
// Anything wrong in what the controller sends (a PDU type or length the
// pdu Reader refuses, a CID that is not outstanding, data past a
// command's length or out of order, an R2T for a read, a response before
// the command's data went out, a header digest) ends the connection:
// an H2CTermReq naming the fault, at a PDU boundary, then close. A data
// digest error fails only its command (Transient Transport Error). A
// C2HTermReq, a closed or reset connection and a Keep Alive unanswered
// within KATO end it too. Package nvme then reconnects the controller
// (a new association, every ReconnectDelay), each queue pair reconnects
// its own queue when its owner next polls, and what had no completion is
// resubmitted; past CtrlLossTimeout the controller is removed and what
// remains fails with nvme.ErrRemoved.
//
// # Discovery
//
// Discover connects to a discovery controller (port 8009 by default),
// enables it, reads the Discovery Log Page (log 70h) in full with log
// page offsets, reads the header again and starts over if the
// generation counter moved, and disconnects.
//
// Data buffers may be any memory: the transport copies nothing to DMA
// memory. Connect still gives the controller an allocator (Memory), for
// callers such as package ddi that allocate their buffers there.
//
// Imports: nvme, nvme/fabrics, nvme/spec, nvme/tcp/pdu, dma,
// internal/nbsock and the standard library.
package tcp
