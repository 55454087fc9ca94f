package vfio

import (
	"encoding/binary"
	"io"
)

// Data signatures: what Bind looks for on a namespace before it takes the
// controller from the kernel, so that a disk holding a file system, a
// volume or a partition table is not handed to a userspace driver that
// will overwrite it.
//
// This is a small prober of the well-known magic numbers at their
// well-known offsets, written here rather than taken from a library:
//   - libblkid (util-linux) is the reference, but reaching it needs cgo,
//     and gonvme's VM test binaries, like many deployments of a Go
//     program, are built with CGO_ENABLED=0 and run where no libblkid.so
//     is installed;
//   - no maintained pure-Go prober covers the formats that matter here:
//     u-root's pkg/mount recognises a handful of file systems (no swap,
//     LVM, MD, ZFS, BlueStore or partition tables), and the Go module
//     registry this project draws from has no libblkid equivalent.
//
// It answers "is there anything here", not "what exactly": it reads a few
// bytes at each place a format keeps its magic (the offsets are those
// libblkid's probers and the formats' own documentation use) and names
// every format it finds. A read that fails (a media error) skips that
// probe; it does not make the device look used.

// signature is one format: its name and how to recognise it.
type signature struct {
	name  string
	match func(p *prober) bool
}

// prober reads a device of size bytes.
type prober struct {
	r    io.ReaderAt
	size int64
}

// at returns n bytes at off, or nil when they are past the end or
// unreadable.
func (p *prober) at(off int64, n int) []byte {
	if off < 0 || n <= 0 || off > p.size-int64(n) {
		return nil
	}
	b := make([]byte, n)
	if _, err := p.r.ReadAt(b, off); err != nil {
		return nil
	}
	return b
}

// is reports whether magic sits at off.
func (p *prober) is(off int64, magic string) bool {
	b := p.at(off, len(magic))
	return b != nil && string(b) == magic
}

// le32 reads a little-endian uint32 at off (ok false if unreadable).
func (p *prober) le32(off int64) (uint32, bool) {
	b := p.at(off, 4)
	if b == nil {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b), true
}

const (
	mdMagic     = 0xa92b4efc  // MD_SB_MAGIC, md_p.h
	zfsUBMagic  = 0x00bab10c  // UBERBLOCK_MAGIC, uberblock_impl.h
	zfsLabel    = 256 << 10   // sizeof (vdev_label_t)
	zfsUBRing   = 128 << 10   // offset and size of the uberblock ring in a label
	zfsUBSlot   = 1 << 10     // smallest uberblock slot (ashift 10)
	extMagicOff = 1024 + 0x38 // s_magic in the ext2/3/4 superblock
	bcacheOff   = 4096 + 24   // struct cache_sb.magic
	bcacheMagic = "\xc6\x85\x73\xf6\x4e\x1a\x45\xca\x82\x65\xf5\x7f\x48\xba\x6d\x81"
)

// signatures, volume managers and file systems first, partition tables
// last (a FAT boot sector also ends in 0x55AA).
var signatures = []signature{
	{"an LVM2 physical volume", func(p *prober) bool {
		// label_header in one of the first four sectors.
		for s := int64(0); s < 4; s++ {
			if p.is(s*512, "LABELONE") && p.is(s*512+24, "LVM2 001") {
				return true
			}
		}
		return false
	}},
	{"a Linux RAID (md) member", func(p *prober) bool {
		offs := []int64{0, 4096} // v1.1, v1.2
		if p.size >= 128<<10 {
			offs = append(offs, (p.size&^(64<<10-1))-64<<10) // v0.90: last 64 KiB-aligned 64 KiB
		}
		if p.size >= 12<<10 {
			offs = append(offs, (p.size-8<<10)&^(4<<10-1)) // v1.0: 8-12 KiB from the end
		}
		for _, off := range offs {
			b := p.at(off, 4)
			if b != nil && (binary.LittleEndian.Uint32(b) == mdMagic || binary.BigEndian.Uint32(b) == mdMagic) {
				return true
			}
		}
		return false
	}},
	{"a ZFS pool member", func(p *prober) bool {
		// Four labels, two at the start and two at the end (of the size
		// rounded down to a label), each with a ring of uberblocks.
		end := p.size &^ (zfsLabel - 1)
		for _, label := range []int64{0, zfsLabel, end - 2*zfsLabel, end - zfsLabel} {
			for slot := int64(0); slot < zfsUBRing; slot += zfsUBSlot {
				b := p.at(label+zfsUBRing+slot, 8)
				if b != nil && (binary.LittleEndian.Uint64(b) == zfsUBMagic || binary.BigEndian.Uint64(b) == zfsUBMagic) {
					return true
				}
			}
		}
		return false
	}},
	{"a Ceph BlueStore device", func(p *prober) bool { return p.is(0, "bluestore block device") }},
	{"a bcache device", func(p *prober) bool { return p.is(bcacheOff, bcacheMagic) }},
	{"a LUKS encrypted volume", func(p *prober) bool { return p.is(0, "LUKS\xba\xbe") || p.is(0, "SKUL\xba\xbe") }},
	{"a swap area", func(p *prober) bool {
		// The signature ends the first page, whatever the page size.
		for _, page := range []int64{4096, 8192, 16384, 65536} {
			if p.is(page-10, "SWAPSPACE2") || p.is(page-10, "SWAP-SPACE") {
				return true
			}
		}
		return false
	}},
	{"an ext2/3/4 file system", func(p *prober) bool {
		b := p.at(extMagicOff, 2)
		return b != nil && binary.LittleEndian.Uint16(b) == 0xef53
	}},
	{"an XFS file system", func(p *prober) bool { return p.is(0, "XFSB") }},
	{"a Btrfs file system", func(p *prober) bool { return p.is(0x10040, "_BHRfS_M") }},
	{"an F2FS file system", func(p *prober) bool { v, ok := p.le32(1024); return ok && v == 0xf2f52010 }},
	{"a JFS file system", func(p *prober) bool { return p.is(32768, "JFS1") }},
	{"a ReiserFS file system", func(p *prober) bool {
		return p.is(65536+52, "ReIsErFs") || p.is(65536+52, "ReIsEr2Fs") || p.is(65536+52, "ReIsEr3Fs")
	}},
	{"an NTFS file system", func(p *prober) bool { return p.is(3, "NTFS    ") }},
	{"an exFAT file system", func(p *prober) bool { return p.is(3, "EXFAT   ") }},
	{"a FAT file system", func(p *prober) bool { return isFAT(p) }},
	{"an ISO 9660 file system", func(p *prober) bool { return p.is(32769, "CD001") }},
	{"a SquashFS file system", func(p *prober) bool { return p.is(0, "hsqs") }},
	{"a GPT partition table", func(p *prober) bool {
		// The header in LBA 1, for 512- and 4096-byte blocks, or its
		// backup in the last block.
		return p.is(512, "EFI PART") || p.is(4096, "EFI PART") ||
			p.is(p.size-512, "EFI PART") || p.is(p.size-4096, "EFI PART")
	}},
	{"a DOS (MBR) partition table", func(p *prober) bool { return isMBR(p) }},
}

// isFAT recognises a FAT boot sector: 0x55AA and a FAT type string.
func isFAT(p *prober) bool {
	if !p.is(510, "\x55\xaa") {
		return false
	}
	return p.is(54, "FAT12   ") || p.is(54, "FAT16   ") || p.is(54, "FAT     ") || p.is(82, "FAT32   ")
}

// isMBR recognises a DOS partition table: 0x55AA, not a file system's
// boot sector, and four entries each either empty or with a valid boot
// flag, at least one in use.
func isMBR(p *prober) bool {
	if !p.is(510, "\x55\xaa") || isFAT(p) || p.is(3, "NTFS    ") || p.is(3, "EXFAT   ") {
		return false
	}
	tab := p.at(446, 64)
	if tab == nil {
		return false
	}
	used := 0
	for i := 0; i < 4; i++ {
		e := tab[16*i : 16*i+16]
		if e[0] != 0 && e[0] != 0x80 {
			return false
		}
		if e[4] != 0 {
			used++
		}
	}
	return used > 0
}

// probeSignatures returns every format whose signature r (size bytes)
// carries, in the order of signatures.
func probeSignatures(r io.ReaderAt, size int64) []string {
	p := &prober{r: r, size: size}
	var out []string
	for _, s := range signatures {
		if s.match(p) {
			out = append(out, s.name)
		}
	}
	return out
}
