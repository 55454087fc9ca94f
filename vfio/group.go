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
// Any goroutine may call any method.
type Group struct {
	mu   sync.Mutex
	s    sysfs
	num  int
	fd   int // -1 once closed
	cont *Container
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
	g := &Group{s: s, num: n, fd: fd}
	st := groupStatus{ArgSz: sizeofGroupStatus}
	if _, err := ioctlPtr(fd, ioctlGroupGetStatus, unsafe.Pointer(&st)); err != nil {
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

// SetContainer attaches the group to c (VFIO_GROUP_SET_CONTAINER) and, for
// the container's first group, selects the TYPE1v2 IOMMU (VFIO_SET_IOMMU).
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
	if _, err := ioctlPtr(g.fd, ioctlGroupSetContainer, unsafe.Pointer(&cfd)); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return busyError(fmt.Sprintf("vfio group %d set container", g.num), err)
		}
		return fmt.Errorf("vfio group %d set container: %w", g.num, err)
	}
	if err := c.setIOMMU(); err != nil {
		ioctlInt(g.fd, ioctlGroupUnsetContainer, 0)
		return err
	}
	c.groups++
	g.cont = c
	return nil
}

// OpenDevice returns the device at addr, which must be in this group and
// the group in a container (VFIO_GROUP_GET_DEVICE_FD). The Device does not
// own the group: closing it leaves the group open.
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
	fd, err := ioctlPtr(g.fd, ioctlGroupGetDeviceFD, unsafe.Pointer(name))
	if err != nil {
		switch {
		case errors.Is(err, unix.EBUSY):
			return nil, busyError("open vfio device "+addr, err)
		case errors.Is(err, unix.ENODEV), errors.Is(err, unix.EINVAL):
			return nil, fmt.Errorf("open vfio device %s: not in iommu group %d: %w", addr, g.num, err)
		}
		return nil, fmt.Errorf("open vfio device %s: %w", addr, err)
	}
	d, err := newDevice(addr, fd, g.cont)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return d, nil
}

// Close releases the group; the kernel detaches it from its container.
// Close is idempotent.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fd < 0 {
		return nil
	}
	err := unix.Close(g.fd)
	g.fd = -1
	if g.cont != nil {
		g.cont.mu.Lock()
		g.cont.groups--
		g.cont.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("close vfio group %d: %w", g.num, err)
	}
	return nil
}
