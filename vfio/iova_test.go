package vfio

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func qemuBook() *dmaBook {
	return &dmaBook{
		ranges: []IOVARange{{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}},
		pgsize: 4096,
	}
}

func TestDMABookCheck(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name       string
		iova, size uint64
		is         error  // sentinel, or nil for a plain error
		ok         bool   // accepted
		msg        string // in the error
	}{
		{"first page", 0, 4096, nil, true, ""},
		{"2 MiB at 1 GiB", 1 << 30, 2 * mib, nil, true, ""},
		{"last page of low range", 0xfedff000, 4096, nil, true, ""},
		{"first page of high range", 0xfef00000, 4096, nil, true, ""},
		{"top page", 0x7ffffff000, 4096, nil, true, ""},
		{"in the msi window", 0xfee00000, 4096, ErrIOVARange, false, "[0x0, 0xfedfffff]"},
		{"straddles the msi window", 0xfedff000, 8192, ErrIOVARange, false, "0xfef00000"},
		{"above the address width", 0x8000000000, 4096, ErrIOVARange, false, "0x7fffffffff"},
		{"wraps", math.MaxUint64 - 4095, 8192, ErrIOVARange, false, "wraps"},
		{"empty", 0, 0, nil, false, "empty"},
		{"unaligned iova", 0x800, 4096, nil, false, "page size"},
		{"unaligned size", 0, 100, nil, false, "page size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := qemuBook().check(tt.iova, tt.size)
			if tt.ok {
				if err != nil {
					t.Fatalf("check(%#x, %#x) = %v, want ok", tt.iova, tt.size, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("check(%#x, %#x) accepted", tt.iova, tt.size)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err %v is not %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err %q lacks %q", err, tt.msg)
			}
		})
	}
}

func TestDMABookOverlap(t *testing.T) {
	b := qemuBook()
	add := func(iova, size uint64) {
		t.Helper()
		if err := b.check(iova, size); err != nil {
			t.Fatalf("check(%#x, %#x): %v", iova, size, err)
		}
		b.add(mapping{iova: iova, size: size})
	}
	add(0x200000, 0x200000)
	add(0x600000, 0x1000)
	add(0x400000, 0x1000) // adjacent to the first: fine
	add(0x1000, 0x1000)
	if b.bytes != 0x200000+0x3000 {
		t.Errorf("bytes = %#x", b.bytes)
	}
	for i := 1; i < len(b.maps); i++ {
		if b.maps[i-1].iova >= b.maps[i].iova {
			t.Fatalf("maps not sorted: %v", b.maps)
		}
	}
	for _, c := range []struct{ iova, size uint64 }{
		{0x200000, 0x200000}, // duplicate
		{0x3ff000, 0x1000},   // last page of the first
		{0x1ff000, 0x2000},   // straddles its start
		{0x100000, 0x400000}, // swallows two
		{0x600000, 0x1000},
	} {
		err := b.check(c.iova, c.size)
		if !errors.Is(err, ErrOverlap) {
			t.Errorf("check(%#x, %#x) = %v, want ErrOverlap", c.iova, c.size, err)
			continue
		}
		if !strings.Contains(err.Error(), "[0x") || !strings.Contains(err.Error(), "unmap") {
			t.Errorf("overlap message %q names no range or fix", err)
		}
	}
	err := b.check(0x200000, 0x200000)
	if !strings.Contains(err.Error(), "[0x200000, 0x3fffff]") {
		t.Errorf("duplicate message %q does not name the range", err)
	}
	if err := b.check(0x1ff000, 0x1000); err != nil {
		t.Errorf("the page before a mapping: %v", err)
	}
}

func TestDMABookUnmap(t *testing.T) {
	b := qemuBook()
	for _, m := range []mapping{{iova: 0x1000, size: 0x1000}, {iova: 0x200000, size: 0x200000}, {iova: 0x400000, size: 0x1000}} {
		b.add(m)
	}
	if _, _, err := b.covered(0x300000, 0x1000); err == nil || !strings.Contains(err.Error(), "in two") {
		t.Errorf("unmap of part of a mapping: %v", err)
	}
	if _, _, err := b.covered(0x800000, 0x1000); err == nil || !strings.Contains(err.Error(), "nothing mapped") {
		t.Errorf("unmap of nothing: %v", err)
	}
	if _, _, err := b.covered(0, 0); err == nil {
		t.Error("unmap of zero bytes accepted")
	}
	lo, hi, err := b.covered(0x200000, 0x201000) // the 2 MiB one and the page after
	must(t, err)
	b.remove(lo, hi)
	if len(b.maps) != 1 || b.maps[0].iova != 0x1000 || b.bytes != 0x1000 {
		t.Fatalf("after unmap: %v, %#x bytes", b.maps, b.bytes)
	}
	// The space is free again.
	if err := b.check(0x200000, 0x200000); err != nil {
		t.Errorf("remap after unmap: %v", err)
	}
}

func TestDMABookNoRanges(t *testing.T) {
	// A kernel that reports no IOVA capability: only alignment and overlap
	// are checked.
	b := &dmaBook{pgsize: 4096}
	if err := b.check(1<<50, 4096); err != nil {
		t.Errorf("without ranges: %v", err)
	}
}
