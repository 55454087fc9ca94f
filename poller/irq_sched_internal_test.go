package poller

import (
	"runtime"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

// TestSleepsKeepMonitorQuiet runs a poller in ModeInterrupt at about a
// thousand I/Os a second, one at a time, so that it sleeps twice per I/O
// (for the submission and for the completion), and counts the wake-ups of
// the Go runtime's threads that sleep in nanosleep(2): the monitor
// (sysmon) and the scheduler's spinning threads. A poller that never
// passes through the scheduler looks, after 10 ms, like a goroutine that
// runs too long, and the monitor then retakes its P in every sleep: more
// than ten of those wake-ups per I/O on the host, and more than a CPU in a
// QEMU guest at 1000 IOPS (poller's schedEvery). With the poller's
// Gosched every schedEvery, the monitor backs off to its 10 ms naps. The
// test fails without those passes (none counted) or with too many.
func TestSleepsKeepMonitorQuiet(t *testing.T) {
	// The fake's device goroutine holds a P while it spins, which a
	// real device does not; with the poller's P in its sleeps that can
	// be all of them, and then the monitor retakes one in every sleep
	// whatever the poller does. Two more keep one idle.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.NumCPU() + 2))
	tr := testrig.Open(t, nvmetest.Config{}, nil)
	ns, err := tr.Ctrl.Namespace(1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := New([]*nvme.Controller{tr.Ctrl}, &Options{CPUs: []int{0}, Mode: ModeInterrupt})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			g.Close()
		}
	})
	h := g.Handle(tr.Ctrl)
	buf := tr.Buf(t, 4096)
	done := make(chan struct{}, 1)
	req := &nvme.Request{Done: func(*nvme.Request) { done <- struct{}{} }}
	io := func(i int) {
		if err := ns.Read(req, uint64(i), buf, 0); err != nil {
			t.Fatal(err)
		}
		if err := h.Submit(req); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("I/O %d did not complete", i)
		}
		if req.Err != nil {
			t.Fatal(req.Err)
		}
		time.Sleep(time.Millisecond)
	}
	began := time.Now()
	for i := range 50 { // past the monitor's 10 ms
		io(i)
	}
	sleepers := testrig.NanosleepThreads(t)
	if len(sleepers) == 0 {
		t.Fatal("no thread of the process sleeps in nanosleep(2): the runtime's monitor was not found")
	}
	sleeps0 := g.Stats()[0].Sleeps
	before := testrig.ThreadSwitches(t)
	start := time.Now()
	const n = 300
	for i := range n {
		io(i)
	}
	elapsed := time.Since(start)
	after := testrig.ThreadSwitches(t)
	var sw uint64
	for tid := range sleepers {
		sw += after[tid] - before[tid]
	}
	sleeps := g.Stats()[0].Sleeps - sleeps0
	closed = true
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	total := time.Since(began)
	scheds := g.pollers[0].irq.scheds // (read after the poller ended)
	t.Logf("%d I/Os in %v: %d sleeps; %d wake-ups of the %d nanosleep threads (%.2f per I/O); %d passes through the scheduler in %v",
		n, elapsed.Round(time.Millisecond), sleeps, sw, len(sleepers), float64(sw)/n, scheds, total.Round(time.Millisecond))
	if sleeps < n {
		t.Fatalf("%d sleeps for %d I/Os one at a time: the poller did not sleep between them", sleeps, n)
	}
	// The wake-ups are the effect (0.2 to 0.5 per I/O with the passes,
	// 7.8 to 9.7 without, on a quiet host); they are logged, not
	// asserted: with other processes on the CPUs (ci's other test
	// packages) the monitor wakes as often either way (7.6 seen). What
	// is asserted is the cause's remedy: the passes, bounded.
	if most := uint64(total/schedEvery) + 2; scheds == 0 || scheds > most {
		t.Errorf("%d passes through the scheduler in %v: want 1 to %d (one per %v at most)", scheds, total, most, schedEvery)
	}
}
