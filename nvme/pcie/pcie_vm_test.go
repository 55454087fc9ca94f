package pcie_test

import (
	"errors"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// TestVMHotRemoval removes the controller through the QEMU monitor during
// depth-32 reads. The guest kernel asks the driver for the device through
// the VFIO request interrupt; every outstanding read then fails with
// nvme.ErrRemoved, nothing panics or hangs, Close releases the device so
// the kernel can finish the removal, no goroutine is left behind, and the
// controller, added back, can be attached again.
func TestVMHotRemoval(t *testing.T) {
	env := vmtest.Require(t, "hotplug")
	c := env.Controllers()[0]
	addr := env.BindVFIO(t, c)
	goroutines := runtime.NumGoroutine()

	ctrl, err := pcie.Open(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := ctrl.Namespace(1)
	if err != nil {
		t.Fatal(err)
	}
	qp, err := ctrl.NewQueuePair(64)
	if err != nil {
		t.Fatal(err)
	}
	const depth = 32
	buf, err := ctrl.Memory().Alloc(depth * 4096)
	if err != nil {
		t.Fatal(err)
	}
	var (
		reqs      [depth]nvme.Request
		ok, gone  int
		other     []error
		active    = depth
		stopping  bool
		blocks    = ns.Blocks() - 8
		removedAt time.Time
		lastDone  time.Time
	)
	submit := func(r *nvme.Request, i int) {
		if stopping {
			active--
			return
		}
		if err := ns.Read(r, rand.Uint64N(blocks)&^7, buf.Bytes[i*4096:(i+1)*4096], 0); err != nil {
			t.Errorf("build: %v", err)
			active--
			return
		}
		if err := qp.Submit(r); err != nil {
			if !errors.Is(err, nvme.ErrRemoved) {
				other = append(other, err)
			}
			active--
		}
	}
	for i := range reqs {
		reqs[i].Done = func(r *nvme.Request) {
			lastDone = time.Now()
			switch {
			case r.Err == nil:
				ok++
			case errors.Is(r.Err, nvme.ErrRemoved):
				gone++
				stopping = true
			default:
				other = append(other, r.Err)
			}
			submit(r, i)
		}
		submit(&reqs[i], i)
	}
	// Some I/O first, then pull the device.
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
		qp.Poll()
	}
	before := ok
	delAt := time.Now()
	if out := env.Monitor(t, "device_del "+c.ID); strings.TrimSpace(out) != "" {
		t.Fatalf("device_del: %q", out)
	}
	for active > 0 {
		qp.Poll()
		if removedAt.IsZero() && ctrl.Removed() {
			removedAt = time.Now()
		}
		if time.Since(delAt) > 30*time.Second {
			t.Fatalf("30 s after device_del: %d requests still active, controller %v", active, ctrl.State())
		}
	}
	if removedAt.IsZero() {
		t.Fatal("every request ended but the controller was never marked removed")
	}
	t.Logf("device_del -> removal notice %v; notice -> last request failed %v",
		removedAt.Sub(delAt).Round(time.Millisecond), lastDone.Sub(removedAt).Round(time.Millisecond))
	t.Logf("reads: %d before device_del, %d ok in all, %d failed with ErrRemoved", before, ok, gone)
	if before == 0 || gone == 0 || len(other) > 0 {
		t.Fatalf("ok %d (before %d), removed %d, other errors %v", ok, before, gone, other)
	}
	if d := lastDone.Sub(removedAt); d > 2*time.Second {
		t.Errorf("outstanding I/O took %v to fail after the removal notice, want under 2 s", d)
	}
	if err := qp.Submit(&reqs[0]); !errors.Is(err, nvme.ErrRemoved) {
		t.Errorf("submit after removal: %v, want ErrRemoved", err)
	}
	if _, err := ctrl.IdentifyNamespace(1); !errors.Is(err, nvme.ErrRemoved) {
		t.Errorf("admin command after removal: %v, want ErrRemoved", err)
	}
	qp.Close()
	ctrl.Memory().Free(buf)
	if err := ctrl.Close(); err != nil {
		t.Logf("close after removal: %v", err)
	}
	// With the device fd closed the kernel completes the removal.
	if err := waitPath("/sys/bus/pci/devices/"+addr, false, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines left behind:\n%s", n-goroutines, buf[:runtime.Stack(buf, true)])
	}

	// QEMU drops its side of the device once the guest let go.
	for deadline := time.Now().Add(30 * time.Second); strings.Contains(env.Monitor(t, "info pci"), `"`+c.ID+`"`); {
		if time.Now().After(deadline) {
			t.Fatalf("QEMU still lists %s 30 s after the guest released it", c.ID)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Add it back: the same backing node, namespace 1 made by drive=.
	// QEMU releases the old device's hold on the node after the device
	// has left "info pci" (its finalization is deferred), so until then
	// device_add fails with a permission conflict on the node: retry that
	// one error for a while.
	for deadline := time.Now().Add(10 * time.Second); ; {
		out := strings.TrimSpace(env.Monitor(t, "device_add nvme,id="+c.ID+",serial="+c.Serial+",drive="+c.ID+"n1,bus=rp0"))
		if out == "" {
			break
		}
		if !strings.Contains(out, "Permission conflict") || time.Now().After(deadline) {
			t.Fatalf("device_add: %q", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := waitPath("/sys/bus/pci/devices/"+addr, true, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := vfio.Bind(addr); err != nil {
		t.Fatalf("bind the re-added controller: %v", err)
	}
	ctrl2, err := pcie.Open(addr, nil)
	if err != nil {
		t.Fatalf("open the re-added controller: %v", err)
	}
	defer ctrl2.Close()
	if ctrl2.Identify().SN != c.Serial {
		t.Errorf("re-added serial %q", ctrl2.Identify().SN)
	}
	ns2, err := ctrl2.Namespace(1)
	if err != nil {
		t.Fatal(err)
	}
	qp2, err := ctrl2.NewQueuePair(0)
	if err != nil {
		t.Fatal(err)
	}
	defer qp2.Close()
	b2, err := ctrl2.Memory().Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl2.Memory().Free(b2)
	if err := ns2.ReadAt(qp2, b2.Bytes, 0); err != nil {
		t.Fatalf("read from the re-added controller: %v", err)
	}
}

func waitPath(path string, present bool, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		_, err := os.Stat(path)
		if (err == nil) == present {
			return nil
		}
		if time.Now().After(deadline) {
			if present {
				return errors.New(path + " did not appear within " + d.String())
			}
			return errors.New(path + " still present after " + d.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
