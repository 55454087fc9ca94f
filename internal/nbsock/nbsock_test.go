package nbsock_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/internal/nbsock"
)

// pair returns both ends of a loopback TCP connection; a is wrapped.
func pair(t *testing.T) (*nbsock.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(acc)
			return
		}
		acc <- c
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, ok := <-acc
	if !ok {
		t.Fatal("accept failed")
	}
	c, err := nbsock.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c, peer
}

func TestReadNothingDoesNotBlock(t *testing.T) {
	c, _ := pair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 16)
		for i := 0; i < 1000; i++ {
			n, err := c.Read(buf)
			if n != 0 || err != nil {
				t.Errorf("read on an idle socket: %d, %v; want 0, nil", n, err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Read blocked on an idle socket")
	}
}

func TestReadWriteEOF(t *testing.T) {
	c, peer := pair(t)
	msg := []byte("capsule")
	if _, err := peer.Write(msg); err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 4)
	for deadline := time.Now().Add(5 * time.Second); len(got) < len(msg) && time.Now().Before(deadline); {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("read %q, want %q", got, msg)
	}
	// Writev of several buffers, an empty one among them, in one call
	// (five bytes to an empty send buffer).
	if n, err := c.Writev([][]byte{[]byte("ab"), nil, []byte("cde")}); n != 5 || err != nil {
		t.Fatalf("Writev: %d, %v; want 5, nil", n, err)
	}
	back := make([]byte, 5)
	if _, err := io.ReadFull(peer, back); err != nil || string(back) != "abcde" {
		t.Fatalf("peer read %q, %v", back, err)
	}
	peer.Close()
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, err := c.Read(buf)
		if errors.Is(err, io.EOF) {
			if !nbsock.IsClosed(err) {
				t.Fatal("IsClosed(EOF) = false")
			}
			break
		}
		if err != nil {
			t.Fatalf("read after peer close: %v, want EOF", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("no EOF after the peer closed")
		}
	}
}

func TestWriteFullSendBuffer(t *testing.T) {
	c, _ := pair(t) // the peer never reads
	chunk := make([]byte, 1<<20)
	total := 0
	for i := 0; ; i++ {
		n, err := c.Write(chunk)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break // full: reported, not waited for
		}
		total += n
		if i > 1000 {
			t.Fatalf("wrote %d bytes to a peer that never reads without filling up", total)
		}
	}
	if total == 0 {
		t.Fatal("nothing written")
	}
}

func TestNoAllocs(t *testing.T) {
	c, peer := pair(t)
	buf := make([]byte, 64)
	x := []byte("x")
	out := make([][]byte, 1)
	allocs := testing.AllocsPerRun(200, func() {
		c.Read(buf)
		out[0] = x
		c.Writev(out)
		c.Write(x)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Read+Writev, want 0", allocs)
	}
	_ = peer
}
