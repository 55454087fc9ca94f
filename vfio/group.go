package vfio

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Group is an open IOMMU group (/dev/vfio/N): the smallest set of devices
// the IOMMU can isolate from the rest of the machine. VFIO hands out a
// group only when it is viable, every device in it bound to vfio-pci (or to
// no driver, or a bridge).
//
// The group stays attached to its container while its fd is open or a
// device opened through it is: the kernel keeps a group in use by its
// devices even after the group fd is closed.
//
// Any goroutine may call any method.
type Group struct {
	mu      sync.Mutex
	k       kernel
	s       sysfs
	num     int
	fd      int // -1 once closed
	cont    *Container
	devices int // devices opened through the group and not closed yet
}

// OpenGroup opens IOMMU group n and checks that it is viable. addr, the
// device the caller is after, only names it in errors.
func OpenGroup(n int, addr string) (*Group, error) { return hostFS.openGroup(n, addr) }

func (s sysfs) openGroup(n int, addr string) (*Group, error) {
	path := s.groupNode(n)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil, fmt.Errorf("open %s for %s: %w: bind it first (vfio.Bind, nvmectl setup)", path, addr, ErrNotBound)
		case errors.Is(err, unix.EBUSY):
			return nil, busyError(fmt.Sprintf("open iommu group %d (%s) of %s", n, path, addr), err)
		case isPerm(err):
			return nil, permError(path, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	g := &Group{k: hostKernel{}, s: s, num: n, fd: fd}
	st := groupStatus{ArgSz: sizeofGroupStatus}
	if _, err := g.k.ioctlPtr(fd, ioctlGroupGetStatus, unsafe.Pointer(&st)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vfio group %d get status: %w", n, err)
	}
	if st.Flags&vfioGroupFlagsViable == 0 {
		unix.Close(fd)
		return nil, s.notViable(n, addr)
	}
	return g, nil
}

// notViable builds the NotViableError for group n from sysfs.
func (s sysfs) notViable(n int, addr string) error {
	e := &NotViableError{Group: n, Addr: addr}
	if members, err := s.members(n); err == nil {
		for _, m := range members {
			if !m.okForVFIO() {
				e.Blockers = append(e.Blockers, m)
			}
		}
	}
	return e
}

// Number returns the IOMMU group number.
func (g *Group) Number() int { return g.num }

// SetContainer attaches the group to c (VFIO_GROUP_SET_CONTAINER). For the
// container's first group it selects the TYPE1v2 IOMMU (VFIO_SET_IOMMU);
// for every group it reads the IOMMU's page sizes and IOVA ranges again.
// If that fails, the group is detached again and c is as before.
func (g *Group) SetContainer(c *Container) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fd < 0 {
		return fmt.Errorf("vfio group %d: %w", g.num, ErrClosed)
	}
	if g.cont != nil {
		return fmt.Errorf("vfio group %d: already in a container", g.num)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return fmt.Errorf("vfio group %d set container: container %w", g.num, ErrClosed)
	}
	cfd := int32(c.fd)
	if _, err := g.k.ioctlPtr(g.fd, ioctlGroupSetContainer, unsafe.Pointer(&cfd)); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return busyError(fmt.Sprintf("vfio group %d set container", g.num), err)
		}
		return fmt.Errorf("vfio group %d set container: %w", g.num, err)
	}
	if err := c.attachLocked(); err != nil {
		if _, uerr := g.k.ioctl(g.fd, ioctlGroupUnsetContainer, 0); uerr != nil {
			err = errors.Join(err, fmt.Errorf("vfio group %d unset container: %w", g.num, uerr))
		}
		return fmt.Errorf("vfio group %d: %w", g.num, err)
	}
	g.cont = c
	return nil
}

// OpenDevice returns the device at addr, which must be in this group and
// the group in a container (VFIO_GROUP_GET_DEVICE_FD). The Device does not
// own the group: closing it leaves the group open. While the Device is
// open it keeps the group attached to the container, even after Close of
// the group.
func (g *Group) OpenDevice(addr string) (*Device, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fd < 0 {
		return nil, fmt.Errorf("vfio group %d: %w", g.num, ErrClosed)
	}
	if g.cont == nil {
		return nil, fmt.Errorf("vfio group %d: open device %s: set a container first", g.num, addr)
	}
	name, err := unix.BytePtrFromString(addr)
	if err != nil {
		return nil, fmt.Errorf("open device %q: %w", addr, err)
	}
	fd, err := g.k.ioctlPtr(g.fd, ioctlGroupGetDeviceFD, unsafe.Pointer(name))
	if err != nil {
		switch {
		case errors.Is(err, unix.EBUSY):
			return nil, busyError("open vfio device "+addr, err)
		case errors.Is(err, unix.ENODEV), errors.Is(err, unix.EINVAL):
			return nil, fmt.Errorf("open vfio device %s: not in iommu group %d: %w", addr, g.num, err)
		}
		return nil, fmt.Errorf("open vfio device %s: %w", addr, err)
	}
	d, err := newDevice(g.k, addr, fd, g.cont)
	if err != nil {
		g.k.close(fd)
		return nil, err
	}
	d.grp = g
	g.devices++
	return d, nil
}

// deviceClosed is called by Device.Close: the last device of a closed group
// lets it detach.
func (g *Group) deviceClosed() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.devices--
	if g.fd < 0 && g.devices == 0 {
		g.detachLocked()
	}
}

// detachLocked tells the container that the kernel detached the group.
// g.mu is held.
func (g *Group) detachLocked() {
	if g.cont == nil {
		return
	}
	g.cont.mu.Lock()
	g.cont.detachLocked()
	g.cont.mu.Unlock()
	g.cont = nil
}

// Close releases the group. The kernel detaches it from its container now,
// or, while devices opened through it are still open, when the last of
// them closes; with the last group the container loses its IOMMU and every
// DMA mapping. Close is idempotent.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fd < 0 {
		return nil
	}
	err := g.k.close(g.fd)
	g.fd = -1
	if g.devices == 0 {
		g.detachLocked()
	}
	if err != nil {
		return fmt.Errorf("close vfio group %d: %w", g.num, err)
	}
	return nil
}
