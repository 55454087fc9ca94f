package ddi_test

import (
	"encoding/binary"
	"sync"
	"testing"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// rig is a driver on a fake controller: one queue pair driven by a
// SyncSubmitter, wrapped in a recorder.
type rig struct {
	t    testing.TB
	fake *nvmetest.Controller
	mem  *dma.Allocator
	ctrl *nvme.Controller
	qp   *nvme.QueuePair
	sync *ddi.SyncSubmitter
	rec  *recorder
}

func newRig(t testing.TB, cfg nvmetest.Config) *rig {
	t.Helper()
	tr := testrig.Open(t, cfg, &nvme.Options{Logf: func(string, ...any) {}})
	r := &rig{t: t, fake: tr.Fake, mem: tr.Mem, ctrl: tr.Ctrl}
	r.qp = tr.QueuePair(t, 64)
	r.sync = ddi.NewSyncSubmitter(r.qp)
	r.rec = &recorder{sub: r.sync, mem: r.mem}
	return r
}

func (r *rig) ns(nsid uint32) *nvme.Namespace {
	r.t.Helper()
	ns, err := r.ctrl.Namespace(nsid)
	if err != nil {
		r.t.Fatal(err)
	}
	return ns
}

// dev registers namespace nsid behind the recorder.
func (r *rig) dev(nsid uint32, opts ...ddi.Option) *ddi.Device {
	r.t.Helper()
	d, err := ddi.RegisterDevice(r.ns(nsid), r.rec, opts...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { ddi.Unregister(d.Edev()) })
	return d
}

// buf allocates n bytes of DMA memory, freed at cleanup.
func (r *rig) buf(n int) []byte {
	r.t.Helper()
	return allocBuf(r.t, r.mem, n)
}

func allocBuf(t testing.TB, mem *dma.Allocator, n int) []byte {
	t.Helper()
	b, err := mem.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Free(b) })
	return b.Bytes[:n:n]
}

// piece is one command the recorder saw.
type piece struct {
	Op       spec.Opcode
	LBA      uint64
	Blocks   uint32
	Off, Len int // data offset from the recorder's base buffer, and length
}

// recorder is a Submitter that notes every request and passes it on.
type recorder struct {
	sub  ddi.Submitter
	mem  *dma.Allocator
	mu   sync.Mutex
	base dma.IOVA
	seen []piece
	on   bool
}

func (rc *recorder) start(base []byte) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.base, rc.seen, rc.on = 0, nil, true
	if base != nil {
		iova, err := rc.mem.Lookup(base)
		if err != nil {
			panic(err)
		}
		rc.base = iova
	}
}

func (rc *recorder) stop() []piece {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.on = false
	return rc.seen
}

func (rc *recorder) Submit(r *nvme.Request) error {
	rc.mu.Lock()
	if rc.on {
		p := piece{Op: spec.Opcode(r.Cmd.Opcode), LBA: uint64(r.Cmd.CDW11)<<32 | uint64(r.Cmd.CDW10),
			Blocks: r.Cmd.CDW12&0xffff + 1, Len: len(r.Data), Off: -1}
		if len(r.Data) > 0 {
			if iova, err := rc.mem.Lookup(r.Data); err == nil {
				p.Off = int(iova - rc.base)
			}
		}
		rc.seen = append(rc.seen, p)
	}
	rc.mu.Unlock()
	return rc.sub.Submit(r)
}

func (rc *recorder) MaxTransfer() int { return rc.sub.(interface{ MaxTransfer() int }).MaxTransfer() }

// fill writes a pattern naming the LBA of every 8 bytes and a seed.
func fill(b []byte, lba uint64, bs int, seed uint64) {
	for off := 0; off+8 <= len(b); off += 8 {
		binary.LittleEndian.PutUint64(b[off:], (lba+uint64(off/bs))<<20^uint64(off%bs)^seed<<48)
	}
}

// newBuf returns an initialized header for a transfer on dev.
func newBuf(dev ddi.Edev, flags ddi.Flags, blk int64, data []byte) *ddi.Buf {
	bp := &ddi.Buf{}
	ddi.Bioinit(bp)
	bp.Flags |= flags
	bp.Edev = dev
	bp.Blkno = blk
	bp.Bcount = len(data)
	bp.Addr = data
	return bp
}

// run passes bp to Strategy and waits for it.
func run(bp *ddi.Buf) error {
	ddi.Strategy(bp)
	return ddi.Biowait(bp)
}

// wantPieces checks the recorded pieces against (lba, blocks) pairs laid
// out back to back in the buffer from offset 0.
func wantPieces(t *testing.T, got []piece, op spec.Opcode, lba uint64, bs int, sizes []uint32) {
	t.Helper()
	if len(got) != len(sizes) {
		t.Fatalf("%d pieces, want %d: %+v", len(got), len(sizes), got)
	}
	off := 0
	for i, n := range sizes {
		want := piece{Op: op, LBA: lba, Blocks: n, Off: off, Len: int(n) * bs}
		if got[i] != want {
			t.Errorf("piece %d = %+v, want %+v", i, got[i], want)
		}
		lba += uint64(n)
		off += int(n) * bs
	}
}
