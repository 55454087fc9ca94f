package poller

import (
	"math/rand/v2"
	"testing"
)

// opBucketWant is OpLatency's bucket of ns by its definition: i where ns
// lies in [2^(9+i), 2^(10+i)), the first also taking what is below 2^10
// and the last everything from 2^35.
func opBucketWant(ns int64) int {
	for i := 0; i < OpLatencyBuckets-1; i++ {
		if ns < int64(1)<<(10+i) {
			return i
		}
	}
	return OpLatencyBuckets - 1
}

// TestOpLatencyBuckets: a value recorded at full resolution (Histogram)
// and coarsened lands in the power-of-two bucket whose upper bound is the
// first 2^e ns above it, for the values on both sides of every bound and
// for random ones.
func TestOpLatencyBuckets(t *testing.T) {
	for _, tc := range []struct {
		ns     int64
		bucket int
	}{{-5, 0}, {0, 0}, {1023, 0}, {1024, 1}, {2047, 1}, {2048, 2}, {1 << 34, 25}, {1<<35 - 1, 25}, {1 << 35, 26}, {1 << 50, 26}} {
		var h Histogram
		h.record(tc.ns)
		var out [OpLatencyBuckets]uint64
		out[tc.bucket] = 99 // coarsen overwrites
		h.coarsen(&out)
		if out[tc.bucket] != 1 || sum(out[:]) != 1 {
			t.Errorf("%d ns: buckets %v, want bucket %d", tc.ns, out, tc.bucket)
		}
	}
	var h Histogram
	var want [OpLatencyBuckets]uint64
	add := func(ns int64) {
		h.record(ns)
		want[opBucketWant(ns)]++
	}
	for e := range 62 {
		for _, d := range []int64{-1, 0, 1} {
			add(int64(1)<<e + d)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		add(rng.Int64N(1 << 40))
	}
	var got [OpLatencyBuckets]uint64
	h.coarsen(&got)
	if got != want {
		t.Errorf("coarsened %v, want %v", got, want)
	}
}

func sum(v []uint64) (n uint64) {
	for _, x := range v {
		n += x
	}
	return n
}
