package nvme

import (
	"encoding/binary"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// buildPRP sets the data pointer of cmd to n bytes at iova with Physical
// Region Page entries (NVMe Base 2.0, 4.1.1 "Physical Region Page Entry
// and List"). PRP1 may start anywhere in a page (dword aligned); every
// later entry is page aligned. Up to two pages fit in PRP1 and PRP2;
// beyond that PRP2 points at a list in list/listIOVA, and when a list
// fills its page the last entry points at the next page of the list.
//
// list must be large enough (prpStrideFor) and must not cross a page
// boundary except where the chaining above expects it to.
func buildPRP(cmd *spec.Command, iova dma.IOVA, n, pageSize int, list []byte, listIOVA dma.IOVA) {
	ps := uint64(pageSize)
	addr := uint64(iova)
	first := ps - addr&(ps-1)
	cmd.PRP1 = addr
	if inPage(iova, n, pageSize) {
		cmd.PRP2 = 0
		return
	}
	next := addr + first
	rem := uint64(n) - first
	if rem <= ps {
		cmd.PRP2 = next
		return
	}
	cmd.PRP2 = uint64(listIOVA)
	off := uint64(0)
	for rem > 0 {
		ea := uint64(listIOVA) + off
		if ea&(ps-1) == ps-8 && rem > ps {
			// Last slot of a list page with more than one entry to go:
			// chain to the next page of the list.
			binary.LittleEndian.PutUint64(list[off:], ea+8)
			off += 8
			continue
		}
		binary.LittleEndian.PutUint64(list[off:], next)
		off += 8
		next += ps
		rem -= min(rem, ps)
	}
}

// inPage reports whether n bytes at iova stay within iova's page, so that
// PRP1 alone describes them. putSQE tests it before calling buildPRP: the
// one-page transfer is the common one, and the call is worth avoiding (about
// 40 ns in a TCG guest, issue 16).
func inPage(iova dma.IOVA, n, pageSize int) bool {
	return uint64(n) <= uint64(pageSize)-uint64(iova)&uint64(pageSize-1)
}

// putDSM writes one Dataset Management range into b (DMA memory).
func putDSM(b []byte, d *spec.DSMRange) {
	binary.LittleEndian.PutUint32(b[0:], d.Attributes)
	binary.LittleEndian.PutUint32(b[4:], d.NLB)
	binary.LittleEndian.PutUint64(b[8:], d.SLBA)
}
