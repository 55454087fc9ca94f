package nvme

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestRWCheckAgrees holds rw's one-expression test to the rules rwError
// and checkRange state: for buffer lengths and block ranges on both sides
// of every limit (empty, not a block multiple, the maximum transfer, the
// 65536 blocks of one command, the end of the namespace, a range whose end
// wraps 2^64), rw accepts exactly the I/Os the rules allow, and a refusal
// is an ErrInvalid naming the rule, never the "driver bug" fallback.
func TestRWCheckAgrees(t *testing.T) {
	for _, geo := range []struct {
		bs, maxXfer int
		blocks      uint64
	}{
		{512, 128 << 10, 1 << 20},
		{4096, 512 << 10, 100},
		{512, (1<<16 + 8) * 512, 1 << 20}, // MDTS beyond one command's 65536 blocks
		{4096, 1 << 20, ^uint64(0)},
	} {
		log := uint8(0)
		for 1<<log < geo.bs {
			log++
		}
		ns := &Namespace{ctrl: &Controller{maxXfer: geo.maxXfer}, id: 1, blockSize: geo.bs, blockLog: log, blocks: geo.blocks}
		mx := geo.maxXfer
		lens := []int{0, 1, geo.bs - 1, geo.bs, geo.bs + 1, 2 * geo.bs, mx - geo.bs, mx - 1, mx, mx + 1, mx + geo.bs,
			(1 << 16) * geo.bs, (1<<16 + 1) * geo.bs}
		lbas := []uint64{0, 1, geo.blocks / 2, geo.blocks - 2, geo.blocks - 1, geo.blocks, geo.blocks + 1, ^uint64(0) - 1, ^uint64(0)}
		buf := make([]byte, mx+geo.bs)
		for _, n := range lens {
			if n < 0 || n > len(buf) {
				continue
			}
			for _, lba := range lbas {
				nb := uint64(n / geo.bs)
				ok := n > 0 && n%geo.bs == 0 && n <= geo.maxXfer && nb <= 1<<16 &&
					lba < geo.blocks && nb <= geo.blocks-lba
				var r Request
				err := ns.Read(&r, lba, buf[:n], 0)
				name := fmt.Sprintf("bs %d max %d blocks %d: %d bytes at %d", geo.bs, geo.maxXfer, geo.blocks, n, lba)
				switch {
				case ok && err != nil:
					t.Errorf("%s: refused: %v", name, err)
				case !ok && err == nil:
					t.Errorf("%s: accepted", name)
				case err != nil && (!errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "driver bug")):
					t.Errorf("%s: %v, want the ErrInvalid of the rule it breaks", name, err)
				case ok && (r.Cmd.CDW10 != uint32(lba) || r.Cmd.CDW12&0xffff != uint32(nb-1)):
					t.Errorf("%s: command %+v", name, r.Cmd)
				}
			}
		}
	}
}
