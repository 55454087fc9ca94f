package vfio

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinels callers branch on with errors.Is. Each error this package returns
// for one of these causes wraps the sentinel and says how to fix the cause.
var (
	// ErrNoIOMMU: the kernel has no IOMMU groups, so VFIO cannot isolate
	// devices (the IOMMU is off in firmware or on the kernel command line).
	ErrNoIOMMU = errors.New("no IOMMU")
	// ErrNotViable: the IOMMU group holds a device that is bound to a host
	// driver; VFIO refuses the whole group until it is released.
	ErrNotViable = errors.New("iommu group not viable")
	// ErrMemlock: VFIO_IOMMU_MAP_DMA failed because pinning the memory would
	// exceed RLIMIT_MEMLOCK.
	ErrMemlock = errors.New("locked-memory limit too low")
	// ErrBusy: the device or group is already open in another process (or in
	// this one).
	ErrBusy = errors.New("device or group in use")
	// ErrPermission: the VFIO nodes cannot be opened or configured by this
	// user.
	ErrPermission = errors.New("insufficient privileges")
	// ErrNoVFIOPCI: the vfio-pci driver is not registered with the kernel.
	ErrNoVFIOPCI = errors.New("vfio-pci driver not loaded")
	// ErrNoDriver: the driver asked for by Release is not registered.
	ErrNoDriver = errors.New("driver not loaded")
	// ErrNoDevice: no PCI device has the given address.
	ErrNoDevice = errors.New("no such pci device")
	// ErrNotBound: the device is not bound to vfio-pci.
	ErrNotBound = errors.New("device not bound to vfio-pci")
	// ErrIOVARange: a DMA mapping falls outside every IOVA range the IOMMU
	// reports as usable.
	ErrIOVARange = errors.New("iova outside the usable ranges")
	// ErrOverlap: a DMA mapping overlaps one already made on the container.
	ErrOverlap = errors.New("iova range already mapped")
	// ErrClosed: the object was used after Close.
	ErrClosed = errors.New("closed")
	// ErrNotDMA: MapDMA was given no memory: a zero or unmapped
	// dmamem.Memory. DMA memory comes from package dma.
	ErrNotDMA = errors.New("not DMA memory")
	// ErrUnmapMismatch: VFIO_IOMMU_UNMAP_DMA unmapped another number of
	// bytes than the container's record said were mapped there.
	ErrUnmapMismatch = errors.New("kernel unmapped a different size")
	// ErrInUse: Bind refused a device whose block devices are in use or
	// hold data (*InUseError lists why).
	ErrInUse = errors.New("device in use")
	// ErrUnsupported: the kernel lacks a VFIO feature this package needs
	// (API version or the TYPE1v2 IOMMU).
	ErrUnsupported = errors.New("unsupported by the kernel's vfio")
)

// Member is one device of an IOMMU group as sysfs shows it.
type Member struct {
	Addr   string // PCI address, "0000:00:04.0"
	Driver string // bound driver, "" for none
	Class  uint32 // PCI class code, 24 bits
}

// Bridge reports whether the device is a PCI-to-PCI bridge (class 0x0604xx),
// which the kernel lets stay bound to its port driver in a viable group.
func (m Member) Bridge() bool { return m.Class>>8 == 0x0604 }

// okForVFIO reports whether m lets its group be used through VFIO.
func (m Member) okForVFIO() bool {
	return m.Driver == "" || m.Driver == vfioPCIDriver || m.Bridge()
}

// String formats the member as "0000:01:02.0 (nvme)".
func (m Member) String() string {
	d := m.Driver
	if d == "" {
		d = "no driver"
	}
	return fmt.Sprintf("%s (%s)", m.Addr, d)
}

// NotViableError says which devices keep an IOMMU group from being used. It
// matches ErrNotViable.
type NotViableError struct {
	Group    int      // IOMMU group number
	Addr     string   // the device being opened or bound
	Blockers []Member // devices in the group bound to a host driver
}

// Error names the blocking devices and the fix.
func (e *NotViableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "iommu group %d of %s not viable: ", e.Group, e.Addr)
	if len(e.Blockers) == 0 {
		b.WriteString("the kernel reports a device in the group bound to a host driver; bind every device in /sys/kernel/iommu_groups/")
		fmt.Fprintf(&b, "%d/devices to vfio-pci or unbind it", e.Group)
		return b.String()
	}
	names := make([]string, len(e.Blockers))
	for i, m := range e.Blockers {
		names[i] = m.String()
	}
	fmt.Fprintf(&b, "%s not bound to vfio-pci; bind them to vfio-pci (nvmectl setup, or driver_override) or unbind them (echo ADDR > /sys/bus/pci/devices/ADDR/driver/unbind)", strings.Join(names, ", "))
	return b.String()
}

// Is makes errors.Is(err, ErrNotViable) true.
func (e *NotViableError) Is(target error) bool { return target == ErrNotViable }

// MemlockError reports a DMA mapping refused for lack of lockable memory. It
// matches ErrMemlock.
//
// VFIO counts every page it pins for DMA in the process's locked memory
// (VmLck), the same account mlock(2) charges; memory both mlocked and
// pinned counts twice. Package dma therefore does not mlock memory that a
// VFIO container pins, and Locked shows what the process had locked
// before this mapping, by VFIO pins and mlock alike.
type MemlockError struct {
	Current uint64 // RLIMIT_MEMLOCK soft limit in bytes (math.MaxUint64: unlimited)
	Locked  uint64 // bytes the process had locked already (VmLck)
	Needed  uint64 // Locked plus the refused mapping
}

// Error gives the limit, the bytes needed, how they are counted, and how
// to raise the limit.
func (e *MemlockError) Error() string {
	return fmt.Sprintf("map dma: locked-memory limit too low: RLIMIT_MEMLOCK is %d bytes, %d bytes needed "+
		"(%d already locked by this process, plus %d for this mapping: VFIO counts every page it pins for DMA against RLIMIT_MEMLOCK, "+
		"and memory that is also mlocked counts twice); raise it with `ulimit -l` (KiB, or unlimited), LimitMEMLOCK= in a systemd unit, "+
		"or run as root with CAP_IPC_LOCK", e.Current, e.Needed, e.Locked, e.Needed-e.Locked)
}

// Is makes errors.Is(err, ErrMemlock) true.
func (e *MemlockError) Is(target error) bool { return target == ErrMemlock }

// noIOMMUError explains ErrNoIOMMU.
func noIOMMUError(addr string) error {
	return fmt.Errorf("%s: %w: /sys/kernel/iommu_groups is empty; enable VT-d or AMD-Vi in the firmware and boot with intel_iommu=on or amd_iommu=on (and iommu=pt for the host's own devices)", addr, ErrNoIOMMU)
}

// noVFIOPCIError explains ErrNoVFIOPCI.
func noVFIOPCIError(addr string) error {
	return fmt.Errorf("bind %s: %w: /sys/bus/pci/drivers/vfio-pci is missing; run `modprobe vfio-pci`", addr, ErrNoVFIOPCI)
}

// busyError explains EBUSY on a group or device.
func busyError(what string, err error) error {
	return fmt.Errorf("%s: %w (%w): another process (or another Open in this one) holds it; close it there first", what, ErrBusy, err)
}

// permError explains EACCES or EPERM on a VFIO node.
func permError(what string, err error) error {
	return fmt.Errorf("%s: %w (%w): run as root, or give this user the node (chown $USER %s) and a large enough RLIMIT_MEMLOCK", what, ErrPermission, err, what)
}
