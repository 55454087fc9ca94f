package reliability_test

import (
	"encoding/binary"
	"flag"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

var longFlag = flag.Bool("reliability.long", false, "run the long version of the reliability suite (minutes, more iterations)")

// long reports whether the long version runs: -reliability.long, or (in a
// VM guest, where the harness passes no test flags) the token
// gonvme.reliability.long on the kernel command line.
func long() bool {
	if *longFlag {
		return true
	}
	b, err := os.ReadFile("/proc/cmdline")
	return err == nil && strings.Contains(" "+strings.TrimSpace(string(b))+" ", " gonvme.reliability.long ")
}

// Layout of a tagged block; see the package documentation.
const (
	offLBA   = 0
	offGen   = 8
	offRun   = 16
	offCRC   = 24
	offMagic = 28
	hdrSize  = 32
	magic    = 0x594c4552 // "RELY"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func blockCRC(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[:offCRC])
	return crc32.Update(c, castagnoli, b[offMagic:])
}

// newRun returns a random run identifier (never 0, so zeroed blocks are
// never ours).
func newRun() uint64 { return rand.Uint64() | 1 }

// fillBlock tags b (one whole block) as generation gen of lba in run.
func fillBlock(b []byte, lba, gen, run uint64) {
	le := binary.LittleEndian
	le.PutUint64(b[offLBA:], lba)
	le.PutUint64(b[offGen:], gen)
	le.PutUint64(b[offRun:], run)
	le.PutUint32(b[offMagic:], magic)
	// splitmix64 from a seed naming the block and the write.
	s := run ^ lba*0x9e3779b97f4a7c15 ^ gen*0xd1b54a32d192ed03
	for off := hdrSize; off+8 <= len(b); off += 8 {
		s += 0x9e3779b97f4a7c15
		z := s
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		le.PutUint64(b[off:], z^z>>31)
	}
	le.PutUint32(b[offCRC:], blockCRC(b))
}

// fillBlocks tags every block of b, which starts at lba.
func fillBlocks(b []byte, bs int, lba, gen, run uint64) {
	for i := 0; i*bs < len(b); i++ {
		fillBlock(b[i*bs:(i+1)*bs], lba+uint64(i), gen, run)
	}
}

// tag is what a block read back says about itself.
type tag struct {
	ours    bool // carries this run's identifier and magic
	intact  bool // and its checksum holds
	lba     uint64
	gen     uint64
	rawRun  uint64
	rawCRC  uint32
	wantCRC uint32
}

func parseBlock(b []byte, run uint64) tag {
	le := binary.LittleEndian
	t := tag{rawRun: le.Uint64(b[offRun:]), lba: le.Uint64(b[offLBA:]), gen: le.Uint64(b[offGen:])}
	t.ours = t.rawRun == run && le.Uint32(b[offMagic:]) == magic
	if t.ours {
		t.rawCRC, t.wantCRC = le.Uint32(b[offCRC:]), blockCRC(b)
		t.intact = t.rawCRC == t.wantCRC
	}
	return t
}

// model is the host's record of what a range of blocks must hold: the
// generation of the last successful write of each block (0: none), and for
// blocks whose last write failed, the generations that may have landed.
// A model belongs to one goroutine at a time.
type model struct {
	lo    uint64   // first block
	cur   []uint32 // index block-lo
	maybe map[uint64][]uint32
}

func newModel(lo, n uint64) *model {
	return &model{lo: lo, cur: make([]uint32, n), maybe: map[uint64][]uint32{}}
}

func (m *model) hi() uint64 { return m.lo + uint64(len(m.cur)) }

// wrote records a successful write of generation gen to [lba, lba+n).
func (m *model) wrote(lba, n uint64, gen uint32) {
	for b := lba; b < lba+n; b++ {
		m.cur[b-m.lo] = gen
		if len(m.maybe) > 0 {
			delete(m.maybe, b)
		}
	}
}

// unsure records a write of generation gen to [lba, lba+n) that failed or
// whose outcome is unknown: each block holds gen or what it held before.
func (m *model) unsure(lba, n uint64, gen uint32) {
	for b := lba; b < lba+n; b++ {
		m.maybe[b] = append(m.maybe[b], gen)
	}
}

// verdict is the outcome of checking one block.
type verdict uint8

const (
	verified verdict = iota // carries the generation the model expects
	blank                   // carries no tag of this run, as the model expects
	bad                     // anything else: see the error
)

// check checks block b, read from lba, against the model.
func (m *model) check(lba uint64, b []byte, run uint64) (verdict, error) {
	cur := m.cur[lba-m.lo]
	maybe := m.maybe[lba]
	t := parseBlock(b, run)
	switch {
	case !t.ours:
		if cur == 0 {
			return blank, nil
		}
		return bad, fmt.Errorf("block %d: no tag of this run (run %#x, lba %d, gen %d), want generation %d", lba, t.rawRun, t.lba, t.gen, cur)
	case !t.intact:
		return bad, fmt.Errorf("block %d: corrupt: crc %#08x, computed %#08x (tag lba %d gen %d); want generation %d", lba, t.rawCRC, t.wantCRC, t.lba, t.gen, cur)
	case t.lba != lba:
		return bad, fmt.Errorf("block %d: misdirected: holds block %d generation %d; want generation %d", lba, t.lba, t.gen, cur)
	case t.gen == uint64(cur) && cur != 0:
		return verified, nil
	}
	for _, g := range maybe {
		if t.gen == uint64(g) {
			return verified, nil
		}
	}
	if cur == 0 {
		return bad, fmt.Errorf("block %d: phantom write: holds generation %d, the model has no successful write (maybe %v)", lba, t.gen, maybe)
	}
	return bad, fmt.Errorf("block %d: holds generation %d, want %d (or one of %v): lost or stale write", lba, t.gen, cur, maybe)
}

// checkRange checks the blocks of data read from lba; it returns the
// number verified and blank, and the first few errors (with the total).
func (m *model) checkRange(lba uint64, data []byte, bs int, run uint64) (ver, blk int, errs []error, nbad int) {
	for i := 0; (i+1)*bs <= len(data); i++ {
		v, err := m.check(lba+uint64(i), data[i*bs:(i+1)*bs], run)
		switch v {
		case verified:
			ver++
		case blank:
			blk++
		default:
			nbad++
			if len(errs) < 5 {
				errs = append(errs, err)
			}
		}
	}
	return ver, blk, errs, nbad
}

func TestBlockTag(t *testing.T) {
	run := newRun()
	for _, bs := range []int{512, 4096} {
		b := make([]byte, 3*bs)
		fillBlocks(b, bs, 100, 7, run)
		m := newModel(90, 20)
		m.wrote(100, 2, 7)
		m.unsure(102, 1, 7)
		ver, blk, errs, nbad := m.checkRange(100, b, bs, run)
		if ver != 3 || blk != 0 || nbad != 0 {
			t.Fatalf("bs %d: verified %d blank %d bad %d %v", bs, ver, blk, nbad, errs)
		}
		type tc struct {
			name string
			lba  uint64
			mut  func(b []byte)
			want verdict
			msg  string
		}
		cases := []tc{
			{"zeros where nothing was written", 95, func(b []byte) { clear(b) }, blank, ""},
			{"zeros where a write was acknowledged", 100, func(b []byte) { clear(b) }, bad, "no tag"},
			{"one flipped payload bit", 100, func(b []byte) { b[bs-1] ^= 1 }, bad, "corrupt"},
			{"torn block", 100, func(b []byte) { clear(b[bs/2:]) }, bad, "corrupt"},
			{"flipped generation", 100, func(b []byte) { b[offGen] ^= 2 }, bad, "corrupt"},
			{"misdirected", 101, func([]byte) {}, bad, "misdirected"},
			{"stale", 100, func(b []byte) { fillBlock(b, 100, 6, run) }, bad, "stale"},
			{"phantom", 95, func(b []byte) { fillBlock(b, 95, 3, run) }, bad, "phantom"},
			{"other run", 95, func(b []byte) { fillBlock(b, 95, 3, run+2) }, blank, ""},
			{"maybe of a failed write", 102, func(b []byte) { fillBlock(b, 102, 7, run) }, verified, ""},
		}
		for _, c := range cases {
			blkb := make([]byte, bs)
			fillBlock(blkb, 100, 7, run)
			c.mut(blkb)
			v, err := m.check(c.lba, blkb, run)
			if v != c.want || (c.msg != "" && (err == nil || !strings.Contains(err.Error(), c.msg))) {
				t.Errorf("bs %d %s: verdict %d err %v, want %d %q", bs, c.name, v, err, c.want, c.msg)
			}
		}
	}
}
