package pcie_test

import (
	"bytes"
	"testing"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
)

// TestVMReopenInSystem opens a controller in a System, writes from a DMA
// buffer, closes the controller, allocates a second buffer while no
// controller is open, opens the controller again in the same System and
// does I/O with both buffers. Closing the controller closed its group;
// were the container's IOMMU gone with it, the first buffer would be
// unmapped in the kernel (the reads into it would fault), the second
// could not be mapped, and the reopen would fail to set the IOMMU up.
func TestVMReopenInSystem(t *testing.T) {
	env := vmtest.Require(t, "default")
	addr := env.BindVFIO(t, env.Controllers()[0])
	sys, err := pcie.NewSystem(dma.WithHugePages(false))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sys.Close(); err != nil {
			t.Errorf("close system: %v", err)
		}
	}()
	open := func() (*nvme.Controller, *nvme.Namespace, *nvme.QueuePair) {
		t.Helper()
		ctrl, err := sys.Open(addr, nil)
		if err != nil {
			t.Fatalf("open %s: %v", addr, err)
		}
		ns, err := ctrl.Namespace(1)
		if err != nil {
			t.Fatal(err)
		}
		qp, err := ctrl.NewQueuePair(0)
		if err != nil {
			t.Fatal(err)
		}
		return ctrl, ns, qp
	}
	pattern := func(b []byte, seed byte) {
		for i := range b {
			b[i] = seed + byte(i*31)
		}
	}
	const size = 8192
	wantA, wantB := make([]byte, size), make([]byte, size)
	pattern(wantA, 0x11)
	pattern(wantB, 0x77)

	ctrl, ns, qp := open()
	mem := sys.Memory()
	first, err := mem.Alloc(size)
	if err != nil {
		t.Fatal(err)
	}
	copy(first.Bytes, wantA)
	lbaA, lbaB := uint64(0), uint64(4*size/ns.BlockSize())
	if err := ns.WriteAt(qp, first.Bytes, lbaA); err != nil {
		t.Fatalf("write from the first buffer: %v", err)
	}
	must(t, qp.Close())
	must(t, ctrl.Close())

	// No controller is open: the buffer stays mapped, and a new one maps.
	second, err := mem.Alloc(size)
	if err != nil {
		t.Fatalf("alloc with no controller open: %v", err)
	}
	copy(second.Bytes, wantB)

	ctrl, ns, qp = open()
	if err := ns.WriteAt(qp, second.Bytes, lbaB); err != nil {
		t.Fatalf("write from the second buffer after reopen: %v", err)
	}
	clear(first.Bytes)
	clear(second.Bytes)
	if err := ns.ReadAt(qp, first.Bytes, lbaB); err != nil {
		t.Fatalf("read into the first buffer after reopen: %v", err)
	}
	if err := ns.ReadAt(qp, second.Bytes, lbaA); err != nil {
		t.Fatalf("read into the second buffer after reopen: %v", err)
	}
	if !bytes.Equal(first.Bytes, wantB) {
		t.Error("the first buffer did not receive what the second wrote")
	}
	if !bytes.Equal(second.Bytes, wantA) {
		t.Error("the second buffer did not receive what the first wrote before the reopen")
	}
	must(t, qp.Close())
	must(t, mem.Free(first))
	must(t, mem.Free(second))
	must(t, ctrl.Close())

	// Free buffers, no controller: a third open still works.
	ctrl, _, qp = open()
	must(t, qp.Close())
	must(t, ctrl.Close())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
