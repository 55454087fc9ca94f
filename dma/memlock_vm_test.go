package dma_test

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// vmLocked returns VmLck from /proc/self/status in bytes.
func vmLocked(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmLck:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmLck in /proc/self/status")
	return 0
}

// TestVMMemlockAccounting allocates through a VFIO container under a
// finite RLIMIT_MEMLOCK without CAP_IPC_LOCK: a 3 MiB buffer must fit in a
// 4 MiB limit (VFIO's pin counts it once; mlock on top would count it
// twice, 6 MiB), and the allocation past the limit must say how the pages
// are counted.
func TestVMMemlockAccounting(t *testing.T) {
	env := vmtest.Require(t, "default")
	addr := env.BindVFIO(t, env.Controllers()[0])
	d, err := vfio.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, err := dma.NewAllocator(dma.NewVFIOMapper(d.Container()), dma.WithHugePages(false))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &old); err != nil {
		t.Fatal(err)
	}
	base := vmLocked(t)
	limit := base + 4<<20
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: limit, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &old); err != nil {
			t.Errorf("restore RLIMIT_MEMLOCK: %v", err)
		}
	}()
	restore := dropIPCLock(t)
	b, err := a.Alloc(3 << 20)
	locked := vmLocked(t)
	var err2 error
	var b2 *dma.Buffer
	if err == nil {
		b2, err2 = a.Alloc(2 << 20)
	}
	restore()

	if err != nil {
		t.Fatalf("alloc of 3 MiB under a limit of %d bytes (%d locked before): %v", limit, base, err)
	}
	defer a.Free(b)
	if got := locked - base; got != 3<<20 {
		t.Errorf("VmLck grew by %d bytes for a 3 MiB buffer, want 3 MiB: counted once, by VFIO's pin", got)
	}
	if err2 == nil {
		a.Free(b2)
		t.Fatal("alloc of 2 more MiB past the limit succeeded")
	}
	if !errors.Is(err2, dma.ErrMemlock) || !errors.Is(err2, vfio.ErrMemlock) {
		t.Fatalf("alloc past the limit: %v, want ErrMemlock", err2)
	}
	t.Logf("past the limit: %v", err2)
	for _, s := range []string{fmt.Sprint(limit), fmt.Sprint(locked), "VFIO counts every page it pins", "ulimit -l"} {
		if !strings.Contains(err2.Error(), s) {
			t.Errorf("message %q lacks %q", err2, s)
		}
	}
}

// dropIPCLock clears CAP_IPC_LOCK from this thread's effective set (root
// bypasses RLIMIT_MEMLOCK with it) and returns a function restoring it.
// The caller must hold runtime.LockOSThread.
func dropIPCLock(t *testing.T) func() {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	saved := data
	data[0].Effective &^= 1 << unix.CAP_IPC_LOCK
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := unix.Capset(&hdr, &saved[0]); err != nil {
			t.Errorf("restore capabilities: %v", err)
		}
	}
}
