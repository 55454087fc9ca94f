package dma_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// dmaEntryLimit is read by vfio_iommu_type1 when a container's IOMMU is
// set, so a value written before vfio.Open applies to that container.
const dmaEntryLimit = "/sys/module/vfio_iommu_type1/parameters/dma_entry_limit"

// TestVFIOMapper allocates through a real VFIO container with a lowered
// dma_entry_limit: the IOVAs must lie in the kernel's ranges, Lookup and
// the pool must work, and the allocation past the limit must fail with
// ErrMappingLimit before VFIO refuses it.
func TestVFIOMapper(t *testing.T) {
	env := vmtest.Require(t, "default")
	addr := env.BindVFIO(t, env.Controllers()[0])

	const limit = 6
	old, err := os.ReadFile(dmaEntryLimit)
	if err != nil {
		t.Fatalf("read %s: %v", dmaEntryLimit, err)
	}
	if err := os.WriteFile(dmaEntryLimit, []byte("6"), 0); err != nil {
		t.Fatalf("lower %s: %v", dmaEntryLimit, err)
	}
	defer os.WriteFile(dmaEntryLimit, old, 0)

	d, err := vfio.Open(addr)
	if err != nil {
		t.Fatalf("open %s: %v", addr, err)
	}
	defer d.Close()
	m := dma.NewVFIOMapper(d.Container())
	n, ok := m.MaxMappings()
	if !ok || n != limit {
		t.Fatalf("MaxMappings = %d, %v; want %d, true", n, ok, limit)
	}
	ranges := m.Ranges()
	if len(ranges) == 0 {
		t.Fatal("no IOVA ranges")
	}
	t.Logf("iova ranges %v, iommu page %d", ranges, m.IOMMUPageSize())

	a, err := dma.NewAllocator(m, dma.WithHugePages(false))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := dma.NewPool(a, 4096, 64, 4096)
	if err != nil {
		t.Fatal(err)
	}
	it, ok := pool.Get()
	if !ok {
		t.Fatal("empty pool")
	}
	if iova, err := a.Lookup(it.Bytes[8:]); err != nil || iova != it.IOVA+8 {
		t.Errorf("Lookup in a pool item = %v, %v", iova, err)
	}
	if err := pool.Put(it); err != nil {
		t.Fatal(err)
	}

	var bufs []*dma.Buffer
	for {
		b, err := a.Alloc(3 * 4096)
		if errors.Is(err, dma.ErrMappingLimit) {
			if !strings.Contains(err.Error(), "dma_entry_limit") {
				t.Errorf("error %q does not name dma_entry_limit", err)
			}
			break
		}
		if err != nil {
			t.Fatalf("alloc %d: %v", len(bufs), err)
		}
		in := false
		for _, r := range ranges {
			in = in || r.Contains(b.IOVA, uint64(b.Mapped()))
		}
		if !in {
			t.Errorf("buffer at %v+%d outside %v", b.IOVA, b.Mapped(), ranges)
		}
		bufs = append(bufs, b)
	}
	if got := len(bufs) + 1; got != limit { // + the pool's buffer
		t.Errorf("got %d mappings before ErrMappingLimit, want %d", got, limit)
	}
	if d.Container().MappedBytes() != uint64(len(bufs)*3*4096+64*4096) {
		t.Errorf("container maps %d bytes", d.Container().MappedBytes())
	}
	for _, b := range bufs {
		if err := a.Free(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := pool.Free(); err != nil {
		t.Fatal(err)
	}
	if got := d.Container().MappedBytes(); got != 0 {
		t.Errorf("container still maps %d bytes after freeing everything", got)
	}
	if n, _ := m.MaxMappings(); n != limit {
		t.Errorf("MaxMappings after freeing = %d, want %d", n, limit)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}
