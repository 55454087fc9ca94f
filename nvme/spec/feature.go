package spec

import "fmt"

// Feature identifiers (FID, Set/Get Features CDW10 bits 7:0). NVMe Base 2.0,
// 5.27.1 "Feature Specific Information"; NVM Command Set 1.0,
// 4.1.4 for the NVM specific ones.
const (
	FeatureArbitration              = 0x01
	FeaturePowerManagement          = 0x02
	FeatureLBARangeType             = 0x03
	FeatureTemperatureThreshold     = 0x04
	FeatureErrorRecovery            = 0x05
	FeatureVolatileWriteCache       = 0x06
	FeatureNumberOfQueues           = 0x07
	FeatureInterruptCoalescing      = 0x08
	FeatureInterruptVectorConfig    = 0x09
	FeatureWriteAtomicity           = 0x0a
	FeatureAsyncEventConfig         = 0x0b
	FeatureAutonomousPowerState     = 0x0c
	FeatureHostMemoryBuffer         = 0x0d
	FeatureTimestamp                = 0x0e
	FeatureKeepAlive                = 0x0f
	FeatureHostThermalMgmt          = 0x10
	FeatureNonOpPowerStateConfig    = 0x11
	FeatureReadRecoveryLevel        = 0x12
	FeaturePLMConfig                = 0x13
	FeaturePLMWindow                = 0x14
	FeatureLBAStatusReportInterval  = 0x15
	FeatureHostBehaviorSupport      = 0x16
	FeatureSanitizeConfig           = 0x17
	FeatureEnduranceGroupEventCfg   = 0x18
	FeatureIOCommandSetProfile      = 0x19
	FeatureSpinupControl            = 0x1a
	FeatureEnhancedCtrlMetadata     = 0x7d
	FeatureControllerMetadata       = 0x7e
	FeatureNamespaceMetadata        = 0x7f
	FeatureSoftwareProgressMarker   = 0x80
	FeatureHostIdentifier           = 0x81
	FeatureReservationNotifyMask    = 0x82
	FeatureReservationPersistence   = 0x83
	FeatureNamespaceWriteProtection = 0x84
)

var featureNames = map[uint8]string{
	FeatureArbitration:              "Arbitration",
	FeaturePowerManagement:          "Power Management",
	FeatureLBARangeType:             "LBA Range Type",
	FeatureTemperatureThreshold:     "Temperature Threshold",
	FeatureErrorRecovery:            "Error Recovery",
	FeatureVolatileWriteCache:       "Volatile Write Cache",
	FeatureNumberOfQueues:           "Number of Queues",
	FeatureInterruptCoalescing:      "Interrupt Coalescing",
	FeatureInterruptVectorConfig:    "Interrupt Vector Configuration",
	FeatureWriteAtomicity:           "Write Atomicity Normal",
	FeatureAsyncEventConfig:         "Asynchronous Event Configuration",
	FeatureAutonomousPowerState:     "Autonomous Power State Transition",
	FeatureHostMemoryBuffer:         "Host Memory Buffer",
	FeatureTimestamp:                "Timestamp",
	FeatureKeepAlive:                "Keep Alive Timer",
	FeatureHostThermalMgmt:          "Host Controlled Thermal Management",
	FeatureNonOpPowerStateConfig:    "Non-Operational Power State Config",
	FeatureReadRecoveryLevel:        "Read Recovery Level Config",
	FeaturePLMConfig:                "Predictable Latency Mode Config",
	FeaturePLMWindow:                "Predictable Latency Mode Window",
	FeatureLBAStatusReportInterval:  "LBA Status Information Report Interval",
	FeatureHostBehaviorSupport:      "Host Behavior Support",
	FeatureSanitizeConfig:           "Sanitize Config",
	FeatureEnduranceGroupEventCfg:   "Endurance Group Event Configuration",
	FeatureIOCommandSetProfile:      "I/O Command Set Profile",
	FeatureSpinupControl:            "Spinup Control",
	FeatureEnhancedCtrlMetadata:     "Enhanced Controller Metadata",
	FeatureControllerMetadata:       "Controller Metadata",
	FeatureNamespaceMetadata:        "Namespace Metadata",
	FeatureSoftwareProgressMarker:   "Software Progress Marker",
	FeatureHostIdentifier:           "Host Identifier",
	FeatureReservationNotifyMask:    "Reservation Notification Mask",
	FeatureReservationPersistence:   "Reservation Persistence",
	FeatureNamespaceWriteProtection: "Namespace Write Protection Config",
}

// FeatureName returns the spec name of feature fid, e.g. "Number of Queues",
// or "Vendor Specific (fid 0xc0)" / "Unknown (fid 0x42)".
func FeatureName(fid uint8) string {
	if n, ok := featureNames[fid]; ok {
		return n
	}
	if fid >= 0xc0 {
		return fmt.Sprintf("Vendor Specific (fid 0x%02x)", fid)
	}
	return fmt.Sprintf("Unknown (fid 0x%02x)", fid)
}

// Get Features select values (SEL, CDW10 bits 10:8). NVMe Base 2.0, 5.15.
const (
	SelCurrent      = 0
	SelDefault      = 1
	SelSaved        = 2
	SelSupportedCap = 3

	// SelShift is the position of SEL in CDW10.
	SelShift = 8

	// SetFeaturesSave is Set Features CDW10 bit 31, SV: save the value
	// across resets.
	SetFeaturesSave = 1 << 31
)

// Get Features with SEL=SelSupportedCap returns these bits in DW0.
// NVMe Base 2.0.
const (
	FeatureCapSaveable   = 1 << 0
	FeatureCapNSSpecific = 1 << 1
	FeatureCapChangeable = 1 << 2
)

// NumberOfQueues encodes the Number of Queues feature (CDW11 of Set
// Features, FID 0x07): nsq I/O submission queues and ncq I/O completion
// queues requested, 1-based counts encoded 0's based, NSQR in bits 15:0 and
// NCQR in bits 31:16. Counts of 0 are raised to 1 and counts above 65535 are
// impossible; 65535 (0xFFFF 0's based would be 65536) is the most the
// encoding allows and the spec forbids requesting it, so counts are clamped
// to 65534. NVMe Base 2.0, 5.27.1.7.
func NumberOfQueues(nsq, ncq uint16) uint32 {
	enc := func(n uint16) uint32 {
		if n == 0 {
			n = 1
		}
		if n > 65534 {
			n = 65534
		}
		return uint32(n - 1)
	}
	return enc(nsq) | enc(ncq)<<16
}

// ParseNumberOfQueues decodes completion DW0 of the Number of Queues
// feature, NSQA in bits 15:0 and NCQA in bits 31:16 (0's based), into the
// 1-based counts of I/O submission and completion queues allocated. A raw
// 0xFFFF (65536 queues, not allowed by the spec) is clamped to 65535.
func ParseNumberOfQueues(dw0 uint32) (nsq, ncq uint16) {
	dec := func(v uint16) uint16 {
		if v == 0xffff {
			return 0xffff
		}
		return v + 1
	}
	return dec(uint16(dw0)), dec(uint16(dw0 >> 16))
}

// VolatileWriteCacheEnable is bit 0 of the Volatile Write Cache feature
// (CDW11 / DW0). NVMe Base 2.0, 5.27.1.6.
const VolatileWriteCacheEnable = 1 << 0

// Arbitration feature fields. NVMe Base 2.0, 5.27.1.1:
// HPW (31:24), MPW (23:16), LPW (15:8), AB (2:0, 2^n commands, 7 = no limit).
type Arbitration uint32

// AB is the arbitration burst, log2; 7 means no limit.
func (a Arbitration) AB() uint8 { return uint8(a) & 0x7 }

// LPW is the low priority weight, 0's based.
func (a Arbitration) LPW() uint8 { return uint8(a >> 8) }

// MPW is the medium priority weight, 0's based.
func (a Arbitration) MPW() uint8 { return uint8(a >> 16) }

// HPW is the high priority weight, 0's based.
func (a Arbitration) HPW() uint8 { return uint8(a >> 24) }

// TemperatureThreshold encodes CDW11 of the Temperature Threshold feature:
// TMPTH (15:0, kelvin), TMPSEL (19:16, 0 composite, 1-8 sensors, 0xF all),
// THSEL (21:20, 0 over, 1 under). NVMe Base 2.0, 5.27.1.4.
func TemperatureThreshold(kelvin uint16, tmpsel, thsel uint8) uint32 {
	return uint32(kelvin) | uint32(tmpsel&0xf)<<16 | uint32(thsel&0x3)<<20
}
