package vfio

import (
	"errors"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// kernel is how Container, Group and Device reach VFIO: hostKernel issues
// the ioctls; host tests plug in a fake that plays the kernel's type1
// IOMMU (groups attaching and detaching, mappings dropped with the last
// group, alignment and range checks) so that the bookkeeping above it can
// be tested without a device. mmap and pread on a device fd are not
// routed through it: they are plain file operations.
type kernel interface {
	// ioctl issues an ioctl whose argument is an integer (or none) and
	// returns the kernel's non-negative result.
	ioctl(fd int, req uintptr, arg uintptr) (int, error)
	// ioctlPtr issues an ioctl whose argument points to memory the kernel
	// reads or fills.
	ioctlPtr(fd int, req uintptr, p unsafe.Pointer) (int, error)
	// close closes a VFIO file descriptor.
	close(fd int) error
}

// hostKernel is the running kernel.
type hostKernel struct{}

func (hostKernel) ioctl(fd int, req uintptr, arg uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// ioctlPtr keeps the memory p points to alive until the call returns.
func (hostKernel) ioctlPtr(fd int, req uintptr, p unsafe.Pointer) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(p))
	runtime.KeepAlive(p)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

func (hostKernel) close(fd int) error { return unix.Close(fd) }

// isPerm reports whether err is EACCES or EPERM.
func isPerm(err error) bool {
	return errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)
}
