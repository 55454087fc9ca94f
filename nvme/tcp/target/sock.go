package target

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sock is the socket of a host I/O queue once a poller owns it: a
// duplicate of the connection's file descriptor, taken out of Go's network
// poller (take closes the net.Conn, which removes the runtime's descriptor
// from its epoll set). Left there, every segment a host sends, and every
// acknowledgement that frees send buffer space, would wake a thread of the
// runtime (edge-triggered epoll) that finds no goroutine waiting and goes
// back to sleep: a context switch per event, on a CPU the poller or the
// host may need. The poller reads and writes fd without blocking (it
// keeps O_NONBLOCK, which the runtime set on the socket), and learns of
// events through its own epoll set.
//
// Read, Write, Writev and Close: the owning poller goroutine only.
// Shutdown: any goroutine.
type sock struct {
	mu   sync.Mutex // fd and shut, against Shutdown from other goroutines
	fd   int        // -1 before take and once closed
	shut int        // how of a Shutdown before take, else -1
	iov  [maxIOV]unix.Iovec
}

func newSock() sock { return sock{fd: -1, shut: -1} }

// take moves nc's socket into s: nc is closed, s.fd refers to the socket.
func (s *sock) take(nc net.Conn) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T has no file descriptor", nc)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	fd, derr := -1, error(nil)
	if err := raw.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return err
	}
	if derr != nil {
		return fmt.Errorf("dup: %w", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return fmt.Errorf("set non-blocking: %w", err)
	}
	s.mu.Lock()
	s.fd = fd
	if s.shut >= 0 {
		_ = unix.Shutdown(fd, s.shut)
	}
	s.mu.Unlock()
	_ = nc.Close() // the socket lives on in fd
	return nil
}

// Read reads what the socket holds, up to len(p) bytes, without waiting:
// (0, nil) when it holds nothing, io.EOF once the peer closed its side
// and everything before was read.
//
// Read, Writev and Write are raw system calls (unix.RawSyscall): they
// never block (the socket is non-blocking), so the Go runtime need not
// know of them. A plain system call would put the poller's P in its
// syscall state on every pass (a read that finds nothing is most
// passes), and the runtime's monitor thread, seeing a P in a system call
// while other goroutines wait, hands it to another thread: the poller's
// thread then needs a P back, and the monitor keeps waking every 20 µs.
// Under TCG that was seconds of CPU time of the monitor thread in a short
// QD1 run, on the vCPUs the poller and the host share.
func (s *sock) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(s.fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	runtime.KeepAlive(p)
	switch {
	case e == unix.EAGAIN || e == unix.EINTR:
		return 0, nil
	case e != 0:
		return 0, fmt.Errorf("read: %w", e)
	case n == 0:
		return 0, io.EOF
	}
	return int(n), nil
}

// Writev writes what the socket takes of bufs (at most maxIOV of them),
// without waiting: (0, nil) when it takes nothing.
func (s *sock) Writev(bufs [][]byte) (int, error) {
	n := 0
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		if n == len(s.iov) {
			break
		}
		s.iov[n].Base = &b[0]
		s.iov[n].SetLen(len(b))
		n++
	}
	if n == 0 {
		return 0, nil
	}
	w, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(s.fd), uintptr(unsafe.Pointer(&s.iov[0])), uintptr(n))
	runtime.KeepAlive(bufs)
	clear(s.iov[:n])
	switch {
	case e == unix.EAGAIN || e == unix.EINTR:
		return 0, nil
	case e != 0:
		return 0, fmt.Errorf("writev: %w", e)
	}
	return int(w), nil
}

// Write is Writev of one buffer.
func (s *sock) Write(b []byte) (int, error) {
	var one = [1][]byte{b}
	return s.Writev(one[:])
}

// Shutdown shuts the socket down (how: unix.SHUT_WR, SHUT_RDWR) unless it
// is closed; before take, take does it. Any goroutine.
func (s *sock) Shutdown(how int) {
	s.mu.Lock()
	if s.fd >= 0 {
		_ = unix.Shutdown(s.fd, how)
	} else if s.shut < 0 || how == unix.SHUT_RDWR {
		s.shut = how
	}
	s.mu.Unlock()
}

// Close closes the socket. Owner only.
func (s *sock) Close() {
	s.mu.Lock()
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
	s.mu.Unlock()
}
