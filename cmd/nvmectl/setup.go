package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/seedb8fa28ef/gonvme/vfio"
)

// setupResult is one controller's line in setup's and reset's output.
type setupResult struct {
	Address  string   `json:"address"`
	Previous string   `json:"previous_driver"`
	Driver   string   `json:"driver"`
	Action   string   `json:"action"` // bound, already-bound, refused, failed, released, left-alone, skipped
	Reasons  []string `json:"reasons"`
}

func setupCmd(a app, g *globals) *cobra.Command {
	var sel selection
	var hugemem int
	var hugenode string
	var force bool
	cmd := &cobra.Command{
		Use:   "setup [ADDR...]",
		Short: "Bind controllers to vfio-pci, reserve hugepages, check IOMMU and memlock (like setup.sh)",
		Long: "setup binds the named NVMe controllers (all when none is named) to vfio-pci. It refuses a\n" +
			"controller whose namespaces are in use (a mounted file system, active swap, a holder such as\n" +
			"LVM or MD, an exclusive open, a lock) or hold data (a partition table, file system or volume\n" +
			"label) and leaves it alone, unless --force. --hugemem reserves 2 MiB hugepages.",
		RunE: func(cmd *cobra.Command, args []string) error {
			hp, err := hugeRequestFrom(a, cmd, hugemem, hugenode)
			if err != nil {
				return err
			}
			targets, skipped, err := sel.pick(a, cmd, args)
			if err != nil {
				return err
			}
			return setup(cmd.OutOrStdout(), cmd.ErrOrStderr(), g, a, targets, skipped, hp, force)
		},
	}
	sel.flags(cmd)
	cmd.Flags().IntVar(&hugemem, "hugemem", 0, "MiB of 2 MiB hugepages to reserve (default $HUGEMEM; 0 keeps the current reservation)")
	cmd.Flags().StringVar(&hugenode, "hugenode", "", "NUMA nodes for the hugepages: \"0,1\" (--hugemem on each) or \"nodes_hp[1]=512\" (default $HUGENODE, else node 0)")
	cmd.Flags().BoolVar(&force, "force", false, "bind controllers even when their block devices are in use (data loss)")
	return cmd
}

const hugepageKB = 2048

func setup(w, ew io.Writer, g *globals, a app, targets []vfio.Controller, skipped []skip, hp hugeRequest, force bool) error {
	// Hugepages first, like setup.sh: they are easiest to get early.
	if err := reserveHugepages(a, ew, hp); err != nil {
		return err
	}
	if a.iommuGroups() == 0 {
		return devicef("no IOMMU: the kernel made no IOMMU groups, so VFIO cannot isolate the controllers; " +
			"enable VT-d or AMD-Vi in the firmware and boot with intel_iommu=on (Intel) or amd_iommu=on (AMD)")
	}
	if !a.vfioPCILoaded() {
		return devicef("the vfio-pci driver is not loaded: run `modprobe vfio-pci`")
	}
	if soft, _, err := a.memlock(); err == nil && soft != ^uint64(0) && soft < 64<<20 {
		fmt.Fprintf(ew, "nvmectl: warning: RLIMIT_MEMLOCK is %s: a process without CAP_IPC_LOCK cannot pin its DMA memory; "+
			"run `ulimit -l unlimited` or raise memlock in /etc/security/limits.conf (root is exempt)\n", limitString(soft))
	}
	var results []setupResult
	bad := 0
	for _, c := range targets {
		r := setupResult{Address: c.Addr, Previous: c.Driver, Driver: c.Driver, Reasons: []string{}}
		switch {
		case c.Driver == "vfio-pci":
			r.Action = "already-bound"
		default:
			// The library's in-use check, the one vfio.Bind applies.
			r.Reasons = a.inUse(a.kernelInfo(c.Addr))
			if len(r.Reasons) > 0 && !force {
				r.Action = "refused"
				bad++
				break
			}
			var opts []vfio.BindOption
			if force {
				opts = append(opts, vfio.Force())
			}
			if _, err := a.bind(c.Addr, opts...); err != nil {
				var iu *vfio.InUseError
				if errors.As(err, &iu) { // in use since the check above
					r.Action, r.Reasons = "refused", useStrings(iu.Uses)
				} else {
					r.Action = "failed"
					r.Reasons = append(r.Reasons, err.Error())
				}
				bad++
				break
			}
			r.Action, r.Driver = "bound", "vfio-pci"
		}
		results = append(results, r)
	}
	if g.out == formatJSON {
		results = append(skippedResults(skipped), results...)
		if results == nil {
			results = []setupResult{}
		}
		hps := a.hugepages()
		if hps == nil {
			hps = []hugepages{}
		}
		if err := writeJSON(w, struct {
			Hugepages   []hugepages   `json:"hugepages"`
			Controllers []setupResult `json:"controllers"`
		}{hps, results}); err != nil {
			return err
		}
	} else {
		printSkipped(w, skipped)
		byAddr := map[string]vfio.Controller{}
		for _, c := range targets {
			byAddr[c.Addr] = c
		}
		for _, r := range results {
			c := byAddr[r.Address]
			id := fmt.Sprintf("%s (%04x %04x)", r.Address, c.Vendor, c.Device)
			switch r.Action {
			case "already-bound":
				fmt.Fprintf(w, "%s: already bound to vfio-pci\n", id)
			case "bound":
				fmt.Fprintf(w, "%s: %s -> vfio-pci\n", id, dash(r.Previous))
				if len(r.Reasons) > 0 {
					fmt.Fprintf(w, "%s: bound with --force although %s\n", id, strings.Join(r.Reasons, "; "))
				}
				if c.Group >= 0 && !c.Viable {
					fmt.Fprintf(w, "%s: iommu group %d holds devices on other drivers; bind them too before opening it\n", id, c.Group)
				}
			case "refused":
				fmt.Fprintf(w, "%s: in use, left on %s: %s (unmount, swapoff or release it first, or --force)\n", id, r.Previous, strings.Join(r.Reasons, "; "))
			case "failed":
				fmt.Fprintf(w, "%s: bind failed: %s\n", id, strings.Join(r.Reasons, "; "))
			}
		}
		if len(targets) == 0 && len(skipped) == 0 {
			fmt.Fprintln(w, "no NVMe controllers found")
		}
	}
	if bad > 0 {
		return devicef("setup: %d of %d controllers not bound to vfio-pci", bad, len(targets))
	}
	return nil
}

func resetCmd(a app, g *globals) *cobra.Command {
	var sel selection
	var driver string
	cmd := &cobra.Command{
		Use:   "reset [ADDR...]",
		Short: "Give controllers on vfio-pci back to the kernel's nvme driver (like setup.sh reset)",
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, skipped, err := sel.pick(a, cmd, args)
			if err != nil {
				return err
			}
			var results []setupResult
			bad := 0
			for _, c := range targets {
				r := setupResult{Address: c.Addr, Previous: c.Driver, Driver: c.Driver, Reasons: []string{}}
				if c.Driver != "vfio-pci" {
					r.Action = "left-alone"
				} else if err := a.release(c.Addr, driver); err != nil {
					r.Action = "failed"
					r.Reasons = append(r.Reasons, err.Error())
					bad++
				} else {
					r.Action, r.Driver = "released", driver
				}
				results = append(results, r)
			}
			w := cmd.OutOrStdout()
			if g.out == formatJSON {
				all := append(skippedResults(skipped), results...)
				if all == nil {
					all = []setupResult{}
				}
				if err := writeJSON(w, struct {
					Controllers []setupResult `json:"controllers"`
				}{all}); err != nil {
					return err
				}
			} else {
				printSkipped(w, skipped)
				if len(targets)+len(skipped) == 0 {
					fmt.Fprintln(w, "no NVMe controllers found")
				}
				for i, r := range results {
					c := targets[i]
					id := fmt.Sprintf("%s (%04x %04x)", r.Address, c.Vendor, c.Device)
					switch r.Action {
					case "left-alone":
						fmt.Fprintf(w, "%s: on %s, not vfio-pci: left alone\n", id, dash(r.Previous))
					case "released":
						fmt.Fprintf(w, "%s: vfio-pci -> %s\n", id, dash(driver))
					case "failed":
						fmt.Fprintf(w, "%s: release failed: %s\n", id, strings.Join(r.Reasons, "; "))
					}
				}
			}
			if bad > 0 {
				return devicef("reset: %d of %d controllers not released", bad, len(targets))
			}
			return nil
		},
	}
	sel.flags(cmd)
	cmd.Flags().StringVar(&driver, "driver", "nvme", "driver to give the controllers to")
	return cmd
}

type statusJSON struct {
	Hugepages []hugepages `json:"hugepages"`
	IOMMU     struct {
		Enabled bool `json:"enabled"`
		Groups  int  `json:"groups"`
	} `json:"iommu"`
	VFIOPCI bool `json:"vfio_pci"`
	Memlock struct {
		Soft      uint64 `json:"soft"`
		Hard      uint64 `json:"hard"`
		Unlimited bool   `json:"unlimited"`
	} `json:"memlock"`
	Controllers []statusCtrl `json:"controllers"`
}

type statusCtrl struct {
	Address      string    `json:"address"`
	VendorID     string    `json:"vendor_id"`
	DeviceID     string    `json:"device_id"`
	Driver       string    `json:"driver"`
	NUMANode     *int      `json:"numa_node"`
	Link         *linkJSON `json:"pcie_link"`
	Registers    *regState `json:"registers"`
	IOMMUGroup   *int      `json:"iommu_group"`
	BlockDevices []string  `json:"block_devices"`
	InUse        []string  `json:"in_use"`
}

func statusCmd(a app, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show hugepages, IOMMU, memlock limit and each controller's binding (like setup.sh status)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctrls, err := a.list()
			if err != nil {
				return deviceError{fmt.Errorf("status: %w", err)}
			}
			var st statusJSON
			st.Hugepages = a.hugepages()
			if st.Hugepages == nil {
				st.Hugepages = []hugepages{}
			}
			st.IOMMU.Groups = a.iommuGroups()
			st.IOMMU.Enabled = st.IOMMU.Groups > 0
			st.VFIOPCI = a.vfioPCILoaded()
			if soft, hard, err := a.memlock(); err == nil {
				st.Memlock.Soft, st.Memlock.Hard = soft, hard
				st.Memlock.Unlimited = soft == ^uint64(0)
			}
			st.Controllers = []statusCtrl{}
			pci := a.pciInfo()
			for _, c := range ctrls {
				s := statusCtrl{Address: c.Addr, VendorID: fmt.Sprintf("%04x", c.Vendor), DeviceID: fmt.Sprintf("%04x", c.Device),
					Driver: c.Driver, NUMANode: pci[c.Addr].numa, Link: pci[c.Addr].link, BlockDevices: []string{}, InUse: []string{}}
				if c.Driver != "nvme" {
					if regs, unmap, err := a.regs(c.Addr); err == nil {
						rs := readState(regs)
						unmap()
						s.Registers = &rs
					}
				}
				if c.Group >= 0 {
					g := c.Group
					s.IOMMUGroup = &g
				}
				if c.Driver == "nvme" {
					k := a.kernelInfo(c.Addr)
					if k.disks != nil {
						s.BlockDevices = k.disks
					}
					if why := a.inUse(k); why != nil {
						s.InUse = why
					}
				}
				st.Controllers = append(st.Controllers, s)
			}
			w := cmd.OutOrStdout()
			if g.out == formatJSON {
				return writeJSON(w, st)
			}
			for _, h := range st.Hugepages {
				fmt.Fprintf(w, "hugepages %d kB: %d reserved, %d free\n", h.SizeKB, h.Total, h.Free)
			}
			if st.IOMMU.Enabled {
				fmt.Fprintf(w, "iommu: on, %d groups\n", st.IOMMU.Groups)
			} else {
				fmt.Fprintln(w, "iommu: off (boot with intel_iommu=on or amd_iommu=on)")
			}
			if st.VFIOPCI {
				fmt.Fprintln(w, "vfio-pci: loaded")
			} else {
				fmt.Fprintln(w, "vfio-pci: not loaded (modprobe vfio-pci)")
			}
			fmt.Fprintf(w, "memlock: soft %s, hard %s\n", limitString(st.Memlock.Soft), limitString(st.Memlock.Hard))
			fmt.Fprintln(w)
			tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "ADDRESS\tVENDOR:DEVICE\tNUMA\tLINK\tDRIVER\tGROUP\tSTATE\tBLOCK DEVICES\tIN USE")
			for _, s := range st.Controllers {
				group := "none"
				if s.IOMMUGroup != nil {
					group = strconv.Itoa(*s.IOMMUGroup)
				}
				inUse := "no"
				if len(s.InUse) > 0 {
					inUse = strings.Join(s.InUse, "; ")
				}
				if s.Driver != "nvme" {
					inUse = "-"
				}
				numa, state := "-", "-"
				if s.NUMANode != nil {
					numa = strconv.Itoa(*s.NUMANode)
				}
				if s.Registers != nil {
					state = s.Registers.State
				}
				fmt.Fprintf(tw, "%s\t%s:%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Address, s.VendorID, s.DeviceID, numa,
					strings.ReplaceAll(s.Link.String(), " ", ""), dash(s.Driver), group, state,
					dash(strings.Join(s.BlockDevices, ",")), inUse)
			}
			return tw.Flush()
		},
	}
}
