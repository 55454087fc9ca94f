package spec

import (
	"structs"
	"unsafe"
)

// Command is a submission queue entry. NVMe Base 2.0, 4.2 "Submission Queue
// Entry" (Common Command Format), and 4.1 "Data Layout".
//
// The queue code casts SQ slots in DMA memory to *Command, so the layout is
// fixed: 64 bytes, little-endian fields (the driver runs on little-endian
// hosts only), offsets as commented.
type Command struct {
	_      structs.HostLayout
	Opcode uint8  // 0x00 CDW0 bits 7:0, OPC
	Flags  uint8  // 0x01 CDW0 bits 15:8: FUSE (1:0), PSDT (7:6)
	CID    uint16 // 0x02 CDW0 bits 31:16, command identifier
	NSID   uint32 // 0x04 CDW1, namespace identifier
	CDW2   uint32 // 0x08
	CDW3   uint32 // 0x0c
	MPTR   uint64 // 0x10 CDW4-5, metadata pointer (or metadata SGL segment)
	PRP1   uint64 // 0x18 CDW6-7, PRP entry 1, or bytes 0-7 of SGL1
	PRP2   uint64 // 0x20 CDW8-9, PRP entry 2, or bytes 8-15 of SGL1
	CDW10  uint32 // 0x28
	CDW11  uint32 // 0x2c
	CDW12  uint32 // 0x30
	CDW13  uint32 // 0x34
	CDW14  uint32 // 0x38
	CDW15  uint32 // 0x3c
}

// CommandSize is the size of a submission queue entry in bytes.
const CommandSize = 64

var (
	_ [unsafe.Sizeof(Command{}) - CommandSize]struct{}
	_ [CommandSize - unsafe.Sizeof(Command{})]struct{}
	_ [unsafe.Offsetof(Command{}.MPTR) - 0x10]struct{}
	_ [0x10 - unsafe.Offsetof(Command{}.MPTR)]struct{}
	_ [unsafe.Offsetof(Command{}.CDW10) - 0x28]struct{}
	_ [0x28 - unsafe.Offsetof(Command{}.CDW10)]struct{}
)

// Command.Flags bits (CDW0 bits 15:8). NVMe Base 2.0.
const (
	FlagFuseFirst  = 1 << 0 // FUSE 01b: first command of a fused operation
	FlagFuseSecond = 1 << 1 // FUSE 10b: second command of a fused operation
	FlagFuseMask   = 0x3

	// PSDT, PRP or SGL for Data Transfer, bits 7:6 of Flags.
	FlagPSDTPRP     = 0      // PRPs for data
	FlagPSDTSGL     = 1 << 6 // SGLs for data; MPTR is the address of a contiguous metadata buffer
	FlagPSDTSGLMeta = 2 << 6 // SGLs for data and metadata; MPTR is the address of an SGL segment
	FlagPSDTMask    = 3 << 6
)

// SGL1 returns the data pointer of c as an SGL descriptor (PRP1 and PRP2
// together, when Flags selects SGLs).
func (c *Command) SGL1() SGLDescriptor {
	return SGLDescriptor{
		Addr:   c.PRP1,
		Length: uint32(c.PRP2),
		Type:   uint8(c.PRP2 >> 56),
		_1:     [3]byte{uint8(c.PRP2 >> 32), uint8(c.PRP2 >> 40), uint8(c.PRP2 >> 48)},
	}
}

// SetSGL1 stores d as the data pointer of c. It does not change Flags.
func (c *Command) SetSGL1(d SGLDescriptor) {
	c.PRP1 = d.Addr
	c.PRP2 = uint64(d.Length) | uint64(d._1[0])<<32 | uint64(d._1[1])<<40 | uint64(d._1[2])<<48 | uint64(d.Type)<<56
}

// Completion is a completion queue entry. NVMe Base 2.0, 4.6 "Completion
// Queue Entry". 16 bytes, cast from CQ slots in DMA memory.
//
// The device writes it; the poller must read DW3 (CID, Status) with one
// 32-bit atomic load before trusting the phase tag, and bound-check CID.
type Completion struct {
	_      structs.HostLayout
	DW0    uint32 // 0x00 command specific
	DW1    uint32 // 0x04 command specific
	SQHead uint16 // 0x08 DW2 bits 15:0, SQ head pointer
	SQID   uint16 // 0x0a DW2 bits 31:16, SQ identifier
	CID    uint16 // 0x0c DW3 bits 15:0, command identifier
	Status uint16 // 0x0e DW3 bits 31:16: phase tag (bit 0), status field (15:1)
}

// CompletionSize is the size of a completion queue entry in bytes.
const CompletionSize = 16

var (
	_ [unsafe.Sizeof(Completion{}) - CompletionSize]struct{}
	_ [CompletionSize - unsafe.Sizeof(Completion{})]struct{}
	_ [unsafe.Offsetof(Completion{}.CID) - 0x0c]struct{}
	_ [0x0c - unsafe.Offsetof(Completion{}.CID)]struct{}
)

// Phase returns the phase tag, bit 0 of the Status half-word (DW3 bit 16).
func (c *Completion) Phase() bool { return c.Status&1 != 0 }

// StatusField returns the status field of c without the phase tag.
func (c *Completion) StatusField() Status { return StatusFromCQE(c.Status) }

// SplitDW3 splits completion dword 3, loaded as one 32-bit word, into the
// command identifier, the phase tag and the status field.
func SplitDW3(dw3 uint32) (cid uint16, phase bool, st Status) {
	return uint16(dw3), dw3&(1<<16) != 0, Status(dw3 >> 17)
}

// SGLDescriptor is a Scatter Gather List descriptor. NVMe Base 2.0, 4.1.2.1
// "SGL Descriptor". 16 bytes.
//
// Byte 15 (Type) holds the descriptor type in bits 7:4 and the sub type in
// bits 3:0: use SGLTypeDataBlock<<4 etc., or MakeSGLType.
type SGLDescriptor struct {
	_      structs.HostLayout
	Addr   uint64  // 0x00 address
	Length uint32  // 0x08 length in bytes
	_1     [3]byte // 0x0c reserved (bytes 12-14)
	Type   uint8   // 0x0f SGL identifier: type 7:4, sub type 3:0
}

var (
	_ [unsafe.Sizeof(SGLDescriptor{}) - 16]struct{}
	_ [16 - unsafe.Sizeof(SGLDescriptor{})]struct{}
)

// SGL descriptor types (high nibble of SGLDescriptor.Type). NVMe Base 2.0.
const (
	SGLTypeDataBlock          = 0x0
	SGLTypeBitBucket          = 0x1
	SGLTypeSegment            = 0x2
	SGLTypeLastSegment        = 0x3
	SGLTypeKeyedDataBlock     = 0x4
	SGLTypeTransportDataBlock = 0x5
	SGLTypeVendor             = 0xf

	// SGL descriptor sub types (low nibble).
	SGLSubtypeAddress = 0x0
	SGLSubtypeOffset  = 0x1
)

// MakeSGLType builds the SGL identifier byte from a type and sub type.
func MakeSGLType(typ, subtype uint8) uint8 { return typ<<4 | subtype&0xf }

// DescType returns the descriptor type (bits 7:4 of byte 15).
func (d SGLDescriptor) DescType() uint8 { return d.Type >> 4 }

// Subtype returns the descriptor sub type (bits 3:0 of byte 15).
func (d SGLDescriptor) Subtype() uint8 { return d.Type & 0xf }

// DSMRange is one range of a Dataset Management command. NVM Command Set
// 1.0, 3.2.3 "Dataset Management command". 16 bytes.
type DSMRange struct {
	_          structs.HostLayout
	Attributes uint32 // 0x00 context attributes
	NLB        uint32 // 0x04 length in logical blocks (1's based)
	SLBA       uint64 // 0x08 starting LBA
}

var (
	_ [unsafe.Sizeof(DSMRange{}) - 16]struct{}
	_ [16 - unsafe.Sizeof(DSMRange{})]struct{}
)

// DSMMaxRanges is the maximum number of ranges in one Dataset Management
// command (CDW10.NR is 0's based, 8 bits).
const DSMMaxRanges = 256

// PRPEntriesPerPage returns how many 8-byte PRP entries fit in one memory
// page of pageSize bytes.
func PRPEntriesPerPage(pageSize int) int { return pageSize / 8 }
