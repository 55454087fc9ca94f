package ddi

import (
	"encoding/hex"
	"fmt"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Attr is what a GEOM consumer learns about a disk from its provider
// (g_provider's mediasize, sectorsize, stripesize, stripeoffset) and from
// BIO_GETATTR (g_bio(9): GEOM::candelete, GEOM::ident, GEOM::lunid), for
// one registered namespace. The values follow FreeBSD's nda(4), the NVMe
// disk driver under GEOM.
type Attr struct {
	// SectorSize is the logical block size in bytes (sectorsize).
	SectorSize int
	// MediaSize is the size of the namespace in bytes (mediasize).
	MediaSize int64
	// StripeSize is the optimal I/O boundary (NOIOB) in bytes, or 0 when
	// the namespace reports none (stripesize). Strategy never lets a data
	// command cross it.
	StripeSize int64
	// StripeOffset is where the first stripe starts (stripeoffset): 0,
	// NOIOB boundaries are multiples of NOIOB from block 0.
	StripeOffset int64
	// MaxTransfer is the most bytes Strategy puts in one data command:
	// MaxBlocks blocks (d_maxsize). Larger transfers are split.
	MaxTransfer int
	// CanDelete says whether CmdDelete (BIO_DELETE) deallocates blocks:
	// the controller supports Dataset Management (ONCS bit 2)
	// (GEOM::candelete).
	CanDelete bool
	// WriteCache says whether the controller has a volatile write cache
	// (VWC bit 0), which CmdFlush (BIO_FLUSH) commits.
	WriteCache bool
	// Ident is the controller's serial number (GEOM::ident, as nda(4)
	// reports it).
	Ident string
	// LUNID is the namespace's globally unique identifier in hex: its
	// NGUID, else its EUI-64, else "" (GEOM::lunid).
	LUNID string
	// Model is the controller's model number (d_descr).
	Model string
}

// Getattr returns the attributes of the device. Any goroutine.
func (d *Device) Getattr() Attr {
	a := Attr{
		SectorSize:  d.bsize,
		MediaSize:   int64(d.blocks) * int64(d.bsize),
		StripeSize:  int64(d.noiob) * int64(d.bsize),
		MaxTransfer: int(d.maxBlocks) * d.bsize,
	}
	if id := d.ns.Controller().Identify(); id != nil {
		a.CanDelete = id.ONCS&spec.ONCSDatasetManagement != 0
		a.WriteCache = id.VWC&1 != 0
		a.Ident, a.Model = id.SN, id.MN
	}
	if id := d.ns.Identify(); id != nil {
		switch {
		case id.NGUID != [16]byte{}:
			a.LUNID = hex.EncodeToString(id.NGUID[:])
		case id.EUI64 != [8]byte{}:
			a.LUNID = hex.EncodeToString(id.EUI64[:])
		}
	}
	return a
}

// Getattr returns the attributes of the registered device dev, or an
// error wrapping ErrNoDevice. Any goroutine.
func Getattr(dev Edev) (Attr, error) {
	d := Lookup(dev)
	if d == nil {
		return Attr{}, fmt.Errorf("ddi: getattr %v: %w", dev, ErrNoDevice)
	}
	return d.Getattr(), nil
}

// Get answers a BIO_GETATTR by its GEOM name: "GEOM::candelete" (an int,
// 1 or 0, as GEOM answers it), "GEOM::ident" and "GEOM::lunid" (strings;
// false when the namespace has no identifier); and the provider's fields
// by their names "mediasize", "sectorsize", "stripesize", "stripeoffset"
// (int64). false for any other name (GEOM's ENOIOCTL).
func (a Attr) Get(name string) (any, bool) {
	switch name {
	case "GEOM::candelete":
		if a.CanDelete {
			return 1, true
		}
		return 0, true
	case "GEOM::ident":
		return a.Ident, a.Ident != ""
	case "GEOM::lunid":
		return a.LUNID, a.LUNID != ""
	case "mediasize":
		return a.MediaSize, true
	case "sectorsize":
		return int64(a.SectorSize), true
	case "stripesize":
		return a.StripeSize, true
	case "stripeoffset":
		return a.StripeOffset, true
	}
	return nil, false
}
