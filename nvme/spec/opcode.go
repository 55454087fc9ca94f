package spec

import "fmt"

// Opcode is a command opcode (Command.Opcode). Admin and I/O opcodes share
// values, so an Opcode is only meaningful together with the queue it was
// submitted on.
type Opcode uint8

// Admin command opcodes. NVMe Base 2.0, 5 "Admin Command Set";
// AdminGetLBAStatus from NVM Command Set 1.0.
const (
	AdminDeleteIOSQ           Opcode = 0x00
	AdminCreateIOSQ           Opcode = 0x01
	AdminGetLogPage           Opcode = 0x02
	AdminDeleteIOCQ           Opcode = 0x04
	AdminCreateIOCQ           Opcode = 0x05
	AdminIdentify             Opcode = 0x06
	AdminAbort                Opcode = 0x08
	AdminSetFeatures          Opcode = 0x09
	AdminGetFeatures          Opcode = 0x0a
	AdminAsyncEventRequest    Opcode = 0x0c
	AdminNamespaceManagement  Opcode = 0x0d
	AdminFirmwareCommit       Opcode = 0x10
	AdminFirmwareDownload     Opcode = 0x11
	AdminDeviceSelfTest       Opcode = 0x14
	AdminNamespaceAttachment  Opcode = 0x15
	AdminKeepAlive            Opcode = 0x18
	AdminDirectiveSend        Opcode = 0x19
	AdminDirectiveReceive     Opcode = 0x1a
	AdminVirtualizationMgmt   Opcode = 0x1c
	AdminNVMeMISend           Opcode = 0x1d
	AdminNVMeMIReceive        Opcode = 0x1e
	AdminCapacityManagement   Opcode = 0x20
	AdminLockdown             Opcode = 0x24
	AdminDoorbellBufferConfig Opcode = 0x7c
	AdminFabrics              Opcode = 0x7f
	AdminFormatNVM            Opcode = 0x80
	AdminSecuritySend         Opcode = 0x81
	AdminSecurityReceive      Opcode = 0x82
	AdminSanitize             Opcode = 0x84
	AdminGetLBAStatus         Opcode = 0x86
)

// NVM Command Set I/O opcodes. NVM Command Set 1.0, 3 "I/O Commands"; the
// reservation commands from NVMe Base 2.0, 7;
// the zoned commands from the Zoned Namespace Command Set 1.1.
const (
	IOFlush              Opcode = 0x00
	IOWrite              Opcode = 0x01
	IORead               Opcode = 0x02
	IOWriteUncorrectable Opcode = 0x04
	IOCompare            Opcode = 0x05
	IOWriteZeroes        Opcode = 0x08
	IODatasetManagement  Opcode = 0x09
	IOVerify             Opcode = 0x0c
	IOReservationReg     Opcode = 0x0d
	IOReservationReport  Opcode = 0x0e
	IOReservationAcquire Opcode = 0x11
	IOReservationRelease Opcode = 0x15
	IOCopy               Opcode = 0x19
	IOZoneMgmtSend       Opcode = 0x79
	IOZoneMgmtReceive    Opcode = 0x7a
	IOZoneAppend         Opcode = 0x7d
)

// Data transfer direction, bits 1:0 of every opcode. NVMe Base 2.0.
const (
	XferNone          = 0
	XferHostToCtrl    = 1 // write direction
	XferCtrlToHost    = 2 // read direction
	XferBidirectional = 3
)

// Xfer returns the data transfer direction encoded in bits 1:0 of o.
func (o Opcode) Xfer() uint8 { return uint8(o) & 3 }

var adminOpcodeNames = map[Opcode]string{
	AdminDeleteIOSQ:           "Delete I/O Submission Queue",
	AdminCreateIOSQ:           "Create I/O Submission Queue",
	AdminGetLogPage:           "Get Log Page",
	AdminDeleteIOCQ:           "Delete I/O Completion Queue",
	AdminCreateIOCQ:           "Create I/O Completion Queue",
	AdminIdentify:             "Identify",
	AdminAbort:                "Abort",
	AdminSetFeatures:          "Set Features",
	AdminGetFeatures:          "Get Features",
	AdminAsyncEventRequest:    "Asynchronous Event Request",
	AdminNamespaceManagement:  "Namespace Management",
	AdminFirmwareCommit:       "Firmware Commit",
	AdminFirmwareDownload:     "Firmware Image Download",
	AdminDeviceSelfTest:       "Device Self-test",
	AdminNamespaceAttachment:  "Namespace Attachment",
	AdminKeepAlive:            "Keep Alive",
	AdminDirectiveSend:        "Directive Send",
	AdminDirectiveReceive:     "Directive Receive",
	AdminVirtualizationMgmt:   "Virtualization Management",
	AdminNVMeMISend:           "NVMe-MI Send",
	AdminNVMeMIReceive:        "NVMe-MI Receive",
	AdminCapacityManagement:   "Capacity Management",
	AdminLockdown:             "Lockdown",
	AdminDoorbellBufferConfig: "Doorbell Buffer Config",
	AdminFabrics:              "Fabrics Commands",
	AdminFormatNVM:            "Format NVM",
	AdminSecuritySend:         "Security Send",
	AdminSecurityReceive:      "Security Receive",
	AdminSanitize:             "Sanitize",
	AdminGetLBAStatus:         "Get LBA Status",
}

var ioOpcodeNames = map[Opcode]string{
	IOFlush:              "Flush",
	IOWrite:              "Write",
	IORead:               "Read",
	IOWriteUncorrectable: "Write Uncorrectable",
	IOCompare:            "Compare",
	IOWriteZeroes:        "Write Zeroes",
	IODatasetManagement:  "Dataset Management",
	IOVerify:             "Verify",
	IOReservationReg:     "Reservation Register",
	IOReservationReport:  "Reservation Report",
	IOReservationAcquire: "Reservation Acquire",
	IOReservationRelease: "Reservation Release",
	IOCopy:               "Copy",
	IOZoneMgmtSend:       "Zone Management Send",
	IOZoneMgmtReceive:    "Zone Management Receive",
	IOZoneAppend:         "Zone Append",
}

func unknownOpcodeName(o Opcode) string {
	if o >= 0xc0 {
		return fmt.Sprintf("Vendor Specific (opcode 0x%02x)", uint8(o))
	}
	return fmt.Sprintf("Unknown (opcode 0x%02x)", uint8(o))
}

// AdminOpcodeName returns the spec name of admin opcode o, e.g. "Identify",
// or "Vendor Specific (opcode 0xc1)" / "Unknown (opcode 0x42)".
func AdminOpcodeName(o Opcode) string {
	if n, ok := adminOpcodeNames[o]; ok {
		return n
	}
	return unknownOpcodeName(o)
}

// IOOpcodeName returns the spec name of NVM Command Set I/O opcode o, e.g.
// "Read", or "Vendor Specific (opcode 0x81)" / "Unknown (opcode 0x42)".
func IOOpcodeName(o Opcode) string {
	if n, ok := ioOpcodeNames[o]; ok {
		return n
	}
	if o >= 0x80 {
		return fmt.Sprintf("Vendor Specific (opcode 0x%02x)", uint8(o))
	}
	return unknownOpcodeName(o)
}

// I/O command dword bits. NVM Command Set 1.0, 3.2.4 "Read command"
// and 3.2.6 "Write command": CDW12 bits 15:0 are NLB,
// the number of logical blocks, 0's based.
const (
	IOLimitedRetry = 1 << 31 // CDW12 LR
	IOFUA          = 1 << 30 // CDW12 FUA, force unit access
	IOPRINFOShift  = 26      // CDW12 bits 29:26, protection information field
	IOSTC          = 1 << 24 // CDW12 storage tag check
	IODTypeShift   = 20      // CDW12 bits 23:20, directive type (writes)
	IONLBMask      = 0xffff  // CDW12 bits 15:0

	// IODeac is CDW12 bit 25 of Write Zeroes: deallocate the blocks.
	IODeac = 1 << 25

	// DSM: CDW10 bits 7:0 are NR, the number of ranges, 0's based;
	// CDW11 holds the attributes. NVM Command Set 1.0, 3.2.3.
	DSMIntegralRead  = 1 << 0 // CDW11 IDR
	DSMIntegralWrite = 1 << 1 // CDW11 IDW
	DSMDeallocate    = 1 << 2 // CDW11 AD
)

// Queue creation dword bits. NVMe Base 2.0, 5.4 "Create I/O Completion
// Queue" and 5.5 "Create I/O Submission Queue":
// CDW10 is QSIZE (31:16, 0's based) | QID (15:0).
const (
	CreateQPhysContig   = 1 << 0 // CDW11 PC, physically contiguous
	CreateCQIntEnabled  = 1 << 1 // CDW11 IEN (CQ)
	CreateCQIVShift     = 16     // CDW11 bits 31:16, interrupt vector (CQ)
	CreateSQPrioShift   = 1      // CDW11 bits 2:1, queue priority (SQ)
	CreateSQCQIDShift   = 16     // CDW11 bits 31:16, CQ identifier (SQ)
	CreateSQPrioUrgent  = 0
	CreateSQPrioHigh    = 1
	CreateSQPrioMedium  = 2
	CreateSQPrioLow     = 3
	QueueSizeMaxEntries = 65536 // QSIZE is 16 bits, 0's based
)

// Get Log Page dword layout. NVMe Base 2.0, 5.16:
// CDW10 = NUMDL (31:16) | RAE (15) | LSP (14:8) | LID (7:0);
// CDW11 = LSI (31:16) | NUMDU (15:0); CDW12/13 = LPOL/LPOU (byte offset);
// CDW14 = CSI (31:24) | OT (23) | UUID index (6:0). NUMD is the number of
// dwords, 0's based.
const (
	GetLogRAE = 1 << 15 // CDW10 Retain Asynchronous Event
)

// GetLogPageDwords returns CDW10 and CDW11 of a Get Log Page command for log
// lid reading n bytes (n a non-zero multiple of 4, at most 16 GiB).
func GetLogPageDwords(lid uint8, lsp uint8, rae bool, n uint32) (cdw10, cdw11 uint32) {
	numd := n/4 - 1
	cdw10 = uint32(lid) | uint32(lsp&0x7f)<<8 | (numd&0xffff)<<16
	if rae {
		cdw10 |= GetLogRAE
	}
	cdw11 = numd >> 16
	return cdw10, cdw11
}
