package nvme_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

func TestIOCommands(t *testing.T) {
	r := newRig(t, nvmetest.Config{VWC: true, Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}}, nil)
	q, ns := r.qp(32), r.ns(1)
	b := r.buf(3 * 4096)
	data, got := b[:4096], b[4096:8192]
	exec := func(build func(*nvme.Request) error) error {
		t.Helper()
		req := &nvme.Request{}
		if err := build(req); err != nil {
			t.Fatalf("build: %v", err)
		}
		return ns.Exec(q, req)
	}
	read := func(lba uint64) []byte {
		t.Helper()
		clear(got)
		if err := ns.ReadAt(q, got, lba); err != nil {
			t.Fatalf("read %d: %v", lba, err)
		}
		return got
	}
	zeros := make([]byte, 4096)

	pat(data, 1)
	if err := ns.WriteAt(q, data, 100); err != nil {
		t.Fatal(err)
	}
	checkData(t, "write/read", read(100), data)

	// FUA passes to the device on reads and writes.
	fua := r.fake.Stats().FUA
	if err := exec(func(req *nvme.Request) error { return ns.Write(req, 200, data, nvme.FUA) }); err != nil {
		t.Fatal(err)
	}
	if err := exec(func(req *nvme.Request) error { return ns.Read(req, 200, got, nvme.FUA) }); err != nil {
		t.Fatal(err)
	}
	checkData(t, "fua read", got, data)
	if n := r.fake.Stats().FUA - fua; n != 2 {
		t.Errorf("device saw %d FUA commands, want 2", n)
	}

	// Compare: match, then mismatch is a media error.
	if err := exec(func(req *nvme.Request) error { return ns.Compare(req, 100, data, 0) }); err != nil {
		t.Errorf("compare of equal data: %v", err)
	}
	data[77] ^= 1
	err := exec(func(req *nvme.Request) error { return ns.Compare(req, 100, data, 0) })
	var se *nvme.StatusError
	if !errors.Is(err, nvme.ErrMedia) || !errors.As(err, &se) || se.SC != spec.SCCompareFailure {
		t.Errorf("compare of different data: %v, want Compare Failure", err)
	}
	data[77] ^= 1

	// Write Zeroes and Deallocate read back zeros.
	if err := exec(func(req *nvme.Request) error { return ns.WriteZeroes(req, 100, 8, 0) }); err != nil {
		t.Fatal(err)
	}
	checkData(t, "after write zeroes", read(100), zeros)
	if err := exec(func(req *nvme.Request) error { return ns.Deallocate(req, 200, 8) }); err != nil {
		t.Fatal(err)
	}
	checkData(t, "after deallocate", read(200), zeros)

	// Write Uncorrectable: reads and verifies fail until rewritten.
	if err := ns.WriteAt(q, data, 300); err != nil {
		t.Fatal(err)
	}
	if err := exec(func(req *nvme.Request) error { return ns.WriteUncorrectable(req, 302, 1) }); err != nil {
		t.Fatal(err)
	}
	if err := ns.ReadAt(q, got, 300); !errors.Is(err, nvme.ErrMedia) || !errors.As(err, &se) || se.SC != spec.SCUnrecoveredReadError {
		t.Errorf("read of uncorrectable block: %v, want Unrecovered Read Error", err)
	}
	if err := exec(func(req *nvme.Request) error { return ns.Verify(req, 300, 8, 0) }); !errors.Is(err, nvme.ErrMedia) {
		t.Errorf("verify of uncorrectable block: %v, want a media error", err)
	}
	if err := exec(func(req *nvme.Request) error { return ns.Verify(req, 308, 8, 0) }); err != nil {
		t.Errorf("verify of good blocks: %v", err)
	}
	if err := ns.WriteAt(q, data, 300); err != nil {
		t.Fatal(err)
	}
	checkData(t, "rewritten uncorrectable block", read(300), data)

	// Flush.
	flushes := r.fake.Stats().Commands(spec.IOFlush)
	if err := ns.Sync(q); err != nil {
		t.Fatal(err)
	}
	if r.fake.Stats().Commands(spec.IOFlush) != flushes+1 {
		t.Error("flush did not reach the device")
	}
	if s := q.Stats(); s.Submitted != s.Completed || s.Errors != 3 || q.InFlight() != 0 {
		t.Errorf("queue stats %+v", s)
	}
}

// TestUnsupportedCommands: commands the controller does not report in
// ONCS are refused by the builders.
func TestUnsupportedCommands(t *testing.T) {
	r := newRig(t, nvmetest.Config{ONCSOff: spec.ONCSCompare | spec.ONCSWriteZeroes | spec.ONCSDatasetManagement | spec.ONCSVerify | spec.ONCSWriteUncorrectable}, nil)
	ns := r.ns(1)
	b := r.buf(512)
	req := &nvme.Request{}
	for name, err := range map[string]error{
		"compare":             ns.Compare(req, 0, b, 0),
		"write zeroes":        ns.WriteZeroes(req, 0, 1, 0),
		"deallocate":          ns.Deallocate(req, 0, 1),
		"verify":              ns.Verify(req, 0, 1, 0),
		"write uncorrectable": ns.WriteUncorrectable(req, 0, 1),
	} {
		if !errors.Is(err, nvme.ErrInvalid) || !strings.Contains(err.Error(), "not support") {
			t.Errorf("%s: %v, want ErrInvalid naming the missing support", name, err)
		}
	}
}

// hostXferSizes are the sizes the PRP tests step through: one block,
// one, two, three pages and around the point where one PRP list page
// (512 entries) must chain to a second, up to 4 MiB.
var hostXferSizes = []int{
	512, 1024, 4096 - 512, 4096, 4096 + 512, 8192, 8192 + 512, 12288, 16384, 64 << 10,
	511 * 4096, 512 * 4096, 512*4096 + 512, 513 * 4096, 514 * 4096, 1023 * 4096, 4<<20 - 512, 4 << 20,
}

func TestTransferSizesPRP(t *testing.T) { hostXferTest(t, false) }
func TestTransferSizesSGL(t *testing.T) { hostXferTest(t, true) }

func hostXferTest(t *testing.T, sgl bool) {
	const maxXfer = 4 << 20
	r := newRig(t, nvmetest.Config{MDTS: 10, SGL: sgl, Namespaces: []nvmetest.NSConfig{{Blocks: 3 * maxXfer / 512}}},
		&nvme.Options{MaxTransfer: maxXfer, SGL: sgl, IOQueueDepth: 8})
	if r.ctrl.MaxTransfer() != maxXfer {
		t.Fatalf("max transfer %d, want %d", r.ctrl.MaxTransfer(), maxXfer)
	}
	q, ns := r.qp(0), r.ns(1)
	src := r.buf(maxXfer + 4096)
	dst := r.buf(maxXfer + 4096)
	pattern := make([]byte, maxXfer+8192)
	pat(pattern, 9)
	sizes := hostXferSizes
	if sgl {
		sizes = []int{512, 4096 + 512, 12288, 513 * 4096, maxXfer}
	}
	sglBefore := r.fake.Stats().SGL
	n := 0
	for _, off := range []int{0, 4, 512, 4092} {
		for i, size := range sizes {
			if off+size > len(src) {
				continue
			}
			lba := uint64(i%3) * maxXfer / 512
			w := src[off : off+size]
			copy(w, pattern[(i*52+off)%8192:]) // a different pattern for every transfer
			w[0], w[size-1] = byte(i), byte(off)
			if err := ns.WriteAt(q, w, lba); err != nil {
				t.Fatalf("write %d bytes at buffer offset %d: %v", size, off, err)
			}
			rd := dst[4096-off : 4096-off+size]
			clear(rd)
			if err := ns.ReadAt(q, rd, lba); err != nil {
				t.Fatalf("read %d bytes at buffer offset %d: %v", size, 4096-off, err)
			}
			checkData(t, fmt.Sprintf("%d bytes at offsets %d/%d", size, off, 4096-off), rd, w)
			n += 2
		}
	}
	if got := r.fake.Stats().SGL - sglBefore; sgl && got != uint64(n) || !sgl && got != 0 {
		t.Errorf("device saw %d SGL commands of %d (SGL %t)", got, n, sgl)
	}
	if r.fake.Stats().DMAFaults != 0 {
		t.Errorf("%d DMA faults", r.fake.Stats().DMAFaults)
	}
}

// TestFullQueue: a depth-4 queue pair (3 commands in flight) takes 100
// requests; the rest wait and nothing is lost.
func TestFullQueue(t *testing.T) {
	r := newRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1024}}}, nil)
	q, ns := r.qp(4), r.ns(1)
	const n = 100
	b := r.buf(n * 512)
	reqs := make([]nvme.Request, n)
	done := make([]int, n)
	for i := range reqs {
		pat(b[i*512:(i+1)*512], i+100)
		reqs[i].Private = i
		reqs[i].Done = func(req *nvme.Request) { done[req.Private.(int)]++ }
		if err := ns.Write(&reqs[i], uint64(i), b[i*512:(i+1)*512], 0); err != nil {
			t.Fatal(err)
		}
		if err := q.Submit(&reqs[i]); err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	if q.InFlight() != 3 || q.Waiting() != n-3 {
		t.Errorf("in flight %d, waiting %d; want 3, %d", q.InFlight(), q.Waiting(), n-3)
	}
	total := func() int {
		s := 0
		for _, d := range done {
			s += d
		}
		return s
	}
	pollUntil(t, q, 5e9, func() bool { return total() == n })
	for i, d := range done {
		if d != 1 || reqs[i].Err != nil {
			t.Fatalf("request %d: done %d times, err %v", i, d, reqs[i].Err)
		}
	}
	if s := q.Stats(); s.Waits == 0 || s.Completed != n {
		t.Errorf("stats %+v: want waits > 0 and %d completed", s, n)
	}
	got := r.buf(n * 512)
	if err := ns.ReadAt(q, got[:n*512], 0); err != nil {
		t.Fatal(err)
	}
	checkData(t, "100 writes through a depth-4 queue", got, b)
}
