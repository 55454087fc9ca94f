package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/seedb8fa28ef/gonvme/vfio"
)

// SPDK's setup.sh takes its settings from the environment; nvmectl setup
// and reset read the same variables, with the same meanings, and a flag
// given on the command line wins over its variable:
//
//	PCI_ALLOWED  --allow     only these controllers (whitespace or commas;
//	                         "none" selects none)
//	PCI_BLOCKED  --deny      never these controllers; wins over PCI_ALLOWED
//	HUGEMEM      --hugemem   MiB of hugepages to reserve
//	HUGENODE     --hugenode  NUMA nodes to reserve them on: "0,1" puts
//	                         HUGEMEM on each, "nodes_hp[1]=512" sets node
//	                         1's page count (default node 0, as setup.sh)

// selection holds --allow and --deny, like setup.sh's PCI_ALLOWED and
// PCI_BLOCKED.
type selection struct {
	allow, deny []string
}

func (s *selection) flags(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&s.allow, "allow", nil, "only these controllers (comma-separated addresses; default $PCI_ALLOWED)")
	cmd.Flags().StringSliceVar(&s.deny, "deny", nil, "never these controllers (default $PCI_BLOCKED; wins over --allow)")
}

// skip is a controller pick left out, and why.
type skip struct {
	c   vfio.Controller
	why string
}

// envList splits a setup.sh list variable: addresses separated by
// whitespace (setup.sh) or commas.
func envList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

// pick returns the controllers named by args (all when none), filtered by
// --allow and --deny (or PCI_ALLOWED and PCI_BLOCKED), and those it left
// out with the reason. Unknown or malformed addresses are usage errors.
func (s *selection) pick(a app, cmd *cobra.Command, args []string) ([]vfio.Controller, []skip, error) {
	allowSrc, denySrc := "--allow", "--deny"
	allowRaw, denyRaw := s.allow, s.deny
	if !cmd.Flags().Changed("allow") {
		allowRaw, allowSrc = envList(a.getenv("PCI_ALLOWED")), "PCI_ALLOWED"
	}
	if !cmd.Flags().Changed("deny") {
		denyRaw, denySrc = envList(a.getenv("PCI_BLOCKED")), "PCI_BLOCKED"
	}
	none := len(allowRaw) == 1 && strings.EqualFold(allowRaw[0], "none")
	var allow []string
	var err error
	if !none {
		if allow, err = parseAddrs(allowRaw); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", allowSrc, err)
		}
	}
	deny, err := parseAddrs(denyRaw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", denySrc, err)
	}
	var chosen []vfio.Controller
	if len(args) == 0 {
		all, err := a.list()
		if err != nil {
			return nil, nil, deviceError{fmt.Errorf("list controllers: %w", err)}
		}
		chosen = all
	} else {
		for _, addr := range args {
			c, err := findCtrl(a, addr)
			if err != nil {
				return nil, nil, err
			}
			chosen = append(chosen, c)
		}
	}
	var out []vfio.Controller
	var skipped []skip
	for _, c := range chosen {
		switch {
		case slices.Contains(deny, c.Addr):
			skipped = append(skipped, skip{c, "denied by " + denySrc})
		case none:
			skipped = append(skipped, skip{c, allowSrc + " is \"none\""})
		case len(allow) > 0 && !slices.Contains(allow, c.Addr):
			skipped = append(skipped, skip{c, "not in " + allowSrc})
		default:
			out = append(out, c)
		}
	}
	return out, skipped, nil
}

// parseAddrs normalizes a list of PCI addresses (parseAddr).
func parseAddrs(l []string) ([]string, error) {
	out := make([]string, len(l))
	for i, s := range l {
		if isFabricsAddr(s) {
			return nil, usagef("%q: setup and reset bind PCI functions; a controller reached over NVMe/TCP needs neither", s)
		}
		a, err := parseAddr(s)
		if err != nil {
			return nil, err
		}
		out[i] = a
	}
	return out, nil
}

// skippedResults turns skips into result lines (action "skipped").
func skippedResults(sk []skip) []setupResult {
	var out []setupResult
	for _, s := range sk {
		out = append(out, setupResult{Address: s.c.Addr, Previous: s.c.Driver, Driver: s.c.Driver, Action: "skipped", Reasons: []string{s.why}})
	}
	return out
}

// printSkipped says which controllers were left out and why, as setup.sh's
// "Skipping denied controller" lines do.
func printSkipped(w io.Writer, sk []skip) {
	for _, s := range sk {
		fmt.Fprintf(w, "%s (%04x %04x): skipped: %s\n", s.c.Addr, s.c.Vendor, s.c.Device, s.why)
	}
}

// hugeRequest is what to reserve: MiB of 2 MiB pages on the nodes.
type hugeRequest struct {
	mib   int    // 0: keep the reservation
	nodes string // HUGENODE syntax; "" is node 0
	src   string // where mib came from, for messages
}

// hugeRequestFrom resolves --hugemem/--hugenode and HUGEMEM/HUGENODE (the
// flags win). Every error is a usage error.
func hugeRequestFrom(a app, cmd *cobra.Command, mib int, nodes string) (hugeRequest, error) {
	r := hugeRequest{mib: mib, nodes: nodes, src: "--hugemem"}
	if !cmd.Flags().Changed("hugemem") {
		if v := a.getenv("HUGEMEM"); v != "" {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return r, usagef("HUGEMEM=%q: want MiB, a whole number", v)
			}
			r.mib, r.src = n, "HUGEMEM"
		}
	}
	if !cmd.Flags().Changed("hugenode") {
		r.nodes = a.getenv("HUGENODE")
	}
	if r.mib < 0 {
		return r, usagef("%s %d: want MiB >= 0", r.src, r.mib)
	}
	if _, err := hugeNodes(r.nodes, 1); err != nil {
		return r, err
	}
	return r, nil
}

var nodesHP = regexp.MustCompile(`^nodes_hp\[(\d+)\]=(\d+)$`)

// hugeNodes parses HUGENODE into pages per node: a node number gets
// pages, nodes_hp[N]=P gets P; empty is node 0.
func hugeNodes(spec string, pages int) (map[int]int, error) {
	out := map[int]int{}
	for _, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if m := nodesHP.FindStringSubmatch(f); m != nil {
			n, _ := strconv.Atoi(m[1])
			p, _ := strconv.Atoi(m[2])
			out[n] = p
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, usagef("HUGENODE/--hugenode %q: %q is neither a node number nor nodes_hp[N]=PAGES", spec, f)
		}
		out[n] = pages
	}
	if len(out) == 0 {
		out[0] = pages
	}
	return out, nil
}

// reserveHugepages reserves r's 2 MiB pages as setup.sh does: on each
// node HUGENODE names (node 0 by default) when sysfs has NUMA nodes,
// else machine-wide; a node that already has as many keeps them (no
// shrinking). It returns what it did, for the output.
func reserveHugepages(a app, ew io.Writer, r hugeRequest) error {
	if r.mib == 0 {
		return nil
	}
	pages := (r.mib*1024 + hugepageKB - 1) / hugepageKB
	plan, err := hugeNodes(r.nodes, pages)
	if err != nil {
		return err
	}
	nodeDirs, _ := filepath.Glob(a.path("/sys/devices/system/node/node[0-9]*"))
	files := map[int]string{}
	if len(nodeDirs) == 0 {
		files[-1] = a.path(fmt.Sprintf("/sys/kernel/mm/hugepages/hugepages-%dkB/nr_hugepages", hugepageKB))
		plan = map[int]int{-1: pages}
	} else {
		for n := range plan {
			p := a.path(fmt.Sprintf("/sys/devices/system/node/node%d/hugepages/hugepages-%dkB/nr_hugepages", n, hugepageKB))
			if _, err := os.Stat(p); err != nil {
				fmt.Fprintf(ew, "nvmectl: warning: NUMA node %d does not exist, no hugepages reserved there\n", n)
				continue
			}
			files[n] = p
		}
	}
	nodes := make([]int, 0, len(files))
	for n := range files {
		nodes = append(nodes, n)
	}
	sort.Ints(nodes)
	for _, n := range nodes {
		p, want := files[n], plan[n]
		where := "machine-wide"
		if n >= 0 {
			where = fmt.Sprintf("on node %d", n)
		}
		if have, _ := strconv.Atoi(readTrim(p)); have >= want {
			fmt.Fprintf(ew, "nvmectl: %d hugepages of 2 MiB requested %s, %d already reserved: left as is\n", want, where, have)
			continue
		}
		if err := os.WriteFile(p, []byte(strconv.Itoa(want)), 0o644); err != nil {
			return devicef("reserve %d hugepages %s: %w (run as root)", want, where, err)
		}
		if got, _ := strconv.Atoi(readTrim(p)); got < want {
			fmt.Fprintf(ew, "nvmectl: warning: only %d of %d hugepages reserved %s (memory is fragmented); reserve them at boot with hugepages=%d on the kernel command line\n", got, want, where, want)
		}
	}
	return nil
}
