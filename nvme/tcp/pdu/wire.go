package pdu

import (
	"fmt"
	"structs"
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Type is the PDU-Type of the common header. NVMe/TCP 1.0a, 3.6.2.1,
// Figure "PDU Type". Bit 0 is the direction: even types go from host to
// controller, odd ones from controller to host.
type Type uint8

// PDU types.
const (
	TypeICReq       Type = 0x00 // Initialize Connection Request (3.6.2.2)
	TypeICResp      Type = 0x01 // Initialize Connection Response (3.6.2.3)
	TypeH2CTermReq  Type = 0x02 // Host to Controller Terminate Connection Request (3.6.2.4)
	TypeC2HTermReq  Type = 0x03 // Controller to Host Terminate Connection Request (3.6.2.5)
	TypeCapsuleCmd  Type = 0x04 // Command Capsule (3.6.2.6)
	TypeCapsuleResp Type = 0x05 // Response Capsule (3.6.2.7)
	TypeH2CData     Type = 0x06 // Host to Controller Data (3.6.2.8)
	TypeC2HData     Type = 0x07 // Controller to Host Data (3.6.2.9)
	TypeR2T         Type = 0x09 // Ready to Transfer (3.6.2.10)
)

var typeNames = [...]string{
	TypeICReq: "ICReq", TypeICResp: "ICResp", TypeH2CTermReq: "H2CTermReq", TypeC2HTermReq: "C2HTermReq",
	TypeCapsuleCmd: "CapsuleCmd", TypeCapsuleResp: "CapsuleResp", TypeH2CData: "H2CData", TypeC2HData: "C2HData",
	8: "", TypeR2T: "R2T",
}

// String returns the spec's short name of t, e.g. "CapsuleCmd".
func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("PDU type %#02x", uint8(t))
}

// Flags is the FLAGS byte of the common header. NVMe/TCP 1.0a, 3.6.2.1.
// The digest flags say which digests this PDU carries; LAST_PDU and
// SUCCESS belong to the data PDUs.
type Flags uint8

// Common header flags.
const (
	FlagHDGST   Flags = 1 << 0 // HDGSTF: a header digest follows the header
	FlagDDGST   Flags = 1 << 1 // DDGSTF: a data digest follows the data
	FlagLastPDU Flags = 1 << 2 // LAST_PDU: the last H2CData of an R2T, or the last C2HData of a command
	FlagSuccess Flags = 1 << 3 // SUCCESS (C2HData): the command succeeded, no CapsuleResp follows
)

// Digest types in ICReq/ICResp DGST. NVMe/TCP 1.0a, 3.6.2.2.
const (
	DigestHeader = 1 << 0 // HDGST_ENABLE
	DigestData   = 1 << 1 // DDGST_ENABLE
)

// Sizes and limits. NVMe/TCP 1.0a, 3.6.2.
const (
	CommonHeaderLen  = 8   // CH: type, flags, HLEN, PDO, PLEN
	ICReqLen         = 128 // HLEN and PLEN of ICReq and ICResp
	TermReqHeaderLen = 24  // HLEN of H2CTermReq and C2HTermReq
	CapsuleCmdLen    = 72  // HLEN of CapsuleCmd: CH + SQE
	CapsuleRespLen   = 24  // HLEN of CapsuleResp: CH + CQE
	DataHeaderLen    = 24  // HLEN of H2CData, C2HData, R2T
	DigestLen        = 4   // a header or data digest (CRC32C)

	// TermReqMaxLen is the largest PLEN of a TermReq: the header and up to
	// 128 bytes of error data (the header of the PDU in error).
	TermReqMaxLen = 152
	// TermReqMaxErrorData is the most error data a TermReq carries.
	TermReqMaxErrorData = TermReqMaxLen - TermReqHeaderLen

	// MaxPDA is the largest HPDA or CPDA: alignment (PDA+1)*4 = 128 bytes.
	MaxPDA = 31
	// MinMaxH2CData is the smallest MAXH2CDATA a controller may announce.
	MinMaxH2CData = 4096
	// MaxHeadLen is the most bytes before a PDU's data: HLEN, header
	// digest and padding (a CapsuleCmd at PDA 31 has its data at 128), or a
	// whole ICReq. A header buffer of this capacity never grows.
	MaxHeadLen = 128

	// PFV10 is the PDU Format Version of NVMe/TCP 1.0.
	PFV10 = 0
)

// hlenOf returns the HLEN every PDU of type t must have, 0 for an unknown
// type.
func hlenOf(t Type) int {
	switch t {
	case TypeICReq, TypeICResp:
		return ICReqLen
	case TypeH2CTermReq, TypeC2HTermReq:
		return TermReqHeaderLen
	case TypeCapsuleCmd:
		return CapsuleCmdLen
	case TypeCapsuleResp:
		return CapsuleRespLen
	case TypeH2CData, TypeC2HData, TypeR2T:
		return DataHeaderLen
	}
	return 0
}

// The wire layouts. The reader and writer encode and decode them with
// encoding/binary's byte order functions at the offsets declared here (the
// tests check the two agree); nothing casts network bytes to these types.

// CommonHeader is the common header every PDU starts with. NVMe/TCP 1.0a,
// 3.6.2.1.
type CommonHeader struct {
	_     structs.HostLayout
	Type  Type   // 0x00 PDU-Type
	Flags Flags  // 0x01 FLAGS
	HLen  uint8  // 0x02 header length: CH and PDU specific header, without digest
	PDO   uint8  // 0x03 PDU data offset from the start of the PDU; 0 without data
	PLen  uint32 // 0x04 PDU length: header, digests, padding and data
}

// ICReqPDU is the Initialize Connection Request. NVMe/TCP 1.0a, 3.6.2.2.
type ICReqPDU struct {
	_      structs.HostLayout
	CH     CommonHeader // 0x00
	PFV    uint16       // 0x08 PDU format version, 0
	HPDA   uint8        // 0x0a host PDU data alignment: C2H data at multiples of (HPDA+1)*4
	DGST   uint8        // 0x0b digests the host asks for (DigestHeader, DigestData)
	MaxR2T uint32       // 0x0c outstanding R2Ts per command the host takes, 0's based
	_      [112]byte    // 0x10 reserved
}

// ICRespPDU is the Initialize Connection Response. NVMe/TCP 1.0a, 3.6.2.3.
type ICRespPDU struct {
	_          structs.HostLayout
	CH         CommonHeader // 0x00
	PFV        uint16       // 0x08 PDU format version, 0
	CPDA       uint8        // 0x0a controller PDU data alignment for H2C data
	DGST       uint8        // 0x0b digests enabled on the connection
	MaxH2CData uint32       // 0x0c most data bytes per H2CData PDU; multiple of 4, at least 4096
	_          [112]byte    // 0x10 reserved
}

// TermReqPDU is the header of H2CTermReq and C2HTermReq. NVMe/TCP 1.0a,
// 3.6.2.4 and 3.6.2.5. Up to 128 bytes of error data follow.
type TermReqPDU struct {
	_    structs.HostLayout
	CH   CommonHeader // 0x00
	FES  uint16       // 0x08 fatal error status
	FEIL uint16       // 0x0a fatal error information, bytes 0-1 (FEI is 4 bytes at 0x0a)
	FEIU uint16       // 0x0c fatal error information, bytes 2-3
	_    [10]byte     // 0x0e reserved
}

// CapsuleCmdPDU is the header of a command capsule. NVMe/TCP 1.0a,
// 3.6.2.6. In-capsule data, if any, starts at PDO.
type CapsuleCmdPDU struct {
	_   structs.HostLayout
	CH  CommonHeader // 0x00
	SQE spec.Command // 0x08
}

// CapsuleRespPDU is a response capsule. NVMe/TCP 1.0a, 3.6.2.7.
type CapsuleRespPDU struct {
	_   structs.HostLayout
	CH  CommonHeader    // 0x00
	CQE spec.Completion // 0x08
}

// DataPDU is the header of H2CData and C2HData. NVMe/TCP 1.0a, 3.6.2.8
// and 3.6.2.9.
type DataPDU struct {
	_     structs.HostLayout
	CH    CommonHeader // 0x00
	CCCID uint16       // 0x08 command capsule CID of the command the data belongs to
	TTag  uint16       // 0x0a transfer tag from the R2T (H2CData); reserved in C2HData
	DataO uint32       // 0x0c offset of the data in the command's buffer
	DataL uint32       // 0x10 data length
	_     [4]byte      // 0x14 reserved
}

// R2TPDU is the Ready to Transfer PDU. NVMe/TCP 1.0a, 3.6.2.10.
type R2TPDU struct {
	_     structs.HostLayout
	CH    CommonHeader // 0x00
	CCCID uint16       // 0x08 the command
	TTag  uint16       // 0x0a transfer tag the H2CData PDUs must carry
	R2TO  uint32       // 0x0c offset of the requested data
	R2TL  uint32       // 0x10 length of the requested data
	_     [4]byte      // 0x14 reserved
}

// Offsets of the fields a receiver checks, reported as FEI of an Invalid
// PDU Header Field error.
const (
	offType   = 0
	offFlags  = 1
	offHLen   = 2
	offPDO    = 3
	offPLen   = 4
	offPFV    = 8
	offPDA    = 10
	offMaxH2C = 12
	offDataO  = 12
	offDataL  = 16
)

var (
	_ [unsafe.Sizeof(CommonHeader{}) - CommonHeaderLen]struct{}
	_ [CommonHeaderLen - unsafe.Sizeof(CommonHeader{})]struct{}
	_ [unsafe.Sizeof(ICReqPDU{}) - ICReqLen]struct{}
	_ [ICReqLen - unsafe.Sizeof(ICReqPDU{})]struct{}
	_ [unsafe.Sizeof(ICRespPDU{}) - ICReqLen]struct{}
	_ [ICReqLen - unsafe.Sizeof(ICRespPDU{})]struct{}
	_ [unsafe.Sizeof(TermReqPDU{}) - TermReqHeaderLen]struct{}
	_ [TermReqHeaderLen - unsafe.Sizeof(TermReqPDU{})]struct{}
	_ [unsafe.Sizeof(CapsuleCmdPDU{}) - CapsuleCmdLen]struct{}
	_ [CapsuleCmdLen - unsafe.Sizeof(CapsuleCmdPDU{})]struct{}
	_ [unsafe.Sizeof(CapsuleRespPDU{}) - CapsuleRespLen]struct{}
	_ [CapsuleRespLen - unsafe.Sizeof(CapsuleRespPDU{})]struct{}
	_ [unsafe.Sizeof(DataPDU{}) - DataHeaderLen]struct{}
	_ [DataHeaderLen - unsafe.Sizeof(DataPDU{})]struct{}
	_ [unsafe.Sizeof(R2TPDU{}) - DataHeaderLen]struct{}
	_ [DataHeaderLen - unsafe.Sizeof(R2TPDU{})]struct{}
	_ [unsafe.Offsetof(DataPDU{}.DataL) - offDataL]struct{}
	_ [offDataL - unsafe.Offsetof(DataPDU{}.DataL)]struct{}
	_ [unsafe.Offsetof(ICRespPDU{}.MaxH2CData) - offMaxH2C]struct{}
	_ [offMaxH2C - unsafe.Offsetof(ICRespPDU{}.MaxH2CData)]struct{}
	_ [unsafe.Offsetof(TermReqPDU{}.FEIL) - 10]struct{}
	_ [10 - unsafe.Offsetof(TermReqPDU{}.FEIL)]struct{}
)
