// Package fabrics holds the NVMe over Fabrics definitions that every fabrics
// transport shares: the Fabrics command set (Connect, Property Get/Set,
// Disconnect), the 1024-byte Connect data, the fabrics status codes, the
// Discovery Log Page, NVMe Qualified Names, and the SGL descriptors a
// fabrics host puts in its commands. It is to fabrics what nvme/spec is to
// the base protocol, and cites NVMe Base 2.0 as "Base 2.0, 6.3 Connect".
//
// # Commands in capsules
//
// A fabrics controller has no registers and no queues in host memory. The
// host sends each 64-byte submission queue entry inside a command capsule,
// and the controller answers with a response capsule holding the 16-byte
// completion queue entry; how a capsule travels (TCP PDUs, RDMA sends) is the
// transport's business (package nvme/tcp/pdu for NVMe/TCP). What the base
// protocol does through registers, fabrics does with commands of opcode 7Fh,
// told apart by FCTYPE in byte 4 (Base 2.0, 6 "Fabrics Command Set"):
//
//	PCIe                              fabrics
//	----                              -------
//	queues created by Create I/O SQ   Connect (FCTYPE 01h) on a new
//	  and CQ, doorbells in BAR0         connection, one per queue, QID 0
//	                                    first: it creates the controller
//	MMIO load of CAP, VS, CSTS        Property Get (FCTYPE 04h)
//	MMIO store of CC, NSSR            Property Set (FCTYPE 00h)
//	Delete I/O SQ                     Disconnect (FCTYPE 08h), or close
//
// Connect carries a 1024-byte data buffer (ConnectData: host identifier,
// controller ID, subsystem and host NQN). Connecting the admin queue with
// CNTLID FFFFh asks the subsystem for a new dynamic controller; its ID comes
// back in the completion (ConnectResponse) and every I/O queue's Connect
// names it:
//
//	host                                   controller (subsystem SUBNQN)
//	  | Connect QID 0, SQSIZE, KATO          |
//	  |   data: HOSTID, CNTLID FFFFh, NQNs   |
//	  |------------------------------------->|
//	  |   CQE DW0: CNTLID 1                  |  a new controller
//	  |<-------------------------------------|
//	  | Property Get CAP, Set CC.EN=1,       |
//	  | Get CSTS until RDY, Identify, ...    |
//	  | Connect QID 1..n, CNTLID 1           |  each on its own connection
//	  |------------------------------------->|
//
// A discovery controller (subsystem NQN DiscoveryNQN, TCP port 8009) serves
// one log page, the Discovery Log Page (log 70h): a header and one 1024-byte
// entry per subsystem port the host may connect to (ParseDiscoveryLog).
//
// # Wire types
//
// The 64-byte commands (ConnectCommand, PropertyGetCommand, ...) and the
// 1024-byte structures (ConnectData, DiscoveryLogEntry) are declared once
// with structs.HostLayout and their sizes asserted at compile time, as in
// nvme/spec. Commands convert to and from spec.Command (SQE and the
// XxxFromSQE functions), so a transport that moves spec.Command moves them;
// the byte structures are encoded and decoded with encoding/binary
// (MarshalBinary, ParseXxx). Data from the network is not trusted: parsers
// bound every length and count, return errors wrapping spec.ErrShort or
// spec.ErrMalformed, and never panic.
//
// Imports: nvme/spec and the standard library. Everything is a value or a
// pure function; any goroutine may call anything.
package fabrics
