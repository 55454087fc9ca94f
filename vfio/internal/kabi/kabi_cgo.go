//go:build cgo && linux

package kabi

/*
#include <stddef.h>
#include <linux/vfio.h>

// cgo leaves flexible array members out of the Go view of a struct; their
// offsets come from the C compiler directly.
enum {
	kabi_off_sparse_areas = offsetof(struct vfio_region_info_cap_sparse_mmap, areas),
	kabi_off_irq_set_data = offsetof(struct vfio_irq_set, data),
	kabi_off_iova_ranges = offsetof(struct vfio_iommu_type1_info_cap_iova_range, iova_ranges),
	kabi_off_unmap_data = offsetof(struct vfio_iommu_type1_dma_unmap, data),
};
*/
import "C"

import "unsafe"

// Available reports that the numbers below come from the C header.
const Available = true

// Structs maps a C struct name to its layout.
var Structs = map[string]Struct{
	"vfio_group_status": {C.sizeof_struct_vfio_group_status, map[string]uintptr{
		"argsz": unsafe.Offsetof(C.struct_vfio_group_status{}.argsz),
		"flags": unsafe.Offsetof(C.struct_vfio_group_status{}.flags),
	}},
	"vfio_device_info": {C.sizeof_struct_vfio_device_info, map[string]uintptr{
		"argsz":       unsafe.Offsetof(C.struct_vfio_device_info{}.argsz),
		"flags":       unsafe.Offsetof(C.struct_vfio_device_info{}.flags),
		"num_regions": unsafe.Offsetof(C.struct_vfio_device_info{}.num_regions),
		"num_irqs":    unsafe.Offsetof(C.struct_vfio_device_info{}.num_irqs),
		"cap_offset":  unsafe.Offsetof(C.struct_vfio_device_info{}.cap_offset),
	}},
	"vfio_region_info": {C.sizeof_struct_vfio_region_info, map[string]uintptr{
		"argsz":      unsafe.Offsetof(C.struct_vfio_region_info{}.argsz),
		"flags":      unsafe.Offsetof(C.struct_vfio_region_info{}.flags),
		"index":      unsafe.Offsetof(C.struct_vfio_region_info{}.index),
		"cap_offset": unsafe.Offsetof(C.struct_vfio_region_info{}.cap_offset),
		"size":       unsafe.Offsetof(C.struct_vfio_region_info{}.size),
		"offset":     unsafe.Offsetof(C.struct_vfio_region_info{}.offset),
	}},
	"vfio_region_info_cap_sparse_mmap": {C.sizeof_struct_vfio_region_info_cap_sparse_mmap, map[string]uintptr{
		"header":   unsafe.Offsetof(C.struct_vfio_region_info_cap_sparse_mmap{}.header),
		"nr_areas": unsafe.Offsetof(C.struct_vfio_region_info_cap_sparse_mmap{}.nr_areas),
		"reserved": unsafe.Offsetof(C.struct_vfio_region_info_cap_sparse_mmap{}.reserved),
		"areas":    uintptr(C.kabi_off_sparse_areas),
	}},
	"vfio_region_sparse_mmap_area": {C.sizeof_struct_vfio_region_sparse_mmap_area, map[string]uintptr{
		"offset": unsafe.Offsetof(C.struct_vfio_region_sparse_mmap_area{}.offset),
		"size":   unsafe.Offsetof(C.struct_vfio_region_sparse_mmap_area{}.size),
	}},
	"vfio_irq_info": {C.sizeof_struct_vfio_irq_info, map[string]uintptr{
		"argsz": unsafe.Offsetof(C.struct_vfio_irq_info{}.argsz),
		"flags": unsafe.Offsetof(C.struct_vfio_irq_info{}.flags),
		"index": unsafe.Offsetof(C.struct_vfio_irq_info{}.index),
		"count": unsafe.Offsetof(C.struct_vfio_irq_info{}.count),
	}},
	"vfio_irq_set": {C.sizeof_struct_vfio_irq_set, map[string]uintptr{
		"argsz": unsafe.Offsetof(C.struct_vfio_irq_set{}.argsz),
		"flags": unsafe.Offsetof(C.struct_vfio_irq_set{}.flags),
		"index": unsafe.Offsetof(C.struct_vfio_irq_set{}.index),
		"start": unsafe.Offsetof(C.struct_vfio_irq_set{}.start),
		"count": unsafe.Offsetof(C.struct_vfio_irq_set{}.count),
		"data":  uintptr(C.kabi_off_irq_set_data),
	}},
	"vfio_iommu_type1_info": {C.sizeof_struct_vfio_iommu_type1_info, map[string]uintptr{
		"argsz":        unsafe.Offsetof(C.struct_vfio_iommu_type1_info{}.argsz),
		"flags":        unsafe.Offsetof(C.struct_vfio_iommu_type1_info{}.flags),
		"iova_pgsizes": unsafe.Offsetof(C.struct_vfio_iommu_type1_info{}.iova_pgsizes),
		"cap_offset":   unsafe.Offsetof(C.struct_vfio_iommu_type1_info{}.cap_offset),
	}},
	"vfio_info_cap_header": {C.sizeof_struct_vfio_info_cap_header, map[string]uintptr{
		"id":      unsafe.Offsetof(C.struct_vfio_info_cap_header{}.id),
		"version": unsafe.Offsetof(C.struct_vfio_info_cap_header{}.version),
		"next":    unsafe.Offsetof(C.struct_vfio_info_cap_header{}.next),
	}},
	"vfio_iova_range": {C.sizeof_struct_vfio_iova_range, map[string]uintptr{
		"start": unsafe.Offsetof(C.struct_vfio_iova_range{}.start),
		"end":   unsafe.Offsetof(C.struct_vfio_iova_range{}.end),
	}},
	"vfio_iommu_type1_info_cap_iova_range": {C.sizeof_struct_vfio_iommu_type1_info_cap_iova_range, map[string]uintptr{
		"header":      unsafe.Offsetof(C.struct_vfio_iommu_type1_info_cap_iova_range{}.header),
		"nr_iovas":    unsafe.Offsetof(C.struct_vfio_iommu_type1_info_cap_iova_range{}.nr_iovas),
		"reserved":    unsafe.Offsetof(C.struct_vfio_iommu_type1_info_cap_iova_range{}.reserved),
		"iova_ranges": uintptr(C.kabi_off_iova_ranges),
	}},
	"vfio_iommu_type1_info_dma_avail": {C.sizeof_struct_vfio_iommu_type1_info_dma_avail, map[string]uintptr{
		"header": unsafe.Offsetof(C.struct_vfio_iommu_type1_info_dma_avail{}.header),
		"avail":  unsafe.Offsetof(C.struct_vfio_iommu_type1_info_dma_avail{}.avail),
	}},
	"vfio_iommu_type1_dma_map": {C.sizeof_struct_vfio_iommu_type1_dma_map, map[string]uintptr{
		"argsz": unsafe.Offsetof(C.struct_vfio_iommu_type1_dma_map{}.argsz),
		"flags": unsafe.Offsetof(C.struct_vfio_iommu_type1_dma_map{}.flags),
		"vaddr": unsafe.Offsetof(C.struct_vfio_iommu_type1_dma_map{}.vaddr),
		"iova":  unsafe.Offsetof(C.struct_vfio_iommu_type1_dma_map{}.iova),
		"size":  unsafe.Offsetof(C.struct_vfio_iommu_type1_dma_map{}.size),
	}},
	"vfio_iommu_type1_dma_unmap": {C.sizeof_struct_vfio_iommu_type1_dma_unmap, map[string]uintptr{
		"argsz": unsafe.Offsetof(C.struct_vfio_iommu_type1_dma_unmap{}.argsz),
		"flags": unsafe.Offsetof(C.struct_vfio_iommu_type1_dma_unmap{}.flags),
		"iova":  unsafe.Offsetof(C.struct_vfio_iommu_type1_dma_unmap{}.iova),
		"size":  unsafe.Offsetof(C.struct_vfio_iommu_type1_dma_unmap{}.size),
		"data":  uintptr(C.kabi_off_unmap_data),
	}},
}

// Consts maps a macro or enumerator of the header to its value: the ioctl
// numbers and the flags, indexes and capability IDs package vfio uses.
var Consts = map[string]uint64{
	"VFIO_GET_API_VERSION":        C.VFIO_GET_API_VERSION,
	"VFIO_CHECK_EXTENSION":        C.VFIO_CHECK_EXTENSION,
	"VFIO_SET_IOMMU":              C.VFIO_SET_IOMMU,
	"VFIO_GROUP_GET_STATUS":       C.VFIO_GROUP_GET_STATUS,
	"VFIO_GROUP_SET_CONTAINER":    C.VFIO_GROUP_SET_CONTAINER,
	"VFIO_GROUP_UNSET_CONTAINER":  C.VFIO_GROUP_UNSET_CONTAINER,
	"VFIO_GROUP_GET_DEVICE_FD":    C.VFIO_GROUP_GET_DEVICE_FD,
	"VFIO_DEVICE_GET_INFO":        C.VFIO_DEVICE_GET_INFO,
	"VFIO_DEVICE_GET_REGION_INFO": C.VFIO_DEVICE_GET_REGION_INFO,
	"VFIO_DEVICE_GET_IRQ_INFO":    C.VFIO_DEVICE_GET_IRQ_INFO,
	"VFIO_DEVICE_SET_IRQS":        C.VFIO_DEVICE_SET_IRQS,
	"VFIO_DEVICE_RESET":           C.VFIO_DEVICE_RESET,
	"VFIO_IOMMU_GET_INFO":         C.VFIO_IOMMU_GET_INFO,
	"VFIO_IOMMU_MAP_DMA":          C.VFIO_IOMMU_MAP_DMA,
	"VFIO_IOMMU_UNMAP_DMA":        C.VFIO_IOMMU_UNMAP_DMA,

	"VFIO_API_VERSION":        C.VFIO_API_VERSION,
	"VFIO_TYPE1v2_IOMMU":      C.VFIO_TYPE1v2_IOMMU,
	"VFIO_GROUP_FLAGS_VIABLE": C.VFIO_GROUP_FLAGS_VIABLE,
	"VFIO_DEVICE_FLAGS_RESET": C.VFIO_DEVICE_FLAGS_RESET,
	"VFIO_DEVICE_FLAGS_PCI":   C.VFIO_DEVICE_FLAGS_PCI,

	"VFIO_REGION_INFO_FLAG_READ":         C.VFIO_REGION_INFO_FLAG_READ,
	"VFIO_REGION_INFO_FLAG_WRITE":        C.VFIO_REGION_INFO_FLAG_WRITE,
	"VFIO_REGION_INFO_FLAG_MMAP":         C.VFIO_REGION_INFO_FLAG_MMAP,
	"VFIO_REGION_INFO_FLAG_CAPS":         C.VFIO_REGION_INFO_FLAG_CAPS,
	"VFIO_REGION_INFO_CAP_SPARSE_MMAP":   C.VFIO_REGION_INFO_CAP_SPARSE_MMAP,
	"VFIO_REGION_INFO_CAP_TYPE":          C.VFIO_REGION_INFO_CAP_TYPE,
	"VFIO_REGION_INFO_CAP_MSIX_MAPPABLE": C.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE,
	"VFIO_PCI_BAR0_REGION_INDEX":         C.VFIO_PCI_BAR0_REGION_INDEX,
	"VFIO_PCI_ROM_REGION_INDEX":          C.VFIO_PCI_ROM_REGION_INDEX,
	"VFIO_PCI_CONFIG_REGION_INDEX":       C.VFIO_PCI_CONFIG_REGION_INDEX,
	"VFIO_PCI_VGA_REGION_INDEX":          C.VFIO_PCI_VGA_REGION_INDEX,

	"VFIO_PCI_INTX_IRQ_INDEX": C.VFIO_PCI_INTX_IRQ_INDEX,
	"VFIO_PCI_MSI_IRQ_INDEX":  C.VFIO_PCI_MSI_IRQ_INDEX,
	"VFIO_PCI_MSIX_IRQ_INDEX": C.VFIO_PCI_MSIX_IRQ_INDEX,
	"VFIO_PCI_ERR_IRQ_INDEX":  C.VFIO_PCI_ERR_IRQ_INDEX,
	"VFIO_PCI_REQ_IRQ_INDEX":  C.VFIO_PCI_REQ_IRQ_INDEX,

	"VFIO_IRQ_INFO_EVENTFD":       C.VFIO_IRQ_INFO_EVENTFD,
	"VFIO_IRQ_INFO_MASKABLE":      C.VFIO_IRQ_INFO_MASKABLE,
	"VFIO_IRQ_INFO_AUTOMASKED":    C.VFIO_IRQ_INFO_AUTOMASKED,
	"VFIO_IRQ_INFO_NORESIZE":      C.VFIO_IRQ_INFO_NORESIZE,
	"VFIO_IRQ_SET_DATA_NONE":      C.VFIO_IRQ_SET_DATA_NONE,
	"VFIO_IRQ_SET_DATA_EVENTFD":   C.VFIO_IRQ_SET_DATA_EVENTFD,
	"VFIO_IRQ_SET_ACTION_TRIGGER": C.VFIO_IRQ_SET_ACTION_TRIGGER,

	"VFIO_IOMMU_INFO_PGSIZES":              C.VFIO_IOMMU_INFO_PGSIZES,
	"VFIO_IOMMU_INFO_CAPS":                 C.VFIO_IOMMU_INFO_CAPS,
	"VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE": C.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
	"VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION":  C.VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
	"VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL":      C.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
	"VFIO_DMA_MAP_FLAG_READ":               C.VFIO_DMA_MAP_FLAG_READ,
	"VFIO_DMA_MAP_FLAG_WRITE":              C.VFIO_DMA_MAP_FLAG_WRITE,
}
