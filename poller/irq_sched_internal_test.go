package poller

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
// Gosched every schedEvery, the monitor backs off to its 10 ms naps.
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
	sleepers := nanosleepThreads(t)
	if len(sleepers) == 0 {
		t.Fatal("no thread of the process sleeps in nanosleep(2): the runtime's monitor was not found")
	}
	sleeps0 := g.Stats()[0].Sleeps
	before := threadSwitches(t)
	start := time.Now()
	const n = 300
	for i := range n {
		io(i)
	}
	elapsed := time.Since(start)
	after := threadSwitches(t)
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
	if per := float64(sw) / n; per > 2 {
		t.Errorf("%.2f wake-ups of the runtime's monitor and spinning threads per I/O (want at most 2): the poller's sleeps make the runtime retake its P", per)
	}
	if most := uint64(total/schedEvery) + 2; scheds == 0 || scheds > most {
		t.Errorf("%d passes through the scheduler in %v: want 1 to %d (one per %v at most)", scheds, total, most, schedEvery)
	}
}

// threadSwitches returns the voluntary context switches of each thread of
// the process (/proc/self/task/TID/status), by thread ID.
func threadSwitches(t *testing.T) map[string]uint64 {
	t.Helper()
	m := map[string]uint64{}
	e, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range e {
		b, err := os.ReadFile("/proc/self/task/" + x.Name() + "/status")
		if err != nil {
			continue // ended meanwhile
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "voluntary_ctxt_switches:"); ok {
				m[x.Name()], _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	return m
}

// nanosleepThreads returns the threads seen in nanosleep(2) over 50
// looks a millisecond apart (/proc/self/task/TID/syscall): among the Go
// runtime's threads only the monitor sleeps there (usleep), and spinning
// threads briefly.
func nanosleepThreads(t *testing.T) map[string]bool {
	t.Helper()
	m := map[string]bool{}
	for range 50 {
		e, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range e {
			b, _ := os.ReadFile("/proc/self/task/" + x.Name() + "/syscall")
			if f := strings.Fields(string(b)); len(f) > 0 && f[0] == strconv.Itoa(unix.SYS_NANOSLEEP) {
				m[x.Name()] = true
			}
		}
		time.Sleep(time.Millisecond)
	}
	return m
}
