package poller

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The system calls of package poller: where the caller runs, and pinning
// a poller's thread. x/sys/unix has no getcpu wrapper; Go does not use the
// vDSO getcpu, so this is a raw system call (see BenchmarkGetcpu for its
// cost). RawSyscall is enough: getcpu(2) never blocks.

// currentCPU returns the CPU the calling thread runs on, or -1 when the
// kernel will not say. The answer may be stale by the time it returns
// (the thread can migrate); routing only needs a good guess.
func currentCPU() int {
	var cpu uint32
	_, _, e := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0)
	if e != 0 {
		return -1
	}
	return int(cpu)
}

// threadID returns the calling thread's kernel ID.
func threadID() int32 { return int32(unix.Gettid()) }

// pinThread binds the calling OS thread (which must be locked to its
// goroutine) to cpu.
func pinThread(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin thread to cpu %d: sched_setaffinity: %w", cpu, err)
	}
	return nil
}

// cpuTime returns the user and system CPU time of the calling thread in
// ns (getrusage RUSAGE_THREAD), for idle cost measurements.
func cpuTime() (int64, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano(), nil
}

// threadAffinity returns the calling thread's CPU mask.
func threadAffinity() (unix.CPUSet, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return set, fmt.Errorf("sched_getaffinity: %w", err)
	}
	return set, nil
}

// restoreAffinity gives the calling thread its mask back.
func restoreAffinity(set unix.CPUSet) error { return unix.SchedSetaffinity(0, &set) }

// futex(2) operations, from include/uapi/linux/futex.h (x/sys/unix does
// not define them).
const (
	_FUTEX_WAIT         = 0
	_FUTEX_WAKE         = 1
	_FUTEX_PRIVATE_FLAG = 128
)

// futexWait sleeps while *addr == val (or until a wake-up or a signal).
// It is a blocking system call: the runtime may hand the thread's P to
// other goroutines meanwhile.
func futexWait(addr *uint32, val uint32) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), _FUTEX_WAIT|_FUTEX_PRIVATE_FLAG, uintptr(val), 0, 0, 0)
}

// futexWake wakes one thread sleeping on addr.
func futexWake(addr *uint32) {
	unix.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), _FUTEX_WAKE|_FUTEX_PRIVATE_FLAG, 1, 0, 0, 0)
}

// futexWaitTimeout is futexWait that gives up after d.
func futexWaitTimeout(addr *uint32, val uint32, d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), _FUTEX_WAIT|_FUTEX_PRIVATE_FLAG, uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// Eventfds and ppoll(2), for the interrupt and hybrid modes (irq.go).

type (
	pollFd   = unix.PollFd
	timespec = unix.Timespec
)

func newEventfd() (int, error) { return unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC) }

func pollIn(fd int) pollFd { return pollFd{Fd: int32(fd), Events: unix.POLLIN} }

func nsToTimespec(ns int64) timespec { return unix.NsecToTimespec(ns) }

// ppoll sleeps until one of fds is readable, ts passes (nil: no limit)
// or a signal comes. It is a blocking system call: the runtime hands the
// thread's P to other goroutines meanwhile. Errors (EINTR) count as a
// wake-up: the caller looks at everything again anyway.
func ppoll(fds []pollFd, ts *timespec) {
	for i := range fds {
		fds[i].Revents = 0
	}
	_, _ = unix.Ppoll(fds, ts, nil)
}

// readEventfd reads (and so resets) an eventfd's count; 0 if it had none.
func readEventfd(fd int, buf *[8]byte) uint64 {
	n, err := unix.Read(fd, buf[:])
	if err != nil || n != 8 {
		return 0
	}
	return *(*uint64)(unsafe.Pointer(buf))
}

// one is an eventfd increment of 1 in the machine's byte order.
var one = func() (b [8]byte) {
	*(*uint64)(unsafe.Pointer(&b)) = 1
	return b
}()

// signalEventfd adds 1 to an eventfd's count.
func signalEventfd(fd int) { _, _ = unix.Write(fd, one[:]) }

func closeFD(fd int) { _ = unix.Close(fd) }
