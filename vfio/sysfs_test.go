package vfio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSys builds a sysfs tree like the kernel's, enough for discovery,
// viability and binding.
type fakeSys struct {
	t    testing.TB
	root string
	s    sysfs

	mu     sync.Mutex
	writes []string // "path-relative-to-sys=value"
	// probeNone makes drivers_probe bind nothing unless driver_override
	// names a driver, like a kernel whose driver lacks the device's ID.
	probeNone bool
}

func newFakeSys(t testing.TB) *fakeSys {
	t.Helper()
	root := t.TempDir()
	f := &fakeSys{t: t, root: root}
	f.s = sysfs{sys: filepath.Join(root, "sys"), dev: filepath.Join(root, "dev"), proc: filepath.Join(root, "proc"), timeout: 200 * time.Millisecond}
	for _, d := range []string{f.s.devices(), f.s.drivers(), filepath.Join(root, "dev", "vfio"), filepath.Join(root, "proc", "self"), filepath.Join(root, "sys", "block")} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(filepath.Join(f.s.sys, "bus/pci/drivers_probe"), nil, 0o644))
	return f
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// driver registers a driver directory with bind and unbind attributes.
func (f *fakeSys) driver(name string) {
	d := filepath.Join(f.s.drivers(), name)
	must(f.t, os.MkdirAll(d, 0o755))
	must(f.t, os.WriteFile(filepath.Join(d, "bind"), nil, 0o644))
	must(f.t, os.WriteFile(filepath.Join(d, "unbind"), nil, 0o644))
}

// device adds a PCI device; group < 0 leaves it without an IOMMU group.
func (f *fakeSys) device(addr string, vendor, device uint16, class uint32, driver string, group int) {
	d := f.s.device(addr)
	must(f.t, os.MkdirAll(d, 0o755))
	files := map[string]string{
		"vendor":          fmt.Sprintf("0x%04x\n", vendor),
		"device":          fmt.Sprintf("0x%04x\n", device),
		"class":           fmt.Sprintf("0x%06x\n", class),
		"irq":             "11\n",
		"resource":        "0x00000000fe000000 0x00000000fe003fff 0x0000000000140204\n0x0000000000000000 0x0000000000000000 0x0000000000000000\n",
		"driver_override": "(null)\n",
	}
	for n, v := range files {
		must(f.t, os.WriteFile(filepath.Join(d, n), []byte(v), 0o644))
	}
	f.bindTo(addr, driver)
	if group >= 0 {
		g := filepath.Join(f.s.groups(), strconv.Itoa(group), "devices")
		must(f.t, os.MkdirAll(g, 0o755))
		must(f.t, os.Symlink(d, filepath.Join(g, addr)))
		must(f.t, os.Symlink("../../../../kernel/iommu_groups/"+strconv.Itoa(group), filepath.Join(d, "iommu_group")))
	}
}

// bindTo points the device's driver link at driver ("" removes it).
func (f *fakeSys) bindTo(addr, driver string) {
	link := filepath.Join(f.s.device(addr), "driver")
	os.Remove(link)
	if driver != "" {
		f.driver(driver)
		must(f.t, os.Symlink(filepath.Join(f.s.drivers(), driver), link))
	}
}

// playKernel makes attribute writes behave like the kernel's: unbind drops
// the driver link, drivers_probe binds the override (or "nvme"), bind
// binds, and binding vfio-pci creates /dev/vfio/<group>.
func (f *fakeSys) playKernel() {
	f.s.kernel = func(path, v string) error {
		rel, _ := filepath.Rel(f.s.sys, path)
		f.mu.Lock()
		f.writes = append(f.writes, rel+"="+v)
		f.mu.Unlock()
		switch {
		case strings.HasSuffix(rel, "/driver_override"):
			must(f.t, os.WriteFile(path, []byte(v), 0o644)) // each write replaces the value
		case strings.HasSuffix(rel, "/unbind"):
			f.bindTo(v, "")
		case rel == "bus/pci/drivers_probe":
			ov, _ := os.ReadFile(filepath.Join(f.s.device(v), "driver_override"))
			drv := strings.TrimSpace(string(ov))
			if drv == "" || drv == "(null)" {
				if f.probeNone {
					return nil
				}
				drv = "nvme"
			}
			if _, err := os.Stat(filepath.Join(f.s.drivers(), drv)); err != nil {
				return nil // no such driver: the device stays unbound
			}
			f.bindTo(v, drv)
			if drv == vfioPCIDriver {
				g := f.s.group(v)
				must(f.t, os.WriteFile(f.s.groupNode(g), nil, 0o600))
			}
		case strings.HasPrefix(rel, "bus/pci/drivers/") && strings.HasSuffix(rel, "/bind"):
			f.bindTo(v, filepath.Base(filepath.Dir(rel)))
		}
		return nil
	}
}

func (f *fakeSys) relWrites() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.writes...)
}

const (
	qemuVendor = 0x1b36
	qemuNVMe   = 0x0010
)

func TestListFindsNVMeWithGroups(t *testing.T) {
	f := newFakeSys(t)
	f.device("0000:00:04.0", qemuVendor, qemuNVMe, ClassNVMe, "nvme", 3)
	f.device("0000:00:02.0", 0x8086, 0x10d3, 0x020000, "e1000e", 2) // not NVMe
	// Shared group 5: a bridge, one controller on vfio-pci, one on nvme.
	f.device("0000:00:1e.0", 0x1b36, 0x0001, 0x060400, "", 5)
	f.device("0000:01:01.0", qemuVendor, qemuNVMe, ClassNVMe, "vfio-pci", 5)
	f.device("0000:01:02.0", qemuVendor, qemuNVMe, ClassNVMe, "nvme", 5)
	// Group 6: a controller on vfio-pci next to an unbound function.
	f.device("0000:02:00.0", 0x144d, 0xa808, ClassNVMe, "vfio-pci", 6)
	f.device("0000:02:00.1", 0x144d, 0xa808, 0x088000, "", 6)

	got, err := f.s.list()
	must(t, err)
	want := []Controller{
		{Addr: "0000:00:04.0", Vendor: qemuVendor, Device: qemuNVMe, Class: ClassNVMe, Driver: "nvme", Group: 3, Viable: true},
		{Addr: "0000:01:01.0", Vendor: qemuVendor, Device: qemuNVMe, Class: ClassNVMe, Driver: "vfio-pci", Group: 5,
			Members: []Member{{"0000:00:1e.0", "", 0x060400}, {"0000:01:02.0", "nvme", ClassNVMe}}},
		{Addr: "0000:01:02.0", Vendor: qemuVendor, Device: qemuNVMe, Class: ClassNVMe, Driver: "nvme", Group: 5, Viable: true,
			Members: []Member{{"0000:00:1e.0", "", 0x060400}, {"0000:01:01.0", "vfio-pci", ClassNVMe}}},
		{Addr: "0000:02:00.0", Vendor: 0x144d, Device: 0xa808, Class: ClassNVMe, Driver: "vfio-pci", Group: 6, Viable: true,
			Members: []Member{{"0000:02:00.1", "", 0x088000}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("list:\n got %+v\nwant %+v", got, want)
	}
	if b := got[1].Blockers(); len(b) != 1 || b[0].Addr != "0000:01:02.0" {
		t.Errorf("blockers of %s = %v, want 0000:01:02.0 only", got[1].Addr, b)
	}
	if !got[1].Members[0].Bridge() || got[1].Members[1].Bridge() {
		t.Errorf("bridge detection wrong: %v", got[1].Members)
	}
}

func TestListEmpty(t *testing.T) {
	f := newFakeSys(t)
	got, err := f.s.list()
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("list on an empty bus = %v", got)
	}
}

func TestListBrokenDevice(t *testing.T) {
	f := newFakeSys(t)
	f.device("0000:00:04.0", qemuVendor, qemuNVMe, ClassNVMe, "nvme", 3)
	must(t, os.Remove(filepath.Join(f.s.device("0000:00:04.0"), "vendor")))
	if _, err := f.s.list(); err == nil || !strings.Contains(err.Error(), "0000:00:04.0") {
		t.Fatalf("list with an unreadable device: err = %v, want one naming the device", err)
	}
}

func TestNoIOMMU(t *testing.T) {
	f := newFakeSys(t)
	f.driver(vfioPCIDriver)
	f.device("0000:00:04.0", qemuVendor, qemuNVMe, ClassNVMe, "nvme", -1)
	f.playKernel()

	got, err := f.s.list()
	must(t, err)
	if len(got) != 1 || got[0].Group != -1 || got[0].Viable {
		t.Fatalf("list without iommu = %+v, want group -1, not viable", got)
	}
	for name, op := range map[string]func() error{
		"bind": func() error { _, err := f.s.bind("0000:00:04.0"); return err },
		"open": func() error { _, err := f.s.open("0000:00:04.0"); return err },
	} {
		err := op()
		if !errors.Is(err, ErrNoIOMMU) {
			t.Fatalf("%s without iommu: err = %v, want ErrNoIOMMU", name, err)
		}
		for _, s := range []string{"intel_iommu=on", "amd_iommu=on", "VT-d", "AMD-Vi", "0000:00:04.0"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s error %q does not mention %q", name, err, s)
			}
		}
	}
	if w := f.relWrites(); len(w) != 0 {
		t.Errorf("bind without iommu wrote %v, want nothing", w)
	}
}

func TestBindWithoutVFIOPCI(t *testing.T) {
	f := newFakeSys(t)
	f.device("0000:00:04.0", qemuVendor, qemuNVMe, ClassNVMe, "nvme", 3)
	f.playKernel()
	_, err := f.s.bind("0000:00:04.0")
	if !errors.Is(err, ErrNoVFIOPCI) || !strings.Contains(err.Error(), "modprobe vfio-pci") {
		t.Fatalf("bind without vfio-pci: err = %v, want ErrNoVFIOPCI saying modprobe vfio-pci", err)
	}
	if w := f.relWrites(); len(w) != 0 {
		t.Errorf("bind without vfio-pci wrote %v, want nothing (the device must keep its driver)", w)
	}
	if d := f.s.driver("0000:00:04.0"); d != "nvme" {
		t.Errorf("driver after failed bind = %q, want nvme", d)
	}
}

func TestBindAndRelease(t *testing.T) {
	f := newFakeSys(t)
	f.driver(vfioPCIDriver)
	f.device("0000:00:04.0", qemuVendor, qemuNVMe, ClassNVMe, "nvme", 3)
	f.playKernel()
	const addr = "0000:00:04.0"
	dev := "bus/pci/devices/" + addr

	prev, err := f.s.bind(addr)
	must(t, err)
	if prev != "nvme" {
		t.Errorf("bind returned previous driver %q, want nvme", prev)
	}
	want := []string{
		dev + "/driver/unbind=" + addr,
		dev + "/driver_override=vfio-pci",
		"bus/pci/drivers_probe=" + addr,
	}
	if got := f.relWrites(); !reflect.DeepEqual(got, want) {
		t.Fatalf("bind wrote\n %q\nwant\n %q", got, want)
	}
	if d := f.s.driver(addr); d != vfioPCIDriver {
		t.Fatalf("driver after bind = %q", d)
	}

	// Binding again is a no-op that reports vfio-pci.
	prev, err = f.s.bind(addr)
	must(t, err)
	if prev != vfioPCIDriver || len(f.relWrites()) != 3 {
		t.Errorf("second bind: previous %q, writes %q; want vfio-pci and no new writes", prev, f.relWrites())
	}

	must(t, f.s.release(addr, "nvme"))
	want = append(want,
		dev+"/driver/unbind="+addr,
		dev+"/driver_override=\n",
		"bus/pci/drivers_probe="+addr,
	)
	if got := f.relWrites(); !reflect.DeepEqual(got, want) {
		t.Fatalf("release wrote\n %q\nwant\n %q", got, want)
	}
	if d := f.s.driver(addr); d != "nvme" {
		t.Fatalf("driver after release = %q, want nvme", d)
	}
}

func TestReleaseBindsByName(t *testing.T) {
	f := newFakeSys(t)
	f.driver("nvme")
	f.device("0000:00:04.0", qemuVendor, qemuNVMe, ClassNVMe, "vfio-pci", 3)
	f.playKernel()
	f.probeNone = true
	must(t, f.s.release("0000:00:04.0", "nvme"))
	w := f.relWrites()
	if last := w[len(w)-1]; last != "bus/pci/drivers/nvme/bind=0000:00:04.0" {
		t.Errorf("writes %q: want the last to bind nvme by name", w)
	}
	if d := f.s.driver("0000:00:04.0"); d != "nvme" {
		t.Errorf("driver = %q, want nvme", d)
	}
}

func TestBindFailureRestoresDriver(t *testing.T) {
	f := newFakeSys(t)
	f.driver(vfioPCIDriver)
	f.device("0000:00:04.0", qemuVendor, qemuNVMe, ClassNVMe, "nvme", 3)
	f.playKernel()
	play := f.s.kernel
	// vfio-pci refuses the device: the probe with the override binds nothing.
	f.s.kernel = func(path, v string) error {
		if strings.HasSuffix(path, "drivers_probe") {
			ov, _ := os.ReadFile(filepath.Join(f.s.device(v), "driver_override"))
			if strings.TrimSpace(string(ov)) == vfioPCIDriver {
				return nil
			}
		}
		return play(path, v)
	}
	_, err := f.s.bind("0000:00:04.0")
	if err == nil || !strings.Contains(err.Error(), "not vfio-pci") {
		t.Fatalf("bind refused by vfio-pci: err = %v", err)
	}
	if d := f.s.driver("0000:00:04.0"); d != "nvme" {
		t.Errorf("driver after a failed bind = %q, want nvme back", d)
	}
	ov, _ := os.ReadFile(filepath.Join(f.s.device("0000:00:04.0"), "driver_override"))
	if strings.TrimSpace(string(ov)) != "" {
		t.Errorf("driver_override left at %q", ov)
	}
}

func TestReleaseUnknownDriver(t *testing.T) {
	f := newFakeSys(t)
	f.device("0000:00:04.0", qemuVendor, qemuNVMe, ClassNVMe, "vfio-pci", 3)
	f.playKernel()
	err := f.s.release("0000:00:04.0", "nvmx")
	if !errors.Is(err, ErrNoDriver) || !strings.Contains(err.Error(), "modprobe nvmx") {
		t.Fatalf("release to a missing driver: err = %v", err)
	}
	if d := f.s.driver("0000:00:04.0"); d != vfioPCIDriver {
		t.Errorf("release to a missing driver unbound the device (now %q)", d)
	}
}

func TestBindTimesOut(t *testing.T) {
	f := newFakeSys(t)
	f.driver(vfioPCIDriver)
	f.device("0000:00:04.0", qemuVendor, qemuNVMe, ClassNVMe, "nvme", 3)
	// A kernel that ignores writes: the device never reaches vfio-pci.
	f.s.kernel = func(string, string) error { return nil }
	prev, err := f.s.bind("0000:00:04.0")
	if err == nil || !strings.Contains(err.Error(), "not vfio-pci") {
		t.Fatalf("bind with a deaf kernel: err = %v", err)
	}
	if prev != "nvme" {
		t.Errorf("previous = %q, want nvme even on failure", prev)
	}
}

func TestBadAddress(t *testing.T) {
	f := newFakeSys(t)
	for _, a := range []string{"", "00:04.0", "0000:00:04.8", "../../../etc", "0000:00:04.0/x", "0000:0g:04.0",
		"000:00:04.0", "123456789:00:04.0", "1000g:00:04.0", "10000:e1:00.0/..", "10000::e1:00.0", ":00:04.0"} {
		if _, err := f.s.bind(a); !errors.Is(err, ErrNoDevice) {
			t.Errorf("bind(%q): err = %v, want ErrNoDevice", a, err)
		}
	}
	if _, err := f.s.bind("0000:00:09.0"); !errors.Is(err, ErrNoDevice) {
		t.Errorf("bind of an absent device: err = %v, want ErrNoDevice", err)
	}
	for _, a := range []string{"0000:00:04.0", "ABCD:ef:1f.7", "10000:e1:00.0", "1d0f3:00:00.7"} {
		if !validAddr(a) {
			t.Errorf("validAddr rejects %q", a)
		}
	}
}

// TestVMDDomain binds a controller in a 5-digit PCI domain, as Intel VMD
// creates them (10000:e1:00.0).
func TestVMDDomain(t *testing.T) {
	f := newFakeSys(t)
	f.driver(vfioPCIDriver)
	const addr = "10000:e1:00.0"
	f.device(addr, 0x144d, 0xa80a, ClassNVMe, "nvme", 7)
	f.playKernel()
	got, err := f.s.list()
	must(t, err)
	if len(got) != 1 || got[0].Addr != addr || got[0].Group != 7 {
		t.Fatalf("list = %+v, want %s in group 7", got, addr)
	}
	prev, err := f.s.bind(addr)
	if err != nil || prev != "nvme" || f.s.driver(addr) != vfioPCIDriver {
		t.Fatalf("bind %s: previous %q, %v; driver now %q", addr, prev, err, f.s.driver(addr))
	}
}

func TestNotViableMessage(t *testing.T) {
	f := newFakeSys(t)
	f.device("0000:00:1e.0", 0x1b36, 0x0001, 0x060400, "", 5)
	f.device("0000:01:01.0", qemuVendor, qemuNVMe, ClassNVMe, "vfio-pci", 5)
	f.device("0000:01:02.0", qemuVendor, qemuNVMe, ClassNVMe, "nvme", 5)
	f.device("0000:01:03.0", 0x8086, 0x10d3, 0x020000, "e1000", 5)

	err := f.s.notViable(5, "0000:01:01.0")
	if !errors.Is(err, ErrNotViable) {
		t.Fatalf("errors.Is(%v, ErrNotViable) = false", err)
	}
	var nv *NotViableError
	if !errors.As(err, &nv) || nv.Group != 5 || len(nv.Blockers) != 2 {
		t.Fatalf("not viable error = %#v, want group 5 with two blockers", err)
	}
	msg := err.Error()
	for _, s := range []string{"0000:01:02.0 (nvme)", "0000:01:03.0 (e1000)", "group 5", "0000:01:01.0", "bind", "unbind"} {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q does not mention %q", msg, s)
		}
	}
	if strings.Contains(msg, "0000:00:1e.0") {
		t.Errorf("message %q names the bridge, which does not block", msg)
	}
	if errors.Is(err, ErrBusy) {
		t.Error("not viable error matches ErrBusy")
	}
}

func TestMemlockMessage(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &MemlockError{Current: 65536, Needed: 2 << 20})
	if !errors.Is(err, ErrMemlock) {
		t.Fatal("MemlockError does not match ErrMemlock")
	}
	for _, s := range []string{"65536", "2097152", "ulimit -l", "LimitMEMLOCK"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q does not mention %q", err, s)
		}
	}
}

func TestBusyAndPermMessages(t *testing.T) {
	b := busyError("open iommu group 3", errors.New("device or resource busy"))
	if !errors.Is(b, ErrBusy) || !strings.Contains(b.Error(), "another process") {
		t.Errorf("busy error %q", b)
	}
	p := permError("/dev/vfio/3", errors.New("permission denied"))
	if !errors.Is(p, ErrPermission) || !strings.Contains(p.Error(), "root") || !strings.Contains(p.Error(), "chown") {
		t.Errorf("permission error %q", p)
	}
}
