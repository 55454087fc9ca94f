package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// parseAddr turns a PCI address as the user typed it into the name the
// kernel gives the device in sysfs, "dddd:bb:dd.f" in lower-case hex. It
// takes what lspci prints: the full form (lspci -D), with a 4- or 5-digit
// domain (VMD puts its devices in domains from 0x10000), and the short
// form "bb:dd.f" of domain 0 (plain lspci). A device number above 0x1f or
// a function above 7 does not exist on PCI and is refused. A controller
// reached over NVMe/TCP, tcp://HOST[:PORT]/NQN, comes back in its
// canonical form (tcp.Address.String: tcp://HOST:PORT/NQN, an IPv6
// host in brackets, the port always given). Every error is a usage error.
func parseAddr(s string) (string, error) {
	if isFabricsAddr(s) {
		ta, err := parseTCPAddr(s, false)
		if err != nil {
			return "", err
		}
		return ta.String(), nil
	}
	bad := func(why string) (string, error) {
		return "", usagef("%q is not a PCI address: %s (want [domain:]bus:device.function as lspci prints it, like 0000:01:00.0 or 01:00.0)", s, why)
	}
	t := strings.ToLower(strings.TrimSpace(s))
	parts := strings.Split(t, ":")
	domain := "0"
	switch len(parts) {
	case 2:
	case 3:
		domain, parts = parts[0], parts[1:]
	default:
		return bad("wrong number of colons")
	}
	dev, fn, ok := strings.Cut(parts[1], ".")
	if !ok {
		return bad("no .function")
	}
	num := func(f string, digits int, max uint64, what string) (uint64, error) {
		if f == "" || len(f) > digits {
			return 0, fmt.Errorf("%s %q: want 1 to %d hex digits", what, f, digits)
		}
		v, err := strconv.ParseUint(f, 16, 32)
		if err != nil {
			return 0, fmt.Errorf("%s %q is not hex", what, f)
		}
		if v > max {
			return 0, fmt.Errorf("%s %#x is out of range (0 to %#x)", what, v, max)
		}
		return v, nil
	}
	d, err := num(domain, 5, 0xfffff, "domain")
	if err != nil {
		return bad(err.Error())
	}
	b, err := num(parts[0], 2, 0xff, "bus")
	if err != nil {
		return bad(err.Error())
	}
	dv, err := num(dev, 2, 0x1f, "device")
	if err != nil {
		return bad(err.Error())
	}
	f, err := num(fn, 1, 7, "function")
	if err != nil {
		return bad(err.Error())
	}
	return fmt.Sprintf("%04x:%02x:%02x.%x", d, b, dv, f), nil
}

// findCtrl returns the NVMe controller at addr. A malformed or unknown
// address is a usage error.
func findCtrl(a app, addr string) (vfio.Controller, error) {
	addr, err := parseAddr(addr)
	if err != nil {
		return vfio.Controller{}, err
	}
	if isFabricsAddr(addr) {
		return vfio.Controller{}, usagef("%s is reached over NVMe/TCP: this needs a PCI controller", addr)
	}
	all, err := a.list()
	if err != nil {
		return vfio.Controller{}, deviceError{fmt.Errorf("list controllers: %w", err)}
	}
	for _, c := range all {
		if c.Addr == addr {
			return c, nil
		}
	}
	addrs := make([]string, len(all))
	for i, c := range all {
		addrs[i] = c.Addr
	}
	have := "none"
	if len(addrs) > 0 {
		have = strings.Join(addrs, ", ")
	}
	return vfio.Controller{}, usagef("no NVMe controller at %s (controllers: %s; nvmectl list shows them)", addr, have)
}

// withCtrl opens the controller at addr through VFIO, or connects to it
// over NVMe/TCP (tcp://...), runs f and closes the controller (CC.SHN)
// whatever f returned.
func withCtrl(a app, addr string, f func(c *nvme.Controller) error) (err error) {
	if isFabricsAddr(addr) {
		if addr, err = parseAddr(addr); err != nil {
			return err
		}
		c, err := connectTCP(a, addr, &nvme.Options{IOQueues: 1, AsyncEvents: -1})
		if err != nil {
			return err
		}
		defer func() {
			if cerr := c.Close(); cerr != nil && err == nil {
				err = devicef("close %s: %w", addr, cerr)
			}
		}()
		return classify(f(c))
	}
	info, err := findCtrl(a, addr)
	if err != nil {
		return err
	}
	if info.Driver != "vfio-pci" {
		drv := info.Driver
		if drv == "" {
			drv = "no driver"
		}
		return devicef("controller %s is bound to %s, not vfio-pci: run `nvmectl setup %s` first", info.Addr, drv, info.Addr)
	}
	c, err := a.open(info.Addr)
	if err != nil {
		if errors.Is(err, vfio.ErrBusy) {
			return devicef("controller %s is in use by another process: %w", info.Addr, err)
		}
		return devicef("open %s: %w", info.Addr, err)
	}
	defer func() {
		if cerr := c.Close(); cerr != nil && err == nil {
			err = devicef("close %s: %w", info.Addr, cerr)
		}
	}()
	return classify(f(c))
}

// namespace returns active namespace nsid of c, or a usage error naming
// the active ones.
func namespace(c *nvme.Controller, nsid uint32) (*nvme.Namespace, error) {
	ns, err := c.Namespace(nsid)
	if err != nil {
		return nil, usagef("namespace %d is not active on this controller (active: %s)", nsid, nsList(c.Namespaces()))
	}
	return ns, nil
}

func checkNSID(c *nvme.Controller, nsid uint32) error {
	if slices.Contains(c.Namespaces(), nsid) {
		return nil
	}
	ids, err := c.ActiveNamespaces(0)
	if err == nil && slices.Contains(ids, nsid) {
		return nil
	}
	return usagef("namespace %d is not active on this controller (active: %s)", nsid, nsList(c.Namespaces()))
}

func nsList(ids []uint32) string {
	if len(ids) == 0 {
		return "none"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprint(id)
	}
	return strings.Join(s, " ")
}

// openSystem opens the controllers at addrs with opts in one pcie.System,
// so they share a VFIO container and a DMA allocator, and returns a
// function that closes them all. perf and serve use it (through their own
// variables, which host tests replace with controllers on nvmetest).
// Controllers named tcp://... are connected over NVMe/TCP instead (no
// VFIO container is made when all are).
func openSystem(a app, addrs []string, opts *nvme.Options) ([]*nvme.Controller, func() error, error) {
	var sys *pcie.System
	var ctrls []*nvme.Controller
	var remote []*nvme.Controller
	closeAll := func() error {
		var first error
		for _, c := range remote {
			if err := c.Close(); err != nil && first == nil {
				first = err
			}
		}
		if sys != nil {
			if err := sys.Close(); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	for _, addr := range addrs {
		if isFabricsAddr(addr) {
			c, err := connectTCP(a, addr, opts)
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			remote = append(remote, c)
			ctrls = append(ctrls, c)
			continue
		}
		if sys == nil {
			var err error
			if sys, err = pcie.NewSystem(); err != nil {
				closeAll()
				return nil, nil, devicef("open vfio container: %w", err)
			}
		}
		c, err := sys.Open(addr, opts)
		if err != nil {
			closeAll()
			if errors.Is(err, vfio.ErrBusy) {
				return nil, nil, devicef("controller %s is in use by another process: %w", addr, err)
			}
			return nil, nil, devicef("open %s: %w", addr, err)
		}
		ctrls = append(ctrls, c)
	}
	return ctrls, closeAll, nil
}
