package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/cpuset"
	"github.com/seedb8fa28ef/gonvme/internal/perfjson"
	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// perfRig runs nvmectl perf against nvmetest controllers, one per
// address, opened with the options perf asks for (as many I/O queues as
// pollers).
type perfRig struct {
	t     *testing.T
	addrs []string
	fakes []*nvmetest.Controller
	a     app
}

func newPerfRig(t *testing.T, cfgs ...nvmetest.Config) *perfRig {
	t.Helper()
	r := &perfRig{t: t}
	mems := map[string]*dma.Allocator{}
	var list []vfio.Controller
	for i, cfg := range cfgs {
		fake, err := nvmetest.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		mem, err := dma.NewAllocator(fake.Mapper())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			testrig.CheckHost(t, fake)
			fake.Close()
			if err := mem.Close(); err != nil {
				t.Errorf("dma memory leaked: %v", err)
			}
		})
		addr := fmt.Sprintf("0000:00:%02x.0", 4+i)
		r.addrs = append(r.addrs, addr)
		r.fakes = append(r.fakes, fake)
		mems[addr] = mem
		list = append(list, vfio.Controller{Addr: addr, Vendor: 0x1b36, Device: 0x0010, Class: vfio.ClassNVMe, Driver: "vfio-pci", Group: 3 + i, Viable: true})
	}
	r.a = app{
		list:  func() ([]vfio.Controller, error) { return list, nil },
		root:  t.TempDir(),
		stdin: strings.NewReader(""),
	}
	old := perfOpen
	t.Cleanup(func() { perfOpen = old })
	perfOpen = func(_ app, addrs []string, opts *nvme.Options) ([]*nvme.Controller, func() error, error) {
		var cs []*nvme.Controller
		closeAll := func() error {
			var err error
			for _, c := range cs {
				if cerr := c.Close(); cerr != nil && err == nil {
					err = cerr
				}
			}
			return err
		}
		for _, addr := range addrs {
			i := slices.Index(r.addrs, addr)
			c, err := nvme.Open(keepBus{r.fakes[i]}, mems[addr], opts)
			if err != nil {
				closeAll()
				return nil, nil, devicef("open %s: %w", addr, err)
			}
			cs = append(cs, c)
		}
		return cs, closeAll, nil
	}
	return r
}

// needCPUs skips a test that runs n pollers when the process may use
// fewer CPUs.
func needCPUs(t *testing.T, n int) {
	t.Helper()
	if cpus, err := cpuset.Allowed(); err != nil || len(cpus) < n {
		t.Skipf("needs %d CPUs for %d pollers (have %v, %v)", n, n, cpus, err)
	}
}

func (r *perfRig) run(args ...string) (int, string, string) {
	r.t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb, r.a)
	return code, out.String(), errb.String()
}

// decodePerf parses perf's JSON with package perfjson, the one definition
// of its keys: strictly (no key missing, none unknown) and with the checks
// every report must pass (rates agree with counts, latencies ordered and
// not zero where I/O was measured).
func decodePerf(t *testing.T, out string) *perfjson.Report {
	t.Helper()
	p, err := perfjson.Decode([]byte(out))
	if err != nil {
		t.Fatalf("perf json: %v in\n%s", err, out)
	}
	return p
}

func TestPerfParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{{"4096", 4096}, {"4k", 4096}, {"4K", 4096}, {"4KiB", 4096}, {"4kb", 4096}, {"128K", 128 << 10}, {"1M", 1 << 20}, {"2MiB", 2 << 20}, {"512b", 512}, {" 8K ", 8192}} {
		if got, err := parseSize(tt.in); err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "0", "K", "4X", "-4K", "1.5K", "4096G"} {
		if got, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", bad, got)
		}
	}
}

func TestPerfBadFlags(t *testing.T) {
	r := newPerfRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 16}, {Blocks: 1 << 12, BlockSize: 4096}}})
	a := r.addrs[0]
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"perf"}, "requires at least 1 arg"},
		{[]string{"perf", "nvme0"}, "not a PCI address"},
		{[]string{"perf", a, a}, "named twice"},
		{[]string{"perf", "0000:00:1f.0"}, "no NVMe controller at 0000:00:1f.0"},
		{[]string{"perf", a, "-q", "0"}, "--queue-depth 0: want 1 to 4096"},
		{[]string{"perf", a, "-q", "5000"}, "--queue-depth 5000"},
		{[]string{"perf", a, "-s", "4X"}, `--io-size: "4X" is not a size`},
		{[]string{"perf", a, "-s", "256"}, "--io-size 256: want 512 bytes"},
		{[]string{"perf", a, "-w", "randomread"}, `--workload "randomread": want read, write`},
		{[]string{"perf", a, "-w", "rw"}, "--workload rw needs --rwmixread (-M)"},
		{[]string{"perf", a, "-w", "randrw", "-M", "101"}, "--rwmixread 101: want 0 to 100"},
		{[]string{"perf", a, "-w", "read", "-M", "50"}, "--rwmixread applies to rw and randrw only"},
		{[]string{"perf", a, "-w", "randwrite", "--verify"}, "--verify checks what reads return"},
		{[]string{"perf", a, "-w", "rw", "-M", "0", "--verify"}, "--verify checks what reads return"},
		{[]string{"perf", a, "-t", "0"}, "--time 0: want more than 0"},
		{[]string{"perf", a, "--warmup", "-1"}, "--warmup -1"},
		{[]string{"perf", a, "-c", "[1023]"}, "core 1023 is not one this process may run on"},
		{[]string{"perf", a, "-P", "99"}, "99 pollers, but this process may run on"},
		{[]string{"perf", a, "-c", "0"}, "selects no CPU"},
		{[]string{"perf", a, "-LLL"}, "-L given 3 times"},
		{[]string{"perf", a, "--qpairs-per-ns", "0"}, "--qpairs-per-ns 0"},
		{[]string{"perf", a, "-c", "[0]", "--qpairs-per-ns", "2"}, "each gonvme poller owns one queue pair per controller"},
		{[]string{"perf", a, "-n", "3", "-t", "0.1"}, "namespace 3 is not active on " + a + " (active: 1 2)"},
		{[]string{"perf", a, "-s", "2048", "-t", "0.1"}, "--io-size 2048 is not a multiple of the 4096-byte block size of namespace 2"},
		{[]string{"perf", a, "-s", "1M", "-t", "0.1"}, "exceeds the largest transfer of namespace 1"},
		{[]string{"perf", a, "-q", "x"}, `invalid argument "x"`},
	} {
		code, out, errs := r.run(tt.args...)
		if code != exitUsage || !strings.Contains(errs, tt.msg) || out != "" {
			t.Errorf("nvmectl %q: exit %d, stdout %q, stderr %q; want exit 1 and %q", tt.args, code, out, errs, tt.msg)
		}
	}
	// Nothing ran: no I/O reached the fake.
	if n := r.fakes[0].Stats().TotalIO(); n != 0 {
		t.Errorf("%d I/O commands reached the device from refused runs", n)
	}
	// Not bound to vfio-pci: a device error.
	r.a.list = func() ([]vfio.Controller, error) {
		return []vfio.Controller{{Addr: a, Class: vfio.ClassNVMe, Driver: "nvme", Group: 3, Viable: true}}, nil
	}
	if code, _, errs := r.run("perf", a, "-t", "0.1"); code != exitDevice || !strings.Contains(errs, "nvmectl setup "+a) {
		t.Errorf("perf on a controller bound to nvme: exit %d, stderr %q", code, errs)
	}
}

// TestPerfRandRead: two pollers on two namespaces, JSON and the table.
func TestPerfRandRead(t *testing.T) {
	needCPUs(t, 2)
	r := newPerfRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 16}, {Blocks: 1 << 12, BlockSize: 4096}}})
	a := r.addrs[0]
	before := r.fakes[0].Stats()
	code, out, errs := r.run("-o", "json", "perf", a, "-q", "8", "-s", "4K", "-w", "randread", "-t", "0.5", "--warmup", "0.2", "-c", "0,1")
	if code != exitOK {
		t.Fatalf("perf: exit %d, stderr %q", code, errs)
	}
	p := decodePerf(t, out)
	if p.Workload != "randread" || p.IOSize != 4096 || p.QueueDepth != 8 || p.Pollers != 2 || !slices.Equal(p.CPUs, []int{0, 1}) ||
		p.RWMixRead != 100 || p.WarmupSeconds != 0.2 || p.Seconds < 0.5 || p.Seconds > 1.5 || p.Verify.Enabled {
		t.Errorf("perf json header: %+v", p)
	}
	if len(p.Results) != 2 || p.Results[0].NSID != 1 || p.Results[1].NSID != 2 {
		t.Fatalf("results %+v, want namespaces 1 and 2", p.Results)
	}
	var sum uint64
	for _, x := range p.Results {
		if x.Controller != a || x.Pollers != 2 || x.Writes != 0 || x.Errors != 0 || x.Workload != "randread" || x.QueueDepth != 8 {
			t.Errorf("row %+v", x)
		}
		sum += x.IOs
	}
	if p.Total.Controller != "total" || p.Total.IOs != sum || p.Total.Pollers != 2 {
		t.Errorf("total %+v, rows sum to %d I/Os", p.Total, sum)
	}
	// The device saw at least the measured reads (plus warmup and drain)
	// and no write.
	st := r.fakes[0].Stats()
	if reads := st.Commands(spec.IORead) - before.Commands(spec.IORead); reads < p.Total.IOs {
		t.Errorf("device read %d times, perf counted %d", reads, p.Total.IOs)
	}
	if w := st.Commands(spec.IOWrite) - before.Commands(spec.IOWrite); w != 0 {
		t.Errorf("randread wrote %d times", w)
	}
	// A live line per second on stderr (a buffer: plain lines).
	// (The doorbell counts, one line at the end, are not a live line.)
	if live, _, _ := strings.Cut(errs, "perf: doorbells: "); live != "" && !strings.Contains(live, "IOPS") {
		t.Errorf("stderr %q", errs)
	}

	code, out, errs = r.run("perf", a, "-n", "1", "-q", "4", "-t", "1.2", "-w", "read")
	if code != exitOK {
		t.Fatalf("perf: exit %d, stderr %q", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "perf: read, 4096-byte I/O, queue depth 4 per namespace and poller, 1 poller(s) on CPU 0") ||
		!strings.HasPrefix(lines[2], a+"     1  100.0") || !strings.HasPrefix(lines[3], "Total") {
		t.Errorf("table:\n%s", out)
	}
	for _, c := range append([]string{"Controller", "NSID", "Read%"}, perfColumns...) {
		if !strings.Contains(lines[1], c) {
			t.Errorf("header %q lacks %q", lines[1], c)
		}
	}
	if !strings.Contains(errs, "perf run") || !strings.Contains(errs, "IOPS") || !strings.Contains(errs, "MiB/s") || !strings.Contains(errs, "s left") {
		t.Errorf("no live line after 1.2 s: stderr %q", errs)
	}
	t.Logf("nvmectl perf:\n%s%s", errs, out)
}

// TestPerfMix: rw -M 70 reads about 70%, as perf and the device count.
func TestPerfMix(t *testing.T) {
	r := newPerfRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 15}}})
	a := r.addrs[0]
	for _, tt := range []struct {
		wl  string
		mix int
	}{{"rw", 70}, {"randrw", 30}, {"randrw", 0}, {"rw", 100}} {
		// Enough I/Os for the share of reads to be within a few points
		// (other processes may slow a run down: run longer then).
		var p *perfjson.Report
		var devR, devW uint64
		for secs := 0.3; ; secs *= 2 {
			before := r.fakes[0].Stats()
			code, out, errs := r.run("-o", "json", "perf", a, "-q", "16", "-w", tt.wl, "-M", fmt.Sprint(tt.mix), "-t", fmt.Sprint(secs), "-s", "512")
			if code != exitOK {
				t.Fatalf("perf -w %s -M %d: exit %d, stderr %q", tt.wl, tt.mix, code, errs)
			}
			p = decodePerf(t, out)
			after := r.fakes[0].Stats()
			devR = after.Commands(spec.IORead) - before.Commands(spec.IORead)
			devW = after.Commands(spec.IOWrite) - before.Commands(spec.IOWrite)
			if p.Total.IOs >= 5000 || secs > 5 {
				break
			}
		}
		x := p.Total
		got := float64(x.Reads) / float64(x.IOs)
		dev := float64(devR) / float64(devR+devW)
		want := float64(tt.mix) / 100
		// Five standard deviations of a binomial share, at least 1%.
		tol := max(0.01, 5*math.Sqrt(want*(1-want)/float64(x.IOs)))
		t.Logf("-w %s -M %d: %d I/Os, %d reads (%.3f); device %d reads, %d writes (%.3f); tolerance %.3f", tt.wl, tt.mix, x.IOs, x.Reads, got, devR, devW, dev, tol)
		if p.RWMixRead != tt.mix || x.IOs < 1000 {
			t.Errorf("rwmixread %d, %d I/Os: too few to judge", p.RWMixRead, x.IOs)
		}
		if math.Abs(got-want) > tol {
			t.Errorf("-w %s -M %d: %.3f of the I/Os were reads", tt.wl, tt.mix, got)
		}
		if math.Abs(dev-want) > tol {
			t.Errorf("-w %s -M %d: the device saw %.3f reads", tt.wl, tt.mix, dev)
		}
		if (tt.mix == 0 && (x.Reads != 0 || devR != 0)) || (tt.mix == 100 && (x.Writes != 0 || devW != 0)) {
			t.Errorf("-M %d: reads %d/%d writes %d/%d (perf/device)", tt.mix, x.Reads, devR, x.Writes, devW)
		}
		if devR+devW < x.IOs {
			t.Errorf("device ran %d commands, perf counted %d", devR+devW, x.IOs)
		}
	}
}

// TestPerfVerify: the pattern checks out on an honest device, and reads
// of blocks whose writes the device dropped (completed with success, not
// executed) are reported as mismatches, with exit status 2.
func TestPerfVerify(t *testing.T) {
	needCPUs(t, 2)
	r := newPerfRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 14}, {Blocks: 1 << 11, BlockSize: 4096}}})
	a := r.addrs[0]
	code, out, errs := r.run("-o", "json", "perf", a, "-q", "8", "-w", "randrw", "-M", "60", "-t", "0.3", "--warmup", "0.1", "-c", "0x3", "--verify")
	if code != exitOK {
		t.Fatalf("perf --verify: exit %d, stderr %q", code, errs)
	}
	p := decodePerf(t, out)
	v := p.Verify
	if !v.Enabled || v.Mismatches != 0 || v.Checked < p.Total.Reads || v.Checked == 0 || v.Blocks == 0 || v.Seed == 0 || v.FirstMismatch != "" {
		t.Errorf("verify %+v, total %+v", v, p.Total)
	}
	t.Logf("verify: %+v", v)

	// Writes to the first 64 KiB of namespace 1 complete without being
	// executed: the blocks keep what the run above wrote with another
	// seed, which the pattern of this run must not accept.
	r.fakes[0].InjectStatus(nvmetest.Match{Opcode: spec.IOWrite, HasOpcode: true, NSID: 1}.Range(0, 128), 0, 0, -1)
	code, out, errs = r.run("perf", a, "-n", "1", "-q", "4", "-w", "read", "-s", "4K", "-t", "0.3", "--verify")
	if code != exitDevice || !strings.Contains(errs, "perf: verify:") || !strings.Contains(errs, "returned data that was not written") {
		t.Fatalf("perf --verify over dropped writes: exit %d, stderr %q", code, errs)
	}
	if !strings.Contains(out, "verify: ") || !strings.Contains(out, "first mismatch: "+a+" namespace 1 lba ") {
		t.Errorf("table without the verify lines:\n%s", out)
	}
	var checked, bad uint64
	if _, err := fmt.Sscanf(out[strings.Index(out, "verify: "):], "verify: %d reads checked against the pattern of", &checked); err != nil {
		t.Fatalf("verify line: %v in\n%s", err, out)
	}
	if i := strings.Index(out, "blocks, "); i < 0 {
		t.Fatalf("no mismatch count in\n%s", out)
	} else if _, err := fmt.Sscanf(out[i:], "blocks, %d mismatches", &bad); err != nil {
		t.Fatal(err)
	}
	if bad == 0 || bad >= checked {
		t.Errorf("%d mismatches of %d reads: want some, not all (only LBAs 0-127 lost their writes)", bad, checked)
	}
	t.Logf("dropped writes:\n%s%s", out, errs)
	r.fakes[0].ClearFaults()
}

// TestPerfErrors: I/O errors are counted and exit 2 after the report.
func TestPerfErrors(t *testing.T) {
	r := newPerfRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 14}}})
	a := r.addrs[0]
	r.fakes[0].InjectStatus(nvmetest.IO(spec.IORead).Range(0, 1<<13), 0x2, 0x81, -1) // Unrecovered Read Error
	code, out, errs := r.run("-o", "json", "perf", a, "-q", "4", "-t", "0.3")
	if code != exitDevice || !strings.Contains(errs, "I/Os failed, first: read of namespace 1 at lba ") || !strings.Contains(errs, "Unrecovered Read Error") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	p := decodePerf(t, out)
	if p.Total.Errors == 0 || p.Total.Errors >= p.Total.IOs {
		t.Errorf("errors %d of %d I/Os: want about half", p.Total.Errors, p.Total.IOs)
	}
}

// TestPerfTwoControllers: a row per namespace of each controller.
func TestPerfTwoControllers(t *testing.T) {
	needCPUs(t, 2)
	r := newPerfRig(t, nvmetest.Config{Serial: "A"}, nvmetest.Config{Serial: "B", Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 13}, {Blocks: 1 << 13}}})
	code, out, errs := r.run("-o", "json", "perf", r.addrs[0], r.addrs[1], "-q", "2", "-t", "0.3", "--qpairs-per-ns", "2", "-w", "randwrite")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	p := decodePerf(t, out)
	var got []string
	for _, x := range p.Results {
		got = append(got, fmt.Sprintf("%s/%d/%d", x.Controller, x.NSID, x.Pollers))
		if x.Reads != 0 {
			t.Errorf("randwrite read: %+v", x)
		}
	}
	want := []string{r.addrs[0] + "/1/2", r.addrs[1] + "/1/2", r.addrs[1] + "/2/2"}
	if !slices.Equal(got, want) || p.Pollers != 2 {
		t.Errorf("rows %v, want %v (pollers %d)", got, want, p.Pollers)
	}
	for i, f := range r.fakes {
		if f.Stats().Commands(spec.IOWrite) == 0 {
			t.Errorf("controller %d saw no write", i)
		}
	}
}

// TestPerfNoAllocs: the measuring loop allocates nothing per I/O.
func TestPerfNoAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("timed")
	}
	r := newPerfRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 15}}})
	for _, verify := range []bool{false, true} {
		t.Run(fmt.Sprintf("verify=%v", verify), func(t *testing.T) {
			ctrls, closeAll, err := perfOpen(r.a, r.addrs, &nvme.Options{IOQueues: 1, AsyncEvents: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer closeAll()
			var m0, m1 runtime.MemStats
			cfg := &perfConfig{
				addrs: r.addrs, qd: 16, ioSize: 4096, wl: perfWorkloads[5], readPct: 50, verify: verify,
				dur: 400 * time.Millisecond, cpus: []int{0},
				onMeasure:    func() { runtime.ReadMemStats(&m0) },
				onMeasureEnd: func() { runtime.ReadMemStats(&m1) },
			}
			rep := execPerf(t, cfg, ctrls)
			ios := rep.Total.IOs
			mallocs := m1.Mallocs - m0.Mallocs
			t.Logf("%d I/Os, %d mallocs in the process while measuring", ios, mallocs)
			// A few fixed allocations (timers, a Stats snapshot); one
			// per I/O would be thousands, and at least one per I/O on a
			// host so loaded that the run made only a few dozen (80
			// seen at load 5, against the 200 this asked for).
			if ios < 40 || mallocs > 32 || mallocs > ios/2 {
				t.Errorf("%d mallocs for %d I/Os: the measuring loop allocates", mallocs, ios)
			}
			if rep.Verify.Mismatches != 0 || (verify && rep.Verify.Checked == 0) {
				t.Errorf("verify %+v", rep.Verify)
			}
		})
	}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago (listen on port 0, close).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// perfScrape runs perf -o json with args and --metrics-addr on a free
// loopback port through runPerf in a goroutine, scrapes /metrics (parsed
// and linted by scrape) during the run until the read command counter is
// above 0, then again after wait, and checks the second count against the
// first (not less) and perf's report: at most the reads perf counted plus
// what can be in flight (inflight: pollers x namespaces x QD). It returns
// the report and the second count.
func perfScrape(t *testing.T, runPerf func(args ...string) (int, string, string), inflight uint64, wait time.Duration, args ...string) (*perfjson.Report, float64) {
	t.Helper()
	addr := freeAddr(t)
	base := "http://" + addr
	type result struct {
		code      int
		out, errs string
	}
	res := make(chan result, 1)
	go func() {
		code, out, errs := runPerf(append(append([]string{"-o", "json", "perf"}, args...), "--metrics-addr", addr)...)
		res <- result{code, out, errs}
	}()
	var x *result
	ended := func() bool {
		if x != nil {
			return true
		}
		select {
		case r := <-res:
			x = &r
			return true
		default:
			return false
		}
	}
	scraped := 0.0
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no read counted on %s/metrics in 60 s", base)
		}
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			if ended() {
				t.Fatalf("perf ended before it was scraped: exit %d, stderr %q", x.code, x.errs)
			}
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/healthz: %d", resp.StatusCode)
		}
		if scraped = value(scrape(t, base), "gonvme_queue_commands_total", "op", "read"); scraped > 0 {
			break
		}
	}
	time.Sleep(wait)
	first := scraped
	mfs := scrape(t, base)
	if ended() {
		t.Fatalf("perf ended within %v of its first reads: exit %d, stderr %q", wait, x.code, x.errs)
	}
	scraped = value(mfs, "gonvme_queue_commands_total", "op", "read")
	if b := value(mfs, "gonvme_queue_bytes_total", "op", "read"); scraped < first || b < scraped*512 {
		t.Errorf("reads scraped %v then %v, %v bytes", first, scraped, b)
	}
	if !ended() {
		r := <-res
		x = &r
	}
	if x.code != exitOK || !strings.Contains(x.errs, "serving /metrics and /healthz on http://"+addr) {
		t.Fatalf("perf --metrics-addr: exit %d, stderr %q", x.code, x.errs)
	}
	p := decodePerf(t, x.out)
	if scraped > float64(p.Total.Reads+inflight) {
		t.Errorf("scraped %v reads during the run, perf counted %d (+ %d in flight)", scraped, p.Total.Reads, inflight)
	}
	if resp, err := http.Get(base + "/metrics"); err == nil {
		resp.Body.Close()
		t.Errorf("%s still serves after the run", base)
	}
	return p, scraped
}

// TestPerfMetricsAddr: --metrics-addr serves the pollers' counters during
// the run and stops with it; a port in use is a usage error.
func TestPerfMetricsAddr(t *testing.T) {
	r := newPerfRig(t, nvmetest.Config{})
	p, scraped := perfScrape(t, r.run, 8, time.Second, r.addrs[0], "-q", "8", "-w", "randread", "-t", "4") // long enough that a loaded machine still scrapes mid-run
	t.Logf("scraped %.0f reads during the run; perf: %d reads, %.0f IOPS", scraped, p.Total.Reads, p.Total.IOPS)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, errs := r.run("perf", r.addrs[0], "-t", "0.1", "--metrics-addr", ln.Addr().String())
	if code != exitUsage || !strings.Contains(errs, "--metrics-addr "+ln.Addr().String()) {
		t.Errorf("port in use: exit %d, stderr %q; want %d", code, errs, exitUsage)
	}
}

// execPerf runs perf's workload in process with cfg on ctrls (the steps
// of perfMain after the flags and the opens) and returns the report.
func execPerf(t *testing.T, cfg *perfConfig, ctrls []*nvme.Controller) *perfReport {
	t.Helper()
	targets, err := perfTargets(cfg, ctrls)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := perfExec(context.Background(), cfg, targets, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}
