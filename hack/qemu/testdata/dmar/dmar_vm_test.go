package dmar_test

import (
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
)

// unmappedIOVA is far above anything the guest's DMA allocator hands out
// (the guest has 1 GiB of memory) and inside the emulated VT-d's 39-bit
// address width: nothing is mapped there.
const unmappedIOVA = 1 << 36

// TestDMARFault makes the controller write a read's data to an IOVA that
// is not mapped. QEMU's emulated VT-d refuses the DMA and reports the
// fault; the guest kernel logs it ("DMAR: [DMA Write ...] ... fault"). This
// is exactly what a userspace DMA driver must never cause: the harness must
// fail the boot and name the fault.
func TestDMARFault(t *testing.T) {
	env := vmtest.Require(t, "default")
	addr := env.BindVFIO(t, env.Controllers()[0])
	c, err := pcie.Open(addr, nil)
	if err != nil {
		t.Fatalf("open %s: %v", addr, err)
	}
	defer c.Close()
	qp, err := c.NewQueuePair(2)
	if err != nil {
		t.Fatalf("queue pair: %v", err)
	}
	defer qp.Close()
	var r nvme.Request
	r.Cmd.Opcode = 0x02 // Read
	r.Cmd.NSID = 1
	r.Cmd.CDW12 = 7 // 8 blocks of 512 B: one 4 KiB page
	r.Cmd.PRP1 = unmappedIOVA
	done := false
	r.Done = func(*nvme.Request) { done = true }
	if err := qp.Submit(&r); err != nil {
		t.Fatalf("submit: %v", err)
	}
	qp.Ring()
	for deadline := time.Now().Add(10 * time.Second); !done && time.Now().Before(deadline); {
		qp.Poll()
	}
	t.Logf("read into unmapped IOVA %#x: done=%v err=%v", uint64(unmappedIOVA), done, r.Err)
}
