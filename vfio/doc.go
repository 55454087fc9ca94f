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
// The IOMMU lives as long as a group is attached: the first group's
// SetContainer sets it up, and when the last group detaches (closed, and
// no device opened through it still open) the kernel drops it with every
// DMA mapping; the Container's own record follows, and the next group sets
// it up again. The IOVA ranges are read again for every group attached,
// since a group may bring reserved regions.
//
// DMA memory: MapDMA takes a dmamem.Memory, which only package dma makes
// (anonymous mmap, aligned to the IOMMU page), never a []byte, so Go heap
// memory cannot be pinned for a device.
//
// A device is usable only when its whole IOMMU group is viable: every
// device in the group bound to vfio-pci, to no driver, or a PCI bridge.
// Bind and Release move a device between its kernel driver and vfio-pci
// through sysfs (driver_override and drivers_probe); List finds NVMe
// controllers and reports their groups. Open does container, group and
// device in one call.
//
// # The in-use check
//
// Bind refuses to take a controller from the kernel while its namespaces
// (or their partitions) are in use: mounted, active swap, held by another
// block device (holders/: device mapper, LVM, MD), open exclusively by
// anyone (an O_EXCL open fails with EBUSY: a mount in another namespace, a
// RAID or ZFS pool, a VM), or locked (flock/fcntl in /proc/locks, as QEMU
// locks its disks); and while they carry data, found by its signature: a
// partition table (DOS, GPT), a file system (ext2/3/4, XFS, Btrfs, F2FS,
// JFS, ReiserFS, FAT, NTFS, exFAT, ISO 9660, SquashFS), swap, LVM2, MD
// RAID, ZFS, Ceph BlueStore, bcache or LUKS. Force skips the check,
// IgnoreSignatures only the signatures; InUse runs it alone. SPDK's
// setup.sh refuses the same devices (its "mount@", "holder@" and "data@").
//
// The signatures come from a small prober of the formats' magic numbers at
// their well-known offsets (signature.go), not from libblkid: reaching
// libblkid needs cgo, and gonvme's VM test binaries (and many deployments
// of Go programs) are built with CGO_ENABLED=0 for machines without
// libblkid.so; and no maintained pure-Go prober covers these formats
// (u-root's pkg/mount knows a few file systems, no volume managers or
// partition tables). It answers "is there data here", which is what the
// refusal needs.
//
// Errors name their cause and the fix and match sentinels with errors.Is:
// ErrNoIOMMU, ErrNotViable (*NotViableError lists the devices in the way),
// ErrMemlock (*MemlockError gives RLIMIT_MEMLOCK and the bytes needed),
// ErrInUse (*InUseError lists the uses), ErrBusy, ErrPermission,
// ErrNoVFIOPCI, ErrOverlap, ErrIOVARange, ErrNotDMA, ErrUnmapMismatch.
//
// Container, Group and Device are safe for use from any goroutine; each
// serialises its methods with a mutex. None of them is on the I/O path:
// the BAR memory MapBAR returns is accessed directly, through
// internal/mmio, by whichever goroutine owns the queue it drives.
//
// The UAPI structs and ioctl numbers live in uapi.go, with their kernel
// names from include/uapi/linux/vfio.h; TestUAPIHeader compares them with
// the installed <linux/vfio.h> through cgo (internal/kabi).
//
// Imports: the standard library, golang.org/x/sys/unix (syscalls),
// github.com/u-root/u-root/pkg/pci (sysfs enumeration), internal/dmamem
// (the DMA memory type) and, in tests, internal/mmio. This package, dma and internal/mmio are the only ones
// that use unsafe.
package vfio
