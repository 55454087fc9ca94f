package vfio

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// TestUAPILayout checks each struct against the kernel's layout: sizeof and
// the offset of every field, as include/uapi/linux/vfio.h lays them out on
// x86-64 (the numbers are written out here from the header, not computed).
func TestUAPILayout(t *testing.T) {
	tests := []struct {
		name    string // kernel struct name
		v       any
		size    uintptr
		offsets map[string]uintptr
	}{
		{"vfio_group_status", groupStatus{}, 8, map[string]uintptr{"ArgSz": 0, "Flags": 4}},
		{"vfio_device_info", deviceInfo{}, 20, map[string]uintptr{"ArgSz": 0, "Flags": 4, "NumRegions": 8, "NumIRQs": 12, "CapOffset": 16}},
		{"vfio_region_info", regionInfo{}, 32, map[string]uintptr{"ArgSz": 0, "Flags": 4, "Index": 8, "CapOffset": 12, "Size": 16, "Offset": 24}},
		{"vfio_irq_info", irqInfo{}, 16, map[string]uintptr{"ArgSz": 0, "Flags": 4, "Index": 8, "Count": 12}},
		{"vfio_irq_set", irqSet{}, 20, map[string]uintptr{"ArgSz": 0, "Flags": 4, "Index": 8, "Start": 12, "Count": 16}},
		{"vfio_iommu_type1_info", iommuType1Info{}, 24, map[string]uintptr{"ArgSz": 0, "Flags": 4, "IOVAPgsizes": 8, "CapOffset": 16}},
		{"vfio_info_cap_header", infoCapHeader{}, 8, map[string]uintptr{"ID": 0, "Version": 2, "Next": 4}},
		{"vfio_iommu_type1_dma_map", dmaMap{}, 32, map[string]uintptr{"ArgSz": 0, "Flags": 4, "VAddr": 8, "IOVA": 16, "Size": 24}},
		{"vfio_iommu_type1_dma_unmap", dmaUnmap{}, 24, map[string]uintptr{"ArgSz": 0, "Flags": 4, "IOVA": 8, "Size": 16}},
	}
	for _, tt := range tests {
		typ := reflect.TypeOf(tt.v)
		if typ.Size() != tt.size {
			t.Errorf("struct %s: Go size %d, kernel %d", tt.name, typ.Size(), tt.size)
		}
		for name, want := range tt.offsets {
			f, ok := typ.FieldByName(name)
			if !ok {
				t.Errorf("struct %s: Go type has no field %s", tt.name, name)
				continue
			}
			if f.Offset != want {
				t.Errorf("struct %s: field %s at %d, kernel %d", tt.name, name, f.Offset, want)
			}
		}
	}
}

// TestIoctlNumbers pins the request numbers to the values the kernel's
// _IO(';', 100 + n) produces.
func TestIoctlNumbers(t *testing.T) {
	for name, got := range map[string]uintptr{
		"VFIO_GET_API_VERSION":        ioctlGetAPIVersion,
		"VFIO_CHECK_EXTENSION":        ioctlCheckExtension,
		"VFIO_SET_IOMMU":              ioctlSetIOMMU,
		"VFIO_GROUP_GET_STATUS":       ioctlGroupGetStatus,
		"VFIO_GROUP_SET_CONTAINER":    ioctlGroupSetContainer,
		"VFIO_GROUP_UNSET_CONTAINER":  ioctlGroupUnsetContainer,
		"VFIO_GROUP_GET_DEVICE_FD":    ioctlGroupGetDeviceFD,
		"VFIO_DEVICE_GET_INFO":        ioctlDeviceGetInfo,
		"VFIO_DEVICE_GET_REGION_INFO": ioctlDeviceGetRegionInfo,
		"VFIO_DEVICE_GET_IRQ_INFO":    ioctlDeviceGetIRQInfo,
		"VFIO_DEVICE_SET_IRQS":        ioctlDeviceSetIRQs,
		"VFIO_DEVICE_RESET":           ioctlDeviceReset,
		"VFIO_IOMMU_GET_INFO":         ioctlIOMMUGetInfo,
		"VFIO_IOMMU_MAP_DMA":          ioctlIOMMUMapDMA,
		"VFIO_IOMMU_UNMAP_DMA":        ioctlIOMMUUnmapDMA,
	} {
		want := map[string]uintptr{
			"VFIO_GET_API_VERSION": 0x3b64, "VFIO_CHECK_EXTENSION": 0x3b65, "VFIO_SET_IOMMU": 0x3b66,
			"VFIO_GROUP_GET_STATUS": 0x3b67, "VFIO_GROUP_SET_CONTAINER": 0x3b68, "VFIO_GROUP_UNSET_CONTAINER": 0x3b69,
			"VFIO_GROUP_GET_DEVICE_FD": 0x3b6a,
			"VFIO_DEVICE_GET_INFO":     0x3b6b, "VFIO_DEVICE_GET_REGION_INFO": 0x3b6c, "VFIO_DEVICE_GET_IRQ_INFO": 0x3b6d,
			"VFIO_DEVICE_SET_IRQS": 0x3b6e, "VFIO_DEVICE_RESET": 0x3b6f, "VFIO_IOMMU_GET_INFO": 0x3b70,
			"VFIO_IOMMU_MAP_DMA": 0x3b71, "VFIO_IOMMU_UNMAP_DMA": 0x3b72,
		}[name]
		if got != want {
			t.Errorf("%s = %#x, want %#x", name, got, want)
		}
	}
}

// capBuf builds a struct vfio_iommu_type1_info followed by a capability
// chain, the way the kernel lays it out.
type capBuf struct{ b []byte }

func newCapBuf() *capBuf { return &capBuf{b: make([]byte, sizeofIOMMUType1Info)} }

// add appends a capability and links the previous one (or cap_offset) to it.
func (c *capBuf) add(id uint16, body []byte) uint32 {
	le := binary.LittleEndian
	off := uint32(len(c.b))
	h := make([]byte, sizeofInfoCapHeader)
	le.PutUint16(h, id)
	le.PutUint16(h[2:], 1)
	c.b = append(c.b, h...)
	c.b = append(c.b, body...)
	for len(c.b)%8 != 0 {
		c.b = append(c.b, 0)
	}
	// Link: find the last cap and point it here.
	first := le.Uint32(c.b[16:])
	if first == 0 {
		le.PutUint32(c.b[16:], off)
	} else {
		p := first
		for {
			n := le.Uint32(c.b[p+4:])
			if n == 0 {
				break
			}
			p = n
		}
		le.PutUint32(c.b[p+4:], off)
	}
	le.PutUint32(c.b, uint32(len(c.b)))
	return off
}

func iovaBody(rs ...IOVARange) []byte {
	le := binary.LittleEndian
	b := make([]byte, 8+16*len(rs))
	le.PutUint32(b, uint32(len(rs)))
	for i, r := range rs {
		le.PutUint64(b[8+16*i:], r.Start)
		le.PutUint64(b[16+16*i:], r.Last)
	}
	return b
}

func TestParseIOMMUCaps(t *testing.T) {
	c := newCapBuf()
	// A real QEMU intel-iommu guest reports the range below the MSI window
	// and the range above it, up to the 39-bit address width.
	c.add(vfioIOMMUType1InfoCapIOVA, iovaBody(IOVARange{0xfef00000, 0x7fffffffff}, IOVARange{0, 0xfedfffff}))
	c.add(vfioIOMMUType1InfoCapMigr, make([]byte, 24)) // ignored
	avail := make([]byte, 4)
	binary.LittleEndian.PutUint32(avail, 65535)
	c.add(vfioIOMMUType1InfoDMAAvail, avail)

	caps, err := parseIOMMUCaps(c.b, binary.LittleEndian.Uint32(c.b[16:]))
	must(t, err)
	want := []IOVARange{{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}}
	if !reflect.DeepEqual(caps.ranges, want) {
		t.Errorf("ranges = %v, want %v (sorted)", caps.ranges, want)
	}
	if !caps.hasAvail || caps.dmaAvail != 65535 {
		t.Errorf("dma avail = %d, %v; want 65535, true", caps.dmaAvail, caps.hasAvail)
	}

	none, err := parseIOMMUCaps(newCapBuf().b, 0)
	if err != nil || none.ranges != nil || none.hasAvail {
		t.Errorf("empty chain: %+v, %v", none, err)
	}
}

func TestParseIOMMUCapsMalformed(t *testing.T) {
	le := binary.LittleEndian
	good := func() *capBuf {
		c := newCapBuf()
		c.add(vfioIOMMUType1InfoCapIOVA, iovaBody(IOVARange{0, 0xfedfffff}))
		return c
	}
	tests := []struct {
		name   string
		mangle func(b []byte) []byte
		want   string
	}{
		{"truncated header", func(b []byte) []byte { return b[:sizeofIOMMUType1Info+4] }, "outside"},
		{"first inside the info struct", func(b []byte) []byte { le.PutUint32(b[16:], 8); return b }, "outside"},
		{"misaligned", func(b []byte) []byte { le.PutUint32(b[16:], 26); return b }, "outside"},
		{"too many ranges", func(b []byte) []byte { le.PutUint32(b[sizeofIOMMUType1Info+8:], 1<<30); return b }, "overrun"},
		{"range cut short", func(b []byte) []byte { return b[:len(b)-8] }, "overrun"},
		{"inverted range", func(b []byte) []byte { le.PutUint64(b[sizeofIOMMUType1Info+16:], 1<<40); return b }, "inverted"},
		{"self loop", func(b []byte) []byte { le.PutUint32(b[sizeofIOMMUType1Info+4:], sizeofIOMMUType1Info); return b }, "points back"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.mangle(good().b)
			_, err := parseIOMMUCaps(b, le.Uint32(b[16:]))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func FuzzParseIOMMUCaps(f *testing.F) {
	c := newCapBuf()
	c.add(vfioIOMMUType1InfoCapIOVA, iovaBody(IOVARange{0, 0xfedfffff}, IOVARange{0xfef00000, 0x7fffffffff}))
	c.add(vfioIOMMUType1InfoDMAAvail, []byte{1, 0, 0, 0})
	f.Add(c.b, uint32(sizeofIOMMUType1Info))
	f.Fuzz(func(t *testing.T, b []byte, first uint32) {
		caps, err := parseIOMMUCaps(b, first)
		if err != nil {
			return
		}
		for _, r := range caps.ranges {
			if r.Last < r.Start {
				t.Fatalf("accepted inverted range %v", r)
			}
		}
	})
}

func TestIRQSetLayout(t *testing.T) {
	// data[] starts right after count: the eventfds for SET_IRQS go at 20.
	if off := unsafe.Offsetof(irqSet{}.Count) + 4; off != sizeofIRQSet {
		t.Fatalf("vfio_irq_set data[] at %d, want %d", off, sizeofIRQSet)
	}
	if !errors.Is(&NotViableError{}, ErrNotViable) {
		t.Fatal("NotViableError.Is broken")
	}
}

// regionCapBuf builds a struct vfio_region_info with a sparse-mmap
// capability holding areas.
func regionCapBuf(areas ...Area) []byte {
	le := binary.LittleEndian
	b := make([]byte, sizeofRegionInfo+sizeofCapSparseMmap+sizeofSparseArea*len(areas))
	c := b[sizeofRegionInfo:]
	le.PutUint16(c, vfioRegionInfoCapSparseMmap)
	le.PutUint16(c[2:], 1)
	le.PutUint32(c[8:], uint32(len(areas)))
	for i, a := range areas {
		le.PutUint64(c[sizeofCapSparseMmap+16*i:], a.Offset)
		le.PutUint64(c[sizeofCapSparseMmap+16*i+8:], a.Size)
	}
	return b
}

func TestParseRegionCaps(t *testing.T) {
	caps, err := parseRegionCaps(regionCapBuf(Area{0x2000, 0x2000}, Area{0, 0x1000}, Area{0x1000, 0}), sizeofRegionInfo, 0x4000)
	must(t, err)
	if !caps.sparse || !reflect.DeepEqual(caps.areas, []Area{{0, 0x1000}, {0x2000, 0x2000}}) {
		t.Errorf("caps = %+v, want the two non-empty areas, sorted", caps)
	}
	none, err := parseRegionCaps(regionCapBuf(), sizeofRegionInfo, 0x4000)
	if err != nil || !none.sparse || len(none.areas) != 0 {
		t.Errorf("sparse cap without areas = %+v, %v", none, err)
	}
	le := binary.LittleEndian
	for _, tt := range []struct {
		name string
		b    []byte
		want string
	}{
		{"area past the region", regionCapBuf(Area{0x3000, 0x2000}), "outside"},
		{"area wraps", regionCapBuf(Area{0x1000, ^uint64(0)}), "outside"},
		{"areas overlap", regionCapBuf(Area{0, 0x2000}, Area{0x1000, 0x1000}), "overlap"},
		{"too many areas", func() []byte {
			b := regionCapBuf(Area{0, 0x1000})
			le.PutUint32(b[sizeofRegionInfo+8:], 1<<20)
			return b
		}(), "overrun"},
		{"cut short", regionCapBuf(Area{0, 0x1000})[:sizeofRegionInfo+20], "overrun"},
		{"truncated header", regionCapBuf()[:sizeofRegionInfo+4], "outside"},
	} {
		if _, err := parseRegionCaps(tt.b, sizeofRegionInfo, 0x4000); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

func FuzzParseRegionCaps(f *testing.F) {
	f.Add(regionCapBuf(Area{0, 0x1000}, Area{0x3000, 0x1000}), uint32(sizeofRegionInfo), uint64(0x4000))
	f.Fuzz(func(t *testing.T, b []byte, first uint32, size uint64) {
		caps, err := parseRegionCaps(b, first, size)
		if err != nil {
			return
		}
		end := uint64(0)
		for _, a := range caps.areas {
			if a.Offset < end || a.Offset > size || a.Size > size-a.Offset {
				t.Fatalf("accepted area %+v in a %#x-byte region after %#x", a, size, end)
			}
			end = a.Offset + a.Size
		}
	})
}
