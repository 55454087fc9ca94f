package target

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// dsmRanges lays out (slba, nlb) pairs as Dataset Management ranges in a
// buffer of size bytes (zero past the ranges).
func dsmRanges(size int, r ...[2]uint64) []byte {
	b := make([]byte, size)
	for i, x := range r {
		binary.LittleEndian.PutUint32(b[i*16+4:], uint32(x[1]))
		binary.LittleEndian.PutUint64(b[i*16+8:], x[0])
	}
	return b
}

func deallocate(nr int) spec.Command {
	return spec.Command{Opcode: uint8(spec.IODatasetManagement), NSID: 1, CDW10: uint32(nr - 1), CDW11: spec.DSMDeallocate}
}

// Dataset Management the way Linux's nvme-tcp initiator sends it:
// nvme_setup_discard gives every discard a 4 KiB payload (room for 256
// ranges) whatever NR is, and nvme_tcp_setup_cmd_pdu describes all of it
// in SGL1 - in the capsule when it fits IOCCSZ, else a transport data
// block the target fetches through R2T. Older kernels sent exactly NR+1
// ranges; both lengths, both ways, must deallocate the ranges.
func TestDSMLinuxShapes(t *testing.T) {
	r := newRig(t, Config{}, nvmetest.Config{})
	_, cntlid := r.bringUp(t, false, false)
	q := r.ioQueue(t, cntlid, 1, false, false, 0)
	for _, c := range []struct {
		name   string
		size   int // bytes the SGL describes
		inCaps int // the host's in-capsule limit: under size means R2T
	}{
		{"linux 4KiB in-capsule", 4096, 8192},
		{"linux 4KiB through R2T", 4096, 0},
		{"exact in-capsule", 32, 8192},
		{"exact through R2T", 32, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := pattern(16*512, 3)
			q.inCaps = 8192
			q.ok(rw(spec.IOWrite, 100, 16), data, nil)
			// Blocks 100-103 and 108-111 go; 104-107 and 112-115 stay.
			q.inCaps = c.inCaps
			if st := q.status(deallocate(2), dsmRanges(c.size, [2]uint64{100, 4}, [2]uint64{108, 4}), nil); st != 0 {
				t.Fatalf("deallocate: %v", fabrics.StatusName(st))
			}
			got := make([]byte, len(data))
			q.ok(rw(spec.IORead, 100, 16), nil, got)
			zero := make([]byte, 4*512)
			for i, keep := range []bool{false, true, false, true} {
				want := zero
				if keep {
					want = data[i*len(zero) : (i+1)*len(zero)]
				}
				if !bytes.Equal(got[i*len(zero):(i+1)*len(zero)], want) {
					t.Errorf("blocks %d-%d: deallocated %t, read back wrong", 100+4*i, 103+4*i, !keep)
				}
			}
		})
	}
	blocks := uint64(64 << 20 / 512)
	for _, c := range []struct {
		name   string
		nr     int
		w      []byte
		inCaps int
		want   spec.Status
	}{
		{"sgl shorter than the ranges", 2, dsmRanges(16, [2]uint64{0, 1}), 8192, spec.MakeStatus(spec.SCTGeneric, spec.SCDataSGLLengthInvalid)},
		{"sgl shorter than the ranges, R2T", 2, dsmRanges(16, [2]uint64{0, 1}), 0, spec.MakeStatus(spec.SCTGeneric, spec.SCDataSGLLengthInvalid)},
		{"sgl over a slot", 1, dsmRanges(256<<10, [2]uint64{0, 1}), 0, spec.MakeStatus(spec.SCTGeneric, spec.SCDataSGLLengthInvalid)},
		{"range past the end", 1, dsmRanges(4096, [2]uint64{blocks - 1, 2}), 8192, spec.MakeStatus(spec.SCTGeneric, spec.SCLBAOutOfRange)},
		{"range past the end, R2T", 1, dsmRanges(4096, [2]uint64{blocks - 1, 2}), 0, spec.MakeStatus(spec.SCTGeneric, spec.SCLBAOutOfRange)},
	} {
		t.Run(c.name, func(t *testing.T) {
			q.inCaps = c.inCaps
			if got := q.status(deallocate(c.nr), c.w, nil); got != c.want {
				t.Errorf("status %v, want %v", fabrics.StatusName(got), fabrics.StatusName(c.want))
			}
		})
	}
	// The queue still works.
	q.inCaps = 8192
	q.ok(rw(spec.IOWrite, 0, 1), pattern(512, 9), nil)
}
