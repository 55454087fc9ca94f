package mmio

import (
	"strings"
	"testing"

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
				if !strings.Contains(v.(string), "mmio:") {
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

func BenchmarkWrite32(b *testing.B) {
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Munmap(buf)
	r := New(buf)
	for i := 0; b.Loop(); i++ {
		r.Write32(0x1000, uint32(i))
	}
}
