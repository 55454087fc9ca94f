package ddi_test

import (
	"encoding/hex"
	"errors"
	"testing"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Getattr answers what GEOM asks of a disk, from the controller's and the
// namespace's identify data.
func TestGetattr(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  nvmetest.Config
		want ddi.Attr
	}{
		{"4k stripe 64k, dsm, vwc", nvmetest.Config{MDTS: 2, VWC: true, Serial: "ATTR1", Model: "attr model",
			Namespaces: []nvmetest.NSConfig{{Blocks: 8192, BlockSize: 4096, NOIOB: 16}}},
			ddi.Attr{SectorSize: 4096, MediaSize: 8192 * 4096, StripeSize: 16 * 4096, MaxTransfer: 16 << 10,
				CanDelete: true, WriteCache: true, Ident: "ATTR1", Model: "attr model"}},
		{"512, no stripe, no dsm", nvmetest.Config{ONCSOff: spec.ONCSDatasetManagement, Serial: "ATTR2",
			Namespaces: []nvmetest.NSConfig{{Blocks: 1000}}},
			ddi.Attr{SectorSize: 512, MediaSize: 1000 * 512, MaxTransfer: 128 << 10, Ident: "ATTR2", Model: "gonvme nvmetest controller"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.cfg)
			d := r.dev(1)
			_, nguid, _ := nvmetest.NamespaceIDs(tc.cfg.Serial, 1)
			want := tc.want
			want.LUNID = hex.EncodeToString(nguid[:])
			got, err := ddi.Getattr(d.Edev())
			if err != nil || got != want {
				t.Fatalf("Getattr = %+v, %v\nwant       %+v", got, err, want)
			}
			for name, v := range map[string]any{
				"GEOM::candelete": map[bool]int{true: 1, false: 0}[want.CanDelete],
				"GEOM::ident":     want.Ident, "GEOM::lunid": want.LUNID,
				"mediasize": want.MediaSize, "sectorsize": int64(want.SectorSize),
				"stripesize": want.StripeSize, "stripeoffset": int64(0),
			} {
				if g, ok := got.Get(name); !ok || g != v {
					t.Errorf("Get(%q) = %v, %v; want %v", name, g, ok, v)
				}
			}
			if _, ok := got.Get("GEOM::physpath"); ok {
				t.Error("an attribute the disk does not have was answered")
			}
		})
	}
	if _, err := ddi.Getattr(ddi.Makedevice(1<<30, 1)); !errors.Is(err, ddi.ErrNoDevice) {
		t.Fatalf("Getattr of no device: %v", err)
	}
}
