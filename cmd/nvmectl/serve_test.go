package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

// serveAddrLine finds the listening address in serve's first line.
var serveAddrLine = regexp.MustCompile(`on http://(\S+)/metrics`)

// startServe runs nvmectl serve in-process with args until the returned
// cancel is called; it returns the base URL and a channel with the exit
// code.
func startServe(t *testing.T, a app, args ...string) (string, context.CancelFunc, <-chan int) {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	var errb strings.Builder
	go func() {
		root := newRoot(a.defaults())
		root.SetArgs(append([]string{"serve"}, args...))
		root.SetOut(pw)
		root.SetErr(&errb)
		err := root.ExecuteContext(ctx)
		pw.Close()
		if err != nil {
			t.Logf("serve: %v", err)
			code <- exitCode(err)
			return
		}
		code <- exitOK
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("serve printed nothing: %v (exit %d)", err, <-code)
	}
	go io.Copy(io.Discard, pr)
	m := serveAddrLine.FindStringSubmatch(line)
	if m == nil {
		cancel()
		t.Fatalf("serve's first line: %q", line)
	}
	return "http://" + m[1], cancel, code
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
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

// scrape parses an exposition and lints the gonvme families in it.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(t, url+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	var ours []*dto.MetricFamily
	for name, mf := range mfs {
		if strings.HasPrefix(name, "gonvme_") {
			ours = append(ours, mf)
		}
	}
	if len(ours) == 0 {
		t.Fatal("no gonvme_ metrics")
	}
	problems, err := promlint.NewWithMetricFamilies(ours).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	return mfs
}

// value returns the sum of the samples of family name whose labels
// include want.
func value(mfs map[string]*dto.MetricFamily, name string, want ...string) float64 {
	var s float64
	mf := mfs[name]
	if mf == nil {
		return -1
	}
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		ok := true
		for i := 0; i+1 < len(want); i += 2 {
			ok = ok && have[want[i]] == want[i+1]
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			s += m.GetCounter().GetValue()
		case m.Gauge != nil:
			s += m.GetGauge().GetValue()
		case m.Histogram != nil:
			s += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return s
}

func TestServeFake(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{Serial: "SRV1", Namespaces: []nvmetest.NSConfig{{Blocks: 1024}}})
	old := serveOpen
	t.Cleanup(func() { serveOpen = old })
	var opened *nvme.Controller
	serveOpen = func(a app, addrs []string, opts *nvme.Options) ([]*nvme.Controller, func() error, error) {
		c, err := a.open(addrs[0])
		if err != nil {
			return nil, nil, err
		}
		opened = c
		return []*nvme.Controller{c}, c.Close, nil
	}
	base, cancel, code := startServe(t, r.a, fakeAddr, "--listen", "127.0.0.1:0")
	defer cancel()
	if c, body := httpGet(t, base+"/healthz"); c != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", c, body)
	}
	mfs := scrape(t, base)
	if v := value(mfs, "gonvme_controller_state", "controller", fakeAddr, "state", "ready"); v != 1 {
		t.Errorf("state ready %v", v)
	}
	if v := value(mfs, "gonvme_controller_temperature_celsius", "controller", fakeAddr); v != 40 {
		t.Errorf("temperature %v", v)
	}
	if v := value(mfs, "gonvme_queue_depth_entries", "controller", fakeAddr, "qid", "1"); v <= 0 {
		t.Errorf("queue depth %v", v)
	}
	if mfs["go_goroutines"] == nil || mfs["process_cpu_seconds_total"] == nil {
		t.Error("no Go or process metrics")
	}
	// A controller that is no longer ready makes /healthz fail.
	opened.MarkRemoved()
	if c, body := httpGet(t, base+"/healthz"); c != http.StatusServiceUnavailable || !strings.Contains(body, fakeAddr+" is removed") {
		t.Errorf("/healthz after removal: %d %q", c, body)
	}
	cancel()
	select {
	case c := <-code:
		if c != exitOK {
			t.Errorf("serve exit %d", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func TestServeUsage(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{})
	for _, args := range [][]string{
		{"serve"},
		{"serve", fakeAddr, "--listen", "nonsense"},
		{"serve", "0000:09:00.0", "--listen", "127.0.0.1:0"},
	} {
		if code, _, errs := r.run(args...); code != exitUsage {
			t.Errorf("nvmectl %q: exit %d, want %d (%s)", args, code, exitUsage, errs)
		}
	}
}
