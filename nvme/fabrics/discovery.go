package fabrics

import (
	"encoding/binary"
	"fmt"
	"strings"
	"structs"
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// LogDiscovery is the Discovery log page identifier (spec.LogDiscovery).
const LogDiscovery = spec.LogDiscovery

// DiscoveryLogHeader is the first 1024 bytes of the Discovery Log Page
// (log 70h). Base 2.0, 5.16.1.23, Figure "Discovery Log Page".
type DiscoveryLogHeader struct {
	_      structs.HostLayout
	GenCtr uint64     // 0x00 generation counter: changes whenever the log changes
	NumRec uint64     // 0x08 number of records (entries) that follow
	RecFmt uint16     // 0x10 record format, 0
	_      [1006]byte // 0x12 reserved
}

// DiscoveryLogEntry is one entry of the Discovery Log Page, 1024 bytes:
// one port through which the host may reach one subsystem. Base 2.0,
// 5.16.1.23, Figure "Discovery Log Page Entry". The string fields are ASCII,
// padded with spaces (TRSVCID, TRADDR) or NULs (SUBNQN); use the accessors.
type DiscoveryLogEntry struct {
	_       structs.HostLayout
	TRType  uint8     // 0x000 transport type (TRType*)
	AdrFam  uint8     // 0x001 address family (AdrFam*)
	SubType uint8     // 0x002 subsystem type (SubType*)
	TReq    uint8     // 0x003 transport requirements (TReq*)
	PortID  uint16    // 0x004 NVM subsystem port ID
	CNTLID  uint16    // 0x006 controller ID: CNTLIDDynamic, CNTLIDStatic or an ID
	ASQSZ   uint16    // 0x008 admin max SQ size: the admin queue needs at least this many entries
	EFlags  uint16    // 0x00a entry flags (EFlag*)
	_       [20]byte  // 0x00c reserved
	TRSvcID [32]byte  // 0x020 transport service identifier: the TCP port, as text
	_       [192]byte // 0x040 reserved
	SubNQN  [256]byte // 0x100 subsystem NQN
	TRAddr  [256]byte // 0x200 transport address: the IP address, as text
	TSAS    [256]byte // 0x300 transport specific address subtype (TCP: byte 0 is SECTYPE)
}

// DiscoveryLogEntrySize is the size of the header and of each entry.
const DiscoveryLogEntrySize = 1024

var (
	_ [unsafe.Sizeof(DiscoveryLogHeader{}) - DiscoveryLogEntrySize]struct{}
	_ [DiscoveryLogEntrySize - unsafe.Sizeof(DiscoveryLogHeader{})]struct{}
	_ [unsafe.Sizeof(DiscoveryLogEntry{}) - DiscoveryLogEntrySize]struct{}
	_ [DiscoveryLogEntrySize - unsafe.Sizeof(DiscoveryLogEntry{})]struct{}
	_ [unsafe.Offsetof(DiscoveryLogEntry{}.TRSvcID) - 0x20]struct{}
	_ [0x20 - unsafe.Offsetof(DiscoveryLogEntry{}.TRSvcID)]struct{}
	_ [unsafe.Offsetof(DiscoveryLogEntry{}.SubNQN) - 0x100]struct{}
	_ [0x100 - unsafe.Offsetof(DiscoveryLogEntry{}.SubNQN)]struct{}
	_ [unsafe.Offsetof(DiscoveryLogEntry{}.TSAS) - 0x300]struct{}
	_ [0x300 - unsafe.Offsetof(DiscoveryLogEntry{}.TSAS)]struct{}
)

// Transport types (TRTYPE). Base 2.0, Figure "Discovery Log Page Entry";
// the values are assigned by the NVMe transport specifications.
const (
	TRTypeRDMA = 1
	TRTypeFC   = 2
	TRTypeTCP  = 3
	TRTypeLoop = 254 // intra-host, not on the wire
)

// Address families (ADRFAM).
const (
	AdrFamPCI  = 0
	AdrFamIPv4 = 1
	AdrFamIPv6 = 2
	AdrFamIB   = 3
	AdrFamFC   = 4
	AdrFamLoop = 254 // intra-host
)

// Subsystem types (SUBTYPE).
const (
	SubTypeDiscoveryReferral = 1 // a referral to another discovery subsystem
	SubTypeNVM               = 2 // an NVM subsystem: I/O controllers
	SubTypeCurrentDiscovery  = 3 // the discovery subsystem the log came from
)

// Transport requirements (TREQ).
const (
	TReqSecureChannelMask  = 0x3    // bits 1:0
	TReqNotSpecified       = 0      // secure channel not specified
	TReqRequired           = 1      // secure channel required
	TReqNotRequired        = 2      // secure channel not required
	TReqDisableSQFlowAllow = 1 << 2 // the port supports SQ flow control disable (CAttrDisableSQFlow)
)

// Entry flags (EFLAGS).
const (
	EFlagDupReturnInfo = 1 << 0 // duplicate returned information
	EFlagExplicitPCSD  = 1 << 1 // explicit persistent connection support for discovery
	EFlagNoCDCConn     = 1 << 2 // no CDC connectivity
)

// TCP security types, TSAS byte 0 for TRTYPE TCP.
const (
	TCPSecTypeNone  = 0
	TCPSecTypeTLS12 = 1
	TCPSecTypeTLS13 = 2
)

// TRSvcIDString returns TRSVCID without its padding, e.g. "4420".
func (e *DiscoveryLogEntry) TRSvcIDString() string { return asciiField(e.TRSvcID[:]) }

// TRAddrString returns TRADDR without its padding, e.g. "192.0.2.7".
func (e *DiscoveryLogEntry) TRAddrString() string { return asciiField(e.TRAddr[:]) }

// SubNQNString returns SUBNQN without its padding.
func (e *DiscoveryLogEntry) SubNQNString() string { return asciiField(e.SubNQN[:]) }

// SecType returns the TCP security type (TSAS byte 0); meaningful only for
// TRTYPE TCP.
func (e *DiscoveryLogEntry) SecType() uint8 { return e.TSAS[0] }

// asciiField decodes a string field: up to the first NUL, trailing spaces
// trimmed (targets pad with either).
func asciiField(b []byte) string {
	return strings.TrimRight(cString(b), " ")
}

// DiscoveryLog is a decoded Discovery Log Page.
type DiscoveryLog struct {
	GenCtr  uint64
	NumRec  uint64
	RecFmt  uint16
	Entries []DiscoveryLogEntry
}

// MaxDiscoveryRecords bounds NUMREC: ParseDiscoveryLogHeader refuses a log
// page that claims more entries (4 MiB of log), so that a discovery
// controller cannot make the host allocate without limit.
const MaxDiscoveryRecords = 4096

// ParseDiscoveryLogHeader decodes the header of the Discovery Log Page and
// returns it with the number of bytes the whole page occupies
// (1024 * (1 + NUMREC)), which the host reads next.
func ParseDiscoveryLogHeader(b []byte) (h DiscoveryLogHeader, pageLen int, err error) {
	if len(b) < DiscoveryLogEntrySize {
		return h, 0, fmt.Errorf("discovery log header: %d bytes, need %d: %w", len(b), DiscoveryLogEntrySize, spec.ErrShort)
	}
	le := binary.LittleEndian
	h.GenCtr = le.Uint64(b[0x00:])
	h.NumRec = le.Uint64(b[0x08:])
	h.RecFmt = le.Uint16(b[0x10:])
	if h.NumRec > MaxDiscoveryRecords {
		return h, 0, fmt.Errorf("discovery log: %d records, at most %d: %w", h.NumRec, MaxDiscoveryRecords, spec.ErrMalformed)
	}
	return h, DiscoveryLogEntrySize * (1 + int(h.NumRec)), nil
}

// ParseDiscoveryLog decodes a whole Discovery Log Page: the header and
// NUMREC entries. b must hold them all (see ParseDiscoveryLogHeader);
// bytes past the last entry are ignored. The host should read the header
// again after the entries and start over if GENCTR changed (Base 2.0,
// 5.16.1.23).
func ParseDiscoveryLog(b []byte) (DiscoveryLog, error) {
	h, n, err := ParseDiscoveryLogHeader(b)
	if err != nil {
		return DiscoveryLog{}, err
	}
	if len(b) < n {
		return DiscoveryLog{}, fmt.Errorf("discovery log: %d bytes for %d records, need %d: %w", len(b), h.NumRec, n, spec.ErrShort)
	}
	log := DiscoveryLog{GenCtr: h.GenCtr, NumRec: h.NumRec, RecFmt: h.RecFmt}
	if h.NumRec > 0 {
		log.Entries = make([]DiscoveryLogEntry, h.NumRec)
	}
	for i := range log.Entries {
		off := DiscoveryLogEntrySize * (1 + i)
		parseDiscoveryEntry(&log.Entries[i], b[off:off+DiscoveryLogEntrySize])
	}
	return log, nil
}

func parseDiscoveryEntry(e *DiscoveryLogEntry, b []byte) {
	le := binary.LittleEndian
	e.TRType, e.AdrFam, e.SubType, e.TReq = b[0], b[1], b[2], b[3]
	e.PortID = le.Uint16(b[0x04:])
	e.CNTLID = le.Uint16(b[0x06:])
	e.ASQSZ = le.Uint16(b[0x08:])
	e.EFlags = le.Uint16(b[0x0a:])
	copy(e.TRSvcID[:], b[0x020:])
	copy(e.SubNQN[:], b[0x100:])
	copy(e.TRAddr[:], b[0x200:])
	copy(e.TSAS[:], b[0x300:])
}

// MarshalTo stores the header in b (at least 1024 bytes); it returns the
// number of bytes written, 0 when b is too short.
func (h *DiscoveryLogHeader) MarshalTo(b []byte) int {
	if len(b) < DiscoveryLogEntrySize {
		return 0
	}
	b = b[:DiscoveryLogEntrySize]
	clear(b)
	le := binary.LittleEndian
	le.PutUint64(b[0x00:], h.GenCtr)
	le.PutUint64(b[0x08:], h.NumRec)
	le.PutUint16(b[0x10:], h.RecFmt)
	return DiscoveryLogEntrySize
}

// MarshalTo stores e in b (at least 1024 bytes), as a discovery controller
// serves it; it returns the number of bytes written, 0 when b is too short.
func (e *DiscoveryLogEntry) MarshalTo(b []byte) int {
	if len(b) < DiscoveryLogEntrySize {
		return 0
	}
	b = b[:DiscoveryLogEntrySize]
	clear(b)
	le := binary.LittleEndian
	b[0], b[1], b[2], b[3] = e.TRType, e.AdrFam, e.SubType, e.TReq
	le.PutUint16(b[0x04:], e.PortID)
	le.PutUint16(b[0x06:], e.CNTLID)
	le.PutUint16(b[0x08:], e.ASQSZ)
	le.PutUint16(b[0x0a:], e.EFlags)
	copy(b[0x020:], e.TRSvcID[:])
	copy(b[0x100:], e.SubNQN[:])
	copy(b[0x200:], e.TRAddr[:])
	copy(b[0x300:], e.TSAS[:])
	return DiscoveryLogEntrySize
}

// SetStrings fills the string fields of e the way Linux's nvmet does:
// TRSVCID and TRADDR padded with spaces, SUBNQN with NULs. Longer strings
// are cut to the field.
func (e *DiscoveryLogEntry) SetStrings(trsvcid, traddr, subnqn string) {
	padSpaces(e.TRSvcID[:], trsvcid)
	padSpaces(e.TRAddr[:], traddr)
	clear(e.SubNQN[:])
	copy(e.SubNQN[:len(e.SubNQN)-1], subnqn)
}

func padSpaces(dst []byte, s string) {
	n := copy(dst, s)
	for i := n; i < len(dst); i++ {
		dst[i] = ' '
	}
}

// Names of the discovery log fields as nvme-cli prints them (libnvme's
// nvmf_trtype_str and friends), so that `nvmectl discover` reads like
// `nvme discover`.

// TRTypeName returns "rdma", "fc", "tcp", "loop" or "unrecognized".
func TRTypeName(t uint8) string {
	switch t {
	case TRTypeRDMA:
		return "rdma"
	case TRTypeFC:
		return "fc"
	case TRTypeTCP:
		return "tcp"
	case TRTypeLoop:
		return "loop"
	}
	return "unrecognized"
}

// AdrFamName returns "ipv4", "ipv6", "infiniband", "fibre-channel",
// "pci", "loop" or "unrecognized".
func AdrFamName(a uint8) string {
	switch a {
	case AdrFamPCI:
		return "pci"
	case AdrFamIPv4:
		return "ipv4"
	case AdrFamIPv6:
		return "ipv6"
	case AdrFamIB:
		return "infiniband"
	case AdrFamFC:
		return "fibre-channel"
	case AdrFamLoop:
		return "loop"
	}
	return "unrecognized"
}

// SubTypeName returns "discovery subsystem referral", "nvme subsystem",
// "current discovery subsystem" or "unrecognized".
func SubTypeName(s uint8) string {
	switch s {
	case SubTypeDiscoveryReferral:
		return "discovery subsystem referral"
	case SubTypeNVM:
		return "nvme subsystem"
	case SubTypeCurrentDiscovery:
		return "current discovery subsystem"
	}
	return "unrecognized"
}

// TReqName describes TREQ: "not specified", "required", "not required"
// or "unrecognized", followed by ", sq flow control disable supported"
// when bit 2 is set.
func TReqName(t uint8) string {
	var s string
	switch t & TReqSecureChannelMask {
	case TReqNotSpecified:
		s = "not specified"
	case TReqRequired:
		s = "required"
	case TReqNotRequired:
		s = "not required"
	default:
		s = "unrecognized"
	}
	if t&TReqDisableSQFlowAllow != 0 {
		s += ", sq flow control disable supported"
	}
	return s
}

// SecTypeName returns "none", "tls1.2", "tls1.3" or "unrecognized".
func SecTypeName(s uint8) string {
	switch s {
	case TCPSecTypeNone:
		return "none"
	case TCPSecTypeTLS12:
		return "tls1.2"
	case TCPSecTypeTLS13:
		return "tls1.3"
	}
	return "unrecognized"
}
