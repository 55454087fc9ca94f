package fabrics

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// wire encodes a wire struct with encoding/binary, field by field in
// declaration order: the bytes its declared layout stands for.
func wire(t *testing.T, v any) []byte {
	t.Helper()
	b, err := binary.Append(nil, binary.LittleEndian, v)
	if err != nil {
		t.Fatalf("binary.Append(%T): %v", v, err)
	}
	return b
}

// The SQE methods must put every field where the declared struct has it:
// the struct encoded field by field equals the spec.Command it converts to,
// encoded the same way.
func TestCommandsMatchSQE(t *testing.T) {
	conn := ConnectCommand{
		Opcode: 0x7f, Flags: spec.FlagPSDTSGL, CID: 0xbeef, FCType: FCTypeConnect,
		SGL1:   InCapsuleSGL(0, ConnectDataSize),
		RecFmt: 0, QID: 3, SQSize: 127, CAttr: CAttrDisableSQFlow | 2, KATO: 120000,
	}
	pget := PropertyGetCommand{Opcode: 0x7f, Flags: spec.FlagPSDTSGL, CID: 7, FCType: FCTypePropertyGet, Attrib: PropertySize8, Offset: spec.RegCAP}
	pset := PropertySetCommand{Opcode: 0x7f, CID: 8, FCType: FCTypePropertySet, Attrib: PropertySize4, Offset: spec.RegCC, Value: 0x1122334455667788}
	disc := DisconnectCommand{Opcode: 0x7f, CID: 9, FCType: FCTypeDisconnect, RecFmt: 0x0102}
	cases := []struct {
		name string
		v    any
		sqe  spec.Command
	}{
		{"connect", conn, conn.SQE()},
		{"property get", pget, pget.SQE()},
		{"property set", pset, pset.SQE()},
		{"disconnect", disc, disc.SQE()},
	}
	for _, c := range cases {
		got, want := wire(t, c.sqe), wire(t, c.v)
		if len(got) != 64 || !bytes.Equal(got, want) {
			t.Errorf("%s: SQE bytes\n%x\nwant\n%x", c.name, got, want)
		}
		if got[0] != 0x7f {
			t.Errorf("%s: opcode %#x", c.name, got[0])
		}
	}
	// Round trips.
	sqe := conn.SQE()
	if back, err := ConnectFromSQE(&sqe); err != nil || back != conn {
		t.Errorf("connect round trip: %+v, %v", back, err)
	}
	sqe = pget.SQE()
	if back, err := PropertyGetFromSQE(&sqe); err != nil || back != pget || back.Size() != 8 {
		t.Errorf("property get round trip: %+v, %v", back, err)
	}
	sqe = pset.SQE()
	if back, err := PropertySetFromSQE(&sqe); err != nil || back != pset || back.Size() != 4 {
		t.Errorf("property set round trip: %+v, %v", back, err)
	}
	sqe = disc.SQE()
	if back, err := DisconnectFromSQE(&sqe); err != nil || back != disc {
		t.Errorf("disconnect round trip: %+v, %v", back, err)
	}
	// Wrong command type or opcode.
	sqe = pget.SQE()
	if _, err := ConnectFromSQE(&sqe); !errors.Is(err, ErrNotFabrics) {
		t.Errorf("connect from property get: %v", err)
	}
	sqe.Opcode = 0x06
	if _, err := PropertyGetFromSQE(&sqe); !errors.Is(err, ErrNotFabrics) {
		t.Errorf("property get from identify: %v", err)
	}
}

func TestConnectResponse(t *testing.T) {
	r := ConnectSuccess(0x1234, AuthReqATR)
	if r.CNTLID() != 0x1234 || r.AuthReq() != AuthReqATR || uint32(r) != 0x00021234 {
		t.Errorf("success dw0 %#x", uint32(r))
	}
	off, inData := ConnectInvalidParameter(ConnectOffHostNQN, true).InvalidParameter()
	if off != 0x200 || !inData {
		t.Errorf("invalid parameter in data: %#x %v", off, inData)
	}
	off, inData = ConnectInvalidParameter(ConnectOffSQSize, false).InvalidParameter()
	if off != 0x2c || inData {
		t.Errorf("invalid parameter in sqe: %#x %v", off, inData)
	}
}

func TestPropertySize(t *testing.T) {
	for _, c := range []struct {
		off  uint32
		size int
		ok   bool
	}{
		{spec.RegCAP, 8, true}, {spec.RegVS, 4, true}, {spec.RegCC, 4, true}, {spec.RegCSTS, 4, true},
		{spec.RegNSSR, 4, true}, {spec.RegAQA, 0, false}, {spec.RegASQ, 0, false}, {0x1000, 0, false},
	} {
		size, ok := PropertySize(c.off)
		if size != c.size || ok != c.ok {
			t.Errorf("PropertySize(%#x) = %d, %v", c.off, size, ok)
		}
	}
	if PropertyAttrib(8) != PropertySize8 || PropertyAttrib(4) != PropertySize4 {
		t.Error("PropertyAttrib")
	}
	var cqe spec.Completion
	SetPropertyValue(&cqe, 0x0123456789abcdef)
	if cqe.DW0 != 0x89abcdef || cqe.DW1 != 0x01234567 || PropertyValue(&cqe) != 0x0123456789abcdef {
		t.Errorf("property value %+v", cqe)
	}
	if (&PropertyGetCommand{Attrib: 5}).Size() != 0 {
		t.Error("reserved attrib has a size")
	}
}

func TestConnectData(t *testing.T) {
	id := [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	host := UUIDNQN(id)
	d, err := NewConnectData(id, CNTLIDDynamic, "nqn.2024-01.io.example:sub1", host)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, ConnectDataSize+10)
	for i := range b {
		b[i] = 0xaa // MarshalTo must clear what it does not set
	}
	if n := d.MarshalTo(b); n != ConnectDataSize {
		t.Fatalf("MarshalTo = %d", n)
	}
	if !bytes.Equal(b[:ConnectDataSize], wire(t, d)) {
		t.Error("MarshalTo differs from the declared layout")
	}
	if b[ConnectDataSize] != 0xaa {
		t.Error("MarshalTo wrote past 1024 bytes")
	}
	if binary.LittleEndian.Uint16(b[16:]) != 0xffff || !bytes.HasPrefix(b[256:], []byte("nqn.2024-01.io.example:sub1\x00")) ||
		!bytes.HasPrefix(b[512:], []byte(host+"\x00")) || b[0] != 0xde {
		t.Error("fields at wrong offsets")
	}
	back, err := ParseConnectData(b)
	if err != nil || back != d {
		t.Fatalf("round trip: %v", err)
	}
	if back.SubsystemNQN() != "nqn.2024-01.io.example:sub1" || back.HostNQNString() != host {
		t.Errorf("strings %q %q", back.SubsystemNQN(), back.HostNQNString())
	}
	if host != "nqn.2014-08.org.nvmexpress:uuid:deadbeef-0102-0304-0506-0708090a0b0c" {
		t.Errorf("UUIDNQN = %q", host)
	}
	if (&d).MarshalTo(make([]byte, 100)) != 0 {
		t.Error("MarshalTo into a short buffer")
	}

	if _, err := ParseConnectData(b[:1000]); !errors.Is(err, spec.ErrShort) {
		t.Errorf("short: %v", err)
	}
	bad := bytes.Clone(b[:ConnectDataSize])
	for i := 256; i < 512; i++ {
		bad[i] = 'x'
	}
	if _, err := ParseConnectData(bad); !errors.Is(err, spec.ErrMalformed) {
		t.Errorf("unterminated subsystem nqn: %v", err)
	}
	bad = bytes.Clone(b[:ConnectDataSize])
	for i := 512; i < 768; i++ {
		bad[i] = 'x'
	}
	if _, err := ParseConnectData(bad); !errors.Is(err, spec.ErrMalformed) {
		t.Errorf("unterminated host nqn: %v", err)
	}
	if _, err := NewConnectData(id, 1, "iqn.bad", host); !errors.Is(err, ErrBadNQN) {
		t.Errorf("bad subsystem nqn accepted: %v", err)
	}
}

func TestCheckNQN(t *testing.T) {
	good := []string{DiscoveryNQN, "nqn.2014-08.org.nvmexpress:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
		"nqn.2024-01.io.example:sübsystem", "nqn." + strings.Repeat("a", 219)}
	for _, s := range good {
		if err := CheckNQN(s); err != nil {
			t.Errorf("CheckNQN(%q): %v", s, err)
		}
	}
	bad := []string{"", "nqn." + strings.Repeat("a", 220), "iqn.2024-01.io.example", "nqn.a\x00b", "nqn.\xff\xfe"}
	for _, s := range bad {
		if err := CheckNQN(s); !errors.Is(err, ErrBadNQN) || !errors.Is(err, spec.ErrMalformed) {
			t.Errorf("CheckNQN(%q) = %v", s, err)
		}
	}
}

func TestUUID(t *testing.T) {
	id, err := ParseUUID("F81D4FAE-7DEC-11D0-A765-00A0C91E6BF6")
	if err != nil {
		t.Fatal(err)
	}
	if FormatUUID(id) != "f81d4fae-7dec-11d0-a765-00a0c91e6bf6" {
		t.Errorf("FormatUUID = %s", FormatUUID(id))
	}
	if id2, err := ParseUUID("f81d4fae7dec11d0a76500a0c91e6bf6"); err != nil || id2 != id {
		t.Errorf("undashed: %v", err)
	}
	for _, s := range []string{"", "f81d4fae", "g81d4fae-7dec-11d0-a765-00a0c91e6bf6"} {
		if _, err := ParseUUID(s); err == nil {
			t.Errorf("ParseUUID(%q) accepted", s)
		}
	}
}

func discoveryLogBytes(t *testing.T, gen uint64, entries ...DiscoveryLogEntry) []byte {
	t.Helper()
	h := DiscoveryLogHeader{GenCtr: gen, NumRec: uint64(len(entries))}
	b := make([]byte, DiscoveryLogEntrySize*(1+len(entries)))
	h.MarshalTo(b)
	if !bytes.Equal(b[:DiscoveryLogEntrySize], wire(t, h)) {
		t.Fatal("header MarshalTo differs from the declared layout")
	}
	for i := range entries {
		off := DiscoveryLogEntrySize * (1 + i)
		entries[i].MarshalTo(b[off:])
		if !bytes.Equal(b[off:off+DiscoveryLogEntrySize], wire(t, entries[i])) {
			t.Fatal("entry MarshalTo differs from the declared layout")
		}
	}
	return b
}

func TestDiscoveryLog(t *testing.T) {
	e1 := DiscoveryLogEntry{TRType: TRTypeTCP, AdrFam: AdrFamIPv4, SubType: SubTypeCurrentDiscovery,
		TReq: TReqNotSpecified | TReqDisableSQFlowAllow, PortID: 1, CNTLID: CNTLIDDynamic, ASQSZ: 32, EFlags: EFlagExplicitPCSD}
	e1.SetStrings("8009", "127.0.0.1", DiscoveryNQN)
	e2 := DiscoveryLogEntry{TRType: TRTypeTCP, AdrFam: AdrFamIPv6, SubType: SubTypeNVM, PortID: 2, CNTLID: CNTLIDDynamic, ASQSZ: 128}
	e2.SetStrings("4420", "::1", "nqn.2024-01.io.example:sub1")
	e2.TSAS[0] = TCPSecTypeNone
	b := discoveryLogBytes(t, 42, e1, e2)

	// Field offsets, as nvme-cli reads them.
	if b[1024] != 3 || b[1025] != 1 || b[1026] != 3 || binary.LittleEndian.Uint16(b[1024+6:]) != 0xffff ||
		string(b[1024+32:1024+36]) != "8009" || b[1024+36] != ' ' || string(b[1024+512:1024+521]) != "127.0.0.1" {
		t.Fatalf("entry bytes at wrong offsets")
	}

	h, n, err := ParseDiscoveryLogHeader(b[:1024])
	if err != nil || h.GenCtr != 42 || h.NumRec != 2 || n != 3*1024 {
		t.Fatalf("header %+v %d %v", h, n, err)
	}
	log, err := ParseDiscoveryLog(append(b, 0xff, 0xff)) // trailing bytes are ignored
	if err != nil {
		t.Fatal(err)
	}
	if log.GenCtr != 42 || len(log.Entries) != 2 || log.Entries[0] != e1 || log.Entries[1] != e2 {
		t.Fatalf("log %+v", log)
	}
	got := log.Entries[1]
	if got.TRSvcIDString() != "4420" || got.TRAddrString() != "::1" || got.SubNQNString() != "nqn.2024-01.io.example:sub1" {
		t.Errorf("strings %q %q %q", got.TRSvcIDString(), got.TRAddrString(), got.SubNQNString())
	}
	if TRTypeName(got.TRType) != "tcp" || AdrFamName(got.AdrFam) != "ipv6" || SubTypeName(got.SubType) != "nvme subsystem" ||
		TReqName(log.Entries[0].TReq) != "not specified, sq flow control disable supported" || SecTypeName(got.SecType()) != "none" {
		t.Error("names")
	}

	if _, err := ParseDiscoveryLog(b[:2*1024]); !errors.Is(err, spec.ErrShort) {
		t.Errorf("truncated log: %v", err)
	}
	if _, err := ParseDiscoveryLog(b[:100]); !errors.Is(err, spec.ErrShort) {
		t.Errorf("truncated header: %v", err)
	}
	huge := bytes.Clone(b[:1024])
	binary.LittleEndian.PutUint64(huge[8:], 1<<62)
	if _, _, err := ParseDiscoveryLogHeader(huge); !errors.Is(err, spec.ErrMalformed) {
		t.Errorf("huge NUMREC: %v", err)
	}
	empty, err := ParseDiscoveryLog(discoveryLogBytes(t, 1))
	if err != nil || len(empty.Entries) != 0 {
		t.Errorf("empty log: %+v %v", empty, err)
	}
}

func TestStatusName(t *testing.T) {
	st := spec.MakeStatus(spec.SCTCommandSpecific, SCConnectInvalidHost)
	if StatusName(st) != "Connect Invalid Host" {
		t.Errorf("got %q", StatusName(st))
	}
	if StatusName(spec.MakeStatus(spec.SCTGeneric, spec.SCInvalidField)) != "Invalid Field in Command" {
		t.Error("generic status")
	}
	if FCTypeConnect.String() != "Connect" || FCType(0x42).String() != "Reserved (fctype 0x42)" || FCType(0xc1).String() != "Vendor Specific (fctype 0xc1)" {
		t.Error("FCType names")
	}
}

func TestSGL(t *testing.T) {
	ic := InCapsuleSGL(0, 4096)
	tr := TransportSGL(131072)
	// The identifier bytes Linux's nvme-tcp puts in byte 15 of SGL1.
	if ic.Type != 0x01 || tr.Type != 0x5a {
		t.Fatalf("sgl identifiers %#x %#x", ic.Type, tr.Type)
	}
	for _, c := range []struct {
		d      spec.SGLDescriptor
		kind   DataKind
		length uint32
		bad    bool
	}{
		{ic, DataInCapsule, 4096, false},
		{tr, DataTransport, 131072, false},
		{TransportSGL(0), DataNone, 0, false},
		{InCapsuleSGL(0, 0), DataNone, 0, false},
		{spec.SGLDescriptor{Type: spec.MakeSGLType(spec.SGLTypeKeyedDataBlock, 0), Length: 10}, DataNone, 0, true},
		{spec.SGLDescriptor{Type: spec.MakeSGLType(spec.SGLTypeDataBlock, spec.SGLSubtypeAddress), Length: 10}, DataNone, 0, true},
	} {
		kind, _, length, err := ParseDataSGL(c.d)
		if (err != nil) != c.bad || kind != c.kind || length != c.length {
			t.Errorf("ParseDataSGL(%+v) = %v %d %v", c.d, kind, length, err)
		}
		if c.bad && !errors.Is(err, ErrBadSGL) {
			t.Errorf("error %v is not ErrBadSGL", err)
		}
	}
	var sqe spec.Command
	sqe.SetSGL1(ic)
	if got := sqe.SGL1(); got != ic {
		t.Errorf("SGL1 round trip %+v", got)
	}
}
