// Package cpuset reads and writes sets of CPUs in the notations Linux and
// SPDK use: the kernel's CPU lists ("0-3,8", as in
// /sys/devices/system/node/node0/cpulist and taskset -c), SPDK's and
// DPDK's core masks ("0x3", "f", or a list in brackets "[0-3]"), and the
// set of CPUs the calling process may run on.
//
// It is the one CPU-set parser of gonvme: nvmectl parses -c with it and
// places pollers near a controller with NodeCPUs; poller may take Allowed.
// The notations are a few lines each, and no maintained Go library parses
// SPDK's masks, so they are written here by hand.
//
// Every function is safe for concurrent use. Imports: the standard library
// and golang.org/x/sys/unix (sched_getaffinity).
package cpuset

import (
	"fmt"
	"math/big"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MaxCPU is the highest CPU number accepted, as the kernel's default
// NR_CPUS ceiling (CONFIG_NR_CPUS_RANGE_END) allows.
const MaxCPU = 8191

// Allowed returns the CPUs the calling thread may run on
// (sched_getaffinity), in ascending order.
func Allowed() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var cpus []int
	for i := 0; i < len(set)*64; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus, nil
}

// ParseList parses a CPU list as the kernel writes it: CPUs and ranges
// separated by commas, "0-3,8,10-11", optionally in brackets as SPDK
// writes it, "[0-3]". An empty list (the kernel writes an empty cpulist
// for a node without CPUs) is an empty set. The result is sorted; a CPU
// named twice is an error.
func ParseList(s string) ([]int, error) {
	body := strings.TrimSpace(s)
	if strings.HasPrefix(body, "[") {
		if !strings.HasSuffix(body, "]") {
			return nil, fmt.Errorf("cpu list %q: no closing bracket", s)
		}
		body = strings.TrimSpace(body[1 : len(body)-1])
	}
	if body == "" {
		return nil, nil
	}
	var cpus []int
	for _, part := range strings.Split(body, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err1 != nil || err2 != nil || a < 0 || b < a || b > MaxCPU {
			return nil, fmt.Errorf("cpu list %q: %q is not a CPU or a range of them (like 0,1 or 0-3)", s, part)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return sortUnique(s, cpus)
}

// ParseMask parses a hexadecimal CPU mask, with or without 0x, of any
// length: bit n set means CPU n. A mask with no bit set is an error.
func ParseMask(s string) ([]int, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(strings.TrimPrefix(t, "0x"), "0X")
	m, ok := new(big.Int).SetString(t, 16)
	if !ok || t == "" || strings.HasPrefix(t, "-") || strings.HasPrefix(t, "+") {
		return nil, fmt.Errorf("cpu mask %q is not hexadecimal", s)
	}
	if m.BitLen() > MaxCPU+1 {
		return nil, fmt.Errorf("cpu mask %q names CPUs past %d", s, MaxCPU)
	}
	var cpus []int
	for i := 0; i < m.BitLen(); i++ {
		if m.Bit(i) == 1 {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) == 0 {
		return nil, fmt.Errorf("cpu mask %q selects no CPU", s)
	}
	return cpus, nil
}

// ParseCoreMask parses a core mask as SPDK's and DPDK's -c take it
// (spdk_cpuset_parse): a list in brackets, "[0-3]" or "[1,3]", or else a
// hexadecimal mask, "0x3", "3", "f" ("2" is core 1, not two cores). A list
// without brackets ("0-3", "1,3") cannot be a hex mask and is taken as a
// list.
func ParseCoreMask(s string) ([]int, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "[") || strings.ContainsAny(t, ",-") {
		cpus, err := ParseList(t)
		if err == nil && len(cpus) == 0 {
			err = fmt.Errorf("core list %q is empty", s)
		}
		return cpus, err
	}
	return ParseMask(t)
}

// Format writes cpus as a kernel CPU list, runs as ranges: "0-3,8".
func Format(cpus []int) string {
	c := slices.Clone(cpus)
	slices.Sort(c)
	c = slices.Compact(c)
	var b strings.Builder
	for i := 0; i < len(c); {
		j := i
		for j+1 < len(c) && c[j+1] == c[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j == i {
			fmt.Fprintf(&b, "%d", c[i])
		} else {
			fmt.Fprintf(&b, "%d-%d", c[i], c[j])
		}
		i = j + 1
	}
	return b.String()
}

// NodeCPUs returns the CPUs of NUMA node n from sysfs, read under root
// ("" for the real /sys): /sys/devices/system/node/nodeN/cpulist.
func NodeCPUs(root string, n int) ([]int, error) {
	p := fmt.Sprintf("%s/sys/devices/system/node/node%d/cpulist", root, n)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("cpus of numa node %d: %w", n, err)
	}
	return ParseList(string(b))
}

func sortUnique(s string, cpus []int) ([]int, error) {
	slices.Sort(cpus)
	for i := 1; i < len(cpus); i++ {
		if cpus[i] == cpus[i-1] {
			return nil, fmt.Errorf("cpu list %q names cpu %d twice", s, cpus[i])
		}
	}
	return cpus, nil
}
