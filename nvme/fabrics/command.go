package fabrics

import (
	"errors"
	"fmt"
	"structs"
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Opcode is the opcode of every Fabrics command (Base 2.0, 6.1).
const Opcode = spec.AdminFabrics

// FCType is the Fabrics Command Type, byte 4 of a Fabrics command.
// Base 2.0, 6.1, Figure "Fabrics Command Type".
type FCType uint8

// Fabrics command types.
const (
	FCTypePropertySet   FCType = 0x00 // Base 2.0, 6.6
	FCTypeConnect       FCType = 0x01 // Base 2.0, 6.3
	FCTypePropertyGet   FCType = 0x04 // Base 2.0, 6.5
	FCTypeAuthSend      FCType = 0x05 // Base 2.0, 6.2 Authentication Send (in-band authentication, not implemented)
	FCTypeAuthReceive   FCType = 0x06 // Base 2.0, 6.1 Authentication Receive (not implemented)
	FCTypeDisconnect    FCType = 0x08 // Base 2.0, 6.4 (I/O queues only)
	fcTypeVendorMinimum        = 0xc0
)

// String returns the spec name of t, e.g. "Connect".
func (t FCType) String() string {
	switch t {
	case FCTypePropertySet:
		return "Property Set"
	case FCTypeConnect:
		return "Connect"
	case FCTypePropertyGet:
		return "Property Get"
	case FCTypeAuthSend:
		return "Authentication Send"
	case FCTypeAuthReceive:
		return "Authentication Receive"
	case FCTypeDisconnect:
		return "Disconnect"
	}
	if t >= fcTypeVendorMinimum {
		return fmt.Sprintf("Vendor Specific (fctype 0x%02x)", uint8(t))
	}
	return fmt.Sprintf("Reserved (fctype 0x%02x)", uint8(t))
}

// CommandFCType returns the Fabrics Command Type of sqe and whether sqe is a
// Fabrics command (opcode 7Fh) at all. FCTYPE is byte 4, the low byte of
// what spec.Command calls NSID.
func CommandFCType(sqe *spec.Command) (FCType, bool) {
	return FCType(uint8(sqe.NSID)), spec.Opcode(sqe.Opcode) == Opcode
}

// ConnectCommand is the Connect command. Base 2.0, 6.3, Figure "Connect
// Command". The data pointer (SGL1) describes the 1024-byte ConnectData.
type ConnectCommand struct {
	_      structs.HostLayout
	Opcode uint8              // 0x00 7Fh
	Flags  uint8              // 0x01 PSDT in bits 7:6, as spec.Command.Flags
	CID    uint16             // 0x02 command identifier
	FCType FCType             // 0x04 01h
	_      [19]byte           // 0x05 reserved
	SGL1   spec.SGLDescriptor // 0x18 the Connect data
	RecFmt uint16             // 0x28 record format, 0
	QID    uint16             // 0x2a queue to create: 0 admin, 1.. I/O
	SQSize uint16             // 0x2c submission queue size, 0's based
	CAttr  uint8              // 0x2e connect attributes (CAttr* bits)
	_      uint8              // 0x2f reserved
	KATO   uint32             // 0x30 keep alive timeout in ms (admin queue), 0 disables
	_      [12]byte           // 0x34 reserved
}

var (
	_ [unsafe.Sizeof(ConnectCommand{}) - spec.CommandSize]struct{}
	_ [spec.CommandSize - unsafe.Sizeof(ConnectCommand{})]struct{}
	_ [unsafe.Offsetof(ConnectCommand{}.SGL1) - 0x18]struct{}
	_ [0x18 - unsafe.Offsetof(ConnectCommand{}.SGL1)]struct{}
	_ [unsafe.Offsetof(ConnectCommand{}.QID) - 0x2a]struct{}
	_ [0x2a - unsafe.Offsetof(ConnectCommand{}.QID)]struct{}
	_ [unsafe.Offsetof(ConnectCommand{}.KATO) - 0x30]struct{}
	_ [0x30 - unsafe.Offsetof(ConnectCommand{}.KATO)]struct{}
)

// Connect attributes (ConnectCommand.CAttr). Base 2.0, 6.3.
const (
	CAttrPriorityMask     = 0x3    // bits 1:0: queue priority class (weighted round robin)
	CAttrDisableSQFlow    = 1 << 2 // host asks that SQ flow control be disabled (TREQ bit 2 says the port allows it)
	ConnectRecFmt         = 0      // the only defined RECFMT of Connect and Disconnect
	ConnectDataSize       = 1024   // bytes of ConnectData
	ConnectSQSizeAdminMin = 31     // the admin queue has at least 32 entries (0's based 31)
)

// SQE returns c as a submission queue entry; Opcode and FCType are set
// whatever c holds.
func (c *ConnectCommand) SQE() spec.Command {
	sqe := spec.Command{
		Opcode: uint8(Opcode), Flags: c.Flags, CID: c.CID, NSID: uint32(FCTypeConnect),
		CDW10: uint32(c.RecFmt) | uint32(c.QID)<<16,
		CDW11: uint32(c.SQSize) | uint32(c.CAttr)<<16,
		CDW12: c.KATO,
	}
	sqe.SetSGL1(c.SGL1)
	return sqe
}

// ConnectFromSQE decodes a Connect command. It fails when sqe is not one.
func ConnectFromSQE(sqe *spec.Command) (ConnectCommand, error) {
	if err := checkFabrics(sqe, FCTypeConnect); err != nil {
		return ConnectCommand{}, err
	}
	return ConnectCommand{
		Opcode: sqe.Opcode, Flags: sqe.Flags, CID: sqe.CID, FCType: FCTypeConnect,
		SGL1:   sqe.SGL1(),
		RecFmt: uint16(sqe.CDW10), QID: uint16(sqe.CDW10 >> 16),
		SQSize: uint16(sqe.CDW11), CAttr: uint8(sqe.CDW11 >> 16),
		KATO: sqe.CDW12,
	}, nil
}

// ErrNotFabrics is returned (wrapped) when a command is not the Fabrics
// command a decoder expects.
var ErrNotFabrics = errors.New("not the expected fabrics command")

func checkFabrics(sqe *spec.Command, want FCType) error {
	t, ok := CommandFCType(sqe)
	if !ok {
		return fmt.Errorf("opcode 0x%02x, want 0x7f: %w", sqe.Opcode, ErrNotFabrics)
	}
	if t != want {
		return fmt.Errorf("fctype %v, want %v: %w", t, want, ErrNotFabrics)
	}
	return nil
}

// ConnectResponse is DW0 of a Connect command's completion. Base 2.0, 6.3,
// Figure "Connect Response":
//
//	success:                 bits 15:0 CNTLID, 23:16 AUTHREQ
//	Connect Invalid Param.:  bits 15:0 IPO (byte offset), 16 IATTR (1: in data)
type ConnectResponse uint32

// Authentication requirements (AUTHREQ, ConnectResponse bits 23:16).
const (
	AuthReqATR  = 1 << 1 // authentication transaction required (NVMe in-band authentication)
	AuthReqASCR = 1 << 2 // secure channel concatenation required
)

// CNTLID is the controller ID the subsystem assigned (successful Connect).
func (r ConnectResponse) CNTLID() uint16 { return uint16(r) }

// AuthReq is the AUTHREQ field (successful Connect): 0 when the host may use
// the queue right away.
func (r ConnectResponse) AuthReq() uint8 { return uint8(r >> 16) }

// InvalidParameter decodes a Connect Invalid Parameters completion: the byte
// offset of the bad field, in the Connect data when inData, else in the
// command.
func (r ConnectResponse) InvalidParameter() (offset uint16, inData bool) {
	return uint16(r), r&(1<<16) != 0
}

// ConnectSuccess builds the DW0 a controller returns for a successful
// Connect.
func ConnectSuccess(cntlid uint16, authReq uint8) ConnectResponse {
	return ConnectResponse(uint32(cntlid) | uint32(authReq)<<16)
}

// ConnectInvalidParameter builds the DW0 of a Connect Invalid Parameters
// completion naming the field at offset (in the data when inData).
func ConnectInvalidParameter(offset uint16, inData bool) ConnectResponse {
	r := ConnectResponse(offset)
	if inData {
		r |= 1 << 16
	}
	return r
}

// Byte offsets a controller reports in a Connect Invalid Parameters
// completion (IPO).
const (
	ConnectOffQID     = 0x2a // in the command
	ConnectOffSQSize  = 0x2c
	ConnectOffCAttr   = 0x2e
	ConnectOffKATO    = 0x30
	ConnectOffHostID  = 0x000 // in the data
	ConnectOffCNTLID  = 0x010
	ConnectOffSubNQN  = 0x100
	ConnectOffHostNQN = 0x200
)

// Controller IDs. Base 2.0, 6.3: a host asks for any (dynamic) controller
// with CNTLIDDynamic; static controllers are named by their ID.
const (
	CNTLIDMin     = 0x0001
	CNTLIDMax     = 0xffef
	CNTLIDStatic  = 0xfffe // any static controller (Connect data)
	CNTLIDDynamic = 0xffff // a new dynamic controller (Connect data)
)

// Property sizes, PropertyGetCommand.Attrib and PropertySetCommand.Attrib
// bits 2:0. Base 2.0, 6.5.
const (
	PropertySize4 = 0 // 4-byte property
	PropertySize8 = 1 // 8-byte property
)

// PropertySize returns the size in bytes of the controller property at
// offset (CAP and the other 64-bit registers: 8; the 32-bit ones: 4), and
// false for offsets a fabrics controller does not have: the PCIe-only
// registers (interrupt masks, admin queue base addresses, CMB, boot
// partitions, PMR, doorbells). Base 2.0, 3.1.3 "Controller Properties".
func PropertySize(offset uint32) (size int, ok bool) {
	switch offset {
	case spec.RegCAP:
		return 8, true
	case spec.RegVS, spec.RegCC, spec.RegCSTS, spec.RegNSSR, spec.RegNSSD, spec.RegCRTO:
		return 4, true
	}
	return 0, false
}

// PropertyAttrib returns the ATTRIB byte for a property of size bytes (4 or
// 8; anything else is taken as 4).
func PropertyAttrib(size int) uint8 {
	if size == 8 {
		return PropertySize8
	}
	return PropertySize4
}

// PropertyGetCommand is the Property Get command. Base 2.0, 6.5. The
// completion carries the value in DW0 (low) and DW1 (high): PropertyValue.
type PropertyGetCommand struct {
	_      structs.HostLayout
	Opcode uint8    // 0x00 7Fh
	Flags  uint8    // 0x01
	CID    uint16   // 0x02
	FCType FCType   // 0x04 04h
	_      [35]byte // 0x05 reserved
	Attrib uint8    // 0x28 bits 2:0 size (PropertySize4, PropertySize8)
	_      [3]byte  // 0x29
	Offset uint32   // 0x2c property offset (spec.RegCAP, ...)
	_      [16]byte // 0x30
}

var (
	_ [unsafe.Sizeof(PropertyGetCommand{}) - spec.CommandSize]struct{}
	_ [spec.CommandSize - unsafe.Sizeof(PropertyGetCommand{})]struct{}
	_ [unsafe.Offsetof(PropertyGetCommand{}.Offset) - 0x2c]struct{}
	_ [0x2c - unsafe.Offsetof(PropertyGetCommand{}.Offset)]struct{}
)

// SQE returns c as a submission queue entry.
func (c *PropertyGetCommand) SQE() spec.Command {
	return spec.Command{
		Opcode: uint8(Opcode), Flags: c.Flags, CID: c.CID, NSID: uint32(FCTypePropertyGet),
		CDW10: uint32(c.Attrib), CDW11: c.Offset,
	}
}

// Size returns the property size in bytes that Attrib selects: 4 or 8, or 0
// for a reserved encoding.
func (c *PropertyGetCommand) Size() int { return attribSize(c.Attrib) }

func attribSize(a uint8) int {
	switch a & 7 {
	case PropertySize4:
		return 4
	case PropertySize8:
		return 8
	}
	return 0
}

// PropertyGetFromSQE decodes a Property Get command.
func PropertyGetFromSQE(sqe *spec.Command) (PropertyGetCommand, error) {
	if err := checkFabrics(sqe, FCTypePropertyGet); err != nil {
		return PropertyGetCommand{}, err
	}
	return PropertyGetCommand{
		Opcode: sqe.Opcode, Flags: sqe.Flags, CID: sqe.CID, FCType: FCTypePropertyGet,
		Attrib: uint8(sqe.CDW10), Offset: sqe.CDW11,
	}, nil
}

// PropertyValue returns the value a Property Get completion carries.
func PropertyValue(cqe *spec.Completion) uint64 {
	return uint64(cqe.DW0) | uint64(cqe.DW1)<<32
}

// SetPropertyValue stores v in a Property Get completion (the controller's
// side of PropertyValue).
func SetPropertyValue(cqe *spec.Completion, v uint64) {
	cqe.DW0, cqe.DW1 = uint32(v), uint32(v>>32)
}

// PropertySetCommand is the Property Set command. Base 2.0, 6.6. A 4-byte
// property takes the low half of Value.
type PropertySetCommand struct {
	_      structs.HostLayout
	Opcode uint8    // 0x00 7Fh
	Flags  uint8    // 0x01
	CID    uint16   // 0x02
	FCType FCType   // 0x04 00h
	_      [35]byte // 0x05 reserved
	Attrib uint8    // 0x28 bits 2:0 size
	_      [3]byte  // 0x29
	Offset uint32   // 0x2c property offset
	Value  uint64   // 0x30 value
	_      [8]byte  // 0x38
}

var (
	_ [unsafe.Sizeof(PropertySetCommand{}) - spec.CommandSize]struct{}
	_ [spec.CommandSize - unsafe.Sizeof(PropertySetCommand{})]struct{}
	_ [unsafe.Offsetof(PropertySetCommand{}.Value) - 0x30]struct{}
	_ [0x30 - unsafe.Offsetof(PropertySetCommand{}.Value)]struct{}
)

// SQE returns c as a submission queue entry.
func (c *PropertySetCommand) SQE() spec.Command {
	return spec.Command{
		Opcode: uint8(Opcode), Flags: c.Flags, CID: c.CID, NSID: uint32(FCTypePropertySet),
		CDW10: uint32(c.Attrib), CDW11: c.Offset,
		CDW12: uint32(c.Value), CDW13: uint32(c.Value >> 32),
	}
}

// Size returns the property size in bytes that Attrib selects: 4 or 8, or 0
// for a reserved encoding.
func (c *PropertySetCommand) Size() int { return attribSize(c.Attrib) }

// PropertySetFromSQE decodes a Property Set command.
func PropertySetFromSQE(sqe *spec.Command) (PropertySetCommand, error) {
	if err := checkFabrics(sqe, FCTypePropertySet); err != nil {
		return PropertySetCommand{}, err
	}
	return PropertySetCommand{
		Opcode: sqe.Opcode, Flags: sqe.Flags, CID: sqe.CID, FCType: FCTypePropertySet,
		Attrib: uint8(sqe.CDW10), Offset: sqe.CDW11,
		Value: uint64(sqe.CDW12) | uint64(sqe.CDW13)<<32,
	}, nil
}

// DisconnectCommand is the Disconnect command: delete the I/O queue the
// command was sent on. Base 2.0, 6.4. Not for the admin queue; a host can
// always just close the connection instead.
type DisconnectCommand struct {
	_      structs.HostLayout
	Opcode uint8    // 0x00 7Fh
	Flags  uint8    // 0x01
	CID    uint16   // 0x02
	FCType FCType   // 0x04 08h
	_      [35]byte // 0x05 reserved
	RecFmt uint16   // 0x28 record format, 0
	_      [22]byte // 0x2a
}

var (
	_ [unsafe.Sizeof(DisconnectCommand{}) - spec.CommandSize]struct{}
	_ [spec.CommandSize - unsafe.Sizeof(DisconnectCommand{})]struct{}
)

// SQE returns c as a submission queue entry.
func (c *DisconnectCommand) SQE() spec.Command {
	return spec.Command{
		Opcode: uint8(Opcode), Flags: c.Flags, CID: c.CID, NSID: uint32(FCTypeDisconnect),
		CDW10: uint32(c.RecFmt),
	}
}

// DisconnectFromSQE decodes a Disconnect command.
func DisconnectFromSQE(sqe *spec.Command) (DisconnectCommand, error) {
	if err := checkFabrics(sqe, FCTypeDisconnect); err != nil {
		return DisconnectCommand{}, err
	}
	return DisconnectCommand{
		Opcode: sqe.Opcode, Flags: sqe.Flags, CID: sqe.CID, FCType: FCTypeDisconnect,
		RecFmt: uint16(sqe.CDW10),
	}, nil
}
