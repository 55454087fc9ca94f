package spec

import (
	"strings"
	"testing"
)

func TestStatusAccessors(t *testing.T) {
	tests := []struct {
		name      string
		cqe       uint16 // Completion.Status with phase
		sc, sct   uint8
		crd       uint8
		more, dnr bool
		success   bool
		str       string
	}{
		{"success phase 1", 0x0001, 0, 0, 0, false, false, true,
			"Generic/Successful Completion (sct 0x0 sc 0x00)"},
		{"success with dnr", 0x8000, 0, 0, 0, false, true, true,
			"Generic/Successful Completion (sct 0x0 sc 0x00) dnr"},
		// Invalid Field, DNR: status 0x4002 -> field 0x8004.
		{"invalid field dnr", 0x8004, 0x02, 0, 0, false, true, false,
			"Generic/Invalid Field in Command (sct 0x0 sc 0x02) dnr"},
		// Unrecovered read error, SCT 2 SC 0x81, More: 0x2281 -> 0x4502 | phase.
		{"media more", 0x4503, 0x81, 2, 0, true, false, false,
			"Media Error/Unrecovered Read Error (sct 0x2 sc 0x81) more"},
		// Invalid queue identifier SCT 1 SC 1 with CRD 2: 0x1101 -> 0x2202.
		{"cmd specific crd", 0x2202, 0x01, 1, 2, false, false, false,
			"Command Specific/Invalid Queue Identifier (sct 0x1 sc 0x01) crd 2"},
		// Vendor: SCT 7 SC 0xc3 -> 0x07c3 -> 0x0f86.
		{"vendor", 0x0f86, 0xc3, 7, 0, false, false, false,
			"Vendor Specific/Vendor Specific (sc 0xc3) (sct 0x7 sc 0xc3)"},
		// Path: Asymmetric Access Transition, SCT 3 SC 3 -> 0x0303 -> 0x0606.
		{"path", 0x0606, 0x03, 3, 0, false, false, false,
			"Path/Asymmetric Access Transition (sct 0x3 sc 0x03)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := StatusFromCQE(tt.cqe)
			if s.SC() != tt.sc || s.SCT() != tt.sct || s.CRD() != tt.crd || s.More() != tt.more || s.DNR() != tt.dnr || s.Success() != tt.success {
				t.Errorf("Status %#x: sc %#x sct %d crd %d more %t dnr %t success %t", uint16(s), s.SC(), s.SCT(), s.CRD(), s.More(), s.DNR(), s.Success())
			}
			if got := s.String(); got != tt.str {
				t.Errorf("String = %q, want %q", got, tt.str)
			}
			if back := s.CQEField(tt.cqe&1 != 0); back != tt.cqe {
				t.Errorf("CQEField = %#x, want %#x", back, tt.cqe)
			}
		})
	}
	if MakeStatus(SCTMediaError, SCWriteFault).Code() != MakeStatus(2, 0x80) || (MakeStatus(1, 2)|1<<14).Code() != MakeStatus(1, 2) {
		t.Error("MakeStatus/Code")
	}
}

func TestStatusTables(t *testing.T) {
	for sct := range uint8(8) {
		seen := map[string]uint8{}
		for _, sc := range StatusCodes(sct) {
			name := StatusName(sct, sc)
			if name == "" || name == "Reserved" || strings.Contains(name, "(sc ") {
				t.Errorf("sct %d sc %#x has table name %q", sct, sc, name)
			}
			if prev, dup := seen[name]; dup {
				t.Errorf("sct %d: %q names both %#x and %#x", sct, name, prev, sc)
			}
			seen[name] = sc
		}
		// Every code has some name.
		for sc := range 256 {
			if StatusName(sct, uint8(sc)) == "" {
				t.Errorf("StatusName(%d, %#x) is empty", sct, sc)
			}
		}
	}
	if n := len(StatusCodes(SCTGeneric)); n < 40 {
		t.Errorf("generic table has %d entries", n)
	}
	if n := len(StatusCodes(SCTCommandSpecific)); n < 50 {
		t.Errorf("command specific table has %d entries", n)
	}
	if n := len(StatusCodes(SCTMediaError)); n != 9 {
		t.Errorf("media table has %d entries, want 9", n)
	}
	if n := len(StatusCodes(SCTPath)); n != 7 {
		t.Errorf("path table has %d entries, want 7", n)
	}

	named := []struct {
		sct, sc uint8
		want    string
	}{
		{SCTGeneric, SCSuccess, "Successful Completion"},
		{SCTGeneric, SCInvalidOpcode, "Invalid Command Opcode"},
		{SCTGeneric, SCCIDConflict, "Command ID Conflict"},
		{SCTGeneric, SCAbortedSQDeletion, "Command Aborted due to SQ Deletion"},
		{SCTGeneric, SCInvalidNamespace, "Invalid Namespace or Format"},
		{SCTGeneric, SCAdminMediaNotReady, "Admin Command Media Not Ready"},
		{SCTGeneric, SCLBAOutOfRange, "LBA Out of Range"},
		{SCTGeneric, SCNamespaceNotReady, "Namespace Not Ready"},
		{SCTGeneric, SCFormatInProgress, "Format In Progress"},
		{SCTCommandSpecific, SCCompletionQueueInvalid, "Completion Queue Invalid"},
		{SCTCommandSpecific, SCInvalidQueueSize, "Invalid Queue Size"},
		{SCTCommandSpecific, SCAbortCommandLimitExceeded, "Abort Command Limit Exceeded"},
		{SCTCommandSpecific, SCAsyncEventLimitExceeded, "Asynchronous Event Request Limit Exceeded"},
		{SCTCommandSpecific, SCInvalidFirmwareSlot, "Invalid Firmware Slot"},
		{SCTCommandSpecific, SCInvalidFormat, "Invalid Format"},
		{SCTCommandSpecific, SCIdentifierUnavailable, "Identifier Unavailable"},
		{SCTCommandSpecific, SCConflictingAttributes, "Conflicting Attributes"},
		{SCTCommandSpecific, SCInvalidProtectionInfo, "Invalid Protection Information"},
		{SCTCommandSpecific, SCWriteToReadOnlyRange, "Attempted Write to Read Only Range"},
		{SCTMediaError, SCWriteFault, "Write Fault"},
		{SCTMediaError, SCCompareFailure, "Compare Failure"},
		{SCTMediaError, SCAccessDenied, "Access Denied"},
		{SCTMediaError, SCDeallocatedOrUnwrittenBlock, "Deallocated or Unwritten Logical Block"},
		{SCTPath, SCCommandAbortedByHost, "Command Aborted By Host"},
		// Unknowns by range.
		{SCTGeneric, 0x17, "Reserved"},
		{SCTGeneric, 0x7f, "Reserved"},
		{SCTGeneric, 0x9a, "I/O Command Set Specific (sc 0x9a)"},
		{SCTGeneric, 0xc0, "Vendor Specific (sc 0xc0)"},
		{SCTCommandSpecific, 0x04, "Reserved"},
		{SCTCommandSpecific, 0x70, "Directive Specific (sc 0x70)"},
		{SCTCommandSpecific, 0xff, "Vendor Specific (sc 0xff)"},
		{SCTMediaError, 0x00, "Reserved"},
		{SCTPath, 0x04, "Reserved"},
		{SCTPath, 0xe0, "Vendor Specific (sc 0xe0)"},
		{4, 0x00, "Reserved"},
		{SCTVendor, 0x00, "Vendor Specific (sc 0x00)"},
	}
	for _, n := range named {
		if got := StatusName(n.sct, n.sc); got != n.want {
			t.Errorf("StatusName(%d, %#x) = %q, want %q", n.sct, n.sc, got, n.want)
		}
	}
	if SCTName(5) != "Reserved SCT 5" || SCTName(SCTMediaError) != "Media Error" {
		t.Error("SCTName")
	}
}

func TestOpcodeNames(t *testing.T) {
	tests := []struct {
		f    func(Opcode) string
		op   Opcode
		want string
	}{
		{AdminOpcodeName, AdminIdentify, "Identify"},
		{AdminOpcodeName, AdminCreateIOSQ, "Create I/O Submission Queue"},
		{AdminOpcodeName, AdminFormatNVM, "Format NVM"},
		{AdminOpcodeName, AdminKeepAlive, "Keep Alive"},
		{AdminOpcodeName, 0x03, "Unknown (opcode 0x03)"},
		{AdminOpcodeName, 0xc1, "Vendor Specific (opcode 0xc1)"},
		{IOOpcodeName, IORead, "Read"},
		{IOOpcodeName, IOWriteZeroes, "Write Zeroes"},
		{IOOpcodeName, IODatasetManagement, "Dataset Management"},
		{IOOpcodeName, IOVerify, "Verify"},
		{IOOpcodeName, 0x03, "Unknown (opcode 0x03)"},
		{IOOpcodeName, 0x81, "Vendor Specific (opcode 0x81)"},
	}
	for _, tt := range tests {
		if got := tt.f(tt.op); got != tt.want {
			t.Errorf("name(%#x) = %q, want %q", uint8(tt.op), got, tt.want)
		}
	}
	// Direction bits: write-like opcodes end in 01, read-like in 10.
	for _, op := range []Opcode{IOWrite, IOCompare, IODatasetManagement, AdminFirmwareDownload, AdminCreateIOSQ, AdminSetFeatures} {
		if op.Xfer() != XferHostToCtrl {
			t.Errorf("%s: xfer %d", IOOpcodeName(op), op.Xfer())
		}
	}
	for _, op := range []Opcode{IORead, AdminGetLogPage, AdminIdentify, AdminGetFeatures} {
		if op.Xfer() != XferCtrlToHost {
			t.Errorf("%#x: xfer %d", uint8(op), op.Xfer())
		}
	}
	seen := map[string]bool{}
	for op := range 256 {
		n := AdminOpcodeName(Opcode(op))
		if seen[n] {
			t.Errorf("admin name %q twice", n)
		}
		seen[n] = true
	}
}

func TestGetLogPageDwords(t *testing.T) {
	// SMART, 512 bytes: NUMD = 127.
	c10, c11 := GetLogPageDwords(LogSMART, 0, false, 512)
	if c10 != 127<<16|0x02 || c11 != 0 {
		t.Errorf("smart: %#x %#x", c10, c11)
	}
	// 1 MiB with RAE: NUMD = 0x3ffff -> NUMDL 0xffff, NUMDU 3.
	c10, c11 = GetLogPageDwords(LogErrorInformation, 1, true, 1<<20)
	if c10 != 0xffff<<16|GetLogRAE|1<<8|0x01 || c11 != 3 {
		t.Errorf("big: %#x %#x", c10, c11)
	}
}

func TestFeatures(t *testing.T) {
	if FeatureName(FeatureNumberOfQueues) != "Number of Queues" || FeatureName(FeatureKeepAlive) != "Keep Alive Timer" {
		t.Error("feature names")
	}
	if FeatureName(0x42) != "Unknown (fid 0x42)" || FeatureName(0xc5) != "Vendor Specific (fid 0xc5)" {
		t.Errorf("unknown feature names: %q %q", FeatureName(0x42), FeatureName(0xc5))
	}
	nq := []struct {
		nsq, ncq uint16
		want     uint32
	}{
		{1, 1, 0x00000000},
		{64, 32, 0x001f003f},
		{0, 0, 0x00000000},         // raised to 1
		{65535, 65535, 0xfffdfffd}, // clamped to 65534
	}
	for _, tt := range nq {
		if got := NumberOfQueues(tt.nsq, tt.ncq); got != tt.want {
			t.Errorf("NumberOfQueues(%d, %d) = %#x, want %#x", tt.nsq, tt.ncq, got, tt.want)
		}
	}
	pq := []struct {
		dw0      uint32
		nsq, ncq uint16
	}{
		{0x00000000, 1, 1},
		{0x003f0007, 8, 64},
		{0xffffffff, 65535, 65535},
	}
	for _, tt := range pq {
		if s, c := ParseNumberOfQueues(tt.dw0); s != tt.nsq || c != tt.ncq {
			t.Errorf("ParseNumberOfQueues(%#x) = %d, %d, want %d, %d", tt.dw0, s, c, tt.nsq, tt.ncq)
		}
	}
	if a := Arbitration(0x04030201 | 7); a.AB() != 7 || a.LPW() != 2 || a.MPW() != 3 || a.HPW() != 4 {
		t.Errorf("arbitration %#x", uint32(a))
	}
	if TemperatureThreshold(350, 1, 1) != 350|1<<16|1<<20 {
		t.Error("TemperatureThreshold")
	}
}

func TestAsyncEvent(t *testing.T) {
	tests := []struct {
		ev             AsyncEvent
		typ, info, log uint8
		str            string
	}{
		{0x00040002, AEVTypeNotice, AEVNoticeNamespaceChanged, LogChangedNamespaces, "Notice/Namespace Attribute Changed (log 0x04)"},
		{0x00020101, AEVTypeSMART, AEVSMARTTemperature, LogSMART, "SMART / Health Status/Temperature Threshold (log 0x02)"},
		{0x00010500, AEVTypeError, AEVErrorFirmwareImageLoad, LogErrorInformation, "Error Status/Firmware Image Load Error (log 0x01)"},
		{0x00810106, AEVTypeIOCmdSpecific, AEVIOSanitizeCompleted, LogSanitizeStatus, "I/O Command Set Specific Status/Sanitize Operation Completed (log 0x81)"},
		{0x00c07707, AEVTypeVendor, 0x77, 0xc0, "Vendor Specific/Unknown (info 0x77) (log 0xc0)"},
		{0x00000003, 3, 0, 0, "Reserved/Unknown (info 0x00) (log 0x00)"},
	}
	for _, tt := range tests {
		if tt.ev.Type() != tt.typ || tt.ev.Info() != tt.info || tt.ev.LogPage() != tt.log || tt.ev.String() != tt.str {
			t.Errorf("AsyncEvent(%#x) = type %d info %#x log %#x %q", uint32(tt.ev), tt.ev.Type(), tt.ev.Info(), tt.ev.LogPage(), tt.ev.String())
		}
	}
}
