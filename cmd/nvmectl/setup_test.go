package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/vfio"
)

// setupSys is a fake machine: two controllers on nvme, nvme0 (disk
// nvme0n1 with partition nvme0n1p1) and nvme1 (disk nvme1n1), IOMMU on,
// vfio-pci loaded. use says how nvme0's devices are used.
func setupSys(t *testing.T, use string) (app, *[]string) {
	t.Helper()
	sys := fakeSysfs(t,
		fakeDev{"0000:00:04.0", 0x1b36, 0x0010, vfio.ClassNVMe, "nvme", 3},
		fakeDev{"0000:00:05.0", 0x1b36, 0x0010, vfio.ClassNVMe, "nvme", 4},
	)
	root := filepath.Dir(sys)
	w := func(p, v string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, ctrl := range []string{"0000:00:04.0", "0000:00:05.0"} {
		n := string(rune('0' + i))
		w("sys/bus/pci/devices/"+ctrl+"/nvme/nvme"+n+"/model", "QEMU NVMe Ctrl\n")
		w("sys/bus/pci/devices/"+ctrl+"/nvme/nvme"+n+"/serial", "gonvme"+n+"\n")
		w("sys/bus/pci/devices/"+ctrl+"/nvme/nvme"+n+"/firmware_rev", "7.2.0\n")
		w("sys/block/nvme"+n+"n1/dev", "259:"+n+"\n")
		w("sys/block/nvme"+n+"n1/size", "2097152\n")
		w("sys/block/nvme"+n+"n1/queue/logical_block_size", "512\n")
		os.MkdirAll(filepath.Join(root, "sys/block/nvme"+n+"n1/holders"), 0o755)
	}
	w("sys/block/nvme0n1/nvme0n1p1/partition", "1\n")
	w("sys/block/nvme0n1/nvme0n1p1/dev", "259:7\n")
	os.MkdirAll(filepath.Join(root, "sys/bus/pci/drivers/vfio-pci"), 0o755)
	w("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "0\n")
	w("sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "0\n")
	mountinfo := "22 1 0:20 / / rw - rootfs rootfs rw\n"
	swaps := "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
	switch use {
	case "mount":
		mountinfo += "40 22 259:7 / /mnt/data rw,relatime - ext2 /dev/nvme0n1p1 rw\n"
	case "swap":
		swaps += "/dev/nvme0n1\tpartition\t1048572\t0\t-2\n"
	case "holder":
		os.MkdirAll(filepath.Join(root, "sys/block/nvme0n1/nvme0n1p1/holders/dm-0"), 0o755)
	}
	w("proc/self/mountinfo", mountinfo)
	w("proc/swaps", swaps)
	var bound []string
	a := fromSysfs(sys)
	a.bind = func(addr string, _ ...vfio.BindOption) (string, error) {
		bound = append(bound, addr)
		return "nvme", nil
	}
	a.release = func(addr, drv string) error { bound = append(bound, "release "+addr+" "+drv); return nil }
	a.memlock = func() (uint64, uint64, error) { return 8 << 20, 8 << 20, nil }
	return a, &bound
}

func TestSetupRefusesInUse(t *testing.T) {
	for use, reason := range map[string]string{
		"mount":  "/dev/nvme0n1p1 is mounted on /mnt/data",
		"swap":   "/dev/nvme0n1 is active swap",
		"holder": "/dev/nvme0n1p1 is held by dm-0",
	} {
		t.Run(use, func(t *testing.T) {
			a, bound := setupSys(t, use)
			var out, errb bytes.Buffer
			code := run([]string{"setup"}, &out, &errb, a)
			if code != exitDevice {
				t.Errorf("exit %d, want %d; stderr %q", code, exitDevice, errb.String())
			}
			if !strings.Contains(out.String(), "0000:00:04.0 (1b36 0010): in use, left on nvme: "+reason) {
				t.Errorf("output lacks the refusal for %q:\n%s", reason, out.String())
			}
			if strings.Join(*bound, " ") != "0000:00:05.0" {
				t.Errorf("bound %q, want only the free controller", *bound)
			}
			if !strings.Contains(errb.String(), "RLIMIT_MEMLOCK is 8MiB") || !strings.Contains(errb.String(), "1 of 2 controllers not bound") {
				t.Errorf("stderr %q", errb.String())
			}
			// --force binds it.
			*bound = nil
			out.Reset()
			if code := run([]string{"setup", "--force", "0000:00:04.0"}, &out, &errb, a); code != exitOK || strings.Join(*bound, " ") != "0000:00:04.0" {
				t.Errorf("--force: exit %d, bound %q, output %q", code, *bound, out.String())
			}
		})
	}
}

func TestSetupSelection(t *testing.T) {
	a, bound := setupSys(t, "")
	var out, errb bytes.Buffer
	if code := run([]string{"setup", "--deny", "0000:00:05.0", "--hugemem", "64"}, &out, &errb, a); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if strings.Join(*bound, " ") != "0000:00:04.0" || !strings.Contains(out.String(), "0000:00:04.0 (1b36 0010): nvme -> vfio-pci") {
		t.Errorf("bound %q, output %q", *bound, out.String())
	}
	if got := readTrim(a.path("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")); got != "32" {
		t.Errorf("nr_hugepages = %q, want 32 for 64 MiB", got)
	}
	*bound = nil
	run([]string{"setup", "--allow", "0000:00:05.0"}, &out, &errb, a)
	if strings.Join(*bound, " ") != "0000:00:05.0" {
		t.Errorf("--allow: bound %q", *bound)
	}
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"setup", "0000:00:09.0"}, "no NVMe controller at 0000:00:09.0"},
		{[]string{"setup", "--deny", "bogus"}, "not a PCI address"},
		{[]string{"setup", "--hugemem", "-1"}, "--hugemem -1"},
		{[]string{"setup", "--hugemem", "lots"}, "invalid argument"},
	} {
		errb.Reset()
		if code := run(tt.args, &out, &errb, a); code != exitUsage || !strings.Contains(errb.String(), tt.msg) {
			t.Errorf("nvmectl %q: exit %d, stderr %q", tt.args, code, errb.String())
		}
	}
	// No IOMMU: refuse with the fix.
	os.RemoveAll(a.path("/sys/kernel/iommu_groups"))
	for _, d := range []string{"0000:00:04.0", "0000:00:05.0"} {
		os.Remove(a.path("/sys/bus/pci/devices/" + d + "/iommu_group"))
	}
	errb.Reset()
	if code := run([]string{"setup"}, &out, &errb, a); code != exitDevice || !strings.Contains(errb.String(), "intel_iommu=on") {
		t.Errorf("no iommu: exit %d, stderr %q", code, errb.String())
	}
}

func TestStatusAndReset(t *testing.T) {
	a, bound := setupSys(t, "mount")
	var out, errb bytes.Buffer
	if code := run([]string{"-o", "json", "status"}, &out, &errb, a); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var st statusJSON
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if !st.IOMMU.Enabled || !st.VFIOPCI || len(st.Controllers) != 2 || len(st.Hugepages) != 1 {
		t.Fatalf("status %+v", st)
	}
	c := st.Controllers[0]
	if c.Driver != "nvme" || strings.Join(c.BlockDevices, ",") != "nvme0n1" || len(c.InUse) != 1 || len(st.Controllers[1].InUse) != 0 {
		t.Errorf("controller 0 %+v", c)
	}
	out.Reset()
	run([]string{"list"}, &out, &errb, a)
	if !strings.Contains(out.String(), "gonvme0  7.2.0  1:1GiB/512") || !strings.Contains(out.String(), "QEMU NVMe Ctrl") ||
		!strings.Contains(out.String(), "0000:00:04.0: in use: /dev/nvme0n1p1 is mounted on /mnt/data") {
		t.Errorf("list:\n%s", out.String())
	}
	// reset leaves controllers not on vfio-pci alone.
	out.Reset()
	if code := run([]string{"reset"}, &out, &errb, a); code != exitOK || len(*bound) != 0 || !strings.Contains(out.String(), "left alone") {
		t.Errorf("reset: exit %d, released %q, output %q", code, *bound, out.String())
	}
}
