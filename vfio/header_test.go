package vfio

import (
	"os"
	"reflect"
	"sort"
	"testing"

	"github.com/seedb8fa28ef/gonvme/vfio/internal/kabi"
)

// TestUAPIHeader compares uapi.go with the kernel's own <linux/vfio.h>,
// compiled through cgo (vfio/internal/kabi): the size of every struct, the
// offset of every field, and the value of every ioctl number and constant.
// Unlike TestUAPILayout, whose numbers were typed from the header by hand,
// it cannot go stale: a header that adds a field (as 6.x added a pad to
// vfio_device_info) fails it. It skips only without cgo (the VM test
// binaries); under CI it fails instead, since `go test -race` has cgo.
func TestUAPIHeader(t *testing.T) {
	if !kabi.Available {
		if os.Getenv("CI") != "" {
			t.Fatal("built without cgo under CI: the header test must run (install gcc and linux-libc-dev, and leave CGO_ENABLED on)")
		}
		t.Skip("built without cgo (CGO_ENABLED=0): <linux/vfio.h> cannot be read")
	}
	type layout struct {
		c      string            // C struct
		goType any               // its Go declaration, or nil for one the parser reads by offset
		size   uintptr           // for goType nil: the sizeof* constant the parser uses
		fields map[string]string // C field -> Go field (goType) or "" for one Go leaves out
		at     map[string]uintptr
	}
	tests := []layout{
		{c: "vfio_group_status", goType: groupStatus{}, fields: map[string]string{"argsz": "ArgSz", "flags": "Flags"}},
		{c: "vfio_device_info", goType: deviceInfo{}, fields: map[string]string{"argsz": "ArgSz", "flags": "Flags", "num_regions": "NumRegions", "num_irqs": "NumIRQs", "cap_offset": "CapOffset"}},
		{c: "vfio_region_info", goType: regionInfo{}, fields: map[string]string{"argsz": "ArgSz", "flags": "Flags", "index": "Index", "cap_offset": "CapOffset", "size": "Size", "offset": "Offset"}},
		{c: "vfio_irq_info", goType: irqInfo{}, fields: map[string]string{"argsz": "ArgSz", "flags": "Flags", "index": "Index", "count": "Count"}},
		// data[] follows the head: SET_IRQS writes the eventfds at sizeofIRQSet.
		{c: "vfio_irq_set", goType: irqSet{}, fields: map[string]string{"argsz": "ArgSz", "flags": "Flags", "index": "Index", "start": "Start", "count": "Count", "data": ""},
			at: map[string]uintptr{"data": sizeofIRQSet}},
		{c: "vfio_iommu_type1_info", goType: iommuType1Info{}, fields: map[string]string{"argsz": "ArgSz", "flags": "Flags", "iova_pgsizes": "IOVAPgsizes", "cap_offset": "CapOffset"}},
		{c: "vfio_info_cap_header", goType: infoCapHeader{}, fields: map[string]string{"id": "ID", "version": "Version", "next": "Next"}},
		{c: "vfio_iommu_type1_dma_map", goType: dmaMap{}, fields: map[string]string{"argsz": "ArgSz", "flags": "Flags", "vaddr": "VAddr", "iova": "IOVA", "size": "Size"}},
		{c: "vfio_iommu_type1_dma_unmap", goType: dmaUnmap{}, fields: map[string]string{"argsz": "ArgSz", "flags": "Flags", "iova": "IOVA", "size": "Size", "data": ""},
			at: map[string]uintptr{"data": sizeofDMAUnmap}},
		// Read by offset in parseIOMMUCaps and parseRegionCaps.
		{c: "vfio_iova_range", size: sizeofIOVARange, at: map[string]uintptr{"start": 0, "end": 8}},
		{c: "vfio_iommu_type1_info_cap_iova_range", size: sizeofCapIOVARange, at: map[string]uintptr{"header": 0, "nr_iovas": 8, "reserved": 12, "iova_ranges": sizeofCapIOVARange}},
		{c: "vfio_iommu_type1_info_dma_avail", size: sizeofCapDMAAvail, at: map[string]uintptr{"header": 0, "avail": 8}},
		{c: "vfio_region_info_cap_sparse_mmap", size: sizeofCapSparseMmap, at: map[string]uintptr{"header": 0, "nr_areas": 8, "reserved": 12, "areas": sizeofCapSparseMmap}},
		{c: "vfio_region_sparse_mmap_area", size: sizeofSparseArea, at: map[string]uintptr{"offset": 0, "size": 8}},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.c] = true
		k, ok := kabi.Structs[tt.c]
		if !ok {
			t.Errorf("struct %s: not read from the header", tt.c)
			continue
		}
		size := tt.size
		if tt.goType != nil {
			size = reflect.TypeOf(tt.goType).Size()
		}
		if size != k.Size {
			t.Errorf("struct %s: sizeof %d in the header, %d in Go", tt.c, k.Size, size)
		}
		names := make([]string, 0, len(k.Fields))
		for n := range k.Fields {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, cf := range names {
			off := k.Fields[cf]
			if want, ok := tt.at[cf]; ok {
				if off != want {
					t.Errorf("struct %s: %s at %d in the header, %d where gonvme reads it", tt.c, cf, off, want)
				}
				continue
			}
			gf, ok := tt.fields[cf]
			if !ok {
				t.Errorf("struct %s: field %s of the header has no Go counterpart", tt.c, cf)
				continue
			}
			f, ok := reflect.TypeOf(tt.goType).FieldByName(gf)
			if !ok {
				t.Errorf("struct %s: Go type has no field %s", tt.c, gf)
				continue
			}
			if f.Offset != off {
				t.Errorf("struct %s: %s at %d in the header, %s at %d in Go", tt.c, cf, off, gf, f.Offset)
			}
		}
	}
	for c := range kabi.Structs {
		if !seen[c] {
			t.Errorf("struct %s read from the header but not compared", c)
		}
	}

	consts := map[string]uint64{
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

		"VFIO_API_VERSION":        vfioAPIVersion,
		"VFIO_TYPE1v2_IOMMU":      vfioType1v2IOMMU,
		"VFIO_GROUP_FLAGS_VIABLE": vfioGroupFlagsViable,
		"VFIO_DEVICE_FLAGS_RESET": vfioDeviceFlagsReset,
		"VFIO_DEVICE_FLAGS_PCI":   vfioDeviceFlagsPCI,

		"VFIO_REGION_INFO_FLAG_READ":         RegionRead,
		"VFIO_REGION_INFO_FLAG_WRITE":        RegionWrite,
		"VFIO_REGION_INFO_FLAG_MMAP":         RegionMmap,
		"VFIO_REGION_INFO_FLAG_CAPS":         RegionCaps,
		"VFIO_REGION_INFO_CAP_SPARSE_MMAP":   vfioRegionInfoCapSparseMmap,
		"VFIO_REGION_INFO_CAP_TYPE":          vfioRegionInfoCapType,
		"VFIO_REGION_INFO_CAP_MSIX_MAPPABLE": vfioRegionInfoCapMSIXMappable,
		"VFIO_PCI_BAR0_REGION_INDEX":         PCIBAR0Region,
		"VFIO_PCI_ROM_REGION_INDEX":          PCIROMRegion,
		"VFIO_PCI_CONFIG_REGION_INDEX":       PCIConfigRegion,
		"VFIO_PCI_VGA_REGION_INDEX":          PCIVGARegion,

		"VFIO_PCI_INTX_IRQ_INDEX": PCIINTxIRQ,
		"VFIO_PCI_MSI_IRQ_INDEX":  PCIMSIIRQ,
		"VFIO_PCI_MSIX_IRQ_INDEX": PCIMSIXIRQ,
		"VFIO_PCI_ERR_IRQ_INDEX":  PCIErrIRQ,
		"VFIO_PCI_REQ_IRQ_INDEX":  PCIReqIRQ,

		"VFIO_IRQ_INFO_EVENTFD":       IRQEventfd,
		"VFIO_IRQ_INFO_MASKABLE":      IRQMaskable,
		"VFIO_IRQ_INFO_AUTOMASKED":    IRQAutomasked,
		"VFIO_IRQ_INFO_NORESIZE":      IRQNoresize,
		"VFIO_IRQ_SET_DATA_NONE":      vfioIRQSetDataNone,
		"VFIO_IRQ_SET_DATA_EVENTFD":   vfioIRQSetDataEventfd,
		"VFIO_IRQ_SET_ACTION_TRIGGER": vfioIRQSetActionTrig,

		"VFIO_IOMMU_INFO_PGSIZES":              vfioIOMMUInfoPgsizes,
		"VFIO_IOMMU_INFO_CAPS":                 vfioIOMMUInfoCaps,
		"VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE": vfioIOMMUType1InfoCapIOVA,
		"VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION":  vfioIOMMUType1InfoCapMigr,
		"VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL":      vfioIOMMUType1InfoDMAAvail,
		"VFIO_DMA_MAP_FLAG_READ":               vfioDMAMapFlagRead,
		"VFIO_DMA_MAP_FLAG_WRITE":              vfioDMAMapFlagWrite,
	}
	for name, want := range kabi.Consts {
		got, ok := consts[name]
		if !ok {
			t.Errorf("%s read from the header but not compared", name)
			continue
		}
		if got != want {
			t.Errorf("%s = %#x in Go, %#x in the header", name, got, want)
		}
	}
	for name := range consts {
		if _, ok := kabi.Consts[name]; !ok {
			t.Errorf("%s is not read from the header", name)
		}
	}
}
