package spec

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestLogNames(t *testing.T) {
	tests := []struct {
		lid  uint8
		want string
	}{
		{LogErrorInformation, "Error Information"},
		{LogSMART, "SMART / Health Information"},
		{LogFirmwareSlot, "Firmware Slot Information"},
		{LogCommandEffects, "Commands Supported and Effects"},
		{LogSanitizeStatus, "Sanitize Status"},
		{0x42, "Unknown (lid 0x42)"},
		{0xca, "Vendor Specific (lid 0xca)"},
	}
	for _, tt := range tests {
		if got := LogName(tt.lid); got != tt.want {
			t.Errorf("LogName(%#x) = %q, want %q", tt.lid, got, tt.want)
		}
	}
}

func TestParseErrorLog(t *testing.T) {
	b := make([]byte, 4*ErrorLogEntrySize)
	le := binary.LittleEndian
	// Entry 0: count 7, SQ 1, CID 0x20, LBA out of range with DNR and phase
	// set, parameter at byte 40 bit 0, LBA 0x1000, NSID 1.
	e := b[0:64]
	le.PutUint64(e[0:], 7)
	le.PutUint16(e[8:], 1)
	le.PutUint16(e[10:], 0x20)
	le.PutUint16(e[12:], (MakeStatus(SCTGeneric, SCLBAOutOfRange) | 1<<14).CQEField(true))
	le.PutUint16(e[14:], 40)
	le.PutUint64(e[16:], 0x1000)
	le.PutUint32(e[24:], 1)
	e[28] = 0xc0
	e[29] = 3
	le.PutUint64(e[32:], 0xabcdef)
	le.PutUint16(e[40:], 0x55)
	e[63] = 1
	// Entry 1 empty (count 0), entry 2 a media error, entry 3 empty.
	le.PutUint64(b[128:], 6)
	le.PutUint16(b[128+12:], MakeStatus(SCTMediaError, SCUnrecoveredReadError).CQEField(false))
	le.PutUint64(b[128+16:], 99)

	got, err := ParseErrorLog(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d entries, want 2: %+v", len(got), got)
	}
	want0 := ErrorLogEntry{
		ErrorCount: 7, SQID: 1, CID: 0x20, Status: MakeStatus(SCTGeneric, SCLBAOutOfRange) | 1<<14,
		ParamErrorLocation: 40, LBA: 0x1000, NSID: 1, VendorInfoLogPage: 0xc0, TransportType: 3,
		CommandSpecific: 0xabcdef, TransportSpecific: 0x55, LogPageVersion: 1,
	}
	if got[0] != want0 {
		t.Errorf("entry 0 = %+v\nwant      %+v", got[0], want0)
	}
	if !got[0].Status.DNR() || got[0].Status.Name() != "LBA Out of Range" {
		t.Errorf("entry 0 status %v", got[0].Status)
	}
	if got[1].ErrorCount != 6 || got[1].LBA != 99 || got[1].Status.Name() != "Unrecovered Read Error" {
		t.Errorf("entry 1 = %+v", got[1])
	}

	if _, err := ParseErrorLog(make([]byte, 63)); !errors.Is(err, ErrShort) {
		t.Errorf("short: %v", err)
	}
	if _, err := ParseErrorLog(make([]byte, 100)); !errors.Is(err, ErrMalformed) {
		t.Errorf("ragged: %v", err)
	}
	if got, err := ParseErrorLog(make([]byte, 64)); err != nil || len(got) != 0 {
		t.Errorf("all empty: %v, %v", got, err)
	}
}

func TestParseSMARTLog(t *testing.T) {
	b := make([]byte, SMARTLogSize)
	le := binary.LittleEndian
	b[0] = SMARTWarnTemperature | SMARTWarnReadOnly
	le.PutUint16(b[1:], 310) // 37 C
	b[3] = 100
	b[4] = 10
	b[5] = 3
	b[6] = 1
	for i := range 10 {
		// counters 0x20.. 0xb0: value i+1 in the low half, and the last one
		// also sets the high half.
		le.PutUint64(b[0x20+16*i:], uint64(1000*(i+1)))
	}
	le.PutUint64(b[0xb8:], 2)
	le.PutUint32(b[0xc0:], 11)
	le.PutUint32(b[0xc4:], 12)
	for i := range 8 {
		le.PutUint16(b[0xc8+2*i:], uint16(300+i))
	}
	le.PutUint32(b[0xd8:], 21)
	le.PutUint32(b[0xdc:], 22)
	le.PutUint32(b[0xe0:], 23)
	le.PutUint32(b[0xe4:], 24)
	b[0xe8] = 0xff // reserved, ignored

	s, err := ParseSMARTLog(b)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"CriticalWarning", s.CriticalWarning, uint8(0x0a)},
		{"CompositeTemperature", s.CompositeTemperature, uint16(310)},
		{"Celsius", CelsiusFromKelvin(s.CompositeTemperature), 37},
		{"AvailableSpare", s.AvailableSpare, uint8(100)},
		{"AvailableSpareThresh", s.AvailableSpareThresh, uint8(10)},
		{"PercentageUsed", s.PercentageUsed, uint8(3)},
		{"EnduranceGroupWarning", s.EnduranceGroupWarning, uint8(1)},
		{"DataUnitsRead", s.DataUnitsRead, Uint128{Lo: 1000}},
		{"DataUnitsWritten", s.DataUnitsWritten, Uint128{Lo: 2000}},
		{"HostReadCommands", s.HostReadCommands, Uint128{Lo: 3000}},
		{"HostWriteCommands", s.HostWriteCommands, Uint128{Lo: 4000}},
		{"ControllerBusyTime", s.ControllerBusyTime, Uint128{Lo: 5000}},
		{"PowerCycles", s.PowerCycles, Uint128{Lo: 6000}},
		{"PowerOnHours", s.PowerOnHours, Uint128{Lo: 7000}},
		{"UnsafeShutdowns", s.UnsafeShutdowns, Uint128{Lo: 8000}},
		{"MediaErrors", s.MediaErrors, Uint128{Lo: 9000}},
		{"ErrorLogEntries", s.ErrorLogEntries, Uint128{Lo: 10000, Hi: 2}},
		{"WarningTempTime", s.WarningTempTime, uint32(11)},
		{"CriticalTempTime", s.CriticalTempTime, uint32(12)},
		{"Sensor1", s.TemperatureSensors[0], uint16(300)},
		{"Sensor8", s.TemperatureSensors[7], uint16(307)},
		{"TMT1Count", s.ThermalMgmtT1Count, uint32(21)},
		{"TMT2Count", s.ThermalMgmtT2Count, uint32(22)},
		{"TMT1Time", s.ThermalMgmtT1Time, uint32(23)},
		{"TMT2Time", s.ThermalMgmtT2Time, uint32(24)},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	if s.ErrorLogEntries.String() != "36893488147419113232" {
		t.Errorf("ErrorLogEntries = %s", s.ErrorLogEntries)
	}
	if _, err := ParseSMARTLog(b[:511]); !errors.Is(err, ErrShort) {
		t.Errorf("short smart: %v", err)
	}
}

func TestParseFirmwareSlotLog(t *testing.T) {
	b := make([]byte, FirmwareSlotLogSize)
	b[0] = 2 | 3<<4 // active slot 2, next slot 3
	copy(b[8:], "1.0.0   ")
	copy(b[16:], "2.0.0\x00\x00\x00")
	copy(b[24:], "3.0.0-rc")
	copy(b[56:], "7       ")
	f, err := ParseFirmwareSlotLog(b)
	if err != nil {
		t.Fatal(err)
	}
	if f.ActiveSlot() != 2 || f.NextSlot() != 3 {
		t.Errorf("active %d next %d", f.ActiveSlot(), f.NextSlot())
	}
	want := [7]string{"1.0.0", "2.0.0", "3.0.0-rc", "", "", "", "7"}
	if f.FRS != want {
		t.Errorf("FRS = %q, want %q", f.FRS, want)
	}
	if _, err := ParseFirmwareSlotLog(b[:63]); !errors.Is(err, ErrShort) {
		t.Errorf("short: %v", err)
	}
}

func TestParseCommandEffectsLog(t *testing.T) {
	b := make([]byte, CommandEffectsLogSize)
	le := binary.LittleEndian
	le.PutUint32(b[4*int(AdminIdentify):], 1)
	le.PutUint32(b[4*int(AdminFormatNVM):], 1|1<<1|1<<2|1<<3|1<<4|2<<16|1<<19)
	le.PutUint32(b[1024+4*int(IOWrite):], 1|1<<1)
	le.PutUint32(b[1024+4*255:], 1)
	c, err := ParseCommandEffectsLog(b)
	if err != nil {
		t.Fatal(err)
	}
	id := c.Admin[AdminIdentify]
	if !id.CSUPP() || id.LBCC() || id.NCC() || id.NIC() || id.CCC() || id.CSE() != 0 || id.USS() {
		t.Errorf("identify effects %#x", uint32(id))
	}
	f := c.Admin[AdminFormatNVM]
	if !f.CSUPP() || !f.LBCC() || !f.NCC() || !f.NIC() || !f.CCC() || f.CSE() != 2 || !f.USS() {
		t.Errorf("format effects %#x", uint32(f))
	}
	if w := c.IO[IOWrite]; !w.CSUPP() || !w.LBCC() {
		t.Errorf("write effects %#x", uint32(w))
	}
	if c.IO[IORead].CSUPP() || !c.IO[255].CSUPP() || c.Admin[255].CSUPP() {
		t.Error("unexpected support bits")
	}
	if _, err := ParseCommandEffectsLog(b[:2047]); !errors.Is(err, ErrShort) {
		t.Errorf("short: %v", err)
	}
}
