package dma

import (
	"errors"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// pages maps n anonymous pages for a test and unmaps them at cleanup.
func pages(t testing.TB, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n*softPage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	t.Cleanup(func() { _ = unix.Munmap(b) })
	return b
}

func TestSoftMapperTranslate(t *testing.T) {
	m := NewSoftMapper()
	mem := pages(t, 3)
	if err := m.Map(mem[:2*softPage], 0x10000); err != nil {
		t.Fatal(err)
	}
	if err := m.Map(mem[2*softPage:], 0x20000); err != nil {
		t.Fatal(err)
	}
	mem[5] = 0xaa
	got, err := m.Translate(0x10005, 1)
	if err != nil || len(got) != 1 || got[0] != 0xaa {
		t.Fatalf("Translate(0x10005, 1) = %v, %v; want [0xaa]", got, err)
	}
	// The device's write lands in the CPU's memory.
	got, err = m.Translate(0x20000+softPage-2, 2)
	if err != nil {
		t.Fatal(err)
	}
	got[1] = 0x55
	if mem[3*softPage-1] != 0x55 {
		t.Fatal("write through Translate not visible in the mapped memory")
	}
	if cap(got) != 2 {
		t.Errorf("Translate returned cap %d, want 2 (no reach past the range)", cap(got))
	}

	faults := []struct {
		iova IOVA
		n    int
	}{
		{0, 1},                    // page 0, never mapped
		{0x0fff, 2},               // below the first mapping
		{0x10000, 2*softPage + 1}, // one byte past the end
		{0x11fff, 2},              // straddles the end of the mapping
		{0x12000, 1},              // the gap between mappings
		{0x20000 + softPage, 0},   // just past the last mapping
		{0x10000, -1},             // negative length
		{^IOVA(0), 1},             // top of the space
		{0x1ffff, 2},              // straddles the gap into the next mapping
	}
	for _, f := range faults {
		if b, err := m.Translate(f.iova, f.n); !errors.Is(err, ErrFault) {
			t.Errorf("Translate(%v, %d) = %d bytes, %v; want ErrFault", f.iova, f.n, len(b), err)
		}
	}
	if b, err := m.Translate(0x10000, 0); err != nil || len(b) != 0 {
		t.Errorf("Translate(0x10000, 0) = %v, %v; want empty, nil", b, err)
	}
}

func TestSoftMapperMapChecks(t *testing.T) {
	mem := pages(t, 4)
	m := NewSoftMapper(SoftRanges(Range{Start: 0x1000, Last: 0x8fff}), SoftMaxMappings(3))
	if n, ok := m.MaxMappings(); !ok || n != 3 {
		t.Fatalf("MaxMappings = %d, %v; want 3, true", n, ok)
	}
	if err := m.Map(mem[:2*softPage], 0x2000); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		b    []byte
		iova IOVA
	}{
		{"empty", mem[:0], 0x5000},
		{"unaligned iova", mem[2*softPage : 3*softPage], 0x5001},
		{"unaligned length", mem[2*softPage : 3*softPage-1], 0x5000},
		{"unaligned address", mem[2*softPage+1 : 3*softPage+1], 0x5000},
		{"adjacent below", mem[2*softPage : 3*softPage], 0x1000}, // ends at 0x1fff: allowed
		{"overlaps the start", mem[2*softPage : 4*softPage], 0x1000},
		{"inside", mem[2*softPage : 3*softPage], 0x3000},
		{"overlaps the end", mem[2*softPage : 4*softPage], 0x3000},
		{"outside the window", mem[2*softPage : 3*softPage], 0x9000},
		{"straddles the window end", mem[2*softPage : 4*softPage], 0x8000},
		{"page 0", mem[2*softPage : 3*softPage], 0},
	}
	for _, c := range bad {
		err := m.Map(c.b, c.iova)
		if c.name == "adjacent below" {
			// Adjacent, not overlapping: allowed. Undo it.
			if err != nil {
				t.Errorf("%s: Map = %v, want nil", c.name, err)
			} else if err := m.Unmap(c.b, c.iova); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: Map(%d bytes, %v) succeeded", c.name, len(c.b), c.iova)
			_ = m.Unmap(c.b, c.iova)
		}
	}
	if m.Mappings() != 1 {
		t.Fatalf("Mappings = %d after refused maps, want 1", m.Mappings())
	}
	if err := m.Map(mem[2*softPage:3*softPage], 0x4000); err != nil {
		t.Fatal(err)
	}
	if err := m.Map(mem[3*softPage:], 0x5000); err != nil {
		t.Fatal(err)
	}
	if err := m.Map(mem[3*softPage:], 0x7000); !errors.Is(err, ErrMappingLimit) {
		t.Fatalf("fourth Map = %v, want ErrMappingLimit", err)
	}
	// Unmap must match a mapping exactly.
	if err := m.Unmap(mem[:softPage], 0x2000); !errors.Is(err, ErrFault) {
		t.Errorf("partial Unmap = %v, want ErrFault", err)
	}
	if err := m.Unmap(mem[2*softPage:3*softPage], 0x5000); !errors.Is(err, ErrFault) {
		t.Errorf("Unmap with the wrong memory = %v, want ErrFault", err)
	}
	if err := m.Unmap(mem[:2*softPage], 0x2000); err != nil {
		t.Fatal(err)
	}
	if err := m.Unmap(mem[:2*softPage], 0x2000); !errors.Is(err, ErrFault) {
		t.Errorf("second Unmap = %v, want ErrFault", err)
	}
	if _, err := m.Translate(0x2000, 1); !errors.Is(err, ErrFault) {
		t.Errorf("Translate after Unmap = %v, want ErrFault", err)
	}
}

func TestSoftMapperDefaultRanges(t *testing.T) {
	m := NewSoftMapper()
	for _, r := range m.Ranges() {
		if r.Contains(0, 1) {
			t.Errorf("default range %v contains IOVA 0", r)
		}
		if r.Contains(0xfee00000, 1) {
			t.Errorf("default range %v contains the MSI window", r)
		}
	}
	// Ranges returns a copy.
	m.Ranges()[0].Start = 0
	if m.Ranges()[0].Start == 0 {
		t.Error("Ranges exposes the mapper's own slice")
	}
}

// TestSoftMapperConcurrent has a "device" translate while the "driver" maps
// and unmaps; run it with -race.
func TestSoftMapperConcurrent(t *testing.T) {
	m := NewSoftMapper()
	const slots = 16
	mem := pages(t, slots+1)
	if err := m.Map(mem[:softPage], 0x1000); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := m.Translate(0x1000, softPage); err != nil {
					t.Error(err)
					return
				}
				_, _ = m.Translate(0x100000, 8) // may or may not be mapped
			}
		}()
	}
	for i := range 2000 {
		s := 1 + i%slots
		b := mem[s*softPage : (s+1)*softPage]
		iova := IOVA(0x100000 + (s-1)*softPage)
		if err := m.Map(b, iova); err != nil {
			t.Fatal(err)
		}
		if err := m.Unmap(b, iova); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestSoftMapperTranslateAllocs(t *testing.T) {
	m := NewSoftMapper()
	mem := pages(t, 8)
	for i := range 8 {
		if err := m.Map(mem[i*softPage:(i+1)*softPage], IOVA(0x10000+2*i*softPage)); err != nil {
			t.Fatal(err)
		}
	}
	n := testing.AllocsPerRun(1000, func() {
		if _, err := m.Translate(0x10000+6*softPage+100, 64); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("Translate allocates %v times per call, want 0", n)
	}
}
