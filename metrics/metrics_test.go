package metrics_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"github.com/seedb8fa28ef/gonvme/metrics"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// load runs n 4 KiB reads at depth qd through g on ctrl (each Done
// resubmits) and returns when all completed. It fails the test on an error.
func load(t testing.TB, r *testrig.Rig, g *poller.Group, qd, n int) {
	t.Helper()
	ns, err := r.Ctrl.Namespace(1)
	if err != nil {
		t.Fatal(err)
	}
	h := g.Handle(r.Ctrl)
	buf := r.Buf(t, qd*4096)
	var issued, completed atomic.Int64
	var failure atomic.Pointer[error]
	finished := make(chan struct{})
	reqs := make([]nvme.Request, qd)
	submit := func(req *nvme.Request, i int) bool {
		k := issued.Add(1)
		if k > int64(n) {
			return false
		}
		if err := ns.Read(req, uint64(k%1024)*8, buf[i*4096:(i+1)*4096], 0); err != nil {
			failure.Store(&err)
			return false
		}
		if err := h.Submit(req); err != nil {
			failure.Store(&err)
			return false
		}
		return true
	}
	for i := range reqs {
		reqs[i].Private = i
		reqs[i].Done = func(req *nvme.Request) {
			if req.Err != nil {
				e := req.Err
				failure.Store(&e)
			}
			if completed.Add(1) == int64(n) {
				close(finished)
			}
			submit(req, req.Private.(int))
		}
	}
	for i := range reqs {
		submit(&reqs[i], i)
	}
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatalf("load: %d of %d completed after 30 s", completed.Load(), n)
	}
	if e := failure.Load(); e != nil {
		t.Fatal(*e)
	}
}

// writes runs n 4 KiB writes through g on ctrl, one at a time, each after
// inject (if not nil) was called with its index, and returns how many
// failed.
func writes(t testing.TB, r *testrig.Rig, g *poller.Group, n int, inject func(i int)) int {
	t.Helper()
	ns, err := r.Ctrl.Namespace(1)
	if err != nil {
		t.Fatal(err)
	}
	buf := r.Buf(t, 4096)
	done := make(chan error, 1)
	req := &nvme.Request{Done: func(q *nvme.Request) { done <- q.Err }}
	failed := 0
	for i := range n {
		if inject != nil {
			inject(i)
		}
		if err := ns.Write(req, uint64(i)*8, buf, 0); err != nil {
			t.Fatal(err)
		}
		if err := g.Handle(r.Ctrl).Submit(req); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				failed++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("write %d: no completion in 10 s", i)
		}
	}
	return failed
}

func newGroup(t testing.TB, r *testrig.Rig, opts *poller.Options) *poller.Group {
	t.Helper()
	g, err := poller.New([]*nvme.Controller{r.Ctrl}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func rig(t testing.TB) *testrig.Rig {
	return testrig.Open(t, nvmetest.Config{Serial: "SN-METRICS", Namespaces: []nvmetest.NSConfig{{Blocks: 8192}}},
		&nvme.Options{AsyncEvents: -1})
}

// waitPublished waits until the pollers' published completions reach n.
func waitPublished(t testing.TB, g *poller.Group, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var done uint64
		for _, p := range g.Stats() {
			done += p.Completed
		}
		if done >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pollers published %d completions, want %d", done, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// gather registers c on a fresh registry and returns the families by name.
func gather(t testing.TB, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// sum adds the values of the samples of a counter or gauge family whose
// labels include want.
func sum(mf *dto.MetricFamily, want map[string]string) float64 {
	var s float64
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if have[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			s += m.GetCounter().GetValue()
		case m.Gauge != nil:
			s += m.GetGauge().GetValue()
		}
	}
	return s
}

func TestCollectorCountsAndLint(t *testing.T) {
	r := rig(t)
	g := newGroup(t, r, &poller.Options{CPUs: []int{0}, StatsInterval: time.Millisecond})
	c, err := metrics.NewCollector(g, nil, r.Ctrl)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	load(t, r, g, 16, n)
	// Writes: 3 of 10 fail with Write Fault, then 16 more each with a
	// status of its own, the last of which finds the poller's table of
	// 16 statuses full.
	const nw, faults, distinct = 10, 3, 16
	r.Fake.InjectStatus(nvmetest.IO(spec.IOWrite), spec.SCTMediaError, spec.SCWriteFault, faults)
	if f := writes(t, r, g, nw, nil); f != faults {
		t.Fatalf("%d writes failed, want %d", f, faults)
	}
	if f := writes(t, r, g, distinct, func(i int) {
		r.Fake.InjectStatus(nvmetest.IO(spec.IOWrite), spec.SCTGeneric, uint8(spec.SCInvalidField+i), 1)
	}); f != distinct {
		t.Fatalf("%d writes failed, want %d", f, distinct)
	}
	const nWrites, nErrors = nw + distinct, faults + distinct
	waitPublished(t, g, n+nWrites)

	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	mf := gather(t, c)
	q := map[string]string{"controller": "SN-METRICS", "qid": "1", "poller": "0"}
	for name, want := range map[string]float64{
		"gonvme_queue_submitted_commands_total": n + nWrites,
		"gonvme_queue_completed_commands_total": n + nWrites,
		"gonvme_queue_errors_total":             nErrors,
		"gonvme_queue_commands_total":           n + nWrites,
		"gonvme_queue_bytes_total":              (n + nWrites) * 4096,
		"gonvme_queue_inflight_commands":        0,
		"gonvme_poller_completions_total":       n + nWrites,
		"gonvme_poller_inflight_requests":       0,
	} {
		if mf[name] == nil {
			t.Errorf("no %s", name)
			continue
		}
		labels := q
		if strings.HasPrefix(name, "gonvme_poller_") {
			labels = map[string]string{"poller": "0", "cpu": "0"}
		}
		if got := sum(mf[name], labels); got != want {
			t.Errorf("%s%v = %v, want %v", name, labels, got, want)
		}
	}
	if sub := sum(mf["gonvme_poller_submissions_total"], nil); sub != n+nWrites {
		t.Errorf("poller submissions %v, want %d", sub, n+nWrites)
	}
	with := func(k, v string) map[string]string {
		l := map[string]string{k: v}
		for a, b := range q {
			l[a] = b
		}
		return l
	}
	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{"gonvme_queue_commands_total", "op", "read", n},
		{"gonvme_queue_commands_total", "op", "write", nWrites},
		{"gonvme_queue_commands_total", "op", "other", 0},
		{"gonvme_queue_bytes_total", "op", "read", n * 4096},
		{"gonvme_queue_bytes_total", "op", "write", nWrites * 4096},
		{"gonvme_queue_errors_total", "status", "Write Fault", faults},
		{"gonvme_queue_errors_total", "status", "Invalid Field in Command", 1},
		{"gonvme_queue_errors_total", "status", "driver", 0},
		{"gonvme_queue_errors_total", "status", "other", 1},
	} {
		l := with(c.label, c.value)
		if got := sum(mf[c.name], l); got != c.want || !has(mf[c.name], l) {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, l, got, has(mf[c.name], l), c.want)
		}
	}
	if k := len(mf["gonvme_queue_errors_total"].GetMetric()); k != 1+poller.MaxStatuses+1 {
		t.Errorf("%d error series, want driver, %d statuses and other", k, poller.MaxStatuses)
	}
	if k := len(mf["gonvme_queue_bytes_total"].GetMetric()); k != 2 {
		t.Errorf("%d bytes series, want read and write", k)
	}
	sqdb := sum(mf["gonvme_queue_doorbell_writes_total"], map[string]string{"doorbell": "sq"})
	if sqdb < 1 || sqdb > n {
		t.Errorf("sq doorbell writes %v, want 1..%d", sqdb, n)
	}
	// Every doorbell update is a register write or one the shadow
	// doorbells saved (the fake offers Doorbell Buffer Config).
	updates := sqdb + sum(mf["gonvme_queue_doorbell_writes_total"], map[string]string{"doorbell": "cq"})
	mmio, saved := sum(mf["gonvme_queue_doorbell_mmio_writes_total"], q), sum(mf["gonvme_queue_doorbell_writes_saved_total"], q)
	if mmio < 1 || mmio+saved != updates || !has(mf["gonvme_queue_doorbell_writes_saved_total"], q) {
		t.Errorf("doorbell updates %v: %v register writes + %v saved", updates, mmio, saved)
	}
	if p := sum(mf["gonvme_queue_polls_total"], q); p < sum(mf["gonvme_queue_idle_polls_total"], q) || p == 0 {
		t.Errorf("polls %v, idle polls %v", p, sum(mf["gonvme_queue_idle_polls_total"], q))
	}
	// One latency histogram per operation (label op), each with its own
	// completions.
	for _, m := range mf["gonvme_queue_latency_seconds"].GetMetric() {
		op := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "op" {
				op = l.GetValue()
			}
		}
		want := map[string]uint64{"read": n, "write": nWrites, "other": 0}[op]
		h := m.GetHistogram()
		if h.GetSampleCount() != want || (want > 0) != (h.GetSampleSum() > 0) {
			t.Errorf("latency histogram op=%q: count %d sum %v, want %d", op, h.GetSampleCount(), h.GetSampleSum(), want)
		}
		if bs := h.GetBucket(); len(bs) != 26 || bs[len(bs)-1].GetCumulativeCount() > want {
			t.Errorf("latency op=%q: %d buckets, last cumulative %d; want 26 and at most %d", op, len(bs), bs[len(bs)-1].GetCumulativeCount(), want)
		}
	}
	if k := len(mf["gonvme_queue_latency_seconds"].GetMetric()); k != 3 {
		t.Errorf("%d latency histograms, want read, write, other", k)
	}
	if v := sum(mf["gonvme_controller_state"], map[string]string{"state": "ready"}); v != 1 {
		t.Errorf("state ready = %v", v)
	}
	if v := sum(mf["gonvme_controller_state"], nil); v != 1 {
		t.Errorf("sum over states = %v, want 1", v)
	}
	if v := sum(mf["gonvme_controller_temperature_celsius"], nil); v != 40 { // nvmetest: 313 K
		t.Errorf("temperature %v C, want 40", v)
	}
	if v := sum(mf["gonvme_controller_info"], map[string]string{"serial": "SN-METRICS"}); v != 1 {
		t.Errorf("info{serial=SN-METRICS} = %v", v)
	}
}

// has reports whether a sample of mf has labels including want.
func has(mf *dto.MetricFamily, want map[string]string) bool {
	for _, m := range mf.GetMetric() {
		ok := true
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			ok = ok && found
		}
		if ok {
			return true
		}
	}
	return false
}

func TestLatencyBuckets(t *testing.T) {
	var h poller.Histogram
	// Put one value in the poller bucket holding each of these ns.
	vals := []uint64{0, 500, 1023, 1024, 1500, 2047, 2048, 1e6, 1 << 35, 1 << 40}
	bucket := func(v uint64) int {
		for i := poller.NumBuckets - 1; i >= 0; i-- {
			if poller.BucketLow(i) <= v {
				return i
			}
		}
		return 0
	}
	for _, v := range vals {
		h.Buckets[bucket(v)]++
		h.Count++
		h.Sum += v
	}
	count, s, b := metrics.LatencyBuckets(&h)
	if count != uint64(len(vals)) || s != float64(h.Sum)/1e9 {
		t.Errorf("count %d sum %v", count, s)
	}
	bounds := metrics.LatencyBounds()
	if len(bounds) != 26 || bounds[0] != 1.024e-6 || bounds[25] != float64(uint64(1)<<35)/1e9 {
		t.Fatalf("bounds %v", bounds)
	}
	for _, le := range bounds {
		want := uint64(0)
		for _, v := range vals {
			if float64(v)/1e9 < le {
				want++
			}
		}
		if b[le] != want {
			t.Errorf("le=%g: %d, want %d", le, b[le], want)
		}
	}
}

func TestSMARTCacheAndState(t *testing.T) {
	r := rig(t)
	now := time.Unix(1000, 0)
	c, err := metrics.NewCollector(nil, &metrics.Options{Names: []string{"0000:00:04.0"}, Now: func() time.Time { return now }}, r.Ctrl)
	if err != nil {
		t.Fatal(err)
	}
	reads := func() float64 {
		return sum(gather(t, c)["gonvme_controller_smart_reads_total"], map[string]string{"result": "ok", "controller": "0000:00:04.0"})
	}
	if n := reads(); n != 1 {
		t.Errorf("first scrape: %v SMART reads, want 1", n)
	}
	now = now.Add(5 * time.Second)
	if n := reads(); n != 1 {
		t.Errorf("5 s later: %v SMART reads, want 1 (cached)", n)
	}
	now = now.Add(5 * time.Second)
	if n := reads(); n != 2 {
		t.Errorf("10 s later: %v SMART reads, want 2", n)
	}
	mf := gather(t, c)
	if v := sum(mf["gonvme_controller_available_spare_ratio"], nil); v <= 0 || v > 1 {
		t.Errorf("available spare ratio %v", v)
	}
	if err := r.Ctrl.Close(); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	mf = gather(t, c)
	if v := sum(mf["gonvme_controller_state"], map[string]string{"state": "closed"}); v != 1 {
		t.Errorf("after Close: state closed = %v", v)
	}
	if mf["gonvme_controller_temperature_celsius"] != nil {
		t.Error("temperature exported for a closed controller")
	}
	if n := sum(mf["gonvme_controller_smart_reads_total"], nil); n != 2 {
		t.Errorf("SMART reads %v after Close, want 2 (none sent to a closed controller)", n)
	}
}

func TestNewCollectorErrors(t *testing.T) {
	r := rig(t)
	other := rig(t)
	g := newGroup(t, r, &poller.Options{CPUs: []int{0}})
	for name, f := range map[string]func() error{
		"nil controller": func() error { _, err := metrics.NewCollector(nil, nil, nil); return err },
		"not in group":   func() error { _, err := metrics.NewCollector(g, nil, other.Ctrl); return err },
		"names": func() error {
			_, err := metrics.NewCollector(g, &metrics.Options{Names: []string{"a", "b"}}, r.Ctrl)
			return err
		},
		"repeated name": func() error {
			_, err := metrics.NewCollector(nil, &metrics.Options{Names: []string{"a", "a"}}, r.Ctrl, other.Ctrl)
			return err
		},
	} {
		if err := f(); !errors.Is(err, metrics.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	reg := prometheus.NewRegistry()
	if err := metrics.Register(reg, g, r.Ctrl); err != nil {
		t.Fatal(err)
	}
	if err := metrics.Register(reg, g, r.Ctrl); err == nil {
		t.Error("registering the same collector twice succeeded")
	}
}

func TestServe(t *testing.T) {
	r := rig(t)
	g := newGroup(t, r, &poller.Options{CPUs: []int{0}, StatsInterval: time.Millisecond})
	reg := prometheus.NewRegistry()
	if err := metrics.RegisterWith(reg, g, &metrics.Options{Names: []string{"fake0"}}, r.Ctrl); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- metrics.ServeListener(ctx, ln, reg, metrics.Healthy([]string{"fake0"}, r.Ctrl))
	}()
	base := "http://" + ln.Addr().String()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	load(t, r, g, 8, 500)
	waitPublished(t, g, 500)
	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	if v := sum(mfs["gonvme_queue_completed_commands_total"], map[string]string{"controller": "fake0"}); v != 500 {
		t.Errorf("scraped completions %v, want 500", v)
	}
	problems, err := promlint.NewWithMetricFamilies(familyList(mfs)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Ctrl.Close(); err != nil {
		t.Fatal(err)
	}
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "fake0 is closed") {
		t.Errorf("/healthz after Close: %d %q", code, body)
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("ServeListener: %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still answers after its context ended")
	}
}

func familyList(m map[string]*dto.MetricFamily) []*dto.MetricFamily {
	var out []*dto.MetricFamily
	for _, mf := range m {
		out = append(out, mf)
	}
	return out
}

// TestSMARTCounters: the SMART log's counters and critical-warning bits
// are exported: data written in bytes, media errors and error log entries
// after a failed read, each warning bit as its own series.
func TestSMARTCounters(t *testing.T) {
	r := rig(t)
	qp, err := r.Ctrl.NewQueuePair(0)
	if err != nil {
		t.Fatal(err)
	}
	defer qp.Close()
	ns, _ := r.Ctrl.Namespace(1)
	buf, err := r.Ctrl.Memory().Alloc(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Ctrl.Memory().Free(buf)
	for off := 0; off < 1<<20; off += 128 << 10 { // 1 MiB: 3 units of 512,000 bytes
		if err := ns.WriteAt(qp, buf.Bytes[off:off+128<<10], uint64(off/512)); err != nil {
			t.Fatal(err)
		}
	}
	r.Fake.InjectStatus(nvmetest.Match{Opcode: spec.IORead}, spec.SCTMediaError, spec.SCUnrecoveredReadError, 1)
	if err := ns.ReadAt(qp, buf.Bytes[:512], 0); err == nil {
		t.Fatal("injected media error: the read succeeded")
	}
	c, err := metrics.NewCollector(nil, &metrics.Options{Names: []string{"0000:00:04.0"}}, r.Ctrl)
	if err != nil {
		t.Fatal(err)
	}
	mf := gather(t, c)
	for name, want := range map[string]float64{
		"gonvme_controller_data_written_bytes_total": 3 * 512000,
		"gonvme_controller_media_errors_total":       1,
		"gonvme_controller_error_log_entries_total":  1,
		"gonvme_controller_unsafe_shutdowns_total":   0,
		"gonvme_controller_power_on_seconds_total":   0,
	} {
		if mf[name] == nil {
			t.Errorf("%s not exported", name)
			continue
		}
		if got := sum(mf[name], nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if mf["gonvme_controller_data_read_bytes_total"] == nil {
		t.Error("gonvme_controller_data_read_bytes_total not exported")
	}
	bits := mf["gonvme_controller_critical_warning_bit"]
	if bits == nil || len(bits.Metric) != 6 || sum(bits, nil) != 0 {
		t.Errorf("critical warning bits: %v", bits)
	}
	for _, b := range []string{"available_spare", "temperature", "reliability", "read_only", "volatile_memory_backup", "pmr_read_only"} {
		if bits != nil && sum(bits, map[string]string{"bit": b}) != 0 {
			t.Errorf("bit %s set on a healthy fake", b)
		}
	}
}

// TestOpLatencyBuckets: per-operation latency converts exactly: the count
// below each bound 2^e ns is the count of the values below it.
func TestOpLatencyBuckets(t *testing.T) {
	vals := []uint64{0, 500, 1023, 1024, 1500, 2047, 2048, 1e6, 1<<35 - 1, 1 << 35, 1 << 40}
	var l poller.OpLatency
	for _, v := range vals {
		i := 0
		for i < poller.OpLatencyBuckets-1 && v >= uint64(1)<<(10+i) {
			i++
		}
		l.Buckets[i]++
		l.Count++
		l.Sum += v
	}
	count, s, b := metrics.OpLatencyBuckets(&l)
	if count != uint64(len(vals)) || s != float64(l.Sum)/1e9 || len(b) != 26 {
		t.Fatalf("count %d sum %v, %d buckets", count, s, len(b))
	}
	for _, le := range metrics.LatencyBounds() {
		want := uint64(0)
		for _, v := range vals {
			if float64(v)/1e9 < le {
				want++
			}
		}
		if b[le] != want {
			t.Errorf("le=%g: %d, want %d", le, b[le], want)
		}
	}
}

// A poller in interrupt mode exports its sleeps, interrupts, wake-ups and
// time asleep.
func TestInterruptModeMetrics(t *testing.T) {
	r := rig(t)
	g := newGroup(t, r, &poller.Options{CPUs: []int{0}, Mode: poller.ModeInterrupt})
	c, err := metrics.NewCollector(g, nil, r.Ctrl)
	if err != nil {
		t.Fatal(err)
	}
	if f := writes(t, r, g, 20, nil); f != 0 {
		t.Fatalf("%d writes failed", f)
	}
	waitPublished(t, g, 20)
	mf := gather(t, c)
	for _, name := range []string{"gonvme_poller_sleeps_total", "gonvme_poller_interrupts_total",
		"gonvme_poller_wakeups_total", "gonvme_poller_asleep_seconds_total"} {
		if mf[name] == nil || sum(mf[name], map[string]string{"poller": "0"}) <= 0 {
			t.Errorf("%s: missing or 0 after 20 writes in interrupt mode", name)
		}
	}
}
