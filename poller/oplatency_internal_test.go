package poller

import "testing"

// TestOpLatencyBuckets: a value lands in the power-of-two bucket whose
// upper bound is the first 2^e ns above it.
func TestOpLatencyBuckets(t *testing.T) {
	for _, tc := range []struct {
		ns     int64
		bucket int
	}{{-5, 0}, {0, 0}, {1023, 0}, {1024, 1}, {2047, 1}, {2048, 2}, {1 << 34, 25}, {1<<35 - 1, 25}, {1 << 35, 26}, {1 << 50, 26}} {
		var l OpLatency
		l.record(tc.ns)
		if l.Buckets[tc.bucket] != 1 || l.Count != 1 {
			t.Errorf("%d ns: buckets %v, want bucket %d", tc.ns, l.Buckets, tc.bucket)
		}
	}
}
