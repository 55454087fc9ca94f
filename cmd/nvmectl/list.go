package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

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

func listCmd(a app, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List NVMe controllers: driver, IOMMU group, model, serial, firmware, namespaces",
		Long: "list prints every NVMe controller with its driver and IOMMU group. A controller on\n" +
			"vfio-pci that no process holds is opened briefly to read its identity and namespaces;\n" +
			"one on the kernel's nvme driver is described from sysfs.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return list(cmd.OutOrStdout(), g.out, a)
		},
	}
}

// list writes the NVMe controllers a finds to w in format f.
func list(w io.Writer, f format, a app) error {
	ctrls, err := a.list()
	if err != nil {
		return deviceError{fmt.Errorf("list: %w", err)}
	}
	doc := listJSON{Controllers: []ctrlJSON{}}
	for _, c := range ctrls {
		doc.Controllers = append(doc.Controllers, describe(a, c))
	}
	if f == formatJSON {
		return writeJSON(w, doc)
	}
	return listAsText(w, ctrls, doc)
}

// describe fills one controller's entry, opening it when it is on
// vfio-pci.
func describe(a app, c vfio.Controller) ctrlJSON {
	j := ctrlJSON{
		Address:      c.Addr,
		VendorID:     fmt.Sprintf("%04x", c.Vendor),
		DeviceID:     fmt.Sprintf("%04x", c.Device),
		Driver:       c.Driver,
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
	case "vfio-pci":
		if !c.Viable {
			j.Note = "iommu group not viable"
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
	fmt.Fprintln(tw, "ADDRESS\tVENDOR:DEVICE\tDRIVER\tGROUP\tVIABLE\tSERIAL\tFW\tNAMESPACES\tMODEL")
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
		fmt.Fprintf(tw, "%s\t%04x:%04x\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Addr, c.Vendor, c.Device, dash(c.Driver), group, viable,
			dash(j.Serial), dash(j.Firmware), dash(strings.Join(nss, ",")), dash(j.Model))
	}
	if err := tw.Flush(); err != nil {
		return err
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
