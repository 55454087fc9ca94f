package vmtest_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// TestVMNVMfKernelTarget proves the nvmf profile's harness parts: the
// fabrics modules load, the carried nvme-cli runs, Env.KernelTarget
// exports null_blk through the kernel's nvmet on 127.0.0.1:4420 with a
// discovery port, and the kernel's initiator discovers, connects and
// disconnects it.
func TestVMNVMfKernelTarget(t *testing.T) {
	env := vmtest.Require(t, "nvmf")
	env.LoadFabrics(t)
	for _, f := range []string{"/etc/nvme/hostnqn", "/etc/nvme/hostid", "/sys/kernel/config/nvmet", "/dev/nullb0", "/dev/nvme-fabrics"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("after LoadFabrics: %v", err)
		}
	}
	if v := env.Tool(t, "nvme", "version"); !strings.Contains(v, "nvme version") {
		t.Errorf("nvme version: %q", v)
	}
	kt := env.KernelTarget(t, vmtest.KernelTargetConfig{Devices: []string{"/dev/nullb0"}, DiscoveryPort: vmtest.KernelTargetDiscoveryPort})
	// nvmet's discovery log lists the entries of the port asked.
	for _, port := range []string{"8009", "4420"} {
		disc := env.Tool(t, "nvme", "discover", "-t", "tcp", "-a", kt.Addr, "-s", port)
		entry := `subtype: nvme subsystem\n.*\n.*\ntrsvcid: ` + port + `\nsubnqn:  ` + regexp.QuoteMeta(kt.NQN) + `\ntraddr:  127\.0\.0\.1\n`
		if !regexp.MustCompile(entry).MatchString(strings.ReplaceAll(disc, "\n        ", "\n")) {
			t.Errorf("nvme discover on port %s: no entry of %s at 127.0.0.1:%s", port, kt.NQN, port)
		}
	}
	env.Tool(t, "nvme", "connect", "-t", "tcp", "-a", kt.Addr, "-s", "4420", "-n", kt.NQN)
	ctrl, blk := env.FabricsDevice(t, kt.NQN, 1, time.Minute)
	t.Logf("connected: controller %s, namespace %s", ctrl, blk)
	if list := env.Tool(t, "nvme", "list"); !strings.Contains(list, blk) {
		t.Errorf("nvme list does not show %s", blk)
	}
	b, err := os.ReadFile("/sys/class/nvme/" + ctrl + "/transport")
	if err != nil || strings.TrimSpace(string(b)) != "tcp" {
		t.Errorf("%s transport %q, %v; want tcp", ctrl, b, err)
	}
	env.Tool(t, "nvme", "disconnect", "-n", kt.NQN)
	env.FabricsGone(t, kt.NQN, 30*time.Second)
}
