package nvme

import (
	"encoding/binary"
	"testing"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// TestBuildPRP decodes what buildPRP wrote back into the list of pages
// and checks it against the buffer, following the chaining rule.
func TestBuildPRP(t *testing.T) {
	const ps = 4096
	const listIOVA = dma.IOVA(0x40_0000)
	for _, maxXfer := range []int{128 << 10, 4 << 20} {
		stride := prpStrideFor(maxXfer, ps)
		list := make([]byte, stride)
		for _, off := range []int{0, 4, 512, 4092} {
			for n := 4; n <= maxXfer; n = next(n) {
				iova := dma.IOVA(0x1000_0000 + off)
				clear(list)
				var cmd spec.Command
				buildPRP(&cmd, iova, n, ps, list, listIOVA)
				pages := decodePRP(t, &cmd, n, ps, list, listIOVA)
				// Every page of the buffer, in order.
				want := uint64(iova)
				for i, p := range pages {
					if i > 0 && p&(ps-1) != 0 {
						t.Fatalf("n %d off %d: entry %d %#x not page aligned", n, off, i, p)
					}
					if p != want {
						t.Fatalf("n %d off %d: entry %d is %#x, want %#x", n, off, i, p, want)
					}
					want = (want &^ (ps - 1)) + ps
				}
				if end := uint64(iova) + uint64(n); want < end {
					t.Fatalf("n %d off %d: pages end at %#x, buffer at %#x", n, off, want, end)
				}
			}
		}
	}
}

func next(n int) int {
	switch {
	case n < 3*4096:
		return n + 508
	case n < 600*4096:
		return n + 4096*7 + 4
	default:
		return n*2 - 4
	}
}

// decodePRP walks cmd's PRP entries like a controller.
func decodePRP(t *testing.T, cmd *spec.Command, n, ps int, list []byte, listIOVA dma.IOVA) []uint64 {
	t.Helper()
	pages := []uint64{cmd.PRP1}
	first := ps - int(cmd.PRP1&uint64(ps-1))
	if n <= first {
		if cmd.PRP2 != 0 {
			t.Fatalf("n %d: PRP2 %#x set for a one-page transfer", n, cmd.PRP2)
		}
		return pages
	}
	rest := (n - first + ps - 1) / ps
	if rest == 1 {
		return append(pages, cmd.PRP2)
	}
	if cmd.PRP2 != uint64(listIOVA) {
		t.Fatalf("n %d: PRP2 %#x, want the list at %#x", n, cmd.PRP2, listIOVA)
	}
	at := cmd.PRP2
	for rest > 0 {
		off := int(at - uint64(listIOVA))
		if off+8 > len(list) {
			t.Fatalf("n %d: list entry at offset %d beyond the %d-byte list", n, off, len(list))
		}
		e := binary.LittleEndian.Uint64(list[off:])
		if at&uint64(ps-1) == uint64(ps-8) && rest > 1 {
			if e != at+8 {
				t.Fatalf("n %d: chain pointer %#x, want %#x", n, e, at+8)
			}
			at = e
			continue
		}
		pages = append(pages, e)
		at += 8
		rest--
	}
	return pages
}
