package main

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/seedb8fa28ef/gonvme/internal/mmio"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// adminCmds returns the nvme-cli style admin verbs. Each takes the
// controller's PCI address as its only argument.
func adminCmds(a app, g *globals) []*cobra.Command {
	return []*cobra.Command{
		idCtrlCmd(a, g), idNSCmd(a, g), listNSCmd(a, g), nsDescsCmd(a, g),
		smartLogCmd(a, g), errorLogCmd(a, g), fwLogCmd(a, g), effectsLogCmd(a, g),
		getFeatureCmd(a, g), setFeatureCmd(a, g), showRegsCmd(a, g), formatCmd(a, g),
	}
}

// ctrlCmd builds a verb that opens the controller named by its argument.
// check, when not nil, validates the flags before anything else happens:
// a usage error found without the device must never cost a bring-up
// (which resets the controller).
func ctrlCmd(a app, use, short string, check func(cmd *cobra.Command) error, run func(cmd *cobra.Command, c *nvme.Controller) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " ADDR",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := parseAddr(args[0]); err != nil {
				return err
			}
			if check != nil {
				if err := check(cmd); err != nil {
					return err
				}
			}
			return withCtrl(a, args[0], func(c *nvme.Controller) error { return run(cmd, c) })
		},
	}
}

// checkNSIDFlag refuses namespace IDs no command may name: 0, and the
// broadcast value 0xffffffff unless allowed.
func checkNSIDFlag(nsid uint32, broadcast bool) error {
	if nsid == 0 {
		return usagef("--namespace-id 0 is not a namespace (namespace IDs start at 1)")
	}
	if nsid == spec.NSIDAll && !broadcast {
		return usagef("--namespace-id 0xffffffff (every namespace) does not apply here: name one namespace")
	}
	return nil
}

var oacsNames = map[uint]string{0: "Security", 1: "Format NVM", 2: "Firmware", 3: "Namespace Management",
	4: "Device Self-test", 5: "Directives", 6: "NVMe-MI", 7: "Virtualization", 8: "Doorbell Buffer Config",
	9: "Get LBA Status", 10: "Command and Feature Lockdown"}
var oncsNames = map[uint]string{0: "Compare", 1: "Write Uncorrectable", 2: "Dataset Management",
	3: "Write Zeroes", 4: "Save/Select", 5: "Reservations", 6: "Timestamp", 7: "Verify", 8: "Copy"}

func uuidString(b [16]byte) string {
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// idCtrlRecord lays out Identify Controller with nvme-cli's keys.
func idCtrlRecord(id *spec.IdentifyController, human bool) record {
	var r record
	hx := func(k string, v uint64, names map[uint]string) {
		t := fmt.Sprintf("%#x", v)
		if human && names != nil {
			t += " (" + bits(v, names) + ")"
		}
		r.add(k, v, t)
	}
	r.hex("vid", uint64(id.VID))
	r.hex("ssvid", uint64(id.SSVID))
	r.add("sn", id.SN)
	r.add("mn", id.MN)
	r.add("fr", id.FR)
	r.add("rab", id.RAB)
	ieee := uint64(id.IEEE[2])<<16 | uint64(id.IEEE[1])<<8 | uint64(id.IEEE[0])
	r.add("ieee", ieee, fmt.Sprintf("%06x", ieee))
	r.hex("cmic", uint64(id.CMIC))
	mdts := fmt.Sprint(id.MDTS)
	if human {
		if n, unlimited := id.MaxTransfer(4096); unlimited {
			mdts += " (no limit)"
		} else {
			mdts += " (" + humanBytes(uint64(n)) + " at 4 KiB pages)"
		}
	}
	r.add("mdts", id.MDTS, mdts)
	r.add("cntlid", id.CNTLID, fmt.Sprintf("%#x", id.CNTLID))
	ver := fmt.Sprintf("%#x", uint32(id.VER))
	if human {
		ver += " (" + id.VER.String() + ")"
	}
	r.add("ver", uint32(id.VER), ver)
	r.add("rtd3r", id.RTD3R)
	r.add("rtd3e", id.RTD3E)
	r.hex("oaes", uint64(id.OAES))
	r.hex("ctratt", uint64(id.CTRATT))
	r.add("rrls", id.RRLS)
	r.add("cntrltype", id.CNTRLTYPE)
	r.add("fguid", uuidString(id.FGUID))
	r.add("crdt1", id.CRDT[0])
	r.add("crdt2", id.CRDT[1])
	r.add("crdt3", id.CRDT[2])
	r.add("nvmsr", id.NVMSR)
	r.add("vwci", id.VWCI)
	r.add("mec", id.MEC)
	hx("oacs", uint64(id.OACS), oacsNames)
	r.add("acl", id.ACL)
	r.add("aerl", id.AERL)
	r.hex("frmw", uint64(id.FRMW))
	r.hex("lpa", uint64(id.LPA))
	r.add("elpe", id.ELPE)
	r.add("npss", id.NPSS)
	r.hex("avscc", uint64(id.AVSCC))
	r.hex("apsta", uint64(id.APSTA))
	temp := func(k string, v uint16) {
		t := fmt.Sprint(v)
		if human && v != 0 {
			t = fmt.Sprintf("%d K (%d °C)", v, spec.CelsiusFromKelvin(v))
		}
		r.add(k, v, t)
	}
	temp("wctemp", id.WCTEMP)
	temp("cctemp", id.CCTEMP)
	r.add("mtfa", id.MTFA)
	r.add("hmpre", id.HMPRE)
	r.add("hmmin", id.HMMIN)
	r.add("tnvmcap", u128(id.TNVMCAP))
	r.add("unvmcap", u128(id.UNVMCAP))
	r.add("rpmbs", id.RPMBS)
	r.add("edstt", id.EDSTT)
	r.add("dsto", id.DSTO)
	r.add("fwug", id.FWUG)
	r.add("kas", id.KAS)
	r.add("hctma", id.HCTMA)
	r.add("mntmt", id.MNTMT)
	r.add("mxtmt", id.MXTMT)
	r.hex("sanicap", uint64(id.SANICAP))
	r.add("hmminds", id.HMMINDS)
	r.add("hmmaxd", id.HMMAXD)
	r.add("nsetidmax", id.NSETIDMAX)
	r.add("endgidmax", id.ENDGIDMAX)
	r.add("anatt", id.ANATT)
	r.add("anacap", id.ANACAP)
	r.add("anagrpmax", id.ANAGRPMAX)
	r.add("nanagrpid", id.NANAGRPID)
	r.add("pels", id.PELS)
	r.add("domainid", id.DomainID)
	r.add("megcap", u128(id.MEGCAP))
	r.hex("sqes", uint64(id.SQES))
	r.hex("cqes", uint64(id.CQES))
	r.add("maxcmd", id.MAXCMD)
	r.add("nn", id.NN)
	hx("oncs", uint64(id.ONCS), oncsNames)
	r.hex("fuses", uint64(id.FUSES))
	r.hex("fna", uint64(id.FNA))
	vwc := fmt.Sprintf("%#x", id.VWC)
	if human {
		if id.HasVolatileWriteCache() {
			vwc += " (volatile write cache present)"
		} else {
			vwc += " (no volatile write cache)"
		}
	}
	r.add("vwc", id.VWC, vwc)
	r.add("awun", id.AWUN)
	r.add("awupf", id.AWUPF)
	r.add("icsvscc", id.NVSCC)
	r.add("nwpc", id.NWPC)
	r.add("acwu", id.ACWU)
	r.hex("ocfs", uint64(id.OCFS))
	r.hex("sgls", uint64(id.SGLS))
	r.add("mnan", id.MNAN)
	r.add("maxdna", u128(id.MAXDNA))
	r.add("maxcna", id.MAXCNA)
	if id.SUBNQN != "" {
		r.add("subnqn", id.SUBNQN)
	}
	r.add("ioccsz", id.IOCCSZ)
	r.add("iorcsz", id.IORCSZ)
	r.add("icdoff", id.ICDOFF)
	r.add("fcatt", id.FCATT)
	r.add("msdbd", id.MSDBD)
	r.add("ofcs", id.OFCS)
	return r
}

func psdRecord(p spec.PowerState) record {
	var r record
	b2i := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	r.add("max_power", p.MP)
	r.add("max_power_scale", b2i(p.MXPS))
	r.add("non-operational_state", b2i(p.NOPS))
	r.add("entry_lat", p.ENLAT)
	r.add("exit_lat", p.EXLAT)
	r.add("read_tput", p.RRT)
	r.add("read_lat", p.RRL)
	r.add("write_tput", p.RWT)
	r.add("write_lat", p.RWL)
	r.add("idle_power", p.IDLP)
	r.add("idle_scale", p.IPS)
	r.add("active_power", p.ACTP)
	r.add("active_power_work", p.APW)
	r.add("active_scale", p.APS)
	return r
}

func idCtrlCmd(a app, g *globals) *cobra.Command {
	return ctrlCmd(a, "id-ctrl", "Identify Controller (nvme id-ctrl)", nil, func(cmd *cobra.Command, c *nvme.Controller) error {
		id := c.Identify()
		r := idCtrlRecord(id, g.human)
		w := cmd.OutOrStdout()
		if g.out == formatJSON {
			psds := []record{}
			for _, p := range id.PowerStates() {
				psds = append(psds, psdRecord(p))
			}
			r.add("psds", psds)
			return writeJSON(w, r)
		}
		fmt.Fprintln(w, "NVME Identify Controller:")
		for i, p := range id.PowerStates() {
			op := "operational"
			if p.NOPS {
				op = "non-operational"
			}
			r.add(fmt.Sprintf("ps %4d", i), nil, fmt.Sprintf("mp:%.2fW %s enlat:%d exlat:%d rrt:%d rrl:%d rwt:%d rwl:%d",
				p.MaxPowerWatts(), op, p.ENLAT, p.EXLAT, p.RRT, p.RRL, p.RWT, p.RWL))
		}
		return r.writeText(w)
	})
}

func nsFlag(cmd *cobra.Command, p *uint32, def uint32, what string) {
	cmd.Flags().Uint32VarP(p, "namespace-id", "n", def, what)
}

func idNSRecord(id *spec.IdentifyNamespace, human bool) record {
	var r record
	r.add("nsze", id.NSZE, fmt.Sprintf("%#x", id.NSZE))
	r.add("ncap", id.NCAP, fmt.Sprintf("%#x", id.NCAP))
	r.add("nuse", id.NUSE, fmt.Sprintf("%#x", id.NUSE))
	r.hex("nsfeat", uint64(id.NSFEAT))
	r.add("nlbaf", id.NLBAF)
	r.hex("flbas", uint64(id.FLBAS))
	r.hex("mc", uint64(id.MC))
	r.hex("dpc", uint64(id.DPC))
	r.hex("dps", uint64(id.DPS))
	r.hex("nmic", uint64(id.NMIC))
	r.hex("rescap", uint64(id.RESCAP))
	r.hex("fpi", uint64(id.FPI))
	r.hex("dlfeat", uint64(id.DLFEAT))
	r.add("nawun", id.NAWUN)
	r.add("nawupf", id.NAWUPF)
	r.add("nacwu", id.NACWU)
	r.add("nabsn", id.NABSN)
	r.add("nabo", id.NABO)
	r.add("nabspf", id.NABSPF)
	r.add("noiob", id.NOIOB)
	r.add("nvmcap", u128(id.NVMCAP))
	if id.NSFEAT&0x10 != 0 {
		r.add("npwg", id.NPWG)
		r.add("npwa", id.NPWA)
		r.add("npdg", id.NPDG)
		r.add("npda", id.NPDA)
		r.add("nows", id.NOWS)
	}
	r.add("mssrl", id.MSSRL)
	r.add("mcl", id.MCL)
	r.add("msrc", id.MSRC)
	r.add("anagrpid", id.ANAGRPID)
	r.add("nsattr", id.NSATTR)
	r.add("nvmsetid", id.NVMSETID)
	r.add("endgid", id.ENDGID)
	r.add("nguid", hex.EncodeToString(id.NGUID[:]))
	r.add("eui64", hex.EncodeToString(id.EUI64[:]))
	return r
}

func lbafRecord(id *spec.IdentifyNamespace, i int) record {
	f := id.LBAF[i]
	inUse := 0
	if i == id.FormatIndex() {
		inUse = 1
	}
	var r record
	r.add("lbaf", i)
	r.add("ms", f.MS)
	r.add("ds", f.LBADS)
	r.add("rp", f.RP)
	r.add("in_use", inUse)
	return r
}

func idNSCmd(a app, g *globals) *cobra.Command {
	var nsid uint32
	cmd := ctrlCmd(a, "id-ns", "Identify Namespace (nvme id-ns)", func(*cobra.Command) error { return checkNSIDFlag(nsid, false) }, func(cmd *cobra.Command, c *nvme.Controller) error {
		if err := checkNSID(c, nsid); err != nil {
			return err
		}
		id, err := c.IdentifyNamespace(nsid)
		if err != nil {
			return err
		}
		r := idNSRecord(id, g.human)
		w := cmd.OutOrStdout()
		if g.out == formatJSON {
			lbafs := []record{}
			for i := range id.NumFormats() {
				lbafs = append(lbafs, lbafRecord(id, i))
			}
			r.add("lbafs", lbafs)
			return writeJSON(w, r)
		}
		fmt.Fprintf(w, "NVME Identify Namespace %d:\n", nsid)
		rp := []string{"Best", "Better", "Good", "Degraded"}
		for i := range id.NumFormats() {
			f := id.LBAF[i]
			t := fmt.Sprintf("ms:%-3d lbads:%-2d rp:%#x", f.MS, f.LBADS, f.RP)
			if g.human {
				t = fmt.Sprintf("Metadata Size: %-3d bytes - Data Size: %-2d bytes - Relative Performance: %#x %s", f.MS, 1<<f.LBADS, f.RP, rp[f.RP&3])
			}
			if i == id.FormatIndex() {
				t += " (in use)"
			}
			r.add(fmt.Sprintf("lbaf %2d", i), nil, t)
		}
		return r.writeText(w)
	})
	nsFlag(cmd, &nsid, 1, "namespace to identify")
	return cmd
}

func listNSCmd(a app, g *globals) *cobra.Command {
	return ctrlCmd(a, "list-ns", "List active namespace IDs (nvme list-ns)", nil, func(cmd *cobra.Command, c *nvme.Controller) error {
		var ids []uint32
		for after := uint32(0); ; {
			page, err := c.ActiveNamespaces(after)
			if err != nil {
				return err
			}
			ids = append(ids, page...)
			if len(page) < spec.MaxNamespaceListEntries {
				break
			}
			after = page[len(page)-1]
		}
		w := cmd.OutOrStdout()
		if g.out == formatJSON {
			list := []record{}
			for _, id := range ids {
				list = append(list, record{{key: "nsid", val: id}})
			}
			return writeJSON(w, record{{key: "nsid_list", val: list}})
		}
		for i, id := range ids {
			fmt.Fprintf(w, "[%4d]:%#x\n", i, id)
		}
		return nil
	})
}

func nsDescsCmd(a app, g *globals) *cobra.Command {
	var nsid uint32
	cmd := ctrlCmd(a, "ns-descs", "Namespace Identification Descriptors (nvme ns-descs)", func(*cobra.Command) error { return checkNSIDFlag(nsid, false) }, func(cmd *cobra.Command, c *nvme.Controller) error {
		if err := checkNSID(c, nsid); err != nil {
			return err
		}
		ds, err := c.NamespaceDescriptors(nsid)
		if err != nil {
			return err
		}
		var r record
		for _, d := range ds {
			switch d.Type {
			case spec.NIDTEUI64:
				r.add("eui64", hex.EncodeToString(d.ID))
			case spec.NIDTNGUID:
				r.add("nguid", hex.EncodeToString(d.ID))
			case spec.NIDTUUID:
				r.add("uuid", strings.TrimPrefix(d.String(), "uuid "))
			case spec.NIDTCSI:
				r.add("csi", d.ID[0])
			default:
				r.add(fmt.Sprintf("type_%#x", d.Type), hex.EncodeToString(d.ID))
			}
		}
		if r == nil {
			r = record{}
		}
		return emit(cmd.OutOrStdout(), g, fmt.Sprintf("NVME Namespace Identification Descriptors NS %d:", nsid), r)
	})
	nsFlag(cmd, &nsid, 1, "namespace")
	return cmd
}

var smartWarnNames = map[uint]string{0: "available spare low", 1: "temperature", 2: "reliability degraded",
	3: "read only", 4: "volatile memory backup failed", 5: "persistent memory region read only"}

func smartRecord(s *spec.SMARTLog, human bool) record {
	var r record
	cw := fmt.Sprintf("%#x", s.CriticalWarning)
	if human {
		cw += " (" + bits(uint64(s.CriticalWarning), smartWarnNames) + ")"
	}
	r.add("critical_warning", s.CriticalWarning, cw)
	r.add("temperature", s.CompositeTemperature, fmt.Sprintf("%d °C (%d K)", spec.CelsiusFromKelvin(s.CompositeTemperature), s.CompositeTemperature))
	r.add("avail_spare", s.AvailableSpare, fmt.Sprintf("%d%%", s.AvailableSpare))
	r.add("spare_thresh", s.AvailableSpareThresh, fmt.Sprintf("%d%%", s.AvailableSpareThresh))
	r.add("percent_used", s.PercentageUsed, fmt.Sprintf("%d%%", s.PercentageUsed))
	r.add("endurance_grp_critical_warning_summary", s.EnduranceGroupWarning)
	units := func(k string, u spec.Uint128) {
		t := u.String()
		if v, ok := u.Uint64(); ok && v < 1<<44 {
			t += " (" + humanBytes(v*512000) + ")"
		}
		r.add(k, u128(u), t)
	}
	units("data_units_read", s.DataUnitsRead)
	units("data_units_written", s.DataUnitsWritten)
	r.add("host_read_commands", u128(s.HostReadCommands))
	r.add("host_write_commands", u128(s.HostWriteCommands))
	r.add("controller_busy_time", u128(s.ControllerBusyTime))
	r.add("power_cycles", u128(s.PowerCycles))
	r.add("power_on_hours", u128(s.PowerOnHours))
	r.add("unsafe_shutdowns", u128(s.UnsafeShutdowns))
	r.add("media_errors", u128(s.MediaErrors))
	r.add("num_err_log_entries", u128(s.ErrorLogEntries))
	r.add("warning_temp_time", s.WarningTempTime)
	r.add("critical_comp_time", s.CriticalTempTime)
	for i, t := range s.TemperatureSensors {
		if t != 0 {
			r.add(fmt.Sprintf("temperature_sensor_%d", i+1), t, fmt.Sprintf("%d °C (%d K)", spec.CelsiusFromKelvin(t), t))
		}
	}
	r.add("thm_temp1_trans_count", s.ThermalMgmtT1Count)
	r.add("thm_temp2_trans_count", s.ThermalMgmtT2Count)
	r.add("thm_temp1_total_time", s.ThermalMgmtT1Time)
	r.add("thm_temp2_total_time", s.ThermalMgmtT2Time)
	return r
}

func smartLogCmd(a app, g *globals) *cobra.Command {
	nsid := uint32(spec.NSIDAll)
	cmd := ctrlCmd(a, "smart-log", "SMART / Health Information log (nvme smart-log)", func(*cobra.Command) error {
		if nsid == 0 {
			return usagef("smart-log: --namespace-id 0 is not a namespace (0xffffffff, the default, is the controller)")
		}
		return nil
	}, func(cmd *cobra.Command, c *nvme.Controller) error {
		b := make([]byte, 512)
		if err := c.GetLogPage(spec.LogSMART, nsid, 0, false, 0, b); err != nil {
			return err
		}
		s, err := spec.ParseSMARTLog(b)
		if err != nil {
			return deviceError{err}
		}
		return emit(cmd.OutOrStdout(), g, fmt.Sprintf("Smart Log for NVME device:%s namespace-id:%x", cmd.Flags().Arg(0), nsid), smartRecord(s, g.human))
	})
	nsFlag(cmd, &nsid, spec.NSIDAll, "namespace (default 0xffffffff: the controller; per namespace needs LPA bit 0)")
	return cmd
}

func errorLogRecord(e spec.ErrorLogEntry, human bool) record {
	var r record
	r.add("error_count", e.ErrorCount)
	r.add("sqid", e.SQID)
	r.add("cmdid", e.CID, fmt.Sprintf("%#x", e.CID))
	st := fmt.Sprintf("%#x", uint16(e.Status))
	if human {
		st += " (" + e.Status.String() + ")"
	}
	r.add("status_field", uint16(e.Status), st)
	r.add("status_name", e.Status.Name())
	r.add("parm_error_location", e.ParamErrorLocation, fmt.Sprintf("%#x", e.ParamErrorLocation))
	r.add("lba", e.LBA)
	r.add("nsid", e.NSID)
	r.add("vs", e.VendorInfoLogPage)
	r.add("trtype", e.TransportType)
	r.add("cs", e.CommandSpecific, fmt.Sprintf("%#x", e.CommandSpecific))
	r.add("trtype_spec_info", e.TransportSpecific)
	r.add("log_page_version", e.LogPageVersion)
	return r
}

func errorLogCmd(a app, g *globals) *cobra.Command {
	var entries int
	cmd := ctrlCmd(a, "error-log", "Error Information log (nvme error-log)", func(*cobra.Command) error {
		if entries < 0 || entries > 256 {
			return usagef("error-log: --log-entries %d: want 1 to 256 (0: ELPE+1)", entries)
		}
		return nil
	}, func(cmd *cobra.Command, c *nvme.Controller) error {
		n := entries
		if n <= 0 {
			n = int(c.Identify().ELPE) + 1
		}
		es, err := c.ErrorLog(n)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if g.out == formatJSON {
			list := []record{}
			for _, e := range es {
				list = append(list, errorLogRecord(e, g.human))
			}
			return writeJSON(w, record{{key: "errors", val: list}})
		}
		fmt.Fprintf(w, "Error Log Entries for device:%s entries:%d\n", cmd.Flags().Arg(0), len(es))
		fmt.Fprintln(w, ".................")
		for i, e := range es {
			fmt.Fprintf(w, " Entry[%2d]\n", i)
			fmt.Fprintln(w, ".................")
			if err := errorLogRecord(e, g.human).writeText(w); err != nil {
				return err
			}
			fmt.Fprintln(w, ".................")
		}
		return nil
	})
	cmd.Flags().IntVarP(&entries, "log-entries", "e", 0, "entries to read (default ELPE+1)")
	return cmd
}

// fwRevNumber is nvme-cli's number for a firmware revision: its 8 bytes,
// space padded, as a little-endian integer.
func fwRevNumber(s string) uint64 {
	var b [8]byte
	for i := range b {
		b[i] = ' '
	}
	copy(b[:], s)
	return binary.LittleEndian.Uint64(b[:])
}

func fwLogCmd(a app, g *globals) *cobra.Command {
	return ctrlCmd(a, "fw-log", "Firmware Slot Information log (nvme fw-log)", nil, func(cmd *cobra.Command, c *nvme.Controller) error {
		f, err := c.FirmwareSlotLog()
		if err != nil {
			return err
		}
		var r record
		afi := fmt.Sprintf("%#x", f.AFI)
		if g.human {
			afi += fmt.Sprintf(" (active slot %d, next slot %d)", f.ActiveSlot(), f.NextSlot())
		}
		r.add("Active Firmware Slot (afi)", f.AFI, afi)
		for i, s := range f.FRS {
			if s != "" {
				r.add(fmt.Sprintf("Firmware Rev Slot %d", i+1), fmt.Sprintf("%d (%s)", fwRevNumber(s), s), s)
			}
		}
		w := cmd.OutOrStdout()
		if g.out == formatJSON {
			// nvme-cli keys the object by device name.
			return writeJSON(w, record{{key: cmd.Flags().Arg(0), val: r}})
		}
		fmt.Fprintf(w, "Firmware Log for device:%s\n", cmd.Flags().Arg(0))
		return r.writeText(w)
	})
}

func effectsLogCmd(a app, g *globals) *cobra.Command {
	return ctrlCmd(a, "effects-log", "Commands Supported and Effects log (nvme effects-log)", nil, func(cmd *cobra.Command, c *nvme.Controller) error {
		l, err := c.CommandEffectsLog()
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		acs, iocs := record{}, record{}
		for op := range 256 {
			if e := l.Admin[op]; e.CSUPP() {
				acs.add(fmt.Sprintf("ACS_%d (%s)", op, spec.AdminOpcodeName(spec.Opcode(op))), uint32(e))
			}
			if e := l.IO[op]; e.CSUPP() {
				iocs.add(fmt.Sprintf("IOCS_%d (%s)", op, spec.IOOpcodeName(spec.Opcode(op))), uint32(e))
			}
		}
		if g.out == formatJSON {
			return writeJSON(w, record{{key: "admin_cmd_set", val: acs}, {key: "io_cmd_set", val: iocs}})
		}
		show := func(title, prefix string, tab *[256]spec.CommandEffect, name func(spec.Opcode) string) {
			fmt.Fprintln(w, title)
			for op := range 256 {
				e := tab[op]
				if !e.CSUPP() {
					continue
				}
				fmt.Fprintf(w, "%s%-3d [%-32s] %08x", prefix, op, name(spec.Opcode(op)), uint32(e))
				if g.human {
					var fx []string
					for _, b := range []struct {
						on   bool
						name string
					}{{e.LBCC(), "LBCC"}, {e.NCC(), "NCC"}, {e.NIC(), "NIC"}, {e.CCC(), "CCC"}, {e.USS(), "USS"}} {
						if b.on {
							fx = append(fx, b.name)
						}
					}
					fmt.Fprintf(w, " CSUPP %s CSE %d", strings.Join(fx, " "), e.CSE())
				}
				fmt.Fprintln(w)
			}
		}
		show("Admin Command Set", "ACS", &l.Admin, spec.AdminOpcodeName)
		fmt.Fprintln(w)
		show("NVM Command Set", "IOCS", &l.IO, spec.IOOpcodeName)
		return nil
	})
}

var selNames = []string{"Current", "Default", "Saved", "Supported capabilities"}

// featureDataLen is the size of the data structure a feature returns, 0
// for features whose value is all in completion dword 0.
func featureDataLen(fid uint8) int {
	switch fid {
	case spec.FeatureLBARangeType:
		return 4096
	case spec.FeatureTimestamp:
		return 8
	case spec.FeatureAutonomousPowerState:
		return 256
	case spec.FeatureHostIdentifier:
		return 16
	case spec.FeatureHostMemoryBuffer:
		return 4096
	case spec.FeaturePLMConfig, spec.FeatureHostBehaviorSupport:
		return 512
	}
	return 0
}

// decodeFeature explains a feature value for -H.
func decodeFeature(fid uint8, v uint32) string {
	switch fid {
	case spec.FeatureArbitration:
		a := spec.Arbitration(v)
		ab := fmt.Sprint(1 << a.AB())
		if a.AB() == 7 {
			ab = "no limit"
		}
		return fmt.Sprintf("High Priority Weight (HPW): %d, Medium Priority Weight (MPW): %d, Low Priority Weight (LPW): %d, Arbitration Burst (AB): %s",
			int(a.HPW())+1, int(a.MPW())+1, int(a.LPW())+1, ab)
	case spec.FeaturePowerManagement:
		return fmt.Sprintf("Workload Hint (WH): %d, Power State (PS): %d", v>>5&7, v&0x1f)
	case spec.FeatureTemperatureThreshold:
		return fmt.Sprintf("Threshold Type Select (THSEL): %d, Threshold Temperature Select (TMPSEL): %d, Temperature Threshold (TMPTH): %d K (%d °C)",
			v>>20&3, v>>16&0xf, v&0xffff, spec.CelsiusFromKelvin(uint16(v)))
	case spec.FeatureErrorRecovery:
		return fmt.Sprintf("Deallocated or Unwritten Logical Block Error Enable (DULBE): %t, Time Limited Error Recovery (TLER): %d ms", v&(1<<16) != 0, (v&0xffff)*100)
	case spec.FeatureVolatileWriteCache:
		if v&spec.VolatileWriteCacheEnable != 0 {
			return "Volatile Write Cache Enable (WCE): Enabled"
		}
		return "Volatile Write Cache Enable (WCE): Disabled"
	case spec.FeatureNumberOfQueues:
		nsq, ncq := spec.ParseNumberOfQueues(v)
		return fmt.Sprintf("Number of IO Completion Queues Allocated (NCQA): %d, Number of IO Submission Queues Allocated (NSQA): %d", ncq, nsq)
	case spec.FeatureInterruptCoalescing:
		return fmt.Sprintf("Aggregation Time (TIME): %d usec, Aggregation Threshold (THR): %d", (v>>8&0xff)*100, v&0xff+1)
	case spec.FeatureWriteAtomicity:
		return fmt.Sprintf("Disable Normal (DN): %t", v&1 != 0)
	case spec.FeatureAsyncEventConfig:
		return fmt.Sprintf("SMART / Health Critical Warnings: %#x, Notices: %#x", v&0xff, v>>8)
	}
	return ""
}

func getFeatureCmd(a app, g *globals) *cobra.Command {
	var fid, sel uint8
	var nsid, cdw11 uint32
	var dataLen int
	cmd := ctrlCmd(a, "get-feature", "Get Features: one (-f FID) or, as nvme-cli does without -f, every feature the controller answers", func(cmd *cobra.Command) error {
		if cmd.Flags().Changed("feature-id") && fid == 0 {
			return usagef("get-feature: feature 0 is reserved (leave out -f for every feature)")
		}
		if sel > 3 {
			return usagef("get-feature: --sel %d: want 0 (current), 1 (default), 2 (saved) or 3 (supported capabilities)", sel)
		}
		if dataLen < 0 || dataLen > 4096 {
			return usagef("get-feature: --data-len %d: want 0 to 4096", dataLen)
		}
		if !cmd.Flags().Changed("feature-id") && cmd.Flags().Changed("data-len") {
			return usagef("get-feature: --data-len needs -f: without it every feature is read with its own length")
		}
		return nil
	}, func(cmd *cobra.Command, c *nvme.Controller) error {
		w := cmd.OutOrStdout()
		one := func(fid uint8, n int) (record, error) {
			// The command always carries a page to write into: a device
			// that returns data for a feature nvmectl does not know the
			// size of (or for -s 3, which returns none) then writes into
			// memory the driver gave it, never to IOVA 0. Only n bytes are
			// shown. Over a fabric there is no IOVA to protect, and the
			// target checks that the data transfer is exactly the
			// feature's (nvmet fails anything else with Data SGL Length
			// Invalid): the command carries n bytes, none for -s 3.
			page := make([]byte, 4096)
			buf := page
			if c.Fabric() != nil {
				buf = page[:n]
				if sel == spec.SelSupportedCap {
					buf = nil
				}
			}
			v, err := c.GetFeature(fid, sel, nsid, cdw11, buf)
			if err != nil {
				return nil, err
			}
			data := page[:n]
			if sel == spec.SelSupportedCap {
				data = nil
			}
			if g.out == formatJSON {
				var r record
				r.add("feature_id", fid)
				r.add("feature_name", spec.FeatureName(fid))
				r.add("sel", sel)
				r.add("value", v)
				if sel == spec.SelSupportedCap {
					r.add("saveable", v&spec.FeatureCapSaveable != 0)
					r.add("per_namespace", v&spec.FeatureCapNSSpecific != 0)
					r.add("changeable", v&spec.FeatureCapChangeable != 0)
				}
				if len(data) > 0 {
					r.add("data", hex.EncodeToString(data))
				}
				return r, nil
			}
			if sel == spec.SelSupportedCap {
				var caps []string
				for _, b := range []struct {
					bit  uint32
					name string
				}{{spec.FeatureCapSaveable, "saveable"}, {spec.FeatureCapNSSpecific, "per-namespace"}, {spec.FeatureCapChangeable, "changeable"}} {
					if v&b.bit != 0 {
						caps = append(caps, b.name)
					}
				}
				fmt.Fprintf(w, "get-feature:0x%02x (%s), Supported capabilities value:0x%08x (%s)\n", fid, spec.FeatureName(fid), v, strings.Join(caps, ", "))
				return nil, nil
			}
			fmt.Fprintf(w, "get-feature:0x%02x (%s), %s value:0x%08x\n", fid, spec.FeatureName(fid), selNames[sel], v)
			if g.human {
				if d := decodeFeature(fid, v); d != "" {
					fmt.Fprintf(w, "\t%s\n", d)
				}
			}
			if len(data) > 0 {
				hexDump(w, data)
			}
			return nil, nil
		}
		if cmd.Flags().Changed("feature-id") {
			n := dataLen
			if !cmd.Flags().Changed("data-len") {
				n = featureDataLen(fid)
			}
			r, err := one(fid, n)
			if err != nil || g.out != formatJSON {
				return err
			}
			return writeJSON(w, r)
		}
		// Every feature, as nvme-cli's get-feature without -f: those the
		// controller does not implement answer with an error status and
		// are left out.
		all := []record{}
		for f := 1; f <= 0xff; f++ {
			r, err := one(uint8(f), featureDataLen(uint8(f)))
			var se *nvme.StatusError
			if errors.As(err, &se) {
				continue
			}
			if err != nil {
				return err
			}
			if r != nil {
				all = append(all, r)
			}
		}
		if g.out == formatJSON {
			return writeJSON(w, record{{key: "features", val: all}})
		}
		return nil
	})
	cmd.Flags().Uint8VarP(&fid, "feature-id", "f", 0, "feature identifier, e.g. 0x06 volatile write cache (default: every feature)")
	cmd.Flags().Uint8VarP(&sel, "sel", "s", 0, "select: 0 current, 1 default, 2 saved, 3 supported capabilities")
	cmd.Flags().Uint32VarP(&cdw11, "cdw11", "c", 0, "command dword 11 (feature specific)")
	cmd.Flags().IntVarP(&dataLen, "data-len", "l", 0, "bytes of feature data to read (default: by feature)")
	nsFlag(cmd, &nsid, 0, "namespace (0 for controller-wide features)")
	return cmd
}

func hexDump(w io.Writer, b []byte) {
	// Trailing zero lines are noise: stop at the last non-zero 16 bytes.
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	end = min(len(b), (end+15)/16*16)
	if end == 0 {
		end = min(len(b), 16)
	}
	fmt.Fprint(w, hex.Dump(b[:end]))
}

func setFeatureCmd(a app, g *globals) *cobra.Command {
	var fid uint8
	var nsid, value uint32
	var save bool
	cmd := ctrlCmd(a, "set-feature", "Set Features (nvme set-feature -f FID -v VALUE)", func(cmd *cobra.Command) error {
		if !cmd.Flags().Changed("feature-id") || !cmd.Flags().Changed("value") {
			return usagef("set-feature: -f/--feature-id and -v/--value are required")
		}
		if fid == spec.FeatureNumberOfQueues {
			return usagef("set-feature: %s is the driver's: it negotiates the queues at every bring-up", spec.FeatureName(fid))
		}
		return nil
	}, func(cmd *cobra.Command, c *nvme.Controller) error {
		dw0, err := c.SetFeature(fid, nsid, value, nil, save)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if g.out == formatJSON {
			var r record
			r.add("feature_id", fid)
			r.add("feature_name", spec.FeatureName(fid))
			r.add("value", value)
			r.add("save", save)
			r.add("result", dw0)
			return writeJSON(w, r)
		}
		sv := 0
		if save {
			sv = 1
		} else {
			fmt.Fprintf(cmd.ErrOrStderr(), "nvmectl: note: set without --save: every nvmectl command brings the controller up again, "+
				"a controller reset, after which a controller that follows the spec reverts feature %#02x to its saved or default value; "+
				"add -s/--save to keep it\n", fid)
		}
		fmt.Fprintf(w, "set-feature:0x%02x (%s), value:0x%08x, cdw12:0x00000000, save:%d\n", fid, spec.FeatureName(fid), value, sv)
		if g.human {
			if d := decodeFeature(fid, value); d != "" {
				fmt.Fprintf(w, "\t%s\n", d)
			}
		}
		return nil
	})
	cmd.Flags().Uint8VarP(&fid, "feature-id", "f", 0, "feature identifier (required)")
	cmd.Flags().Uint32VarP(&value, "value", "v", 0, "new value, command dword 11 (required)")
	cmd.Flags().BoolVarP(&save, "save", "s", false, "keep the value across resets and power cycles (SV)")
	nsFlag(cmd, &nsid, 0, "namespace (0 for controller-wide features)")
	return cmd
}

// A register show-regs prints.
type register struct {
	name  string
	off   uintptr
	wide  bool
	human func(v uint64) string
}

var registers = []register{
	{"cap", spec.RegCAP, true, func(v uint64) string { return spec.CAP(v).String() }},
	{"vs", spec.RegVS, false, func(v uint64) string { return spec.VS(v).String() }},
	{"intms", spec.RegINTMS, false, nil},
	{"intmc", spec.RegINTMC, false, nil},
	{"cc", spec.RegCC, false, func(v uint64) string { return spec.CC(v).String() }},
	{"csts", spec.RegCSTS, false, func(v uint64) string { return spec.CSTS(v).String() }},
	{"nssr", spec.RegNSSR, false, nil},
	{"aqa", spec.RegAQA, false, func(v uint64) string {
		a := spec.AQA(v)
		return fmt.Sprintf("asqs=%d acqs=%d", int(a.ASQS())+1, int(a.ACQS())+1)
	}},
	{"asq", spec.RegASQ, true, nil},
	{"acq", spec.RegACQ, true, nil},
	{"cmbloc", spec.RegCMBLOC, false, nil},
	{"cmbsz", spec.RegCMBSZ, false, func(v uint64) string { return humanBytes(spec.CMBSZ(v).Bytes()) }},
	{"bpinfo", spec.RegBPINFO, false, nil},
	{"bprsel", spec.RegBPRSEL, false, nil},
	{"bpmbl", spec.RegBPMBL, true, nil},
	{"cmbmsc", spec.RegCMBMSC, true, nil},
	{"cmbsts", spec.RegCMBSTS, false, nil},
	{"pmrcap", spec.RegPMRCAP, false, nil},
	{"pmrctl", spec.RegPMRCTL, false, nil},
	{"pmrsts", spec.RegPMRSTS, false, nil},
	{"pmrebs", spec.RegPMREBS, false, nil},
	{"pmrswtp", spec.RegPMRSWTP, false, nil},
	{"pmrmscl", spec.RegPMRMSCL, false, nil},
	{"pmrmscu", spec.RegPMRMSCU, false, nil},
}

func showRegsCmd(a app, g *globals) *cobra.Command {
	var afterInit bool
	cmd := &cobra.Command{
		Use:   "show-regs ADDR",
		Short: "Controller registers as found, before any bring-up (nvme show-regs)",
		Long: "show-regs prints the controller registers as it finds them: BAR0 is mapped read-only\n" +
			"through sysfs and only read, with no VFIO open and no reset, so the state a crashed\n" +
			"program left (CSTS.CFS, a shutdown, its admin queue registers) is still there to see.\n" +
			"--after-init brings the controller up first, as the other verbs do (a reset), and shows\n" +
			"the registers as nvmectl set them.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := parseAddr(args[0]); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if isFabricsAddr(args[0]) && !afterInit {
				return usagef("show-regs of an NVMe/TCP controller needs --after-init: its registers are properties, read with Property Get once connected")
			}
			if afterInit {
				return withCtrl(a, args[0], func(c *nvme.Controller) error {
					return emit(w, g, "", registersRecord(c.Registers(), g.human))
				})
			}
			info, err := findCtrl(a, args[0])
			if err != nil {
				return err
			}
			regs, unmap, err := a.regs(info.Addr)
			if err != nil {
				return devicef("show-regs: %w; --after-init reads them after a bring-up instead", err)
			}
			defer unmap()
			r := registersRecord(regs, g.human)
			if g.out != formatJSON {
				fmt.Fprintf(w, "# %s as found (no bring-up): %s\n", info.Addr, stateName(spec.CC(regs.Read32(spec.RegCC)), spec.CSTS(regs.Read32(spec.RegCSTS))))
			}
			return emit(w, g, "", r)
		},
	}
	cmd.Flags().BoolVar(&afterInit, "after-init", false, "bring the controller up first (a reset) and show the registers nvmectl set")
	return cmd
}

// registersRecord reads every register show-regs prints that fits in regs.
func registersRecord(regs mmio.Region, human bool) record {
	var r record
	for _, reg := range registers {
		width := uintptr(4)
		if reg.wide {
			width = 8
		}
		if int(reg.off+width) > regs.Len() {
			continue
		}
		var v uint64
		var t string
		if reg.wide {
			v = regs.Read64(reg.off)
			t = fmt.Sprintf("0x%016x", v)
		} else {
			v = uint64(regs.Read32(reg.off))
			t = fmt.Sprintf("0x%08x", v)
		}
		if human && reg.human != nil {
			t += "  " + reg.human(v)
		}
		r.add(reg.name, v, t)
	}
	return r
}

func formatCmd(a app, g *globals) *cobra.Command {
	var nsid uint32
	var lbaf, ses uint8
	var force bool
	cmd := ctrlCmd(a, "format", "Format NVM: erase a namespace, optionally with a new LBA format (needs --force)", func(cmd *cobra.Command) error {
		if !cmd.Flags().Changed("namespace-id") {
			return usagef("format: -n/--namespace-id is required (0xffffffff formats every namespace)")
		}
		if err := checkNSIDFlag(nsid, true); err != nil {
			return err
		}
		if ses > 2 {
			return usagef("format: --ses %d: want 0 (none), 1 (user data erase) or 2 (cryptographic erase)", ses)
		}
		if lbaf > 63 {
			return usagef("format: --lbaf %d: want 0 to 63", lbaf)
		}
		if !force {
			return usagef("format erases every block of namespace %#x: add --force (nvmectl never prompts: scripts use it)", nsid)
		}
		return nil
	}, func(cmd *cobra.Command, c *nvme.Controller) error {
		if nsid != spec.NSIDAll {
			if err := checkNSID(c, nsid); err != nil {
				return err
			}
		}
		idNS := nsid
		if nsid == spec.NSIDAll {
			ids := c.Namespaces()
			if len(ids) == 0 {
				return usagef("format: no active namespace")
			}
			idNS = ids[0]
		}
		id, err := c.IdentifyNamespace(idNS)
		if err != nil {
			return err
		}
		f := uint8(id.FormatIndex())
		if cmd.Flags().Changed("lbaf") {
			f = lbaf
		}
		if int(f) >= id.NumFormats() || id.LBAF[f].LBADS == 0 {
			return usagef("format: LBA format %d does not exist (namespace %d has %d: 0-%d)", f, idNS, id.NumFormats(), id.NumFormats()-1)
		}
		if c.Identify().OACS&spec.OACSFormatNVM == 0 {
			return devicef("format: the controller does not support Format NVM (OACS)")
		}
		if err := c.FormatNVM(nsid, f, ses); err != nil {
			return err
		}
		after, err := c.IdentifyNamespace(idNS)
		if err != nil {
			return err
		}
		bs, _ := after.BlockSize()
		w := cmd.OutOrStdout()
		_, usable := c.Namespace(idNS)
		if g.out == formatJSON {
			var r record
			r.add("nsid", nsid)
			r.add("lbaf", f)
			r.add("ses", ses)
			r.add("block_size", bs)
			r.add("metadata_size", after.MetadataSize())
			r.add("nsze", after.NSZE)
			r.add("usable", usable == nil)
			return writeJSON(w, r)
		}
		fmt.Fprintf(w, "format: Success, namespace %#x: LBA format %d, %d blocks of %d B", nsid, f, after.NSZE, bs)
		if ms := after.MetadataSize(); ms > 0 {
			fmt.Fprintf(w, " + %d B metadata", ms)
		}
		fmt.Fprintln(w)
		if usable != nil {
			fmt.Fprintf(w, "note: gonvme does not do I/O on formats with metadata; format again with a format without metadata\n")
		}
		return nil
	})
	nsFlag(cmd, &nsid, 0, "namespace to format (required; 0xffffffff for all)")
	cmd.Flags().Uint8VarP(&lbaf, "lbaf", "l", 0, "LBA format index (default: the current one)")
	cmd.Flags().Uint8VarP(&ses, "ses", "s", 0, "secure erase: 0 none, 1 user data, 2 cryptographic")
	cmd.Flags().BoolVar(&force, "force", false, "really format (required: nvmectl never asks)")
	return cmd
}
