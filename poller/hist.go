package poller

import (
	"math/bits"
	"time"
)

// Histogram buckets: values below 8 ns have a bucket each; above, every
// power of two [2^e, 2^(e+1)) is split into 8 equal sub-buckets, so a
// bucket is at most 12.5% wide. The last bucket, which starts at 2^35 ns
// (about 34 s), also holds everything larger.
const (
	histSub     = 8
	histMaxExp  = 35
	NumBuckets  = (histMaxExp-2)*histSub + histSub // 272
	histSubBits = 3
)

// Histogram counts latencies in fixed log-linear buckets (the HDR
// histogram idea with a fixed 3-bit precision), written by hand because it
// must be updated on the poller's hot path without allocating or locking
// and be copied out by a seqlock; the Prometheus client's histograms are
// for exposition, not this.
type Histogram struct {
	Buckets [NumBuckets]uint64
	Count   uint64
	Sum     uint64 // ns
}

// bucketOf returns the bucket of a value in ns.
func bucketOf(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - 1 // v in [2^e, 2^(e+1)), e >= 3
	if e > histMaxExp {
		return NumBuckets - 1
	}
	sub := int(v>>(e-histSubBits)) & (histSub - 1)
	return (e-2)*histSub + sub
}

// BucketLow returns the smallest value, in ns, that falls into bucket i.
func BucketLow(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i/histSub + 2
	sub := uint64(i % histSub)
	return (histSub + sub) << (e - histSubBits)
}

// Record adds one latency to h, in constant time: for callers that keep
// their own histograms in the pollers' buckets (nvmectl perf, per
// operation and measurement phase). A negative latency counts as zero.
// h is the caller's; nothing synchronizes it.
func (h *Histogram) Record(d time.Duration) { h.record(int64(d)) }

// record adds one value in ns.
func (h *Histogram) record(ns int64) {
	if ns < 0 {
		ns = 0
	}
	h.Buckets[bucketOf(uint64(ns))]++
	h.Count++
	h.Sum += uint64(ns)
}

// Quantile returns the latency below which a fraction q (0 to 1) of the
// recorded values fall, as the middle of the bucket that holds it; zero
// when nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.Count == 0 {
		return 0
	}
	rank := uint64(q*float64(h.Count) + 0.5)
	rank = max(1, min(rank, h.Count))
	var seen uint64
	for i, n := range h.Buckets {
		seen += n
		if seen >= rank {
			lo := BucketLow(i)
			hi := lo + 1
			if i+1 < NumBuckets {
				hi = BucketLow(i + 1)
			}
			return time.Duration(lo + (hi-lo)/2)
		}
	}
	return time.Duration(BucketLow(NumBuckets - 1))
}

// Mean returns the average latency.
func (h *Histogram) Mean() time.Duration {
	if h.Count == 0 {
		return 0
	}
	return time.Duration(h.Sum / h.Count)
}

// Add adds the counts of o to h (to merge queue pairs or pollers).
func (h *Histogram) Add(o *Histogram) {
	for i := range h.Buckets {
		h.Buckets[i] += o.Buckets[i]
	}
	h.Count += o.Count
	h.Sum += o.Sum
}
