package poller_test

import (
	"strings"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Host tests of the random-read job that TestVMRandRead* run in the guest
// (poller_vm_test.go).

// TestRandJobStopsOnce plays the interleaving that made the old job close
// its done channel twice with two pollers: poller A completes a request
// and is about to resubmit it when the job stops; poller B completes the
// other request, the last one in flight at that moment. The job must stay
// open until A's resubmitted request has completed too, and close once.
func TestRandJobStopsOnce(t *testing.T) {
	j := newRandJob(2)
	closed := func() bool {
		select {
		case <-j.done:
			return true
		default:
			return false
		}
	}
	if !j.completed() { // A: goes on (resubmits below)
		t.Fatal("a request stopped before the job did")
	}
	j.stop.Store(true)
	if j.completed() { // B: stops
		t.Fatal("a request went on after the job stopped")
	}
	if closed() {
		t.Fatal("the job ended while A's request was still to be resubmitted")
	}
	// A's resubmitted request completes.
	if j.completed() {
		t.Fatal("A's request went on after the job stopped")
	}
	if !closed() {
		t.Fatal("the job did not end when its last request stopped")
	}
}

// TestRandReadFake runs the random-read job on the in-process controller
// with two pollers: it passes over the written pattern, and its checks
// catch reads that return other data and reads the device did not
// execute.
func TestRandReadFake(t *testing.T) {
	const span = 1024 // 4 MiB
	r := newRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 14}}}, nil)
	cpus := []int{0, 1}

	// An unwritten namespace reads zeros, as null-co does.
	res, err := randRead(t, r.ctrl, r.ns, cpus, 8, 100*time.Millisecond, span, true)
	if err != nil || res.completed == 0 || res.deviceReads != uint64(res.issued) {
		t.Fatalf("zeros: %+v, %v", res, err)
	}
	// ... but not the pattern.
	if _, err := randRead(t, r.ctrl, r.ns, cpus, 8, 100*time.Millisecond, span, false); err == nil ||
		!strings.Contains(err.Error(), "reads returned other data than the chunk holds, first: read of lba ") {
		t.Errorf("pattern expected on zeros: %v", err)
	}

	writeRandPattern(t, r.ctrl, r.ns, span)
	res, err = randRead(t, r.ctrl, r.ns, cpus, 32, 200*time.Millisecond, span, false)
	if err != nil || res.completed == 0 || res.mismatches != 0 {
		t.Fatalf("pattern: %+v, %v", res, err)
	}
	t.Logf("%d reads checked, device counted %d read commands and %d data units", res.completed, res.deviceReads, res.deviceUnits)
	if _, err := randRead(t, r.ctrl, r.ns, cpus, 8, 100*time.Millisecond, span, true); err == nil || !strings.Contains(err.Error(), "returned other data") {
		t.Errorf("zeros expected on the pattern: %v", err)
	}

	// Reads of the first 512 KiB (an eighth of the span, so that even a
	// slow run of a few dozen reads hits it) complete with success
	// without being executed: their buffers keep the poison, and the
	// device's count of read commands falls short of what was issued.
	r.fake.InjectStatus(nvmetest.IO(spec.IORead).Range(0, 1024), 0, 0, -1)
	_, err = randRead(t, r.ctrl, r.ns, cpus, 32, 300*time.Millisecond, span, false)
	if err == nil || !strings.Contains(err.Error(), "byte 0 is 0xa5a5a5a5a5a5a5a5") || !strings.Contains(err.Error(), "the device's SMART log counts ") {
		t.Errorf("reads not executed: %v", err)
	}
	r.fake.ClearFaults()
}
