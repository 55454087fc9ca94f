package dma

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const nrHugepages = "/proc/sys/vm/nr_hugepages"

// TestHugePageShortage needs no hugepages: it asks for one more than are
// available. The kernel refuses the hugetlb mmap with ENOMEM; a demanding
// allocator must fail with that, the counts and the fix; a default one must
// fall back to base pages and count it.
func TestHugePageShortage(t *testing.T) {
	h := readHugeInfo()
	if !h.ok {
		t.Skipf("%s unreadable: no hugetlb support in this kernel", hugeSysfs)
	}
	avail := h.available()
	if avail > 16 {
		t.Skipf("%d hugepages available; exhausting them would lock %d MiB", avail, 2*avail)
	}
	size := int(avail+1) * HugePageSize

	demand := newTestAllocator(t, nil, WithHugePages(true))
	_, err := demand.Alloc(size)
	if !errors.Is(err, ErrHugePages) {
		t.Fatalf("alloc of %d hugepages with %d available = %v, want ErrHugePages", avail+1, avail, err)
	}
	// The refusal came from the kernel's mmap, not from a look at the
	// counters beforehand.
	if !errors.Is(err, unix.ENOMEM) {
		t.Errorf("alloc of %d hugepages with %d available = %v, want the mmap's ENOMEM in it", avail+1, avail, err)
	}
	for _, want := range []string{"nr_hugepages=" + strconv.FormatUint(h.nr, 10), "free=", "echo ", "/proc/sys/vm/nr_hugepages"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	auto := newTestAllocator(t, nil)
	b := mustAlloc(t, auto, size)
	if b.Huge() {
		t.Fatal("got hugepages that were not available")
	}
	if st := auto.Stats(); st.HugeFallbacks != 1 || st.HugeBytes != 0 || st.Bytes != int64(size) {
		t.Errorf("Stats = %+v, want one fallback and %d base-page bytes", st, size)
	}
	if err := auto.LastHugeFallback(); !errors.Is(err, ErrHugePages) || !errors.Is(err, unix.ENOMEM) || !strings.Contains(err.Error(), "nr_hugepages=") {
		t.Errorf("LastHugeFallback = %v, want the shortage with its counts", err)
	}
	if err := auto.Free(b); err != nil {
		t.Fatal(err)
	}

	// Small buffers never ask for hugepages by default.
	small := mustAlloc(t, auto, 4096)
	if small.Huge() || auto.Stats().HugeFallbacks != 1 {
		t.Error("a 4 KiB buffer went to (or fell back from) hugepages")
	}
	if err := auto.Free(small); err != nil {
		t.Fatal(err)
	}
}

// TestHugePages reserves two hugepages for the test (as root), allocates
// from them, and restores the previous count.
func TestHugePages(t *testing.T) {
	h := readHugeInfo()
	if !h.ok {
		t.Skipf("%s unreadable: no hugetlb support in this kernel", hugeSysfs)
	}
	const need = 2
	if h.available() < need {
		orig, err := os.ReadFile(nrHugepages)
		if err != nil {
			t.Skipf("cannot read %s: %v", nrHugepages, err)
		}
		want := h.nr + need - h.available()
		if err := os.WriteFile(nrHugepages, []byte(strconv.FormatUint(want, 10)), 0); err != nil {
			t.Skipf("cannot raise %s to %d (needs root and a writable /proc/sys): %v", nrHugepages, want, err)
		}
		t.Cleanup(func() {
			if err := os.WriteFile(nrHugepages, orig, 0); err != nil {
				t.Errorf("restore %s to %s: %v", nrHugepages, strings.TrimSpace(string(orig)), err)
			}
		})
		if h = readHugeInfo(); h.available() < need {
			t.Skipf("the kernel reserved only %d of %d hugepages (memory too fragmented)", h.available(), need)
		}
	}
	before := h.available()

	m := NewSoftMapper()
	a := newTestAllocator(t, m) // default: hugepages for >= 2 MiB
	b := mustAlloc(t, a, HugePageSize)
	if !b.Huge() {
		t.Fatal("a 2 MiB buffer did not get a hugepage")
	}
	if uint64(b.IOVA)%HugePageSize != 0 || addrOf(b.Bytes)%HugePageSize != 0 {
		t.Errorf("hugepage buffer at %#x, IOVA %v: not 2 MiB aligned", addrOf(b.Bytes), b.IOVA)
	}
	if got := readHugeInfo().available(); got != before-1 {
		t.Errorf("available hugepages %d -> %d, want one fewer", before, got)
	}
	for i := range b.Bytes {
		b.Bytes[i] = byte(i)
	}
	dev, err := m.Translate(b.IOVAAt(HugePageSize-4096), 4096)
	if err != nil || dev[4095] != byte((HugePageSize-1)&0xff) {
		t.Fatalf("device view of the hugepage: %v", err)
	}
	if iova, err := a.Lookup(b.Bytes[12345:12346]); err != nil || iova != b.IOVA+12345 {
		t.Errorf("Lookup = %v, %v", iova, err)
	}

	demand := newTestAllocator(t, nil, WithHugePages(true))
	small := mustAlloc(t, demand, 100)
	if !small.Huge() || small.Mapped() != HugePageSize || uint64(small.IOVA)%HugePageSize != 0 {
		t.Errorf("demanded hugepage: huge %v, mapped %d, IOVA %v", small.Huge(), small.Mapped(), small.IOVA)
	}
	if st := demand.Stats(); st.HugeBytes != HugePageSize || st.Bytes != HugePageSize {
		t.Errorf("Stats = %+v", st)
	}

	for _, x := range []struct {
		a *Allocator
		b *Buffer
	}{{a, b}, {demand, small}} {
		if err := x.a.Free(x.b); err != nil {
			t.Fatal(err)
		}
	}
	if got := readHugeInfo().available(); got != before {
		t.Errorf("available hugepages %d after freeing, want %d", got, before)
	}
	// With some hugepages free, a request for more than are free is
	// still refused up front (demanded) or falls back (default).
	t.Run("shortage with pages free", TestHugePageShortage)
	if st := a.Stats(); st.HugeBytes != 0 || st.HugeFallbacks != 0 {
		t.Errorf("Stats after free = %+v", st)
	}
}
