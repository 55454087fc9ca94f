package target

import (
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// BenchmarkReadQD1 is one 4 KiB read at a time through the target on
// loopback, over nvmetest: the round trip host -> socket -> poll group ->
// backing queue pair -> socket -> host.
func BenchmarkReadQD1(b *testing.B) {
	r := newRig(b, Config{SpinTime: time.Hour}, nvmetest.Config{Latency: nvmetest.Fixed(0)})
	_, cntlid := r.bringUp(b, false, false)
	q := r.ioQueue(b, cntlid, 1, false, false, fabrics.CAttrDisableSQFlow)
	got := make([]byte, 4096)
	b.ResetTimer()
	for i := range b.N {
		if c, err := q.do(rw(spec.IORead, uint64(i%1000)*8, 8), nil, got); err != nil || !c.StatusField().Success() {
			b.Fatal(err, c.StatusField())
		}
	}
}
