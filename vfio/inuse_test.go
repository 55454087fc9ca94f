package vfio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// nvmeNS gives the fake controller at addr (named ctrl, "nvme0") a
// namespace disk with sysfs entries, a device node (a regular file holding
// img) and partitions. multipath lists it under the controller as a path
// (nvme0c0n1) instead of by its own name.
func (f *fakeSys) nvmeNS(addr, ctrl, disk, dev string, img []byte, multipath bool, parts ...string) {
	cdir := filepath.Join(f.s.device(addr), "nvme", ctrl)
	must(f.t, os.MkdirAll(cdir, 0o755))
	entry := disk
	if multipath {
		entry = strings.Replace(disk, "n", "c0n", 1) // nvme0n1 -> nvme0c0n1
		entry = "nvme" + strings.TrimPrefix(entry, "nvme")
	}
	must(f.t, os.MkdirAll(filepath.Join(cdir, entry), 0o755))
	bdir := filepath.Join(f.s.sys, "block", disk)
	must(f.t, os.MkdirAll(filepath.Join(bdir, "holders"), 0o755))
	must(f.t, os.WriteFile(filepath.Join(bdir, "dev"), []byte(dev+"\n"), 0o644))
	if img != nil {
		must(f.t, os.WriteFile(filepath.Join(f.s.dev, disk), img, 0o644))
	}
	for i, p := range parts {
		pdir := filepath.Join(bdir, p)
		must(f.t, os.MkdirAll(filepath.Join(pdir, "holders"), 0o755))
		must(f.t, os.WriteFile(filepath.Join(pdir, "partition"), []byte(fmt.Sprint(i+1)), 0o644))
		must(f.t, os.WriteFile(filepath.Join(pdir, "dev"), []byte(fmt.Sprintf("259:%d\n", 10+i)), 0o644))
		must(f.t, os.WriteFile(filepath.Join(f.s.dev, p), make([]byte, 1<<20), 0o644))
	}
}

func (f *fakeSys) procFile(name, content string) {
	must(f.t, os.WriteFile(filepath.Join(f.s.proc, name), []byte(content), 0o644))
}

// lockLine returns a /proc/locks line for a flock on the file at path.
func lockLine(t *testing.T, path string, pid int) string {
	var st unix.Stat_t
	must(t, unix.Stat(path, &st))
	return fmt.Sprintf("1: FLOCK  ADVISORY  WRITE %d %02x:%02x:%d 0 EOF\n", pid, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
}

// inUseMachine is a controller at 0000:00:04.0 with five namespaces, each
// in use in another way.
func inUseMachine(t *testing.T) *fakeSys {
	f := newFakeSys(t)
	f.driver(vfioPCIDriver)
	const addr = "0000:00:04.0"
	f.device(addr, qemuVendor, qemuNVMe, ClassNVMe, "nvme", 3)
	f.playKernel()
	xfs := make([]byte, 1<<20)
	copy(xfs, "XFSB")
	f.nvmeNS(addr, "nvme0", "nvme0n1", "259:0", make([]byte, 1<<20), false, "nvme0n1p1") // p1 mounted
	f.nvmeNS(addr, "nvme0", "nvme0n2", "259:1", make([]byte, 1<<20), true)               // swap; a multipath path
	f.nvmeNS(addr, "nvme0", "nvme0n3", "259:2", make([]byte, 1<<20), false)              // held by dm-0
	f.nvmeNS(addr, "nvme0", "nvme0n4", "259:3", make([]byte, 1<<20), false)              // locked
	f.nvmeNS(addr, "nvme0", "nvme0n5", "259:4", xfs, false)                              // an XFS file system
	must(t, os.MkdirAll(filepath.Join(f.s.sys, "block", "nvme0n3", "holders", "dm-0"), 0o755))
	f.procFile("self/mountinfo", "22 1 0:20 / / rw - rootfs rootfs rw\n40 22 259:10 / /mnt/data\\040x rw,relatime - ext4 /dev/nvme0n1p1 rw\n")
	f.procFile("swaps", "Filename\tType\tSize\tUsed\tPriority\n/dev/nvme0n2\tpartition\t1048572\t0\t-2\n")
	must(t, os.MkdirAll(filepath.Join(f.s.proc, "4242"), 0o755))
	f.procFile("4242/comm", "qemu-system-x86\n")
	f.procFile("locks", lockLine(t, filepath.Join(f.s.dev, "nvme0n4"), 4242)+"1: -> FLOCK  ADVISORY  WRITE 99 00:00:1 0 EOF\n")
	return f
}

func TestInUse(t *testing.T) {
	f := inUseMachine(t)
	uses, err := f.s.inUse("0000:00:04.0")
	must(t, err)
	want := []Use{
		{"/dev/nvme0n1p1", UseMounted, "/mnt/data x"},
		{"/dev/nvme0n2", UseSwap, "/dev/nvme0n2"},
		{"/dev/nvme0n3", UseHolder, "dm-0"},
		{"/dev/nvme0n4", UseLocked, "pid 4242 (qemu-system-x86)"},
		{"/dev/nvme0n5", UseSignature, "an XFS file system"},
	}
	if !reflect.DeepEqual(uses, want) {
		t.Fatalf("uses:\n got %v\nwant %v", uses, want)
	}
	for _, s := range []string{
		"/dev/nvme0n1p1 is mounted on /mnt/data x",
		"/dev/nvme0n2 is active swap (/dev/nvme0n2)",
		"/dev/nvme0n3 is held by dm-0 (LVM, MD or device mapper)",
		"/dev/nvme0n4 is locked by pid 4242 (qemu-system-x86)",
		"/dev/nvme0n5 holds an XFS file system",
	} {
		found := false
		for _, u := range uses {
			found = found || strings.HasPrefix(u.String(), s)
		}
		if !found {
			t.Errorf("no use reads %q", s)
		}
	}
	// The exported variant over the same tree.
	again, err := InUseFrom(filepath.Dir(f.s.sys), "0000:00:04.0")
	if err != nil || !reflect.DeepEqual(again, want) {
		t.Errorf("InUseFrom = %v, %v", again, err)
	}
	// A controller without block devices is free.
	f.device("0000:00:05.0", qemuVendor, qemuNVMe, ClassNVMe, "vfio-pci", 4)
	if u, err := f.s.inUse("0000:00:05.0"); err != nil || len(u) != 0 {
		t.Errorf("controller without block devices: %v, %v", u, err)
	}
	if _, err := f.s.inUse("../../x"); !errors.Is(err, ErrNoDevice) {
		t.Errorf("bad address: %v", err)
	}
}

func TestBindRefusesInUse(t *testing.T) {
	f := inUseMachine(t)
	const addr = "0000:00:04.0"
	prev, err := f.s.bind(addr)
	var iu *InUseError
	if !errors.Is(err, ErrInUse) || !errors.As(err, &iu) || len(iu.Uses) != 5 || iu.Addr != addr {
		t.Fatalf("bind of a controller in use: %v", err)
	}
	for _, s := range []string{addr, "mounted on /mnt/data", "vfio.Force()", "--force", "holds an XFS file system"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("refusal %q lacks %q", err, s)
		}
	}
	if prev != "nvme" || f.s.driver(addr) != "nvme" || len(f.relWrites()) != 0 {
		t.Errorf("after the refusal: previous %q, driver %q, writes %q", prev, f.s.driver(addr), f.relWrites())
	}

	// IgnoreSignatures drops only the signature.
	_, err = f.s.bind(addr, IgnoreSignatures())
	if !errors.As(err, &iu) || len(iu.Uses) != 4 || strings.Contains(err.Error(), "XFS") {
		t.Errorf("bind ignoring signatures: %v, want the four real uses", err)
	}

	// Only the signature left: IgnoreSignatures binds.
	f.procFile("self/mountinfo", "")
	f.procFile("swaps", "Filename\tType\tSize\tUsed\tPriority\n")
	f.procFile("locks", "")
	must(t, os.Remove(filepath.Join(f.s.sys, "block", "nvme0n3", "holders", "dm-0")))
	if _, err := f.s.bind(addr); !errors.As(err, &iu) || len(iu.Uses) != 1 || iu.Uses[0].Kind != UseSignature {
		t.Fatalf("bind with only a signature: %v", err)
	}
	if _, err := f.s.bind(addr, IgnoreSignatures()); err != nil || f.s.driver(addr) != vfioPCIDriver {
		t.Fatalf("bind ignoring the signature: %v, driver %q", err, f.s.driver(addr))
	}
}

func TestBindForce(t *testing.T) {
	f := inUseMachine(t)
	const addr = "0000:00:04.0"
	prev, err := f.s.bind(addr, Force())
	if err != nil || prev != "nvme" || f.s.driver(addr) != vfioPCIDriver {
		t.Fatalf("forced bind: %q, %v; driver %q", prev, err, f.s.driver(addr))
	}
}
