package main

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// ext2Image returns a minimal, clean ext2 file system of 128 1-KiB blocks:
// boot block, superblock (block 1), one group descriptor (2), block and
// inode bitmaps (3, 4), an inode table of 32 128-byte inodes (5-8) and the
// root directory (block 9). The guest has no mkfs; its kernel mounts this.
func ext2Image() []byte {
	const (
		bs      = 1024
		blocks  = 128
		inodes  = 32
		used    = 9 // blocks 1-9
		usedIno = 10
	)
	img := make([]byte, blocks*bs)
	le := binary.LittleEndian
	sb := img[1024:2048]
	le.PutUint32(sb[0:], inodes)
	le.PutUint32(sb[4:], blocks)
	le.PutUint32(sb[12:], blocks-1-used) // free blocks (block 0 is not in the group)
	le.PutUint32(sb[16:], inodes-usedIno)
	le.PutUint32(sb[20:], 1)    // s_first_data_block
	le.PutUint32(sb[24:], 0)    // 1 KiB blocks
	le.PutUint32(sb[32:], 8192) // blocks per group
	le.PutUint32(sb[36:], 8192) // frags per group
	le.PutUint32(sb[40:], inodes)
	le.PutUint16(sb[54:], 0xffff) // s_max_mnt_count -1
	le.PutUint16(sb[56:], 0xef53) // magic
	le.PutUint16(sb[58:], 1)      // clean
	le.PutUint16(sb[60:], 1)      // errors: continue
	le.PutUint32(sb[76:], 1)      // dynamic revision
	le.PutUint32(sb[84:], 11)     // first inode
	le.PutUint16(sb[88:], 128)    // inode size
	copy(sb[104:120], "gonvme-nvmectl-t")
	gd := img[2048:]
	le.PutUint32(gd[0:], 3) // block bitmap
	le.PutUint32(gd[4:], 4) // inode bitmap
	le.PutUint32(gd[8:], 5) // inode table
	le.PutUint16(gd[12:], blocks-1-used)
	le.PutUint16(gd[14:], inodes-usedIno)
	le.PutUint16(gd[16:], 1) // directories
	setBits := func(bm []byte, from, to int) {
		for i := from; i < to; i++ {
			bm[i/8] |= 1 << (i % 8)
		}
	}
	setBits(img[3*bs:4*bs], 0, used)        // blocks 1-9
	setBits(img[3*bs:4*bs], blocks-1, 8*bs) // past the end
	setBits(img[4*bs:5*bs], 0, usedIno)     // inodes 1-10
	setBits(img[4*bs:5*bs], inodes, 8*bs)   // past the end
	root := img[5*bs+128 : 5*bs+256]        // inode 2
	le.PutUint16(root[0:], 0o40755)         // directory
	le.PutUint32(root[4:], bs)              // size
	le.PutUint16(root[26:], 2)              // links
	le.PutUint32(root[28:], 2)              // 512-byte sectors
	le.PutUint32(root[40:], 9)              // i_block[0]
	dir := img[9*bs : 10*bs]
	le.PutUint32(dir[0:], 2)
	le.PutUint16(dir[4:], 12)
	le.PutUint16(dir[6:], 1)
	copy(dir[8:], ".")
	le.PutUint32(dir[12:], 2)
	le.PutUint16(dir[16:], bs-12)
	le.PutUint16(dir[18:], 2)
	copy(dir[20:], "..")
	return img
}

// swapHeader returns the first page of a version 1 swap area of pages
// pages: version and last_page at 1024, the signature at the page end.
func swapHeader(pages uint32) []byte {
	h := make([]byte, 4096)
	binary.LittleEndian.PutUint32(h[1024:], 1)
	binary.LittleEndian.PutUint32(h[1028:], pages-1)
	copy(h[4096-10:], "SWAPSPACE2")
	return h
}

func writeDev(t *testing.T, dev string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY|os.O_SYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func swapon(path string) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	_, _, errno := unix.Syscall(unix.SYS_SWAPON, uintptr(unsafe.Pointer(p)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func swapoff(path string) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	_, _, errno := unix.Syscall(unix.SYS_SWAPOFF, uintptr(unsafe.Pointer(p)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func hasFS(name string) bool {
	b, _ := os.ReadFile("/proc/filesystems")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[len(f)-1] == name {
			return true
		}
	}
	return false
}

func driverOf(addr string) string {
	l, err := os.Readlink("/sys/bus/pci/devices/" + addr + "/driver")
	if err != nil {
		return ""
	}
	return l[strings.LastIndexByte(l, '/')+1:]
}

// TestVMSetupRefusesInUse runs last in the default boot (file order): it
// leaves the controller on the kernel driver, then on vfio-pci by force
// under a mounted file system.
func TestVMSetupRefusesInUse(t *testing.T) {
	env := vmtest.Require(t, "default")
	c := env.Controllers()[0]
	addr := env.BindVFIO(t, c)
	v := vm{t}
	// setup on a controller already on vfio-pci does nothing and says so.
	if out := v.ok("setup", addr); !strings.Contains(out, addr+" (1b36 0010): already bound to vfio-pci") {
		t.Errorf("setup on vfio-pci printed %q", out)
	}
	// reset gives it back to the kernel's nvme driver.
	env.LoadNVMeDriver(t, "")
	if out := v.ok("reset", addr); !strings.Contains(out, addr+" (1b36 0010): vfio-pci -> nvme") || driverOf(addr) != "nvme" {
		t.Errorf("reset printed %q; driver now %q", out, driverOf(addr))
	}
	name := env.BindKernel(t, c)
	dev := "/dev/" + name + "n1"

	// Not on vfio-pci: admin verbs say how to fix it.
	code, _, errs := v.run("id-ctrl", addr)
	if code != exitDevice || !strings.Contains(errs, "bound to nvme, not vfio-pci: run `nvmectl setup "+addr+"`") {
		t.Errorf("id-ctrl on nvme: exit %d, stderr %q", code, errs)
	}
	if out := v.ok("list"); !strings.Contains(out, "QEMU NVMe Ctrl") || !strings.Contains(out, c.Serial) {
		t.Errorf("list with the kernel driver (sysfs identity):\n%s", out)
	}

	mnt := t.TempDir()
	mount := func(flags uintptr) {
		t.Helper()
		if hasFS("ext2") {
			writeDev(t, dev, ext2Image())
			if err := unix.Mount(dev, mnt, "ext4", flags, ""); err != nil {
				t.Fatalf("mount %s (ext2 image, ext4 driver): %v\nkernel log:\n%s", dev, err, kernelLog(20))
			}
			return
		}
		// Debian's kernel builds ext4 as a module, which the guest does not
		// carry: mount a tmpfs whose source is the device node, as FUSE
		// file systems on a block device appear in mountinfo.
		t.Logf("no ext2 in /proc/filesystems: mounting a tmpfs with source %s", dev)
		if err := unix.Mount(dev, mnt, "tmpfs", flags, "size=64k"); err != nil {
			t.Fatalf("mount tmpfs from %s: %v", dev, err)
		}
	}
	mount(0)
	code, out, errs := v.run("setup", addr)
	if code != exitDevice || !strings.Contains(out, addr+" (1b36 0010): in use, left on nvme: "+dev+" is mounted on "+mnt) ||
		!strings.Contains(errs, "1 of 1 controllers not bound") {
		t.Errorf("setup with a mounted file system: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	t.Logf("nvmectl setup %s (mounted):\n%s%s", addr, out, errs)
	if d := driverOf(addr); d != "nvme" {
		t.Errorf("after the refusal the controller is on %q, not nvme", d)
	}
	if _, err := os.Stat(mnt + "/."); err != nil || !strings.Contains(readTrim("/proc/self/mountinfo"), " "+mnt+" ") {
		t.Errorf("after the refusal %s is no longer mounted", mnt)
	}
	st := v.json("status")
	ctrl := st["controllers"].([]any)[0].(map[string]any)
	if ctrl["driver"] != "nvme" || len(ctrl["in_use"].([]any)) == 0 {
		t.Errorf("status with a mounted file system: %v", ctrl)
	}
	t.Logf("nvmectl status:\n%s", v.ok("status"))
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatalf("unmount: %v", err)
	}

	// Active swap on the namespace.
	writeDev(t, dev, swapHeader(256))
	if err := swapon(dev); err != nil {
		t.Fatalf("swapon %s: %v", dev, err)
	}
	code, out, _ = v.run("setup", addr)
	if code != exitDevice || !strings.Contains(out, dev+" is active swap") {
		t.Errorf("setup with active swap: exit %d, stdout %q", code, out)
	}
	if d := driverOf(addr); d != "nvme" {
		t.Errorf("after the swap refusal the controller is on %q", d)
	}
	if !strings.Contains(readTrim("/proc/swaps"), dev) {
		t.Error("swap is no longer active after the refusal")
	}
	if err := swapoff(dev); err != nil {
		t.Fatalf("swapoff: %v", err)
	}

	// --force binds under a mounted file system. The guest is thrown away
	// after this package's tests, and this is the last of them.
	mount(unix.MS_RDONLY)
	out = v.ok("setup", "--force", addr)
	if !strings.Contains(out, addr+" (1b36 0010): nvme -> vfio-pci") || !strings.Contains(out, "bound with --force although "+dev+" is mounted") {
		t.Errorf("setup --force printed %q", out)
	}
	if d := driverOf(addr); d != "vfio-pci" {
		t.Errorf("after setup --force the controller is on %q", d)
	}
	if out := v.ok("id-ctrl", addr); !strings.Contains(out, "QEMU NVMe Ctrl") {
		t.Errorf("id-ctrl after setup --force: %q", out)
	}
	_ = unix.Unmount(mnt, unix.MNT_DETACH)
}

// kernelLog returns the last n kernel log records (from /dev/kmsg), for
// failures whose reason only the kernel prints.
func kernelLog(n int) string {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return err.Error()
	}
	defer unix.Close(fd)
	var recs []string
	buf := make([]byte, 8192)
	for {
		k, err := unix.Read(fd, buf)
		if err != nil || k <= 0 {
			break
		}
		rec := string(buf[:k])
		if i := strings.IndexByte(rec, ';'); i >= 0 {
			rec = rec[i+1:]
		}
		recs = append(recs, strings.TrimSpace(rec))
	}
	if len(recs) > n {
		recs = recs[len(recs)-n:]
	}
	return strings.Join(recs, "\n")
}
