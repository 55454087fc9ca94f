// Package nbsock reads and writes a TCP connection without blocking, for
// the poller that owns it.
//
// A poller owns its NVMe/TCP queue pairs the way it owns PCIe ones: it
// asks each connection "is there anything?" on every pass and never
// waits on one (SPDK's sock poll groups do the same). Go's net.Conn
// cannot do that: a Read with nothing to read parks the goroutine in the
// runtime's network poller. nbsock goes under it, through
// syscall.RawConn, with a callback that tries the system call once and
// reports done whatever the outcome, so the runtime never parks the
// caller. EAGAIN becomes (0, nil).
//
//	poller goroutine                 kernel
//	   Read(buf) ── read(2) once ──▶ socket buffer: n bytes, or EAGAIN
//	   Writev(h, d) ── writev(2) ──▶ send buffer: all, part, or EAGAIN
//
// The callbacks are made once per Conn, so a Read or Write allocates
// nothing. A Conn belongs to one goroutine at a time, like a queue pair.
package nbsock

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Conn is a connection read and written without blocking. Its methods
// may be called only by the goroutine that owns it; Close may be called
// by any goroutine, once the owner is done with it or to make the
// owner's next call fail.
type Conn struct {
	nc  net.Conn
	raw syscall.RawConn

	// State for the callbacks, which are made once in New so that a
	// call allocates nothing.
	rbuf   []byte
	wbufs  [][]byte
	iov    [][]byte
	n      int
	err    error
	readFn func(fd uintptr) bool
	wrFn   func(fd uintptr) bool
}

// New wraps nc, which must be a *net.TCPConn or *net.UnixConn (anything
// with a SyscallConn). Keep nc for its addresses and options; do not read
// or write it directly any more. Any goroutine.
func New(nc net.Conn) (*Conn, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("nbsock: %T has no file descriptor", nc)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("nbsock: %w", err)
	}
	c := &Conn{nc: nc, raw: raw}
	c.readFn = func(fd uintptr) bool {
		c.n, c.err = syscall.Read(int(fd), c.rbuf)
		return true // one attempt: never let the runtime park us
	}
	c.wrFn = func(fd uintptr) bool {
		var n int
		n, c.err = unix.Writev(int(fd), c.wbufs)
		c.n = n
		return true
	}
	return c, nil
}

// Read reads what the socket holds, up to len(p) bytes, without waiting.
// It returns (0, nil) when there is nothing to read, io.EOF once the peer
// closed its side and everything before was read, and any other error as
// the connection's end. Owner goroutine only.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rbuf, c.n, c.err = p, 0, nil
	if err := c.raw.Read(c.readFn); err != nil {
		c.rbuf = nil
		return 0, fmt.Errorf("nbsock: read: %w", err)
	}
	c.rbuf = nil
	n, err := c.n, c.err
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("nbsock: read: %w", err)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes as much of p as the socket takes without waiting and
// returns how much that was; (0, nil) when the send buffer is full. The
// caller keeps the rest and tries again later. Owner goroutine only.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.iov == nil {
		c.iov = make([][]byte, 1)
	}
	c.iov[0] = p
	n, err := c.Writev(c.iov)
	c.iov[0] = nil
	return n, err
}

// Writev is Write for several buffers in order, one system call. Empty
// buffers are allowed. Owner goroutine only.
func (c *Conn) Writev(bufs [][]byte) (int, error) {
	c.wbufs, c.n, c.err = bufs, 0, nil
	if err := c.raw.Write(c.wrFn); err != nil {
		c.wbufs = nil
		return 0, fmt.Errorf("nbsock: write: %w", err)
	}
	c.wbufs = nil
	n, err := c.n, c.err
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("nbsock: write: %w", err)
	}
	return n, nil
}

// Close closes the connection. Any goroutine.
func (c *Conn) Close() error { return c.nc.Close() }

// IsClosed reports whether err says the connection was closed under the
// caller (by Close, or the peer).
func IsClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
