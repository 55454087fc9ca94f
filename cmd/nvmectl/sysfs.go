package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// This file reads what the kernel says about a controller on its own
// driver: its block devices and whether anything uses them.

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
	var k kernelCtrl
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

// blockDev is a disk or a partition with its device number.
type blockDev struct {
	name string
	dev  string // "259:0"
	dir  string // its sysfs directory
}

// devices returns disk and its partitions.
func (a app) devices(disk string) []blockDev {
	dir := a.path("/sys/block/" + disk)
	if _, err := os.Stat(dir); err != nil {
		dir = a.path("/sys/class/block/" + disk)
	}
	out := []blockDev{{name: disk, dev: readTrim(filepath.Join(dir, "dev")), dir: dir}}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(p, "partition")); err == nil {
			out = append(out, blockDev{name: e.Name(), dev: readTrim(filepath.Join(p, "dev")), dir: p})
		}
	}
	return out
}

// inUse lists why the controller's block devices are in use: mounted
// file systems (by major:minor in mountinfo), active swap, and holders
// (device mapper, LVM, MD). Empty means free.
func (a app) inUse(k kernelCtrl) []string {
	var why []string
	mounts := a.mounts()
	swaps := a.swaps()
	for _, disk := range k.disks {
		for _, d := range a.devices(disk) {
			seen := map[string]bool{}
			for _, m := range append(mounts[d.dev], mounts["/dev/"+d.name]...) {
				if !seen[m] {
					seen[m] = true
					why = append(why, fmt.Sprintf("/dev/%s is mounted on %s", d.name, m))
				}
			}
			for _, s := range swaps {
				if filepath.Base(s) == d.name || sameDev(s, d.dev) {
					why = append(why, fmt.Sprintf("/dev/%s is active swap (%s)", d.name, s))
				}
			}
			holders, _ := os.ReadDir(filepath.Join(d.dir, "holders"))
			for _, h := range holders {
				why = append(why, fmt.Sprintf("/dev/%s is held by %s (LVM, MD or device mapper)", d.name, h.Name()))
			}
		}
	}
	return why
}

// mounts maps major:minor, and the mount source when it is a device node,
// to mount points, from /proc/self/mountinfo. The source catches file
// systems that report an anonymous device number although they sit on a
// block device (FUSE ones such as ntfs-3g).
func (a app) mounts() map[string][]string {
	out := map[string][]string{}
	f, err := os.Open(a.path("/proc/self/mountinfo"))
	if err != nil {
		return out
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fs := strings.Fields(s.Text())
		if len(fs) < 5 {
			continue
		}
		mp := strings.ReplaceAll(fs[4], `\040`, " ")
		out[fs[2]] = append(out[fs[2]], mp)
		if i := slices.Index(fs, "-"); i > 0 && i+2 < len(fs) && strings.HasPrefix(fs[i+2], "/dev/") {
			out[fs[i+2]] = append(out[fs[i+2]], mp)
		}
	}
	return out
}

// swaps returns the active swap areas, from /proc/swaps.
func (a app) swaps() []string {
	f, err := os.Open(a.path("/proc/swaps"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for first := true; s.Scan(); first = false {
		fs := strings.Fields(s.Text())
		if first || len(fs) == 0 {
			continue // header
		}
		out = append(out, strings.ReplaceAll(fs[0], `\040`, " "))
	}
	return out
}

// sameDev reports whether path is a device node with number dev.
func sameDev(path, dev string) bool {
	var st syscall.Stat_t
	if dev == "" || syscall.Stat(path, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFBLK {
		return false
	}
	return fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)) == dev
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
