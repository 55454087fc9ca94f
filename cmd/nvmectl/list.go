package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/prometheus/procfs/sysfs"
	"github.com/spf13/cobra"

	"github.com/seedb8fa28ef/gonvme/vfio"
)

// listJSON is the document list prints with -o json; see doc.go.
type listJSON struct {
	Controllers []ctrlJSON `json:"controllers"`
}

type ctrlJSON struct {
	Address      string       `json:"address"`
	VendorID     string       `json:"vendor_id"`
	DeviceID     string       `json:"device_id"`
	Driver       string       `json:"driver"`
	NUMANode     *int         `json:"numa_node"`
	Link         *linkJSON    `json:"pcie_link"`
	Registers    *regState    `json:"registers"`
	Identified   bool         `json:"identified"`
	IOMMUGroup   *int         `json:"iommu_group"`
	Viable       bool         `json:"viable"`
	GroupMembers []memberJSON `json:"group_members"`
	Model        string       `json:"model"`
	Serial       string       `json:"serial"`
	Firmware     string       `json:"firmware"`
	Namespaces   []nsJSON     `json:"namespaces"`
	Note         string       `json:"note"`
}

type memberJSON struct {
	Address string `json:"address"`
	Driver  string `json:"driver"`
	Bridge  bool   `json:"bridge"`
	Blocks  bool   `json:"blocks"`
}

type nsJSON struct {
	NSID      uint32 `json:"nsid"`
	Blocks    uint64 `json:"blocks"`
	BlockSize int    `json:"block_size"`
	Bytes     uint64 `json:"bytes"`
	Device    string `json:"device"` // kernel block device, "" on vfio-pci
}

// linkJSON is a PCIe link's speed (GT/s) and width (lanes), current and
// maximum, from sysfs.
type linkJSON struct {
	Speed    float64 `json:"speed_gts"`
	Width    int     `json:"width"`
	MaxSpeed float64 `json:"max_speed_gts"`
	MaxWidth int     `json:"max_width"`
}

func (l *linkJSON) String() string {
	if l == nil {
		return "-"
	}
	s := fmt.Sprintf("%gGT/s x%d", l.Speed, l.Width)
	if l.Speed < l.MaxSpeed || l.Width < l.MaxWidth {
		s += fmt.Sprintf(" (max %gGT/s x%d)", l.MaxSpeed, l.MaxWidth)
	}
	return s
}

func listCmd(a app, g *globals) *cobra.Command {
	var identify bool
	cmd := &cobra.Command{
		Use:   "list [--identify]",
		Short: "List NVMe controllers: driver, NUMA node, PCIe link, IOMMU group, state, namespaces",
		Long: "list prints every NVMe controller with what PCI config space, sysfs and the kernel driver\n" +
			"say about it, without touching it: driver, NUMA node, PCIe link, IOMMU group, and for a\n" +
			"controller on vfio-pci its state read from CC and CSTS (BAR0 mapped read-only through sysfs;\n" +
			"no VFIO open, no reset). A controller on the kernel's nvme driver shows its model, serial,\n" +
			"firmware and namespaces from sysfs. --identify also opens each idle controller on vfio-pci\n" +
			"to read its identity and namespaces: that is a bring-up, which resets the controller.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return list(cmd.OutOrStdout(), cmd.ErrOrStderr(), g.out, a, identify)
		},
	}
	cmd.Flags().BoolVar(&identify, "identify", false, "open each idle controller on vfio-pci to read its identity (resets it)")
	return cmd
}

// list writes the NVMe controllers a finds to w in format f. With
// identify it brings up every idle controller on vfio-pci, and says so on
// ew.
func list(w, ew io.Writer, f format, a app, identify bool) error {
	ctrls, err := a.list()
	if err != nil {
		return deviceError{fmt.Errorf("list: %w", err)}
	}
	pci := a.pciInfo()
	doc := listJSON{Controllers: []ctrlJSON{}}
	for _, c := range ctrls {
		if identify && c.Driver == "vfio-pci" && c.Viable {
			fmt.Fprintf(ew, "nvmectl: list --identify: opening %s (a controller reset)\n", c.Addr)
		}
		doc.Controllers = append(doc.Controllers, describe(a, c, pci[c.Addr], identify))
	}
	if f == formatJSON {
		return writeJSON(w, doc)
	}
	return listAsText(w, ctrls, doc)
}

// pciAttrs is what sysfs says about a PCI function's place in the machine.
type pciAttrs struct {
	numa *int
	link *linkJSON
}

// pciInfo reads the NUMA node and PCIe link of every PCI device
// (prometheus/procfs). A machine whose sysfs it cannot parse gets no
// NUMA or link columns rather than an error.
func (a app) pciInfo() map[string]pciAttrs {
	out := map[string]pciAttrs{}
	fs, err := sysfs.NewFS(a.path("/sys"))
	if err != nil {
		return out
	}
	devs, err := fs.PciDevices()
	if err != nil {
		return out
	}
	for _, d := range devs {
		// The map's keys (PciDeviceLocation.String) put a colon before
		// the function; name the device as sysfs does.
		l := d.Location
		name := fmt.Sprintf("%04x:%02x:%02x.%x", l.Segment, l.Bus, l.Device, l.Function)
		var p pciAttrs
		if d.NumaNode != nil && *d.NumaNode >= 0 {
			n := int(*d.NumaNode)
			p.numa = &n
		}
		if d.CurrentLinkSpeed != nil && d.CurrentLinkWidth != nil {
			l := &linkJSON{Speed: *d.CurrentLinkSpeed, Width: int(*d.CurrentLinkWidth)}
			l.MaxSpeed, l.MaxWidth = l.Speed, l.Width
			if d.MaxLinkSpeed != nil {
				l.MaxSpeed = *d.MaxLinkSpeed
			}
			if d.MaxLinkWidth != nil {
				l.MaxWidth = int(*d.MaxLinkWidth)
			}
			p.link = l
		}
		out[name] = p
	}
	return out
}

// describe fills one controller's entry without touching the controller;
// with identify it opens an idle one on vfio-pci.
func describe(a app, c vfio.Controller, p pciAttrs, identify bool) ctrlJSON {
	j := ctrlJSON{
		Address:      c.Addr,
		VendorID:     fmt.Sprintf("%04x", c.Vendor),
		DeviceID:     fmt.Sprintf("%04x", c.Device),
		Driver:       c.Driver,
		NUMANode:     p.numa,
		Link:         p.link,
		Viable:       c.Viable,
		GroupMembers: []memberJSON{},
		Namespaces:   []nsJSON{},
	}
	if c.Group >= 0 {
		g := c.Group
		j.IOMMUGroup = &g
	}
	blockers := map[string]bool{}
	for _, b := range c.Blockers() {
		blockers[b.Addr] = true
	}
	for _, m := range c.Members {
		j.GroupMembers = append(j.GroupMembers, memberJSON{
			Address: m.Addr, Driver: m.Driver, Bridge: m.Bridge(), Blocks: blockers[m.Addr],
		})
	}
	switch c.Driver {
	case "vfio-pci", "":
		if regs, unmap, err := a.regs(c.Addr); err == nil {
			st := readState(regs)
			unmap()
			j.Registers = &st
		} else if errors.Is(err, errMemoryOff) {
			j.Note = "memory decoding off (never enabled since boot): no state to read"
		} else if c.Driver == "vfio-pci" {
			j.Note = "registers not readable: " + err.Error()
		}
		if c.Driver == "" {
			break
		}
		if !c.Viable {
			j.Note = "iommu group not viable"
			break
		}
		if !identify {
			break
		}
		ctrl, err := a.open(c.Addr)
		if err != nil {
			if errors.Is(err, vfio.ErrBusy) {
				j.Note = "in use by another process"
			} else {
				j.Note = "open failed: " + err.Error()
			}
			break
		}
		j.Identified = true
		id := ctrl.Identify()
		j.Model, j.Serial, j.Firmware = id.MN, id.SN, id.FR
		for _, nsid := range ctrl.Namespaces() {
			ns, err := ctrl.Namespace(nsid)
			if err != nil {
				continue
			}
			j.Namespaces = append(j.Namespaces, nsJSON{NSID: nsid, Blocks: ns.Blocks(), BlockSize: ns.BlockSize(), Bytes: ns.Size()})
		}
		if err := ctrl.Close(); err != nil {
			j.Note = "close: " + err.Error()
		}
	case "nvme":
		k := a.kernelInfo(c.Addr)
		j.Identified = k.name != ""
		j.Model, j.Serial, j.Firmware = k.model, k.serial, k.firmware
		for _, d := range k.disks {
			dir := a.path("/sys/block/" + d)
			sectors, _ := strconv.ParseUint(readTrim(filepath.Join(dir, "size")), 10, 64)
			bs, _ := strconv.Atoi(readTrim(filepath.Join(dir, "queue/logical_block_size")))
			nsid, _ := strconv.ParseUint(d[strings.LastIndexByte(d, 'n')+1:], 10, 32)
			ns := nsJSON{NSID: uint32(nsid), BlockSize: bs, Bytes: sectors * 512, Device: d}
			if bs > 0 {
				ns.Blocks = ns.Bytes / uint64(bs)
			}
			j.Namespaces = append(j.Namespaces, ns)
		}
		if why := a.inUse(k); len(why) > 0 {
			j.Note = "in use: " + strings.Join(why, "; ")
		}
	}
	return j
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func listAsText(w io.Writer, ctrls []vfio.Controller, doc listJSON) error {
	if len(ctrls) == 0 {
		_, err := fmt.Fprintln(w, "no NVMe controllers found")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tVENDOR:DEVICE\tDRIVER\tNUMA\tLINK\tGROUP\tVIABLE\tSTATE\tSERIAL\tFW\tNAMESPACES\tMODEL")
	for i, c := range ctrls {
		j := doc.Controllers[i]
		group, viable := "none", "no-iommu"
		if c.Group >= 0 {
			group = strconv.Itoa(c.Group)
			viable = "yes"
			if !c.Viable {
				viable = "no"
			}
		}
		var nss []string
		for _, ns := range j.Namespaces {
			nss = append(nss, fmt.Sprintf("%d:%s/%d", ns.NSID, humanBytes(ns.Bytes), ns.BlockSize))
		}
		numa := "-"
		if j.NUMANode != nil {
			numa = strconv.Itoa(*j.NUMANode)
		}
		state := "-"
		if j.Registers != nil {
			state = strings.ReplaceAll(j.Registers.State, " ", "-")
			if i := strings.IndexByte(state, '('); i > 0 {
				state = strings.TrimRight(state[:i], "-")
			}
		}
		fmt.Fprintf(tw, "%s\t%04x:%04x\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Addr, c.Vendor, c.Device, dash(c.Driver),
			numa, strings.ReplaceAll(j.Link.String(), " ", ""), group, viable, state,
			dash(j.Serial), dash(j.Firmware), dash(strings.Join(nss, ",")), dash(j.Model))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, j := range doc.Controllers {
		if j.Driver == "vfio-pci" && j.Viable && !j.Identified {
			fmt.Fprintln(w, "(controllers on vfio-pci were not opened: list --identify reads their serial, firmware and namespaces, resetting them)")
			break
		}
	}
	for i, c := range ctrls {
		if note := doc.Controllers[i].Note; note != "" && note != "iommu group not viable" {
			fmt.Fprintf(w, "%s: %s\n", c.Addr, note)
		}
		if c.Group < 0 || c.Viable {
			continue
		}
		members := make([]string, len(c.Members))
		for i, m := range c.Members {
			d := m.Driver
			if d == "" {
				d = "no driver"
			}
			if m.Bridge() {
				d += ", bridge"
			}
			members[i] = fmt.Sprintf("%s (%s)", m.Addr, d)
		}
		if _, err := fmt.Fprintf(w, "%s: iommu group %d also holds %s; bind them to vfio-pci or unbind them\n",
			c.Addr, c.Group, strings.Join(members, ", ")); err != nil {
			return err
		}
	}
	return nil
}
