package vfio

import (
	"errors"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctlInt issues an ioctl whose argument is an integer (or none) and
// returns the kernel's non-negative result.
func ioctlInt(fd int, req uintptr, arg uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// ioctlPtr issues an ioctl whose argument is a pointer to memory the kernel
// reads or fills, and keeps that memory alive until the call returns.
func ioctlPtr(fd int, req uintptr, p unsafe.Pointer) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(p))
	runtime.KeepAlive(p)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// isPerm reports whether err is EACCES or EPERM.
func isPerm(err error) bool {
	return errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)
}
