package guest

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestWaitOpen: an open that fails with ENXIO is retried until it works.
// A FIFO opened for writing without blocking fails with ENXIO until a
// reader has it open, as a disk's node does until the kernel finished
// adding the disk.
func TestWaitOpen(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	flag := os.O_WRONLY | syscall.O_NONBLOCK
	if err := WaitOpen(fifo, flag, 0); err == nil {
		t.Fatal("opened a FIFO for writing with no reader")
	}
	reader := make(chan *os.File, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		f, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Error(err)
		}
		reader <- f
	}()
	if err := WaitOpen(fifo, flag, 5*time.Second); err != nil {
		t.Fatalf("with a reader coming: %v", err)
	}
	if f := <-reader; f != nil {
		f.Close()
	}
	if err := WaitOpen(filepath.Join(t.TempDir(), "dir"), os.O_RDONLY, 0); err == nil {
		t.Error("a path that never appears opened")
	}
	// Any other error is returned at once, not retried for a minute.
	if err := WaitOpen(t.TempDir(), os.O_WRONLY, time.Minute); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("a directory opened for writing: %v, want EISDIR at once", err)
	}
}
