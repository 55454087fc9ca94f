package vfio

// The VFIO user API, from include/uapi/linux/vfio.h. Every name keeps its
// kernel spelling in the comment next to it; sizes are checked at compile
// time below and against the kernel's sizeof in uapi_test.go. This file and
// ioctl.go are the only places in the package that talk to the kernel by
// ioctl.

import (
	"structs"
	"unsafe"
)

// Ioctl request numbers. VFIO uses _IO(VFIO_TYPE, VFIO_BASE + n) for all of
// them (no size encoded: argsz in each struct carries it), with
// VFIO_TYPE ';' (0x3b) and VFIO_BASE 100; _IO(t, nr) is t<<8 | nr.
const (
	vfioType = ';' // VFIO_TYPE
	vfioBase = 100 // VFIO_BASE

	ioctlGetAPIVersion       = vfioType<<8 | (vfioBase + 0)  // VFIO_GET_API_VERSION
	ioctlCheckExtension      = vfioType<<8 | (vfioBase + 1)  // VFIO_CHECK_EXTENSION
	ioctlSetIOMMU            = vfioType<<8 | (vfioBase + 2)  // VFIO_SET_IOMMU
	ioctlGroupGetStatus      = vfioType<<8 | (vfioBase + 3)  // VFIO_GROUP_GET_STATUS
	ioctlGroupSetContainer   = vfioType<<8 | (vfioBase + 4)  // VFIO_GROUP_SET_CONTAINER
	ioctlGroupUnsetContainer = vfioType<<8 | (vfioBase + 5)  // VFIO_GROUP_UNSET_CONTAINER
	ioctlGroupGetDeviceFD    = vfioType<<8 | (vfioBase + 6)  // VFIO_GROUP_GET_DEVICE_FD
	ioctlDeviceGetInfo       = vfioType<<8 | (vfioBase + 7)  // VFIO_DEVICE_GET_INFO
	ioctlDeviceGetRegionInfo = vfioType<<8 | (vfioBase + 8)  // VFIO_DEVICE_GET_REGION_INFO
	ioctlDeviceGetIRQInfo    = vfioType<<8 | (vfioBase + 9)  // VFIO_DEVICE_GET_IRQ_INFO
	ioctlDeviceSetIRQs       = vfioType<<8 | (vfioBase + 10) // VFIO_DEVICE_SET_IRQS
	ioctlDeviceReset         = vfioType<<8 | (vfioBase + 11) // VFIO_DEVICE_RESET
	ioctlIOMMUGetInfo        = vfioType<<8 | (vfioBase + 12) // VFIO_IOMMU_GET_INFO
	ioctlIOMMUMapDMA         = vfioType<<8 | (vfioBase + 13) // VFIO_IOMMU_MAP_DMA
	ioctlIOMMUUnmapDMA       = vfioType<<8 | (vfioBase + 14) // VFIO_IOMMU_UNMAP_DMA
	vfioAPIVersion           = 0                             // VFIO_API_VERSION
	vfioType1v2IOMMU         = 3                             // VFIO_TYPE1v2_IOMMU
	vfioGroupFlagsViable     = 1 << 0                        // VFIO_GROUP_FLAGS_VIABLE
)

// Device info flags (struct vfio_device_info.flags).
const (
	vfioDeviceFlagsReset = 1 << 0 // VFIO_DEVICE_FLAGS_RESET
	vfioDeviceFlagsPCI   = 1 << 1 // VFIO_DEVICE_FLAGS_PCI
)

// Region info flags (struct vfio_region_info.flags).
const (
	RegionRead  = 1 << 0 // VFIO_REGION_INFO_FLAG_READ
	RegionWrite = 1 << 1 // VFIO_REGION_INFO_FLAG_WRITE
	RegionMmap  = 1 << 2 // VFIO_REGION_INFO_FLAG_MMAP
	RegionCaps  = 1 << 3 // VFIO_REGION_INFO_FLAG_CAPS
)

// Region indexes of a vfio-pci device (enum in vfio.h).
const (
	PCIBAR0Region   = 0 // VFIO_PCI_BAR0_REGION_INDEX; BARn is n
	PCIROMRegion    = 6 // VFIO_PCI_ROM_REGION_INDEX
	PCIConfigRegion = 7 // VFIO_PCI_CONFIG_REGION_INDEX
	PCIVGARegion    = 8 // VFIO_PCI_VGA_REGION_INDEX
)

// Region capability IDs (struct vfio_info_cap_header.id in the chain after
// struct vfio_region_info).
const (
	vfioRegionInfoCapSparseMmap   = 1 // VFIO_REGION_INFO_CAP_SPARSE_MMAP
	vfioRegionInfoCapType         = 2 // VFIO_REGION_INFO_CAP_TYPE
	vfioRegionInfoCapMSIXMappable = 3 // VFIO_REGION_INFO_CAP_MSIX_MAPPABLE
)

// IRQ indexes of a vfio-pci device (enum in vfio.h).
const (
	PCIINTxIRQ = 0 // VFIO_PCI_INTX_IRQ_INDEX
	PCIMSIIRQ  = 1 // VFIO_PCI_MSI_IRQ_INDEX
	PCIMSIXIRQ = 2 // VFIO_PCI_MSIX_IRQ_INDEX
	PCIErrIRQ  = 3 // VFIO_PCI_ERR_IRQ_INDEX
	PCIReqIRQ  = 4 // VFIO_PCI_REQ_IRQ_INDEX
)

// IRQ info flags (struct vfio_irq_info.flags).
const (
	IRQEventfd    = 1 << 0 // VFIO_IRQ_INFO_EVENTFD
	IRQMaskable   = 1 << 1 // VFIO_IRQ_INFO_MASKABLE
	IRQAutomasked = 1 << 2 // VFIO_IRQ_INFO_AUTOMASKED
	IRQNoresize   = 1 << 3 // VFIO_IRQ_INFO_NORESIZE
)

// SET_IRQS flags (struct vfio_irq_set.flags).
const (
	vfioIRQSetDataNone    = 1 << 0 // VFIO_IRQ_SET_DATA_NONE
	vfioIRQSetDataEventfd = 1 << 2 // VFIO_IRQ_SET_DATA_EVENTFD
	vfioIRQSetActionTrig  = 1 << 5 // VFIO_IRQ_SET_ACTION_TRIGGER
)

// IOMMU info flags and capability IDs.
const (
	vfioIOMMUInfoPgsizes       = 1 << 0 // VFIO_IOMMU_INFO_PGSIZES
	vfioIOMMUInfoCaps          = 1 << 1 // VFIO_IOMMU_INFO_CAPS
	vfioIOMMUType1InfoCapIOVA  = 1      // VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE
	vfioIOMMUType1InfoCapMigr  = 2      // VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION
	vfioIOMMUType1InfoDMAAvail = 3      // VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL
	vfioDMAMapFlagRead         = 1 << 0 // VFIO_DMA_MAP_FLAG_READ
	vfioDMAMapFlagWrite        = 1 << 1 // VFIO_DMA_MAP_FLAG_WRITE
)

// groupStatus is struct vfio_group_status.
type groupStatus struct {
	_     structs.HostLayout
	ArgSz uint32 // 0x00 argsz
	Flags uint32 // 0x04 flags
}

// deviceInfo is struct vfio_device_info (with cap_offset, Linux 5.x+; the
// kernel accepts argsz from offsetofend(num_irqs)). Linux 6.1's header, the
// one TestUAPIHeader compiles on Debian 12, declares 20 bytes; later
// headers add a pad field (24 bytes), which that test will report when the
// installed header has it. Either argsz works with every kernel: the
// kernel copies only what it needs.
type deviceInfo struct {
	_          structs.HostLayout
	ArgSz      uint32 // 0x00 argsz
	Flags      uint32 // 0x04 flags
	NumRegions uint32 // 0x08 num_regions
	NumIRQs    uint32 // 0x0c num_irqs
	CapOffset  uint32 // 0x10 cap_offset
}

// regionInfo is struct vfio_region_info.
type regionInfo struct {
	_         structs.HostLayout
	ArgSz     uint32 // 0x00 argsz
	Flags     uint32 // 0x04 flags
	Index     uint32 // 0x08 index
	CapOffset uint32 // 0x0c cap_offset
	Size      uint64 // 0x10 size
	Offset    uint64 // 0x18 offset
}

// irqInfo is struct vfio_irq_info.
type irqInfo struct {
	_     structs.HostLayout
	ArgSz uint32 // 0x00 argsz
	Flags uint32 // 0x04 flags
	Index uint32 // 0x08 index
	Count uint32 // 0x0c count
}

// irqSet is the fixed head of struct vfio_irq_set; data[] follows it.
type irqSet struct {
	_     structs.HostLayout
	ArgSz uint32 // 0x00 argsz
	Flags uint32 // 0x04 flags
	Index uint32 // 0x08 index
	Start uint32 // 0x0c start
	Count uint32 // 0x10 count
}

// iommuType1Info is struct vfio_iommu_type1_info; the capability chain
// follows it in the same buffer when argsz leaves room.
type iommuType1Info struct {
	_           structs.HostLayout
	ArgSz       uint32 // 0x00 argsz
	Flags       uint32 // 0x04 flags
	IOVAPgsizes uint64 // 0x08 iova_pgsizes
	CapOffset   uint32 // 0x10 cap_offset
	Pad         uint32 // 0x14 tail padding of the C struct
}

// infoCapHeader is struct vfio_info_cap_header.
type infoCapHeader struct {
	_       structs.HostLayout
	ID      uint16 // 0x00 id
	Version uint16 // 0x02 version
	Next    uint32 // 0x04 next: offset from the start of the info struct, 0 ends the chain
}

// dmaMap is struct vfio_iommu_type1_dma_map.
type dmaMap struct {
	_     structs.HostLayout
	ArgSz uint32 // 0x00 argsz
	Flags uint32 // 0x04 flags
	VAddr uint64 // 0x08 vaddr
	IOVA  uint64 // 0x10 iova
	Size  uint64 // 0x18 size
}

// dmaUnmap is struct vfio_iommu_type1_dma_unmap without data[].
type dmaUnmap struct {
	_     structs.HostLayout
	ArgSz uint32 // 0x00 argsz
	Flags uint32 // 0x04 flags
	IOVA  uint64 // 0x08 iova
	Size  uint64 // 0x10 size
}

// Sizes of the kernel's structs (sizeof on x86-64), checked both ways at
// compile time.
const (
	sizeofGroupStatus    = 8
	sizeofDeviceInfo     = 20
	sizeofRegionInfo     = 32
	sizeofIRQInfo        = 16
	sizeofIRQSet         = 20
	sizeofIOMMUType1Info = 24
	sizeofInfoCapHeader  = 8
	sizeofIOVARange      = 16 // struct vfio_iova_range
	sizeofCapIOVARange   = 16 // struct vfio_iommu_type1_info_cap_iova_range without iova_ranges[]
	sizeofCapDMAAvail    = 12 // struct vfio_iommu_type1_info_dma_avail
	sizeofCapSparseMmap  = 16 // struct vfio_region_info_cap_sparse_mmap without areas[]
	sizeofSparseArea     = 16 // struct vfio_region_sparse_mmap_area
	sizeofDMAMap         = 32
	sizeofDMAUnmap       = 24
)

var (
	_ [unsafe.Sizeof(groupStatus{}) - sizeofGroupStatus]struct{}
	_ [sizeofGroupStatus - unsafe.Sizeof(groupStatus{})]struct{}
	_ [unsafe.Sizeof(deviceInfo{}) - sizeofDeviceInfo]struct{}
	_ [sizeofDeviceInfo - unsafe.Sizeof(deviceInfo{})]struct{}
	_ [unsafe.Sizeof(regionInfo{}) - sizeofRegionInfo]struct{}
	_ [sizeofRegionInfo - unsafe.Sizeof(regionInfo{})]struct{}
	_ [unsafe.Sizeof(irqInfo{}) - sizeofIRQInfo]struct{}
	_ [sizeofIRQInfo - unsafe.Sizeof(irqInfo{})]struct{}
	_ [unsafe.Sizeof(irqSet{}) - sizeofIRQSet]struct{}
	_ [sizeofIRQSet - unsafe.Sizeof(irqSet{})]struct{}
	_ [unsafe.Sizeof(iommuType1Info{}) - sizeofIOMMUType1Info]struct{}
	_ [sizeofIOMMUType1Info - unsafe.Sizeof(iommuType1Info{})]struct{}
	_ [unsafe.Sizeof(infoCapHeader{}) - sizeofInfoCapHeader]struct{}
	_ [sizeofInfoCapHeader - unsafe.Sizeof(infoCapHeader{})]struct{}
	_ [unsafe.Sizeof(dmaMap{}) - sizeofDMAMap]struct{}
	_ [sizeofDMAMap - unsafe.Sizeof(dmaMap{})]struct{}
	_ [unsafe.Sizeof(dmaUnmap{}) - sizeofDMAUnmap]struct{}
	_ [sizeofDMAUnmap - unsafe.Sizeof(dmaUnmap{})]struct{}
)
