// Package testrig opens the driver on an in-process controller for host
// tests: an nvmetest.Controller, a dma.Allocator over its SoftMapper, and
// an nvme.Controller on both, closed at the end of the test with a check
// that no DMA memory leaked.
//
// It is for tests only (it imports testing). Imports: dma, nvme,
// nvme/nvmetest and the standard library. Package nvme's own internal
// tests cannot use it (testrig imports nvme); its external tests can.
package testrig

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

// Rig is a driver on a fake controller.
type Rig struct {
	Fake *nvmetest.Controller
	Mem  *dma.Allocator
	Ctrl *nvme.Controller
}

// Open starts a fake controller configured by cfg and brings the driver
// up on it with opts (nil for the defaults). Cleanup closes the driver,
// the fake and the allocator, and fails the test if DMA memory leaked.
// Register cleanups that must run first (queue pairs, pollers, buffers)
// after Open: cleanups run last-in first-out.
func Open(t testing.TB, cfg nvmetest.Config, opts *nvme.Options) *Rig {
	t.Helper()
	fake, err := nvmetest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := dma.NewAllocator(fake.Mapper())
	if err != nil {
		fake.Close()
		t.Fatal(err)
	}
	ctrl, err := nvme.Open(fake, mem, opts)
	if err != nil {
		fake.Close()
		mem.Close()
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := ctrl.Close(); err != nil {
			t.Errorf("close controller: %v", err)
		}
		CheckHost(t, fake)
		fake.Close()
		if err := mem.Close(); err != nil {
			t.Errorf("dma memory leaked: %v", err)
		}
	})
	return &Rig{Fake: fake, Mem: mem, Ctrl: ctrl}
}

// CheckHost fails the test if the fake caught a host error (a doorbell
// for a queue that does not exist, a tail past the head, CID 0xFFFF,
// queue memory freed while the controller could reach it, ...: see
// nvmetest.Controller.HostErrors). Every test that runs the driver on a
// fake calls it, at the end; Open's cleanup does.
func CheckHost(t testing.TB, fake *nvmetest.Controller) {
	t.Helper()
	for _, e := range fake.HostErrors() {
		t.Errorf("host error caught by the fake controller: %v", e)
	}
}

// Buf allocates n bytes of DMA memory, freed at cleanup.
func (r *Rig) Buf(t testing.TB, n int) []byte {
	t.Helper()
	b, err := r.Mem.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Mem.Free(b) })
	return b.Bytes
}

// QueuePair creates a queue pair of depth entries, closed at cleanup
// (before the controller).
func (r *Rig) QueuePair(t testing.TB, depth int) *nvme.QueuePair {
	t.Helper()
	q, err := r.Ctrl.NewQueuePair(depth)
	if err != nil {
		t.Fatalf("new queue pair: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// Log collects the driver's log lines (nvme.Options.Logf = log.Logf) so
// a test can look for the one a fault should produce. Safe for concurrent
// use: the driver logs from its watcher goroutine.
type Log struct {
	mu    sync.Mutex
	lines []string
}

// Logf records one line; it has the signature of nvme.Options.Logf.
func (l *Log) Logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

// Find returns the first line containing s, or "".
func (l *Log) Find(s string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

// Contains reports whether a line contains s.
func (l *Log) Contains(s string) bool { return l.Find(s) != "" }

// Lines returns a copy of the lines so far.
func (l *Log) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}
