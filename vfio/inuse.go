package vfio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// UseKind says how a block device of a controller is in use.
type UseKind int

const (
	// UseMounted: a file system on it is mounted in this mount namespace.
	UseMounted UseKind = iota + 1
	// UseSwap: it is active swap.
	UseSwap
	// UseHolder: another block device is built on it (device mapper, LVM,
	// MD RAID, bcache): holders/ in sysfs.
	UseHolder
	// UseExclusive: someone has it open exclusively (O_EXCL fails with
	// EBUSY): a mount in another namespace, a RAID or ZFS pool that
	// imported it, a VM or a tool that claimed it.
	UseExclusive
	// UseLocked: a process holds a flock or fcntl lock on its device node,
	// as QEMU does on the disks it runs a VM from.
	UseLocked
	// UseSignature: nothing uses it now, but it carries data: a partition
	// table, a file system, an LVM, RAID, ZFS or BlueStore label.
	UseSignature
)

// Use is one reason a controller's block device is in use.
type Use struct {
	Device string  // the block device, "/dev/nvme0n1p1"
	Kind   UseKind // how
	// Detail: the mount point (UseMounted), the swap area as /proc/swaps
	// names it (UseSwap), the holder (UseHolder), the lock's owner
	// (UseLocked), the format found (UseSignature).
	Detail string
}

// String says it in a sentence, "/dev/nvme0n1p1 is mounted on /data".
func (u Use) String() string {
	switch u.Kind {
	case UseMounted:
		return fmt.Sprintf("%s is mounted on %s", u.Device, u.Detail)
	case UseSwap:
		return fmt.Sprintf("%s is active swap (%s)", u.Device, u.Detail)
	case UseHolder:
		return fmt.Sprintf("%s is held by %s (LVM, MD or device mapper)", u.Device, u.Detail)
	case UseExclusive:
		return fmt.Sprintf("%s is open exclusively by another user (a mount in another namespace, a RAID or ZFS pool, a VM)", u.Device)
	case UseLocked:
		return fmt.Sprintf("%s is locked by %s (flock or fcntl, as QEMU locks a VM's disk)", u.Device, u.Detail)
	case UseSignature:
		return fmt.Sprintf("%s holds %s", u.Device, u.Detail)
	}
	return fmt.Sprintf("%s is in use (%s)", u.Device, u.Detail)
}

// InUseError is Bind's refusal of a controller whose block devices are in
// use or hold data. It matches ErrInUse.
type InUseError struct {
	Addr string
	Uses []Use
}

// Error lists the uses and the ways out.
func (e *InUseError) Error() string {
	s := make([]string, len(e.Uses))
	for i, u := range e.Uses {
		s[i] = u.String()
	}
	return fmt.Sprintf("bind %s: %v: %s: unmount, swapoff or release it first (wipefs clears a signature), or bind with vfio.Force() (nvmectl setup --force) and lose what is on it",
		e.Addr, ErrInUse, strings.Join(s, "; "))
}

// Is makes errors.Is(err, ErrInUse) true.
func (e *InUseError) Is(target error) bool { return target == ErrInUse }

// BindOption changes what Bind checks before it takes a device.
type BindOption func(*bindConfig)

type bindConfig struct {
	force      bool
	signatures bool // refuse devices that only carry data
}

// Force makes Bind take the device whatever uses it: a mounted file
// system loses its disk, swap its pages, a VM its disk. For devices the
// caller knows to be scratch.
func Force() BindOption { return func(c *bindConfig) { c.force = true } }

// IgnoreSignatures makes Bind take a device whose namespaces carry data
// (a partition table, a file system, a volume label) as long as nothing
// uses them: for test rigs whose disks hold leftovers of earlier runs.
// Mounts, swap, holders, exclusive opens and locks still refuse it.
func IgnoreSignatures() BindOption { return func(c *bindConfig) { c.signatures = false } }

// InUse reports why the block devices of the controller at addr (its
// namespaces and their partitions, while it is on the kernel's nvme
// driver) are in use, in the order Bind would list them: mounts, swap,
// holders, exclusive opens, locks, then data signatures. None (and no
// error) when it has no block devices. It opens each device read-only;
// it needs root to open them. Any goroutine may call it.
func InUse(addr string) ([]Use, error) { return hostFS.inUse(addr) }

// InUseFrom is InUse on a machine whose /sys, /proc and /dev are under
// root: a copy of another machine's, or a fake tree in tests. Device nodes
// missing under root/dev are not opened (no exclusive-open, lock or
// signature check for them).
func InUseFrom(root, addr string) ([]Use, error) {
	return sysfs{sys: filepath.Join(root, "sys"), dev: filepath.Join(root, "dev"), proc: filepath.Join(root, "proc")}.inUse(addr)
}

var (
	ctrlDirName = regexp.MustCompile(`^nvme\d+$`)
	nsName      = regexp.MustCompile(`^nvme\d+n\d+$`)
	pathNSName  = regexp.MustCompile(`^nvme(\d+)c\d+n(\d+)$`) // a multipath path: nvme<subsys>c<ctrl>n<ns>
)

// blockDev is a disk or a partition.
type blockDev struct {
	name string // "nvme0n1p1"
	dev  string // "259:1"
	dir  string // its sysfs directory
}

// disks returns the block devices of the namespaces of the controller at
// addr: nvmeXnY under its nvme class device, and with native multipath
// the shared head nvmeSnY of each path nvmeScXnY it lists.
func (s sysfs) disks(addr string) []string {
	dir := filepath.Join(s.device(addr), "nvme")
	ctrls, _ := os.ReadDir(dir)
	seen := map[string]bool{}
	blocks, _ := os.ReadDir(filepath.Join(s.sys, "block"))
	for _, c := range ctrls {
		if !ctrlDirName.MatchString(c.Name()) {
			continue
		}
		ents, _ := os.ReadDir(filepath.Join(dir, c.Name()))
		for _, e := range ents {
			switch n := e.Name(); {
			case nsName.MatchString(n):
				seen[n] = true
			case pathNSName.MatchString(n):
				m := pathNSName.FindStringSubmatch(n)
				seen["nvme"+m[1]+"n"+m[2]] = true
			}
		}
		// Kernels (and sysfs copies) that list no namespace under the
		// controller: its namespaces in /sys/block carry its name.
		for _, b := range blocks {
			if strings.HasPrefix(b.Name(), c.Name()+"n") && nsName.MatchString(b.Name()) {
				seen[b.Name()] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// blockDevs returns disk and its partitions.
func (s sysfs) blockDevs(disk string) []blockDev {
	dir := filepath.Join(s.sys, "block", disk)
	if _, err := os.Stat(dir); err != nil {
		dir = filepath.Join(s.sys, "class", "block", disk)
	}
	out := []blockDev{{name: disk, dev: readAttr(filepath.Join(dir, "dev")), dir: dir}}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(p, "partition")); err == nil {
			out = append(out, blockDev{name: e.Name(), dev: readAttr(filepath.Join(p, "dev")), dir: p})
		}
	}
	return out
}

func readAttr(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (s sysfs) inUse(addr string) ([]Use, error) {
	if !validAddr(addr) {
		return nil, fmt.Errorf("%q: %w (want domain:bus:device.function, like 0000:00:04.0)", addr, ErrNoDevice)
	}
	var devs []blockDev
	for _, d := range s.disks(addr) {
		devs = append(devs, s.blockDevs(d)...)
	}
	if len(devs) == 0 {
		return nil, nil
	}
	mounts := s.mounts()
	swaps := s.swaps()
	locks := s.locks()
	// One list per kind, so that the most telling come first.
	byKind := map[UseKind][]Use{}
	add := func(d blockDev, k UseKind, detail string) {
		byKind[k] = append(byKind[k], Use{Device: "/dev/" + d.name, Kind: k, Detail: detail})
	}
	for _, d := range devs {
		used := false
		seen := map[string]bool{}
		for _, m := range append(mounts[d.dev], mounts["/dev/"+d.name]...) {
			if !seen[m] {
				seen[m] = true
				add(d, UseMounted, m)
				used = true
			}
		}
		for _, sw := range swaps {
			if filepath.Base(sw) == d.name || s.sameDev(sw, d.dev) {
				add(d, UseSwap, sw)
				used = true
			}
		}
		holders, _ := os.ReadDir(filepath.Join(d.dir, "holders"))
		for _, h := range holders {
			add(d, UseHolder, h.Name())
			used = true
		}
		node := filepath.Join(s.dev, d.name)
		var st unix.Stat_t
		if err := unix.Stat(node, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // no node to open: nothing more to learn
			}
			return nil, fmt.Errorf("in-use check of %s: %w", node, err)
		}
		for _, owner := range locks[lockKey{unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino}] {
			add(d, UseLocked, owner)
			used = true
		}
		fd, err := unix.Open(node, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.EBUSY) {
			if !used {
				add(d, UseExclusive, "")
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("in-use check of %s: open: %w", node, err)
		}
		if !used {
			f := os.NewFile(uintptr(fd), node)
			size, serr := f.Seek(0, io.SeekEnd)
			if serr == nil {
				for _, sig := range probeSignatures(f, size) {
					add(d, UseSignature, sig)
				}
			}
			f.Close()
		} else {
			unix.Close(fd)
		}
	}
	var out []Use
	for k := UseMounted; k <= UseSignature; k++ {
		out = append(out, byKind[k]...)
	}
	return out, nil
}

// mounts maps major:minor, and the mount source when it is a device node,
// to mount points, from mountinfo. The source catches file systems that
// report an anonymous device number although they sit on a block device
// (FUSE ones such as ntfs-3g).
func (s sysfs) mounts() map[string][]string {
	out := map[string][]string{}
	f, err := os.Open(filepath.Join(s.proc, "self", "mountinfo"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fs := strings.Fields(sc.Text())
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
func (s sysfs) swaps() []string {
	f, err := os.Open(filepath.Join(s.proc, "swaps"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for first := true; sc.Scan(); first = false {
		fs := strings.Fields(sc.Text())
		if first || len(fs) == 0 {
			continue // header
		}
		out = append(out, strings.ReplaceAll(fs[0], `\040`, " "))
	}
	return out
}

// sameDev reports whether path (as the kernel names it, under s.dev's
// root) is a block device node with number dev ("259:0").
func (s sysfs) sameDev(path, dev string) bool {
	if dev == "" || !strings.HasPrefix(path, "/dev/") {
		return false
	}
	var st unix.Stat_t
	if unix.Stat(filepath.Join(s.dev, strings.TrimPrefix(path, "/dev/")), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return false
	}
	return fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)) == dev
}

// lockKey is a file as /proc/locks names it: the device of its file
// system and its inode.
type lockKey struct {
	major, minor uint32
	ino          uint64
}

// locks returns the owners of the locks in /proc/locks by file: "pid N
// (comm)". Waiters (the "->" lines) are left out.
func (s sysfs) locks() map[lockKey][]string {
	out := map[lockKey][]string{}
	f, err := os.Open(filepath.Join(s.proc, "locks"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 1: FLOCK  ADVISORY  WRITE 1234 00:05:1035 0 EOF
		// 2: OFDLCK ADVISORY  READ  -1 00:05:1035 100 101
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 || fs[1] == "->" {
			continue
		}
		id := strings.Split(fs[5], ":")
		if len(id) != 3 {
			continue
		}
		maj, err1 := strconv.ParseUint(id[0], 16, 32)
		min, err2 := strconv.ParseUint(id[1], 16, 32)
		ino, err3 := strconv.ParseUint(id[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		k := lockKey{uint32(maj), uint32(min), ino}
		owner := "pid " + fs[4]
		if comm := readAttr(filepath.Join(s.proc, fs[4], "comm")); comm != "" {
			owner += " (" + comm + ")"
		}
		if fs[4] == "-1" {
			owner = "an open file description (" + fs[1] + ")"
		}
		if !slices.Contains(out[k], owner) {
			out[k] = append(out[k], owner)
		}
	}
	return out
}
