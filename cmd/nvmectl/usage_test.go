package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spf13/cobra"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// usageCases lists, for every verb, command lines whose flags are wrong
// in a way nvmectl can tell without the device. Each must exit 1 (usage:
// "nothing was sent to the device") with the message fragment given, and
// open, bind or release no controller. TestUsageErrorsOpenNothing fails
// when a verb is missing here, so a new verb comes with its cases.
var usageCases = map[string][]struct {
	args []string
	msg  string
}{
	"list":   {{[]string{"list", "extra"}, "unknown command"}, {[]string{"list", "-o", "xml"}, "output format"}},
	"status": {{[]string{"status", "extra"}, "unknown command"}},
	"setup": {
		{[]string{"setup", "--hugemem", "-1"}, "--hugemem -1"},
		{[]string{"setup", "--allow", "nvme0"}, "not a PCI address"},
		{[]string{"setup", "--deny", "0000:00:20.0"}, "device 0x20 is out of range"},
		{[]string{"setup", "0000:00:09.0"}, "no NVMe controller at 0000:00:09.0"},
		{[]string{"setup", "--hugemem", "64", "--hugenode", "one"}, "--hugenode"},
		{[]string{"setup", "--allow", tcpAddr}, "setup and reset bind PCI functions"},
		{[]string{"setup", tcpAddr}, "reached over NVMe/TCP"},
	},
	"reset": {
		{[]string{"reset", "--allow", "00:04.8"}, "function 0x8 is out of range"},
		{[]string{"reset", "0000:00:09.0"}, "no NVMe controller"},
		{[]string{"reset", "--deny", "x"}, "not a PCI address"},
	},
	"id-ctrl": {
		{[]string{"id-ctrl"}, "accepts 1 arg"},
		{[]string{"id-ctrl", "nvme0"}, "not a PCI address"},
		{[]string{"id-ctrl", "0000:00:20.0"}, "device 0x20 is out of range"},
		{[]string{"id-ctrl", "0000:00:09.0"}, "no NVMe controller at 0000:00:09.0"},
		{[]string{"id-ctrl", fakeAddr, "-o", "4096"}, "output format"},
		{[]string{"id-ctrl", "tcp://127.0.0.1:4420"}, "no subsystem NQN"},
		{[]string{"id-ctrl", "rdma://127.0.0.1/nqn.x"}, `transport "rdma" is not supported`},
		{[]string{"id-ctrl", tcpAddr, "--nr-io-queues", "-1"}, "--nr-io-queues -1"},
		{[]string{"id-ctrl", tcpAddr, "--reconnect-delay", "0"}, "--reconnect-delay 0"},
		{[]string{"id-ctrl", tcpAddr, "--ctrl-loss-tmo", "-2"}, "--ctrl-loss-tmo -2"},
		{[]string{"id-ctrl", tcpAddr, "--hdr-digest=maybe"}, "invalid argument"},
		{[]string{"id-ctrl", tcpAddr, "--hostid", "6f6e766d-6567-4f6e-8000-00000000000g"}, "not a UUID"},
	},
	"id-ns": {
		{[]string{"id-ns", tcpAddr, "--queue-size", "8"}, "--queue-size 8: want 16 to 1024"},
		{[]string{"id-ns", fakeAddr, "--hdr-digest"}, "--hdr-digest: only for NVMe/TCP controllers"},
		{[]string{"id-ns", fakeAddr, "-n", "0"}, "namespace-id 0"}, {[]string{"id-ns", fakeAddr, "-n", "0xffffffff"}, "0xffffffff"}},
	"list-ns":     {{[]string{"list-ns", fakeAddr, "-x"}, "unknown shorthand"}},
	"ns-descs":    {{[]string{"ns-descs", fakeAddr, "-n", "0"}, "namespace-id 0"}},
	"smart-log":   {{[]string{"smart-log", "1:2:3:4"}, "not a PCI address"}, {[]string{"smart-log", fakeAddr, "-n", "0"}, "namespace-id 0"}},
	"error-log":   {{[]string{"error-log", fakeAddr, "-e", "-1"}, "--log-entries -1"}, {[]string{"error-log", fakeAddr, "-e", "999"}, "--log-entries 999"}},
	"fw-log":      {{[]string{"fw-log", "zz:00.0"}, "not a PCI address"}},
	"effects-log": {{[]string{"effects-log"}, "accepts 1 arg"}},
	"get-feature": {
		{[]string{"get-feature", fakeAddr, "-f", "6", "--sel", "4"}, "--sel 4"},
		{[]string{"get-feature", fakeAddr, "-f", "6", "-l", "5000"}, "--data-len 5000"},
		{[]string{"get-feature", fakeAddr, "-f", "0x100"}, "invalid argument"},
		{[]string{"get-feature", fakeAddr, "-f", "0"}, "feature 0 is reserved"},
		{[]string{"get-feature", fakeAddr, "-l", "16"}, "--data-len needs -f"},
	},
	"set-feature": {
		{[]string{"set-feature", fakeAddr, "-f", "6"}, "-v/--value are required"},
		{[]string{"set-feature", fakeAddr, "-v", "0"}, "-f/--feature-id"},
		{[]string{"set-feature", fakeAddr, "-f", "7", "-v", "0"}, "Number of Queues"},
	},
	"show-regs": {{[]string{"show-regs", fakeAddr, "extra"}, "accepts 1 arg"}, {[]string{"show-regs", tcpAddr}, "needs --after-init"}},
	"format": {
		{[]string{"format", fakeAddr}, "-n/--namespace-id is required"},
		{[]string{"format", fakeAddr, "-n", "1"}, "--force"},
		{[]string{"format", fakeAddr, "-n", "0", "--force"}, "namespace-id 0"},
		{[]string{"format", fakeAddr, "-n", "1", "--ses", "3", "--force"}, "--ses 3"},
		{[]string{"format", fakeAddr, "-n", "1", "-l", "64", "--force"}, "--lbaf 64"},
	},
	"read": {
		{[]string{"read", fakeAddr, "-z", "0"}, "--data-size 0"},
		{[]string{"read", fakeAddr, "-z", "1000"}, "--data-size 1000"},
		{[]string{"read", fakeAddr, "-c", "3", "-z", "1024"}, "disagree"},
		{[]string{"read", fakeAddr, "-c", "1", "-z", "1536"}, "disagree"},
		{[]string{"read", fakeAddr, "-n", "0"}, "namespace-id 0"},
		{[]string{"read", fakeAddr, "-d", "/nonexistent/dir/out"}, "data file"},
	},
	"write": {
		{[]string{"write", fakeAddr, "-d", "/nonexistent"}, "data file"},
		{[]string{"write", fakeAddr, "-z", "0"}, "--data-size 0"},
		{[]string{"write", fakeAddr, "-c", "0", "-z", "4097"}, "--data-size 4097"},
		{[]string{"write", fakeAddr, "-c", "2", "-z", "4096"}, "disagree"},
	},
	"compare": {
		{[]string{"compare", fakeAddr, "-d", "/nonexistent"}, "data file"},
		{[]string{"compare", fakeAddr, "-c", "1", "-z", "512"}, "disagree"},
	},
	"write-zeroes": {{[]string{"write-zeroes", fakeAddr, "-n", "0"}, "namespace-id 0"}, {[]string{"write-zeroes", fakeAddr, "-z", "512"}, "unknown shorthand flag: 'z'"}},
	"verify":       {{[]string{"verify", fakeAddr, "-n", "0xffffffff"}, "0xffffffff"}},
	"flush":        {{[]string{"flush", fakeAddr, "-n", "0"}, "namespace-id 0"}},
	"dsm": {
		{[]string{"dsm", fakeAddr, "--slbs", "0", "--blocks", "1"}, "--ad"},
		{[]string{"dsm", fakeAddr, "--ad", "-s", "0,8", "-b", "1"}, "same number of entries"},
		{[]string{"dsm", fakeAddr, "--ad", "-s", "x", "-b", "1"}, "is not a number"},
		{[]string{"dsm", fakeAddr, "--ad", "-s", "0", "-b", "0"}, "range 0: 0 blocks"},
		{[]string{"dsm", fakeAddr, "--ad", "-s", "0", "-b", "65537"}, "65537 blocks"},
	},
	"get-log": {
		{[]string{"get-log", fakeAddr, "-i", "2"}, "-l/--log-len are required"},
		{[]string{"get-log", fakeAddr, "-i", "2", "-l", "510"}, "--log-len 510"},
		{[]string{"get-log", fakeAddr, "-i", "2", "-l", "512", "-L", "2"}, "--lpo 2"},
		{[]string{"get-log", fakeAddr, "-i", "2", "-l", "512", "-s", "200"}, "--lsp 200"},
		{[]string{"get-log", fakeAddr, "-i", "2", "-l", "512", "-b", "-o", "json"}, "exclude each other"},
	},
	"create-ns": {
		{[]string{"create-ns", fakeAddr, "-s", "100"}, "--ncap are required"},
		{[]string{"create-ns", fakeAddr, "-s", "100", "-c", "200"}, "want 0 < ncap <= nsze"},
		{[]string{"create-ns", fakeAddr, "-s", "100", "-c", "100", "-f", "1", "-b", "4096"}, "not both"},
		{[]string{"create-ns", fakeAddr, "-s", "100", "-c", "100", "-b", "1000"}, "--block-size 1000"},
		{[]string{"create-ns", fakeAddr, "-s", "100", "-c", "100", "-m", "2"}, "--nmic 2"},
	},
	"delete-ns": {{[]string{"delete-ns", fakeAddr}, "-n/--namespace-id is required"}, {[]string{"delete-ns", fakeAddr, "-n", "0"}, "namespace-id 0"}},
	"attach-ns": {{[]string{"attach-ns", fakeAddr}, "-n/--namespace-id is required"}, {[]string{"attach-ns", fakeAddr, "-n", "2", "-c", "x"}, "not a number"}},
	"detach-ns": {{[]string{"detach-ns", fakeAddr, "-n", "0xffffffff"}, "0xffffffff"}, {[]string{"detach-ns", fakeAddr, "-n", "2", "-c", "70000"}, "not a number"}},
	"admin-passthru": {
		{[]string{"admin-passthru", fakeAddr}, "-O/--opcode is required"},
		{[]string{"admin-passthru", fakeAddr, "-O", "1"}, "driver's own command"},
		{[]string{"admin-passthru", fakeAddr, "-O", "0x0c"}, "driver's own command"},
		{[]string{"admin-passthru", fakeAddr, "-O", "9", "--cdw10", "7"}, "Number of Queues"},
		{[]string{"admin-passthru", fakeAddr, "-O", "0x80", "-n", "1"}, "--dangerous"},
		{[]string{"admin-passthru", fakeAddr, "-O", "0x84"}, "--dangerous"},
		{[]string{"admin-passthru", fakeAddr, "-O", "6", "-f", "1"}, "FUSE and PSDT"},
		{[]string{"admin-passthru", fakeAddr, "-O", "6", "-l", "8192"}, "--data-len 8192"},
		{[]string{"admin-passthru", fakeAddr, "-O", "6", "-r", "-w", "-l", "16"}, "exclude each other"},
		{[]string{"admin-passthru", fakeAddr, "-O", "6", "-w", "-l", "16", "-i", "/nonexistent"}, "data file"},
	},
	"io-passthru": {
		{[]string{"io-passthru", fakeAddr}, "-O/--opcode is required"},
		{[]string{"io-passthru", fakeAddr, "-O", "2", "-f", "0x40"}, "FUSE and PSDT"},
		{[]string{"io-passthru", fakeAddr, "-O", "0x11"}, "--dangerous"},
		{[]string{"io-passthru", fakeAddr, "-O", "2", "-n", "0"}, "namespace-id 0"},
		{[]string{"io-passthru", fakeAddr, "-O", "2", "-r"}, "need --data-len"},
	},
	"write-uncor": {{[]string{"write-uncor", fakeAddr, "-n", "0"}, "namespace-id 0"}},
	"fw-download": {
		{[]string{"fw-download", fakeAddr}, "-f/--fw is required"},
		{[]string{"fw-download", fakeAddr, "-f", "/nonexistent"}, "no such file"},
		{[]string{"fw-download", fakeAddr, "-f", "/dev/null", "--xfer", "6"}, "multiples of 4"},
	},
	"fw-commit":        {{[]string{"fw-commit", fakeAddr}, "-a/--action is required"}, {[]string{"fw-commit", fakeAddr, "-a", "4"}, "--action 4"}, {[]string{"fw-commit", fakeAddr, "-a", "1", "-s", "8"}, "--slot 8"}},
	"device-self-test": {{[]string{"device-self-test", fakeAddr}, "-s/--self-test-code is required"}, {[]string{"device-self-test", fakeAddr, "-s", "3"}, "--self-test-code 0x3"}},
	"self-test-log":    {{[]string{"self-test-log", fakeAddr, "-e", "21"}, "--dst-entries 21"}},
	"sanitize": {
		{[]string{"sanitize", fakeAddr}, "-a/--sanact is required"},
		{[]string{"sanitize", fakeAddr, "-a", "2"}, "--force"},
		{[]string{"sanitize", fakeAddr, "-a", "5", "--force"}, "--sanact 5"},
		{[]string{"sanitize", fakeAddr, "-a", "2", "-n", "3", "--force"}, "go with --sanact 3"},
		{[]string{"sanitize", fakeAddr, "-a", "3", "-n", "17", "--force"}, "--owpass 17"},
	},
	"sanitize-log":          {{[]string{"sanitize-log"}, "accepts 1 arg"}},
	"man":                   {{[]string{"man"}, "accepts 1 arg"}, {[]string{"man", "/tmp/x", "--section", ""}, "--section must not be empty"}},
	"completion bash":       {{[]string{"completion", "bash", "extra"}, "unknown command"}},
	"completion zsh":        {{[]string{"completion", "zsh", "--bogus"}, "unknown flag"}},
	"completion fish":       {{[]string{"completion", "fish", "x"}, "unknown command"}},
	"completion powershell": {{[]string{"completion", "powershell", "x"}, "unknown command"}},
	"perf": {
		{[]string{"perf"}, "requires at least 1 arg"},
		{[]string{"perf", fakeAddr, fakeAddr}, "named twice"},
		{[]string{"perf", "nvme0"}, "not a PCI address"},
		{[]string{"perf", fakeAddr, "-q", "0"}, "--queue-depth 0"},
		{[]string{"perf", fakeAddr, "-s", "100"}, "--io-size 100"},
		{[]string{"perf", fakeAddr, "-w", "bogus"}, "--workload"},
		{[]string{"perf", fakeAddr, "-w", "rw"}, "needs --rwmixread"},
		{[]string{"perf", fakeAddr, "-w", "read", "-M", "50"}, "applies to rw and randrw"},
		{[]string{"perf", fakeAddr, "-w", "randrw", "-M", "101"}, "--rwmixread 101"},
		{[]string{"perf", fakeAddr, "-t", "0"}, "--time 0"},
		{[]string{"perf", fakeAddr, "--warmup", "-1"}, "--warmup -1"},
		{[]string{"perf", fakeAddr, "-c", "zz"}, "--cores zz"},
		{[]string{"perf", fakeAddr, "--qpairs-per-ns", "0"}, "--qpairs-per-ns 0"},
		{[]string{"perf", fakeAddr, "--verify", "-w", "write"}, "--verify"},
		{[]string{"perf", fakeAddr, "--metrics-addr", "127.0.0.1:99999"}, "--metrics-addr"},
		{[]string{"perf", fakeAddr, "-o", "4096"}, "-s/--io-size"},
		{[]string{"perf", tcpAddr, "tcp://127.0.0.1/" + tcpNQN}, "named twice"},
		{[]string{"perf", tcpAddr, "-c", "0x3", "--nr-io-queues", "1"}, "needs 2 I/O queues"},
	},
	"serve": {
		{[]string{"serve"}, "requires at least 1 arg"},
		{[]string{"serve", fakeAddr, "--listen", "nowhere"}, "--listen"},
		{[]string{"serve", fakeAddr, "--pollers", "-1"}, "--pollers"},
		{[]string{"serve", "0000:00:09.0"}, "no NVMe controller"},
		{[]string{"serve", "tcp://h/nqn.x", "--queue-size", "2000"}, "--queue-size 2000"},
	},
	"discover": {
		{[]string{"discover"}, "accepts 1 arg"},
		{[]string{"discover", "127.0.0.1"}, "no tcp:// in front"},
		{[]string{"discover", "tcp://[::1"}, "no ]"},
		{[]string{"discover", "tcp://::1"}, "IPv6 address goes in brackets"},
		{[]string{"discover", "tcp://127.0.0.1:99999"}, `port "99999"`},
		{[]string{"discover", "tcp://127.0.0.1", "--hostnqn", "host1"}, `--hostnqn: "host1" does not start with "nqn."`},
		{[]string{"discover", "tcp://127.0.0.1", "--hostid", "1234"}, "--hostid: \"1234\" is not a UUID"},
		{[]string{"discover", "tcp://127.0.0.1", "--keep-alive-tmo", "0"}, "--keep-alive-tmo 0"},
	},
	"trace": {
		{[]string{"trace"}, "exactly one of"},
		{[]string{"trace", "--pid", "1", "--kernel"}, "exactly one of"},
		{[]string{"trace", "--kernel", "--interval", "0s"}, "--interval"},
	},
}

// countingRig is a fake controller whose every way in is counted: opening
// it (the verbs, perf, serve), binding and releasing it.
type countingRig struct {
	*fakeRig
	opens, binds, releases atomic.Int64
}

func newCountingRig(t *testing.T) *countingRig {
	r := &countingRig{fakeRig: newFakeRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}})}
	open := r.a.open
	r.a.open = func(addr string) (*nvme.Controller, error) {
		r.opens.Add(1)
		return open(addr)
	}
	r.a.bind = func(addr string, _ ...vfio.BindOption) (string, error) { r.binds.Add(1); return "nvme", nil }
	r.a.release = func(addr, driver string) error { r.releases.Add(1); return nil }
	r.a.connect = func(tcp.Address, *tcp.Options) (*nvme.Controller, error) {
		r.opens.Add(1)
		return nil, errors.New("the usage test connects nowhere")
	}
	r.a.discover = func(tcp.Address, *tcp.Options) (fabrics.DiscoveryLog, error) {
		r.opens.Add(1)
		return fabrics.DiscoveryLog{}, errors.New("the usage test discovers nothing")
	}
	counted := func(_ app, addrs []string, opts *nvme.Options) ([]*nvme.Controller, func() error, error) {
		r.opens.Add(1)
		c, err := open(addrs[0])
		if err != nil {
			return nil, nil, err
		}
		return []*nvme.Controller{c}, c.Close, nil
	}
	oldPerf, oldServe := perfOpen, serveOpen
	perfOpen, serveOpen = counted, counted
	t.Cleanup(func() { perfOpen, serveOpen = oldPerf, oldServe })
	return r
}

// verbs returns the path of every runnable command under root ("id-ctrl",
// "completion bash"), leaving out cobra's help.
func verbs(root *cobra.Command) []string {
	var out []string
	var walk func(c *cobra.Command, prefix string)
	walk = func(c *cobra.Command, prefix string) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" {
				continue
			}
			name := strings.TrimSpace(prefix + " " + sub.Name())
			if sub.Runnable() {
				out = append(out, name)
			}
			walk(sub, name)
		}
	}
	walk(root, "")
	return out
}

func TestUsageErrorsOpenNothing(t *testing.T) {
	r := newCountingRig(t)
	// Make sure the rig counts: one good command opens once.
	r.ok("id-ctrl", fakeAddr)
	if n := r.opens.Load(); n != 1 {
		t.Fatalf("id-ctrl opened the fake %d times, want 1: the counter is broken", n)
	}
	r.opens.Store(0)
	for _, v := range verbs(newRoot(app{})) {
		if len(usageCases[v]) == 0 {
			t.Errorf("verb %q has no usage cases: add its bad flag combinations to usageCases", v)
		}
	}
	for verb, cases := range usageCases {
		for _, tc := range cases {
			code, _, errs := r.run(tc.args...)
			if code != exitUsage || !strings.Contains(errs, tc.msg) {
				t.Errorf("%s: nvmectl %q: exit %d, stderr %q; want exit 1 and %q", verb, tc.args, code, errs, tc.msg)
			}
			if o, b, rl := r.opens.Load(), r.binds.Load(), r.releases.Load(); o+b+rl != 0 {
				t.Errorf("%s: nvmectl %q: %d opens, %d binds, %d releases before refusing (want none)", verb, tc.args, o, b, rl)
			}
			r.opens.Store(0)
			r.binds.Store(0)
			r.releases.Store(0)
		}
	}
}

// TestShortRegularFileSendsNothing: a -d file shorter than the transfer is
// refused before the first block is written.
func TestShortRegularFileSendsNothing(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}})
	short := filepath.Join(t.TempDir(), "short")
	writeFile(t, short, make([]byte, 1000))
	code, _, errs := r.run("write", fakeAddr, "-c", "3", "-d", short)
	if code != exitUsage || !strings.Contains(errs, "holds 1000 bytes, 2048 needed") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
func TestParseAddr(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"0000:01:00.0", "0000:01:00.0", ""},
		{"01:00.0", "0000:01:00.0", ""}, // lspci without -D
		{"0000:0A:1f.7", "0000:0a:1f.7", ""},
		{"10000:e1:00.0", "10000:e1:00.0", ""}, // VMD domain
		{" 1:2.3 ", "0000:01:02.3", ""},
		{"0000:00:20.0", "", "device 0x20 is out of range"},
		{"0000:00:04.8", "", "function 0x8 is out of range"},
		{"100000:00:04.0", "", "domain"},
		{"0000:100:04.0", "", "bus"},
		{"nvme0", "", "colons"},
		{"0000:00:04", "", "no .function"},
		{"0000:g0:04.0", "", "not hex"},
	} {
		got, err := parseAddr(tc.in)
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("parseAddr(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("parseAddr(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.err)
		}
	}
}
