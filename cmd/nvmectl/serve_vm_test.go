package main

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/metrics"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// loopbackUp brings the guest's loopback interface up (the guest init
// leaves it down): the tests serve HTTP on 127.0.0.1.
func loopbackUp(t *testing.T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		t.Fatalf("get lo flags: %v", err)
	}
	if ifr.Uint16()&unix.IFF_UP == 0 {
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			t.Fatalf("bring lo up: %v", err)
		}
	}
}

// TestVMMetricsLoad runs random reads on QEMU's controller through a
// poller group with metrics.Serve on loopback, scrapes /metrics over HTTP
// while the load runs, and checks the counters against the load's own.
func TestVMMetricsLoad(t *testing.T) {
	env := vmtest.Require(t, "default")
	loopbackUp(t)
	addr := env.BindVFIO(t, env.Controllers()[0])
	ctrl, err := pcie.Open(addr, &nvme.Options{IOQueues: 1, AsyncEvents: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Close()
	g, err := poller.New([]*nvme.Controller{ctrl}, &poller.Options{CPUs: []int{0}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	reg := prometheus.NewRegistry()
	if err := metrics.RegisterWith(reg, g, &metrics.Options{Names: []string{addr}}, ctrl); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stopServe := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- metrics.ServeListener(sctx, ln, reg, metrics.Healthy([]string{addr}, ctrl)) }()
	defer func() {
		stopServe()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	base := "http://" + ln.Addr().String()
	q := []string{"controller", addr, "qid", "1"}

	const qd = 16
	var c loadCounts
	lctx, stopLoad := context.WithTimeout(context.Background(), 4*time.Second)
	defer stopLoad()
	loadErr := make(chan error, 1)
	go func() { loadErr <- randomReads(lctx, g, ctrl, 1<<40, qd, &c) }()

	scrapes := 0
	for running := true; running; {
		select {
		case err := <-loadErr:
			if err != context.DeadlineExceeded {
				t.Fatalf("load: %v", err)
			}
			running = false
			continue
		case <-time.After(300 * time.Millisecond):
		}
		before := c.completed.Load()
		mfs := scrape(t, base)
		after, sub := c.completed.Load(), c.submitted.Load()
		done := value(mfs, "gonvme_queue_completed_commands_total", q...)
		issued := value(mfs, "gonvme_queue_submitted_commands_total", q...)
		inflight := value(mfs, "gonvme_queue_inflight_commands", q...)
		// The queue pair counts a completion just before the load's
		// Done does, and the poller publishes its counters every 1 ms
		// while busy: the scraped count lies between what the load had
		// seen before the scrape, less what one publication interval
		// and a scheduling delay under TCG let complete, and what it
		// saw after, plus one queue depth.
		const slack = 2000
		t.Logf("scrape %d: load completed %d..%d, scraped completed %.0f submitted %.0f in flight %.0f", scrapes, before, after, done, issued, inflight)
		if done > float64(after+qd) || done+slack < float64(before) {
			t.Errorf("scrape %d: completed %.0f, load saw %d before and %d after", scrapes, done, before, after)
		}
		if issued > float64(sub) || issued < done || issued-done > qd || inflight > qd {
			t.Errorf("scrape %d: submitted %.0f, completed %.0f, in flight %.0f (load submitted %d, qd %d)", scrapes, issued, done, inflight, sub, qd)
		}
		scrapes++
	}
	if scrapes < 3 {
		t.Errorf("only %d scrapes during the load", scrapes)
	}
	total := c.completed.Load()
	if total == 0 || c.errors.Load() != 0 || c.submitted.Load() != total {
		t.Fatalf("load: submitted %d completed %d errors %d", c.submitted.Load(), total, c.errors.Load())
	}
	// At rest the counters agree exactly.
	deadline := time.Now().Add(10 * time.Second)
	var mfs = scrape(t, base)
	for value(mfs, "gonvme_queue_completed_commands_total", q...) != float64(total) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		mfs = scrape(t, base)
	}
	for name, want := range map[string]float64{
		"gonvme_queue_completed_commands_total": float64(total),
		"gonvme_queue_submitted_commands_total": float64(total),
		"gonvme_queue_latency_seconds":          float64(total),
		"gonvme_queue_errors_total":             0,
		"gonvme_queue_inflight_commands":        0,
	} {
		if got := value(mfs, name, q...); got != want {
			t.Errorf("at rest: %s = %v, want %v", name, got, want)
		}
	}
	if got := value(mfs, "gonvme_poller_completions_total"); got != float64(total) {
		t.Errorf("poller completions %v, want %d", got, total)
	}
	if v := value(mfs, "gonvme_controller_state", "controller", addr, "state", "ready"); v != 1 {
		t.Errorf("state ready = %v", v)
	}
	if v := value(mfs, "gonvme_controller_temperature_celsius", "controller", addr); v <= 0 || v > 100 {
		t.Errorf("SMART composite temperature %v C", v)
	}
	// QEMU 7.2 leaves Available Spare at 0 in its SMART log.
	if v := value(mfs, "gonvme_controller_available_spare_ratio", "controller", addr); v < 0 || v > 1 {
		t.Errorf("available spare ratio %v (-1: not exported)", v)
	}
	if v := value(mfs, "gonvme_controller_smart_reads_total", "controller", addr, "result", "ok"); v < 1 || v > 2 {
		t.Errorf("%v SMART reads in %d scrapes over about 5 s, want 1 or 2 (cached 10 s)", v, scrapes)
	}
	if code, body := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d %q", code, body)
	}
	t.Logf("%d reads in 4 s (%.0f IOPS), %d scrapes", total, float64(total)/4, scrapes)
}

// TestVMServe runs nvmectl serve on QEMU's controller.
func TestVMServe(t *testing.T) {
	env := vmtest.Require(t, "default")
	loopbackUp(t)
	addr := env.BindVFIO(t, env.Controllers()[0])
	base, cancel, code := startServe(t, app{}, addr, "--listen", "127.0.0.1:0")
	defer cancel()
	if c, body := httpGet(t, base+"/healthz"); c != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", c, body)
	}
	mfs := scrape(t, base)
	if v := value(mfs, "gonvme_controller_state", "controller", addr, "state", "ready"); v != 1 {
		t.Errorf("state ready = %v", v)
	}
	if v := value(mfs, "gonvme_controller_info", "controller", addr, "model", "QEMU NVMe Ctrl"); v != 1 {
		t.Errorf("info{model=QEMU NVMe Ctrl} = %v", v)
	}
	if v := value(mfs, "gonvme_queue_polls_total", "controller", addr); v < 0 {
		t.Error("no queue metrics")
	}
	cancel()
	select {
	case c := <-code:
		if c != exitOK {
			t.Errorf("serve exit %d", c)
		}
	case <-time.After(time.Minute):
		t.Fatal("serve did not stop")
	}
}
