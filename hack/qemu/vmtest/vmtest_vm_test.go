package vmtest_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// These tests check that each profile's guest has what the profile
// declares, through the kernel's own nvme driver: they prove the harness,
// not the driver.

func sysInt(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 64)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return v
}

func sysStr(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return strings.TrimSpace(string(b))
}

// checkNamespaces binds c to the kernel driver and compares every namespace
// with its declaration.
func checkNamespaces(t *testing.T, env *vmtest.Env, c vmtest.Ctrl) string {
	t.Helper()
	name := env.BindKernel(t, c)
	if got := sysStr(t, filepath.Join("/sys/class/nvme", name, "serial")); got != c.Serial {
		t.Errorf("%s serial = %q, want %q", c.ID, got, c.Serial)
	}
	for _, ns := range c.Namespaces {
		blk := fmt.Sprintf("/sys/block/%sn%d", name, ns.NSID)
		if err := waitFor(blk, 30*time.Second); err != nil {
			t.Fatalf("%s: %v", c.ID, err)
		}
		if got := sysInt(t, blk+"/queue/logical_block_size"); got != uint64(ns.BlockSize) {
			t.Errorf("%s ns %d block size = %d, want %d", c.ID, ns.NSID, got, ns.BlockSize)
		}
		if got := sysInt(t, blk+"/size") * 512; got != ns.Blocks*uint64(ns.BlockSize) {
			t.Errorf("%s ns %d size = %d bytes, want %d", c.ID, ns.NSID, got, ns.Blocks*uint64(ns.BlockSize))
		}
	}
	return name
}

func waitFor(path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func group(t *testing.T, addr string) string {
	t.Helper()
	l, err := os.Readlink(filepath.Join("/sys/bus/pci/devices", addr, "iommu_group"))
	if err != nil {
		t.Fatalf("%s has no IOMMU group: %v", addr, err)
	}
	return filepath.Base(l)
}

func TestDefaultProfile(t *testing.T) {
	env := vmtest.Require(t, "default")
	cs := env.Controllers()
	if len(cs) != 1 || cs[0].Addr != "0000:00:04.0" || cs[0].MDTS != 7 {
		t.Fatalf("controllers = %+v", cs)
	}
	env.BindVFIO(t, cs[0])
	if _, err := os.Stat("/dev/vfio/" + group(t, cs[0].Addr)); err != nil {
		t.Fatalf("vfio group node: %v", err)
	}
	checkNamespaces(t, env, cs[0]) // back from vfio-pci to nvme
}

func TestFourKSmallMDTSProfile(t *testing.T) {
	env := vmtest.Require(t, "4k+small-mdts")
	c := env.Controllers()[0]
	name := checkNamespaces(t, env, c)
	// mdts=2 at a 4 KiB minimum page: 16 KiB per command.
	if got := sysInt(t, "/sys/block/"+name+"n1/queue/max_hw_sectors_kb"); got != 16 {
		t.Errorf("max_hw_sectors_kb = %d, want 16", got)
	}
}

func TestMultiNSProfile(t *testing.T) {
	env := vmtest.Require(t, "multi-ns")
	c := env.Controllers()[0]
	if len(c.Namespaces) != 3 {
		t.Fatalf("namespaces = %+v", c.Namespaces)
	}
	checkNamespaces(t, env, c)
}

func TestTwoCtrlProfile(t *testing.T) {
	env := vmtest.Require(t, "two-ctrl")
	cs := env.Controllers()
	if len(cs) != 2 {
		t.Fatalf("controllers = %+v", cs)
	}
	if group(t, cs[0].Addr) == group(t, cs[1].Addr) {
		t.Errorf("two-ctrl controllers share an IOMMU group")
	}
	for _, c := range cs {
		checkNamespaces(t, env, c)
	}
}

func TestNullProfile(t *testing.T) {
	env := vmtest.Require(t, "null")
	c := env.Controllers()[0]
	if !c.Null {
		t.Fatal("null profile controller not marked Null")
	}
	name := checkNamespaces(t, env, c)
	f, err := os.OpenFile("/dev/"+name+"n1", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(strings.Repeat("x", 4096)), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
	g, err := os.OpenFile("/dev/"+name+"n1", os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	buf := alignedBuf(t, 4096)
	if _, err := g.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	for _, b := range buf {
		if b != 0 {
			t.Fatal("null-co device returned data it should have dropped")
		}
	}
}

// alignedBuf returns page-aligned memory for O_DIRECT reads.
func alignedBuf(t *testing.T, n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	return b
}

func TestMediaErrorsProfile(t *testing.T) {
	env := vmtest.Require(t, "media-errors")
	c := env.Controllers()[0]
	ns := c.Namespaces[0]
	if len(ns.MediaErrorLBAs) == 0 {
		t.Fatal("no media error LBAs declared")
	}
	name := checkNamespaces(t, env, c)
	f, err := os.OpenFile("/dev/"+name+"n1", os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := alignedBuf(t, ns.BlockSize)
	for _, lba := range ns.MediaErrorLBAs {
		// The kernel maps the unrecovered read error to ENODATA (BLK_STS_MEDIUM).
		if _, err := f.ReadAt(buf, int64(lba)*int64(ns.BlockSize)); !errors.Is(err, syscall.ENODATA) && !errors.Is(err, syscall.EIO) {
			t.Errorf("read LBA %d: %v, want a media error", lba, err)
		}
		if _, err := f.ReadAt(buf, int64(lba+1)*int64(ns.BlockSize)); err != nil {
			t.Errorf("read LBA %d (no error declared): %v", lba+1, err)
		}
	}
}

func TestHotplugProfile(t *testing.T) {
	env := vmtest.Require(t, "hotplug")
	c := env.Controllers()[0]
	if !c.Removable || c.Addr != "0000:01:00.0" {
		t.Fatalf("controller = %+v", c)
	}
	env.BindVFIO(t, c)
	if out := env.Monitor(t, "device_del "+c.ID); strings.TrimSpace(out) != "" {
		t.Fatalf("device_del: %q", out)
	}
	if err := waitGone("/sys/bus/pci/devices/"+c.Addr, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if out := env.Monitor(t, "info pci"); strings.Contains(out, c.ID) {
		t.Errorf("info pci still lists %s after removal", c.ID)
	}
	// Later tests in this boot need the controller: add it back (the
	// backing node is still there; drive= makes namespace 1) and wait for
	// the guest to see it.
	if out := env.Monitor(t, "device_add nvme,id="+c.ID+",serial="+c.Serial+",drive="+c.ID+"n1,bus=rp0"); strings.TrimSpace(out) != "" {
		t.Fatalf("device_add: %q", out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat("/sys/bus/pci/devices/" + c.Addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come back after device_add", c.Addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitGone(path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still present after %v", path, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestSharedGroupProfile(t *testing.T) {
	env := vmtest.Require(t, "shared-group")
	cs := env.Controllers()
	if len(cs) != 2 {
		t.Fatalf("controllers = %+v", cs)
	}
	if g0, g1 := group(t, cs[0].Addr), group(t, cs[1].Addr); g0 != g1 {
		t.Errorf("shared-group controllers in groups %s and %s, want one", g0, g1)
	}
}
