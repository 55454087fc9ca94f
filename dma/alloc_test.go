package dma

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestMain checks, after all tests, that the package left no memory locked:
// every Buffer was freed.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 && os.Getenv(memlockChildEnv) == "" {
		if kb, ok := procStatusKB("VmLck"); ok && kb != 0 {
			fmt.Fprintf(os.Stderr, "dma: %d KiB still locked after the tests: a Buffer leaked\n", kb)
			code = 1
		}
	}
	os.Exit(code)
}

// newTestAllocator returns an Allocator over m (a default SoftMapper if nil)
// that the test must leave empty: Close must report no leak.
func newTestAllocator(t testing.TB, m Mapper, opts ...Option) *Allocator {
	t.Helper()
	if m == nil {
		m = NewSoftMapper()
	}
	a, err := NewAllocator(m, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return a
}

func mustAlloc(t testing.TB, a *Allocator, size int) *Buffer {
	t.Helper()
	b, err := a.Alloc(size)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAllocFreeLookup(t *testing.T) {
	m := NewSoftMapper()
	a := newTestAllocator(t, m, WithHugePages(false))
	b := mustAlloc(t, a, 5000)
	if b.Len() != 5000 || len(b.Bytes) != 5000 || cap(b.Bytes) != 5000 {
		t.Fatalf("len %d cap %d, want 5000", len(b.Bytes), cap(b.Bytes))
	}
	if b.Mapped() != 8192 {
		t.Errorf("Mapped = %d, want 8192", b.Mapped())
	}
	if b.IOVA == 0 || uint64(b.IOVA)%uint64(osPageSize) != 0 {
		t.Errorf("IOVA %v is zero or not page aligned", b.IOVA)
	}
	if addrOf(b.Bytes)%uintptr(osPageSize) != 0 {
		t.Errorf("Bytes at %#x is not page aligned", addrOf(b.Bytes))
	}
	if slices.ContainsFunc(b.Bytes, func(c byte) bool { return c != 0 }) {
		t.Error("fresh buffer is not zeroed")
	}

	for _, c := range []struct{ off, n int }{{0, 5000}, {0, 1}, {1, 1}, {4095, 2}, {4096, 904}, {4999, 1}, {123, 4000}} {
		got, err := a.Lookup(b.Bytes[c.off : c.off+c.n])
		if err != nil || got != b.IOVA+IOVA(c.off) || got != b.IOVAAt(c.off) {
			t.Errorf("Lookup(Bytes[%d:%d]) = %v, %v; want %v", c.off, c.off+c.n, got, err, b.IOVA+IOVA(c.off))
		}
	}
	if b.IOVAAt(5000) != b.IOVA+5000 {
		t.Error("IOVAAt(Len) is not the end address")
	}

	// The device sees what the CPU wrote, through the IOVA only.
	copy(b.Bytes[4090:], "across a page")
	dev, err := m.Translate(b.IOVAAt(4090), 13)
	if err != nil || string(dev) != "across a page" {
		t.Fatalf("device view = %q, %v", dev, err)
	}
	b.Zero()
	if string(dev) != strings.Repeat("\x00", 13) {
		t.Error("Zero did not clear the bytes the device sees")
	}

	if a.LastHugeFallback() != nil {
		t.Error("LastHugeFallback set without a fallback")
	}
	st := a.Stats()
	if st != (Stats{Buffers: 1, Bytes: 8192, Allocs: 1}) {
		t.Errorf("Stats = %+v", st)
	}
	old, oldIOVA := b.Bytes, b.IOVA
	if err := a.Free(b); err != nil {
		t.Fatal(err)
	}
	if b.Bytes != nil || b.IOVA != 0 {
		t.Error("Free left Bytes or IOVA set")
	}
	if _, err := a.Lookup(old[:10]); !errors.Is(err, ErrNotDMA) {
		t.Errorf("Lookup of a freed buffer = %v, want ErrNotDMA", err)
	}
	if _, err := m.Translate(oldIOVA, 1); !errors.Is(err, ErrFault) {
		t.Errorf("device reaches a freed buffer: %v", err)
	}
	if err := a.Free(b); !errors.Is(err, ErrNotDMA) {
		t.Errorf("double Free = %v, want ErrNotDMA", err)
	}
	if st := a.Stats(); st != (Stats{Allocs: 1, Frees: 1}) {
		t.Errorf("Stats after Free = %+v", st)
	}
}

func TestLookupRefuses(t *testing.T) {
	a := newTestAllocator(t, nil)
	other := newTestAllocator(t, nil)
	b := mustAlloc(t, a, 4096)
	defer a.Free(b)
	ob := mustAlloc(t, other, 4096)
	defer other.Free(ob)

	heap := make([]byte, 4096)
	cases := map[string][]byte{
		"go heap":               heap,
		"go heap, small":        []byte("hello"),
		"empty":                 b.Bytes[:0],
		"nil":                   nil,
		"another allocator":     ob.Bytes,
		"past the buffer's end": unsafe.Slice(&b.Bytes[4000], 200), // inside the mapping's page, not the buffer
	}
	for name, s := range cases {
		_, err := a.Lookup(s)
		if !errors.Is(err, ErrNotDMA) {
			t.Errorf("%s: Lookup = %v, want ErrNotDMA", name, err)
			continue
		}
		if len(s) > 0 && (!strings.Contains(err.Error(), "dma.Allocator.Alloc") || !strings.Contains(err.Error(), "bounce")) {
			t.Errorf("%s: error %q does not name the fix", name, err)
		}
	}
}

// TestAllocProperties allocates and frees at random and checks after every
// step that the live buffers' IOVAs are inside the windows, aligned, never 0,
// never overlapping, and that Lookup and the device view agree with Bytes.
func TestAllocProperties(t *testing.T) {
	windows := []Range{{Start: 0, Last: 0x7_ffff}, {Start: 0x10_0000, Last: 0x13_ffff}}
	m := NewSoftMapper(SoftRanges(windows...))
	a := newTestAllocator(t, m, WithHugePages(false))
	rng := rand.New(rand.NewPCG(7, 8))
	var live []*Buffer
	spaceErrs := 0
	for step := range 3000 {
		if len(live) > 0 && rng.IntN(5) < 2 {
			i := rng.IntN(len(live))
			if err := a.Free(live[i]); err != nil {
				t.Fatal(err)
			}
			live = slices.Delete(live, i, i+1)
		} else {
			size := 1 + rng.IntN(40000)
			b, err := a.Alloc(size)
			if errors.Is(err, ErrIOVASpace) {
				spaceErrs++
				continue
			}
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			b.Bytes[0], b.Bytes[size-1] = byte(step), byte(step>>8)
			live = append(live, b)
		}
		sorted := slices.Clone(live)
		slices.SortFunc(sorted, func(x, y *Buffer) int { return int(x.IOVA>>12) - int(y.IOVA>>12) })
		for i, b := range sorted {
			if b.IOVA == 0 || uint64(b.IOVA)%uint64(osPageSize) != 0 {
				t.Fatalf("step %d: IOVA %v zero or unaligned", step, b.IOVA)
			}
			in := false
			for _, w := range windows {
				in = in || w.Contains(b.IOVA, uint64(b.Mapped()))
			}
			if !in {
				t.Fatalf("step %d: [%v, +%d) outside the windows", step, b.IOVA, b.Mapped())
			}
			if i > 0 && sorted[i-1].IOVA+IOVA(sorted[i-1].Mapped()) > b.IOVA {
				t.Fatalf("step %d: %v+%d overlaps %v", step, sorted[i-1].IOVA, sorted[i-1].Mapped(), b.IOVA)
			}
		}
		if len(live) > 0 {
			b := live[rng.IntN(len(live))]
			off := rng.IntN(b.Len())
			n := 1 + rng.IntN(b.Len()-off)
			if got, err := a.Lookup(b.Bytes[off : off+n]); err != nil || got != b.IOVA+IOVA(off) {
				t.Fatalf("step %d: Lookup = %v, %v; want %v", step, got, err, b.IOVA+IOVA(off))
			}
			dev, err := m.Translate(b.IOVA, b.Len())
			if err != nil || &dev[0] != &b.Bytes[0] || &dev[b.Len()-1] != &b.Bytes[b.Len()-1] {
				t.Fatalf("step %d: device view of %v is not the buffer: %v", step, b.IOVA, err)
			}
		}
		if st := a.Stats(); st.Buffers != len(live) || m.Mappings() != len(live) {
			t.Fatalf("step %d: %d live, Stats.Buffers %d, mappings %d", step, len(live), st.Buffers, m.Mappings())
		}
	}
	if spaceErrs == 0 {
		t.Error("the windows never filled up: the test no longer exercises ErrIOVASpace")
	}
	for _, b := range live {
		if err := a.Free(b); err != nil {
			t.Fatal(err)
		}
	}
	// Freed IOVA space coalesces: the whole second window fits one buffer again.
	b, err := a.Alloc(0x4_0000)
	if err != nil {
		t.Fatalf("alloc of a whole window after freeing everything: %v", err)
	}
	if err := a.Free(b); err != nil {
		t.Fatal(err)
	}
}

func TestIOVASpaceExhausted(t *testing.T) {
	m := NewSoftMapper(SoftRanges(Range{Start: 0x1000, Last: 0x2fff}))
	a := newTestAllocator(t, m, WithHugePages(false))
	if _, err := a.Alloc(3 * 4096); !errors.Is(err, ErrIOVASpace) {
		t.Fatalf("alloc larger than the window = %v, want ErrIOVASpace", err)
	} else if !strings.Contains(err.Error(), "12288 bytes") || !strings.Contains(err.Error(), "0x1000, 0x2fff") {
		t.Errorf("error %q lacks the size or the window", err)
	}
	b1 := mustAlloc(t, a, 4096)
	b2 := mustAlloc(t, a, 10)
	_, err := a.Alloc(1)
	if !errors.Is(err, ErrIOVASpace) {
		t.Fatalf("third alloc = %v, want ErrIOVASpace", err)
	}
	if st := a.Stats(); st.Buffers != 2 || m.Mappings() != 2 {
		t.Errorf("failed alloc left state: %+v, %d mappings", st, m.Mappings())
	}
	if err := a.Free(b1); err != nil {
		t.Fatal(err)
	}
	b3 := mustAlloc(t, a, 1)
	if b3.IOVA != 0x1000 {
		t.Errorf("reused IOVA %v, want 0x1000", b3.IOVA)
	}
	for _, b := range []*Buffer{b2, b3} {
		if err := a.Free(b); err != nil {
			t.Fatal(err)
		}
	}
	// A mapper whose only window is page 0 offers nothing.
	if _, err := NewAllocator(NewSoftMapper(SoftRanges(Range{Start: 0, Last: 0xfff}))); !errors.Is(err, ErrIOVASpace) {
		t.Errorf("NewAllocator over page 0 only = %v, want ErrIOVASpace", err)
	}
}

func TestMappingLimit(t *testing.T) {
	m := NewSoftMapper(SoftMaxMappings(2))
	a := newTestAllocator(t, m)
	b1 := mustAlloc(t, a, 100)
	b2 := mustAlloc(t, a, 100)
	_, err := a.Alloc(100)
	if !errors.Is(err, ErrMappingLimit) {
		t.Fatalf("third alloc = %v, want ErrMappingLimit", err)
	}
	if !strings.Contains(err.Error(), "2 mappings in use, the mapper allows 2") || !strings.Contains(err.Error(), "dma_entry_limit") {
		t.Errorf("error %q lacks the numbers or the fix", err)
	}
	if err := a.Free(b1); err != nil {
		t.Fatal(err)
	}
	b3 := mustAlloc(t, a, 100)
	for _, b := range []*Buffer{b2, b3} {
		if err := a.Free(b); err != nil {
			t.Fatal(err)
		}
	}
}

// enospcMapper fails Map with ENOSPC after n mappings, as VFIO does when
// dma_entry_limit is used up, without announcing MaxMappings.
type enospcMapper struct {
	*SoftMapper
	n int
}

func (e *enospcMapper) Map(b []byte, iova IOVA) error {
	if e.Mappings() >= e.n {
		return fmt.Errorf("vfio map dma: %w", unix.ENOSPC)
	}
	return e.SoftMapper.Map(b, iova)
}

// failMapper fails every Map and Unmap.
type failMapper struct{ *SoftMapper }

var errTestMapper = errors.New("test mapper failure")

func (failMapper) Map([]byte, IOVA) error   { return errTestMapper }
func (failMapper) Unmap([]byte, IOVA) error { return errTestMapper }

func TestMapperErrors(t *testing.T) {
	inner := NewSoftMapper()
	a := newTestAllocator(t, &enospcMapper{SoftMapper: inner, n: 1})
	b := mustAlloc(t, a, 1)
	if _, err := a.Alloc(1); !errors.Is(err, ErrMappingLimit) || !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("alloc over an ENOSPC mapper = %v, want ErrMappingLimit wrapping ENOSPC", err)
	}
	if err := a.Free(b); err != nil {
		t.Fatal(err)
	}

	fa, err := NewAllocator(failMapper{NewSoftMapper()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fa.Alloc(1); !errors.Is(err, errTestMapper) {
		t.Fatalf("alloc over a failing mapper = %v", err)
	}
	if st := fa.Stats(); st.Buffers != 0 || st.Bytes != 0 {
		t.Errorf("failed Map left accounting: %+v", st)
	}
	if err := fa.Close(); err != nil {
		t.Fatal(err)
	}
}

// unmapFailer refuses Unmap until told otherwise.
type unmapFailer struct {
	*SoftMapper
	fail bool
}

func (u *unmapFailer) Unmap(b []byte, iova IOVA) error {
	if u.fail {
		return errTestMapper
	}
	return u.SoftMapper.Unmap(b, iova)
}

func TestFreeKeepsBufferWhenUnmapFails(t *testing.T) {
	u := &unmapFailer{SoftMapper: NewSoftMapper()}
	a := newTestAllocator(t, u)
	b := mustAlloc(t, a, 64)
	u.fail = true
	if err := a.Free(b); !errors.Is(err, errTestMapper) {
		t.Fatalf("Free = %v, want the mapper's error", err)
	}
	if _, err := a.Lookup(b.Bytes); err != nil {
		t.Errorf("buffer whose unmap failed is gone: %v", err)
	}
	u.fail = false
	if err := a.Free(b); err != nil {
		t.Fatal(err)
	}
}

func TestCloseReportsLeaks(t *testing.T) {
	m := NewSoftMapper()
	a, err := NewAllocator(m, WithHugePages(false))
	if err != nil {
		t.Fatal(err)
	}
	b1 := mustAlloc(t, a, 100)
	mustAlloc(t, a, 5000)
	mustAlloc(t, a, 3)
	if err := a.Free(b1); err != nil {
		t.Fatal(err)
	}
	err = a.Close()
	if !errors.Is(err, ErrLeaked) {
		t.Fatalf("Close = %v, want ErrLeaked", err)
	}
	if !strings.Contains(err.Error(), "2 buffers (5003 bytes)") || !strings.Contains(err.Error(), "5000 bytes at") {
		t.Errorf("Close error %q does not count and list the leaks", err)
	}
	if st := a.Stats(); st.Buffers != 0 || st.Bytes != 0 || st.Frees != 3 || m.Mappings() != 0 {
		t.Errorf("after Close: %+v, %d mappings", st, m.Mappings())
	}
	if _, err := a.Alloc(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Alloc after Close = %v, want ErrClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}

	// Many leaks: the list is cut short but the count is complete.
	a2, err := NewAllocator(NewSoftMapper())
	if err != nil {
		t.Fatal(err)
	}
	for range 12 {
		mustAlloc(t, a2, 10)
	}
	if err := a2.Close(); err == nil || !strings.Contains(err.Error(), "12 buffers (120 bytes)") || !strings.Contains(err.Error(), "and 4 more") {
		t.Errorf("Close with 12 leaks = %v", err)
	}
}

// TestGuardBytes fills a buffer and checks that nothing past its length
// changed: not the rest of its last page, not the neighbouring buffer.
func TestGuardBytes(t *testing.T) {
	m := NewSoftMapper()
	a := newTestAllocator(t, m, WithHugePages(false))
	bufs := make([]*Buffer, 3)
	for i := range bufs {
		bufs[i] = mustAlloc(t, a, 5000)
	}
	mid := bufs[1]
	for i := range mid.Bytes {
		mid.Bytes[i] = 0xa5
	}
	if slices.ContainsFunc(mid.mem[5000:], func(c byte) bool { return c != 0 }) {
		t.Error("bytes past the buffer's length changed")
	}
	for _, b := range []*Buffer{bufs[0], bufs[2]} {
		dev, err := m.Translate(b.IOVA, b.Mapped())
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(dev, func(c byte) bool { return c != 0 }) {
			t.Errorf("neighbour at %v changed", b.IOVA)
		}
	}
	for _, b := range bufs {
		if err := a.Free(b); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWithPageSize(t *testing.T) {
	if _, err := NewAllocator(NewSoftMapper(), WithPageSize(3000)); err == nil {
		t.Error("page size 3000 accepted")
	}
	if _, err := NewAllocator(NewSoftMapper(), WithPageSize(1024)); err == nil {
		t.Error("page size below the system's accepted")
	}
	a := newTestAllocator(t, nil, WithPageSize(64<<10), WithHugePages(false))
	var bufs []*Buffer
	for range 4 {
		b := mustAlloc(t, a, 100)
		if uint64(b.IOVA)%(64<<10) != 0 || b.Mapped() != 64<<10 {
			t.Errorf("IOVA %v, mapped %d: want 64 KiB alignment and size", b.IOVA, b.Mapped())
		}
		bufs = append(bufs, b)
	}
	for _, b := range bufs {
		if err := a.Free(b); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAllocBadSize(t *testing.T) {
	a := newTestAllocator(t, nil)
	for _, n := range []int{0, -1} {
		if _, err := a.Alloc(n); err == nil {
			t.Errorf("Alloc(%d) succeeded", n)
		}
	}
	if _, err := NewAllocator(nil); err == nil {
		t.Error("NewAllocator(nil) succeeded")
	}
}

// TestLookupConcurrent looks up a stable buffer from several goroutines
// while another allocates and frees; run it with -race.
func TestLookupConcurrent(t *testing.T) {
	a := newTestAllocator(t, nil)
	stable := mustAlloc(t, a, 8192)
	defer a.Free(stable)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				off := i % 8000
				if got, err := a.Lookup(stable.Bytes[off : off+1]); err != nil || got != stable.IOVA+IOVA(off) {
					t.Errorf("Lookup = %v, %v", got, err)
					return
				}
				_ = a.Stats()
			}
		}()
	}
	for range 300 {
		b, err := a.Alloc(4096)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Free(b); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestLookupAllocs(t *testing.T) {
	a := newTestAllocator(t, nil)
	var bufs []*Buffer
	for range 32 {
		bufs = append(bufs, mustAlloc(t, a, 4096))
	}
	defer func() {
		for _, b := range bufs {
			_ = a.Free(b)
		}
	}()
	b := bufs[17]
	n := testing.AllocsPerRun(1000, func() {
		if _, err := a.Lookup(b.Bytes[512:1024]); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("Lookup allocates %v times per call, want 0", n)
	}
}

// TestIOMMUPageSize allocates through an IOMMU whose smallest page is
// 64 KiB. Its mapper checks, as VFIO's type1 does, that the IOVA, the
// address and the length are all multiples of it; mmap aligns addresses to
// 4 KiB only, so the Allocator must align its memory itself.
func TestIOMMUPageSize(t *testing.T) {
	const page = 64 << 10
	m := NewSoftMapper(SoftPageSize(page))
	a := newTestAllocator(t, m, WithHugePages(false))
	if a.PageSize() != page {
		t.Fatalf("PageSize = %d, want the IOMMU's %d", a.PageSize(), page)
	}
	var bufs []*Buffer
	for _, size := range []int{1, 4096, page, page + 1, 5 * page, 1, 1, 1} {
		b, err := a.Alloc(size)
		if err != nil {
			t.Fatalf("alloc %d bytes over a %d-byte iommu page: %v", size, page, err)
		}
		want, _ := roundUp(size, page)
		if b.Mapped() != want || uint64(b.IOVA)%page != 0 || addrOf(b.Bytes)%page != 0 {
			t.Errorf("alloc %d: mapped %d at %v, address %#x: want %d bytes, iova and address %d-aligned", size, b.Mapped(), b.IOVA, addrOf(b.Bytes), want, page)
		}
		b.Bytes[size-1] = 0x5a
		if dev, err := m.Translate(b.IOVAAt(size-1), 1); err != nil || dev[0] != 0x5a {
			t.Errorf("device view of the last byte: %v, %v", dev, err)
		}
		bufs = append(bufs, b)
	}
	for _, b := range bufs {
		if err := a.Free(b); err != nil {
			t.Fatal(err)
		}
	}
}

// pinningMapper is a SoftMapper that says it pins what it maps, as
// VFIOMapper does.
type pinningMapper struct{ *SoftMapper }

func (pinningMapper) PinsMemory() bool { return true }

// TestMemlockAccounting checks that memory a pinning mapper (VFIO) maps is
// not also mlocked: VFIO charges its pins to RLIMIT_MEMLOCK, and locked
// memory would count a second time.
func TestMemlockAccounting(t *testing.T) {
	const size = 256 << 10
	locked := func() uint64 {
		kb, ok := procStatusKB("VmLck")
		if !ok {
			t.Skip("no VmLck in /proc/self/status")
		}
		return kb << 10
	}
	for _, tt := range []struct {
		name string
		m    Mapper
		want uint64 // VmLck growth
	}{
		{"soft mapper: locked by the allocator", NewSoftMapper(), size},
		{"pinning mapper: left to the pin", pinningMapper{NewSoftMapper()}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestAllocator(t, tt.m, WithHugePages(false))
			before := locked()
			b := mustAlloc(t, a, size)
			if got := locked() - before; got != tt.want {
				t.Errorf("VmLck grew by %d bytes for a %d-byte buffer, want %d", got, size, tt.want)
			}
			if err := a.Free(b); err != nil {
				t.Fatal(err)
			}
			if got := locked(); got != before {
				t.Errorf("VmLck %d after Free, was %d", got, before)
			}
		})
	}
}

// TestVFIOMapperRefusesHeap hands the VFIO mapper memory no Allocator made:
// it must refuse before it reaches the container (nil here), with
// ErrNotDMA and a message that says what to do.
func TestVFIOMapperRefusesHeap(t *testing.T) {
	v := NewVFIOMapper(nil)
	a := newTestAllocator(t, nil, WithHugePages(false))
	b := mustAlloc(t, a, 3*4096)
	gone := mustAlloc(t, a, 4096)
	goneBytes := gone.mem
	if err := a.Free(gone); err != nil {
		t.Fatal(err)
	}
	heap := make([]byte, 64<<10) // page aligned: the Go heap's large objects are
	for name, mem := range map[string][]byte{
		"go heap":            heap[:8192],
		"part of a buffer":   b.mem[4096:],
		"a freed buffer":     goneBytes,
		"nil":                nil,
		"whole heap backing": heap,
	} {
		err := v.Map(mem, 0x100000)
		if !errors.Is(err, ErrNotDMA) {
			t.Errorf("%s: Map = %v, want ErrNotDMA", name, err)
			continue
		}
		if !strings.Contains(err.Error(), "dma.Allocator.Alloc") || !strings.Contains(err.Error(), "Go heap") {
			t.Errorf("%s: message %q does not say what is wrong and what to do", name, err)
		}
	}
	if err := a.Free(b); err != nil {
		t.Fatal(err)
	}
}

// shrinkingMapper is a SoftMapper whose windows can be narrowed after the
// Allocator was made, as a VFIO container's are when a group with reserved
// regions joins; Map refuses outside them, as the kernel does.
type shrinkingMapper struct {
	*SoftMapper
	now []Range
}

func (m *shrinkingMapper) Ranges() []Range {
	if m.now != nil {
		return slices.Clone(m.now)
	}
	return m.SoftMapper.Ranges()
}

func (m *shrinkingMapper) Map(b []byte, iova IOVA) error {
	for _, r := range m.Ranges() {
		if r.Contains(iova, uint64(len(b))) {
			return m.SoftMapper.Map(b, iova)
		}
	}
	return fmt.Errorf("map at %v: outside the windows %v: %w", iova, m.Ranges(), ErrFault)
}

// TestAllocFollowsShrinkingRanges narrows the mapper's windows after the
// Allocator was made: new buffers must go inside what is left, and the
// rest must come back when the windows grow again.
func TestAllocFollowsShrinkingRanges(t *testing.T) {
	m := &shrinkingMapper{SoftMapper: NewSoftMapper(SoftRanges(Range{Start: 0x1000, Last: 0xff_ffff}))}
	a := newTestAllocator(t, m, WithHugePages(false))
	first := mustAlloc(t, a, 4096)
	if first.IOVA != 0x1000 {
		t.Fatalf("first buffer at %v", first.IOVA)
	}
	// A reserved region now covers [0x0, 0x7f_ffff].
	m.now = []Range{{Start: 0x80_0000, Last: 0xff_ffff}}
	b := mustAlloc(t, a, 8192)
	if b.IOVA < 0x80_0000 {
		t.Errorf("buffer at %v, inside the region reserved since", b.IOVA)
	}
	m.now = nil
	c := mustAlloc(t, a, 4096)
	if c.IOVA != 0x2000 {
		t.Errorf("buffer after the windows grew back at %v, want 0x2000", c.IOVA)
	}
	m.now = []Range{{Start: 0x80_0000, Last: 0x80_1fff}} // full: only b's pages
	if _, err := a.Alloc(4096); !errors.Is(err, ErrIOVASpace) || !strings.Contains(err.Error(), "now [[0x800000, 0x801fff]]") {
		t.Errorf("alloc with the windows full: %v", err)
	}
	m.now = nil
	for _, x := range []*Buffer{first, b, c} {
		if err := a.Free(x); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGeneration: Generation moves on every Free and on nothing else (an
// Alloc or a refused Free leaves every earlier Lookup valid).
func TestGeneration(t *testing.T) {
	a := newTestAllocator(t, nil, WithHugePages(false))
	g0 := a.Generation()
	b := mustAlloc(t, a, 4096)
	c := mustAlloc(t, a, 4096)
	if _, err := a.Lookup(b.Bytes); err != nil {
		t.Fatal(err)
	}
	if g := a.Generation(); g != g0 {
		t.Fatalf("after two Allocs and a Lookup: generation %d, want %d", g, g0)
	}
	if err := a.Free(b); err != nil {
		t.Fatal(err)
	}
	g1 := a.Generation()
	if g1 == g0 {
		t.Fatal("Free left the generation where it was")
	}
	if err := a.Free(b); err == nil {
		t.Fatal("second Free of a buffer succeeded")
	}
	if g := a.Generation(); g != g1 {
		t.Errorf("a refused Free moved the generation from %d to %d", g1, g)
	}
	if err := a.Free(c); err != nil {
		t.Fatal(err)
	}
	if g := a.Generation(); g == g1 {
		t.Error("the second Free left the generation where it was")
	}
}
