// Package vfio gives a user process a PCI device through the kernel's VFIO
// framework: the device's registers mapped into memory, its configuration
// space, its interrupts as eventfds, and an IOMMU address space in which the
// process decides which of its memory the device may reach by DMA. gonvme's
// userspace NVMe driver runs on top of it.
//
// Three kernel objects are involved, each a file descriptor:
//
//	 /dev/vfio/vfio                 /dev/vfio/<N>                 GROUP_GET_DEVICE_FD("0000:00:04.0")
//	+------------------+  SET_    +-------------------+  GET_     +----------------------------+
//	| Container        |<---------| Group N           |---------->| Device                     |
//	|  one IOMMU space |  CONTAINER|  devices the IOMMU|  DEVICE_FD|  regions: BAR0..5, config  |
//	|  MAP_DMA/UNMAP   |           |  cannot tell apart|           |  IRQs: INTx, MSI, MSI-X    |
//	|  IOVA ranges     |           |  (viable: all on  |           |  RESET                     |
//	+------------------+           |  vfio-pci)        |           +----------------------------+
//	        ^                      +-------------------+
//	        | SET_IOMMU(TYPE1v2) once the first group is attached
//
// A device is usable only when its whole IOMMU group is viable: every
// device in the group bound to vfio-pci, to no driver, or a PCI bridge.
// Bind and Release move a device between its kernel driver and vfio-pci
// through sysfs (driver_override and drivers_probe); List finds NVMe
// controllers and reports their groups. Open does container, group and
// device in one call.
//
// Errors name their cause and the fix and match sentinels with errors.Is:
// ErrNoIOMMU, ErrNotViable (*NotViableError lists the devices in the way),
// ErrMemlock (*MemlockError gives RLIMIT_MEMLOCK and the bytes needed),
// ErrBusy, ErrPermission, ErrNoVFIOPCI, ErrOverlap, ErrIOVARange.
//
// Container, Group and Device are safe for use from any goroutine; each
// serialises its methods with a mutex. None of them is on the I/O path:
// the BAR memory MapBAR returns is accessed directly, through
// internal/mmio, by whichever goroutine owns the queue it drives.
//
// The UAPI structs and ioctl numbers live in uapi.go, with their kernel
// names from include/uapi/linux/vfio.h.
//
// Imports: the standard library, golang.org/x/sys/unix (syscalls),
// github.com/u-root/u-root/pkg/pci (sysfs enumeration) and, in tests,
// internal/mmio. This package, dma and internal/mmio are the only ones
// that use unsafe.
package vfio
