package nvme_test

import (
	"encoding/binary"
	"errors"
	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

// TestAbsurdIdentify: identify data no sane controller sends is survived:
// the driver caps, skips or refuses, and never panics.
func TestAbsurdIdentify(t *testing.T) {
	twoNS := []nvmetest.NSConfig{{Blocks: 1024}, {Blocks: 1024}}
	tests := []struct {
		name    string
		cfg     nvmetest.Config
		ctrl    func(b []byte)
		ns      func(nsid uint32, b []byte)
		openErr error    // Open must fail with this
		nsids   []uint32 // else: the namespaces that survive
		maxXfer int
		log     string
	}{
		{name: "mdts 0 is capped", cfg: nvmetest.Config{MDTS: -1}, nsids: []uint32{1}, maxXfer: 1 << 20},
		{name: "mdts huge", ctrl: func(b []byte) { b[0x4d] = 0xff }, nsids: []uint32{1}, maxXfer: 1 << 20},
		{name: "huge nn", ctrl: func(b []byte) { binary.LittleEndian.PutUint32(b[0x204:], 0xffffffff) }, nsids: []uint32{1}, maxXfer: 128 << 10},
		{name: "nn below the active list", cfg: nvmetest.Config{Namespaces: twoNS}, ctrl: func(b []byte) { binary.LittleEndian.PutUint32(b[0x204:], 1) }, openErr: nvme.ErrDevice},
		{name: "flbas beyond nlbaf", cfg: nvmetest.Config{Namespaces: twoNS}, ns: func(nsid uint32, b []byte) {
			if nsid == 2 {
				b[0x1a] = 5
			}
		}, nsids: []uint32{1}, maxXfer: 128 << 10, log: "namespace 2"},
		{name: "lbads 40", cfg: nvmetest.Config{Namespaces: twoNS}, ns: func(nsid uint32, b []byte) { b[0x80+2] = 40 }, nsids: []uint32{}, maxXfer: 128 << 10, log: "skipping"},
		{name: "lbads 3", cfg: nvmetest.Config{Namespaces: twoNS}, ns: func(nsid uint32, b []byte) {
			if nsid == 1 {
				b[0x80+2] = 3
			}
		}, nsids: []uint32{2}, maxXfer: 128 << 10, log: "namespace 1"},
		{name: "block larger than max transfer", cfg: nvmetest.Config{MDTS: 1}, ns: func(nsid uint32, b []byte) { b[0x80+2] = 16 }, nsids: []uint32{}, maxXfer: 8192, log: "block size"},
		{name: "nsze 0", ns: func(nsid uint32, b []byte) { binary.LittleEndian.PutUint64(b, 0) }, nsids: []uint32{}, maxXfer: 128 << 10},
		{name: "metadata", ns: func(nsid uint32, b []byte) { b[0x80] = 8 }, nsids: []uint32{}, maxXfer: 128 << 10, log: "metadata"},
		{name: "sqes too small", ctrl: func(b []byte) { b[0x200] = 0x55 }, openErr: nvme.ErrDevice},
		{name: "all ones", ctrl: func(b []byte) {
			for i := range b {
				b[i] = 0xff
			}
		}, openErr: nvme.ErrDevice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.IdentifyController, cfg.IdentifyNamespace = tt.ctrl, tt.ns
			fake, err := nvmetest.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer fake.Close()
			defer testrig.CheckHost(t, fake)
			mem, err := newAllocator(fake)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := mem.Close(); err != nil {
					t.Errorf("leak: %v", err)
				}
			}()
			logs := &testrig.Log{}
			c, err := nvme.Open(fake, mem, &nvme.Options{Logf: logs.Logf})
			if tt.openErr != nil {
				if !errors.Is(err, tt.openErr) {
					t.Fatalf("open: %v, want %v", err, tt.openErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer c.Close()
			if got := c.Namespaces(); len(got) != len(tt.nsids) || (len(got) > 0 && got[0] != tt.nsids[0]) {
				t.Errorf("namespaces %v, want %v", got, tt.nsids)
			}
			if c.MaxTransfer() != tt.maxXfer {
				t.Errorf("max transfer %d, want %d", c.MaxTransfer(), tt.maxXfer)
			}
			if tt.log != "" && !logs.Contains(tt.log) {
				t.Errorf("log %q does not mention %q", logs.Lines(), tt.log)
			}
		})
	}
}
