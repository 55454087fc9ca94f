package vfio

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/pci"
)

const (
	// ClassNVMe is the PCI class code of an NVMe controller: mass storage
	// (0x01), non-volatile memory (0x08), NVM Express programming interface
	// (0x02).
	ClassNVMe = 0x010802

	vfioPCIDriver = "vfio-pci"

	// bindTimeout bounds the wait for a driver to take a device and for
	// /dev/vfio/N to appear; under TCG a probe takes a while.
	bindTimeout = 10 * time.Second
)

// Controller describes one NVMe controller found in sysfs.
type Controller struct {
	Addr   string // PCI address, "0000:00:04.0"
	Vendor uint16 // PCI vendor ID
	Device uint16 // PCI device ID
	Class  uint32 // PCI class code (ClassNVMe)
	Driver string // bound driver ("nvme", "vfio-pci"), "" for none

	// Group is the IOMMU group number, -1 when the device has none (no
	// IOMMU, see ErrNoIOMMU).
	Group int
	// Members are the other devices in the IOMMU group, sorted by address.
	Members []Member
	// Viable reports whether the group can be used once this controller is
	// bound to vfio-pci: every other member is bound to vfio-pci, bound to
	// no driver, or is a PCI bridge. False when Group is -1.
	Viable bool
}

// Blockers returns the members that keep the group from being viable.
func (c Controller) Blockers() []Member {
	var out []Member
	for _, m := range c.Members {
		if !m.okForVFIO() {
			out = append(out, m)
		}
	}
	return out
}

// sysfs is the view of the kernel's PCI and VFIO state this package uses.
// Tests point it at a fake tree; everything else uses hostFS.
type sysfs struct {
	sys  string // "/sys"
	dev  string // "/dev"
	proc string // "/proc"
	// kernel, in tests, plays the kernel's part after each attribute
	// write (rebinding drivers, creating /dev/vfio/N). Nil on the host.
	kernel func(path, value string) error
	// timeout bounds waits for drivers and nodes; 0 means bindTimeout.
	timeout time.Duration
}

var hostFS = sysfs{sys: "/sys", dev: "/dev", proc: "/proc"}

func (s sysfs) devices() string           { return filepath.Join(s.sys, "bus/pci/devices") }
func (s sysfs) device(addr string) string { return filepath.Join(s.devices(), addr) }
func (s sysfs) drivers() string           { return filepath.Join(s.sys, "bus/pci/drivers") }
func (s sysfs) groups() string            { return filepath.Join(s.sys, "kernel/iommu_groups") }
func (s sysfs) groupNode(g int) string    { return filepath.Join(s.dev, "vfio", strconv.Itoa(g)) }

// List returns the NVMe controllers (PCI class 0x010802) on this machine,
// sorted by address, with their drivers and IOMMU groups. Any goroutine may
// call it.
func List() ([]Controller, error) { return hostFS.list() }

// ListFrom is List over a sysfs tree mounted at sys instead of /sys: a
// copy of another machine's, or a fake one in tests.
func ListFrom(sys string) ([]Controller, error) { return sysfs{sys: sys}.list() }

func (s sysfs) list() ([]Controller, error) {
	dirs, err := filepath.Glob(filepath.Join(s.devices(), "*"))
	if err != nil {
		return nil, fmt.Errorf("list pci devices: %w", err)
	}
	sort.Strings(dirs)
	var out []Controller
	for _, d := range dirs {
		p, err := pci.OnePCI(d)
		if err != nil {
			return nil, fmt.Errorf("list pci devices: %s: %w", filepath.Base(d), err)
		}
		if p.Class != ClassNVMe {
			continue
		}
		c, err := s.describe(p)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// lookup describes the device at addr, whatever its class.
func (s sysfs) lookup(addr string) (Controller, error) {
	if !validAddr(addr) {
		return Controller{}, fmt.Errorf("%q: %w (want domain:bus:device.function, like 0000:00:04.0)", addr, ErrNoDevice)
	}
	d := s.device(addr)
	if _, err := os.Stat(d); err != nil {
		return Controller{}, fmt.Errorf("%s: %w (see lspci -D or nvmectl list)", addr, ErrNoDevice)
	}
	p, err := pci.OnePCI(d)
	if err != nil {
		return Controller{}, fmt.Errorf("%s: read sysfs: %w", addr, err)
	}
	return s.describe(p)
}

func (s sysfs) describe(p *pci.PCI) (Controller, error) {
	c := Controller{
		Addr:   p.Addr,
		Vendor: p.Vendor,
		Device: p.Device,
		Class:  p.Class,
		Driver: s.driver(p.Addr),
		Group:  s.group(p.Addr),
	}
	if c.Group < 0 {
		return c, nil
	}
	members, err := s.members(c.Group)
	if err != nil {
		return c, err
	}
	c.Viable = true
	for _, m := range members {
		if m.Addr == c.Addr {
			continue
		}
		c.Members = append(c.Members, m)
		if !m.okForVFIO() {
			c.Viable = false
		}
	}
	return c, nil
}

// driver returns the name of the driver bound to addr, "" for none.
func (s sysfs) driver(addr string) string {
	l, err := os.Readlink(filepath.Join(s.device(addr), "driver"))
	if err != nil {
		return ""
	}
	return filepath.Base(l)
}

// group returns addr's IOMMU group number, -1 for none.
func (s sysfs) group(addr string) int {
	l, err := os.Readlink(filepath.Join(s.device(addr), "iommu_group"))
	if err != nil {
		return -1
	}
	g, err := strconv.Atoi(filepath.Base(l))
	if err != nil || g < 0 {
		return -1
	}
	return g
}

// members lists every device in IOMMU group g, sorted by address.
func (s sysfs) members(g int) ([]Member, error) {
	dir := filepath.Join(s.groups(), strconv.Itoa(g), "devices")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("iommu group %d: %w", g, err)
	}
	var out []Member
	for _, e := range ents {
		addr := e.Name()
		m := Member{Addr: addr, Driver: s.driver(addr)}
		if b, err := os.ReadFile(filepath.Join(s.device(addr), "class")); err == nil {
			v, _ := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"), 16, 32)
			m.Class = uint32(v)
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out, nil
}

// hasIOMMU reports whether the kernel created any IOMMU group.
func (s sysfs) hasIOMMU() bool {
	ents, err := os.ReadDir(s.groups())
	return err == nil && len(ents) > 0
}

// validAddr reports whether addr looks like a full PCI address,
// "dddd:bb:dd.f" in hex; it keeps paths built from addr inside sysfs. The
// domain has four hex digits or more: Intel VMD puts its NVMe controllers
// in domains from 10000 up (Linux prints the domain with %04x).
func validAddr(addr string) bool {
	dom, rest, ok := strings.Cut(addr, ":")
	if !ok || len(dom) < 4 || len(dom) > 8 || !isHex(dom) {
		return false
	}
	if len(rest) != 7 || rest[2] != ':' || rest[5] != '.' {
		return false
	}
	return isHex(rest[0:2]) && isHex(rest[3:5]) && rest[6] >= '0' && rest[6] <= '7'
}

func isHex(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

// Bind gives the device at addr to vfio-pci: it unbinds the current driver,
// sets driver_override to vfio-pci, asks the kernel to probe the device, and
// waits for /dev/vfio/<group>. It returns the driver the device had before
// ("" for none), for Release. Binding a device already on vfio-pci is not an
// error. Bind loads no module: without vfio-pci it returns ErrNoVFIOPCI.
// It needs root. Any goroutine may call it; concurrent binds of the same
// device race in the kernel.
//
// Before it unbinds a driver, Bind checks the device's block devices (an
// NVMe controller on the kernel's nvme driver: its namespaces and their
// partitions) and refuses, with an *InUseError that lists why (ErrInUse),
// when one is mounted, active swap, held by another block device, open
// exclusively by anyone, locked, or carries a data signature (a partition
// table, a file system, an LVM, RAID, ZFS or BlueStore label; see InUse).
// Force skips the check; IgnoreSignatures skips only the signatures.
func Bind(addr string, opts ...BindOption) (previous string, err error) {
	return hostFS.bind(addr, opts...)
}

func (s sysfs) bind(addr string, opts ...BindOption) (string, error) {
	cfg := bindConfig{signatures: true}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := s.lookup(addr)
	if err != nil {
		return "", fmt.Errorf("bind: %w", err)
	}
	if c.Group < 0 {
		if !s.hasIOMMU() {
			return "", fmt.Errorf("bind: %w", noIOMMUError(addr))
		}
		return "", fmt.Errorf("bind %s: %w: the device has no iommu_group link in sysfs although other devices do", addr, ErrNoIOMMU)
	}
	if c.Driver == vfioPCIDriver {
		return c.Driver, s.waitNode(addr, c.Group)
	}
	if _, err := os.Stat(filepath.Join(s.drivers(), vfioPCIDriver)); err != nil {
		return "", noVFIOPCIError(addr)
	}
	if !cfg.force {
		uses, err := s.inUse(addr)
		if err != nil {
			return c.Driver, fmt.Errorf("bind %s: %w; bind with vfio.Force() to skip the check", addr, err)
		}
		if !cfg.signatures {
			uses = slices.DeleteFunc(uses, func(u Use) bool { return u.Kind == UseSignature })
		}
		if len(uses) > 0 {
			return c.Driver, &InUseError{Addr: addr, Uses: uses}
		}
	}
	if c.Driver != "" {
		if err := s.write(filepath.Join(s.device(addr), "driver", "unbind"), addr); err != nil {
			return "", fmt.Errorf("bind %s: unbind from %s: %w", addr, c.Driver, err)
		}
	}
	if err := s.toVFIO(addr); err != nil {
		// Give the device back to its driver rather than leave it with none.
		if rerr := s.release(addr, c.Driver); rerr != nil {
			err = errors.Join(err, fmt.Errorf("give it back to %q: %w", c.Driver, rerr))
		}
		return c.Driver, fmt.Errorf("bind %s: %w", addr, err)
	}
	return c.Driver, s.waitNode(addr, c.Group)
}

// toVFIO does the driver_override and probe steps of bind, on an unbound
// device.
func (s sysfs) toVFIO(addr string) error {
	if err := s.write(filepath.Join(s.device(addr), "driver_override"), vfioPCIDriver); err != nil {
		return fmt.Errorf("set driver_override: %w", err)
	}
	if err := s.write(filepath.Join(s.sys, "bus/pci/drivers_probe"), addr); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	return s.waitDriver(addr, vfioPCIDriver)
}

// Release takes the device at addr away from vfio-pci (or whatever driver
// holds it), clears driver_override and binds it to driver, for example
// "nvme" so that its block devices come back. An empty driver leaves the
// device to whichever driver the kernel's probe picks, possibly none. The
// device must not be open through VFIO: the kernel waits for the last
// close before unbind returns. Any goroutine may call it.
func Release(addr, driver string) error { return hostFS.release(addr, driver) }

func (s sysfs) release(addr, driver string) error {
	c, err := s.lookup(addr)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	if driver != "" {
		if _, err := os.Stat(filepath.Join(s.drivers(), driver)); err != nil {
			return fmt.Errorf("release %s: %w: /sys/bus/pci/drivers/%s is missing; run `modprobe %s`", addr, ErrNoDriver, driver, driver)
		}
	}
	if c.Driver != "" && c.Driver != driver {
		if err := s.write(filepath.Join(s.device(addr), "driver", "unbind"), addr); err != nil {
			return fmt.Errorf("release %s: unbind from %s: %w", addr, c.Driver, err)
		}
		if err := s.waitDriver(addr, ""); err != nil {
			return fmt.Errorf("release %s: %w", addr, err)
		}
	}
	if err := s.write(filepath.Join(s.device(addr), "driver_override"), "\n"); err != nil {
		return fmt.Errorf("release %s: clear driver_override: %w", addr, err)
	}
	if c.Driver == driver && driver != "" {
		return nil
	}
	if err := s.write(filepath.Join(s.sys, "bus/pci/drivers_probe"), addr); err != nil {
		return fmt.Errorf("release %s: probe: %w", addr, err)
	}
	if driver == "" {
		return nil
	}
	if s.driver(addr) != driver {
		// The probe may have picked another driver; ask for ours by name.
		if cur := s.driver(addr); cur != "" {
			return fmt.Errorf("release %s: the kernel bound it to %s instead of %s", addr, cur, driver)
		}
		if err := s.write(filepath.Join(s.drivers(), driver, "bind"), addr); err != nil && s.driver(addr) != driver {
			return fmt.Errorf("release %s: bind to %s: %w", addr, driver, err)
		}
	}
	if err := s.waitDriver(addr, driver); err != nil {
		return fmt.Errorf("release %s: %w", addr, err)
	}
	return nil
}

// write writes v to the sysfs attribute at path in one write call, as
// sysfs wants.
func (s sysfs) write(path, v string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("%w: %w: run as root", ErrPermission, err)
		}
		return err
	}
	_, werr := f.Write([]byte(v))
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	if cerr != nil {
		return cerr
	}
	if s.kernel != nil {
		return s.kernel(path, v)
	}
	return nil
}

func (s sysfs) wait() time.Duration {
	if s.timeout > 0 {
		return s.timeout
	}
	return bindTimeout
}

// waitDriver waits until the driver bound to addr is want ("" for none).
func (s sysfs) waitDriver(addr, want string) error {
	deadline := time.Now().Add(s.wait())
	for {
		got := s.driver(addr)
		if got == want {
			return nil
		}
		if time.Now().After(deadline) {
			if want == "" {
				return fmt.Errorf("still bound to %s after %v", got, s.wait())
			}
			if got == "" {
				got = "no driver"
			}
			return fmt.Errorf("bound to %s, not %s, after %v (dmesg may say why)", got, want, s.wait())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitNode waits for /dev/vfio/<g>, which udev or devtmpfs creates shortly
// after vfio-pci takes the first device of the group.
func (s sysfs) waitNode(addr string, g int) error {
	p := s.groupNode(g)
	deadline := time.Now().Add(s.wait())
	for {
		_, err := os.Stat(p)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bind %s: %s did not appear within %v: %w", addr, p, s.wait(), err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
