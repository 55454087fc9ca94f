package vfio

import (
	"encoding/binary"
	"sort"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fakeKernel plays VFIO's side of the ioctls for host tests, as
// drivers/vfio/container.c, group.c and vfio_iommu_type1.c behave:
//   - a group attaches to a container (SET_CONTAINER) and detaches on
//     UNSET_CONTAINER, or when its fd is closed and no device fd opened
//     through it is still open; with the last group the container loses
//     its IOMMU and every mapping;
//   - SET_IOMMU needs a group and no IOMMU yet;
//   - GET_INFO reports the page sizes and the IOVA ranges left by the
//     reserved regions of every attached group, with the argsz protocol;
//   - MAP_DMA checks iova, vaddr and size against the smallest IOMMU page
//     (vfio_dma_do_map), the ranges, overlap and the mapping limit;
//   - UNMAP_DMA removes the mappings inside the span and reports the bytes.
//
// Device fds are real memfds (so mmap and pread work) whose region info
// comes from fakeDevice.
type fakeKernel struct {
	t  testing.TB
	mu sync.Mutex

	nextFD     int
	containers map[int]*fakeContainer
	groups     map[int]*fakeGroup  // by fd
	devices    map[int]*fakeDevice // by fd

	pgsizes  uint64                // VFIO_IOMMU_INFO_PGSIZES bitmap
	aperture IOVARange             // what the IOMMU translates without reserved regions
	reserved map[int][]IOVARange   // by group number
	limit    int                   // dma_entry_limit
	regions  func() []fakeRegion   // the regions of a new device
	calls    map[uintptr]int       // ioctl requests seen
	failInfo int                   // GET_INFO calls to fail with EIO
	short    uint64                // bytes the next UNMAP_DMA under-reports
	mapFails func(m *dmaMap) error // extra MAP_DMA refusals
}

type fakeContainer struct {
	iommu  bool
	groups map[*fakeGroup]bool
	maps   []mapping // sorted by iova
}

type fakeGroup struct {
	num     int
	cont    *fakeContainer
	devices int  // device fds open
	closed  bool // group fd closed
}

type fakeDevice struct {
	g       *fakeGroup
	regions []fakeRegion
}

// fakeRegion is one region of a fake device: where it is in the memfd.
type fakeRegion struct {
	size, offset uint64
	flags        uint32
	areas        []Area // sparse mmap areas, with sparse
	sparse       bool
	msixMappable bool
}

func newFakeKernel(t testing.TB) *fakeKernel {
	return &fakeKernel{
		t:          t,
		nextFD:     1000,
		containers: map[int]*fakeContainer{},
		groups:     map[int]*fakeGroup{},
		devices:    map[int]*fakeDevice{},
		pgsizes:    0x1000 | 0x200000 | 0x40000000,
		aperture:   IOVARange{0, 1<<39 - 1},
		reserved:   map[int][]IOVARange{},
		limit:      65535,
		calls:      map[uintptr]int{},
		regions: func() []fakeRegion {
			rs := make([]fakeRegion, 9)
			rs[0] = fakeRegion{size: 0x4000, offset: 0, flags: RegionRead | RegionWrite | RegionMmap}
			rs[PCIConfigRegion] = fakeRegion{size: 256, offset: 0x10000, flags: RegionRead | RegionWrite}
			return rs
		},
	}
}

// container opens a fake /dev/vfio/vfio.
func (k *fakeKernel) container() *Container {
	k.t.Helper()
	k.mu.Lock()
	fd := k.nextFD
	k.nextFD++
	k.containers[fd] = &fakeContainer{groups: map[*fakeGroup]bool{}}
	k.mu.Unlock()
	c, err := newContainer(k, fd)
	if err != nil {
		k.t.Fatal(err)
	}
	return c
}

// group opens fake group n.
func (k *fakeKernel) group(n int) *Group {
	k.mu.Lock()
	defer k.mu.Unlock()
	fd := k.nextFD
	k.nextFD++
	k.groups[fd] = &fakeGroup{num: n}
	return &Group{k: k, num: n, fd: fd}
}

// count returns how often the ioctl req was issued.
func (k *fakeKernel) count(req uintptr) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[req]
}

// kernelMaps returns the mappings of the container behind c.
func (k *fakeKernel) kernelMaps(c *Container) []mapping {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]mapping(nil), k.containers[c.fd].maps...)
}

func (k *fakeKernel) ioctl(fd int, req uintptr, arg uintptr) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls[req]++
	if c := k.containers[fd]; c != nil {
		switch req {
		case ioctlGetAPIVersion:
			return vfioAPIVersion, nil
		case ioctlCheckExtension:
			if arg == vfioType1v2IOMMU {
				return 1, nil
			}
			return 0, nil
		case ioctlSetIOMMU:
			if c.iommu {
				return -1, unix.EBUSY
			}
			if len(c.groups) == 0 {
				return -1, unix.EINVAL
			}
			c.iommu = true
			return 0, nil
		}
		return -1, unix.ENOTTY
	}
	if g := k.groups[fd]; g != nil {
		switch req {
		case ioctlGroupUnsetContainer:
			if g.cont == nil {
				return -1, unix.EINVAL
			}
			if g.devices > 0 {
				return -1, unix.EBUSY
			}
			k.detach(g)
			return 0, nil
		}
		return -1, unix.ENOTTY
	}
	if _, ok := k.devices[fd]; ok {
		if req == ioctlDeviceReset {
			return 0, nil
		}
		return -1, unix.ENOTTY
	}
	return -1, unix.EBADF
}

func (k *fakeKernel) ioctlPtr(fd int, req uintptr, p unsafe.Pointer) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls[req]++
	if c := k.containers[fd]; c != nil {
		switch req {
		case ioctlIOMMUGetInfo:
			return k.info(c, p)
		case ioctlIOMMUMapDMA:
			return 0, k.mapDMA(c, (*dmaMap)(p))
		case ioctlIOMMUUnmapDMA:
			return 0, k.unmapDMA(c, (*dmaUnmap)(p))
		}
		return -1, unix.ENOTTY
	}
	if g := k.groups[fd]; g != nil {
		switch req {
		case ioctlGroupGetStatus:
			(*groupStatus)(p).Flags = vfioGroupFlagsViable
			return 0, nil
		case ioctlGroupSetContainer:
			c := k.containers[int(*(*int32)(p))]
			if c == nil {
				return -1, unix.EBADF
			}
			if g.cont != nil {
				return -1, unix.EINVAL
			}
			if c.iommu {
				// vfio_iommu_type1_attach_group refuses a group whose
				// reserved regions cover an existing mapping.
				for _, r := range k.reserved[g.num] {
					for _, m := range c.maps {
						if m.iova <= r.Last && m.last() >= r.Start {
							return -1, unix.EINVAL
						}
					}
				}
			}
			g.cont = c
			c.groups[g] = true
			return 0, nil
		case ioctlGroupGetDeviceFD:
			if g.cont == nil || !g.cont.iommu {
				return -1, unix.EINVAL
			}
			return k.openDevice(g)
		}
		return -1, unix.ENOTTY
	}
	if d := k.devices[fd]; d != nil {
		switch req {
		case ioctlDeviceGetInfo:
			info := (*deviceInfo)(p)
			info.Flags = vfioDeviceFlagsPCI | vfioDeviceFlagsReset
			info.NumRegions = uint32(len(d.regions))
			info.NumIRQs = 5
			return 0, nil
		case ioctlDeviceGetRegionInfo:
			return k.regionInfo(d, p)
		case ioctlDeviceGetIRQInfo:
			q := (*irqInfo)(p)
			q.Flags, q.Count = IRQEventfd, 1
			return 0, nil
		}
		return -1, unix.ENOTTY
	}
	return -1, unix.EBADF
}

func (k *fakeKernel) close(fd int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.containers[fd]; ok {
		delete(k.containers, fd) // attached groups keep it alive in the kernel; not modelled
		return nil
	}
	if g := k.groups[fd]; g != nil {
		delete(k.groups, fd)
		g.closed = true
		if g.devices == 0 && g.cont != nil {
			k.detach(g)
		}
		return nil
	}
	if d := k.devices[fd]; d != nil {
		delete(k.devices, fd)
		d.g.devices--
		if d.g.closed && d.g.devices == 0 && d.g.cont != nil {
			k.detach(d.g)
		}
		return unix.Close(fd)
	}
	return unix.EBADF
}

// detach removes g from its container; the last group takes the IOMMU and
// the mappings with it (vfio_group_detach_container).
func (k *fakeKernel) detach(g *fakeGroup) {
	c := g.cont
	delete(c.groups, g)
	g.cont = nil
	if len(c.groups) == 0 {
		c.iommu = false
		c.maps = nil
	}
}

// ranges returns the aperture minus every attached group's reserved
// regions, as vfio_iommu_iova_get_copy builds the list.
func (k *fakeKernel) ranges(c *fakeContainer) []IOVARange {
	rs := []IOVARange{k.aperture}
	for g := range c.groups {
		for _, r := range k.reserved[g.num] {
			var next []IOVARange
			for _, x := range rs {
				if r.Last < x.Start || r.Start > x.Last {
					next = append(next, x)
					continue
				}
				if r.Start > x.Start {
					next = append(next, IOVARange{x.Start, r.Start - 1})
				}
				if r.Last < x.Last {
					next = append(next, IOVARange{r.Last + 1, x.Last})
				}
			}
			rs = next
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
	return rs
}

func (k *fakeKernel) info(c *fakeContainer, p unsafe.Pointer) (int, error) {
	if !c.iommu {
		return -1, unix.EINVAL
	}
	if k.failInfo > 0 {
		k.failInfo--
		return -1, unix.EIO
	}
	rs := k.ranges(c)
	le := binary.LittleEndian
	// struct vfio_iommu_type1_info, then the IOVA range capability, then
	// the DMA avail capability.
	full := make([]byte, sizeofIOMMUType1Info, 128)
	iovaOff := uint32(len(full))
	cap1 := make([]byte, sizeofCapIOVARange+sizeofIOVARange*len(rs))
	le.PutUint16(cap1[0:], vfioIOMMUType1InfoCapIOVA)
	le.PutUint16(cap1[2:], 1)
	le.PutUint32(cap1[8:], uint32(len(rs)))
	for i, r := range rs {
		le.PutUint64(cap1[sizeofCapIOVARange+16*i:], r.Start)
		le.PutUint64(cap1[sizeofCapIOVARange+16*i+8:], r.Last)
	}
	full = append(full, cap1...)
	availOff := uint32(len(full))
	le.PutUint32(full[iovaOff+4:], availOff)
	cap2 := make([]byte, sizeofCapDMAAvail)
	le.PutUint16(cap2[0:], vfioIOMMUType1InfoDMAAvail)
	le.PutUint16(cap2[2:], 1)
	le.PutUint32(cap2[8:], uint32(k.limit-len(c.maps)))
	full = append(full, cap2...)

	argsz := (*iommuType1Info)(p).ArgSz
	le.PutUint32(full[4:], vfioIOMMUInfoPgsizes|vfioIOMMUInfoCaps)
	le.PutUint64(full[8:], k.pgsizes)
	if int(argsz) < len(full) {
		// Too small for the chain: say how much is needed, no caps.
		le.PutUint32(full[0:], uint32(len(full)))
		le.PutUint32(full[16:], 0)
		copy(unsafe.Slice((*byte)(p), sizeofIOMMUType1Info), full[:sizeofIOMMUType1Info])
		return 0, nil
	}
	le.PutUint32(full[0:], argsz)
	le.PutUint32(full[16:], iovaOff)
	copy(unsafe.Slice((*byte)(p), argsz), full)
	return 0, nil
}

func (k *fakeKernel) mapDMA(c *fakeContainer, m *dmaMap) error {
	if !c.iommu {
		return unix.EINVAL
	}
	mask := uint64(1)<<uint(bitsTrailing(k.pgsizes)) - 1
	if m.Size == 0 || m.IOVA&mask != 0 || m.VAddr&mask != 0 || m.Size&mask != 0 {
		return unix.EINVAL
	}
	if k.mapFails != nil {
		if err := k.mapFails(m); err != nil {
			return err
		}
	}
	want := mapping{iova: m.IOVA, size: m.Size, vaddr: uintptr(m.VAddr)}
	inside := false
	for _, r := range k.ranges(c) {
		inside = inside || (want.iova >= r.Start && want.last() <= r.Last)
	}
	if !inside {
		return unix.EINVAL
	}
	for _, x := range c.maps {
		if x.iova <= want.last() && x.last() >= want.iova {
			return unix.EEXIST
		}
	}
	if len(c.maps) >= k.limit {
		return unix.ENOSPC
	}
	c.maps = append(c.maps, want)
	sort.Slice(c.maps, func(i, j int) bool { return c.maps[i].iova < c.maps[j].iova })
	return nil
}

func (k *fakeKernel) unmapDMA(c *fakeContainer, u *dmaUnmap) error {
	if !c.iommu {
		return unix.EINVAL
	}
	last := u.IOVA + u.Size - 1
	var keep []mapping
	var n uint64
	for _, x := range c.maps {
		switch {
		case x.iova >= u.IOVA && x.last() <= last:
			n += x.size
		case x.iova <= last && x.last() >= u.IOVA:
			return unix.EINVAL // type1v2 does not split a mapping
		default:
			keep = append(keep, x)
		}
	}
	c.maps = keep
	u.Size = n - min(n, k.short)
	k.short = 0
	return nil
}

func bitsTrailing(v uint64) int {
	n := 0
	for v&1 == 0 && n < 64 {
		v >>= 1
		n++
	}
	return n
}

// openDevice makes a memfd holding the device's regions.
func (k *fakeKernel) openDevice(g *fakeGroup) (int, error) {
	rs := k.regions()
	var size uint64
	for _, r := range rs {
		size = max(size, r.offset+r.size)
	}
	fd, err := unix.MemfdCreate("fake-vfio-device", unix.MFD_CLOEXEC)
	if err != nil {
		return -1, err
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return -1, err
	}
	// A recognisable pattern: byte i of the file is i*7.
	pat := make([]byte, size)
	for i := range pat {
		pat[i] = byte(i * 7)
	}
	if _, err := unix.Pwrite(fd, pat, 0); err != nil {
		unix.Close(fd)
		return -1, err
	}
	k.devices[fd] = &fakeDevice{g: g, regions: rs}
	g.devices++
	return fd, nil
}

// regionInfo fills struct vfio_region_info and its capability chain with
// the argsz protocol of vfio_info_add_capability.
func (k *fakeKernel) regionInfo(d *fakeDevice, p unsafe.Pointer) (int, error) {
	in := (*regionInfo)(p)
	if int(in.Index) >= len(d.regions) {
		return -1, unix.EINVAL
	}
	r := d.regions[in.Index]
	le := binary.LittleEndian
	full := make([]byte, sizeofRegionInfo)
	var chain []byte
	if r.sparse {
		c := make([]byte, sizeofCapSparseMmap+sizeofSparseArea*len(r.areas))
		le.PutUint16(c[0:], vfioRegionInfoCapSparseMmap)
		le.PutUint16(c[2:], 1)
		le.PutUint32(c[8:], uint32(len(r.areas)))
		for i, a := range r.areas {
			le.PutUint64(c[sizeofCapSparseMmap+16*i:], a.Offset)
			le.PutUint64(c[sizeofCapSparseMmap+16*i+8:], a.Size)
		}
		chain = append(chain, c...)
	}
	if r.msixMappable {
		c := make([]byte, sizeofInfoCapHeader)
		le.PutUint16(c[0:], vfioRegionInfoCapMSIXMappable)
		le.PutUint16(c[2:], 1)
		if len(chain) > 0 {
			le.PutUint32(chain[4:], uint32(sizeofRegionInfo+len(chain)))
		}
		chain = append(chain, c...)
	}
	flags := r.flags
	if len(chain) > 0 {
		flags |= RegionCaps
	}
	full = append(full, chain...)
	le.PutUint32(full[4:], flags)
	le.PutUint32(full[8:], in.Index)
	le.PutUint64(full[16:], r.size)
	le.PutUint64(full[24:], r.offset)
	argsz := in.ArgSz
	if len(chain) > 0 && int(argsz) < len(full) {
		le.PutUint32(full[0:], uint32(len(full)))
		copy(unsafe.Slice((*byte)(p), sizeofRegionInfo), full[:sizeofRegionInfo])
		return 0, nil
	}
	le.PutUint32(full[0:], argsz)
	if len(chain) > 0 {
		le.PutUint32(full[12:], sizeofRegionInfo)
	}
	copy(unsafe.Slice((*byte)(p), len(full)), full)
	return 0, nil
}
