package vfio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PCI configuration space offsets and bits this package uses (PCI Local Bus
// 3.0, 6.2).
const (
	PCICommand         = 0x04   // PCI_COMMAND, 16 bits
	PCICommandMaster   = 1 << 2 // PCI_COMMAND_MASTER: bus mastering (DMA)
	PCIStatus          = 0x06   // PCI_STATUS, 16 bits
	PCIStatusCapList   = 1 << 4 // PCI_STATUS_CAP_LIST
	PCICapabilityList  = 0x34   // PCI_CAPABILITY_LIST: first capability pointer
	PCICapIDMSIX       = 0x11   // PCI_CAP_ID_MSIX
	PCIMSIXFlags       = 2      // PCI_MSIX_FLAGS: offset in the MSI-X capability
	PCIMSIXFlagsEnable = 1 << 15
)

// RegionInfo describes one region of a device (VFIO_DEVICE_GET_REGION_INFO).
type RegionInfo struct {
	Index  uint32
	Flags  uint32 // RegionRead, RegionWrite, RegionMmap, RegionCaps
	Size   uint64 // bytes; 0 for an unimplemented BAR
	Offset uint64 // offset of the region in the device fd, for pread/mmap

	// Sparse reports that the kernel limits mmap to Areas
	// (VFIO_REGION_INFO_CAP_SPARSE_MMAP); Areas may then be empty, and the
	// region cannot be mapped at all. Without it the whole region maps.
	Sparse bool
	Areas  []Area
	// MSIXMappable reports VFIO_REGION_INFO_CAP_MSIX_MAPPABLE: the MSI-X
	// table inside this BAR may be mapped along with the rest.
	MSIXMappable bool
}

// Area is a part of a region that may be mmapped, relative to the
// region's start.
type Area struct {
	Offset, Size uint64
}

// IRQInfo describes one interrupt index (VFIO_DEVICE_GET_IRQ_INFO).
type IRQInfo struct {
	Index uint32
	Flags uint32 // IRQEventfd, IRQMaskable, IRQAutomasked, IRQNoresize
	Count uint32 // vectors
}

// Device is a PCI device opened through VFIO: its regions (BARs, config
// space), interrupts and reset. BAR memory returned by MapBAR stays valid
// until Close; register access to it goes through internal/mmio.
//
// Any goroutine may call any method; a mutex serialises them, none is on
// the I/O path. Close must not race with users of the BAR mappings.
type Device struct {
	mu      sync.Mutex
	addr    string
	fd      int // -1 once closed
	flags   uint32
	regions []RegionInfo
	irqs    uint32
	bars    [6][]byte
	msix    []int // eventfds while MSI-X is enabled
	req     int   // request-notification eventfd, -1 when not set

	k     kernel
	cont  *Container
	grp   *Group // the group the device was opened through
	group *Group // set when the Device owns group and container (Open)
}

func newDevice(k kernel, addr string, fd int, c *Container) (*Device, error) {
	info := deviceInfo{ArgSz: sizeofDeviceInfo}
	if _, err := k.ioctlPtr(fd, ioctlDeviceGetInfo, unsafe.Pointer(&info)); err != nil {
		return nil, fmt.Errorf("vfio device %s get info: %w", addr, err)
	}
	if info.Flags&vfioDeviceFlagsPCI == 0 {
		return nil, fmt.Errorf("vfio device %s: not a vfio-pci device (flags %#x)", addr, info.Flags)
	}
	if info.NumRegions <= PCIConfigRegion || info.NumRegions > 64 {
		return nil, fmt.Errorf("vfio device %s: %d regions, want %d..64", addr, info.NumRegions, PCIConfigRegion+1)
	}
	d := &Device{k: k, addr: addr, fd: fd, flags: info.Flags, irqs: info.NumIRQs, cont: c, req: -1}
	for i := uint32(0); i < info.NumRegions; i++ {
		r, err := d.regionInfo(i)
		if errors.Is(err, unix.EINVAL) {
			// Optional regions (VGA) may be absent.
			d.regions = append(d.regions, RegionInfo{Index: i})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("vfio device %s get region %d info: %w", addr, i, err)
		}
		d.regions = append(d.regions, r)
	}
	return d, nil
}

// maxRegionInfo bounds the buffer the kernel may ask for a region's
// capability chain.
const maxRegionInfo = 64 << 10

// regionInfo issues VFIO_DEVICE_GET_REGION_INFO for region i and, when the
// kernel has capabilities for it, again with room for them (the kernel
// says how much in argsz), then parses the chain.
func (d *Device) regionInfo(i uint32) (RegionInfo, error) {
	size := uint32(sizeofRegionInfo)
	for try := 0; ; try++ {
		words := make([]uint64, (size+7)/8)
		r := (*regionInfo)(unsafe.Pointer(&words[0]))
		r.ArgSz = size
		r.Index = i
		if _, err := d.k.ioctlPtr(d.fd, ioctlDeviceGetRegionInfo, unsafe.Pointer(&words[0])); err != nil {
			return RegionInfo{}, err
		}
		out := RegionInfo{Index: i, Flags: r.Flags, Size: r.Size, Offset: r.Offset}
		if r.Flags&RegionCaps == 0 {
			return out, nil
		}
		if r.ArgSz > size && try == 0 {
			if r.ArgSz > maxRegionInfo {
				return RegionInfo{}, fmt.Errorf("kernel wants a %d-byte buffer for the region's capabilities", r.ArgSz)
			}
			size = r.ArgSz
			continue
		}
		if r.CapOffset == 0 {
			return out, nil
		}
		buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), int(size))
		caps, err := parseRegionCaps(bytes.Clone(buf), r.CapOffset, r.Size)
		if err != nil {
			return RegionInfo{}, err
		}
		out.Sparse, out.Areas, out.MSIXMappable = caps.sparse, caps.areas, caps.msixMappable
		return out, nil
	}
}

// Open binds nothing: it opens the device at addr, which must already be
// bound to vfio-pci (see Bind), in a new container with the TYPE1v2 IOMMU.
// The Device owns the group and container; Close releases all three.
func Open(addr string) (*Device, error) { return hostFS.open(addr) }

func (s sysfs) open(addr string) (*Device, error) {
	c, err := s.lookup(addr)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if c.Group < 0 {
		if !s.hasIOMMU() {
			return nil, fmt.Errorf("open: %w", noIOMMUError(addr))
		}
		return nil, fmt.Errorf("open %s: %w: the device has no iommu group", addr, ErrNoIOMMU)
	}
	if c.Driver != vfioPCIDriver {
		d := c.Driver
		if d == "" {
			d = "no driver"
		}
		return nil, fmt.Errorf("open %s: %w (bound to %s): bind it first (vfio.Bind, nvmectl setup)", addr, ErrNotBound, d)
	}
	cont, err := s.openContainer()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", addr, err)
	}
	g, err := s.openGroup(c.Group, addr)
	if err != nil {
		cont.Close()
		return nil, fmt.Errorf("open %s: %w", addr, err)
	}
	if err := g.SetContainer(cont); err != nil {
		g.Close()
		cont.Close()
		return nil, fmt.Errorf("open %s: %w", addr, err)
	}
	d, err := g.OpenDevice(addr)
	if err != nil {
		g.Close()
		cont.Close()
		return nil, fmt.Errorf("open %s: %w", addr, err)
	}
	d.group = g
	return d, nil
}

// Addr returns the device's PCI address.
func (d *Device) Addr() string { return d.addr }

// Container returns the container whose IOMMU translates the device's DMA.
func (d *Device) Container() *Container { return d.cont }

// CanReset reports whether the kernel offers VFIO_DEVICE_RESET for the
// device (VFIO_DEVICE_FLAGS_RESET).
func (d *Device) CanReset() bool { return d.flags&vfioDeviceFlagsReset != 0 }

// NumRegions returns how many regions the device has.
func (d *Device) NumRegions() int { return len(d.regions) }

// Region returns the description of region i.
func (d *Device) Region(i int) (RegionInfo, error) {
	if i < 0 || i >= len(d.regions) {
		return RegionInfo{}, fmt.Errorf("vfio device %s: no region %d (it has %d)", d.addr, i, len(d.regions))
	}
	return d.regions[i], nil
}

// NumIRQs returns how many interrupt indexes the device has.
func (d *Device) NumIRQs() int { return int(d.irqs) }

// IRQ returns the description of interrupt index i (PCIMSIXIRQ, ...).
func (d *Device) IRQ(i int) (IRQInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return IRQInfo{}, fmt.Errorf("vfio device %s: %w", d.addr, ErrClosed)
	}
	return d.irqInfo(i)
}

func (d *Device) irqInfo(i int) (IRQInfo, error) {
	if i < 0 || uint32(i) >= d.irqs {
		return IRQInfo{}, fmt.Errorf("vfio device %s: no irq index %d (it has %d)", d.addr, i, d.irqs)
	}
	q := irqInfo{ArgSz: sizeofIRQInfo, Index: uint32(i)}
	if _, err := d.k.ioctlPtr(d.fd, ioctlDeviceGetIRQInfo, unsafe.Pointer(&q)); err != nil {
		return IRQInfo{}, fmt.Errorf("vfio device %s get irq %d info: %w", d.addr, i, err)
	}
	return IRQInfo{Index: q.Index, Flags: q.Flags, Count: q.Count}, nil
}

// MapBAR maps BAR i (0..5) into memory, read-write and shared, and returns
// it; a second call returns the same mapping. The memory is device
// registers: access it only through internal/mmio. It is unmapped by Close.
//
// When the kernel limits mmap of the BAR to some areas (the sparse-mmap
// capability; Region(i).Areas), only those are mapped, at their offsets in
// the returned slice; the rest of it is reserved without access, and
// touching it faults. Registers the kernel keeps to itself (an MSI-X table
// it traps) are reached through VFIO instead (EnableMSIX).
func (d *Device) MapBAR(i int) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return nil, fmt.Errorf("vfio device %s: %w", d.addr, ErrClosed)
	}
	if i < 0 || i > 5 {
		return nil, fmt.Errorf("vfio device %s: map bar %d: bars are 0..5", d.addr, i)
	}
	if d.bars[i] != nil {
		return d.bars[i], nil
	}
	r := d.regions[i]
	if r.Size == 0 {
		return nil, fmt.Errorf("vfio device %s: bar %d is not implemented", d.addr, i)
	}
	if r.Flags&RegionMmap == 0 {
		return nil, fmt.Errorf("vfio device %s: bar %d cannot be mmapped (region flags %#x)", d.addr, i, r.Flags)
	}
	if r.Size > 1<<40 || r.Offset > 1<<62 {
		return nil, fmt.Errorf("vfio device %s: bar %d: implausible size %#x at offset %#x", d.addr, i, r.Size, r.Offset)
	}
	b, err := mapRegion(d.fd, r)
	if err != nil {
		return nil, fmt.Errorf("vfio device %s: mmap bar %d (%#x bytes): %w", d.addr, i, r.Size, err)
	}
	d.bars[i] = b
	return b, nil
}

// mapRegion maps region r of the device fd: all of it, or, for a sparse
// region, its areas inside a reservation of the whole size.
func mapRegion(fd int, r RegionInfo) ([]byte, error) {
	const prot = unix.PROT_READ | unix.PROT_WRITE
	if !r.Sparse {
		p, err := unix.MmapPtr(fd, int64(r.Offset), nil, uintptr(r.Size), prot, unix.MAP_SHARED)
		if err != nil {
			return nil, err
		}
		return unsafe.Slice((*byte)(p), r.Size), nil
	}
	if len(r.Areas) == 0 {
		return nil, errors.New("the kernel lists no mmappable area in it (sparse mmap with none)")
	}
	res, err := unix.MmapPtr(-1, 0, nil, uintptr(r.Size), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("reserve address space: %w", err)
	}
	for _, a := range r.Areas {
		if _, err := unix.MmapPtr(fd, int64(r.Offset+a.Offset), unsafe.Add(res, a.Offset), uintptr(a.Size), prot, unix.MAP_SHARED|unix.MAP_FIXED); err != nil {
			_ = unix.MunmapPtr(res, uintptr(r.Size))
			return nil, fmt.Errorf("area [%#x, +%#x): %w", a.Offset, a.Size, err)
		}
	}
	return unsafe.Slice((*byte)(res), r.Size), nil
}

// configRegion returns the config space region, with d.mu held.
func (d *Device) configRegion(off int64, n int) (RegionInfo, error) {
	if d.fd < 0 {
		return RegionInfo{}, fmt.Errorf("vfio device %s: %w", d.addr, ErrClosed)
	}
	r := d.regions[PCIConfigRegion]
	if off < 0 || n < 0 || uint64(off)+uint64(n) > r.Size {
		return RegionInfo{}, fmt.Errorf("vfio device %s: config access %#x+%d outside the %#x-byte config space", d.addr, off, n, r.Size)
	}
	return r, nil
}

// ConfigRead reads len(b) bytes of PCI configuration space at off, as the
// vfio-pci kernel driver presents it (some fields are virtualised).
func (d *Device) ConfigRead(off int64, b []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.configRead(off, b)
}

func (d *Device) configRead(off int64, b []byte) error {
	r, err := d.configRegion(off, len(b))
	if err != nil {
		return err
	}
	n, err := unix.Pread(d.fd, b, int64(r.Offset)+off)
	if err != nil {
		return fmt.Errorf("vfio device %s: read config %#x: %w", d.addr, off, err)
	}
	if n != len(b) {
		return fmt.Errorf("vfio device %s: read config %#x: %d of %d bytes", d.addr, off, n, len(b))
	}
	return nil
}

// ConfigWrite writes b to PCI configuration space at off. The kernel
// filters writes to fields it virtualises or protects.
func (d *Device) ConfigWrite(off int64, b []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.configWrite(off, b)
}

func (d *Device) configWrite(off int64, b []byte) error {
	r, err := d.configRegion(off, len(b))
	if err != nil {
		return err
	}
	n, err := unix.Pwrite(d.fd, b, int64(r.Offset)+off)
	if err != nil {
		return fmt.Errorf("vfio device %s: write config %#x: %w", d.addr, off, err)
	}
	if n != len(b) {
		return fmt.Errorf("vfio device %s: write config %#x: %d of %d bytes", d.addr, off, n, len(b))
	}
	return nil
}

// ConfigRead16 reads the 16-bit little-endian config register at off.
func (d *Device) ConfigRead16(off int64) (uint16, error) {
	var b [2]byte
	if err := d.ConfigRead(off, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b[:]), nil
}

// ConfigRead32 reads the 32-bit little-endian config register at off.
func (d *Device) ConfigRead32(off int64) (uint32, error) {
	var b [4]byte
	if err := d.ConfigRead(off, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}

// SetBusMaster turns bus mastering (PCI_COMMAND bit 2, the device's
// permission to do DMA) on or off.
func (d *Device) SetBusMaster(on bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b [2]byte
	if err := d.configRead(PCICommand, b[:]); err != nil {
		return err
	}
	cmd := binary.LittleEndian.Uint16(b[:])
	if on {
		cmd |= PCICommandMaster
	} else {
		cmd &^= PCICommandMaster
	}
	binary.LittleEndian.PutUint16(b[:], cmd)
	if err := d.configWrite(PCICommand, b[:]); err != nil {
		return fmt.Errorf("set bus master %v: %w", on, err)
	}
	return nil
}

// FindCapability returns the config space offset of the first PCI
// capability with the given ID (PCICapIDMSIX, ...), or 0 if there is none.
// The list is device data: the walk is bounded and checked.
func (d *Device) FindCapability(id uint8) (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var st [2]byte
	if err := d.configRead(PCIStatus, st[:]); err != nil {
		return 0, err
	}
	if binary.LittleEndian.Uint16(st[:])&PCIStatusCapList == 0 {
		return 0, nil
	}
	var p [1]byte
	if err := d.configRead(PCICapabilityList, p[:]); err != nil {
		return 0, err
	}
	off := int64(p[0] &^ 3)
	for n := 0; off >= 0x40 && n < 48; n++ {
		var h [2]byte
		if err := d.configRead(off, h[:]); err != nil {
			return 0, err
		}
		if h[0] == id {
			return off, nil
		}
		off = int64(h[1] &^ 3)
	}
	return 0, nil
}

// Reset resets the device (VFIO_DEVICE_RESET: function-level reset or
// whatever the kernel can do for it). It fails with ErrUnsupported if the
// kernel cannot reset the device on its own.
func (d *Device) Reset() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return fmt.Errorf("vfio device %s: %w", d.addr, ErrClosed)
	}
	if !d.CanReset() {
		return fmt.Errorf("vfio device %s: reset: %w: no function-level or bus reset available", d.addr, ErrUnsupported)
	}
	if _, err := d.k.ioctl(d.fd, ioctlDeviceReset, 0); err != nil {
		return fmt.Errorf("vfio device %s: reset: %w", d.addr, err)
	}
	return nil
}

// EnableMSIX enables n MSI-X vectors, each signalling its own eventfd, and
// returns the eventfds (vector i signals fds[i]). They are non-blocking,
// owned by the Device, and closed by DisableMSIX or Close.
func (d *Device) EnableMSIX(n int) ([]int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return nil, fmt.Errorf("vfio device %s: %w", d.addr, ErrClosed)
	}
	if d.msix != nil {
		return nil, fmt.Errorf("vfio device %s: msi-x already enabled with %d vectors", d.addr, len(d.msix))
	}
	info, err := d.irqInfo(PCIMSIXIRQ)
	if err != nil {
		return nil, err
	}
	if n <= 0 || uint32(n) > info.Count {
		return nil, fmt.Errorf("vfio device %s: enable %d msi-x vectors: the device has %d", d.addr, n, info.Count)
	}
	if info.Flags&IRQEventfd == 0 {
		return nil, fmt.Errorf("vfio device %s: msi-x does not signal eventfds", d.addr)
	}
	fds := make([]int, 0, n)
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	for range n {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("vfio device %s: eventfd: %w", d.addr, err)
		}
		fds = append(fds, fd)
	}
	data := make([]int32, n)
	for i, fd := range fds {
		data[i] = int32(fd)
	}
	if err := d.setIRQs(PCIMSIXIRQ, vfioIRQSetDataEventfd|vfioIRQSetActionTrig, 0, data); err != nil {
		closeAll()
		return nil, fmt.Errorf("vfio device %s: enable %d msi-x vectors: %w", d.addr, n, err)
	}
	d.msix = fds
	return append([]int(nil), fds...), nil
}

// SetMSIXVector connects MSI-X vector i to its eventfd (on) or
// disconnects it (off: VFIO_DEVICE_SET_IRQS with fd -1 for that vector
// alone), for a user that polls for a while and wants no interrupts
// meanwhile. The kernel masks a disconnected vector, so the device keeps
// what it signals pending and sends it when the vector is connected
// again. MSI-X must be enabled (EnableMSIX).
func (d *Device) SetMSIXVector(i int, on bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return fmt.Errorf("vfio device %s: %w", d.addr, ErrClosed)
	}
	if i < 0 || i >= len(d.msix) {
		return fmt.Errorf("vfio device %s: msi-x vector %d: %d enabled", d.addr, i, len(d.msix))
	}
	fd := int32(-1)
	if on {
		fd = int32(d.msix[i])
	}
	if err := d.setIRQs(PCIMSIXIRQ, vfioIRQSetDataEventfd|vfioIRQSetActionTrig, uint32(i), []int32{fd}); err != nil {
		return fmt.Errorf("vfio device %s: msi-x vector %d on=%v: %w", d.addr, i, on, err)
	}
	return nil
}

// DisableMSIX disables MSI-X and closes the eventfds EnableMSIX returned.
// It does nothing if MSI-X is not enabled.
func (d *Device) DisableMSIX() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return fmt.Errorf("vfio device %s: %w", d.addr, ErrClosed)
	}
	return d.disableMSIX()
}

func (d *Device) disableMSIX() error {
	if d.msix == nil {
		return nil
	}
	err := d.setIRQs(PCIMSIXIRQ, vfioIRQSetDataNone|vfioIRQSetActionTrig, 0, nil)
	for _, fd := range d.msix {
		unix.Close(fd)
	}
	d.msix = nil
	if err != nil {
		return fmt.Errorf("vfio device %s: disable msi-x: %w", d.addr, err)
	}
	return nil
}

// setIRQs issues VFIO_DEVICE_SET_IRQS with the eventfds in data (count
// len(data); count 0 with DATA_NONE disables the index).
func (d *Device) setIRQs(index, flags, start uint32, data []int32) error {
	words := make([]uint64, (sizeofIRQSet+4*len(data)+7)/8)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	hdr := (*irqSet)(unsafe.Pointer(&words[0]))
	hdr.ArgSz = uint32(sizeofIRQSet + 4*len(data))
	hdr.Flags = flags
	hdr.Index = index
	hdr.Start = start
	hdr.Count = uint32(len(data))
	for i, fd := range data {
		binary.NativeEndian.PutUint32(buf[sizeofIRQSet+4*i:], uint32(fd))
	}
	_, err := d.k.ioctlPtr(d.fd, ioctlDeviceSetIRQs, unsafe.Pointer(&words[0]))
	return err
}

// RequestNotify arms the device request interrupt
// (VFIO_PCI_REQ_IRQ_INDEX) and returns its eventfd (blocking). The kernel
// signals it when it wants the device back: the device is being unplugged
// (surprise or orderly hot removal) or its driver is being unbound. The
// kernel waits, repeating the signal, until the device fd is closed, so a
// user must stop its I/O and Close. The eventfd belongs to the Device and
// is closed by Close; a reader blocked on it is woken by Wake.
func (d *Device) RequestNotify() (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return -1, fmt.Errorf("vfio device %s: %w", d.addr, ErrClosed)
	}
	if d.req >= 0 {
		return d.req, nil
	}
	info, err := d.irqInfo(PCIReqIRQ)
	if err != nil {
		return -1, err
	}
	if info.Count < 1 || info.Flags&IRQEventfd == 0 {
		return -1, fmt.Errorf("vfio device %s: no request interrupt: %w", d.addr, ErrUnsupported)
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("vfio device %s: eventfd: %w", d.addr, err)
	}
	if err := d.setIRQs(PCIReqIRQ, vfioIRQSetDataEventfd|vfioIRQSetActionTrig, 0, []int32{int32(fd)}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("vfio device %s: arm request interrupt: %w", d.addr, err)
	}
	d.req = fd
	return fd, nil
}

// WakeRequest adds one to the request eventfd, waking a reader blocked on
// it; the reader tells a real request from a wake-up by its own state.
func (d *Device) WakeRequest() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.req >= 0 {
		var one [8]byte
		one[0] = 1
		_, _ = unix.Write(d.req, one[:])
	}
}

func (d *Device) disableRequest() error {
	if d.req < 0 {
		return nil
	}
	err := d.setIRQs(PCIReqIRQ, vfioIRQSetDataNone|vfioIRQSetActionTrig, 0, nil)
	unix.Close(d.req)
	d.req = -1
	if err != nil {
		return fmt.Errorf("disable request interrupt: %w", err)
	}
	return nil
}

// Close disables interrupts, unmaps the BARs and closes the device fd; for
// a Device from Open it also closes its group and container. Close is
// idempotent. The slices MapBAR returned must not be used afterwards.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return nil
	}
	errs := []error{d.disableMSIX(), d.disableRequest()}
	for i, b := range d.bars {
		if b != nil {
			if err := unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b))); err != nil {
				errs = append(errs, fmt.Errorf("munmap bar %d: %w", i, err))
			}
			d.bars[i] = nil
		}
	}
	if err := d.k.close(d.fd); err != nil {
		errs = append(errs, fmt.Errorf("close device fd: %w", err))
	}
	d.fd = -1
	if d.grp != nil {
		d.grp.deviceClosed()
	}
	if d.group != nil {
		errs = append(errs, d.group.Close(), d.cont.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close vfio device %s: %w", d.addr, err)
	}
	return nil
}
