package vmtest

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Ctrl describes one emulated controller as the profile configured it.
type Ctrl struct {
	Addr      string // PCI address, "0000:00:04.0"
	ID        string // QEMU device id, for the monitor ("nvme0")
	Serial    string
	MDTS      int  // as configured (QEMU default 7)
	Null      bool // backed by null-co (reads zeros, writes dropped)
	Removable bool // behind a PCIe root port, can be device_del'd
	// Subsys is the id of the nvme-subsys the controller belongs to ("":
	// none). Namespace attachment needs one in QEMU.
	Subsys     string
	Namespaces []NS
}

// NS describes one namespace of a controller as the profile configured it.
type NS struct {
	NSID      uint32
	Blocks    uint64
	BlockSize int
	// MediaErrorLBAs are the LBAs whose reads fail with a media error
	// (blkdebug injects EIO there; QEMU reports it as an unrecovered read
	// error). Writes to them succeed.
	MediaErrorLBAs []uint64
	// Detached namespaces exist in the subsystem but are attached to no
	// controller at boot (nvme-ns detached=on): Namespace Attachment
	// brings them in.
	Detached bool
}

// Topology says where a profile's controllers sit on the guest's PCI bus.
type Topology string

const (
	// RootBus puts each controller directly on the q35 root bus, each in
	// its own IOMMU group.
	RootBus Topology = "root-bus"
	// RootPorts puts each controller behind its own pcie-root-port, so it
	// can be removed with the monitor's device_del.
	RootPorts Topology = "root-ports"
	// SharedBridge puts the controllers behind one conventional pci-bridge:
	// they share one IOMMU group.
	SharedBridge Topology = "shared-bridge"
)

// Profile is a resolved device profile: the controllers a guest gets and
// how they are wired. The host harness turns it into QEMU arguments; the
// guest-side helpers check the guest against it.
type Profile struct {
	Name     string // canonical, e.g. "4k+small-mdts"
	Topology Topology
	Ctrls    []Ctrl
	// Fabrics makes the boot carry the NVMe over TCP modules
	// (Boot.FabricsModules), which Env.LoadFabrics loads.
	Fabrics bool
	// Tools are host commands the harness carries into the guest's
	// guest.BinDir with the libraries they need (Env.Tool runs them).
	Tools []string
}

// NVMfTools are the host commands the nvmf profile carries: Debian's
// nvme-cli, e2fsprogs' mkfs.ext4 and e2fsck, and fio.
var NVMfTools = []string{"nvme", "mkfs.ext4", "e2fsck", "fio"}

const (
	gib = 1 << 30
	mib = 1 << 20
)

// modifier is one profile name; modifiers apply in rank order so that
// "4k+multi-ns" and "multi-ns+4k" are the same profile.
type modifier struct {
	rank  int
	doc   string
	apply func(p *Profile) error
}

// MediaErrorLBAs are the LBAs the media-errors profile fails on namespace 1
// of the first controller.
var MediaErrorLBAs = []uint64{100, 1000, 4000}

var modifiers = map[string]modifier{
	"default": {0, "one controller nvme0 (serial gonvme0), a 1 GiB file-backed namespace, 512 B blocks", func(*Profile) error { return nil }},
	"multi-ns": {10, "controller nvme0 with three namespaces: 64 MiB/512 B, 256 MiB/4096 B, 16 MiB/512 B", func(p *Profile) error {
		p.Ctrls[0].Namespaces = []NS{
			{NSID: 1, Blocks: 64 * mib / 512, BlockSize: 512},
			{NSID: 2, Blocks: 256 * mib / 4096, BlockSize: 4096},
			{NSID: 3, Blocks: 16 * mib / 512, BlockSize: 512},
		}
		return nil
	}},
	"two-ctrl": {20, "two controllers, nvme0 and nvme1, each like the first", func(p *Profile) error {
		addCtrl(p)
		return nil
	}},
	"shared-group": {21, "two controllers behind one conventional pci-bridge: one IOMMU group", func(p *Profile) error {
		if p.Topology == RootPorts {
			return fmt.Errorf("shared-group and hotplug do not combine")
		}
		if len(p.Ctrls) < 2 {
			addCtrl(p)
		}
		p.Topology = SharedBridge
		return nil
	}},
	"hotplug": {22, "every controller behind its own pcie-root-port, removable with device_del", func(p *Profile) error {
		if p.Topology == SharedBridge {
			return fmt.Errorf("shared-group and hotplug do not combine")
		}
		p.Topology = RootPorts
		for i := range p.Ctrls {
			p.Ctrls[i].Removable = true
		}
		return nil
	}},
	"null": {30, "namespaces backed by null-co (read-zeroes=on, writes dropped)", func(p *Profile) error {
		for i := range p.Ctrls {
			p.Ctrls[i].Null = true
		}
		return nil
	}},
	"media-errors": {31, "reads of LBAs 100, 1000 and 4000 of nvme0's namespace 1 fail (blkdebug EIO)", func(p *Profile) error {
		p.Ctrls[0].Namespaces[0].MediaErrorLBAs = append([]uint64(nil), MediaErrorLBAs...)
		return nil
	}},
	"nvmf": {50, "NVMe over TCP: the fabrics modules (nvmet, nvmet-tcp, nvme-fabrics, nvme-tcp, null_blk) and Debian's nvme-cli, mkfs.ext4, e2fsck and fio carried", func(p *Profile) error {
		p.Fabrics = true
		for _, t := range NVMfTools {
			if !slices.Contains(p.Tools, t) {
				p.Tools = append(p.Tools, t)
			}
		}
		return nil
	}},
	"4k": {40, "4096 B logical blocks on every namespace", func(p *Profile) error {
		for i := range p.Ctrls {
			for j := range p.Ctrls[i].Namespaces {
				ns := &p.Ctrls[i].Namespaces[j]
				ns.Blocks = ns.Blocks * uint64(ns.BlockSize) / 4096
				ns.BlockSize = 4096
			}
		}
		return nil
	}},
	"ns-mgmt": {11, "nvme0 in an NVM subsystem (nvme-subsys) with namespace 1 attached and namespace 2 (64 MiB, 4096 B) detached, for Namespace Attachment at run time (nvmectl attach-ns/detach-ns, the driver's events)", func(p *Profile) error {
		p.Ctrls[0].Subsys = "subsys0"
		p.Ctrls[0].Namespaces = append(p.Ctrls[0].Namespaces, NS{NSID: 2, Blocks: 64 * mib / 4096, BlockSize: 4096, Detached: true})
		return nil
	}},
	"small-mdts": {41, "mdts=2 (16 KiB transfers at 4 KiB pages) on every controller", func(p *Profile) error {
		for i := range p.Ctrls {
			p.Ctrls[i].MDTS = 2
		}
		return nil
	}},
}

// ProfileNames lists the profile names, each with a line of documentation.
func ProfileNames() map[string]string {
	out := map[string]string{}
	for n, m := range modifiers {
		out[n] = m.doc
	}
	return out
}

func addCtrl(p *Profile) {
	c := p.Ctrls[0]
	n := len(p.Ctrls)
	c.ID = fmt.Sprintf("nvme%d", n)
	c.Serial = fmt.Sprintf("gonvme%d", n)
	c.Namespaces = append([]NS(nil), c.Namespaces...)
	for i := range c.Namespaces {
		c.Namespaces[i].MediaErrorLBAs = nil
	}
	p.Ctrls = append(p.Ctrls, c)
}

// ParseProfile resolves a profile name: modifiers joined with "+", in any
// order ("default" alone is the base).
func ParseProfile(name string) (*Profile, error) {
	parts := strings.Split(name, "+")
	seen := map[string]bool{}
	var names []string
	for _, part := range parts {
		part = strings.TrimSpace(part)
		if _, ok := modifiers[part]; !ok {
			return nil, fmt.Errorf("unknown device profile %q in %q (known: %s)", part, name, strings.Join(knownNames(), ", "))
		}
		if seen[part] {
			return nil, fmt.Errorf("profile %q names %q twice", name, part)
		}
		seen[part] = true
		if part != "default" || len(parts) == 1 {
			names = append(names, part)
		}
	}
	if len(names) == 0 {
		names = []string{"default"}
	}
	sort.Slice(names, func(i, j int) bool { return modifiers[names[i]].rank < modifiers[names[j]].rank })
	p := &Profile{
		Name:     strings.Join(names, "+"),
		Topology: RootBus,
		Ctrls: []Ctrl{{
			ID: "nvme0", Serial: "gonvme0", MDTS: 7,
			Namespaces: []NS{{NSID: 1, Blocks: gib / 512, BlockSize: 512}},
		}},
	}
	for _, n := range names {
		if err := modifiers[n].apply(p); err != nil {
			return nil, fmt.Errorf("profile %q: %w", name, err)
		}
	}
	assignAddrs(p)
	return p, nil
}

func knownNames() []string {
	var out []string
	for n := range modifiers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Fixed PCI slots: controllers on the root bus from slot 4; bridges and
// root ports from slot 0x10. The guest kernel numbers secondary buses in
// slot order from 1, so the BDFs below are what the guest sees.
const (
	firstCtrlSlot   = 0x04
	firstBridgeSlot = 0x10
)

// CtrlSlot is the slot of controller i on its bus.
func (p *Profile) CtrlSlot(i int) int {
	switch p.Topology {
	case RootPorts:
		return 0
	case SharedBridge:
		return 1 + i
	}
	return firstCtrlSlot + i
}

// BridgeSlot is the root-bus slot of bridge or root port i.
func BridgeSlot(i int) int { return firstBridgeSlot + i }

func assignAddrs(p *Profile) {
	for i := range p.Ctrls {
		bus := 0
		switch p.Topology {
		case RootPorts:
			bus = 1 + i
		case SharedBridge:
			bus = 1
		}
		p.Ctrls[i].Addr = fmt.Sprintf("0000:%02x:%02x.0", bus, p.CtrlSlot(i))
	}
}
