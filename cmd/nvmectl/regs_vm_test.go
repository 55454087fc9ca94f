package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/internal/mmio"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// helperEnv names the controller TestMain's helper mode opens and holds
// until it is killed (TestVMShowRegsKilled).
const helperEnv = "GONVME_NVMECTL_HOLD"

// helperAdminDepth is the admin queue depth the helper brings the
// controller up with: AQA then reads 0x00070007, which nvmectl (depth 32,
// 0x001f001f) never writes.
const helperAdminDepth = 8

// TestMain runs the helper instead of the tests when helperEnv is set:
// the helper is a process of its own, so it can be SIGKILLed, and it is
// not a test (it would pass or fail nothing).
func TestMain(m *testing.M) {
	if addr := os.Getenv(helperEnv); addr != "" {
		holdController(addr)
		return
	}
	os.Exit(m.Run())
}

// holdController brings the controller up, says "ready" and waits to be
// killed.
func holdController(addr string) {
	c, err := pcie.Open(addr, &nvme.Options{AdminQueueDepth: helperAdminDepth, IOQueues: 1, AsyncEvents: -1})
	if err != nil {
		fmt.Printf("open %s: %v\n", addr, err)
		os.Exit(1)
	}
	fmt.Printf("ready %s\n", c.Identify().SN)
	select {}
}

// writableRegisters maps BAR0 read-write through sysfs, as root may: the
// test sets a controller state nvmectl must leave alone.
func writableRegisters(t *testing.T, addr string) mmio.Region {
	t.Helper()
	f, err := os.OpenFile("/sys/bus/pci/devices/"+addr+"/resource0", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := unix.Mmap(int(f.Fd()), 0, regsWindow, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("map BAR0 of %s read-write: %v", addr, err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return mmio.New(b)
}

// TestVMListLeavesRegisters: list, status and show-regs leave a
// controller's CC, CSTS and admin queue registers exactly as they found
// them. The test puts the controller in a state no nvmectl run leaves
// (enabled, with an admin queue of 6/5 entries at IOVAs nobody mapped;
// bus mastering is off, so it cannot reach them), runs the three verbs and
// compares. A VFIO open alone would have reset the function.
func TestVMListLeavesRegisters(t *testing.T) {
	env := vmtest.Require(t, "default")
	c := env.Controllers()[0]
	addr := env.BindVFIO(t, c)
	regs := writableRegisters(t, addr)
	regs.Write32(spec.RegAQA, 0x00040005)
	regs.Write64(spec.RegASQ, 0x7000_0000)
	regs.Write64(spec.RegACQ, 0x7001_0000)
	regs.Write32(spec.RegCC, uint32(spec.CC(0).WithIOSQES(6).WithIOCQES(4).WithEN(true)))
	deadline := time.Now().Add(5 * time.Second)
	for !spec.CSTS(regs.Read32(spec.RegCSTS)).RDY() {
		if time.Now().After(deadline) {
			t.Fatalf("controller not ready after CC.EN=1: CSTS %#x", regs.Read32(spec.RegCSTS))
		}
		time.Sleep(time.Millisecond)
	}
	t.Cleanup(func() {
		regs.Write32(spec.RegCC, 0)
		for spec.CSTS(regs.Read32(spec.RegCSTS)).RDY() && time.Now().Before(deadline.Add(5*time.Second)) {
			time.Sleep(time.Millisecond)
		}
	})
	snap := func() [5]uint64 {
		return [5]uint64{uint64(regs.Read32(spec.RegCC)), uint64(regs.Read32(spec.RegCSTS)), uint64(regs.Read32(spec.RegAQA)),
			regs.Read64(spec.RegASQ), regs.Read64(spec.RegACQ)}
	}
	before := snap()
	v := vm{t}
	doc := v.json("list")
	st := v.json("status")
	sr := v.json("show-regs", addr)
	if after := snap(); after != before {
		t.Fatalf("CC, CSTS, AQA, ASQ, ACQ = %#x before list, status and show-regs, %#x after", before, after)
	}
	t.Logf("registers left as found: CC %#x CSTS %#x AQA %#x ASQ %#x ACQ %#x", before[0], before[1], before[2], before[3], before[4])
	ctrls := doc["controllers"].([]any)
	reg, _ := ctrls[0].(map[string]any)["registers"].(map[string]any)
	if reg["state"] != "enabled" || reg["cc"] != float64(before[0]) {
		t.Errorf("list registers %v, want state enabled and cc %#x", reg, before[0])
	}
	sreg, _ := st["controllers"].([]any)[0].(map[string]any)["registers"].(map[string]any)
	if sreg["state"] != "enabled" {
		t.Errorf("status registers %v", sreg)
	}
	if sr["aqa"] != float64(0x00040005) || sr["asq"] != float64(0x7000_0000) {
		t.Errorf("show-regs aqa %v asq %v, want the values the test wrote", sr["aqa"], sr["asq"])
	}
}

// TestVMShowRegsKilled: a process brings the controller up with an admin
// queue of 8 entries and is SIGKILLed. show-regs then shows what it left
// (the kernel's vfio-pci resets the function when the process's file
// descriptors close, which clears CC and CSTS; QEMU's controller keeps
// AQA, ASQ and ACQ across that reset, so the killed process's admin queue
// is still there); show-regs --after-init shows nvmectl's own.
func TestVMShowRegsKilled(t *testing.T) {
	env := vmtest.Require(t, "default")
	c := env.Controllers()[0]
	addr := env.BindVFIO(t, c)
	v := vm{t}
	if aqa := v.json("show-regs", "--after-init", addr)["aqa"]; aqa != float64(0x001f001f) {
		t.Fatalf("nvmectl's own bring-up left aqa %v, want 0x1f001f", aqa)
	}

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: %q, %v", line, err)
	}
	if err := cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("helper exited with %v, want killed", err)
	}

	regs := v.json("show-regs", addr)
	want := float64(uint32(helperAdminDepth-1)<<16 | uint32(helperAdminDepth-1))
	if regs["aqa"] != want || regs["asq"] == 0.0 || regs["acq"] == 0.0 {
		t.Errorf("show-regs after the kill: aqa %v asq %v acq %v, want aqa %#x and the helper's queue addresses", regs["aqa"], regs["asq"], regs["acq"], uint32(want))
	}
	text := v.ok("show-regs", "-H", addr)
	t.Logf("show-regs after the kill:\n%s", text)
	if !strings.Contains(text, "asqs=8 acqs=8") {
		t.Errorf("show-regs -H does not decode the helper's admin queue:\n%s", text)
	}
	if aqa := v.json("show-regs", "--after-init", addr)["aqa"]; aqa != float64(0x001f001f) {
		t.Errorf("show-regs --after-init: aqa %v, want nvmectl's 0x1f001f", aqa)
	}
}
