package target

import (
	"bytes"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp"
)

// gonvme's host (package nvme/tcp) against gonvme's target with nvmetest
// behind it, on loopback, with and without digests, while another host
// (the test host) has an association of its own: in-capsule and R2T
// writes, reads, and each host reads what the other wrote.
func TestGonvmeHost(t *testing.T) {
	r := newRig(t, Config{}, nvmetest.Config{})
	h, p, _ := net.SplitHostPort(r.addr)
	port, _ := strconv.Atoi(p)
	_, cntlid := r.bringUp(t, false, false)
	other := r.ioQueue(t, cntlid, 1, false, false, 0)
	for _, dg := range []bool{false, true} {
		c, err := tcp.Connect(tcp.Address{Host: h, Port: port, NQN: testNQN},
			&tcp.Options{NrIOQueues: 1, KeepAliveTimeout: 5 * time.Second, HeaderDigest: dg, DataDigest: dg})
		if err != nil {
			t.Fatal(err)
		}
		if n := r.tgt.Controllers(); n != 2 {
			t.Errorf("digests %t: %d controllers, want 2 (both hosts)", dg, n)
		}
		ns, err := c.Namespace(1)
		if err != nil {
			t.Fatal(err)
		}
		qp, err := c.NewQueuePair(32)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range []int{512, 4096, 96 << 10} {
			lba := uint64(1000 + i*256)
			buf, err := c.Memory().Alloc(n)
			if err != nil {
				t.Fatal(err)
			}
			copy(buf.Bytes, pattern(n, byte(n)))
			if err := ns.WriteAt(qp, buf.Bytes, lba); err != nil {
				t.Fatalf("digests %t: write %d bytes: %v", dg, n, err)
			}
			// The other host reads it back, then overwrites it.
			got := make([]byte, n)
			other.ok(rw(spec.IORead, lba, n/512), nil, got)
			if !bytes.Equal(got, buf.Bytes) {
				t.Errorf("digests %t, %d bytes: the other host reads other data", dg, n)
			}
			want := pattern(n, byte(n+1))
			other.ok(rw(spec.IOWrite, lba, n/512), want, nil)
			if err := ns.ReadAt(qp, buf.Bytes, lba); err != nil {
				t.Fatalf("digests %t: read %d bytes: %v", dg, n, err)
			}
			if !bytes.Equal(buf.Bytes, want) {
				t.Errorf("digests %t, %d bytes: gonvme's host reads other data than the other host wrote", dg, n)
			}
			_ = c.Memory().Free(buf)
		}
		if err := qp.Close(); err != nil {
			t.Error(err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		// The target lets the association go when its connections end,
		// on their goroutines: wait for it (the next round counted 3
		// controllers under load without this wait).
		for deadline := time.Now().Add(5 * time.Second); r.tgt.Controllers() != 1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("digests %t: %d controllers 5 s after gonvme's host closed, want 1 (the other host's)", dg, r.tgt.Controllers())
			}
		}
	}
}
