package spec

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// padded returns s padded with spaces to n bytes, as the spec stores ASCII
// fields.
func padded(s string, n int) []byte {
	return []byte(s + strings.Repeat(" ", n-len(s)))
}

// qemuIdentifyController builds, byte by byte, an Identify Controller that
// looks like QEMU's emulated controller (vendor 0x1b36, "QEMU NVMe Ctrl").
func qemuIdentifyController() []byte {
	b := make([]byte, IdentifySize)
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0x1b36) // VID
	le.PutUint16(b[2:], 0x1af4) // SSVID
	copy(b[4:24], padded("deadbeef", 20))
	copy(b[24:64], padded("QEMU NVMe Ctrl", 40))
	copy(b[64:72], padded("8.2.2", 8))
	b[72] = 6                              // RAB
	b[73], b[74], b[75] = 0x00, 0x54, 0x52 // IEEE OUI 525400
	b[76] = 0x02                           // CMIC
	b[77] = 7                              // MDTS
	le.PutUint16(b[78:], 0x0001)           // CNTLID
	le.PutUint32(b[80:], 0x00010400)       // VER 1.4.0
	le.PutUint32(b[92:], 0x00000100)       // OAES
	le.PutUint32(b[96:], 0x00000001)       // CTRATT
	b[111] = CtrlTypeIO
	for i := range 16 {
		b[112+i] = byte(0xf0 + i) // FGUID
	}
	le.PutUint16(b[128:], 10) // CRDT1
	le.PutUint16(b[256:], OACSFormatNVM|OACSFirmware|OACSNamespaceMgmt|OACSDirectives|OACSDoorbellBuffer)
	b[258] = 3   // ACL
	b[259] = 3   // AERL
	b[260] = 0x3 // FRMW
	b[261] = 0x7 // LPA
	b[262] = 3   // ELPE
	b[263] = 1   // NPSS: two power states
	b[264] = 0
	b[265] = 0
	le.PutUint16(b[266:], 343)   // WCTEMP
	le.PutUint16(b[268:], 373)   // CCTEMP
	le.PutUint16(b[270:], 50)    // MTFA
	le.PutUint64(b[280:], 1<<30) // TNVMCAP low
	le.PutUint64(b[288:], 1)     // TNVMCAP high: 2^64 + 2^30
	le.PutUint64(b[296:], 12345) // UNVMCAP
	le.PutUint32(b[312:], 0x01)  // RPMBS
	le.PutUint16(b[316:], 15)    // EDSTT
	b[318] = 1                   // DSTO
	b[319] = 8                   // FWUG
	le.PutUint16(b[320:], 100)   // KAS
	le.PutUint16(b[322:], 1)     // HCTMA
	le.PutUint32(b[328:], 0x7)   // SANICAP
	b[512] = 0x66                // SQES
	b[513] = 0x44                // CQES
	le.PutUint16(b[514:], 0)
	le.PutUint32(b[516:], 256) // NN
	le.PutUint16(b[520:], ONCSCompare|ONCSDatasetManagement|ONCSWriteZeroes|ONCSTimestamp|ONCSVerify|ONCSCopy)
	le.PutUint16(b[522:], 0)
	b[524] = 0x0                      // FNA
	b[525] = 0x7                      // VWC present
	le.PutUint16(b[526:], 0xff)       // AWUN
	le.PutUint16(b[528:], 0)          // AWUPF
	b[530] = 1                        // NVSCC
	b[531] = 0                        // NWPC
	le.PutUint16(b[532:], 0)          // ACWU
	le.PutUint32(b[536:], 0x00100001) // SGLS: supported, address as offset
	le.PutUint32(b[540:], 256)        // MNAN
	nqn := "nqn.2019-08.org.qemu:deadbeef"
	copy(b[768:], nqn) // NUL padded
	// PSD0: 25 W, entry/exit 16/4 us; PSD1: non-operational, 0.0350 W with MXPS.
	le.PutUint16(b[2048:], 2500)
	le.PutUint32(b[2048+4:], 16)
	le.PutUint32(b[2048+8:], 4)
	le.PutUint16(b[2080:], 350)
	b[2080+3] = 0x3 // MXPS | NOPS
	b[2080+12], b[2080+13], b[2080+14], b[2080+15] = 0xe1, 1, 2, 3
	le.PutUint16(b[2080+16:], 77)
	b[2080+18] = 2 << 6
	le.PutUint16(b[2080+20:], 88)
	b[2080+22] = 2<<6 | 5
	return b
}

func TestParseIdentifyController(t *testing.T) {
	c, err := ParseIdentifyController(qemuIdentifyController())
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"VID", c.VID, uint16(0x1b36)},
		{"SSVID", c.SSVID, uint16(0x1af4)},
		{"SN", c.SN, "deadbeef"},
		{"MN", c.MN, "QEMU NVMe Ctrl"},
		{"FR", c.FR, "8.2.2"},
		{"RAB", c.RAB, uint8(6)},
		{"IEEE", c.IEEE, [3]byte{0x00, 0x54, 0x52}},
		{"CMIC", c.CMIC, uint8(2)},
		{"MDTS", c.MDTS, uint8(7)},
		{"CNTLID", c.CNTLID, uint16(1)},
		{"VER", c.VER.String(), "1.4.0"},
		{"OAES", c.OAES, uint32(0x100)},
		{"CTRATT", c.CTRATT, uint32(1)},
		{"CNTRLTYPE", c.CNTRLTYPE, uint8(CtrlTypeIO)},
		{"FGUID[15]", c.FGUID[15], byte(0xff)},
		{"CRDT1", c.CRDT[0], uint16(10)},
		{"OACS", c.OACS, uint16(0x12e)},
		{"ACL", c.ACL, uint8(3)},
		{"AERL", c.AERL, uint8(3)},
		{"FRMW", c.FRMW, uint8(3)},
		{"LPA", c.LPA, uint8(7)},
		{"ELPE", c.ELPE, uint8(3)},
		{"NPSS", c.NPSS, uint8(1)},
		{"WCTEMP", c.WCTEMP, uint16(343)},
		{"CCTEMP", c.CCTEMP, uint16(373)},
		{"MTFA", c.MTFA, uint16(50)},
		{"TNVMCAP", c.TNVMCAP.String(), "18446744074783293440"},
		{"UNVMCAP", c.UNVMCAP.String(), "12345"},
		{"RPMBS", c.RPMBS, uint32(1)},
		{"EDSTT", c.EDSTT, uint16(15)},
		{"DSTO", c.DSTO, uint8(1)},
		{"FWUG", c.FWUG, uint8(8)},
		{"KAS", c.KAS, uint16(100)},
		{"HCTMA", c.HCTMA, uint16(1)},
		{"SANICAP", c.SANICAP, uint32(7)},
		{"SQES", c.SQES, uint8(0x66)},
		{"SQESMin", c.SQESMin(), uint8(6)},
		{"CQESMax", c.CQESMax(), uint8(4)},
		{"NN", c.NN, uint32(256)},
		{"ONCS", c.ONCS, uint16(0x1cd)},
		{"VWC", c.HasVolatileWriteCache(), true},
		{"AWUN", c.AWUN, uint16(0xff)},
		{"NVSCC", c.NVSCC, uint8(1)},
		{"SGLS", c.SGLS, uint32(0x00100001)},
		{"MNAN", c.MNAN, uint32(256)},
		{"SUBNQN", c.SUBNQN, "nqn.2019-08.org.qemu:deadbeef"},
		{"SupportsSGL", c.SupportsSGL(), true},
		{"SGLDwordAligned", c.SGLDwordAligned(), false},
		{"Compare", c.SupportsCompare(), true},
		{"WriteUncorrectable", c.SupportsWriteUncorrectable(), false},
		{"DSM", c.SupportsDSM(), true},
		{"WriteZeroes", c.SupportsWriteZeroes(), true},
		{"SaveSelect", c.SupportsSaveSelect(), false},
		{"Reservations", c.SupportsReservations(), false},
		{"Timestamp", c.SupportsTimestamp(), true},
		{"Verify", c.SupportsVerify(), true},
		{"Copy", c.SupportsCopy(), true},
		{"PowerStates", len(c.PowerStates()), 2},
		{"PSD0.MP", c.PSD[0].MP, uint16(2500)},
		{"PSD0.W", c.PSD[0].MaxPowerWatts(), 25.0},
		{"PSD0.ENLAT", c.PSD[0].ENLAT, uint32(16)},
		{"PSD0.EXLAT", c.PSD[0].EXLAT, uint32(4)},
		{"PSD0.NOPS", c.PSD[0].NOPS, false},
		{"PSD1.NOPS", c.PSD[1].NOPS, true},
		{"PSD1.MXPS", c.PSD[1].MXPS, true},
		{"PSD1.RRT", c.PSD[1].RRT, uint8(1)}, // 0xe1 & 0x1f
		{"PSD1.RWL", c.PSD[1].RWL, uint8(3)},
		{"PSD1.IDLP", c.PSD[1].IDLP, uint16(77)},
		{"PSD1.IPS", c.PSD[1].IPS, uint8(2)},
		{"PSD1.ACTP", c.PSD[1].ACTP, uint16(88)},
		{"PSD1.APW", c.PSD[1].APW, uint8(5)},
		{"PSD1.APS", c.PSD[1].APS, uint8(2)},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	if w := c.PSD[1].MaxPowerWatts(); w < 0.0349 || w > 0.0351 {
		t.Errorf("PSD1 watts = %v", w)
	}
	if n, unl := c.MaxTransfer(4096); n != 512<<10 || unl {
		t.Errorf("MaxTransfer(4096) = %d, %t, want 512 KiB", n, unl)
	}
}

func TestParseIdentifyControllerShort(t *testing.T) {
	_, err := ParseIdentifyController(make([]byte, IdentifySize-1))
	if !errors.Is(err, ErrShort) {
		t.Errorf("short identify controller: err = %v", err)
	}
	if _, err := ParseIdentifyController(nil); !errors.Is(err, ErrShort) {
		t.Errorf("nil identify controller: err = %v", err)
	}
}

func TestMaxTransfer(t *testing.T) {
	tests := []struct {
		mdts      uint8
		page      int
		bytes     int
		unlimited bool
	}{
		{0, 4096, 0, true},
		{1, 4096, 8192, false},
		{2, 4096, 16384, false},
		{5, 4096, 128 << 10, false},
		{7, 65536, 8 << 20, false},
		{20, 4096, 4 << 30, false}, // exactly 4 GiB still a limit
		{21, 4096, 0, true},        // more than 4 GiB: unlimited
		{255, 4096, 0, true},       // absurd
		{31, 1 << 27, 0, true},
		{3, 0, 32768, false},    // bad page size falls back to 4096
		{3, 5000, 32768, false}, // not a power of two
		{3, -4096, 32768, false},
	}
	for _, tt := range tests {
		c := &IdentifyController{MDTS: tt.mdts}
		n, unl := c.MaxTransfer(tt.page)
		if n != tt.bytes || unl != tt.unlimited {
			t.Errorf("MDTS %d page %d: MaxTransfer = %d, %t, want %d, %t", tt.mdts, tt.page, n, unl, tt.bytes, tt.unlimited)
		}
	}
}

func TestTrimString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"  abc   ", "abc"},
		{"abc\x00\x00\x00", "abc"},
		{"abc\x00junk", "abc"},
		{"", ""},
		{"\x00abc", ""},
	}
	for _, tt := range tests {
		if got := trimString([]byte(tt.in)); got != tt.want {
			t.Errorf("trimString(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestUint128(t *testing.T) {
	tests := []struct {
		u    Uint128
		want string
	}{
		{Uint128{}, "0"},
		{Uint128{Lo: 1 << 40}, "1099511627776"},
		{Uint128{Lo: ^uint64(0), Hi: ^uint64(0)}, "340282366920938463463374607431768211455"},
		{Uint128{Hi: 1}, "18446744073709551616"},
	}
	for _, tt := range tests {
		if got := tt.u.String(); got != tt.want {
			t.Errorf("%+v.String() = %s, want %s", tt.u, got, tt.want)
		}
	}
	if v, ok := (Uint128{Lo: 5}).Uint64(); v != 5 || !ok {
		t.Error("Uint64 small")
	}
	if _, ok := (Uint128{Hi: 1}).Uint64(); ok {
		t.Error("Uint64 big reported ok")
	}
}

// namespaceBytes builds an Identify Namespace of nsze blocks with the given
// LBA formats (as MS, LBADS, RP) and FLBAS.
func namespaceBytes(nsze uint64, flbas uint8, formats ...LBAFormat) []byte {
	b := make([]byte, IdentifySize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], nsze)
	le.PutUint64(b[8:], nsze)
	le.PutUint64(b[16:], nsze/2)
	b[24] = NSFEATThinProvisioning | NSFEATOptPerf
	if len(formats) > 0 {
		b[25] = uint8(len(formats) - 1)
	}
	b[26] = flbas
	for i, f := range formats {
		le.PutUint32(b[128+4*i:], uint32(f.MS)|uint32(f.LBADS)<<16|uint32(f.RP)<<24)
	}
	return b
}

func TestParseIdentifyNamespace(t *testing.T) {
	// QEMU-like: 8 formats, format 4 (4096 + 0) selected.
	formats := []LBAFormat{
		{0, 9, 0}, {8, 9, 0}, {16, 9, 0}, {64, 9, 0},
		{0, 12, 0}, {8, 12, 0}, {16, 12, 0}, {64, 12, 0},
	}
	b := namespaceBytes(262144, 0x04, formats...)
	le := binary.LittleEndian
	b[27] = 0x3                 // MC
	b[28] = 0x1f                // DPC
	b[29] = 0                   // DPS
	b[30] = 1                   // NMIC
	b[31] = 0xff                // RESCAP
	b[32] = 0x80                // FPI
	b[33] = 0x9                 // DLFEAT
	le.PutUint16(b[34:], 7)     // NAWUN
	le.PutUint16(b[36:], 3)     // NAWUPF
	le.PutUint16(b[38:], 1)     // NACWU
	le.PutUint16(b[40:], 15)    // NABSN
	le.PutUint16(b[42:], 2)     // NABO
	le.PutUint16(b[44:], 31)    // NABSPF
	le.PutUint16(b[46:], 256)   // NOIOB
	le.PutUint64(b[48:], 1<<30) // NVMCAP
	le.PutUint16(b[64:], 1)     // NPWG
	le.PutUint16(b[66:], 2)     // NPWA
	le.PutUint16(b[68:], 3)     // NPDG
	le.PutUint16(b[70:], 4)     // NPDA
	le.PutUint16(b[72:], 5)     // NOWS
	le.PutUint32(b[92:], 9)     // ANAGRPID
	b[99] = 1                   // NSATTR
	le.PutUint16(b[100:], 6)    // NVMSETID
	le.PutUint16(b[102:], 7)    // ENDGID
	for i := range 16 {
		b[104+i] = byte(i + 1) // NGUID
	}
	for i := range 8 {
		b[120+i] = byte(0xa0 + i) // EUI64
	}
	n, err := ParseIdentifyNamespace(b)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := n.BlockSize()
	if err != nil || bs != 4096 {
		t.Fatalf("BlockSize = %d, %v", bs, err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"NSZE", n.NSZE, uint64(262144)},
		{"Blocks", n.Blocks(), uint64(262144)},
		{"NCAP", n.NCAP, uint64(262144)},
		{"NUSE", n.NUSE, uint64(131072)},
		{"NSFEAT", n.NSFEAT, uint8(0x11)},
		{"NLBAF", n.NLBAF, uint8(7)},
		{"NumFormats", n.NumFormats(), 8},
		{"FormatIndex", n.FormatIndex(), 4},
		{"ExtendedLBA", n.ExtendedLBA(), false},
		{"MetadataSize", n.MetadataSize(), 0},
		{"MC", n.MC, uint8(3)},
		{"DPC", n.DPC, uint8(0x1f)},
		{"NMIC", n.NMIC, uint8(1)},
		{"RESCAP", n.RESCAP, uint8(0xff)},
		{"FPI", n.FPI, uint8(0x80)},
		{"DLFEAT", n.DLFEAT, uint8(9)},
		{"NAWUN", n.NAWUN, uint16(7)},
		{"NAWUPF", n.NAWUPF, uint16(3)},
		{"NACWU", n.NACWU, uint16(1)},
		{"NABSN", n.NABSN, uint16(15)},
		{"NABO", n.NABO, uint16(2)},
		{"NABSPF", n.NABSPF, uint16(31)},
		{"NOIOB", n.NOIOB, uint16(256)},
		{"NVMCAP", n.NVMCAP.String(), "1073741824"},
		{"NPWG", n.NPWG, uint16(1)},
		{"NPWA", n.NPWA, uint16(2)},
		{"NPDG", n.NPDG, uint16(3)},
		{"NPDA", n.NPDA, uint16(4)},
		{"NOWS", n.NOWS, uint16(5)},
		{"ANAGRPID", n.ANAGRPID, uint32(9)},
		{"NSATTR", n.NSATTR, uint8(1)},
		{"NVMSETID", n.NVMSETID, uint16(6)},
		{"ENDGID", n.ENDGID, uint16(7)},
		{"NGUID", n.NGUID, [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
		{"EUI64", n.EUI64, [8]byte{0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7}},
		{"LBAF[7]", n.LBAF[7], LBAFormat{64, 12, 0}},
		{"Active", n.Active(), true},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestNamespaceFormats(t *testing.T) {
	many := make([]LBAFormat, 64)
	for i := range many {
		many[i] = LBAFormat{MS: uint16(i), LBADS: 9 + uint8(i%4)}
	}
	tests := []struct {
		name    string
		b       []byte
		index   int
		size    int
		ms      int
		ext     bool
		wantErr bool
	}{
		{"512", namespaceBytes(100, 0, LBAFormat{0, 9, 0}), 0, 512, 0, false, false},
		{"512+8 extended", namespaceBytes(100, 0x11, LBAFormat{0, 9, 0}, LBAFormat{8, 9, 0}), 1, 512, 8, true, false},
		// FLBAS bits 6:5 = 2, 3:0 = 5: index 0x25 = 37 -> lbads 9+37%4 = 10.
		{"high index bits", namespaceBytes(100, 0x45, many...), 37, 1024, 37, false, false},
		{"index beyond nlbaf", namespaceBytes(100, 0x02, LBAFormat{0, 9, 0}, LBAFormat{0, 12, 0}), 2, 0, 0, false, true},
		{"lbads 8", namespaceBytes(100, 0, LBAFormat{0, 8, 0}), 0, 0, 0, false, true},
		{"lbads 0 (unused format)", namespaceBytes(100, 0, LBAFormat{0, 0, 0}), 0, 0, 0, false, true},
		{"lbads 32", namespaceBytes(100, 0, LBAFormat{0, 32, 0}), 0, 0, 0, false, true},
		{"lbads 31", namespaceBytes(100, 0, LBAFormat{0, 31, 0}), 0, 1 << 31, 0, false, false},
		{"lbads 255", namespaceBytes(100, 0, LBAFormat{0, 255, 0}), 0, 0, 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseIdentifyNamespace(tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if n.FormatIndex() != tt.index || n.ExtendedLBA() != tt.ext {
				t.Errorf("FormatIndex = %d ext %t, want %d %t", n.FormatIndex(), n.ExtendedLBA(), tt.index, tt.ext)
			}
			size, err := n.BlockSize()
			if (err != nil) != tt.wantErr || size != tt.size {
				t.Errorf("BlockSize = %d, %v; want %d, error %t", size, err, tt.size, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			if n.MetadataSize() != tt.ms {
				t.Errorf("MetadataSize = %d, want %d", n.MetadataSize(), tt.ms)
			}
		})
	}
	// NLBAF 255 (absurd) is clamped to 64 formats.
	b := namespaceBytes(1, 0x6f, LBAFormat{0, 9, 0})
	b[25] = 255
	for i := range 64 {
		binary.LittleEndian.PutUint32(b[128+4*i:], 12<<16)
	}
	n, err := ParseIdentifyNamespace(b)
	if err != nil {
		t.Fatal(err)
	}
	if n.NumFormats() != 64 || n.FormatIndex() != 63 {
		t.Errorf("NumFormats %d FormatIndex %d", n.NumFormats(), n.FormatIndex())
	}
	if s, err := n.BlockSize(); s != 4096 || err != nil {
		t.Errorf("BlockSize = %d, %v", s, err)
	}
	if _, err := ParseIdentifyNamespace(make([]byte, 383)); !errors.Is(err, ErrShort) {
		t.Errorf("short namespace: %v", err)
	}
	if n, err := ParseIdentifyNamespace(make([]byte, IdentifySize)); err != nil || n.Active() {
		t.Errorf("zero namespace: active %t, err %v", n.Active(), err)
	}
}

func nsList(ids ...uint32) []byte {
	b := make([]byte, IdentifySize)
	for i, id := range ids {
		binary.LittleEndian.PutUint32(b[4*i:], id)
	}
	return b
}

func TestParseNamespaceList(t *testing.T) {
	full := make([]uint32, 1024)
	for i := range full {
		full[i] = uint32(i + 1)
	}
	tests := []struct {
		name    string
		b       []byte
		want    []uint32
		wantErr error
	}{
		{"empty", nsList(), nil, nil},
		{"three", nsList(1, 2, 5), []uint32{1, 2, 5}, nil},
		{"stops at zero", nsList(1, 2, 0, 7), []uint32{1, 2}, nil},
		{"full", nsList(full...), full, nil},
		{"descending", nsList(1, 3, 2), nil, ErrMalformed},
		{"duplicate", nsList(4, 4), nil, ErrMalformed},
		{"broadcast", nsList(1, NSIDAll), nil, ErrMalformed},
		{"short", []byte{1, 0}, nil, ErrShort},
		{"ragged", []byte{1, 0, 0, 0, 2}, nil, ErrMalformed},
		{"small", []byte{9, 0, 0, 0}, []uint32{9}, nil},
		{"longer than 4096", append(nsList(full...), 0xff, 0xff, 0xff, 0x7f), full, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNamespaceList(tt.b)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d ids, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("id %d = %d, want %d", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func descriptor(typ uint8, id []byte) []byte {
	return append([]byte{typ, uint8(len(id)), 0, 0}, id...)
}

func TestParseNamespaceDescriptors(t *testing.T) {
	eui := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	uuid := []byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}
	var good []byte
	good = append(good, descriptor(NIDTEUI64, eui)...)
	good = append(good, descriptor(NIDTUUID, uuid)...)
	good = append(good, descriptor(NIDTCSI, []byte{CSINVM})...)
	good = append(good, descriptor(0x9, []byte{0xaa, 0xbb})...) // unknown type, kept
	buf := make([]byte, IdentifySize)
	copy(buf, good)
	ds, err := ParseNamespaceDescriptors(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"eui64 0102030405060708", "uuid 12345678-9abc-def0-1122-334455667788", "csi 0", "type 0x9 aabb"}
	if len(ds) != len(want) {
		t.Fatalf("got %d descriptors: %v", len(ds), ds)
	}
	for i := range ds {
		if ds[i].String() != want[i] {
			t.Errorf("descriptor %d = %q, want %q", i, ds[i].String(), want[i])
		}
	}
	// The returned IDs do not alias the buffer.
	buf[4] = 0xee
	if ds[0].ID[0] != 1 {
		t.Error("descriptor ID aliases the input buffer")
	}

	bad := []struct {
		name string
		b    []byte
	}{
		{"eui64 length 16", descriptor(NIDTEUI64, uuid)},
		{"nguid length 8", descriptor(NIDTNGUID, eui)},
		{"uuid length 255", append([]byte{NIDTUUID, 255, 0, 0}, make([]byte, 300)...)},
		{"csi length 2", descriptor(NIDTCSI, []byte{0, 0})},
		{"runs past buffer", []byte{0x9, 200, 0, 0, 1, 2, 3}},
		{"eui64 truncated", []byte{NIDTEUI64, 8, 0, 0, 1, 2, 3}},
	}
	for _, tt := range bad {
		if ds, err := ParseNamespaceDescriptors(tt.b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, %v; want ErrMalformed", tt.name, ds, err)
		}
	}
	// Ends: empty buffer, all zero, header cut short, NIDL 0.
	for _, b := range [][]byte{nil, make([]byte, IdentifySize), {NIDTEUI64, 8}, {NIDTEUI64, 0, 0, 0, 1, 2}} {
		if ds, err := ParseNamespaceDescriptors(b); err != nil || len(ds) != 0 {
			t.Errorf("ParseNamespaceDescriptors(% x) = %v, %v; want nothing", b, ds, err)
		}
	}
}
