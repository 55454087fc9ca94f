package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// These run every verb in-process in the guest, through real VFIO, and
// check what it printed. Package main: see list_vm_test.go.

// vm runs nvmectl against the guest's real sysfs and devices.
type vm struct{ t *testing.T }

func (v vm) run(args ...string) (int, string, string) {
	v.t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb, app{stdin: strings.NewReader("")})
	return code, out.String(), errb.String()
}

func (v vm) ok(args ...string) string {
	v.t.Helper()
	code, out, errs := v.run(args...)
	if code != exitOK {
		v.t.Fatalf("nvmectl %s: exit %d, stderr %q", strings.Join(args, " "), code, errs)
	}
	return out
}

func (v vm) json(args ...string) map[string]any {
	v.t.Helper()
	out := v.ok(append([]string{"-o", "json"}, args...)...)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		v.t.Fatalf("nvmectl -o json %s: %v in\n%s", strings.Join(args, " "), err, out)
	}
	return m
}

func TestVMAdminVerbs(t *testing.T) {
	env := vmtest.Require(t, "default")
	c := env.Controllers()[0]
	addr := env.BindVFIO(t, c)
	v := vm{t}

	id := v.json("id-ctrl", addr)
	hasKeys(t, "id-ctrl", id, "vid", "ssvid", "sn", "mn", "fr", "ver", "oacs", "oncs", "nn", "sqes", "cqes", "psds")
	if id["mn"] != "QEMU NVMe Ctrl" || id["sn"] != c.Serial || id["vid"] != float64(0x1b36) || id["ver"] != float64(0x10400) {
		t.Errorf("id-ctrl mn %q sn %q (want %q) vid %v ver %v", id["mn"], id["sn"], c.Serial, id["vid"], id["ver"])
	}
	text := v.ok("id-ctrl", addr, "-H")
	if !strings.Contains(text, "mn        : QEMU NVMe Ctrl\n") || !strings.Contains(text, "sn        : "+c.Serial+"\n") ||
		!strings.Contains(text, "Write Zeroes") {
		t.Errorf("id-ctrl -H:\n%s", text)
	}
	t.Logf("nvmectl id-ctrl %s -H:\n%s", addr, text)

	ns := v.json("id-ns", addr, "-n", "1")
	want := c.Namespaces[0]
	if ns["nsze"] != float64(want.Blocks) || ns["ncap"] != float64(want.Blocks) {
		t.Errorf("id-ns nsze %v ncap %v, want %d", ns["nsze"], ns["ncap"], want.Blocks)
	}
	inUse := false
	for _, l := range ns["lbafs"].([]any) {
		m := l.(map[string]any)
		if m["in_use"] == 1.0 {
			inUse = true
			if 1<<int(m["ds"].(float64)) != want.BlockSize || m["ms"] != 0.0 {
				t.Errorf("in-use format %v, want %d-byte blocks", m, want.BlockSize)
			}
		}
	}
	if !inUse {
		t.Errorf("no LBA format in use: %v", ns["lbafs"])
	}
	if out := v.ok("list-ns", addr); out != "[   0]:0x1\n" {
		t.Errorf("list-ns printed %q", out)
	}
	if d := v.json("ns-descs", addr); len(d) == 0 {
		t.Errorf("ns-descs printed no descriptor")
	} else {
		t.Logf("ns-descs: %v", d)
	}

	s := v.json("smart-log", addr)
	temp := s["temperature"].(float64)
	if temp < 273 || temp > 373 || s["avail_spare"].(float64) > 100 || s["critical_warning"] != 0.0 {
		t.Errorf("smart-log temperature %v K, avail_spare %v, critical_warning %v", temp, s["avail_spare"], s["critical_warning"])
	}
	hasKeys(t, "smart-log", s, "spare_thresh", "percent_used", "data_units_read", "data_units_written", "host_read_commands",
		"host_write_commands", "power_cycles", "power_on_hours", "unsafe_shutdowns", "media_errors", "num_err_log_entries")
	stext := v.ok("smart-log", addr)
	if !strings.Contains(stext, fmt.Sprintf("(%d K)", int(temp))) {
		t.Errorf("smart-log text lacks the temperature:\n%s", stext)
	}
	t.Logf("nvmectl smart-log %s:\n%s", addr, stext)

	if e := v.json("error-log", addr); e["errors"] == nil {
		t.Errorf("error-log %v", e)
	}
	fw := v.json("fw-log", addr)
	slots, _ := fw[addr].(map[string]any)
	// QEMU's slot 1 holds "1.0", not the FR of Identify ("7.2.x").
	rev, _ := slots["Firmware Rev Slot 1"].(string)
	var num uint64
	var name string
	if n, _ := fmt.Sscanf(rev, "%d (%s", &num, &name); n != 2 || num != fwRevNumber(strings.TrimSuffix(name, ")")) || slots["Active Firmware Slot (afi)"] != 1.0 {
		t.Errorf("fw-log %v: want afi 1 and slot 1 as \"<u64> (<rev>)\"", fw)
	}
	t.Logf("nvmectl fw-log: %s", v.ok("fw-log", addr))
	ef := v.json("effects-log", addr)
	if acs, _ := ef["admin_cmd_set"].(map[string]any); acs["ACS_6 (Identify)"] == nil {
		t.Errorf("effects-log admin_cmd_set %v", ef["admin_cmd_set"])
	}
	if iocs, _ := ef["io_cmd_set"].(map[string]any); iocs["IOCS_2 (Read)"] == nil || iocs["IOCS_1 (Write)"] == nil {
		t.Errorf("effects-log io_cmd_set %v", ef["io_cmd_set"])
	}

	regs := v.json("show-regs", addr)
	if regs["vs"] != float64(0x10400) || regs["cap"] == nil || regs["cc"] == nil || regs["csts"] == nil {
		t.Errorf("show-regs %v", regs)
	}
	rtext := v.ok("show-regs", addr, "-H", "--after-init")
	for _, l := range []string{"cap ", "vs ", "cc ", "csts ", "1.4.0", "rdy=true", "en=true"} {
		if !strings.Contains(rtext, l) {
			t.Errorf("show-regs -H lacks %q:\n%s", l, rtext)
		}
	}
	t.Logf("nvmectl show-regs %s -H --after-init:\n%s", addr, rtext)
	// As found, between two nvmectl runs: the last one shut the controller
	// down and vfio-pci reset the function when it closed the device.
	if found := v.ok("show-regs", addr, "-H"); !strings.Contains(found, "as found (no bring-up)") || !strings.Contains(found, "en=false") {
		t.Errorf("show-regs as found:\n%s", found)
	}
	// The short address of lspci names the same controller.
	if short := v.json("show-regs", addr[5:], "--after-init"); short["vs"] != float64(0x10400) {
		t.Errorf("show-regs %s: %v", addr[5:], short)
	}

	// Features: QEMU refuses to change arbitration (0x01); the
	// temperature threshold (0x04) and the write cache (0x06) round-trip.
	if code, _, errs := v.run("set-feature", addr, "-f", "0x01", "-v", "0x03020103"); code != exitDevice || !strings.Contains(errs, "Feature Not Changeable") {
		t.Errorf("set-feature arbitration: exit %d, stderr %q", code, errs)
	}
	if out := v.ok("get-feature", addr, "-f", "1", "-H"); !strings.Contains(out, "Arbitration Burst (AB):") {
		t.Errorf("get-feature -H arbitration: %q", out)
	} else {
		t.Logf("nvmectl get-feature -f 1 -H: %s", out)
	}
	// Every feature, as nvme-cli prints them without -f. QEMU returns a
	// data structure for Host Behavior Support (0x16): each Get Features
	// carries a buffer, so the device never writes to IOVA 0 (a DMAR
	// fault in the guest kernel's log, which fails the boot).
	all := v.json("get-feature", addr)
	ids := map[float64]bool{}
	for _, f := range all["features"].([]any) {
		ids[f.(map[string]any)["feature_id"].(float64)] = true
	}
	for _, id := range []float64{0x01, 0x04, 0x06, 0x07, 0x16} {
		if !ids[id] {
			t.Errorf("get-feature without -f lacks feature %#x: %v", int(id), ids)
		}
	}
	v.ok("set-feature", addr, "-f", "4", "-v", "350")
	if g := v.json("get-feature", addr, "-f", "4"); g["value"] != 350.0 {
		t.Errorf("temperature threshold after set-feature 350: %v", g)
	}
	if out := v.ok("get-feature", addr, "-f", "4", "-H"); !strings.Contains(out, "Temperature Threshold (TMPTH): 350 K (77 °C)") {
		t.Errorf("get-feature -H temperature threshold: %q", out)
	}
	v.ok("set-feature", addr, "-f", "4", "-v", "343")
	v.ok("set-feature", addr, "-f", "6", "-v", "0")
	if g := v.json("get-feature", addr, "-f", "6"); g["value"] != 0.0 {
		t.Errorf("write cache after set-feature 0: %v", g)
	}
	v.ok("set-feature", addr, "-f", "6", "-v", "1")
	if out := v.ok("get-feature", addr, "-f", "6"); out != "get-feature:0x06 (Volatile Write Cache), Current value:0x00000001\n" {
		t.Errorf("write cache after set-feature 1: %q", out)
	}
	if g := v.json("get-feature", addr, "-f", "6", "-s", "3"); g["changeable"] != true {
		t.Errorf("supported capabilities of 0x06: %v", g)
	}

	// list --identify opens the controller briefly and shows its identity.
	ltext := v.ok("list", "--identify")
	row := ""
	for _, l := range strings.Split(ltext, "\n") {
		if strings.HasPrefix(l, addr) {
			row = l
		}
	}
	f := strings.Fields(row)
	if len(f) < 12 || f[2] != "vfio-pci" || f[7] != "disabled" || f[8] != c.Serial || f[10] != "1:1GiB/512" || !strings.HasSuffix(row, "QEMU NVMe Ctrl") {
		t.Errorf("list row %q in\n%s", row, ltext)
	}
	t.Logf("nvmectl list:\n%s", ltext)
	var l listJSON
	if err := json.Unmarshal([]byte(v.ok("-o", "json", "list", "--identify")), &l); err != nil || len(l.Controllers) != 1 {
		t.Fatalf("list json: %v %+v", err, l)
	}
	if j := l.Controllers[0]; j.Model != "QEMU NVMe Ctrl" || j.Serial != c.Serial || len(j.Namespaces) != 1 ||
		j.Namespaces[0].Blocks != want.Blocks || j.Namespaces[0].BlockSize != want.BlockSize {
		t.Errorf("list json %+v", j)
	}
	st := v.json("status")
	if st["iommu"].(map[string]any)["enabled"] != true || st["vfio_pci"] != true {
		t.Errorf("status %v", st)
	}
	t.Logf("nvmectl status:\n%s", v.ok("status"))
}

// pattern fills n bytes that differ per block and per seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i/512)*31 + byte(i) ^ seed
	}
	return b
}

func TestVMIOVerbs(t *testing.T) {
	env := vmtest.Require(t, "default")
	c := env.Controllers()[0]
	addr := env.BindVFIO(t, c)
	v := vm{t}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")

	// 1.5 MiB: three transfers at the 512 KiB MDTS, plus a piece.
	data := pattern(3<<19+4096, 0x5a)
	os.WriteFile(in, data, 0o644)
	v.ok("write", addr, "-s", "2048", "-z", fmt.Sprint(len(data)), "-d", in)
	v.ok("read", addr, "-s", "2048", "-c", fmt.Sprint(len(data)/512-1), "-d", out)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, differ from the %d written", len(got), len(data))
	}
	if got := v.ok("read", addr, "-s", "2049", "-c", "1"); got != string(data[512:1536]) {
		t.Errorf("read to stdout returned %d bytes, not blocks 2049-2050", len(got))
	}
	v.ok("compare", addr, "-s", "2048", "-z", fmt.Sprint(len(data)), "-d", in)
	bad := append([]byte(nil), data[:4096]...)
	bad[700] ^= 1
	os.WriteFile(in, bad, 0o644)
	code, _, errs := v.run("compare", addr, "-s", "2048", "-c", "7", "-d", in)
	if code != exitDevice || !strings.Contains(errs, "Compare Failure") {
		t.Errorf("compare mismatch: exit %d, stderr %q", code, errs)
	}

	v.ok("write-zeroes", addr, "-s", "2050", "-c", "3")
	got := v.ok("read", addr, "-s", "2048", "-c", "5")
	if got != string(data[:1024])+string(make([]byte, 2048)) {
		t.Errorf("write-zeroes: blocks 2048-2053 are not data x2, zeros x4")
	}
	v.ok("dsm", addr, "-d", "--slbs", "4096,8192", "--blocks", "8,16")
	v.ok("flush", addr)
	if oncs := v.json("id-ctrl", addr)["oncs"].(float64); int(oncs)&0x80 != 0 {
		v.ok("verify", addr, "-s", "0", "-c", "2047")
	} else if code, _, errs := v.run("verify", addr, "-s", "0", "-c", "2047"); code != exitDevice || !strings.Contains(errs, "does not support Verify") {
		t.Errorf("verify without ONCS bit 7: exit %d, stderr %q", code, errs)
	}
}

func TestVMBadInput(t *testing.T) {
	env := vmtest.Require(t, "default")
	c := env.Controllers()[0]
	addr := env.BindVFIO(t, c)
	v := vm{t}
	dir := t.TempDir()
	last := c.Namespaces[0].Blocks - 8
	data := pattern(8*512, 0x33)
	in, short := filepath.Join(dir, "in"), filepath.Join(dir, "short")
	os.WriteFile(in, data, 0o644)
	os.WriteFile(short, data[:1000], 0o644)
	v.ok("write", addr, "-s", fmt.Sprint(last), "-c", "7", "-d", in)
	before := v.ok("read", addr, "-s", fmt.Sprint(last), "-c", "7")
	if before != string(data) {
		t.Fatal("the last 8 blocks do not hold the pattern just written")
	}
	s := fmt.Sprint(last)
	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"write", addr, "-s", fmt.Sprint(last + 4), "-c", "7", "-d", in}, exitUsage,
			fmt.Sprintf("past the end of namespace 1 (%d blocks", c.Namespaces[0].Blocks)},
		{[]string{"write", addr, "-s", s, "-z", "1000", "-d", in}, exitUsage, "--data-size 1000: want a positive multiple of the block size"},
		{[]string{"write", addr, "-s", s, "-c", "7", "-d", short}, exitUsage, "holds 1000 bytes, 4096 needed"},
		{[]string{"write", addr, "-s", s, "-n", "2", "-d", in}, exitUsage, "namespace 2 is not active on this controller (active: 1)"},
		{[]string{"write-zeroes", addr, "-s", s, "-c", "8"}, exitUsage, "past the end"},
		{[]string{"dsm", addr, "-d", "--slbs", s, "--blocks", "9"}, exitUsage, "past the end"},
		{[]string{"id-ctrl", "0000:00:1f.7"}, exitUsage, "no NVMe controller at 0000:00:1f.7 (controllers: " + addr},
		{[]string{"id-ctrl", "00:20.0"}, exitUsage, "device 0x20 is out of range"},
		{[]string{"id-ctrl", "nvme0"}, exitUsage, "not a PCI address"},
		{[]string{"format", addr, "-n", "1"}, exitUsage, "add --force"},
		{[]string{"get-feature", addr, "-f", "0x06", "-s", "7"}, exitUsage, "--sel 7"},
		{[]string{"set-feature", addr, "-f", "0xee", "-v", "1"}, exitDevice, "Invalid Field in Command"},
	} {
		code, _, errs := v.run(tt.args...)
		if code != tt.code || !strings.Contains(errs, tt.msg) {
			t.Errorf("nvmectl %s: exit %d, stderr %q; want %d and %q", strings.Join(tt.args, " "), code, errs, tt.code, tt.msg)
		}
	}
	if after := v.ok("read", addr, "-s", s, "-c", "7"); after != before {
		t.Error("the last 8 blocks changed although every command was refused")
	}
}
