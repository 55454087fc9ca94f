package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp"
)

// nvmectl discover: the Discovery Log Page of an NVMe/TCP discovery
// controller, printed as nvme-cli's `nvme discover` prints it.

func discoverCmd(a app, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "discover tcp://HOST[:PORT]",
		Short: "List the subsystems an NVMe/TCP discovery controller offers (nvme discover)",
		Long: "discover connects to the discovery controller at HOST (port 8009 unless given), reads\n" +
			"its whole Discovery Log Page (log 70h) and prints every entry as nvme-cli's\n" +
			"`nvme discover -t tcp -a HOST -s PORT` does; -o json uses nvme-cli's keys (genctr,\n" +
			"records: trtype, adrfam, subtype, treq, portid, trsvcid, subnqn, traddr, eflags,\n" +
			"sectype). An IPv6 host goes in brackets: tcp://[::1]. Each nvme subsystem entry is a\n" +
			"controller name for the other verbs: tcp://TRADDR:TRSVCID/SUBNQN.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ta, err := parseTCPAddr(args[0], true)
			if err != nil {
				return err
			}
			o := a.tcp.opts
			log, err := a.discover(ta, &o)
			if err != nil {
				return devicef("discover %s: %w", ta.String(), err)
			}
			if g.out == formatJSON {
				return writeDiscoveryJSON(cmd.OutOrStdout(), log)
			}
			writeDiscovery(cmd.OutOrStdout(), log)
			return nil
		},
	}
}

// discoverTCP is app.discover: the whole Discovery Log, generation
// counter included.
func discoverTCP(a tcp.Address, o *tcp.Options) (fabrics.DiscoveryLog, error) {
	return tcp.DiscoverLog(a, o)
}

// eflagsName describes EFLAGS as libnvme's nvmf_eflags_str does.
func eflagsName(f uint16) string {
	names := []struct {
		bit  uint16
		name string
	}{
		{fabrics.EFlagExplicitPCSD, "explicit discovery connections"},
		{fabrics.EFlagDupReturnInfo, "duplicate discovery information"},
		{fabrics.EFlagNoCDCConn, "no cdc connectivity"},
	}
	if f&^(fabrics.EFlagExplicitPCSD|fabrics.EFlagDupReturnInfo|fabrics.EFlagNoCDCConn) != 0 {
		return "unrecognized"
	}
	s := ""
	for _, n := range names {
		if f&n.bit != 0 {
			if s != "" {
				s += ", "
			}
			s += n.name
		}
	}
	if s == "" {
		return "none"
	}
	return s
}

// adrfamText is the adrfam line: nvme-cli leaves it empty when the entry
// has no transport address.
func adrfamText(e *fabrics.DiscoveryLogEntry) string {
	if e.TRAddrString() == "" {
		return ""
	}
	return fabrics.AdrFamName(e.AdrFam)
}

// writeDiscovery prints the log as `nvme discover` does: a blank line, the
// header line, then each entry (string fields without their padding).
func writeDiscovery(w io.Writer, log fabrics.DiscoveryLog) {
	fmt.Fprintf(w, "\nDiscovery Log Number of Records %d, Generation counter %d\n", len(log.Entries), log.GenCtr)
	for i := range log.Entries {
		e := &log.Entries[i]
		fmt.Fprintf(w, "=====Discovery Log Entry %d======\n", i)
		fmt.Fprintf(w, "trtype:  %s\n", fabrics.TRTypeName(e.TRType))
		fmt.Fprintf(w, "adrfam:  %s\n", adrfamText(e))
		fmt.Fprintf(w, "subtype: %s\n", fabrics.SubTypeName(e.SubType))
		fmt.Fprintf(w, "treq:    %s\n", fabrics.TReqName(e.TReq))
		fmt.Fprintf(w, "portid:  %d\n", e.PortID)
		fmt.Fprintf(w, "trsvcid: %s\n", e.TRSvcIDString())
		fmt.Fprintf(w, "subnqn:  %s\n", e.SubNQNString())
		fmt.Fprintf(w, "traddr:  %s\n", e.TRAddrString())
		fmt.Fprintf(w, "eflags:  %s\n", eflagsName(e.EFlags))
		if e.TRType == fabrics.TRTypeTCP {
			fmt.Fprintf(w, "sectype: %s\n", fabrics.SecTypeName(e.SecType()))
		}
	}
}

// writeDiscoveryJSON prints the log with nvme-cli's keys, in its order.
func writeDiscoveryJSON(w io.Writer, log fabrics.DiscoveryLog) error {
	recs := make([]record, 0, len(log.Entries))
	for i := range log.Entries {
		e := &log.Entries[i]
		var r record
		r.add("trtype", fabrics.TRTypeName(e.TRType))
		r.add("adrfam", fabrics.AdrFamName(e.AdrFam))
		r.add("subtype", fabrics.SubTypeName(e.SubType))
		r.add("treq", fabrics.TReqName(e.TReq))
		r.add("portid", e.PortID)
		r.add("trsvcid", e.TRSvcIDString())
		r.add("subnqn", e.SubNQNString())
		r.add("traddr", e.TRAddrString())
		r.add("eflags", eflagsName(e.EFlags))
		if e.TRType == fabrics.TRTypeTCP {
			r.add("sectype", fabrics.SecTypeName(e.SecType()))
		}
		recs = append(recs, r)
	}
	var top record
	top.add("genctr", log.GenCtr)
	top.add("records", recs)
	b, err := json.MarshalIndent(top, "", "  ")
	if err != nil {
		return deviceError{err}
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
