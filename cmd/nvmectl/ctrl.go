package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// validAddr reports whether s looks like a full PCI address,
// "dddd:bb:dd.f" in hex.
func validAddr(s string) bool {
	if len(s) != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.' {
		return false
	}
	for i, r := range s {
		if i == 4 || i == 7 || i == 10 {
			continue
		}
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return s[11] <= '7'
}

// findCtrl returns the NVMe controller at addr. A malformed or unknown
// address is a usage error.
func findCtrl(a app, addr string) (vfio.Controller, error) {
	addr = strings.ToLower(addr)
	if !validAddr(addr) {
		return vfio.Controller{}, usagef("%q is not a PCI address: want domain:bus:device.function, like 0000:01:00.0", addr)
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

// withCtrl opens the controller at addr through VFIO, runs f and closes
// the controller (CC.SHN) whatever f returned.
func withCtrl(a app, addr string, f func(c *nvme.Controller) error) (err error) {
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
func openSystem(a app, addrs []string, opts *nvme.Options) ([]*nvme.Controller, func() error, error) {
	sys, err := pcie.NewSystem()
	if err != nil {
		return nil, nil, devicef("open vfio container: %w", err)
	}
	var ctrls []*nvme.Controller
	for _, addr := range addrs {
		c, err := sys.Open(addr, opts)
		if err != nil {
			sys.Close()
			if errors.Is(err, vfio.ErrBusy) {
				return nil, nil, devicef("controller %s is in use by another process: %w", addr, err)
			}
			return nil, nil, devicef("open %s: %w", addr, err)
		}
		ctrls = append(ctrls, c)
	}
	return ctrls, sys.Close, nil
}
