package spec

import (
	"encoding/binary"
	"testing"
	"unsafe"
)

// asBytes views a wire struct as its bytes, the way the device sees it.
func asBytes[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

func TestCommandLayout(t *testing.T) {
	c := Command{
		Opcode: 0x02, Flags: FlagPSDTSGL | FlagFuseFirst, CID: 0x1234, NSID: 0x01020304,
		CDW2: 0x22222222, CDW3: 0x33333333, MPTR: 0x4444444455555555,
		PRP1: 0x6666666677777777, PRP2: 0x8888888899999999,
		CDW10: 0xaaaa0010, CDW11: 0xbbbb0011, CDW12: 0xcccc0012, CDW13: 0xdddd0013,
		CDW14: 0xeeee0014, CDW15: 0xffff0015,
	}
	b := asBytes(&c)
	if len(b) != 64 {
		t.Fatalf("Command is %d bytes", len(b))
	}
	le := binary.LittleEndian
	// CDW0: opcode 7:0, fuse 9:8, psdt 15:14, cid 31:16.
	if dw0 := le.Uint32(b[0:]); dw0 != 0x12340000|0x41<<8|0x02 {
		t.Errorf("CDW0 = %#x", dw0)
	}
	dws := []struct {
		off  int
		want uint32
	}{
		{4, 0x01020304}, {8, 0x22222222}, {12, 0x33333333},
		{16, 0x55555555}, {20, 0x44444444}, {24, 0x77777777}, {28, 0x66666666},
		{32, 0x99999999}, {36, 0x88888888},
		{40, 0xaaaa0010}, {44, 0xbbbb0011}, {48, 0xcccc0012}, {52, 0xdddd0013}, {56, 0xeeee0014}, {60, 0xffff0015},
	}
	for _, d := range dws {
		if got := le.Uint32(b[d.off:]); got != d.want {
			t.Errorf("dword at %#x = %#x, want %#x", d.off, got, d.want)
		}
	}
}

func TestCompletionLayout(t *testing.T) {
	var raw [16]byte
	le := binary.LittleEndian
	le.PutUint32(raw[0:], 0xdeadbeef)
	le.PutUint32(raw[4:], 0x01)
	le.PutUint32(raw[8:], 0x0003_0007) // SQID 3, SQHD 7
	// DW3: status Generic/Invalid Field with DNR, phase 1, CID 0x42.
	st := MakeStatus(SCTGeneric, SCInvalidField) | 1<<14
	le.PutUint32(raw[12:], uint32(st.CQEField(true))<<16|0x42)
	c := (*Completion)(unsafe.Pointer(&raw[0]))
	if c.DW0 != 0xdeadbeef || c.DW1 != 1 || c.SQHead != 7 || c.SQID != 3 || c.CID != 0x42 {
		t.Errorf("completion fields %+v", *c)
	}
	if !c.Phase() {
		t.Error("phase not set")
	}
	if s := c.StatusField(); s != st || s.SC() != SCInvalidField || !s.DNR() {
		t.Errorf("status = %v", s)
	}
	cid, phase, s := SplitDW3(le.Uint32(raw[12:]))
	if cid != 0x42 || !phase || s != st {
		t.Errorf("SplitDW3 = %#x %t %v", cid, phase, s)
	}
	if s := StatusFromCQE(c.Status); s != st {
		t.Errorf("StatusFromCQE = %v", s)
	}
	// Phase 0, success.
	le.PutUint32(raw[12:], 0x0000_0001)
	if c.Phase() || !c.StatusField().Success() || c.CID != 1 {
		t.Errorf("success completion decoded as %+v", *c)
	}
}

func TestSGLAndDSM(t *testing.T) {
	d := SGLDescriptor{Addr: 0x1000_2000, Length: 4096, Type: MakeSGLType(SGLTypeLastSegment, SGLSubtypeAddress)}
	b := asBytes(&d)
	if len(b) != 16 || b[15] != 0x30 || binary.LittleEndian.Uint32(b[8:]) != 4096 || binary.LittleEndian.Uint64(b[0:]) != 0x1000_2000 {
		t.Errorf("SGL descriptor bytes % x", b)
	}
	if d.DescType() != SGLTypeLastSegment || d.Subtype() != SGLSubtypeAddress {
		t.Errorf("type %d subtype %d", d.DescType(), d.Subtype())
	}
	var c Command
	c.SetSGL1(d)
	if c.PRP1 != 0x1000_2000 || c.PRP2 != 0x30<<56|4096 {
		t.Errorf("SetSGL1: prp1 %#x prp2 %#x", c.PRP1, c.PRP2)
	}
	if got := c.SGL1(); got != d {
		t.Errorf("SGL1 round trip = %+v, want %+v", got, d)
	}
	// The command bytes 24..39 equal the descriptor bytes.
	cb := asBytes(&c)
	if string(cb[24:40]) != string(b) {
		t.Errorf("SGL1 in command % x, descriptor % x", cb[24:40], b)
	}

	r := DSMRange{Attributes: 0x11, NLB: 8, SLBA: 0x123456789}
	rb := asBytes(&r)
	le := binary.LittleEndian
	if len(rb) != 16 || le.Uint32(rb[0:]) != 0x11 || le.Uint32(rb[4:]) != 8 || le.Uint64(rb[8:]) != 0x123456789 {
		t.Errorf("DSM range bytes % x", rb)
	}
}
