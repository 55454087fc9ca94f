package target

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// TestVMNamespaceChangeReachesKernelInitiator: the target exports QEMU's
// controller (an NVM subsystem whose namespace 2 starts detached) to the
// guest kernel's initiator; attaching namespace 2 on the backing (the
// Namespace Attachment command) becomes an AEN the initiator acts on: a
// block device for NSID 2 appears and takes I/O; detaching it makes the
// block device go.
func TestVMNamespaceChangeReachesKernelInitiator(t *testing.T) {
	env := vmtest.Require(t, "ns-mgmt+nvmf")
	env.LoadFabrics(t)
	addr := env.BindVFIO(t, env.Controllers()[0])
	var live atomic.Pointer[Target]
	c, err := pcie.Open(addr, &nvme.Options{IOQueues: 2, OnEvent: func(ev nvme.AsyncEvent) {
		if tg := live.Load(); tg != nil {
			tg.OnEvent(ev)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Errorf("close controller: %v", err)
		}
	}()
	if got := c.Namespaces(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("backing namespaces %v, want [1] (namespace 2 detached)", got)
	}
	b, err := DeviceBacking(c)
	if err != nil {
		t.Fatal(err)
	}
	const nqn = "nqn.2024-01.io.gonvme:aen-test"
	l, err := net.Listen("tcp", "127.0.0.1:4420")
	if err != nil {
		t.Fatal(err)
	}
	tg, err := New(Config{Advertise: []Address{{"127.0.0.1", "4420"}}, Logf: t.Logf}, Subsystem{NQN: nqn, Backings: []Backing{b}})
	if err != nil {
		t.Fatal(err)
	}
	live.Store(tg)
	served := make(chan error, 1)
	go func() { served <- tg.Serve(l) }()
	defer func() {
		live.Store(nil)
		if err := tg.Close(); err != nil {
			t.Errorf("close target: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrClosed) {
			t.Errorf("serve: %v", err)
		}
	}()

	env.Tool(t, "nvme", "connect", "-t", "tcp", "-a", "127.0.0.1", "-s", "4420", "-n", nqn)
	defer func() {
		env.Tool(t, "nvme", "disconnect", "-n", nqn)
		env.FabricsGone(t, nqn, time.Minute)
	}()
	_, blk1 := env.FabricsDevice(t, nqn, 1, time.Minute)
	t.Logf("namespace 1: %s", blk1)

	list := make([]byte, 4096)
	binary.LittleEndian.PutUint16(list, 1)
	binary.LittleEndian.PutUint16(list[2:], c.Identify().CNTLID)
	attach := func(sel uint32) {
		t.Helper()
		cmd := spec.Command{Opcode: uint8(spec.AdminNamespaceAttachment), NSID: 2, CDW10: sel}
		if _, err := c.AdminPassthru(cmd, list, true, "Namespace Attachment"); err != nil {
			t.Fatalf("namespace attachment (sel %d): %v", sel, err)
		}
	}
	attach(0)
	_, blk2 := env.FabricsDevice(t, nqn, 2, time.Minute)
	t.Logf("namespace 2 after the AEN: %s", blk2)
	f, err := os.OpenFile(blk2, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("gonvme-aen"), 4096/10+1)[:4096]
	if _, err := f.WriteAt(want, 8192); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Read it back on the backing, under the target.
	ns, err := c.Namespace(2)
	if err != nil {
		t.Fatal(err)
	}
	qp, err := c.NewQueuePair(4)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := c.Memory().Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.ReadAt(qp, buf.Bytes, uint64(8192/ns.BlockSize())); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes, want) {
		t.Error("the backing's namespace 2 does not hold what the initiator wrote")
	}
	_ = c.Memory().Free(buf)
	if err := qp.Close(); err != nil {
		t.Error(err)
	}

	attach(1)
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(blk2); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still there a minute after namespace 2 was detached", blk2)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
