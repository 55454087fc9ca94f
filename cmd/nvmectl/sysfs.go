package main

import (
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/vfio"
)

// This file reads what the kernel says about a controller on its own
// driver: its block devices and whether anything uses them (vfio's check).
//
// The PCI attributes (NUMA node, PCIe link) come from prometheus/procfs
// (list.go's pciInfo); the nvme class directory is read here by hand
// because procfs's NVMeClass neither maps a controller to its PCI address
// nor sees the namespaces of native multipath (nvme0c0n1: its pattern
// wants nvmeXnY), and it fails whole on one controller missing a file.

func (a app) path(p string) string { return filepath.Join(a.root, p) }

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// kernelCtrl is what sysfs says about a controller bound to nvme.
type kernelCtrl struct {
	addr     string // PCI address
	name     string // "nvme0"
	model    string
	serial   string
	firmware string
	disks    []string // block devices of its namespaces, "nvme0n1"
}

var (
	ctrlName = regexp.MustCompile(`^nvme\d+$`)
	diskName = regexp.MustCompile(`^nvme\d+(c\d+)?n\d+$`)
)

// kernelInfo reads /sys/bus/pci/devices/ADDR/nvme/nvmeX. It returns the
// zero value when the controller has no nvme class device.
func (a app) kernelInfo(addr string) kernelCtrl {
	dir := a.path("/sys/bus/pci/devices/" + addr + "/nvme")
	ents, _ := os.ReadDir(dir)
	k := kernelCtrl{addr: addr}
	for _, e := range ents {
		if ctrlName.MatchString(e.Name()) {
			k.name = e.Name()
			break
		}
	}
	if k.name == "" {
		return k
	}
	cdir := filepath.Join(dir, k.name)
	k.model = readTrim(filepath.Join(cdir, "model"))
	k.serial = readTrim(filepath.Join(cdir, "serial"))
	k.firmware = readTrim(filepath.Join(cdir, "firmware_rev"))
	seen := map[string]bool{}
	// Namespaces appear under the controller (nvme0n1, or nvme0c0n1 with
	// native multipath) and in /sys/block (nvme0n1, named after the
	// subsystem, usually the same number).
	cents, _ := os.ReadDir(cdir)
	for _, e := range cents {
		if diskName.MatchString(e.Name()) {
			seen[e.Name()] = true
		}
	}
	blocks, _ := os.ReadDir(a.path("/sys/block"))
	prefix := k.name + "n"
	for _, e := range blocks {
		if strings.HasPrefix(e.Name(), prefix) && diskName.MatchString(e.Name()) {
			seen[e.Name()] = true
		}
	}
	for d := range seen {
		k.disks = append(k.disks, d)
	}
	sort.Strings(k.disks)
	return k
}

// inUse lists why the controller's block devices are in use, in words:
// the library's check (vfio.InUse), the one vfio.Bind applies: mounted
// file systems, active swap, holders (device mapper, LVM, MD), exclusive
// opens, locks and data signatures. Empty means free.
func (a app) inUse(k kernelCtrl) []string {
	if k.addr == "" {
		return nil
	}
	var uses []vfio.Use
	var err error
	if a.root == "" {
		uses, err = vfio.InUse(k.addr)
	} else {
		uses, err = vfio.InUseFrom(a.root, k.addr)
	}
	if err != nil {
		return []string{"in-use check failed: " + err.Error()}
	}
	return useStrings(uses)
}

func useStrings(uses []vfio.Use) []string {
	var why []string
	for _, u := range uses {
		why = append(why, u.String())
	}
	return why
}

// hugepages is one hugepage size's reservation.
type hugepages struct {
	SizeKB int `json:"size_kb"`
	Total  int `json:"total"`
	Free   int `json:"free"`
}

func (a app) hugepages() []hugepages {
	dirs, _ := filepath.Glob(a.path("/sys/kernel/mm/hugepages/hugepages-*kB"))
	var out []hugepages
	for _, d := range dirs {
		kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(d), "hugepages-"), "kB"))
		if err != nil {
			continue
		}
		t, _ := strconv.Atoi(readTrim(filepath.Join(d, "nr_hugepages")))
		f, _ := strconv.Atoi(readTrim(filepath.Join(d, "free_hugepages")))
		out = append(out, hugepages{SizeKB: kb, Total: t, Free: f})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SizeKB < out[j].SizeKB })
	return out
}

// iommuGroups counts /sys/kernel/iommu_groups entries: 0 means no IOMMU.
func (a app) iommuGroups() int {
	ents, _ := os.ReadDir(a.path("/sys/kernel/iommu_groups"))
	return len(ents)
}

func (a app) vfioPCILoaded() bool {
	_, err := os.Stat(a.path("/sys/bus/pci/drivers/vfio-pci"))
	return err == nil
}

func memlockLimit() (soft, hard uint64, err error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &r); err != nil {
		return 0, 0, err
	}
	return r.Cur, r.Max, nil
}

func limitString(v uint64) string {
	if v == math.MaxUint64 || v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return humanBytes(v)
}
