package spec

import "fmt"

// AsyncEvent is completion DW0 of an Asynchronous Event Request command.
// NVMe Base 2.0, 5.2.1 "Command Completion":
//
//	bits 23:16 Log Page Identifier, 15:8 Asynchronous Event Information,
//	2:0 Asynchronous Event Type
type AsyncEvent uint32

// Asynchronous event types. NVMe Base 2.0.
const (
	AEVTypeError         = 0
	AEVTypeSMART         = 1
	AEVTypeNotice        = 2
	AEVTypeIOCmdSpecific = 6
	AEVTypeVendor        = 7
)

// Asynchronous event information, by type. NVMe Base 2.0.
const (
	// Error status (type 0).
	AEVErrorInvalidDoorbell      = 0x00 // Write to Invalid Doorbell Register
	AEVErrorInvalidDoorbellValue = 0x01 // Invalid Doorbell Write Value
	AEVErrorDiagnosticFailure    = 0x02
	AEVErrorPersistentInternal   = 0x03
	AEVErrorTransientInternal    = 0x04
	AEVErrorFirmwareImageLoad    = 0x05

	// SMART / Health status (type 1).
	AEVSMARTReliability = 0x00 // NVM subsystem reliability
	AEVSMARTTemperature = 0x01 // temperature threshold
	AEVSMARTSpare       = 0x02 // spare below threshold

	// Notice (type 2).
	AEVNoticeNamespaceChanged     = 0x00 // Namespace Attribute Changed
	AEVNoticeFirmwareActivation   = 0x01 // Firmware Activation Starting
	AEVNoticeTelemetryLogChanged  = 0x02
	AEVNoticeANAChange            = 0x03 // Asymmetric Namespace Access Change
	AEVNoticePLEventAggregate     = 0x04 // Predictable Latency Event Aggregate Log Change
	AEVNoticeLBAStatusAlert       = 0x05
	AEVNoticeEGEventAggregate     = 0x06 // Endurance Group Event Aggregate Log Page Change
	AEVNoticeNormalSubsysShutdown = 0x07 // Normal NVM Subsystem Shutdown
	AEVNoticeDiscoveryChange      = 0xf0 // Discovery Log Page Change

	// I/O Command Set specific status (type 6).
	AEVIOReservationLog           = 0x00 // Reservation Log Page Available
	AEVIOSanitizeCompleted        = 0x01 // Sanitize Operation Completed
	AEVIOSanitizeCompletedDealloc = 0x02 // ... With Unexpected Deallocation
)

// Type is the Asynchronous Event Type, bits 2:0.
func (e AsyncEvent) Type() uint8 { return uint8(e) & 0x7 }

// Info is the Asynchronous Event Information, bits 15:8.
func (e AsyncEvent) Info() uint8 { return uint8(e >> 8) }

// LogPage is the Log Page Identifier, bits 23:16: the log page to read
// (with Retain Asynchronous Event clear) to clear the event.
func (e AsyncEvent) LogPage() uint8 { return uint8(e >> 16) }

// TypeName returns the name of the event type.
func (e AsyncEvent) TypeName() string {
	switch e.Type() {
	case AEVTypeError:
		return "Error Status"
	case AEVTypeSMART:
		return "SMART / Health Status"
	case AEVTypeNotice:
		return "Notice"
	case AEVTypeIOCmdSpecific:
		return "I/O Command Set Specific Status"
	case AEVTypeVendor:
		return "Vendor Specific"
	}
	return "Reserved"
}

var aevInfoNames = map[uint8]map[uint8]string{
	AEVTypeError: {
		AEVErrorInvalidDoorbell:      "Write to Invalid Doorbell Register",
		AEVErrorInvalidDoorbellValue: "Invalid Doorbell Write Value",
		AEVErrorDiagnosticFailure:    "Diagnostic Failure",
		AEVErrorPersistentInternal:   "Persistent Internal Error",
		AEVErrorTransientInternal:    "Transient Internal Error",
		AEVErrorFirmwareImageLoad:    "Firmware Image Load Error",
	},
	AEVTypeSMART: {
		AEVSMARTReliability: "NVM Subsystem Reliability",
		AEVSMARTTemperature: "Temperature Threshold",
		AEVSMARTSpare:       "Spare Below Threshold",
	},
	AEVTypeNotice: {
		AEVNoticeNamespaceChanged:     "Namespace Attribute Changed",
		AEVNoticeFirmwareActivation:   "Firmware Activation Starting",
		AEVNoticeTelemetryLogChanged:  "Telemetry Log Changed",
		AEVNoticeANAChange:            "Asymmetric Namespace Access Change",
		AEVNoticePLEventAggregate:     "Predictable Latency Event Aggregate Log Change",
		AEVNoticeLBAStatusAlert:       "LBA Status Information Alert",
		AEVNoticeEGEventAggregate:     "Endurance Group Event Aggregate Log Page Change",
		AEVNoticeNormalSubsysShutdown: "Normal NVM Subsystem Shutdown",
		AEVNoticeDiscoveryChange:      "Discovery Log Page Change",
	},
	AEVTypeIOCmdSpecific: {
		AEVIOReservationLog:           "Reservation Log Page Available",
		AEVIOSanitizeCompleted:        "Sanitize Operation Completed",
		AEVIOSanitizeCompletedDealloc: "Sanitize Operation Completed With Unexpected Deallocation",
	},
}

// InfoName returns the name of the event information for the event's type,
// or "Unknown (info 0x..)".
func (e AsyncEvent) InfoName() string {
	if n, ok := aevInfoNames[e.Type()][e.Info()]; ok {
		return n
	}
	return fmt.Sprintf("Unknown (info 0x%02x)", e.Info())
}

// String formats e as "Notice/Namespace Attribute Changed (log 0x04)".
func (e AsyncEvent) String() string {
	return fmt.Sprintf("%s/%s (log 0x%02x)", e.TypeName(), e.InfoName(), e.LogPage())
}

// Asynchronous Event Configuration feature bits (FID 0x0b, CDW11).
// NVMe Base 2.0, 5.27.1.11.
const (
	AECSMARTMask           = 0xff    // bits 7:0, SMART / Health critical warnings
	AECNamespaceAttribute  = 1 << 8  // NSAN
	AECFirmwareActivation  = 1 << 9  // FAN
	AECTelemetryLog        = 1 << 10 // TLN
	AECANAChange           = 1 << 11 // ANACN
	AECPLEventAggregate    = 1 << 12 // PLEALCN
	AECLBAStatusInfo       = 1 << 13 // LSIAN
	AECEGEventAggregate    = 1 << 14 // EGEALCN
	AECNormalSubsysShutdwn = 1 << 15 // NNSSHDN
	AECDiscoveryLogChange  = 1 << 31 // DLPCN
)
