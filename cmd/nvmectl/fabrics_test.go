package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp"
)

// Host tests of nvmectl as an NVMe/TCP host: app.connect brings up the
// in-process controller, so every verb runs through the tcp:// branch
// without a network; app.discover returns a log made here.

const (
	tcpNQN  = "nqn.2024-01.io.gonvme:nvmet"
	tcpAddr = "tcp://127.0.0.1:4420/" + tcpNQN
)

// tcpRig is a fakeRig whose controller is reached as tcpAddr; it records
// what each connect asked for.
type tcpRig struct {
	*fakeRig
	addrs []tcp.Address
	opts  []tcp.Options
	ctrl  []nvme.Options
}

func newTCPRig(t *testing.T) *tcpRig {
	r := &tcpRig{fakeRig: newFakeRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}})}
	mem, err := dma.NewAllocator(r.fake.Mapper())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := mem.Close(); err != nil {
			t.Errorf("dma memory leaked: %v", err)
		}
	})
	r.a.open = func(string) (*nvme.Controller, error) {
		t.Error("a tcp:// controller was opened as a PCI one")
		return nil, os.ErrInvalid
	}
	r.a.connect = func(a tcp.Address, o *tcp.Options) (*nvme.Controller, error) {
		r.addrs = append(r.addrs, a)
		r.opts = append(r.opts, *o)
		if o.Controller == nil {
			t.Fatal("connect without controller options")
		}
		r.ctrl = append(r.ctrl, *o.Controller)
		return nvme.Open(keepBus{r.fake}, mem, o.Controller)
	}
	return r
}

func TestTCPVerbsConnect(t *testing.T) {
	r := newTCPRig(t)
	id := r.jsonOf("id-ctrl", tcpAddr)
	if sn, _ := id["sn"].(string); strings.TrimSpace(sn) == "" {
		t.Errorf("id-ctrl over tcp: no serial in %v", id)
	}
	want := tcp.Address{Host: "127.0.0.1", Port: 4420, NQN: tcpNQN}
	if len(r.addrs) != 1 || r.addrs[0] != want {
		t.Fatalf("connected to %+v, want %+v once", r.addrs, want)
	}
	// A verb's one I/O queue, no asynchronous events, nvme-cli's defaults
	// for the rest (zero values).
	if o := r.opts[0]; o.NrIOQueues != 1 || o.QueueSize != 0 || o.KeepAliveTimeout != 0 || o.CtrlLossTimeout != 0 || o.HeaderDigest || o.DataDigest {
		t.Errorf("options %+v, want NrIOQueues 1 and the rest zero", o)
	}
	if c := r.ctrl[0]; c.IOQueues != 1 || c.AsyncEvents != -1 {
		t.Errorf("controller options %+v, want IOQueues 1, AsyncEvents -1", c)
	}

	// Data written through the tcp:// name reads back through it, and the
	// default port and IPv6-less host normalize to the same controller.
	data := strings.Repeat("gonvme over tcp!", 64) // 1024 bytes, 2 blocks
	in := filepath.Join(t.TempDir(), "in")
	writeFile(t, in, []byte(data))
	r.ok("write", tcpAddr, "-s", "8", "-c", "1", "-d", in)
	out := r.ok("read", "tcp://127.0.0.1/"+tcpNQN, "-s", "8", "-c", "1")
	if out != data {
		t.Errorf("read back %q..., want %q...", out[:min(32, len(out))], data[:32])
	}
	r.ok("flush", tcpAddr)
	r.ok("compare", tcpAddr, "-s", "8", "-c", "1", "-d", in)
	if ns := r.ok("list-ns", tcpAddr); !strings.Contains(ns, "0x1") {
		t.Errorf("list-ns over tcp: %q", ns)
	}
	r.ok("get-feature", tcpAddr, "-f", "7")
	r.ok("smart-log", tcpAddr)
	if n := len(r.addrs); n != 8 {
		t.Errorf("%d connects for 8 verbs", n)
	}
}

func TestTCPFlags(t *testing.T) {
	r := newTCPRig(t)
	r.ok("id-ns", tcpAddr, "-n", "1",
		"--hostnqn", "nqn.2014-08.org.nvmexpress:uuid:6f6e766d-6567-4f6e-8000-000000000009",
		"--hostid", "6F6E766D-6567-4f6e-8000-000000000009",
		"--nr-io-queues", "4", "--queue-size", "64", "--keep-alive-tmo", "7",
		"--reconnect-delay", "2", "--ctrl-loss-tmo", "30", "--hdr-digest", "--data-digest")
	o := r.opts[0]
	wantID := [16]byte{0x6f, 0x6e, 0x76, 0x6d, 0x65, 0x67, 0x4f, 0x6e, 0x80, 0, 0, 0, 0, 0, 0, 0x09}
	if o.HostNQN != "nqn.2014-08.org.nvmexpress:uuid:6f6e766d-6567-4f6e-8000-000000000009" || o.HostID != wantID ||
		o.NrIOQueues != 4 || o.QueueSize != 64 || o.KeepAliveTimeout != 7*time.Second ||
		o.ReconnectDelay != 2*time.Second || o.CtrlLossTimeout != 30*time.Second || !o.HeaderDigest || !o.DataDigest {
		t.Errorf("options %+v", o)
	}
	if r.ctrl[0].IOQueues != 4 {
		t.Errorf("--nr-io-queues 4 gave the controller %d I/O queues", r.ctrl[0].IOQueues)
	}
	// nvme-cli's ctrl-loss-tmo: -1 forever, 0 at once.
	r.ok("id-ctrl", tcpAddr, "--ctrl-loss-tmo", "-1")
	r.ok("id-ctrl", tcpAddr, "--ctrl-loss-tmo", "0")
	if a, b := r.opts[1].CtrlLossTimeout, r.opts[2].CtrlLossTimeout; a >= 0 || b <= 0 || b > time.Millisecond {
		t.Errorf("--ctrl-loss-tmo -1 gave %v, 0 gave %v; want negative, and a positive instant", a, b)
	}
}

// TestTCPHostIdentityFiles: without --hostnqn and --hostid the host is who
// nvme-cli would be: /etc/nvme/hostnqn and hostid.
func TestTCPHostIdentityFiles(t *testing.T) {
	r := newTCPRig(t)
	etc := filepath.Join(r.a.root, "etc", "nvme")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	const nqn = "nqn.2014-08.org.nvmexpress:uuid:6f6e766d-6567-4f6e-8000-000000000001"
	writeFile(t, filepath.Join(etc, "hostnqn"), []byte(nqn+"\n"))
	writeFile(t, filepath.Join(etc, "hostid"), []byte("6f6e766d-6567-4f6e-8000-000000000001\n"))
	r.ok("id-ctrl", tcpAddr)
	if o := r.opts[0]; o.HostNQN != nqn || o.HostID[15] != 1 || o.HostID[0] != 0x6f {
		t.Errorf("host %q %x, want the files' %s", o.HostNQN, o.HostID, nqn)
	}
	// --hostnqn wins over the file.
	r.ok("id-ctrl", tcpAddr, "--hostnqn", "nqn.2024-01.io.gonvme:host2")
	if o := r.opts[1]; o.HostNQN != "nqn.2024-01.io.gonvme:host2" {
		t.Errorf("--hostnqn gave %q", o.HostNQN)
	}
	// A broken file is named.
	writeFile(t, filepath.Join(etc, "hostid"), []byte("garbage\n"))
	code, _, errs := r.run("id-ctrl", tcpAddr)
	if code != exitUsage || !strings.Contains(errs, "etc/nvme/hostid") || !strings.Contains(errs, "not a UUID") {
		t.Errorf("bad hostid file: exit %d, %q", code, errs)
	}
}

// TestTCPPerfQueues: perf over tcp:// asks for one I/O queue per poller.
func TestTCPPerfQueues(t *testing.T) {
	r := newTCPRig(t)
	oldPerf := perfOpen
	t.Cleanup(func() { perfOpen = oldPerf })
	perfOpen = openSystem // the real one: it branches to app.connect for tcp://
	out := r.ok("perf", tcpAddr, "-q", "4", "-t", "0.2", "-c", "0x1", "-s", "4096")
	// The controller column fits the tcp:// name: Read% and the row's
	// 100.0 end in the same column.
	var head, row string
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "Controller "):
			head = l
		case strings.HasPrefix(l, tcpAddr+" "):
			row = l
		}
	}
	if head == "" || row == "" || strings.Index(head, "Read%") != strings.Index(row, "100.0") {
		t.Errorf("perf's table does not line up under a tcp:// name:\n%s", out)
	}
	if len(r.ctrl) != 1 || r.ctrl[0].IOQueues != 1 || r.opts[0].NrIOQueues != 1 {
		t.Errorf("perf with one poller connected with %+v / %+v", r.ctrl, r.opts)
	}
}

// discoveryEntry makes one entry as nvmet fills it (space padding).
func discoveryEntry(subtype uint8, nqn, port string, treq uint8) fabrics.DiscoveryLogEntry {
	e := fabrics.DiscoveryLogEntry{TRType: fabrics.TRTypeTCP, AdrFam: fabrics.AdrFamIPv4, SubType: subtype, TReq: treq, PortID: 1, CNTLID: 0xffff, ASQSZ: 32}
	copy(e.TRSvcID[:], port+strings.Repeat(" ", len(e.TRSvcID)-len(port)))
	copy(e.TRAddr[:], "127.0.0.1"+strings.Repeat(" ", len(e.TRAddr)-9))
	copy(e.SubNQN[:], nqn)
	return e
}

func TestDiscover(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{})
	var asked []tcp.Address
	r.a.discover = func(a tcp.Address, o *tcp.Options) (fabrics.DiscoveryLog, error) {
		asked = append(asked, a)
		es := []fabrics.DiscoveryLogEntry{
			discoveryEntry(fabrics.SubTypeCurrentDiscovery, fabrics.DiscoveryNQN, "8009", fabrics.TReqNotSpecified|fabrics.TReqDisableSQFlowAllow),
			discoveryEntry(fabrics.SubTypeNVM, tcpNQN, "4420", fabrics.TReqNotRequired),
		}
		es[0].EFlags = fabrics.EFlagExplicitPCSD | fabrics.EFlagDupReturnInfo
		return fabrics.DiscoveryLog{GenCtr: 7, NumRec: 2, Entries: es}, nil
	}
	out := r.ok("discover", "tcp://127.0.0.1")
	// What nvme-cli 2.3 prints for the same log (its strings, from libnvme
	// 1.3), padding stripped.
	want := `
Discovery Log Number of Records 2, Generation counter 7
=====Discovery Log Entry 0======
trtype:  tcp
adrfam:  ipv4
subtype: current discovery subsystem
treq:    not specified, sq flow control disable supported
portid:  1
trsvcid: 8009
subnqn:  nqn.2014-08.org.nvmexpress.discovery
traddr:  127.0.0.1
eflags:  explicit discovery connections, duplicate discovery information
sectype: none
=====Discovery Log Entry 1======
trtype:  tcp
adrfam:  ipv4
subtype: nvme subsystem
treq:    not required
portid:  1
trsvcid: 4420
subnqn:  nqn.2024-01.io.gonvme:nvmet
traddr:  127.0.0.1
eflags:  none
sectype: none
`
	if out != want {
		t.Errorf("discover printed\n%s\nwant\n%s", out, want)
	}
	if len(asked) != 1 || asked[0] != (tcp.Address{Host: "127.0.0.1", Port: tcp.DefaultDiscoveryPort}) {
		t.Errorf("discover asked %+v, want 127.0.0.1:8009", asked)
	}
	var j struct {
		GenCtr  uint64           `json:"genctr"`
		Records []map[string]any `json:"records"`
	}
	js := r.ok("discover", "tcp://[::1]:4420", "-o", "json")
	if err := json.Unmarshal([]byte(js), &j); err != nil {
		t.Fatalf("%v in %s", err, js)
	}
	if j.GenCtr != 7 || len(j.Records) != 2 {
		t.Fatalf("json: genctr %d, %d records:\n%s", j.GenCtr, len(j.Records), js)
	}
	hasKeys(t, "discover record", j.Records[1], "trtype", "adrfam", "subtype", "treq", "portid", "trsvcid", "subnqn", "traddr", "eflags", "sectype")
	if j.Records[1]["subnqn"] != tcpNQN || j.Records[1]["trsvcid"] != "4420" || j.Records[1]["portid"] != 1.0 {
		t.Errorf("json record %v", j.Records[1])
	}
	if asked[1] != (tcp.Address{Host: "::1", Port: 4420}) {
		t.Errorf("discover tcp://[::1]:4420 asked %+v", asked[1])
	}
}

// TestTCPFlagsDocumented: the NVMe/TCP options complete in the shell and
// appear in the verbs' man pages, as every flag does.
func TestTCPFlagsDocumented(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{})
	out := r.ok("__complete", "id-ctrl", tcpAddr, "--")
	for _, f := range tcpFlagNames {
		if !strings.Contains(out, "--"+f) {
			t.Errorf("__complete id-ctrl ADDR --: no --%s in\n%s", f, out)
		}
	}
	if out := r.ok("__complete", "setup", "--"); strings.Contains(out, "--hostnqn") {
		t.Errorf("setup offers --hostnqn:\n%s", out)
	}
	dir := filepath.Join(t.TempDir(), "man8")
	r.ok("man", dir)
	for _, page := range []string{"nvmectl-discover.8", "nvmectl-perf.8", "nvmectl-read.8"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil || !strings.Contains(string(b), "--ctrl-loss-tmo") {
			t.Errorf("%s does not document --ctrl-loss-tmo: %v", page, err)
		}
	}
}
