package vfio_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/internal/dmamem"
	"github.com/seedb8fa28ef/gonvme/internal/mmio"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// openFirst binds the profile's first controller to vfio-pci and opens it.
func openFirst(t *testing.T, env *vmtest.Env) (*vfio.Device, vmtest.Ctrl) {
	t.Helper()
	c := env.Controllers()[0]
	addr := env.BindVFIO(t, c)
	d, err := vfio.Open(addr)
	if err != nil {
		t.Fatalf("open %s: %v", addr, err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return d, c
}

func sysfsConfig(t *testing.T, addr string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/bus/pci/devices", addr, "config"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 64 {
		t.Fatalf("sysfs config of %s: %d bytes", addr, len(b))
	}
	return b
}

func TestVMRegistersThroughBAR(t *testing.T) {
	env := vmtest.Require(t, "default")
	d, _ := openFirst(t, env)

	bar, err := d.MapBAR(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(bar) < 0x1000 {
		t.Fatalf("bar0 is %#x bytes, want at least the 4 KiB register page", len(bar))
	}
	again, err := d.MapBAR(0)
	if err != nil || &again[0] != &bar[0] {
		t.Errorf("second MapBAR(0) = %p, %v; want the same mapping %p", again, err, bar)
	}
	r := mmio.New(bar)
	capReg := r.Read64(0x00)
	if mqes := capReg & 0xffff; mqes != 2047 {
		t.Errorf("CAP.MQES = %d, want 2047 (CAP %#x)", mqes, capReg)
	}
	if vs := r.Read32(0x08); vs != 0x00010400 {
		t.Errorf("VS = %#x, want 0x10400 (NVMe 1.4)", vs)
	}
	if _, err := d.MapBAR(6); err == nil {
		t.Error("MapBAR(6) accepted")
	}
}

func TestVMConfigSpace(t *testing.T) {
	env := vmtest.Require(t, "default")
	c := env.Controllers()[0]
	before := sysfsConfig(t, c.Addr) // before binding: the kernel's view
	d, _ := openFirst(t, env)

	got := make([]byte, 64)
	if err := d.ConfigRead(0, got); err != nil {
		t.Fatal(err)
	}
	if v, dev := binary.LittleEndian.Uint16(got[0:]), binary.LittleEndian.Uint16(got[2:]); v != 0x1b36 || dev != 0x0010 {
		t.Fatalf("vendor:device = %04x:%04x, want 1b36:0010", v, dev)
	}
	v32, err := d.ConfigRead32(0)
	if err != nil || v32 != 0x00101b36 {
		t.Errorf("ConfigRead32(0) = %#x, %v", v32, err)
	}
	// Identity, class, header and subsystem bytes are not virtualised and
	// must match what sysfs read before vfio-pci took the device.
	for _, span := range [][2]int{{0x00, 0x04}, {0x08, 0x10}, {0x2c, 0x30}} {
		for i := span[0]; i < span[1]; i++ {
			if got[i] != before[i] {
				t.Errorf("config byte %#x = %#x through vfio, %#x in sysfs", i, got[i], before[i])
			}
		}
	}
	if class := uint32(got[0x0b])<<16 | uint32(got[0x0a])<<8 | uint32(got[0x09]); class != vfio.ClassNVMe {
		t.Errorf("class = %#06x, want %#06x", class, vfio.ClassNVMe)
	}
	if err := d.ConfigRead(4090, make([]byte, 8)); err == nil {
		t.Error("config read past the end accepted")
	}
}

func TestVMBusMaster(t *testing.T) {
	env := vmtest.Require(t, "default")
	d, c := openFirst(t, env)
	for _, on := range []bool{true, false, true, false} {
		if err := d.SetBusMaster(on); err != nil {
			t.Fatal(err)
		}
		cmd, err := d.ConfigRead16(vfio.PCICommand)
		if err != nil {
			t.Fatal(err)
		}
		if got := cmd&vfio.PCICommandMaster != 0; got != on {
			t.Errorf("after SetBusMaster(%v): PCI_COMMAND %#x", on, cmd)
		}
		// The hardware register, as the kernel reads it, agrees.
		hw := binary.LittleEndian.Uint16(sysfsConfig(t, c.Addr)[vfio.PCICommand:])
		if got := hw&vfio.PCICommandMaster != 0; got != on {
			t.Errorf("after SetBusMaster(%v): sysfs PCI_COMMAND %#x", on, hw)
		}
	}
}

// anonBuffer maps n bytes of DMA memory outside the Go heap, as package
// dma does (not locked: VFIO pins it).
func anonBuffer(t *testing.T, n int) *dmamem.Memory {
	t.Helper()
	m, err := dmamem.Map(n, 0, false, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Unmap() })
	return m
}

func TestVMDMAMap(t *testing.T) {
	env := vmtest.Require(t, "default")
	d, _ := openFirst(t, env)
	cont := d.Container()

	ranges := cont.IOVARanges()
	if len(ranges) == 0 {
		t.Fatal("the kernel reported no IOVA ranges")
	}
	if pg := cont.PageSize(); pg != 4096 {
		t.Errorf("iommu page size = %d, want 4096", pg)
	}
	const size = 2 << 20
	const iova = 1 << 30
	inside := false
	for _, r := range ranges {
		inside = inside || (iova >= r.Start && iova+size-1 <= r.Last)
	}
	if !inside {
		t.Fatalf("test iova %#x not in %v", iova, ranges)
	}
	avail0, hasAvail := cont.DMAAvailable()

	buf := anonBuffer(t, size)
	if err := cont.MapDMA(buf, iova); err != nil {
		t.Fatalf("map 2 MiB at %#x: %v", iova, err)
	}
	if got := cont.MappedBytes(); got != size {
		t.Errorf("MappedBytes = %d, want %d", got, size)
	}
	if hasAvail {
		if avail, _ := cont.DMAAvailable(); avail != avail0-1 {
			t.Errorf("dma mappings available %d after one map, was %d", avail, avail0)
		}
	}

	err := cont.MapDMA(buf, iova)
	if !errors.Is(err, vfio.ErrOverlap) || !strings.Contains(err.Error(), "[0x40000000, 0x401fffff]") {
		t.Errorf("duplicate map: err = %v, want ErrOverlap naming [0x40000000, 0x401fffff]", err)
	}
	page := anonBuffer(t, 4096)
	err = cont.MapDMA(page, iova+size-4096)
	if !errors.Is(err, vfio.ErrOverlap) {
		t.Errorf("overlapping map: err = %v, want ErrOverlap", err)
	}
	// The MSI window is never translatable on x86.
	err = cont.MapDMA(page, 0xfee00000)
	if !errors.Is(err, vfio.ErrIOVARange) {
		t.Errorf("map in the msi window: err = %v, want ErrIOVARange (ranges %v)", err, ranges)
	}

	if err := cont.UnmapDMA(iova, size); err != nil {
		t.Fatalf("unmap: %v", err)
	}
	if got := cont.MappedBytes(); got != 0 {
		t.Errorf("MappedBytes after unmap = %d", got)
	}
	if err := cont.UnmapDMA(iova, size); err == nil {
		t.Error("second unmap accepted")
	}
	// Mapped again after unmap: the kernel's bookkeeping agrees with ours.
	if err := cont.MapDMA(buf, iova); err != nil {
		t.Fatalf("remap: %v", err)
	}
	if err := cont.UnmapDMA(iova, size); err != nil {
		t.Fatalf("unmap: %v", err)
	}
}

func TestVMReset(t *testing.T) {
	env := vmtest.Require(t, "default")
	d, c := openFirst(t, env)
	if !d.CanReset() {
		t.Fatal("the kernel offers no reset for QEMU's nvme (it has FLR)")
	}
	if m, err := os.ReadFile(filepath.Join("/sys/bus/pci/devices", c.Addr, "reset_method")); err != nil || !strings.Contains(string(m), "flr") {
		t.Errorf("reset_method = %q, %v; want flr", m, err)
	}
	bar, err := d.MapBAR(0)
	if err != nil {
		t.Fatal(err)
	}
	r := mmio.New(bar)
	// Enable the controller (NVMe Base 2.0, 3.5.1) with an admin queue pair
	// in mapped DMA memory, so that there is state for the reset to clear:
	// QEMU's FLR clears CC and CSTS (it keeps AQA, ASQ, ACQ).
	const (
		regCC, regCSTS, regAQA, regASQ, regACQ = 0x14, 0x1c, 0x24, 0x28, 0x30
		iova                                   = 1 << 30
	)
	buf := anonBuffer(t, 2<<20)
	if err := d.Container().MapDMA(buf, iova); err != nil {
		t.Fatal(err)
	}
	defer d.Container().UnmapDMA(iova, 2<<20)
	if err := d.SetBusMaster(true); err != nil {
		t.Fatal(err)
	}
	r.Write32(regAQA, 0x001f001f) // 32-entry admin SQ and CQ
	r.Write64(regASQ, iova)
	r.Write64(regACQ, iova+4096)
	r.Write32(regCC, 4<<20|6<<16|1) // IOCQES 16 B, IOSQES 64 B, EN
	deadline := time.Now().Add(5 * time.Second)
	for r.Read32(regCSTS)&1 == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("CSTS.RDY stayed 0 after CC.EN=1 (CSTS %#x)", r.Read32(regCSTS))
		}
		time.Sleep(time.Millisecond)
	}
	if err := d.Reset(); err != nil {
		t.Fatal(err)
	}
	if cc, csts := r.Read32(regCC), r.Read32(regCSTS); cc&1 != 0 || csts&1 != 0 {
		t.Errorf("after reset CC %#x CSTS %#x, want EN and RDY clear", cc, csts)
	}
	if vs := r.Read32(0x08); vs != 0x00010400 {
		t.Errorf("VS = %#x after reset: the bar mapping broke", vs)
	}
	// PCI state is restored by the kernel around the reset.
	if cmd, err := d.ConfigRead16(vfio.PCICommand); err != nil || cmd&vfio.PCICommandMaster == 0 {
		t.Errorf("PCI_COMMAND after reset = %#x, %v; want bus mastering restored", cmd, err)
	}
}

func msixEnabled(t *testing.T, d *vfio.Device, addr string, off int64) (viaVFIO, viaSysfs bool) {
	t.Helper()
	ctl, err := d.ConfigRead16(off + vfio.PCIMSIXFlags)
	if err != nil {
		t.Fatal(err)
	}
	hw := binary.LittleEndian.Uint16(sysfsConfig(t, addr)[off+vfio.PCIMSIXFlags:])
	return ctl&vfio.PCIMSIXFlagsEnable != 0, hw&vfio.PCIMSIXFlagsEnable != 0
}

func TestVMMSIX(t *testing.T) {
	env := vmtest.Require(t, "default")
	d, c := openFirst(t, env)
	info, err := d.IRQ(vfio.PCIMSIXIRQ)
	if err != nil {
		t.Fatal(err)
	}
	if info.Count < 2 || info.Flags&vfio.IRQEventfd == 0 {
		t.Fatalf("msi-x info %+v: want at least 2 eventfd vectors", info)
	}
	off, err := d.FindCapability(vfio.PCICapIDMSIX)
	if err != nil || off == 0 {
		t.Fatalf("msi-x capability: offset %#x, %v", off, err)
	}
	if v, s := msixEnabled(t, d, c.Addr, off); v || s {
		t.Fatalf("msi-x enabled before EnableMSIX (vfio %v, sysfs %v)", v, s)
	}
	fds, err := d.EnableMSIX(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(fds) != 2 || fds[0] == fds[1] {
		t.Errorf("eventfds %v", fds)
	}
	if v, s := msixEnabled(t, d, c.Addr, off); !v || !s {
		t.Errorf("msi-x enable bit after EnableMSIX: vfio %v, sysfs %v; want both set", v, s)
	}
	if _, err := d.EnableMSIX(2); err == nil {
		t.Error("second EnableMSIX accepted")
	}
	if err := d.DisableMSIX(); err != nil {
		t.Fatal(err)
	}
	if v, s := msixEnabled(t, d, c.Addr, off); v || s {
		t.Errorf("msi-x enable bit after DisableMSIX: vfio %v, sysfs %v; want both clear", v, s)
	}
	// The eventfds are closed.
	if _, err := unix.FcntlInt(uintptr(fds[0]), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("eventfd %d still open after DisableMSIX: %v", fds[0], err)
	}
	if _, err := d.EnableMSIX(int(info.Count) + 1); err == nil {
		t.Error("EnableMSIX beyond the vector count accepted")
	}
}

func nvmeBlockDevs() []string {
	m, _ := filepath.Glob("/sys/block/nvme*n1")
	return m
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestVMBindAndRelease(t *testing.T) {
	env := vmtest.Require(t, "default")
	c := env.Controllers()[0]
	env.BindVFIO(t, c)
	name := env.BindKernel(t, c) // loads nvme; uses vfio.Release
	if !strings.HasPrefix(name, "nvme") || len(nvmeBlockDevs()) == 0 {
		t.Fatalf("after BindKernel: %q, block devices %v", name, nvmeBlockDevs())
	}

	// Earlier tests in the boot may have left data on the namespace,
	// which Bind would refuse: start blank.
	waitDisk(t, "/dev/"+name+"n1")
	wipe(t, "/dev/"+name+"n1")
	prev, err := vfio.Bind(c.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if prev != "nvme" {
		t.Errorf("Bind returned previous driver %q, want nvme", prev)
	}
	ctrls, err := vfio.List()
	if err != nil {
		t.Fatal(err)
	}
	var found *vfio.Controller
	for i := range ctrls {
		if ctrls[i].Addr == c.Addr {
			found = &ctrls[i]
		}
	}
	if found == nil || found.Driver != "vfio-pci" || found.Group < 0 || !found.Viable {
		t.Fatalf("List after Bind: %+v", found)
	}
	if _, err := os.Stat(fmt.Sprintf("/dev/vfio/%d", found.Group)); err != nil {
		t.Errorf("group node: %v", err)
	}
	if bd := nvmeBlockDevs(); len(bd) != 0 {
		t.Errorf("block devices %v still present on vfio-pci", bd)
	}

	if err := vfio.Release(c.Addr, "nvme"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/sys/block/nvme*n1", func() bool { return len(nvmeBlockDevs()) > 0 })
	b, err := os.ReadFile(filepath.Join("/sys/bus/pci/devices", c.Addr, "driver_override"))
	if err != nil || strings.TrimSpace(string(b)) != "(null)" {
		t.Errorf("driver_override after Release = %q, %v; want (null)", b, err)
	}

	// Leave it on vfio-pci, and check that Bind of a bound device is a no-op.
	if _, err := vfio.Bind(c.Addr); err != nil {
		t.Fatal(err)
	}
	if prev, err := vfio.Bind(c.Addr); err != nil || prev != "vfio-pci" {
		t.Errorf("Bind of a vfio-pci device = %q, %v", prev, err)
	}
}

func TestVMOpenTwiceBusy(t *testing.T) {
	env := vmtest.Require(t, "default")
	d, c := openFirst(t, env)
	d2, err := vfio.Open(c.Addr)
	if err == nil {
		d2.Close()
		t.Fatal("second Open of the same device succeeded")
	}
	if !errors.Is(err, vfio.ErrBusy) || !strings.Contains(err.Error(), "another process") {
		t.Errorf("second open: err = %v, want ErrBusy saying another process holds it", err)
	}
	// The first one still works, and Close is idempotent.
	if _, err := d.ConfigRead16(0); err != nil {
		t.Errorf("first device after the failed second open: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := d.MapBAR(0); !errors.Is(err, vfio.ErrClosed) {
		t.Errorf("MapBAR after Close: %v, want ErrClosed", err)
	}
	// Once closed, it opens again.
	d3, err := vfio.Open(c.Addr)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	d3.Close()
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

func TestVMLowMemlock(t *testing.T) {
	env := vmtest.Require(t, "default")
	d, _ := openFirst(t, env)
	buf := anonBuffer(t, 2<<20)

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &old); err != nil {
		t.Fatal(err)
	}
	const low = 64 << 10
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: low, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &old); err != nil {
			t.Errorf("restore RLIMIT_MEMLOCK: %v", err)
		}
	}()
	restore := dropIPCLock(t)
	err := d.Container().MapDMA(buf, 1<<30)
	restore()

	if err == nil {
		d.Container().UnmapDMA(1<<30, 2<<20)
		t.Fatal("map of 2 MiB under a 64 KiB RLIMIT_MEMLOCK succeeded")
	}
	var me *vfio.MemlockError
	if !errors.Is(err, vfio.ErrMemlock) || !errors.As(err, &me) {
		t.Fatalf("err = %v, want a MemlockError", err)
	}
	if me.Current != low || me.Needed < 2<<20 {
		t.Errorf("MemlockError current %d needed %d, want %d and at least %d", me.Current, me.Needed, low, 2<<20)
	}
	for _, s := range []string{"65536", fmt.Sprint(me.Needed), "ulimit -l", "LimitMEMLOCK"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q lacks %q", err, s)
		}
	}
	if got := d.Container().MappedBytes(); got != 0 {
		t.Errorf("MappedBytes after a refused map = %d", got)
	}
}

func TestVMGroupNotViable(t *testing.T) {
	env := vmtest.Require(t, "shared-group")
	cs := env.Controllers()
	if len(cs) < 2 {
		t.Fatalf("shared-group has %d controllers", len(cs))
	}
	a, b := cs[0], cs[1]
	env.BindKernel(t, b) // the other controller stays with the kernel
	env.BindVFIO(t, a)

	ctrls, err := vfio.List()
	if err != nil {
		t.Fatal(err)
	}
	var la *vfio.Controller
	for i := range ctrls {
		if ctrls[i].Addr == a.Addr {
			la = &ctrls[i]
		}
	}
	if la == nil || la.Viable || len(la.Blockers()) != 1 || la.Blockers()[0].Addr != b.Addr {
		t.Fatalf("List entry for %s: %+v, want not viable, blocked by %s", a.Addr, la, b.Addr)
	}

	d, err := vfio.Open(a.Addr)
	if err == nil {
		d.Close()
		t.Fatal("open in a group with a device on nvme succeeded")
	}
	var nv *vfio.NotViableError
	if !errors.Is(err, vfio.ErrNotViable) || !errors.As(err, &nv) {
		t.Fatalf("err = %v, want NotViableError", err)
	}
	for _, s := range []string{b.Addr, "nvme", "bind", "unbind"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q lacks %q", err, s)
		}
	}
	if strings.Contains(err.Error(), a.Addr+" (") {
		t.Errorf("message %q lists the device being opened as a blocker", err)
	}

	// The fix the message suggests works.
	env.BindVFIO(t, b)
	d, err = vfio.Open(a.Addr)
	if err != nil {
		t.Fatalf("open with the whole group on vfio-pci: %v", err)
	}
	d.Close()
}

// TestVMContainerReattach closes the only group of a container that has a
// mapping: the kernel drops the IOMMU and the mapping, and the Container
// must follow, so that the group attached next sets the IOMMU up again
// and its device opens. A device left open keeps its closed group
// attached.
func TestVMContainerReattach(t *testing.T) {
	env := vmtest.Require(t, "default")
	c := env.Controllers()[0]
	addr := env.BindVFIO(t, c)
	group := -1
	ctrls, err := vfio.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ctrls {
		if x.Addr == addr {
			group = x.Group
		}
	}
	cont, err := vfio.OpenContainer()
	if err != nil {
		t.Fatal(err)
	}
	defer cont.Close()
	attach := func() *vfio.Group {
		t.Helper()
		g, err := vfio.OpenGroup(group, addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.SetContainer(cont); err != nil {
			t.Fatalf("attach group %d: %v", group, err)
		}
		return g
	}
	const iova = 1 << 30
	buf := anonBuffer(t, 2<<20)
	g := attach()
	if err := cont.MapDMA(buf, iova); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if cont.MappedBytes() != 0 || cont.PageSize() != 0 || cont.IOVARanges() != nil {
		t.Fatalf("after the last group closed: mapped %d, page %d, ranges %v", cont.MappedBytes(), cont.PageSize(), cont.IOVARanges())
	}

	g = attach()
	if cont.PageSize() != 4096 || len(cont.IOVARanges()) == 0 {
		t.Errorf("re-attached: page %d, ranges %v", cont.PageSize(), cont.IOVARanges())
	}
	// The kernel dropped the old mapping: the IOVA is free again.
	if err := cont.MapDMA(buf, iova); err != nil {
		t.Fatalf("map after re-attach: %v", err)
	}
	d, err := g.OpenDevice(addr)
	if err != nil {
		t.Fatalf("open the device after re-attach: %v", err)
	}
	// The device holds the group: closing the group keeps the IOMMU.
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if cont.MappedBytes() != 2<<20 {
		t.Errorf("group closed, device open: mapped %d", cont.MappedBytes())
	}
	page := anonBuffer(t, 4096)
	if err := cont.MapDMA(page, iova+4<<20); err != nil {
		t.Errorf("map with the device holding the group: %v", err)
	}
	if _, err := d.ConfigRead16(0); err != nil {
		t.Errorf("device after its group closed: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if cont.MappedBytes() != 0 || cont.PageSize() != 0 {
		t.Errorf("after the device closed: mapped %d, page %d", cont.MappedBytes(), cont.PageSize())
	}
}

// TestVMRegionCaps reads BAR0's region info with its capability chain:
// QEMU's NVMe controller keeps its MSI-X table in BAR0, which the kernel
// lets a user map (MSIX_MAPPABLE) where interrupts are remapped; no sparse
// areas, so the whole BAR maps.
func TestVMRegionCaps(t *testing.T) {
	env := vmtest.Require(t, "default")
	d, _ := openFirst(t, env)
	r, err := d.Region(vfio.PCIBAR0Region)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bar 0: %+v", r)
	if r.Flags&vfio.RegionCaps == 0 || !r.MSIXMappable || r.Sparse {
		t.Errorf("bar 0 = %+v, want capabilities with MSIX_MAPPABLE and no sparse areas", r)
	}
	bar, err := d.MapBAR(0)
	if err != nil || uint64(len(bar)) != r.Size {
		t.Fatalf("MapBAR(0) = %d bytes, %v; want %d", len(bar), err, r.Size)
	}
}
