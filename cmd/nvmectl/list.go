package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

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
}

type memberJSON struct {
	Address string `json:"address"`
	Driver  string `json:"driver"`
	Bridge  bool   `json:"bridge"`
	Blocks  bool   `json:"blocks"`
}

// list writes the NVMe controllers lister finds to w in format f.
func list(w io.Writer, f format, lister func() ([]vfio.Controller, error)) error {
	ctrls, err := lister()
	if err != nil {
		return deviceError{fmt.Errorf("list: %w", err)}
	}
	if f == formatJSON {
		return listAsJSON(w, ctrls)
	}
	return listAsText(w, ctrls)
}

func listAsJSON(w io.Writer, ctrls []vfio.Controller) error {
	doc := listJSON{Controllers: []ctrlJSON{}}
	for _, c := range ctrls {
		j := ctrlJSON{
			Address:      c.Addr,
			VendorID:     fmt.Sprintf("%04x", c.Vendor),
			DeviceID:     fmt.Sprintf("%04x", c.Device),
			Driver:       c.Driver,
			Viable:       c.Viable,
			GroupMembers: []memberJSON{},
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
		doc.Controllers = append(doc.Controllers, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("list: write json: %w", err)
	}
	return nil
}

func listAsText(w io.Writer, ctrls []vfio.Controller) error {
	if len(ctrls) == 0 {
		_, err := fmt.Fprintln(w, "no NVMe controllers found")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tVENDOR:DEVICE\tDRIVER\tIOMMU GROUP\tVIABLE")
	for _, c := range ctrls {
		drv := c.Driver
		if drv == "" {
			drv = "-"
		}
		group, viable := "none", "no (no IOMMU)"
		if c.Group >= 0 {
			group = strconv.Itoa(c.Group)
			viable = "yes"
			if !c.Viable {
				viable = "no"
			}
		}
		fmt.Fprintf(tw, "%s\t%04x:%04x\t%s\t%s\t%s\n", c.Addr, c.Vendor, c.Device, drv, group, viable)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range ctrls {
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
