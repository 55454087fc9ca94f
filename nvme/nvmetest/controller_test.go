package nvmetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

func newFake(t testing.TB, cfg Config) (*Controller, *dma.Allocator) {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := dma.NewAllocator(c.Mapper())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close fake: %v", err)
		}
		if err := mem.Close(); err != nil {
			t.Errorf("allocator: %v", err)
		}
	})
	return c, mem
}

func waitCSTS(t *testing.T, c *Controller, ok func(spec.CSTS) bool) spec.CSTS {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		s := spec.CSTS(c.Registers().Read32(spec.RegCSTS))
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("CSTS %v: condition not met", s)
		}
		time.Sleep(10 * time.Microsecond)
	}
}

func TestRegisters(t *testing.T) {
	c, _ := newFake(t, Config{MQES: 511, DSTRD: 1, TO: 3})
	regs := c.Registers()
	if regs.Len() != RegisterSize {
		t.Fatalf("register window %#x bytes, want %#x", regs.Len(), RegisterSize)
	}
	capv := spec.CAP(regs.Read64(spec.RegCAP))
	if capv.MQES() != 511 || capv.DSTRD() != 1 || capv.TO() != 1500*time.Millisecond || capv.CSS()&spec.CAPCSSNVM == 0 || !capv.CQR() || capv.MPSMIN() != 0 {
		t.Errorf("CAP %v", capv)
	}
	if vs := spec.VS(regs.Read32(spec.RegVS)); vs != spec.VS1_4 {
		t.Errorf("VS %v, want 1.4", vs)
	}
	// Enabling with an admin queue that is not mapped is fatal.
	regs.Write32(spec.RegAQA, uint32(spec.MakeAQA(3, 3)))
	regs.Write64(spec.RegASQ, 0x7000_0000)
	regs.Write64(spec.RegACQ, 0x7000_1000)
	regs.Write32(spec.RegCC, uint32(spec.CC(0).WithEN(true)))
	waitCSTS(t, c, spec.CSTS.CFS)
	regs.Write32(spec.RegCC, 0)
	s := waitCSTS(t, c, func(s spec.CSTS) bool { return !s.RDY() && !s.CFS() })
	if s.CFS() {
		t.Errorf("CFS survives a disable: %v", s)
	}
	if got := c.Stats().Resets; got != 1 {
		t.Errorf("resets %d, want 1", got)
	}
	if e := c.HostErrors(); len(e) != 0 {
		t.Errorf("host errors %v", e)
	}
}

func TestBareQueueIO(t *testing.T) {
	c, mem := newFake(t, Config{Namespaces: []NSConfig{{Blocks: 1024, BlockSize: 512}}})
	q, err := NewBareQueue(c, mem, 8)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := mem.Alloc(8192)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Free(buf)
	for i := range buf.Bytes {
		buf.Bytes[i] = byte(i * 7)
	}
	want := bytes.Clone(buf.Bytes)
	run := func(cmd spec.Command) spec.Status {
		t.Helper()
		cid, ok := q.Submit(&cmd)
		if !ok {
			t.Fatal("queue full")
		}
		q.Ring()
		deadline := time.Now().Add(2 * time.Second)
		for {
			if got, st, ok := q.Reap(); ok {
				q.Release()
				if got != cid {
					t.Fatalf("completion for cid %d, want %d", got, cid)
				}
				return st
			}
			if time.Now().After(deadline) {
				t.Fatal("no completion")
			}
		}
	}
	w := ReadCommand(1, 100, 16, buf.IOVA, 8192)
	w.Opcode = uint8(spec.IOWrite)
	if st := run(w); !st.Success() {
		t.Fatalf("write: %v", st)
	}
	clear(buf.Bytes)
	if st := run(ReadCommand(1, 100, 16, buf.IOVA, 8192)); !st.Success() {
		t.Fatalf("read: %v", st)
	}
	if !bytes.Equal(buf.Bytes, want) {
		t.Fatal("read back differs from what was written")
	}

	tests := []struct {
		name string
		cmd  spec.Command
		want spec.Status
	}{
		{"prp1 not dword aligned", spec.Command{Opcode: uint8(spec.IORead), NSID: 1, PRP1: uint64(buf.IOVA) + 2}, stPRPOffset},
		{"prp2 not page aligned", spec.Command{Opcode: uint8(spec.IORead), NSID: 1, PRP1: uint64(buf.IOVA), PRP2: uint64(buf.IOVA) + 4096 + 8, CDW12: 15}, stPRPOffset},
		{"unmapped iova", spec.Command{Opcode: uint8(spec.IORead), NSID: 1, PRP1: 0x6000_0000}, stXferErr},
		{"lba out of range", spec.Command{Opcode: uint8(spec.IORead), NSID: 1, PRP1: uint64(buf.IOVA), CDW10: 1024}, stLBARange},
		{"bad namespace", spec.Command{Opcode: uint8(spec.IORead), NSID: 2, PRP1: uint64(buf.IOVA)}, stInvalidNS},
		{"bad opcode", spec.Command{Opcode: 0x7e, NSID: 1}, stInvalidOp},
		{"sgl not supported", spec.Command{Opcode: uint8(spec.IORead), Flags: spec.FlagPSDTSGL, NSID: 1, PRP1: uint64(buf.IOVA)}, stInvalidFld},
	}
	faults := c.Stats().DMAFaults
	for _, tt := range tests {
		if st := run(tt.cmd); st != tt.want {
			t.Errorf("%s: status %v, want %v", tt.name, st, tt.want)
		}
	}
	if got := c.Stats().DMAFaults; got != faults+1 {
		t.Errorf("DMA faults %d, want %d", got, faults+1)
	}

	admin := []struct {
		name string
		cmd  spec.Command
		want spec.Status
	}{
		{"create cq qid 0", spec.Command{Opcode: uint8(spec.AdminCreateIOCQ), PRP1: uint64(buf.IOVA), CDW10: 3 << 16, CDW11: 1}, stQIDInvalid},
		{"create cq existing", spec.Command{Opcode: uint8(spec.AdminCreateIOCQ), PRP1: uint64(buf.IOVA), CDW10: 3<<16 | 1, CDW11: 1}, stQIDInvalid},
		{"create cq too big", spec.Command{Opcode: uint8(spec.AdminCreateIOCQ), PRP1: uint64(buf.IOVA), CDW10: 4096<<16 | 2, CDW11: 1}, stQSizeInvalid},
		{"create cq beyond grant", spec.Command{Opcode: uint8(spec.AdminCreateIOCQ), PRP1: uint64(buf.IOVA), CDW10: 3<<16 | 17, CDW11: 1}, stQIDInvalid},
		{"create sq no cq", spec.Command{Opcode: uint8(spec.AdminCreateIOSQ), PRP1: uint64(buf.IOVA), CDW10: 3<<16 | 2, CDW11: 2<<16 | 1}, stCQInvalid},
		{"delete cq in use", spec.Command{Opcode: uint8(spec.AdminDeleteIOCQ), CDW10: 1}, stQDeletion},
		{"delete sq missing", spec.Command{Opcode: uint8(spec.AdminDeleteIOSQ), CDW10: 5}, stQIDInvalid},
		{"abort nothing", spec.Command{Opcode: uint8(spec.AdminAbort), CDW10: 1 | 3<<16}, stOK},
		{"unknown log", spec.Command{Opcode: uint8(spec.AdminGetLogPage), PRP1: uint64(buf.IOVA), CDW10: 0x42 | 127<<16}, stInvalidLog},
	}
	for _, tt := range admin {
		err := q.adminCmd(tt.cmd)
		if tt.want.Success() {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if err == nil || err.Error() != "status "+tt.want.String() {
			t.Errorf("%s: %v, want status %v", tt.name, err, tt.want)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if e := c.HostErrors(); len(e) != 0 {
		t.Errorf("host errors %v", e)
	}
}

func TestRemove(t *testing.T) {
	c, _ := newFake(t, Config{})
	c.Remove()
	for _, off := range []uintptr{spec.RegCAP, spec.RegVS, spec.RegCC, spec.RegCSTS, spec.RegDoorbellBase} {
		if v := c.Registers().Read32(off); v != 0xffffffff {
			t.Errorf("register %#x reads %#x after Remove", off, v)
		}
	}
	c.Registers().Write32(spec.RegCC, 1)
	deadline := time.Now().Add(2 * time.Second)
	for c.Registers().Read32(spec.RegCC) != 0xffffffff {
		if time.Now().After(deadline) {
			t.Fatalf("CC reads %#x 2 s after a write to a removed controller", c.Registers().Read32(spec.RegCC))
		}
		time.Sleep(50 * time.Microsecond)
	}
	if s := c.Stats(); s.Enables != 0 {
		t.Errorf("a removed controller was enabled")
	}
	if err := c.Reset(); err == nil {
		t.Error("function reset of a removed controller succeeded")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{MDTS: 13},
		{Namespaces: []NSConfig{{BlockSize: 1000}}},
		{DSTRD: 11},
	} {
		if c, err := New(cfg); err == nil {
			c.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	if _, err := New(Config{Namespaces: []NSConfig{{BlockSize: 4096, Blocks: 1 << 21}}}); err == nil {
		t.Error("a namespace of 8 GiB was accepted")
	}
}
