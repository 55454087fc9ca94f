package metrics_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seedb8fa28ef/gonvme/metrics"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// BenchmarkPollerScrape measures what metrics cost the I/O path: 4 KiB
// reads at depth 32 through a one-poller group on nvmetest, with nothing
// scraping ("none") and with a registry gathered every 100 ms
// ("scrape100ms", faster than any Prometheus server scrapes). Compare
// the ns/io of the two, and cpu-ns/io: the process's CPU time (every
// thread: poller, fake device, scraper) per I/O, which a busy machine
// disturbs less than wall time.
func BenchmarkPollerScrape(b *testing.B) {
	for _, every := range []time.Duration{0, 100 * time.Millisecond} {
		name := "none"
		if every > 0 {
			name = "scrape100ms"
		}
		b.Run(name, func(b *testing.B) {
			r := rig(b)
			g := newGroup(b, r, &poller.Options{CPUs: []int{0}, Idle: poller.IdleBusy})
			reg := prometheus.NewRegistry()
			if err := metrics.Register(reg, g, r.Ctrl); err != nil {
				b.Fatal(err)
			}
			stop := make(chan struct{})
			scrapes := 0
			done := make(chan struct{})
			go func() {
				defer close(done)
				if every == 0 {
					return
				}
				tk := time.NewTicker(every)
				defer tk.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tk.C:
						if _, err := reg.Gather(); err != nil {
							b.Error(err)
						}
						scrapes++
					}
				}
			}()
			n := max(b.N, 32)
			b.ResetTimer()
			cpu0 := processCPU()
			start := time.Now()
			load(b, r, g, 32, n)
			el := time.Since(start)
			cpu := processCPU() - cpu0
			b.StopTimer()
			close(stop)
			<-done
			b.ReportMetric(float64(el.Nanoseconds())/float64(n), "ns/io")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/io")
			b.ReportMetric(float64(scrapes), "scrapes")
		})
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGather is the cost of one scrape of a one-poller, one-queue
// group (SMART served from the cache after the first).
func BenchmarkGather(b *testing.B) {
	r := rig(b)
	g := newGroup(b, r, &poller.Options{CPUs: []int{0}})
	reg := prometheus.NewRegistry()
	if err := metrics.Register(reg, g, r.Ctrl); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
