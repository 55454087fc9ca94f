package mmio

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func mapped(t *testing.T, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

func TestReadWrite(t *testing.T) {
	b := mapped(t, 4096)
	r := New(b)
	if r.Len() != 4096 {
		t.Fatalf("Len = %d, want 4096", r.Len())
	}
	r.Write32(0x14, 0x00460001)
	if got := r.Read32(0x14); got != 0x00460001 {
		t.Fatalf("Read32 = %#x", got)
	}
	// Little-endian layout in memory, as a device sees it.
	if b[0x14] != 0x01 || b[0x17] != 0x00 || b[0x16] != 0x46 {
		t.Fatalf("bytes = % x", b[0x14:0x18])
	}
	r.Write64(0x28, 0x1122334455667788)
	if got := r.Read64(0x28); got != 0x1122334455667788 {
		t.Fatalf("Read64 = %#x", got)
	}
	if lo, hi := r.Read32(0x28), r.Read32(0x2c); lo != 0x55667788 || hi != 0x11223344 {
		t.Fatalf("halves lo=%#x hi=%#x", lo, hi)
	}
	// The last register of the region is reachable.
	r.Write32(4092, 7)
	if r.Read32(4092) != 7 {
		t.Fatal("last register")
	}
}

func TestOutOfRangePanics(t *testing.T) {
	r := New(mapped(t, 4096))
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"read32 past end", func() { r.Read32(4096) }},
		{"read64 straddling end", func() { r.Read64(4088 + 8) }},
		{"write32 misaligned", func() { r.Write32(2, 1) }},
		{"write64 misaligned", func() { r.Write64(4, 1) }},
		{"huge offset", func() { r.Read32(^uintptr(0) - 3) }},
		{"zero region", func() { Region{}.Read32(0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				v := recover()
				if v == nil {
					t.Fatal("no panic")
				}
				if err, ok := v.(error); !ok || !strings.Contains(err.Error(), "mmio:") {
					t.Fatalf("panic %v", v)
				}
			}()
			tc.f()
		})
	}
}

func TestUnalignedBasePanics(t *testing.T) {
	b := mapped(t, 4096)
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for unaligned base")
		}
	}()
	New(b[1:])
}

// TestStoreWidth: a store writes its register's bytes and no others (guard
// bytes around each, as pmem.TestCopy does), little-endian.
func TestStoreWidth(t *testing.T) {
	for _, tc := range []struct {
		name  string
		off   uintptr
		width int
		store func(r Region, off uintptr)
		want  []byte
	}{
		{"write32", 0x1008, 4, func(r Region, off uintptr) { r.Write32(off, 0xa1b2c3d4) }, []byte{0xd4, 0xc3, 0xb2, 0xa1}},
		{"write32 second half of 8", 0x100c, 4, func(r Region, off uintptr) { r.Write32(off, 0x01020304) }, []byte{4, 3, 2, 1}},
		{"write64", 0x28, 8, func(r Region, off uintptr) { r.Write64(off, 0x0102030405060708) }, []byte{8, 7, 6, 5, 4, 3, 2, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := mapped(t, 8192)
			for i := range b {
				b[i] = 0xee
			}
			tc.store(New(b), tc.off)
			for i, got := range b {
				want := byte(0xee)
				if k := i - int(tc.off); k >= 0 && k < tc.width {
					want = tc.want[k]
				}
				if got != want {
					t.Fatalf("byte %#x = %#x, want %#x (register at %#x, %d bytes)", i, got, want, tc.off, tc.width)
				}
			}
		})
	}
}

// TestWrite64LowHalfFirst watches a 64-bit register from another goroutine
// while it is stored with k<<32|k for k = 1, 2, ...: read high half, then
// low half. With the low half stored first, the low half read after a high
// half of k is at least k. Storing the high half first lets the reader see
// a new high half beside an old low half. Plain memory on a busy machine
// may not interleave the goroutines finely enough to catch a wrong order
// every run; TestStoreInstructions checks the instructions themselves.
func TestWrite64LowHalfFirst(t *testing.T) {
	r := New(mapped(t, 4096))
	const n = 1 << 20
	const off = 0x30
	var bad atomic.Uint64
	started, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		close(started)
		for {
			hi := r.Read32(off + 4)
			lo := r.Read32(off)
			if lo < hi {
				bad.Store(uint64(hi)<<32 | uint64(lo))
				return
			}
			if hi == n {
				return
			}
		}
	}()
	<-started
	for k := uint64(1); k <= n; k++ {
		r.Write64(off, k<<32|k)
	}
	<-done
	if v := bad.Load(); v != 0 {
		t.Fatalf("reader saw high half %d with low half %d: the high half was stored first", v>>32, uint32(v))
	}
}

// TestStorePublishes: a goroutine that sees a stored value through Read32
// may read what the storing goroutine wrote before the store. On mmap'd
// memory (a BAR, nvmetest's registers) the race detector sees nothing; on
// Go memory it checks that the store still tells it about the ordering
// (race.go): without that, go test -race reports a data race here.
func TestStorePublishes(t *testing.T) {
	words := make([]uint64, 512) // Go heap, 8-byte aligned
	r := New(unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), 8*len(words)))
	data := make([]int, 2)
	got := make(chan int)
	go func() {
		for r.Read32(0x40) == 0 {
			runtime.Gosched()
		}
		got <- data[0] + data[1]
	}()
	data[0], data[1] = 40, 2
	r.Write32(0x40, 1)
	if v := <-got; v != 42 {
		t.Fatalf("reader saw %d, want 42", v)
	}
	runtime.KeepAlive(words)
}

// disassemble builds testdata/stores, a small program that uses the
// register stores, for goarch, and returns the instructions of each
// function named in syms (full symbol names) that it holds, as go tool
// objdump prints them. (go test runs a stripped test binary, which objdump
// cannot read.)
func disassemble(t *testing.T, goarch string, syms ...string) map[string][]string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "stores")
	build := exec.Command("go", "build", "-o", exe, "./testdata/stores")
	build.Env = append(os.Environ(), "GOARCH="+goarch, "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("GOARCH=%s go build: %v\n%s", goarch, err, out)
	}
	var re []string
	for _, s := range syms {
		re = append(re, regexp.QuoteMeta(s))
	}
	out, err := exec.Command("go", "tool", "objdump", "-s", "^("+strings.Join(re, "|")+")$", exe).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool objdump: %v\n%s", err, out)
	}
	insns := map[string][]string{}
	fn := ""
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "TEXT "); ok {
			fn, _, _ = strings.Cut(rest, "(SB)")
			continue
		}
		// "  file.s:12", "0x...", "", "bytes", "", "INSN OPERANDS", ...
		f := strings.Split(line, "\t")
		if len(f) < 4 || fn == "" {
			continue
		}
		insn := ""
		for _, s := range f[3:] {
			if s = strings.TrimSpace(s); s != "" {
				insn = s
			}
		}
		insns[fn] = append(insns[fn], insn)
	}
	return insns
}

// memStore matches a store to memory through a register, in go tool
// objdump's syntax for amd64 (MOVL CX, 0x4(AX)) and arm64 (MOVW R1, 4(R0)):
// the mnemonic, the offset and the base register.
var memStore = regexp.MustCompile(`^(MOV[BWLQD]?) [^,]+, (0x[0-9a-f]+|[0-9]*)\(([A-Z0-9]+)\)$`)

// locked matches the instructions a register store must never be:
// LOCK-prefixed and exchanges (amd64), exclusives, acquire/release and
// atomic memory operations (arm64).
var locked = regexp.MustCompile(`^(LOCK|XCHG|CMPXCHG|XADD|LDAX|LDXR|STLR|STXR|STLXR|SWP|CAS|LDADD|LDCLR|LDEOR|LDSET)`)

// TestStoreInstructions reads the register stores of this package built
// for each architecture it supports: store32 and store64 are plain 32-bit
// stores at the register's offsets, the low half first for 64-bit
// registers, after DMB OSHST on arm64, with nothing locked; Write32 and
// Write64 reach them.
func TestStoreInstructions(t *testing.T) {
	const pkg = "github.com/seedb8fa28ef/gonvme/internal/mmio."
	stores := []struct {
		sym    string
		caller string
		offs   []string // offsets of the stores, in order
	}{
		{pkg + "store32.abi0", pkg + "Region.Write32", []string{"0"}},
		{pkg + "store64.abi0", pkg + "Region.Write64", []string{"0", "4"}},
	}
	for _, arch := range []struct{ goarch, mov, barrier string }{
		{"amd64", "MOVL", ""},
		{"arm64", "MOVW", "DMB $2"}, // DMB OSHST
	} {
		t.Run(arch.goarch, func(t *testing.T) {
			var syms []string
			for _, st := range stores {
				syms = append(syms, st.sym, st.caller)
			}
			insns := disassemble(t, arch.goarch, syms...)
			for _, sym := range syms {
				if len(insns[sym]) == 0 {
					t.Errorf("%s is not in the binary", sym)
				}
			}
			for _, st := range stores {
				for _, in := range insns[st.caller] {
					if locked.MatchString(in) {
						t.Errorf("locked instruction %q in %s: %q", in, st.caller, insns[st.caller])
					}
				}
				if !slices.ContainsFunc(insns[st.caller], func(in string) bool { return in == "CALL "+st.sym+"(SB)" }) {
					t.Errorf("%s does not call %s: %q", st.caller, st.sym, insns[st.caller])
				}
				var offs []string
				base := ""
				barrier := arch.barrier == ""
				for _, in := range insns[st.sym] {
					if locked.MatchString(in) {
						t.Errorf("locked instruction %q in %s: %q", in, st.sym, insns[st.sym])
					}
					if in == arch.barrier {
						barrier = true
					}
					m := memStore.FindStringSubmatch(in)
					if m == nil || m[3] == "SP" || m[3] == "RSP" {
						continue
					}
					if m[1] != arch.mov {
						t.Errorf("store %q in %s is not a 32-bit %s", in, st.sym, arch.mov)
					}
					if !barrier {
						t.Errorf("store %q in %s without %s before it: %q", in, st.sym, arch.barrier, insns[st.sym])
					}
					barrier = arch.barrier == ""
					if base != "" && m[3] != base {
						t.Errorf("stores through %s and %s in %s: %q", base, m[3], st.sym, insns[st.sym])
					}
					base = m[3]
					off := strings.TrimPrefix(m[2], "0x")
					if off == "" {
						off = "0"
					}
					offs = append(offs, off)
				}
				if !slices.Equal(offs, st.offs) {
					t.Errorf("%s stores at offsets %q, want %q in that order: %q", st.sym, offs, st.offs, insns[st.sym])
				}
			}
		})
	}
}

func benchRegion(b *testing.B) Region {
	buf, err := unix.Mmap(-1, 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Munmap(buf) })
	return New(buf)
}

func BenchmarkWrite32(b *testing.B) {
	r := benchRegion(b)
	for i := 0; b.Loop(); i++ {
		r.Write32(0x1000, uint32(i))
	}
}

func BenchmarkWrite64(b *testing.B) {
	r := benchRegion(b)
	for i := 0; b.Loop(); i++ {
		r.Write64(0x28, uint64(i))
	}
}

func BenchmarkRead32(b *testing.B) {
	r := benchRegion(b)
	var sum uint32
	for b.Loop() {
		sum += r.Read32(0x1000)
	}
	runtime.KeepAlive(sum)
}

// BenchmarkAtomicStore32 is the store Write32 replaced, on the same plain
// memory, for comparison: on write-back memory an XCHG costs a few tens
// of cycles; what it costs on a device's uncached BAR (a bus lock and a
// read round trip) no benchmark on plain memory can show.
func BenchmarkAtomicStore32(b *testing.B) {
	r := benchRegion(b)
	p := (*uint32)(r.at(0x1000, 4))
	for i := 0; b.Loop(); i++ {
		atomic.StoreUint32(p, uint32(i))
	}
}

// TestFenceInstruction reads Fence built for each architecture: a full
// barrier (amd64: MFENCE; arm64: DMB ISH), and nothing that stores to
// memory or is locked.
func TestFenceInstruction(t *testing.T) {
	const sym = "github.com/seedb8fa28ef/gonvme/internal/mmio.Fence.abi0"
	for _, arch := range []struct{ goarch, want string }{
		{"amd64", "MFENCE"},
		{"arm64", "DMB $11"}, // DMB ISH
	} {
		t.Run(arch.goarch, func(t *testing.T) {
			insns := disassemble(t, arch.goarch, sym)[sym]
			if !slices.Contains(insns, arch.want) {
				t.Errorf("Fence is %q, want %q in it", insns, arch.want)
			}
			for _, in := range insns {
				if memStore.MatchString(in) || locked.MatchString(in) {
					t.Errorf("Fence stores to memory or locks: %q", in)
				}
			}
		})
	}
}

func BenchmarkFence(b *testing.B) {
	for b.Loop() {
		Fence()
	}
}
