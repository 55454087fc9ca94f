package vfio_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// The in-use tests give the controller to the kernel's nvme driver, put
// its namespace to one use, and check that vfio.Bind refuses it, saying
// why, and leaves both the driver and the use alone. Each wipes the
// namespace's signatures before and after, so that the next test (and
// the next package in the boot) starts from a blank disk.

// onKernel gives the first controller to the kernel's nvme driver and
// returns it and its first namespace's block device, wiped.
func onKernel(t *testing.T, env *vmtest.Env) (vmtest.Ctrl, string) {
	t.Helper()
	c := env.Controllers()[0]
	env.BindVFIO(t, c)
	name := env.BindKernel(t, c)
	dev := "/dev/" + name + "n1"
	waitDisk(t, dev)
	wipe(t, dev)
	t.Cleanup(func() { wipe(t, dev) })
	return c, dev
}

// waitDisk waits until dev opens: its node can show up before the disk
// answers (ENXIO).
func waitDisk(t *testing.T, dev string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		f, err := os.Open(dev)
		if err == nil {
			f.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("open %s: %v", dev, err)
		}
	}
}

// wipe zeroes the first and the last MiB of dev, where every signature
// vfio looks for lives. A dev that is gone (bound away) is left alone.
func wipe(t *testing.T, dev string) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY|os.O_SYNC, 0)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENXIO) {
		return
	}
	if err != nil {
		t.Fatalf("wipe %s: %v", dev, err)
	}
	defer f.Close()
	size, err := f.Seek(0, 2)
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for _, off := range []int64{0, size - int64(len(zero))} {
		if _, err := f.WriteAt(zero, off); err != nil {
			t.Fatalf("wipe %s at %d: %v", dev, off, err)
		}
	}
}

func writeAt(t *testing.T, dev string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY|os.O_SYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func driverOf(addr string) string {
	l, err := os.Readlink("/sys/bus/pci/devices/" + addr + "/driver")
	if err != nil {
		return ""
	}
	return l[strings.LastIndexByte(l, '/')+1:]
}

// refused checks that Bind refused c with first as the first use.
func refused(t *testing.T, c vmtest.Ctrl, err error, first vfio.Use, words ...string) {
	t.Helper()
	var iu *vfio.InUseError
	if !errors.Is(err, vfio.ErrInUse) || !errors.As(err, &iu) {
		t.Fatalf("bind of %s in use: %v, want an InUseError", c.Addr, err)
	}
	t.Logf("refusal: %v", err)
	got := iu.Uses[0]
	if got.Device != first.Device || got.Kind != first.Kind || (first.Detail != "" && got.Detail != first.Detail) {
		t.Errorf("first use %+v, want %+v", got, first)
	}
	for _, w := range append(words, c.Addr, "vfio.Force()") {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("refusal %q lacks %q", err, w)
		}
	}
	if d := driverOf(c.Addr); d != "nvme" {
		t.Errorf("after the refusal %s is on %q, not nvme", c.Addr, d)
	}
}

// ext2Image returns a minimal, clean ext2 file system of 128 1-KiB blocks
// that the guest's ext4 driver mounts (the guest has no mkfs): boot block,
// superblock, group descriptor, bitmaps, a 32-inode table and the root
// directory.
func ext2Image() []byte {
	const (
		bs      = 1024
		blocks  = 128
		inodes  = 32
		used    = 9
		usedIno = 10
	)
	img := make([]byte, blocks*bs)
	le := binary.LittleEndian
	sb := img[1024:2048]
	le.PutUint32(sb[0:], inodes)
	le.PutUint32(sb[4:], blocks)
	le.PutUint32(sb[12:], blocks-1-used)
	le.PutUint32(sb[16:], inodes-usedIno)
	le.PutUint32(sb[20:], 1)    // s_first_data_block
	le.PutUint32(sb[32:], 8192) // blocks per group
	le.PutUint32(sb[36:], 8192) // frags per group
	le.PutUint32(sb[40:], inodes)
	le.PutUint16(sb[54:], 0xffff) // s_max_mnt_count
	le.PutUint16(sb[56:], 0xef53) // magic
	le.PutUint16(sb[58:], 1)      // clean
	le.PutUint16(sb[60:], 1)      // errors: continue
	le.PutUint32(sb[76:], 1)      // dynamic revision
	le.PutUint32(sb[84:], 11)     // first inode
	le.PutUint16(sb[88:], 128)    // inode size
	gd := img[2048:]
	le.PutUint32(gd[0:], 3) // block bitmap
	le.PutUint32(gd[4:], 4) // inode bitmap
	le.PutUint32(gd[8:], 5) // inode table
	le.PutUint16(gd[12:], blocks-1-used)
	le.PutUint16(gd[14:], inodes-usedIno)
	le.PutUint16(gd[16:], 1)
	setBits := func(bm []byte, from, to int) {
		for i := from; i < to; i++ {
			bm[i/8] |= 1 << (i % 8)
		}
	}
	setBits(img[3*bs:4*bs], 0, used)
	setBits(img[3*bs:4*bs], blocks-1, 8*bs)
	setBits(img[4*bs:5*bs], 0, usedIno)
	setBits(img[4*bs:5*bs], inodes, 8*bs)
	root := img[5*bs+128 : 5*bs+256] // inode 2
	le.PutUint16(root[0:], 0o40755)
	le.PutUint32(root[4:], bs)
	le.PutUint16(root[26:], 2)
	le.PutUint32(root[28:], 2)
	le.PutUint32(root[40:], 9)
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

func TestVMBindRefusesMounted(t *testing.T) {
	env := vmtest.Require(t, "default")
	c, dev := onKernel(t, env)
	writeAt(t, dev, ext2Image(), 0)
	mnt := t.TempDir()
	if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s (ext2 image, ext4 driver): %v", dev, err)
	}
	defer unix.Unmount(mnt, 0)
	_, err := vfio.Bind(c.Addr)
	refused(t, c, err, vfio.Use{Device: dev, Kind: vfio.UseMounted, Detail: mnt}, "is mounted on "+mnt)
	// IgnoreSignatures does not let a mounted file system go.
	_, err = vfio.Bind(c.Addr, vfio.IgnoreSignatures())
	refused(t, c, err, vfio.Use{Device: dev, Kind: vfio.UseMounted, Detail: mnt})
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatalf("unmount after the refusal: %v", err)
	}
	// Unmounted, the file system is still there: refused for its signature.
	_, err = vfio.Bind(c.Addr)
	refused(t, c, err, vfio.Use{Device: dev, Kind: vfio.UseSignature, Detail: "an ext2/3/4 file system"}, "holds an ext2/3/4 file system")
}

func swapCall(nr uintptr, path string) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(nr, uintptr(unsafe.Pointer(p)), 0, 0); errno != 0 {
		return errno
	}
	return nil
}

func TestVMBindRefusesSwap(t *testing.T) {
	env := vmtest.Require(t, "default")
	c, dev := onKernel(t, env)
	h := make([]byte, 4096) // a version 1 swap area of 256 pages
	binary.LittleEndian.PutUint32(h[1024:], 1)
	binary.LittleEndian.PutUint32(h[1028:], 255)
	copy(h[4096-10:], "SWAPSPACE2")
	writeAt(t, dev, h, 0)
	if err := swapCall(unix.SYS_SWAPON, dev); err != nil {
		t.Fatalf("swapon %s: %v", dev, err)
	}
	defer swapCall(unix.SYS_SWAPOFF, dev)
	_, err := vfio.Bind(c.Addr)
	refused(t, c, err, vfio.Use{Device: dev, Kind: vfio.UseSwap}, "is active swap")
	if b, _ := os.ReadFile("/proc/swaps"); !strings.Contains(string(b), dev) {
		t.Error("swap is no longer active after the refusal")
	}
	if err := swapCall(unix.SYS_SWAPOFF, dev); err != nil {
		t.Fatalf("swapoff: %v", err)
	}
	_, err = vfio.Bind(c.Addr)
	refused(t, c, err, vfio.Use{Device: dev, Kind: vfio.UseSignature, Detail: "a swap area"})
}

// TestVMBindRefusesExclusive holds the namespace open with O_EXCL, as a
// mount in another namespace, an md array or a VM would: no mount, no swap
// and no holder tell, only the open does.
func TestVMBindRefusesExclusive(t *testing.T) {
	env := vmtest.Require(t, "default")
	c, dev := onKernel(t, env)
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s O_EXCL: %v", dev, err)
	}
	_, err = vfio.Bind(c.Addr)
	refused(t, c, err, vfio.Use{Device: dev, Kind: vfio.UseExclusive}, "open exclusively")
	unix.Close(fd)
	uses, err := vfio.InUse(c.Addr)
	if err != nil || len(uses) != 0 {
		t.Errorf("after the close: uses %v, %v; want none (the disk is blank)", uses, err)
	}
}

// TestVMBindRefusesLocked takes a flock on the namespace's node, as QEMU
// locks the disks of a running VM; then Force binds all the same.
func TestVMBindRefusesLocked(t *testing.T) {
	env := vmtest.Require(t, "default")
	c, dev := onKernel(t, env)
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatalf("flock %s: %v", dev, err)
	}
	_, err = vfio.Bind(c.Addr)
	refused(t, c, err, vfio.Use{Device: dev, Kind: vfio.UseLocked}, fmt.Sprintf("locked by pid %d", os.Getpid()))
	prev, err := vfio.Bind(c.Addr, vfio.Force())
	if err != nil || prev != "nvme" || driverOf(c.Addr) != "vfio-pci" {
		t.Fatalf("forced bind: %q, %v; driver %q", prev, err, driverOf(c.Addr))
	}
}

// TestVMBindRefusesSignature writes a file system, then a partition
// table, to an unmounted namespace nothing uses: data, not use, is why
// Bind refuses; IgnoreSignatures then binds.
func TestVMBindRefusesSignature(t *testing.T) {
	env := vmtest.Require(t, "default")
	c, dev := onKernel(t, env)
	writeAt(t, dev, ext2Image(), 0)
	_, err := vfio.Bind(c.Addr)
	refused(t, c, err, vfio.Use{Device: dev, Kind: vfio.UseSignature, Detail: "an ext2/3/4 file system"}, dev+" holds an ext2/3/4 file system")

	wipe(t, dev)
	mbr := make([]byte, 512)
	mbr[446+4] = 0x83 // one Linux partition
	binary.LittleEndian.PutUint32(mbr[446+8:], 2048)
	binary.LittleEndian.PutUint32(mbr[446+12:], 8192)
	mbr[510], mbr[511] = 0x55, 0xaa
	writeAt(t, dev, mbr, 0)
	_, err = vfio.Bind(c.Addr)
	refused(t, c, err, vfio.Use{Device: dev, Kind: vfio.UseSignature, Detail: "a DOS (MBR) partition table"}, "partition table")

	wipe(t, dev)
	if uses, err := vfio.InUse(c.Addr); err != nil || len(uses) != 0 {
		t.Fatalf("wiped: uses %v, %v", uses, err)
	}
	writeAt(t, dev, mbr, 0)
	if _, err := vfio.Bind(c.Addr, vfio.IgnoreSignatures()); err != nil || driverOf(c.Addr) != "vfio-pci" {
		t.Fatalf("bind ignoring signatures: %v; driver %q", err, driverOf(c.Addr))
	}
	// Give it back to the kernel to wipe the table for the next test.
	dev = "/dev/" + env.BindKernel(t, c) + "n1"
	waitDisk(t, dev)
	wipe(t, dev)
}
