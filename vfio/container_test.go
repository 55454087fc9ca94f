package vfio

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/internal/dmamem"
)

// dmaMem maps n bytes of DMA memory aligned to align for a test.
func dmaMem(t *testing.T, n, align int) *dmamem.Memory {
	t.Helper()
	m, err := dmamem.Map(n, align, false, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if m.Bytes() != nil {
			m.Unmap()
		}
	})
	return m
}

// attached returns a fake container with group n attached.
func attached(t *testing.T, k *fakeKernel, n int) (*Container, *Group) {
	t.Helper()
	c := k.container()
	g := k.group(n)
	must(t, g.SetContainer(c))
	return c, g
}

// TestContainerLastGroupDetach closes the only group of a container with
// mappings in it: the kernel drops the IOMMU and the mappings, and so must
// the container's own record. A second group then sets the IOMMU up again,
// and maps where the dropped mapping was.
func TestContainerLastGroupDetach(t *testing.T) {
	k := newFakeKernel(t)
	c, g := attached(t, k, 3)
	a, b := dmaMem(t, 8192, 0), dmaMem(t, 4096, 0)
	must(t, c.MapDMA(a, 0x100000))
	must(t, c.MapDMA(b, 0x200000))
	if c.PageSize() != 4096 || c.MappedBytes() != 12288 || len(c.IOVARanges()) == 0 {
		t.Fatalf("attached: page %d, mapped %d, ranges %v", c.PageSize(), c.MappedBytes(), c.IOVARanges())
	}

	must(t, g.Close())
	if c.PageSize() != 0 || c.MappedBytes() != 0 || c.IOVARanges() != nil {
		t.Errorf("after the last group left: page %d, mapped %d, ranges %v; want all zero", c.PageSize(), c.MappedBytes(), c.IOVARanges())
	}
	if _, ok := c.DMAAvailable(); ok {
		t.Error("DMAAvailable reports a count without an IOMMU")
	}
	if err := c.MapDMA(a, 0x100000); err == nil || !strings.Contains(err.Error(), "no group attached") {
		t.Errorf("map without a group: %v", err)
	}

	g2 := k.group(4)
	must(t, g2.SetContainer(c))
	if n := k.count(ioctlSetIOMMU); n != 2 {
		t.Errorf("SET_IOMMU issued %d times, want again for the new first group", n)
	}
	// The kernel forgot a's mapping: the same IOVA maps again.
	must(t, c.MapDMA(a, 0x100000))
	if got := k.kernelMaps(c); len(got) != 1 || got[0].iova != 0x100000 {
		t.Errorf("kernel mappings %v, want only the new one", got)
	}
	// b's mapping went with the IOMMU: unmapping it only forgets it, once.
	must(t, c.UnmapDMA(0x200000, 4096))
	if err := c.UnmapDMA(0x200000, 4096); err == nil {
		t.Error("second unmap of a dropped mapping accepted")
	}
	if n := k.count(ioctlIOMMUUnmapDMA); n != 0 {
		t.Errorf("UNMAP_DMA issued %d times for a mapping the kernel had dropped", n)
	}
	// a was mapped anew: its old dropped record is gone, the live one unmaps.
	must(t, c.UnmapDMA(0x100000, 8192))
	if c.MappedBytes() != 0 || len(k.kernelMaps(c)) != 0 {
		t.Errorf("after unmap: %d bytes, kernel %v", c.MappedBytes(), k.kernelMaps(c))
	}
	must(t, g2.Close())
	must(t, c.Close())
}

// TestContainerAttachInfoFails makes GET_INFO fail right after SET_IOMMU:
// the group is detached again (dropping the IOMMU) and the container must
// not believe the IOMMU is set.
func TestContainerAttachInfoFails(t *testing.T) {
	k := newFakeKernel(t)
	c := k.container()
	g := k.group(3)
	k.failInfo = 1
	if err := g.SetContainer(c); err == nil {
		t.Fatal("SetContainer with a failing GET_INFO succeeded")
	}
	if n := k.count(ioctlGroupUnsetContainer); n != 1 {
		t.Errorf("GROUP_UNSET_CONTAINER issued %d times, want 1", n)
	}
	if c.PageSize() != 0 || c.IOVARanges() != nil {
		t.Errorf("after the failed attach: page %d, ranges %v", c.PageSize(), c.IOVARanges())
	}
	must(t, g.SetContainer(c))
	if n := k.count(ioctlSetIOMMU); n != 2 {
		t.Errorf("SET_IOMMU issued %d times, want 2 (the kernel dropped the first with the group)", n)
	}
	must(t, c.MapDMA(dmaMem(t, 4096, 0), 0x1000))
	must(t, c.UnmapDMA(0x1000, 4096))
	must(t, g.Close())
}

// TestDeviceKeepsGroupAttached closes a group whose device is still open:
// the kernel keeps the group attached (the device fd holds it), so the
// mappings stay until the device closes.
func TestDeviceKeepsGroupAttached(t *testing.T) {
	k := newFakeKernel(t)
	c, g := attached(t, k, 3)
	d, err := g.OpenDevice("0000:00:04.0")
	must(t, err)
	must(t, c.MapDMA(dmaMem(t, 4096, 0), 0x1000))
	must(t, g.Close())
	if c.MappedBytes() != 4096 || c.PageSize() == 0 || len(k.kernelMaps(c)) != 1 {
		t.Fatalf("group closed, device open: mapped %d, page %d, kernel %v; want all kept", c.MappedBytes(), c.PageSize(), k.kernelMaps(c))
	}
	must(t, c.MapDMA(dmaMem(t, 4096, 0), 0x2000))
	must(t, d.Close())
	if c.MappedBytes() != 0 || c.PageSize() != 0 {
		t.Errorf("after the last device closed: mapped %d, page %d", c.MappedBytes(), c.PageSize())
	}
}

// TestUnmapDMAChecksSize has the kernel unmap less than the container's
// record says was mapped.
func TestUnmapDMAChecksSize(t *testing.T) {
	k := newFakeKernel(t)
	c, g := attached(t, k, 3)
	defer g.Close()
	must(t, c.MapDMA(dmaMem(t, 8192, 0), 0x10000))
	k.short = 4096
	err := c.UnmapDMA(0x10000, 8192)
	if !errors.Is(err, ErrUnmapMismatch) || !strings.Contains(err.Error(), "unmapped 4096 of 8192 bytes") {
		t.Fatalf("unmap with a short kernel count: %v, want ErrUnmapMismatch with both sizes", err)
	}
	if c.MappedBytes() != 0 {
		t.Errorf("MappedBytes %d after the unmap, want 0: nothing is mapped there any more", c.MappedBytes())
	}
	// A retry (dma.Allocator.Free after a failed unmap) succeeds.
	must(t, c.UnmapDMA(0x10000, 8192))
	must(t, c.MapDMA(dmaMem(t, 8192, 0), 0x10000))
}

// TestIOVARangesPerGroup attaches a second group whose reserved region
// (an RMRR, say) cuts a hole in the IOVA space: the ranges must be read
// again, and a map into the hole refused by the container itself.
func TestIOVARangesPerGroup(t *testing.T) {
	k := newFakeKernel(t)
	hole := IOVARange{0x7000_0000, 0x7fff_ffff}
	k.reserved[5] = []IOVARange{hole}
	c, g := attached(t, k, 3)
	if got := c.IOVARanges(); !reflect.DeepEqual(got, []IOVARange{k.aperture}) {
		t.Fatalf("ranges with group 3: %v", got)
	}
	g5 := k.group(5)
	must(t, g5.SetContainer(c))
	want := []IOVARange{{0, hole.Start - 1}, {hole.Last + 1, k.aperture.Last}}
	if got := c.IOVARanges(); !reflect.DeepEqual(got, want) {
		t.Fatalf("ranges with groups 3 and 5: %v, want %v", got, want)
	}
	maps := k.count(ioctlIOMMUMapDMA)
	err := c.MapDMA(dmaMem(t, 4096, 0), hole.Start+0x1000)
	if !errors.Is(err, ErrIOVARange) {
		t.Errorf("map in the reserved region: %v, want ErrIOVARange", err)
	}
	if k.count(ioctlIOMMUMapDMA) != maps {
		t.Error("the container asked the kernel to map into a range it knew was reserved")
	}
	// Group 5 leaves: the ranges are those of group 3 again.
	must(t, g5.Close())
	must(t, g.Close())
	g3 := k.group(3)
	must(t, g3.SetContainer(c))
	if got := c.IOVARanges(); !reflect.DeepEqual(got, []IOVARange{k.aperture}) {
		t.Errorf("ranges after re-attaching group 3 alone: %v", got)
	}
	must(t, g3.Close())
}

// TestLargeIOMMUPage uses an IOMMU whose smallest page is 64 KiB: memory
// aligned only to 4 KiB is refused before the kernel sees it, memory
// aligned to 64 KiB maps.
func TestLargeIOMMUPage(t *testing.T) {
	k := newFakeKernel(t)
	k.pgsizes = 0x10000 | 0x20000000
	c, g := attached(t, k, 3)
	defer g.Close()
	if c.PageSize() != 0x10000 {
		t.Fatalf("page size %#x, want 0x10000", c.PageSize())
	}
	// 64 KiB of memory aligned to 4 KiB but not to 64 KiB.
	off := misaligned(t, 0x10000)
	if err := c.MapDMA(off, 0x10000); err == nil || !strings.Contains(err.Error(), "not aligned to the iommu page size 0x10000") {
		t.Errorf("map of 4 KiB-aligned memory on 64 KiB pages: %v", err)
	}
	if err := c.MapDMA(dmaMem(t, 0x10000, 0), 0x11000); err == nil || !strings.Contains(err.Error(), "multiples of the iommu page size") {
		t.Errorf("map at a 4 KiB-aligned iova on 64 KiB pages: %v", err)
	}
	must(t, c.MapDMA(dmaMem(t, 0x10000, 0x10000), 0x10000))
	must(t, c.UnmapDMA(0x10000, 0x10000))
}

// misaligned maps n bytes whose address is not a multiple of 64 KiB
// (mmap aligns to 4 KiB only, so most tries give one).
func misaligned(t *testing.T, n int) *dmamem.Memory {
	t.Helper()
	for range 64 {
		m := dmaMem(t, n, 0)
		if uintptr(unsafe.Pointer(&m.Bytes()[0]))%0x10000 != 0 {
			return m
		}
	}
	t.Fatal("64 mappings in a row were 64 KiB aligned")
	return nil
}

// TestMapDMARefusesNonDMA passes memory MapDMA must not pin: none at all,
// or a Memory that was unmapped. (Go heap memory cannot be expressed:
// MapDMA takes only a dmamem.Memory, which only package dma makes.)
func TestMapDMARefusesNonDMA(t *testing.T) {
	k := newFakeKernel(t)
	c, g := attached(t, k, 3)
	defer g.Close()
	freed := dmaMem(t, 4096, 0)
	must(t, freed.Unmap())
	for name, m := range map[string]*dmamem.Memory{"nil": nil, "zero": {}, "unmapped": freed} {
		err := c.MapDMA(m, 0x1000)
		if !errors.Is(err, ErrNotDMA) || !strings.Contains(err.Error(), "package dma") {
			t.Errorf("%s: MapDMA = %v, want ErrNotDMA naming package dma", name, err)
		}
	}
	if n := k.count(ioctlIOMMUMapDMA); n != 0 {
		t.Errorf("MAP_DMA reached the kernel %d times", n)
	}
}

// TestMapBARSparse maps a BAR whose middle the kernel keeps to itself
// (the sparse-mmap capability): the areas must map at their offsets, and
// the hole must have no access.
func TestMapBARSparse(t *testing.T) {
	k := newFakeKernel(t)
	base := k.regions
	k.regions = func() []fakeRegion {
		rs := base()
		rs[0].sparse = true
		rs[0].areas = []Area{{0x3000, 0x1000}, {0, 0x1000}} // out of order on purpose
		rs[2] = fakeRegion{size: 0x2000, offset: 0x8000, flags: RegionRead | RegionWrite | RegionMmap, sparse: true}
		rs[4] = fakeRegion{size: 0x1000, offset: 0xa000, flags: RegionRead | RegionWrite | RegionMmap, msixMappable: true}
		return rs
	}
	_, g := attached(t, k, 3)
	defer g.Close()
	d, err := g.OpenDevice("0000:00:04.0")
	must(t, err)
	defer d.Close()
	r0, _ := d.Region(0)
	if !r0.Sparse || !reflect.DeepEqual(r0.Areas, []Area{{0, 0x1000}, {0x3000, 0x1000}}) || r0.Flags&RegionCaps == 0 {
		t.Fatalf("region 0 = %+v, want sparse with two sorted areas", r0)
	}
	if r4, _ := d.Region(4); !r4.MSIXMappable || r4.Sparse {
		t.Errorf("region 4 = %+v, want msix-mappable, not sparse", r4)
	}
	bar, err := d.MapBAR(0)
	must(t, err)
	if len(bar) != 0x4000 {
		t.Fatalf("bar 0 is %#x bytes", len(bar))
	}
	for _, off := range []int{0, 0x10, 0xfff, 0x3000, 0x3abc, 0x3fff} {
		if want := byte(off * 7); bar[off] != want {
			t.Errorf("bar[%#x] = %#x, want the device's %#x", off, bar[off], want)
		}
	}
	if perms := mapPerms(t, uintptr(unsafe.Pointer(&bar[0x1000]))); perms != "---p" {
		t.Errorf("the hole is mapped %q, want ---p (no access)", perms)
	}
	if perms := mapPerms(t, uintptr(unsafe.Pointer(&bar[0x3000]))); perms != "rw-s" {
		t.Errorf("an area is mapped %q, want rw-s", perms)
	}
	if _, err := d.MapBAR(2); err == nil || !strings.Contains(err.Error(), "no mmappable area") {
		t.Errorf("MapBAR of a sparse region without areas: %v", err)
	}
}

// mapPerms returns the permissions /proc/self/maps shows for addr.
func mapPerms(t *testing.T, addr uintptr) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	must(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		var lo, hi uintptr
		if _, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi); err != nil {
			continue
		}
		if addr >= lo && addr < hi {
			return f[1]
		}
	}
	t.Fatalf("%#x not in /proc/self/maps", addr)
	return ""
}
