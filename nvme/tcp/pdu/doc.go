// Package pdu is the NVMe/TCP wire protocol: the PDUs of the NVM Express
// TCP Transport Specification 1.0a (cited "NVMe/TCP 1.0a, 3.6.2.x"), a
// Reader that frames and checks them as bytes arrive from a connection,
// and a Writer that builds them into the caller's buffers. The host
// transport and the target share it; neither does any I/O through it.
//
// # PDUs
//
// Every PDU starts with an 8-byte common header (type, flags, HLEN, PDO,
// PLEN), then a header specific to its type (HLEN bytes in all), an
// optional header digest, padding up to PDO, the data, and an optional data
// digest:
//
//	0        8                 HLEN   +4      PDO              PLEN-4  PLEN
//	+--------+-----------------+------+-------+----------------+------+
//	| CH     | PDU specific    | HDGST| PAD   | DATA           | DDGST|
//	+--------+-----------------+------+-------+----------------+------+
//
// Digests are CRC32C (Digest), present when the ICReq/ICResp exchange
// enabled them and the flags say so; PAD aligns DATA to (PDA+1)*4 bytes as
// the receiver asked (HPDA in ICReq, CPDA in ICResp).
//
//	type         dir   HLEN  carries
//	ICReq        H->C   128  PFV, HPDA, digests asked for, MAXR2T
//	ICResp       C->H   128  PFV, CPDA, digests enabled, MAXH2CDATA
//	H2CTermReq   H->C    24  FES, FEI, the header in error (<= 128 bytes)
//	C2HTermReq   C->H    24  same
//	CapsuleCmd   H->C    72  the 64-byte SQE, in-capsule data
//	CapsuleResp  C->H    24  the 16-byte CQE
//	H2CData      H->C    24  CCCID, TTAG, DATAO, DATAL, LAST_PDU; write data
//	C2HData      C->H    24  CCCID, DATAO, DATAL, LAST_PDU, SUCCESS; read data
//	R2T          C->H    24  CCCID, TTAG, R2TO, R2TL: "send me this range"
//
// # One connection per queue
//
// The host opens one TCP connection per queue (admin, then each I/O
// queue). The first PDUs set the connection up; then the Fabrics Connect
// command (package nvme/fabrics) binds it to a controller and queue:
//
//	host                                         controller
//	 |-- ICReq (HPDA, HDGST/DDGST asked, MAXR2T) -->|
//	 |<-- ICResp (CPDA, digests on, MAXH2CDATA) ----|  AcceptICReq
//	 |  AcceptICResp; both sides SetParams           |
//	 |-- CapsuleCmd Connect + 1024 B data ---------->|
//	 |<-- CapsuleResp (CNTLID) ----------------------|
//
// # A read (NVMe/TCP 1.0a, "Data Transfer"; 3.6.2.9)
//
// The command's SGL is a Transport Data Block; the controller pushes the
// data in C2HData PDUs, in order, and completes the command either with a
// CapsuleResp or, if nothing went wrong, by setting SUCCESS on the last
// C2HData: the host then completes it with a success status of its own (or
// Transient Transport Error if that PDU's data digest failed). SUCCESS
// saves a PDU but loses the SQHD of the response, so a controller uses it
// only on queues whose Connect disabled SQ flow control
// (fabrics.CAttrDisableSQFlow); Linux's nvmet does exactly that:
//
//	host                                         controller
//	 |-- CapsuleCmd Read CID 7, SGL 5Ah len 128K ->|
//	 |<-- C2HData CCCID 7 DATAO 0     DATAL 64K ---|
//	 |<-- C2HData CCCID 7 DATAO 64K   DATAL 64K ---|  LAST_PDU
//	 |<-- CapsuleResp CID 7 ------------------------|  (or SUCCESS above)
//
// # A write with in-capsule data (3.6.2.6)
//
// Data up to the controller's in-capsule limit (IOCCSZ) travels in the
// command capsule itself; the SGL is a Data Block with sub type Offset:
//
//	host                                         controller
//	 |-- CapsuleCmd Write CID 8, SGL 01h, + 4K ---->|
//	 |<-- CapsuleResp CID 8 ------------------------|
//
// # A write through R2T (3.6.2.10, 3.6.2.8)
//
// Larger writes wait for the controller to ask: each R2T names a range and
// a transfer tag; the host answers with H2CData PDUs of at most MAXH2CDATA
// bytes each, LAST_PDU on the one that ends the range. At most MAXR2T+1
// R2Ts of a command are outstanding at once:
//
//	host                                         controller
//	 |-- CapsuleCmd Write CID 9, SGL 5Ah 256K ----->|
//	 |<-- R2T CCCID 9 TTAG 3 R2TO 0   R2TL 128K ----|
//	 |-- H2CData CCCID 9 TTAG 3 DATAO 0    64K ---->|
//	 |-- H2CData CCCID 9 TTAG 3 DATAO 64K  64K ---->|  LAST_PDU
//	 |<-- R2T CCCID 9 TTAG 4 R2TO 128K R2TL 128K ---|
//	 |-- H2CData ... (two more) ------------------->|
//	 |<-- CapsuleResp CID 9 ------------------------|
//
// # Errors
//
// Anything wrong in what the peer sent ends the connection: the receiver
// sends a TermReq naming the fault (FES) and where it is (FEI), then
// closes; a malformed TermReq is answered by closing. The Reader checks
// everything it can see in one PDU (type and direction, order of the IC
// exchange, flags and digests against what was negotiated, HLEN, PDO
// alignment and bounds, PLEN against header, digests and data, data
// lengths against MAXH2CDATA and the in-capsule limit, PFV, PDA,
// MAXH2CDATA), CheckData and CheckR2T what needs the command (offsets in
// order and in range, transfer tags, the R2T limit). Each error is an
// *Error with its FES, FEI and the header for the TermReq
// (AppendTermReqFor), matching one sentinel (ErrInvalidHeaderField, ...).
// A data digest mismatch is not fatal: it fails the command (Transient
// Transport Error) and the stream stays in step.
//
// # Copies and allocations
//
// The Reader owns one buffer. The owner reads the socket into ReadBuffer;
// Next parses headers in place and returns a *PDU that lives in the
// Reader. For a data PDU, Next first returns the header (DataPending); the
// owner looks the command up by CCCID and calls SetDest with the part of
// the command's buffer at DATAO, and from then on ReadBuffer is that
// buffer: the kernel copies the data straight to where it belongs. Only
// bytes that arrived with the header pass through the Reader's buffer. The
// Writer appends headers to a small buffer and leaves the data where it
// is, for writev. Neither allocates per PDU.
//
// A Reader or Writer belongs to the goroutine that owns the connection (a
// poller). The package-level functions may be called from any goroutine.
package pdu
