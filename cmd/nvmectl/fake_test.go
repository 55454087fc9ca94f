package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/mmio"
	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// These tests run every verb on the host against nvmetest's in-process
// controller, which stays alive across nvmectl runs (its storage too), as
// a real device does.

const fakeAddr = "0000:00:04.0"

// keepBus is the fake's bus without Close: the fake outlives each
// nvmectl run.
type keepBus struct{ *nvmetest.Controller }

func (keepBus) Close() error { return nil }

type fakeRig struct {
	t    *testing.T
	fake *nvmetest.Controller
	a    app
}

func newFakeRig(t *testing.T, cfg nvmetest.Config) *fakeRig {
	t.Helper()
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
	r := &fakeRig{t: t, fake: fake}
	r.a = app{
		list: func() ([]vfio.Controller, error) {
			return []vfio.Controller{{Addr: fakeAddr, Vendor: 0x1b36, Device: 0x0010, Class: vfio.ClassNVMe, Driver: "vfio-pci", Group: 3, Viable: true}}, nil
		},
		open: func(addr string) (*nvme.Controller, error) {
			return nvme.Open(keepBus{fake}, mem, &nvme.Options{IOQueues: 1, AsyncEvents: -1})
		},
		root:   t.TempDir(),
		stdin:  strings.NewReader(""),
		getenv: func(string) string { return "" },
		regs: func(addr string) (mmio.Region, func() error, error) {
			return fake.Registers(), func() error { return nil }, nil
		},
	}
	return r
}

// run runs nvmectl and returns the exit code, stdout and stderr.
func (r *fakeRig) run(args ...string) (int, string, string) {
	r.t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb, r.a)
	return code, out.String(), errb.String()
}

// ok runs nvmectl and fails the test unless it exits 0.
func (r *fakeRig) ok(args ...string) string {
	r.t.Helper()
	code, out, errs := r.run(args...)
	if code != exitOK {
		r.t.Fatalf("nvmectl %q: exit %d, stderr %q", args, code, errs)
	}
	return out
}

// jsonOf runs nvmectl -o json and decodes its output.
func (r *fakeRig) jsonOf(args ...string) map[string]any {
	r.t.Helper()
	out := r.ok(append([]string{"-o", "json"}, args...)...)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		r.t.Fatalf("nvmectl %q: %v in\n%s", args, err, out)
	}
	return m
}

func hasKeys(t *testing.T, what string, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: no key %q", what, k)
		}
	}
}

func TestFakeIdentify(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{Serial: "SER123", Namespaces: []nvmetest.NSConfig{{Blocks: 8192}, {Blocks: 1024, BlockSize: 4096}}})
	id := r.jsonOf("id-ctrl", fakeAddr)
	hasKeys(t, "id-ctrl", id, "vid", "ssvid", "sn", "mn", "fr", "rab", "ieee", "cmic", "mdts", "cntlid", "ver",
		"oacs", "acl", "aerl", "frmw", "lpa", "elpe", "npss", "wctemp", "cctemp", "tnvmcap", "unvmcap",
		"sqes", "cqes", "nn", "oncs", "vwc", "sgls", "psds")
	if id["sn"] != "SER123" || id["mn"] != "gonvme nvmetest controller" || id["nn"].(float64) < 2 {
		t.Errorf("id-ctrl sn %v mn %v nn %v", id["sn"], id["mn"], id["nn"])
	}
	if psds := id["psds"].([]any); len(psds) == 0 {
		t.Error("no power states")
	} else {
		hasKeys(t, "psd", psds[0].(map[string]any), "max_power", "entry_lat", "exit_lat", "read_tput")
	}
	text := r.ok("id-ctrl", fakeAddr, "-H")
	for _, s := range []string{"sn        : SER123", "mn        : gonvme nvmetest controller", "oncs", "Write Zeroes", "ps    0"} {
		if !strings.Contains(text, s) {
			t.Errorf("id-ctrl -H lacks %q:\n%s", s, text)
		}
	}

	ns := r.jsonOf("id-ns", fakeAddr, "-n", "2")
	hasKeys(t, "id-ns", ns, "nsze", "ncap", "nuse", "nsfeat", "nlbaf", "flbas", "nguid", "eui64", "lbafs")
	if ns["nsze"] != 1024.0 {
		t.Errorf("id-ns 2 nsze %v, want 1024", ns["nsze"])
	}
	lbafs := ns["lbafs"].([]any)
	inUse := 0
	for _, l := range lbafs {
		m := l.(map[string]any)
		hasKeys(t, "lbaf", m, "lbaf", "ms", "ds", "rp", "in_use")
		if m["in_use"] == 1.0 {
			inUse++
			if m["ds"] != 12.0 {
				t.Errorf("in-use format ds %v, want 12", m["ds"])
			}
		}
	}
	if inUse != 1 {
		t.Errorf("%d formats in use in %v", inUse, lbafs)
	}

	list := r.jsonOf("list-ns", fakeAddr)
	if got := list["nsid_list"].([]any); len(got) != 2 || got[0].(map[string]any)["nsid"] != 1.0 || got[1].(map[string]any)["nsid"] != 2.0 {
		t.Errorf("list-ns %v", got)
	}
	if out := r.ok("list-ns", fakeAddr); out != "[   0]:0x1\n[   1]:0x2\n" {
		t.Errorf("list-ns text %q", out)
	}
	d := r.jsonOf("ns-descs", fakeAddr, "-n", "1")
	eui, _, _ := nvmetest.NamespaceIDs("SER123", 1)
	if d["eui64"] == nil && d["nguid"] == nil && d["uuid"] == nil {
		t.Errorf("ns-descs %v (eui64 %x)", d, eui)
	}
}

func TestFakeLogs(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{})
	s := r.jsonOf("smart-log", fakeAddr)
	hasKeys(t, "smart-log", s, "critical_warning", "temperature", "avail_spare", "spare_thresh", "percent_used",
		"endurance_grp_critical_warning_summary", "data_units_read", "data_units_written", "host_read_commands",
		"host_write_commands", "controller_busy_time", "power_cycles", "power_on_hours", "unsafe_shutdowns",
		"media_errors", "num_err_log_entries", "warning_temp_time", "critical_comp_time")
	if out := r.ok("smart-log", fakeAddr); !strings.Contains(out, "temperature") || !strings.Contains(out, "°C") {
		t.Errorf("smart-log text:\n%s", out)
	}
	e := r.jsonOf("error-log", fakeAddr)
	if _, ok := e["errors"].([]any); !ok {
		t.Errorf("error-log %v", e)
	}
	fw := r.jsonOf("fw-log", fakeAddr)
	slot, ok := fw[fakeAddr].(map[string]any)
	if !ok {
		t.Fatalf("fw-log %v", fw)
	}
	hasKeys(t, "fw-log", slot, "Active Firmware Slot (afi)")
	ef := r.jsonOf("effects-log", fakeAddr)
	hasKeys(t, "effects-log", ef, "admin_cmd_set", "io_cmd_set")
}

func TestFakeFeaturesAndRegs(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{VWC: true})
	// Every nvmectl run brings the controller up, a controller reset: the
	// fake, like the spec, then reverts features not saved to their
	// defaults. The write cache is on by default.
	code, out, errs := r.run("set-feature", fakeAddr, "-f", "0x06", "-v", "0")
	if code != exitOK || out != "set-feature:0x06 (Volatile Write Cache), value:0x00000000, cdw12:0x00000000, save:0\n" {
		t.Errorf("set-feature: exit %d, printed %q", code, out)
	}
	if !strings.Contains(errs, "without --save") || !strings.Contains(errs, "reset") {
		t.Errorf("set-feature without --save did not warn that the next open resets it: stderr %q", errs)
	}
	g := r.jsonOf("get-feature", fakeAddr, "-f", "6")
	if g["feature_id"] != 6.0 || g["value"] != 1.0 || g["feature_name"] != "Volatile Write Cache" || g["sel"] != 0.0 {
		t.Errorf("get-feature after a reset: %v", g)
	}
	code, _, errs = r.run("set-feature", fakeAddr, "-f", "6", "-v", "0", "--save")
	if code != exitDevice || !strings.Contains(errs, "Saveable") {
		t.Errorf("set-feature --save on the fake: exit %d %q", code, errs)
	}
	if out := r.ok("get-feature", fakeAddr, "-f", "6", "-H"); !strings.Contains(out, "value:0x00000001") || !strings.Contains(out, "Enabled") {
		t.Errorf("get-feature text: %q", out)
	}
	// Without -f, every feature the controller answers, as nvme-cli.
	all := r.jsonOf("get-feature", fakeAddr)
	feats, _ := all["features"].([]any)
	ids := map[float64]bool{}
	for _, f := range feats {
		ids[f.(map[string]any)["feature_id"].(float64)] = true
	}
	if len(feats) < 5 || !ids[6] || !ids[7] || !ids[1] {
		t.Errorf("get-feature without -f: %d features %v, want at least arbitration, number of queues, write cache", len(feats), ids)
	}
	if text := r.ok("get-feature", fakeAddr, "-H"); !strings.Contains(text, "get-feature:0x06 (Volatile Write Cache), Current value:0x00000001") ||
		!strings.Contains(text, "get-feature:0x07 (Number of Queues)") {
		t.Errorf("get-feature -H without -f:\n%s", text)
	}
	code, _, errs = r.run("set-feature", fakeAddr, "-f", "7", "-v", "0")
	if code != exitUsage || !strings.Contains(errs, "Number of Queues") {
		t.Errorf("set-feature 7: exit %d %q", code, errs)
	}
	regs := r.jsonOf("show-regs", fakeAddr, "--after-init")
	hasKeys(t, "show-regs", regs, "cap", "vs", "cc", "csts", "aqa", "asq", "acq")
	if regs["vs"] != float64(0x10400) {
		t.Errorf("vs %v", regs["vs"])
	}
	if out := r.ok("show-regs", fakeAddr, "-H", "--after-init"); !strings.Contains(out, "1.4.0") || !strings.Contains(out, "rdy=true") {
		t.Errorf("show-regs -H --after-init:\n%s", out)
	}
	// As found: the last nvmectl run shut the controller down and then
	// disabled it (nvme.Controller.Close: CC.SHN, then CC.EN=0 before
	// its memory goes), and show-regs, which does not bring it up, shows
	// that instead of the ready controller --after-init shows.
	if out := r.ok("show-regs", fakeAddr, "-H"); !strings.Contains(out, "en=false") || !strings.Contains(out, "rdy=false") || !strings.Contains(out, "as found (no bring-up): disabled") {
		t.Errorf("show-regs -H as found after a shutdown:\n%s", out)
	}
}

func TestFakeIO(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}})
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	// 300 KiB: more than one 128 KiB transfer of the fake.
	data := make([]byte, 600*512)
	for i := range data {
		data[i] = byte(i*7 + i/512)
	}
	os.WriteFile(in, data, 0o644)
	r.ok("write", fakeAddr, "-s", "100", "-z", "307200", "-d", in)
	out := filepath.Join(dir, "out")
	r.ok("read", fakeAddr, "-s", "100", "-c", "599", "-d", out)
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes differ from the %d written", len(got), len(data))
	}
	// read to stdout
	if o := r.ok("read", fakeAddr, "-s", "101"); o != string(data[512:1024]) {
		t.Errorf("read to stdout: %d bytes", len(o))
	}
	r.ok("compare", fakeAddr, "-s", "100", "-z", "307200", "-d", in)
	data[1000] ^= 0xff
	os.WriteFile(in, data, 0o644)
	code, _, errs := r.run("compare", fakeAddr, "-s", "100", "-z", "307200", "-d", in)
	if code != exitDevice || !strings.Contains(errs, "Compare Failure") {
		t.Errorf("compare mismatch: exit %d, stderr %q", code, errs)
	}
	r.ok("write-zeroes", fakeAddr, "-s", "100", "-c", "1")
	if o := r.ok("read", fakeAddr, "-s", "100", "-c", "2"); o != string(make([]byte, 1024))+string(data[1024:1536]) {
		t.Error("write-zeroes: blocks 100-101 not zero or 102 changed")
	}
	r.ok("dsm", fakeAddr, "-d", "--slbs", "200,300", "--blocks", "4,4")
	if o := r.ok("read", fakeAddr, "-s", "200"); o != string(make([]byte, 512)) {
		t.Error("dsm: block 200 not zero after deallocate")
	}
	r.ok("flush", fakeAddr)
	r.ok("verify", fakeAddr, "-s", "0", "-c", "1023")
}

func TestFakeBadInput(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}})
	dir := t.TempDir()
	pattern := bytes.Repeat([]byte{0xa5}, 8*512)
	in := filepath.Join(dir, "in")
	os.WriteFile(in, pattern, 0o644)
	r.ok("write", fakeAddr, "-s", "4088", "-c", "7", "-d", in)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, make([]byte, 1000), 0o644)
	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"write", fakeAddr, "-s", "4090", "-c", "7", "-d", in}, exitUsage, "past the end of namespace 1 (4096 blocks"},
		{[]string{"write", fakeAddr, "-s", "4088", "-z", "1000", "-d", in}, exitUsage, "--data-size 1000: want a positive multiple of the block size"},
		{[]string{"write", fakeAddr, "-s", "4088", "-c", "3", "-d", short}, exitUsage, "holds 1000 bytes, 2048 needed"},
		{[]string{"write", fakeAddr, "-s", "4088", "-n", "9", "-d", in}, exitUsage, "namespace 9 is not active"},
		{[]string{"write", fakeAddr, "-s", "4088", "-c", "1", "-z", "512"}, exitUsage, "disagree"},
		{[]string{"write-zeroes", fakeAddr, "-s", "4096"}, exitUsage, "past the end"},
		{[]string{"dsm", fakeAddr, "-d", "--slbs", "4090", "--blocks", "8"}, exitUsage, "past the end"},
		{[]string{"read", fakeAddr, "-s", "5000"}, exitUsage, "past the end"},
		{[]string{"id-ns", fakeAddr, "-n", "3"}, exitUsage, "namespace 3 is not active"},
		{[]string{"id-ctrl", "0000:00:09.0"}, exitUsage, "no NVMe controller at 0000:00:09.0"},
		{[]string{"id-ctrl", "nvme0"}, exitUsage, "not a PCI address"},
		{[]string{"id-ctrl"}, exitUsage, "accepts 1 arg"},
		{[]string{"format", fakeAddr, "-n", "1"}, exitUsage, "--force"},
		{[]string{"format", fakeAddr, "-n", "1", "-l", "9", "--force"}, exitUsage, "LBA format 9 does not exist"},
	} {
		code, _, errs := r.run(tt.args...)
		if code != tt.code || !strings.Contains(errs, tt.msg) {
			t.Errorf("nvmectl %q: exit %d, stderr %q; want %d and %q", tt.args, code, errs, tt.code, tt.msg)
		}
	}
	// Nothing was written: the last 8 blocks still hold the pattern.
	if o := r.ok("read", fakeAddr, "-s", "4088", "-c", "7"); o != string(pattern) {
		t.Error("blocks 4088-4095 changed by refused commands")
	}
}

// TestShowRegsAsFound: show-regs shows a state a crashed program left
// (here CSTS.CFS) without bringing the controller up, which would clear it;
// --after-init shows the controller after nvmectl's bring-up.
func TestShowRegsAsFound(t *testing.T) {
	r := newCountingRig(t)
	r.fake.FatalStatus()
	out := r.ok("show-regs", fakeAddr, "-H")
	if !strings.Contains(out, "cfs=true") || !strings.Contains(out, "fatal (CSTS.CFS)") {
		t.Errorf("show-regs as found does not show the fatal status:\n%s", out)
	}
	if n := r.opens.Load(); n != 0 {
		t.Errorf("show-regs opened the controller %d times", n)
	}
	// The driver does not bring up a controller with CSTS.CFS set (issue
	// 13); a function reset clears it, as the kernel's does on a real one.
	if err := r.fake.Reset(); err != nil {
		t.Fatal(err)
	}
	if out := r.ok("show-regs", fakeAddr, "-H", "--after-init"); !strings.Contains(out, "cfs=false") || !strings.Contains(out, "rdy=true") {
		t.Errorf("show-regs --after-init:\n%s", out)
	}
	if n := r.opens.Load(); n != 1 {
		t.Errorf("show-regs --after-init opened the controller %d times, want 1", n)
	}
}

// TestListLeavesControllersAlone: list and status read no more than
// registers: no open, and CC, CSTS and AQA are as they were.
func TestListLeavesControllersAlone(t *testing.T) {
	r := newCountingRig(t)
	regs := r.fake.Registers()
	before := [3]uint32{regs.Read32(spec.RegCC), regs.Read32(spec.RegCSTS), regs.Read32(spec.RegAQA)}
	out := r.ok("list")
	r.ok("status")
	if n := r.opens.Load(); n != 0 {
		t.Errorf("list and status opened the controller %d times", n)
	}
	after := [3]uint32{regs.Read32(spec.RegCC), regs.Read32(spec.RegCSTS), regs.Read32(spec.RegAQA)}
	if before != after {
		t.Errorf("CC, CSTS, AQA %#x before list, %#x after", before, after)
	}
	if !strings.Contains(out, "list --identify") {
		t.Errorf("list does not say how to identify the controllers it left alone:\n%s", out)
	}
	code, out, errs := r.run("list", "--identify")
	if code != exitOK || !strings.Contains(out, "gonvme nvmetest controller") || !strings.Contains(errs, "a controller reset") {
		t.Errorf("list --identify: exit %d\n%s\n%s", code, out, errs)
	}
	if n := r.opens.Load(); n != 1 {
		t.Errorf("list --identify opened the controller %d times, want 1", n)
	}
}

func TestFakeNotBound(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{})
	r.a.list = func() ([]vfio.Controller, error) {
		return []vfio.Controller{{Addr: fakeAddr, Class: vfio.ClassNVMe, Driver: "nvme", Group: 3, Viable: true}}, nil
	}
	code, _, errs := r.run("smart-log", fakeAddr)
	if code != exitDevice || !strings.Contains(errs, "bound to nvme, not vfio-pci") || !strings.Contains(errs, "nvmectl setup "+fakeAddr) {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}

func TestFakeFormat(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}})
	ns := r.jsonOf("id-ns", fakeAddr)
	lbafs := ns["lbafs"].([]any)
	want := -1
	for i, l := range lbafs {
		if l.(map[string]any)["ds"] == 12.0 && l.(map[string]any)["ms"] == 0.0 {
			want = i
		}
	}
	if want < 0 {
		t.Skipf("the fake offers no 4096-byte format: %v", lbafs)
	}
	out := r.ok("format", fakeAddr, "-n", "1", "-l", strconv.Itoa(want), "--force")
	if !strings.Contains(out, "blocks of 4096 B") {
		t.Errorf("format output %q", out)
	}
	ns = r.jsonOf("id-ns", fakeAddr)
	for i, l := range ns["lbafs"].([]any) {
		if (l.(map[string]any)["in_use"] == 1.0) != (i == want) {
			t.Errorf("after format, lbaf %d in_use %v", i, l.(map[string]any)["in_use"])
		}
	}
}
