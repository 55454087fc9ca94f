package pass_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// TestPass checks what every boot must give a test: the declared
// controller at its address, its serial from the profile, and a monitor.
func TestPass(t *testing.T) {
	env := vmtest.Require(t, "default")
	cs := env.Controllers()
	if len(cs) != 1 || cs[0].ID != "nvme0" {
		t.Fatalf("controllers = %+v, want nvme0", cs)
	}
	vendor, err := os.ReadFile(filepath.Join("/sys/bus/pci/devices", cs[0].Addr, "vendor"))
	if err != nil || strings.TrimSpace(string(vendor)) != "0x1b36" {
		t.Fatalf("vendor of %s = %q, %v; want QEMU's 0x1b36", cs[0].Addr, vendor, err)
	}
	if out := env.Monitor(t, "info status"); !strings.Contains(out, "running") {
		t.Fatalf("monitor info status = %q, want running", out)
	}
	if out := env.Monitor(t, "info pci"); !strings.Contains(out, "nvme0") && !strings.Contains(out, "NVM") {
		t.Fatalf("monitor info pci does not list the controller: %q", out)
	}
}

// TestDeclaredKernelLog logs a kernel WARNING record and declares it: a
// declared record must pass, in the test's own check and the host's.
func TestDeclaredKernelLog(t *testing.T) {
	env := vmtest.Require(t, "default")
	env.ExpectKernelLog(t, `^WARNING: CPU: 0 PID: 1 at selftest/declared\.c:1 `, "the selftest proves a declared record passes")
	if err := os.WriteFile("/dev/kmsg", []byte("WARNING: CPU: 0 PID: 1 at selftest/declared.c:1 fixture+0x0/0x1\n"), 0); err != nil {
		t.Fatalf("write /dev/kmsg: %v", err)
	}
}
