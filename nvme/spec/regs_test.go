package spec

import (
	"testing"
	"time"
)

func TestCAP(t *testing.T) {
	// A QEMU-like CAP: MQES 2047, CQR, TO 15 (7.5 s), DSTRD 0, NSSRS,
	// CSS NVM+IOCS, MPSMIN 0, MPSMAX 4, CMBS.
	// 0x07ff | 1<<16 | 0x0f<<24 | 1<<36 | 0x41<<37 | 4<<52 | 1<<57
	c := CAP(0x07ff | 1<<16 | 0x0f<<24 | 1<<36 | 0x41<<37 | 4<<52 | 1<<57)
	if got := uint64(c); got != 0x024008300f0107ff {
		t.Fatalf("hand-computed CAP = %#x, want 0x024008300f0107ff", got)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"MQES", c.MQES(), uint16(2047)},
		{"CQR", c.CQR(), true},
		{"AMS", c.AMS(), uint8(0)},
		{"TO", c.TO(), 7500 * time.Millisecond},
		{"DSTRD", c.DSTRD(), uint8(0)},
		{"NSSRS", c.NSSRS(), true},
		{"CSS", c.CSS(), uint8(0x41)},
		{"BPS", c.BPS(), false},
		{"MPSMIN", c.MPSMIN(), uint8(0)},
		{"MPSMAX", c.MPSMAX(), uint8(4)},
		{"PMRS", c.PMRS(), false},
		{"CMBS", c.CMBS(), true},
		{"MinPageSize", c.MinPageSize(), 4096},
		{"MaxPageSize", c.MaxPageSize(), 65536},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}

	// Every field at its maximum, from all ones.
	all := CAP(^uint64(0))
	allChecks := []struct {
		name      string
		got, want any
	}{
		{"MQES", all.MQES(), uint16(0xffff)},
		{"AMS", all.AMS(), uint8(3)},
		{"TO", all.TO(), 255 * 500 * time.Millisecond},
		{"DSTRD", all.DSTRD(), uint8(15)},
		{"CSS", all.CSS(), uint8(0xff)},
		{"CPS", all.CPS(), uint8(3)},
		{"MPSMIN", all.MPSMIN(), uint8(15)},
		{"MPSMAX", all.MPSMAX(), uint8(15)},
		{"CRMS", all.CRMS(), uint8(3)},
		{"BPS", all.BPS(), true},
		{"PMRS", all.PMRS(), true},
		{"NSSS", all.NSSS(), true},
		{"MinPageSize", all.MinPageSize(), 1 << 27},
	}
	for _, ck := range allChecks {
		if ck.got != ck.want {
			t.Errorf("all ones: %s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	// Single bits land in exactly one accessor.
	if c := CAP(1 << 45); !c.BPS() || c.CMBS() || c.PMRS() || c.NSSRS() {
		t.Errorf("CAP bit 45 decoded wrong: %v", c)
	}
	if c := CAP(1 << 56); !c.PMRS() || c.CMBS() || c.BPS() {
		t.Errorf("CAP bit 56 decoded wrong: %v", c)
	}
	if s := CAP(0).String(); s == "" {
		t.Error("empty CAP string")
	}
}

func TestVS(t *testing.T) {
	tests := []struct {
		v        VS
		maj      uint16
		min, ter uint8
		str      string
	}{
		{0x00010400, 1, 4, 0, "1.4.0"},
		{0x00020000, 2, 0, 0, "2.0.0"},
		{0x00010201, 1, 2, 1, "1.2.1"},
		{MakeVS(1, 3, 0), 1, 3, 0, "1.3.0"},
		{0xffffffff, 0xffff, 0xff, 0xff, "65535.255.255"},
	}
	for _, tt := range tests {
		if tt.v.Major() != tt.maj || tt.v.Minor() != tt.min || tt.v.Tertiary() != tt.ter || tt.v.String() != tt.str {
			t.Errorf("VS(%#x) = %d.%d.%d %q, want %d.%d.%d %q", uint32(tt.v), tt.v.Major(), tt.v.Minor(), tt.v.Tertiary(), tt.v.String(), tt.maj, tt.min, tt.ter, tt.str)
		}
	}
	if VS1_4 != MakeVS(1, 4, 0) || VS2_0 != MakeVS(2, 0, 0) {
		t.Error("version constants disagree with MakeVS")
	}
}

func TestCC(t *testing.T) {
	// The usual enable value: IOCQES 4, IOSQES 6, MPS 0, CSS NVM, EN.
	cc := CC(0).WithIOCQES(CQESLog2).WithIOSQES(SQESLog2).WithMPS(0).WithCSS(CCCSSNVM).WithAMS(CCAMSRoundRobin).WithEN(true)
	if uint32(cc) != 0x00460001 {
		t.Fatalf("enable CC = %#x, want 0x00460001", uint32(cc))
	}
	if !cc.EN() || cc.IOSQES() != 6 || cc.IOCQES() != 4 || cc.MPS() != 0 || cc.CSS() != 0 || cc.SHN() != 0 {
		t.Errorf("getters disagree: %v", cc)
	}
	// Shutdown notification keeps the rest.
	sh := cc.WithSHN(SHNNormal)
	if uint32(sh) != 0x00464001 || sh.SHN() != SHNNormal {
		t.Errorf("WithSHN(normal) = %#x, want 0x00464001", uint32(sh))
	}
	if ab := sh.WithSHN(SHNAbrupt); uint32(ab) != 0x00468001 || ab.SHN() != SHNAbrupt {
		t.Errorf("WithSHN(abrupt) = %#x, want 0x00468001", uint32(ab))
	}
	if off := cc.WithEN(false); uint32(off) != 0x00460000 || off.EN() {
		t.Errorf("WithEN(false) = %#x", uint32(off))
	}
	// Each setter touches only its field, and drops bits beyond it.
	type field struct {
		name  string
		set   func(CC, uint8) CC
		get   func(CC) uint8
		shift uint
		width uint
	}
	fields := []field{
		{"CSS", CC.WithCSS, CC.CSS, 4, 3},
		{"MPS", CC.WithMPS, CC.MPS, 7, 4},
		{"AMS", CC.WithAMS, CC.AMS, 11, 3},
		{"SHN", CC.WithSHN, CC.SHN, 14, 2},
		{"IOSQES", CC.WithIOSQES, CC.IOSQES, 16, 4},
		{"IOCQES", CC.WithIOCQES, CC.IOCQES, 20, 4},
	}
	for _, f := range fields {
		mask := uint32(1<<f.width-1) << f.shift
		got := f.set(CC(0), 0xff)
		if uint32(got) != mask {
			t.Errorf("With%s(0xff) on 0 = %#x, want %#x", f.name, uint32(got), mask)
		}
		if f.get(got) != uint8(1<<f.width-1) {
			t.Errorf("%s after With%s(0xff) = %d", f.name, f.name, f.get(got))
		}
		cleared := f.set(CC(0xffffffff), 0)
		if uint32(cleared) != ^mask {
			t.Errorf("With%s(0) on all ones = %#x, want %#x", f.name, uint32(cleared), ^mask)
		}
	}
	if c := CC(0).WithCRIME(true); !c.CRIME() || uint32(c) != 1<<24 {
		t.Errorf("WithCRIME = %#x", uint32(c))
	}
}

func TestCSTS(t *testing.T) {
	tests := []struct {
		v                        CSTS
		rdy, cfs, nssro, pp, rem bool
		shst                     uint8
	}{
		{0x0, false, false, false, false, false, SHSTNormal},
		{0x1, true, false, false, false, false, SHSTNormal},
		{0x3, true, true, false, false, false, SHSTNormal},
		{0x5, true, false, false, false, false, SHSTOccurring},
		{0x9, true, false, false, false, false, SHSTComplete},
		{0x10, false, false, true, false, false, SHSTNormal},
		{0x20, false, false, false, true, false, SHSTNormal},
		{0xffffffff, true, true, true, true, true, 3},
	}
	for _, tt := range tests {
		v := tt.v
		if v.RDY() != tt.rdy || v.CFS() != tt.cfs || v.NSSRO() != tt.nssro || v.PP() != tt.pp || v.Removed() != tt.rem || v.SHST() != tt.shst {
			t.Errorf("CSTS(%#x) decoded as %v", uint32(v), v)
		}
	}
	if CSTS(0xfffffffe).Removed() {
		t.Error("0xfffffffe reported as removed")
	}
}

func TestAQA(t *testing.T) {
	a := MakeAQA(31, 31)
	if uint32(a) != 0x001f001f || a.ASQS() != 31 || a.ACQS() != 31 {
		t.Errorf("MakeAQA(31,31) = %#x", uint32(a))
	}
	a = MakeAQA(4095, 1)
	if uint32(a) != 0x00010fff {
		t.Errorf("MakeAQA(4095,1) = %#x, want 0x00010fff", uint32(a))
	}
	// Out-of-range sizes are cut to 12 bits, not spilled into other fields.
	a = MakeAQA(0xffff, 0xffff)
	if uint32(a) != 0x0fff0fff {
		t.Errorf("MakeAQA(0xffff,0xffff) = %#x, want 0x0fff0fff", uint32(a))
	}
}

func TestCMB(t *testing.T) {
	// CMB in BAR 2 at offset 3 units; 16 MiB units (SZU 3), 2 units; SQS+CQS+WDS.
	loc := CMBLOC(2 | 1<<8 | 3<<12)
	sz := CMBSZ(0x1 | 0x2 | 0x10 | 3<<8 | 2<<12)
	if loc.BIR() != 2 || !loc.CQDA() || loc.CQMMS() || loc.OFST() != 3 {
		t.Errorf("CMBLOC %#x: bir %d cqda %t ofst %d", uint32(loc), loc.BIR(), loc.CQDA(), loc.OFST())
	}
	if !sz.SQS() || !sz.CQS() || sz.LISTS() || sz.RDS() || !sz.WDS() || sz.SZU() != 3 || sz.SZ() != 2 {
		t.Errorf("CMBSZ %#x decoded wrong", uint32(sz))
	}
	if sz.Unit() != 16<<20 || sz.Bytes() != 32<<20 || loc.Offset(sz) != 48<<20 {
		t.Errorf("CMB unit %d bytes %d offset %d", sz.Unit(), sz.Bytes(), loc.Offset(sz))
	}
	if CMBSZ(7<<8|1<<12).Bytes() != 0 {
		t.Error("reserved SZU gave a size")
	}
	if got := CMBSZ(0xffffffff&^(0xf<<8) | 6<<8).Bytes(); got != uint64(0xfffff)<<36 {
		t.Errorf("largest CMB = %#x", got)
	}
	if c := CRTO(0x0003_0014); c.CRWMT() != 10*time.Second || c.CRIMT() != 1500*time.Millisecond {
		t.Errorf("CRTO = %v %v", c.CRWMT(), c.CRIMT())
	}
}

func TestDoorbells(t *testing.T) {
	tests := []struct {
		qid    uint16
		dstrd  uint8
		sq, cq uintptr
	}{
		{0, 0, 0x1000, 0x1004},
		{1, 0, 0x1008, 0x100c},
		{3, 0, 0x1018, 0x101c},
		{1, 1, 0x1010, 0x1018},
		{2, 2, 0x1040, 0x1050},
		{65535, 0, 0x1000 + 2*65535*4, 0x1000 + (2*65535+1)*4},
		// DSTRD 15: stride 128 KiB; the caller bound-checks against BAR0.
		{1, 15, 0x1000 + 2*(4<<15), 0x1000 + 3*(4<<15)},
	}
	for _, tt := range tests {
		if sq := SQTailDoorbell(tt.qid, tt.dstrd); sq != tt.sq {
			t.Errorf("SQTailDoorbell(%d, %d) = %#x, want %#x", tt.qid, tt.dstrd, sq, tt.sq)
		}
		if cq := CQHeadDoorbell(tt.qid, tt.dstrd); cq != tt.cq {
			t.Errorf("CQHeadDoorbell(%d, %d) = %#x, want %#x", tt.qid, tt.dstrd, cq, tt.cq)
		}
	}
	if NSSRReset != 0x4E564D65 || string([]byte{0x4e, 0x56, 0x4d, 0x65}) != "NVMe" {
		t.Error("NSSRReset is not NVMe")
	}
}
