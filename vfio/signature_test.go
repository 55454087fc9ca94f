package vfio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// image is a sparse test disk: size bytes, zero but for what put wrote.
type image struct {
	size  int64
	parts map[int64][]byte
}

func newImage(size int64) *image { return &image{size: size, parts: map[int64][]byte{}} }

func (im *image) put(off int64, b []byte) *image { im.parts[off] = b; return im }

func (im *image) ReadAt(b []byte, off int64) (int, error) {
	clear(b)
	for o, p := range im.parts {
		lo, hi := max(o, off), min(o+int64(len(p)), off+int64(len(b)))
		if lo < hi {
			copy(b[lo-off:hi-off], p[lo-o:hi-o])
		}
	}
	return len(b), nil
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// mbr returns a boot sector with one partition of type typ.
func mbr(typ byte) []byte {
	b := make([]byte, 512)
	b[446+4] = typ
	binary.LittleEndian.PutUint32(b[446+8:], 2048)
	binary.LittleEndian.PutUint32(b[446+12:], 4096)
	b[510], b[511] = 0x55, 0xaa
	return b
}

func TestProbeSignatures(t *testing.T) {
	const gib = 1 << 30
	fat := func(at int64, s string) []byte {
		b := make([]byte, 512)
		copy(b[at:], s)
		b[510], b[511] = 0x55, 0xaa
		return b
	}
	tests := []struct {
		name string
		im   *image
		want []string
	}{
		{"zeros", newImage(gib), nil},
		{"too small for anything", newImage(100), nil},
		{"ext4", newImage(gib).put(extMagicOff, []byte{0x53, 0xef}), []string{"an ext2/3/4 file system"}},
		{"xfs", newImage(gib).put(0, []byte("XFSB")), []string{"an XFS file system"}},
		{"btrfs", newImage(gib).put(0x10040, []byte("_BHRfS_M")), []string{"a Btrfs file system"}},
		{"f2fs", newImage(gib).put(1024, le32(0xf2f52010)), []string{"an F2FS file system"}},
		{"swap", newImage(gib).put(4096-10, []byte("SWAPSPACE2")), []string{"a swap area"}},
		{"swap, 64 KiB pages", newImage(gib).put(65536-10, []byte("SWAPSPACE2")), []string{"a swap area"}},
		{"lvm2 pv", newImage(gib).put(512, []byte("LABELONE")).put(512+24, []byte("LVM2 001")), []string{"an LVM2 physical volume"}},
		{"LABELONE alone", newImage(gib).put(512, []byte("LABELONE")), nil},
		{"md 1.2", newImage(gib).put(4096, le32(mdMagic)), []string{"a Linux RAID (md) member"}},
		{"md 1.1", newImage(gib).put(0, le32(mdMagic)), []string{"a Linux RAID (md) member"}},
		{"md 0.90", newImage(gib+12345).put((gib+12345)&^(64<<10-1)-64<<10, le32(mdMagic)), []string{"a Linux RAID (md) member"}},
		{"md 1.0", newImage(gib+12345).put((gib+12345-8<<10)&^(4<<10-1), le32(mdMagic)), []string{"a Linux RAID (md) member"}},
		{"zfs, label 0", newImage(gib).put(zfsUBRing+5*zfsUBSlot, le64(zfsUBMagic)), []string{"a ZFS pool member"}},
		{"zfs, label 3 big-endian", newImage(gib+100).put(gib-zfsLabel+zfsUBRing, be64(zfsUBMagic)), []string{"a ZFS pool member"}},
		{"bluestore", newImage(gib).put(0, []byte("bluestore block device\n5e4f0c1a-0000-4000-8000-000000000000\n")), []string{"a Ceph BlueStore device"}},
		{"bcache", newImage(gib).put(bcacheOff, []byte(bcacheMagic)), []string{"a bcache device"}},
		{"luks", newImage(gib).put(0, []byte("LUKS\xba\xbe\x00\x02")), []string{"a LUKS encrypted volume"}},
		{"ntfs", newImage(gib).put(0, fat(3, "NTFS    ")), []string{"an NTFS file system"}},
		{"exfat", newImage(gib).put(0, fat(3, "EXFAT   ")), []string{"an exFAT file system"}},
		{"fat32", newImage(gib).put(0, fat(82, "FAT32   ")), []string{"a FAT file system"}},
		{"fat16", newImage(gib).put(0, fat(54, "FAT16   ")), []string{"a FAT file system"}},
		{"iso9660", newImage(gib).put(32769, []byte("CD001")), []string{"an ISO 9660 file system"}},
		{"squashfs", newImage(gib).put(0, []byte("hsqs")), []string{"a SquashFS file system"}},
		{"jfs", newImage(gib).put(32768, []byte("JFS1")), []string{"a JFS file system"}},
		{"reiserfs", newImage(gib).put(65536+52, []byte("ReIsEr2Fs")), []string{"a ReiserFS file system"}},
		{"dos partition table", newImage(gib).put(0, mbr(0x83)), []string{"a DOS (MBR) partition table"}},
		{"empty mbr", newImage(gib).put(0, mbr(0)), nil},
		{"bad boot flag", newImage(gib).put(0, func() []byte { b := mbr(0x83); b[446] = 0x12; return b }()), nil},
		{"gpt, 512-byte blocks", newImage(gib).put(0, mbr(0xee)).put(512, []byte("EFI PART")), []string{"a GPT partition table", "a DOS (MBR) partition table"}},
		{"gpt, 4 KiB blocks", newImage(gib).put(4096, []byte("EFI PART")), []string{"a GPT partition table"}},
		{"gpt backup only", newImage(gib).put(gib-512, []byte("EFI PART")), []string{"a GPT partition table"}},
		{"ext4 in a partition table's disk", newImage(gib).put(0, mbr(0x83)).put(extMagicOff, []byte{0x53, 0xef}), []string{"an ext2/3/4 file system", "a DOS (MBR) partition table"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := probeSignatures(tt.im, tt.im.size)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("probe = %q, want %q", got, tt.want)
			}
		})
	}
}

// failingReader fails every read at or past bad, as a disk with a media
// error there does.
type failingReader struct {
	*image
	bad int64
}

func (f failingReader) ReadAt(b []byte, off int64) (int, error) {
	if off+int64(len(b)) > f.bad {
		return 0, errors.New("input/output error")
	}
	return f.image.ReadAt(b, off)
}

func TestProbeSignaturesReadErrors(t *testing.T) {
	im := newImage(1<<30).put(0, []byte("XFSB")).put(4096, le32(mdMagic))
	// Reads past 2 KiB fail: the XFS magic is still found, the md one
	// (at 4 KiB) is skipped, and nothing panics.
	got := probeSignatures(failingReader{im, 2048}, im.size)
	if !reflect.DeepEqual(got, []string{"an XFS file system"}) {
		t.Errorf("probe with read errors = %q", got)
	}
}

func FuzzProbeSignatures(f *testing.F) {
	f.Add(mbr(0x83), int64(1<<20))
	f.Add([]byte("XFSB"), int64(4))
	f.Fuzz(func(t *testing.T, head []byte, size int64) {
		if size < 0 || size > 1<<40 {
			return
		}
		r := bytes.NewReader(head)
		_ = probeSignatures(r, size) // reads past len(head) fail: skipped
	})
}
