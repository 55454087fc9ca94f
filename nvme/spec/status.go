package spec

import (
	"fmt"
	"strings"
)

// Status is the 15-bit status field of a completion queue entry, without
// the phase tag: CQE DW3 bits 31:17 shifted down, Status(raw >> 1) where raw
// is Completion.Status. NVMe Base 2.0, 4.6.1 "Status Field Definition":
//
//	bit  14   13   12:11  10:8  7:0
//	     DNR  M    CRD    SCT   SC
type Status uint16

// StatusFromCQE converts the Status half-word of a completion queue entry
// (DW3 bits 31:16, phase tag in bit 0) to a Status.
func StatusFromCQE(statusField uint16) Status { return Status(statusField >> 1) }

// MakeStatus builds a Status from a status code type and a status code, with
// CRD, More and DNR clear.
func MakeStatus(sct, sc uint8) Status { return Status(uint16(sct&7)<<8 | uint16(sc)) }

// CQEField returns s shifted into place for Completion.Status with the given
// phase tag: what a controller (or the test controller) writes.
func (s Status) CQEField(phase bool) uint16 {
	v := uint16(s&0x7fff) << 1
	if phase {
		v |= 1
	}
	return v
}

// SC is the Status Code, bits 7:0.
func (s Status) SC() uint8 { return uint8(s) }

// SCT is the Status Code Type, bits 10:8.
func (s Status) SCT() uint8 { return uint8(s>>8) & 0x7 }

// CRD is Command Retry Delay, bits 12:11: 0 means retry at once, 1-3 select
// Command Retry Delay Time 1-3 (CRDT1-3 in Identify Controller, 100 ms units).
func (s Status) CRD() uint8 { return uint8(s>>11) & 0x3 }

// More, bit 13: more status information is available in the Error
// Information log page.
func (s Status) More() bool { return s&(1<<13) != 0 }

// DNR is Do Not Retry, bit 14: the same command would fail again.
func (s Status) DNR() bool { return s&(1<<14) != 0 }

// Success reports whether s is Generic/Successful Completion (SCT 0, SC 0).
// CRD, More and DNR do not count.
func (s Status) Success() bool { return s&0x7ff == 0 }

// Code returns s with CRD, More and DNR cleared: SCT and SC only, for
// comparing against MakeStatus values.
func (s Status) Code() Status { return s & 0x7ff }

// Name returns the spec name of the status code, e.g. "Invalid Field in
// Command". See StatusName.
func (s Status) Name() string { return StatusName(s.SCT(), s.SC()) }

// String formats s as "Generic/Invalid Field in Command (sct 0x0 sc 0x02)",
// followed by " more", " dnr" and " crd N" when those are set.
func (s Status) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s (sct %#x sc 0x%02x)", SCTName(s.SCT()), s.Name(), s.SCT(), s.SC())
	if s.More() {
		b.WriteString(" more")
	}
	if s.DNR() {
		b.WriteString(" dnr")
	}
	if c := s.CRD(); c != 0 {
		fmt.Fprintf(&b, " crd %d", c)
	}
	return b.String()
}

// Status Code Types. NVMe Base 2.0.
const (
	SCTGeneric         = 0 // Generic Command Status
	SCTCommandSpecific = 1 // Command Specific Status
	SCTMediaError      = 2 // Media and Data Integrity Errors
	SCTPath            = 3 // Path Related Status
	SCTVendor          = 7 // Vendor Specific
)

// SCTName returns the short name of a status code type: "Generic",
// "Command Specific", "Media Error", "Path", "Vendor Specific" or
// "Reserved".
func SCTName(sct uint8) string {
	switch sct {
	case SCTGeneric:
		return "Generic"
	case SCTCommandSpecific:
		return "Command Specific"
	case SCTMediaError:
		return "Media Error"
	case SCTPath:
		return "Path"
	case SCTVendor:
		return "Vendor Specific"
	}
	return fmt.Sprintf("Reserved SCT %d", sct)
}

// Generic Command Status values (SCT 0). NVMe Base 2.0, 4.6.1.2.1; 0x80 and
// up for the NVM Command Set from NVM Command Set 1.0,
// 3.4.1 and's I/O Command Set specific range.
const (
	SCSuccess                       = 0x00
	SCInvalidOpcode                 = 0x01
	SCInvalidField                  = 0x02
	SCCIDConflict                   = 0x03
	SCDataTransferError             = 0x04
	SCAbortedPowerLoss              = 0x05
	SCInternalError                 = 0x06
	SCAbortRequested                = 0x07
	SCAbortedSQDeletion             = 0x08
	SCAbortedFailedFused            = 0x09
	SCAbortedMissingFused           = 0x0a
	SCInvalidNamespace              = 0x0b // Invalid Namespace or Format
	SCCommandSequenceError          = 0x0c
	SCInvalidSGLSegmentDescriptor   = 0x0d
	SCInvalidNumberOfSGLDescriptors = 0x0e
	SCDataSGLLengthInvalid          = 0x0f
	SCMetadataSGLLengthInvalid      = 0x10
	SCSGLDescriptorTypeInvalid      = 0x11
	SCInvalidUseOfCMB               = 0x12
	SCPRPOffsetInvalid              = 0x13
	SCAtomicWriteUnitExceeded       = 0x14
	SCOperationDenied               = 0x15
	SCSGLOffsetInvalid              = 0x16
	SCHostIDInconsistentFormat      = 0x18
	SCKeepAliveTimerExpired         = 0x19
	SCKeepAliveTimeoutInvalid       = 0x1a
	SCAbortedPreemptAndAbort        = 0x1b
	SCSanitizeFailed                = 0x1c
	SCSanitizeInProgress            = 0x1d
	SCSGLDataBlockGranularity       = 0x1e
	SCNotSupportedForQueueInCMB     = 0x1f
	SCNamespaceWriteProtected       = 0x20
	SCCommandInterrupted            = 0x21
	SCTransientTransportError       = 0x22
	SCProhibitedByLockdown          = 0x23
	SCAdminMediaNotReady            = 0x24

	// NVM Command Set specific generic status (SCT 0, 0x80-0xBF).
	SCLBAOutOfRange       = 0x80
	SCCapacityExceeded    = 0x81
	SCNamespaceNotReady   = 0x82
	SCReservationConflict = 0x83
	SCFormatInProgress    = 0x84
	SCInvalidValueSize    = 0x85 // Key Value Command Set
	SCInvalidKeySize      = 0x86 // Key Value Command Set
	SCKVKeyDoesNotExist   = 0x87 // Key Value Command Set
	SCUnrecoveredErrorKV  = 0x88 // Key Value Command Set
	SCKeyExists           = 0x89 // Key Value Command Set
)

// Command Specific Status values (SCT 1). NVMe Base 2.0, 4.6.1.2.2; 0x80 and
// up from NVM Command Set 1.0, and the Zoned
// Namespace Command Set 1.1, 4.1.1.
const (
	SCCompletionQueueInvalid          = 0x00
	SCInvalidQueueIdentifier          = 0x01
	SCInvalidQueueSize                = 0x02
	SCAbortCommandLimitExceeded       = 0x03
	SCAsyncEventLimitExceeded         = 0x05
	SCInvalidFirmwareSlot             = 0x06
	SCInvalidFirmwareImage            = 0x07
	SCInvalidInterruptVector          = 0x08
	SCInvalidLogPage                  = 0x09
	SCInvalidFormat                   = 0x0a
	SCFirmwareNeedsConventionalReset  = 0x0b
	SCInvalidQueueDeletion            = 0x0c
	SCFeatureNotSaveable              = 0x0d
	SCFeatureNotChangeable            = 0x0e
	SCFeatureNotNamespaceSpecific     = 0x0f
	SCFirmwareNeedsSubsystemReset     = 0x10
	SCFirmwareNeedsControllerReset    = 0x11
	SCFirmwareNeedsMaxTimeViolation   = 0x12
	SCFirmwareActivationProhibited    = 0x13
	SCOverlappingRange                = 0x14
	SCNamespaceInsufficientCapacity   = 0x15
	SCNamespaceIDUnavailable          = 0x16
	SCNamespaceAlreadyAttached        = 0x18
	SCNamespaceIsPrivate              = 0x19
	SCNamespaceNotAttached            = 0x1a
	SCThinProvisioningNotSupported    = 0x1b
	SCControllerListInvalid           = 0x1c
	SCSelfTestInProgress              = 0x1d
	SCBootPartitionWriteProhibited    = 0x1e
	SCInvalidControllerIdentifier     = 0x1f
	SCInvalidSecondaryControllerState = 0x20
	SCInvalidControllerResources      = 0x21
	SCInvalidResourceIdentifier       = 0x22
	SCSanitizeProhibitedPMR           = 0x23
	SCANAGroupIDInvalid               = 0x24
	SCANAAttachFailed                 = 0x25
	SCInsufficientCapacity            = 0x26
	SCNamespaceAttachmentLimit        = 0x27
	SCProhibitionNotSupported         = 0x28
	SCIOCSNotSupported                = 0x29
	SCIOCSNotEnabled                  = 0x2a
	SCIOCSCombinationRejected         = 0x2b
	SCInvalidIOCS                     = 0x2c
	SCIdentifierUnavailable           = 0x2d

	// NVM Command Set specific (SCT 1, 0x80-0xBF).
	SCConflictingAttributes      = 0x80
	SCInvalidProtectionInfo      = 0x81
	SCWriteToReadOnlyRange       = 0x82
	SCCommandSizeLimitExceeded   = 0x83
	SCZonedBoundaryError         = 0xb8 // Zoned Namespace Command Set
	SCZoneIsFull                 = 0xb9
	SCZoneIsReadOnly             = 0xba
	SCZoneIsOffline              = 0xbb
	SCZoneInvalidWrite           = 0xbc
	SCTooManyActiveZones         = 0xbd
	SCTooManyOpenZones           = 0xbe
	SCInvalidZoneStateTransition = 0xbf
)

// Media and Data Integrity Errors (SCT 2). NVMe Base 2.0, 4.6.1.2.3
// (0x00-0x7F reserved); NVM Command Set 1.0.
const (
	SCWriteFault                  = 0x80
	SCUnrecoveredReadError        = 0x81
	SCGuardCheckError             = 0x82
	SCApplicationTagCheckError    = 0x83
	SCReferenceTagCheckError      = 0x84
	SCCompareFailure              = 0x85
	SCAccessDenied                = 0x86
	SCDeallocatedOrUnwrittenBlock = 0x87
	SCStorageTagCheckError        = 0x88
)

// Path Related Status (SCT 3). NVMe Base 2.0, 4.6.1.2.4.
const (
	SCInternalPathError        = 0x00
	SCAsymmetricPersistentLoss = 0x01
	SCAsymmetricInaccessible   = 0x02
	SCAsymmetricTransition     = 0x03
	SCControllerPathingError   = 0x60
	SCHostPathingError         = 0x70
	SCCommandAbortedByHost     = 0x71
)

// SCVendorSpecificMin is the first vendor specific status code of SCTs 0
// to 3: 0xC0-0xFF are vendor specific, 0x80-0xBF I/O Command Set specific.
const SCVendorSpecificMin = 0xc0

var genericStatusNames = map[uint8]string{
	SCSuccess:                       "Successful Completion",
	SCInvalidOpcode:                 "Invalid Command Opcode",
	SCInvalidField:                  "Invalid Field in Command",
	SCCIDConflict:                   "Command ID Conflict",
	SCDataTransferError:             "Data Transfer Error",
	SCAbortedPowerLoss:              "Commands Aborted due to Power Loss Notification",
	SCInternalError:                 "Internal Error",
	SCAbortRequested:                "Command Abort Requested",
	SCAbortedSQDeletion:             "Command Aborted due to SQ Deletion",
	SCAbortedFailedFused:            "Command Aborted due to Failed Fused Command",
	SCAbortedMissingFused:           "Command Aborted due to Missing Fused Command",
	SCInvalidNamespace:              "Invalid Namespace or Format",
	SCCommandSequenceError:          "Command Sequence Error",
	SCInvalidSGLSegmentDescriptor:   "Invalid SGL Segment Descriptor",
	SCInvalidNumberOfSGLDescriptors: "Invalid Number of SGL Descriptors",
	SCDataSGLLengthInvalid:          "Data SGL Length Invalid",
	SCMetadataSGLLengthInvalid:      "Metadata SGL Length Invalid",
	SCSGLDescriptorTypeInvalid:      "SGL Descriptor Type Invalid",
	SCInvalidUseOfCMB:               "Invalid Use of Controller Memory Buffer",
	SCPRPOffsetInvalid:              "PRP Offset Invalid",
	SCAtomicWriteUnitExceeded:       "Atomic Write Unit Exceeded",
	SCOperationDenied:               "Operation Denied",
	SCSGLOffsetInvalid:              "SGL Offset Invalid",
	SCHostIDInconsistentFormat:      "Host Identifier Inconsistent Format",
	SCKeepAliveTimerExpired:         "Keep Alive Timer Expired",
	SCKeepAliveTimeoutInvalid:       "Keep Alive Timeout Invalid",
	SCAbortedPreemptAndAbort:        "Command Aborted due to Preempt and Abort",
	SCSanitizeFailed:                "Sanitize Failed",
	SCSanitizeInProgress:            "Sanitize In Progress",
	SCSGLDataBlockGranularity:       "SGL Data Block Granularity Invalid",
	SCNotSupportedForQueueInCMB:     "Command Not Supported for Queue in CMB",
	SCNamespaceWriteProtected:       "Namespace is Write Protected",
	SCCommandInterrupted:            "Command Interrupted",
	SCTransientTransportError:       "Transient Transport Error",
	SCProhibitedByLockdown:          "Command Prohibited by Command and Feature Lockdown",
	SCAdminMediaNotReady:            "Admin Command Media Not Ready",

	SCLBAOutOfRange:       "LBA Out of Range",
	SCCapacityExceeded:    "Capacity Exceeded",
	SCNamespaceNotReady:   "Namespace Not Ready",
	SCReservationConflict: "Reservation Conflict",
	SCFormatInProgress:    "Format In Progress",
	SCInvalidValueSize:    "Invalid Value Size",
	SCInvalidKeySize:      "Invalid Key Size",
	SCKVKeyDoesNotExist:   "KV Key Does Not Exist",
	SCUnrecoveredErrorKV:  "Unrecovered Error",
	SCKeyExists:           "Key Exists",
}

var commandSpecificStatusNames = map[uint8]string{
	SCCompletionQueueInvalid:          "Completion Queue Invalid",
	SCInvalidQueueIdentifier:          "Invalid Queue Identifier",
	SCInvalidQueueSize:                "Invalid Queue Size",
	SCAbortCommandLimitExceeded:       "Abort Command Limit Exceeded",
	SCAsyncEventLimitExceeded:         "Asynchronous Event Request Limit Exceeded",
	SCInvalidFirmwareSlot:             "Invalid Firmware Slot",
	SCInvalidFirmwareImage:            "Invalid Firmware Image",
	SCInvalidInterruptVector:          "Invalid Interrupt Vector",
	SCInvalidLogPage:                  "Invalid Log Page",
	SCInvalidFormat:                   "Invalid Format",
	SCFirmwareNeedsConventionalReset:  "Firmware Activation Requires Conventional Reset",
	SCInvalidQueueDeletion:            "Invalid Queue Deletion",
	SCFeatureNotSaveable:              "Feature Identifier Not Saveable",
	SCFeatureNotChangeable:            "Feature Not Changeable",
	SCFeatureNotNamespaceSpecific:     "Feature Not Namespace Specific",
	SCFirmwareNeedsSubsystemReset:     "Firmware Activation Requires NVM Subsystem Reset",
	SCFirmwareNeedsControllerReset:    "Firmware Activation Requires Controller Level Reset",
	SCFirmwareNeedsMaxTimeViolation:   "Firmware Activation Requires Maximum Time Violation",
	SCFirmwareActivationProhibited:    "Firmware Activation Prohibited",
	SCOverlappingRange:                "Overlapping Range",
	SCNamespaceInsufficientCapacity:   "Namespace Insufficient Capacity",
	SCNamespaceIDUnavailable:          "Namespace Identifier Unavailable",
	SCNamespaceAlreadyAttached:        "Namespace Already Attached",
	SCNamespaceIsPrivate:              "Namespace Is Private",
	SCNamespaceNotAttached:            "Namespace Not Attached",
	SCThinProvisioningNotSupported:    "Thin Provisioning Not Supported",
	SCControllerListInvalid:           "Controller List Invalid",
	SCSelfTestInProgress:              "Device Self-test In Progress",
	SCBootPartitionWriteProhibited:    "Boot Partition Write Prohibited",
	SCInvalidControllerIdentifier:     "Invalid Controller Identifier",
	SCInvalidSecondaryControllerState: "Invalid Secondary Controller State",
	SCInvalidControllerResources:      "Invalid Number of Controller Resources",
	SCInvalidResourceIdentifier:       "Invalid Resource Identifier",
	SCSanitizeProhibitedPMR:           "Sanitize Prohibited While Persistent Memory Region is Enabled",
	SCANAGroupIDInvalid:               "ANA Group Identifier Invalid",
	SCANAAttachFailed:                 "ANA Attach Failed",
	SCInsufficientCapacity:            "Insufficient Capacity",
	SCNamespaceAttachmentLimit:        "Namespace Attachment Limit Exceeded",
	SCProhibitionNotSupported:         "Prohibition of Command Execution Not Supported",
	SCIOCSNotSupported:                "I/O Command Set Not Supported",
	SCIOCSNotEnabled:                  "I/O Command Set Not Enabled",
	SCIOCSCombinationRejected:         "I/O Command Set Combination Rejected",
	SCInvalidIOCS:                     "Invalid I/O Command Set",
	SCIdentifierUnavailable:           "Identifier Unavailable",

	SCConflictingAttributes:      "Conflicting Attributes",
	SCInvalidProtectionInfo:      "Invalid Protection Information",
	SCWriteToReadOnlyRange:       "Attempted Write to Read Only Range",
	SCCommandSizeLimitExceeded:   "Command Size Limit Exceeded",
	SCZonedBoundaryError:         "Zoned Boundary Error",
	SCZoneIsFull:                 "Zone Is Full",
	SCZoneIsReadOnly:             "Zone Is Read Only",
	SCZoneIsOffline:              "Zone Is Offline",
	SCZoneInvalidWrite:           "Zone Invalid Write",
	SCTooManyActiveZones:         "Too Many Active Zones",
	SCTooManyOpenZones:           "Too Many Open Zones",
	SCInvalidZoneStateTransition: "Invalid Zone State Transition",
}

var mediaErrorStatusNames = map[uint8]string{
	SCWriteFault:                  "Write Fault",
	SCUnrecoveredReadError:        "Unrecovered Read Error",
	SCGuardCheckError:             "End-to-end Guard Check Error",
	SCApplicationTagCheckError:    "End-to-end Application Tag Check Error",
	SCReferenceTagCheckError:      "End-to-end Reference Tag Check Error",
	SCCompareFailure:              "Compare Failure",
	SCAccessDenied:                "Access Denied",
	SCDeallocatedOrUnwrittenBlock: "Deallocated or Unwritten Logical Block",
	SCStorageTagCheckError:        "End-to-end Storage Tag Check Error",
}

var pathStatusNames = map[uint8]string{
	SCInternalPathError:        "Internal Path Error",
	SCAsymmetricPersistentLoss: "Asymmetric Access Persistent Loss",
	SCAsymmetricInaccessible:   "Asymmetric Access Inaccessible",
	SCAsymmetricTransition:     "Asymmetric Access Transition",
	SCControllerPathingError:   "Controller Pathing Error",
	SCHostPathingError:         "Host Pathing Error",
	SCCommandAbortedByHost:     "Command Aborted By Host",
}

// statusTables maps an SCT to its table of named codes; nil for SCTs with
// no defined codes.
var statusTables = [8]map[uint8]string{
	SCTGeneric:         genericStatusNames,
	SCTCommandSpecific: commandSpecificStatusNames,
	SCTMediaError:      mediaErrorStatusNames,
	SCTPath:            pathStatusNames,
}

// StatusName returns the spec name of status code sc of type sct, e.g.
// StatusName(SCTGeneric, SCInvalidField) is "Invalid Field in Command".
// It never returns "": codes the tables do not know are named after their
// range, "Reserved", "Vendor Specific (sc 0xc3)", "Directive Specific
// (sc 0x70)" or "I/O Command Set Specific (sc 0x9a)".
func StatusName(sct, sc uint8) string {
	sct &= 7
	if t := statusTables[sct]; t != nil {
		if n, ok := t[sc]; ok {
			return n
		}
	}
	switch sct {
	case SCTVendor:
		return fmt.Sprintf("Vendor Specific (sc 0x%02x)", sc)
	case SCTGeneric, SCTCommandSpecific, SCTMediaError, SCTPath:
		switch {
		case sc >= SCVendorSpecificMin:
			return fmt.Sprintf("Vendor Specific (sc 0x%02x)", sc)
		case sc >= 0x80:
			return fmt.Sprintf("I/O Command Set Specific (sc 0x%02x)", sc)
		case sct == SCTCommandSpecific && sc >= 0x70:
			return fmt.Sprintf("Directive Specific (sc 0x%02x)", sc)
		}
	}
	return "Reserved"
}

// StatusCodes returns the status codes of type sct that have a name in the
// tables, in no particular order. It is for tools and tests that list the
// tables.
func StatusCodes(sct uint8) []uint8 {
	t := statusTables[sct&7]
	out := make([]uint8, 0, len(t))
	for sc := range t {
		out = append(out, sc)
	}
	return out
}
