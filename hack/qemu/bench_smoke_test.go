package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
)

// testdata/bench-smoke-console.txt is the console of a real `bench --smoke`
// boot (null profile, QEMU 7.2, fio 3.33), with the doorbell rows (gonvme
// with MMIO doorbells, the bare loop) of issue 16.
func smokeConsole(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("testdata/bench-smoke-console.txt")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

// judgeSmoke parses a console as bootBench does and judges it.
func judgeSmoke(lines []string, v verdict) error {
	res, perr := parseBenchOutput(lines)
	return smokeVerdict(smokeOptions(), v, res, perr)
}

// doctor returns lines with the first line that contains marker (and,
// when it is not empty, also contains match) rewritten by f.
func doctor(t *testing.T, lines []string, marker, match string, f func(string) string) []string {
	t.Helper()
	out := append([]string(nil), lines...)
	for i, l := range out {
		if strings.Contains(l, marker) && strings.Contains(l, match) {
			if out[i] = f(l); out[i] == l {
				t.Fatalf("doctoring %q changed nothing", l)
			}
			return out
		}
	}
	t.Fatalf("no line with %q and %q", marker, match)
	return nil
}

func TestSmokeOptions(t *testing.T) {
	o := smokeOptions()
	if o.Reps != 1 || o.Time.Seconds() != 1 || o.Warmup != 0 || len(o.Depths) != 2 || o.Depths[0] != 1 || o.Depths[1] != 32 ||
		len(o.Workloads) != 1 || len(o.QemuImg) != 0 || o.HostBench || o.runs() != 10 {
		t.Errorf("smoke options %+v, %d runs", o, o.runs())
	}
	if got := strings.Join(o.guestArgs(), " "); !strings.Contains(got, "-reps 1 -time 1 -warmup 0 -depths 1,32 -workloads randread") || !strings.HasSuffix(got, " -irq=false") {
		t.Errorf("guest args %q", got)
	}
	o, err := parseBenchFlags([]string{"--smoke"})
	if err != nil || !o.Smoke {
		t.Errorf("--smoke: %+v, %v", o, err)
	}
	if _, err := parseBenchFlags([]string{"--smoke", "--reps", "2"}); err == nil || !strings.Contains(err.Error(), "--smoke takes no other flag or argument (got --reps)") {
		t.Errorf("--smoke --reps 2: %v", err)
	}
}

// TestSmokeVerdict: the real console passes; each doctored copy fails
// with a message that names what is wrong.
func TestSmokeVerdict(t *testing.T) {
	lines := smokeConsole(t)
	pass := verdict{Pass: true}
	if err := judgeSmoke(lines, pass); err != nil {
		t.Fatalf("the real console: %v", err)
	}
	dropKey := func(key string) func(string) string {
		re := regexp.MustCompile(`"` + regexp.QuoteMeta(key) + `":[^,}]*,?`)
		return func(l string) string {
			// The last occurrence: in a perf line, the one in "total".
			locs := re.FindAllStringIndex(l, -1)
			if len(locs) == 0 {
				return l
			}
			last := locs[len(locs)-1]
			return l[:last[0]] + l[last[1]:]
		}
	}
	setKey := func(key, value string) func(string) string {
		re := regexp.MustCompile(`"` + regexp.QuoteMeta(key) + `":[^,}]*`)
		return func(l string) string { return re.ReplaceAllString(l, `"`+key+`":`+value) }
	}
	for _, tt := range []struct {
		name          string
		marker, match string
		f             func(string) string
		msg           string
	}{
		{"perf json without total p50", bench.PerfPrefix, `"queue_depth":32`, dropKey("p50"),
			`from the guest: nvmectl perf output: perf json does not match schema: missing key "total.write_latency_us.p50"`},
		{"perf json with iops renamed", bench.PerfPrefix, `"queue_depth":1,`, func(l string) string { return strings.Replace(l, `"iops"`, `"IOPS_"`, 1) },
			`unknown field "IOPS_"`},
		{"perf json with zero total iops", bench.PerfPrefix, `"queue_depth":1,`, func(l string) string {
			i := strings.Index(l, `"total"`)
			return l[:i] + strings.Replace(l[i:], `"iops":4068.187`, `"iops":0`, 1)
		}, "total: perf json does not match schema: iops is 0 with 4080 I/Os measured"},
		{"perf json of an older schema", bench.PerfPrefix, `"queue_depth":1,`, setKey("schema_version", "0"),
			"schema_version 0, want 3"},
		{"perf json line lost", bench.PerfPrefix, `"queue_depth":32`, func(string) string { return "" },
			"gonvme randread QD32: no nvmectl perf JSON on the console that decodes and matches the run"},
		{"fio sample without p50", bench.SamplePrefix, `"engine":"io_uring-poll","workload":"randread","depth":1,`, dropKey("p50"),
			"io_uring-poll randread QD1: latency p50 is 0 (a key of fio's JSON missing or renamed?)"},
		{"fio sample with zero iops", bench.SamplePrefix, `"depth":32`, setKey("iops", "0"),
			"io_uring-poll randread QD32: iops is 0 (a key of fio's JSON missing or renamed?)"},
		{"fio sample without latency", bench.SamplePrefix, `"depth":32`, func(l string) string { return l[:strings.Index(l, `,"lat_us"`)] + "}" },
			"io_uring-poll randread QD32: no latency"},
		{"gonvme sample with zero p99", bench.SamplePrefix, `"engine":"gonvme","workload":"randread","depth":1,`, setKey("p99", "0"),
			"gonvme randread QD1: latency p99 is 0 (a key of nvmectl perf's JSON missing or renamed?)"},
		{"failed run", bench.SamplePrefix, `"engine":"gonvme","workload":"randread","depth":32,`, func(l string) string {
			return l[:len(l)-1] + `,"err":"nvmectl perf output: perf json does not match schema: missing key \"total.iops\""}`
		}, `gonvme randread QD32: failed in the guest: nvmectl perf output: perf json does not match schema: missing key "total.iops"`},
		{"run missing", bench.SamplePrefix, `"engine":"io_uring-poll","workload":"randread","depth":1,`, func(string) string { return "" },
			"io_uring-poll randread QD1: 0 runs in the guest's output, want 1"},
		{"sample line cut short", bench.SamplePrefix, `"engine":"gonvme","workload":"randread","depth":1,`, func(l string) string { return l[:len(l)-20] },
			"bench sample"},
	} {
		err := judgeSmoke(doctor(t, lines, tt.marker, tt.match, tt.f), pass)
		if err == nil || !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), "bench smoke: ") {
			t.Errorf("%s: err %v\nwant it to say %q", tt.name, err, tt.msg)
		}
	}
	// The boot's own verdict counts.
	if err := judgeSmoke(lines, verdict{Reason: "no pass line"}); err == nil || !strings.Contains(err.Error(), "boot: no pass line") {
		t.Errorf("failed boot: %v", err)
	}
	if err := judgeSmoke(lines, verdict{Pass: true, ExitStatus: 1}); err == nil || !strings.Contains(err.Error(), "guestbench exited 1") {
		t.Errorf("guestbench exit 1: %v", err)
	}
}
