package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// fakeSysfs builds a minimal /sys with PCI devices (real directories
// under devices/pci0000:00, linked from bus/pci/devices as the kernel
// does), drivers and IOMMU groups, and returns its root. NVMe controllers
// get a resource0 file holding their registers (fakeRegs), which list and
// show-regs map as they map a real BAR.
type fakeDev struct {
	addr          string
	vendor, devid uint16
	class         uint32
	driver        string
	group         int // -1: none
}

// fakeRegs are the registers a fake controller's resource0 holds: VS 1.4,
// enabled and ready.
var fakeRegs = map[uintptr]uint32{spec.RegVS: 0x10400, spec.RegCC: 0x460001, spec.RegCSTS: 1, spec.RegAQA: 0x1f001f}

func fakeSysfs(t *testing.T, devs ...fakeDev) string {
	t.Helper()
	sys := filepath.Join(t.TempDir(), "sys")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(sys, "bus/pci/devices"), 0o755))
	for i, d := range devs {
		dir := filepath.Join(sys, "devices/pci0000:00", d.addr)
		must(os.MkdirAll(dir, 0o755))
		must(os.Symlink("../../../devices/pci0000:00/"+d.addr, filepath.Join(sys, "bus/pci/devices", d.addr)))
		for name, v := range map[string]string{
			"vendor":             fmt.Sprintf("0x%04x\n", d.vendor),
			"device":             fmt.Sprintf("0x%04x\n", d.devid),
			"subsystem_vendor":   fmt.Sprintf("0x%04x\n", d.vendor),
			"subsystem_device":   "0x1100\n",
			"revision":           "0x02\n",
			"class":              fmt.Sprintf("0x%06x\n", d.class),
			"irq":                "10\n",
			"numa_node":          fmt.Sprintf("%d\n", i%2),
			"current_link_speed": "8.0 GT/s PCIe\n",
			"current_link_width": "2\n",
			"max_link_speed":     "16.0 GT/s PCIe\n",
			"max_link_width":     "4\n",
			"resource":           "0x0000000000000000 0x0000000000000000 0x0000000000000000\n",
		} {
			must(os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644))
		}
		if d.class == vfio.ClassNVMe {
			regs := make([]byte, 0x4000)
			for off, v := range fakeRegs {
				binary.LittleEndian.PutUint32(regs[off:], v)
			}
			must(os.WriteFile(filepath.Join(dir, "resource0"), regs, 0o644))
			cfg := make([]byte, 256)
			binary.LittleEndian.PutUint16(cfg[0:], d.vendor)
			binary.LittleEndian.PutUint16(cfg[2:], d.devid)
			cfg[4] = 0x06 // PCI_COMMAND: memory space and bus master on
			must(os.WriteFile(filepath.Join(dir, "config"), cfg, 0o644))
		}
		if d.driver != "" {
			must(os.Symlink("../../../bus/pci/drivers/"+d.driver, filepath.Join(dir, "driver")))
		}
		if d.group >= 0 {
			g := filepath.Join(sys, "kernel/iommu_groups", strconv.Itoa(d.group), "devices")
			must(os.MkdirAll(g, 0o755))
			must(os.Symlink(dir, filepath.Join(g, d.addr)))
			must(os.Symlink("../../../kernel/iommu_groups/"+strconv.Itoa(d.group), filepath.Join(dir, "iommu_group")))
		}
	}
	return sys
}

func fromSysfs(sys string) app {
	return app{
		list: func() ([]vfio.Controller, error) { return vfio.ListFrom(sys) },
		open: func(addr string) (*nvme.Controller, error) {
			return nil, fmt.Errorf("open %s: %w", addr, vfio.ErrBusy)
		},
		root:   filepath.Dir(sys),
		getenv: func(string) string { return "" },
	}
}

func sharedGroupSys(t *testing.T) string {
	return fakeSysfs(t,
		fakeDev{"0000:00:04.0", 0x1b36, 0x0010, vfio.ClassNVMe, "nvme", 3},
		fakeDev{"0000:00:02.0", 0x8086, 0x10d3, 0x020000, "e1000e", 2},
		fakeDev{"0000:00:1e.0", 0x1b36, 0x0001, 0x060400, "", 5},
		fakeDev{"0000:01:01.0", 0x1b36, 0x0010, vfio.ClassNVMe, "vfio-pci", 5},
		fakeDev{"0000:01:02.0", 0x1b36, 0x0010, vfio.ClassNVMe, "nvme", 5},
	)
}

func TestListText(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"list"}, &out, &errb, fromSysfs(sharedGroupSys(t)))
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("output:\n%s\nwant a header, three controllers and one note", out.String())
	}
	for i, want := range [][]string{
		{"ADDRESS", "VENDOR:DEVICE", "DRIVER", "NUMA", "LINK", "GROUP", "VIABLE", "STATE", "SERIAL", "FW", "NAMESPACES", "MODEL"},
		{"0000:00:04.0", "1b36:0010", "nvme", "0", "8GT/sx2(max16GT/sx4)", "3", "yes", "-", "-", "-", "-", "-"},
		{"0000:01:01.0", "1b36:0010", "vfio-pci", "1", "8GT/sx2(max16GT/sx4)", "5", "no", "enabled", "-", "-", "-", "-"},
		{"0000:01:02.0", "1b36:0010", "nvme", "0", "8GT/sx2(max16GT/sx4)", "5", "yes", "-", "-", "-", "-", "-"},
	} {
		if got := strings.Fields(lines[i]); !reflect.DeepEqual(got, want) {
			t.Errorf("line %d = %q, want fields %q", i, lines[i], want)
		}
	}
	note := lines[len(lines)-1]
	for _, s := range []string{"0000:01:01.0", "group 5", "0000:01:02.0 (nvme)", "0000:00:1e.0 (no driver, bridge)", "vfio-pci"} {
		if !strings.Contains(note, s) {
			t.Errorf("note %q lacks %q", note, s)
		}
	}
	if strings.Contains(out.String(), "0000:00:02.0") {
		t.Error("the network card is listed")
	}
}

func TestListJSON(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"-o", "json", "list"}, &out, &errb, fromSysfs(sharedGroupSys(t))); code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	// Decode into generic maps: the keys are the contract.
	var doc map[string][]map[string]any
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	cs := doc["controllers"]
	if len(cs) != 3 {
		t.Fatalf("%d controllers in %s", len(cs), out.String())
	}
	keys := []string{"address", "vendor_id", "device_id", "driver", "numa_node", "pcie_link", "registers", "identified",
		"iommu_group", "viable", "group_members", "model", "serial", "firmware", "namespaces", "note"}
	for _, c := range cs {
		for _, k := range keys {
			if _, ok := c[k]; !ok {
				t.Errorf("controller %v lacks key %q", c["address"], k)
			}
		}
	}
	c := cs[1]
	if c["address"] != "0000:01:01.0" || c["vendor_id"] != "1b36" || c["device_id"] != "0010" ||
		c["driver"] != "vfio-pci" || c["iommu_group"] != 5.0 || c["viable"] != false {
		t.Errorf("controller 1 = %v", c)
	}
	if regs, _ := c["registers"].(map[string]any); regs["cc"] != float64(0x460001) || regs["csts"] != 1.0 || regs["state"] != "enabled" {
		t.Errorf("controller 1 registers = %v", c["registers"])
	}
	if l, _ := c["pcie_link"].(map[string]any); l["speed_gts"] != 8.0 || l["width"] != 2.0 || l["max_speed_gts"] != 16.0 || l["max_width"] != 4.0 {
		t.Errorf("controller 1 link = %v", c["pcie_link"])
	}
	if c["numa_node"] != 1.0 {
		t.Errorf("controller 1 numa_node = %v", c["numa_node"])
	}
	members := c["group_members"].([]any)
	want := []any{
		map[string]any{"address": "0000:00:1e.0", "driver": "", "bridge": true, "blocks": false},
		map[string]any{"address": "0000:01:02.0", "driver": "nvme", "bridge": false, "blocks": true},
	}
	if !reflect.DeepEqual(members, want) {
		t.Errorf("group_members = %v, want %v", members, want)
	}
	if m := cs[0]["group_members"].([]any); len(m) != 0 {
		t.Errorf("lone controller has members %v", m)
	}
}

func TestListNoIOMMU(t *testing.T) {
	sys := fakeSysfs(t, fakeDev{"0000:00:04.0", 0x1b36, 0x0010, vfio.ClassNVMe, "", -1})
	var out, errb bytes.Buffer
	if code := run([]string{"list", "-o", "json"}, &out, &errb, fromSysfs(sys)); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), `"iommu_group": null`) || !strings.Contains(out.String(), `"driver": ""`) {
		t.Errorf("json without iommu: %s", out.String())
	}
	out.Reset()
	run([]string{"list"}, &out, &errb, fromSysfs(sys))
	if f := strings.Fields(strings.Split(out.String(), "\n")[1]); len(f) < 8 || f[2] != "-" || f[5] != "none" || f[6] != "no-iommu" || f[7] != "enabled" {
		t.Errorf("text without iommu or driver: %q", out.String())
	}
}

func TestListEmpty(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"list"}, &out, &errb, fromSysfs(fakeSysfs(t))); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out.String(), "no NVMe controllers") {
		t.Errorf("output %q", out.String())
	}
	out.Reset()
	run([]string{"-o", "json", "list"}, &out, &errb, fromSysfs(fakeSysfs(t)))
	if strings.TrimSpace(out.String()) != "{\n  \"controllers\": []\n}" {
		t.Errorf("empty json %q", out.String())
	}
}

func TestExitCodes(t *testing.T) {
	broken := app{list: func() ([]vfio.Controller, error) {
		return nil, fmt.Errorf("read /sys: %w", errors.New("permission denied"))
	}}
	tests := []struct {
		args []string
		a    app
		code int
		msg  string
	}{
		{[]string{"list"}, broken, exitDevice, "permission denied"},
		{[]string{"bogus"}, broken, exitUsage, "unknown command"},
		{[]string{"-o", "xml", "list"}, broken, exitUsage, "want normal or json"},
		{[]string{"list", "extra"}, broken, exitUsage, "unknown command"},
		{[]string{"--nope"}, broken, exitUsage, "unknown flag"},
		{[]string{}, broken, exitUsage, "command is required"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		if code := run(tt.args, &out, &errb, tt.a); code != tt.code {
			t.Errorf("nvmectl %q: exit %d, want %d (stderr %q)", tt.args, code, tt.code, errb.String())
		}
		if !strings.Contains(errb.String(), tt.msg) {
			t.Errorf("nvmectl %q: stderr %q lacks %q", tt.args, errb.String(), tt.msg)
		}
	}
}

// TestRegistersMemoryOff: a controller whose memory decoding is off (no
// driver enabled it since boot) has no registers to read: list says so
// instead of printing the zeros or ones such a BAR returns, and show-regs
// refuses with the reason.
func TestRegistersMemoryOff(t *testing.T) {
	sys := fakeSysfs(t, fakeDev{"0000:00:04.0", 0x1b36, 0x0010, vfio.ClassNVMe, "vfio-pci", 3})
	cfg := filepath.Join(sys, "devices/pci0000:00/0000:00:04.0/config")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b[4] &^= 0x02
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"list"}, &out, &errb, fromSysfs(sys)); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	row := strings.Fields(strings.Split(out.String(), "\n")[1])
	if !strings.Contains(out.String(), "memory decoding off") || len(row) < 8 || row[7] != "-" {
		t.Errorf("list:\n%s", out.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"show-regs", "0000:00:04.0"}, &out, &errb, fromSysfs(sys)); code != exitDevice || !strings.Contains(errb.String(), "memory decoding is off") {
		t.Errorf("show-regs: exit %d, stderr %q", code, errb.String())
	}
}
