package spec

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Log page identifiers (Get Log Page CDW10 LID). NVMe Base 2.0, 5.16.1;
// LogLBAStatus from NVM Command Set 1.0, 4.1.3; LogChangedZones
// from the Zoned Namespace Command Set 1.1.
const (
	LogSupportedLogPages       = 0x00
	LogErrorInformation        = 0x01
	LogSMART                   = 0x02
	LogFirmwareSlot            = 0x03
	LogChangedNamespaces       = 0x04
	LogCommandEffects          = 0x05
	LogDeviceSelfTest          = 0x06
	LogTelemetryHost           = 0x07
	LogTelemetryController     = 0x08
	LogEnduranceGroupInfo      = 0x09
	LogPLPerNVMSet             = 0x0a
	LogPLEventAggregate        = 0x0b
	LogANA                     = 0x0c
	LogPersistentEvent         = 0x0d
	LogLBAStatus               = 0x0e
	LogEGEventAggregate        = 0x0f
	LogMediaUnitStatus         = 0x10
	LogSupportedCapacityConfig = 0x11
	LogFeatureIDsEffects       = 0x12
	LogNVMeMICommandsEffects   = 0x13
	LogCommandFeatureLockdown  = 0x14
	LogBootPartition           = 0x15
	LogRotationalMedia         = 0x16
	LogDiscovery               = 0x70
	LogReservationNotification = 0x80
	LogSanitizeStatus          = 0x81
	LogChangedZones            = 0xbf
)

var logNames = map[uint8]string{
	LogSupportedLogPages:       "Supported Log Pages",
	LogErrorInformation:        "Error Information",
	LogSMART:                   "SMART / Health Information",
	LogFirmwareSlot:            "Firmware Slot Information",
	LogChangedNamespaces:       "Changed Namespace List",
	LogCommandEffects:          "Commands Supported and Effects",
	LogDeviceSelfTest:          "Device Self-test",
	LogTelemetryHost:           "Telemetry Host-Initiated",
	LogTelemetryController:     "Telemetry Controller-Initiated",
	LogEnduranceGroupInfo:      "Endurance Group Information",
	LogPLPerNVMSet:             "Predictable Latency Per NVM Set",
	LogPLEventAggregate:        "Predictable Latency Event Aggregate",
	LogANA:                     "Asymmetric Namespace Access",
	LogPersistentEvent:         "Persistent Event Log",
	LogLBAStatus:               "LBA Status Information",
	LogEGEventAggregate:        "Endurance Group Event Aggregate",
	LogMediaUnitStatus:         "Media Unit Status",
	LogSupportedCapacityConfig: "Supported Capacity Configuration List",
	LogFeatureIDsEffects:       "Feature Identifiers Supported and Effects",
	LogNVMeMICommandsEffects:   "NVMe-MI Commands Supported and Effects",
	LogCommandFeatureLockdown:  "Command and Feature Lockdown",
	LogBootPartition:           "Boot Partition",
	LogRotationalMedia:         "Rotational Media Information",
	LogDiscovery:               "Discovery",
	LogReservationNotification: "Reservation Notification",
	LogSanitizeStatus:          "Sanitize Status",
	LogChangedZones:            "Changed Zone List",
}

// LogName returns the spec name of log page lid, e.g. "SMART / Health
// Information", or "Vendor Specific (lid 0xc0)" / "Unknown (lid 0x42)".
func LogName(lid uint8) string {
	if n, ok := logNames[lid]; ok {
		return n
	}
	if lid >= 0xc0 {
		return fmt.Sprintf("Vendor Specific (lid 0x%02x)", lid)
	}
	return fmt.Sprintf("Unknown (lid 0x%02x)", lid)
}

// Sizes of the fixed-size log pages, in bytes.
const (
	ErrorLogEntrySize     = 64
	SMARTLogSize          = 512
	FirmwareSlotLogSize   = 512
	CommandEffectsLogSize = 4096
)

// ErrShort is returned (wrapped) by the parsers when the buffer is shorter
// than the structure it should hold.
var ErrShort = errors.New("buffer too short")

// ErrMalformed is returned (wrapped) by the parsers when the device data is
// inconsistent: lengths or counts that cannot be right.
var ErrMalformed = errors.New("malformed device data")

func needLen(what string, b []byte, n int) error {
	if len(b) < n {
		return fmt.Errorf("%s: %d bytes, need %d: %w", what, len(b), n, ErrShort)
	}
	return nil
}

// ErrorLogEntry is one entry of the Error Information log page (LID 0x01).
// NVMe Base 2.0, 5.16.1.2. 64 bytes on the wire.
type ErrorLogEntry struct {
	ErrorCount uint64 // 0x00 unique, incrementing; 0 marks an invalid entry
	SQID       uint16 // 0x08 submission queue of the failed command
	CID        uint16 // 0x0a command identifier of the failed command
	// Status is the status field, phase tag removed (0x0c, bits 15:1).
	Status Status
	// ParamErrorLocation (0x0e) locates the failing parameter in the
	// command: byte in bits 7:0, bit in bits 10:8. 0xFFFF if not applicable.
	ParamErrorLocation uint16
	LBA                uint64 // 0x10 first LBA that saw the error
	NSID               uint32 // 0x18
	VendorInfoLogPage  uint8  // 0x1c vendor specific information available (a LID, 0 none)
	TransportType      uint8  // 0x1d TRTYPE
	CommandSpecific    uint64 // 0x20
	TransportSpecific  uint16 // 0x28
	LogPageVersion     uint8  // 0x3f
}

// ParseErrorLog decodes an Error Information log page: len(b)/64 entries.
// Entries with an Error Count of 0 are invalid (empty) per the spec and are
// left out. b must hold at least one entry; trailing bytes that do not make a
// whole entry are an error.
func ParseErrorLog(b []byte) ([]ErrorLogEntry, error) {
	if err := needLen("error log", b, ErrorLogEntrySize); err != nil {
		return nil, err
	}
	if len(b)%ErrorLogEntrySize != 0 {
		return nil, fmt.Errorf("error log: %d bytes is not a multiple of %d: %w", len(b), ErrorLogEntrySize, ErrMalformed)
	}
	var out []ErrorLogEntry
	le := binary.LittleEndian
	for off := 0; off+ErrorLogEntrySize <= len(b); off += ErrorLogEntrySize {
		e := b[off : off+ErrorLogEntrySize]
		cnt := le.Uint64(e[0:])
		if cnt == 0 {
			continue
		}
		out = append(out, ErrorLogEntry{
			ErrorCount:         cnt,
			SQID:               le.Uint16(e[8:]),
			CID:                le.Uint16(e[10:]),
			Status:             StatusFromCQE(le.Uint16(e[12:])),
			ParamErrorLocation: le.Uint16(e[14:]),
			LBA:                le.Uint64(e[16:]),
			NSID:               le.Uint32(e[24:]),
			VendorInfoLogPage:  e[28],
			TransportType:      e[29],
			CommandSpecific:    le.Uint64(e[32:]),
			TransportSpecific:  le.Uint16(e[40:]),
			LogPageVersion:     e[63],
		})
	}
	return out, nil
}

// SMART critical warning bits (SMARTLog.CriticalWarning). NVMe Base 2.0, byte 0.
const (
	SMARTWarnSpare          = 1 << 0 // available spare below threshold
	SMARTWarnTemperature    = 1 << 1 // temperature over/under a threshold
	SMARTWarnReliability    = 1 << 2 // reliability degraded by media errors
	SMARTWarnReadOnly       = 1 << 3 // media placed in read-only mode
	SMARTWarnVolatileBackup = 1 << 4 // volatile memory backup device failed
	SMARTWarnPMRReadOnly    = 1 << 5 // persistent memory region read only
)

// SMARTLog is the SMART / Health Information log page (LID 0x02), 512
// bytes. NVMe Base 2.0, 5.16.1.3. Temperatures are in kelvin;
// 0 means "not implemented" for the sensors.
type SMARTLog struct {
	CriticalWarning       uint8     // 0x00 SMARTWarn bits
	CompositeTemperature  uint16    // 0x01 kelvin
	AvailableSpare        uint8     // 0x03 percent
	AvailableSpareThresh  uint8     // 0x04 percent
	PercentageUsed        uint8     // 0x05 percent, may exceed 100 (255 max)
	EnduranceGroupWarning uint8     // 0x06 critical warning summary
	DataUnitsRead         Uint128   // 0x20 units of 1000 x 512 bytes
	DataUnitsWritten      Uint128   // 0x30 units of 1000 x 512 bytes
	HostReadCommands      Uint128   // 0x40
	HostWriteCommands     Uint128   // 0x50
	ControllerBusyTime    Uint128   // 0x60 minutes
	PowerCycles           Uint128   // 0x70
	PowerOnHours          Uint128   // 0x80
	UnsafeShutdowns       Uint128   // 0x90
	MediaErrors           Uint128   // 0xa0 media and data integrity errors
	ErrorLogEntries       Uint128   // 0xb0 number of error information log entries
	WarningTempTime       uint32    // 0xc0 minutes above WCTEMP
	CriticalTempTime      uint32    // 0xc4 minutes above CCTEMP
	TemperatureSensors    [8]uint16 // 0xc8 sensors 1-8, kelvin, 0 = not implemented
	ThermalMgmtT1Count    uint32    // 0xd8 thermal management temperature 1 transition count
	ThermalMgmtT2Count    uint32    // 0xdc
	ThermalMgmtT1Time     uint32    // 0xe0 seconds
	ThermalMgmtT2Time     uint32    // 0xe4 seconds
}

// CelsiusFromKelvin converts a device temperature in kelvin to degrees
// Celsius (NVMe temperatures are integral kelvin).
func CelsiusFromKelvin(k uint16) int { return int(k) - 273 }

// ParseSMARTLog decodes a SMART / Health Information log page. b must hold
// at least 512 bytes; extra bytes are ignored.
func ParseSMARTLog(b []byte) (*SMARTLog, error) {
	if err := needLen("smart log", b, SMARTLogSize); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	s := &SMARTLog{
		CriticalWarning:       b[0],
		CompositeTemperature:  le.Uint16(b[1:]),
		AvailableSpare:        b[3],
		AvailableSpareThresh:  b[4],
		PercentageUsed:        b[5],
		EnduranceGroupWarning: b[6],
		DataUnitsRead:         getUint128(b[0x20:]),
		DataUnitsWritten:      getUint128(b[0x30:]),
		HostReadCommands:      getUint128(b[0x40:]),
		HostWriteCommands:     getUint128(b[0x50:]),
		ControllerBusyTime:    getUint128(b[0x60:]),
		PowerCycles:           getUint128(b[0x70:]),
		PowerOnHours:          getUint128(b[0x80:]),
		UnsafeShutdowns:       getUint128(b[0x90:]),
		MediaErrors:           getUint128(b[0xa0:]),
		ErrorLogEntries:       getUint128(b[0xb0:]),
		WarningTempTime:       le.Uint32(b[0xc0:]),
		CriticalTempTime:      le.Uint32(b[0xc4:]),
		ThermalMgmtT1Count:    le.Uint32(b[0xd8:]),
		ThermalMgmtT2Count:    le.Uint32(b[0xdc:]),
		ThermalMgmtT1Time:     le.Uint32(b[0xe0:]),
		ThermalMgmtT2Time:     le.Uint32(b[0xe4:]),
	}
	for i := range s.TemperatureSensors {
		s.TemperatureSensors[i] = le.Uint16(b[0xc8+2*i:])
	}
	return s, nil
}

// FirmwareSlotLog is the Firmware Slot Information log page (LID 0x03),
// 512 bytes. NVMe Base 2.0, 5.16.1.4.
type FirmwareSlotLog struct {
	// AFI is Active Firmware Info: bits 2:0 the active slot, bits 6:4 the
	// slot activated at the next reset (0: none).
	AFI uint8
	// FRS holds the firmware revision of slots 1-7 (index 0 is slot 1),
	// trimmed; "" for an empty or unsupported slot.
	FRS [7]string
}

// ActiveSlot returns the slot (1-7) the running firmware came from.
func (f *FirmwareSlotLog) ActiveSlot() uint8 { return f.AFI & 0x7 }

// NextSlot returns the slot activated at the next controller reset, 0 if
// none is pending.
func (f *FirmwareSlotLog) NextSlot() uint8 { return (f.AFI >> 4) & 0x7 }

// ParseFirmwareSlotLog decodes a Firmware Slot Information log page. b must
// hold at least 64 bytes (the defined part); the rest of the 512 is
// reserved.
func ParseFirmwareSlotLog(b []byte) (*FirmwareSlotLog, error) {
	if err := needLen("firmware slot log", b, 64); err != nil {
		return nil, err
	}
	f := &FirmwareSlotLog{AFI: b[0]}
	for i := range f.FRS {
		f.FRS[i] = trimString(b[8+8*i : 16+8*i])
	}
	return f, nil
}

// CommandEffect is one entry of the Commands Supported and Effects log
// page. NVMe Base 2.0, 5.16.1.6.
type CommandEffect uint32

// CSUPP, bit 0: the command is supported.
func (c CommandEffect) CSUPP() bool { return c&(1<<0) != 0 }

// LBCC, bit 1: Logical Block Content Change.
func (c CommandEffect) LBCC() bool { return c&(1<<1) != 0 }

// NCC, bit 2: Namespace Capability Change.
func (c CommandEffect) NCC() bool { return c&(1<<2) != 0 }

// NIC, bit 3: Namespace Inventory Change.
func (c CommandEffect) NIC() bool { return c&(1<<3) != 0 }

// CCC, bit 4: Controller Capability Change.
func (c CommandEffect) CCC() bool { return c&(1<<4) != 0 }

// CSE, bits 18:16: Command Submission and Execution (0 no restriction,
// 1 one at a time per namespace, 2 one at a time per subsystem).
func (c CommandEffect) CSE() uint8 { return uint8(c>>16) & 0x7 }

// USS, bit 19: UUID Selection Supported.
func (c CommandEffect) USS() bool { return c&(1<<19) != 0 }

// CommandEffectsLog is the Commands Supported and Effects log page (LID
// 0x05), 4096 bytes: one CommandEffect per admin and per I/O opcode.
type CommandEffectsLog struct {
	Admin [256]CommandEffect // 0x000, ACS0-ACS255
	IO    [256]CommandEffect // 0x400, IOCS0-IOCS255
}

// ParseCommandEffectsLog decodes a Commands Supported and Effects log page.
// b must hold at least 2048 bytes (the two tables); the rest is reserved.
func ParseCommandEffectsLog(b []byte) (*CommandEffectsLog, error) {
	if err := needLen("command effects log", b, 2048); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	c := &CommandEffectsLog{}
	for i := range 256 {
		c.Admin[i] = CommandEffect(le.Uint32(b[4*i:]))
		c.IO[i] = CommandEffect(le.Uint32(b[1024+4*i:]))
	}
	return c, nil
}
