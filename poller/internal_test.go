package poller

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/internal/cpuset"
	"github.com/seedb8fa28ef/gonvme/nvme"
)

func TestRingMPSC(t *testing.T) {
	const producers, per = 8, 20000
	q := newRing(64)
	reqs := make([]nvme.Request, producers*per)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				r := &reqs[p*per+i]
				// A full ring yields: nine spinning goroutines on two
				// CPUs under -race took 12 s.
				for q.push(r, int32(p), int64(i)) != pushOK {
					runtime.Gosched()
				}
			}
		}()
	}
	seen := make([]int, len(reqs))
	last := make([]int64, producers)
	for i := range last {
		last[i] = -1
	}
	for n := 0; n < len(reqs); {
		c, ok := q.peek()
		if !ok {
			runtime.Gosched()
			continue
		}
		idx := int(int64(uintptrOf(c.req)-uintptrOf(&reqs[0])) / int64(sizeOfRequest))
		seen[idx]++
		// Per producer, entries arrive in the order pushed.
		if c.stamp <= last[c.ctrl] {
			t.Fatalf("producer %d: entry %d after %d", c.ctrl, c.stamp, last[c.ctrl])
		}
		last[c.ctrl] = c.stamp
		q.pop(c)
		n++
	}
	wg.Wait()
	for i, s := range seen {
		if s != 1 {
			t.Fatalf("request %d seen %d times", i, s)
		}
	}
	if !q.empty() {
		t.Fatal("ring not empty")
	}
}

func TestRingFullAndClose(t *testing.T) {
	q := newRing(4)
	var r nvme.Request
	for i := range 4 {
		if res := q.push(&r, 0, int64(i)); res != pushOK {
			t.Fatalf("push %d: %v", i, res)
		}
	}
	if res := q.push(&r, 0, 4); res != pushFull {
		t.Fatalf("push into full ring: %v, want full", res)
	}
	c, _ := q.peek()
	q.pop(c)
	if res := q.push(&r, 0, 5); res != pushOK {
		t.Fatalf("push after pop: %v", res)
	}
	q.close()
	if res := q.push(&r, 0, 6); res != pushClosed {
		t.Fatalf("push into closed ring: %v", res)
	}
	if q.drained() {
		t.Fatal("drained with 4 entries left")
	}
	for range 4 {
		c, ok := q.peek()
		if !ok {
			t.Fatal("entry missing")
		}
		q.pop(c)
	}
	if !q.drained() {
		t.Fatal("not drained after taking everything")
	}
}

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 1000, 1 << 20, 1<<35 - 1, 1 << 35, 1 << 40, 1<<64 - 1} {
		b := bucketOf(v)
		if b < prev || b >= NumBuckets {
			t.Fatalf("bucket of %d = %d (previous %d)", v, b, prev)
		}
		prev = b
		if lo := BucketLow(b); lo > v {
			t.Fatalf("value %d in bucket %d whose low bound is %d", v, b, lo)
		}
		if b+1 < NumBuckets && BucketLow(b+1) <= v {
			t.Fatalf("value %d in bucket %d but bucket %d starts at %d", v, b, b+1, BucketLow(b+1))
		}
	}
	for i := 1; i < NumBuckets; i++ {
		lo, prevLo := BucketLow(i), BucketLow(i-1)
		if lo <= prevLo || bucketOf(lo) != i || bucketOf(lo-1) != i-1 {
			t.Fatalf("bucket %d: low %d, previous low %d, bucketOf(low) %d", i, lo, prevLo, bucketOf(lo))
		}
		if i >= 16 && float64(lo-prevLo)/float64(prevLo) > 0.125+1e-9 {
			t.Fatalf("bucket %d is %d wide at %d: more than 12.5%%", i-1, lo-prevLo, prevLo)
		}
	}
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.record(int64(i) * 1000) // 1 µs .. 1 ms
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}} {
		got := h.Quantile(c.q)
		if d := float64(got-c.want) / float64(c.want); d > 0.07 || d < -0.07 {
			t.Errorf("p%v = %v, want about %v", c.q*100, got, c.want)
		}
	}
	if m := h.Mean(); m != 500500*time.Nanosecond {
		t.Errorf("mean %v", m)
	}
}

func TestCurrentCPU(t *testing.T) {
	cpus, err := cpuset.Allowed()
	if err != nil {
		t.Fatal(err)
	}
	c := currentCPU()
	found := false
	for _, x := range cpus {
		found = found || x == c
	}
	if !found {
		t.Fatalf("getcpu says %d, not among the allowed %v", c, cpus)
	}
	if n := testing.AllocsPerRun(100, func() { currentCPU() }); n != 0 {
		t.Fatalf("currentCPU allocates %v times", n)
	}
}

func BenchmarkGetcpu(b *testing.B) {
	for b.Loop() {
		currentCPU()
	}
}

func BenchmarkGettid(b *testing.B) {
	for b.Loop() {
		threadID()
	}
}

func BenchmarkMonotonic(b *testing.B) {
	for b.Loop() {
		monotonic()
	}
}
