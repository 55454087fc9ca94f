package vmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/guest"
)

// NVMe over TCP in the guest: the fabrics modules, configfs, lo, the host
// identity nvme-cli reads, the tools the profile carried, and the kernel's
// own target (nvmet) set up through configfs. The nvmf profile carries all
// of it (Profile.Fabrics, Profile.Tools).

// The host identity LoadFabrics writes to /etc/nvme: nvme-cli's connect
// and discover send it, and a target's allow-list can name it.
const (
	HostID  = "6f6e766d-6567-4f6e-8000-000000000001"
	HostNQN = "nqn.2014-08.org.nvmexpress:uuid:" + HostID
)

// The kernel target's defaults (KernelTarget).
const (
	KernelTargetAddr          = "127.0.0.1"
	KernelTargetPort          = 4420
	KernelTargetDiscoveryPort = 8009
)

var (
	fabricsMu   sync.Mutex
	fabricsErr  error
	fabricsDone bool
)

// LoadFabrics prepares the guest for NVMe over TCP: it loads the fabrics
// modules the profile carried (the kernel target nvmet and nvmet-tcp, the
// initiator nvme-fabrics and nvme-tcp, crc32c, null_blk with its default
// /dev/nullb0), mounts configfs, brings lo up and writes /etc/nvme/hostnqn
// (HostNQN) and hostid (HostID). It does not load the kernel's nvme PCI
// driver. It fails the test when the profile carries no fabrics modules.
// Any goroutine of the test may call it; later calls do nothing more.
func (e *Env) LoadFabrics(t testing.TB) {
	t.Helper()
	if len(e.boot.FabricsModules) == 0 {
		t.Fatalf("vmtest: profile %s carries no NVMe/TCP modules (use a profile with nvmf)", e.boot.Profile)
	}
	fabricsMu.Lock()
	defer fabricsMu.Unlock()
	if !fabricsDone {
		fabricsErr = loadFabrics(e.boot.FabricsModules)
		fabricsDone = true
	}
	if fabricsErr != nil {
		t.Fatalf("vmtest: %v", fabricsErr)
	}
}

// PrepareFabrics is Env.LoadFabrics for a guest program that is not a
// test (guestbench): the boot's fabrics modules, configfs, lo and the host
// identity. Call it once.
func PrepareFabrics(b *Boot) error {
	if len(b.FabricsModules) == 0 {
		return fmt.Errorf("profile %s carries no NVMe/TCP modules (use a profile with nvmf)", b.Profile)
	}
	return loadFabrics(b.FabricsModules)
}

func loadFabrics(mods []string) error {
	if err := guest.LoadModules(guest.ModuleDir, mods, nil); err != nil {
		return err
	}
	if err := guest.MountConfigfs(); err != nil {
		return err
	}
	if err := guest.LoopbackUp(); err != nil {
		return err
	}
	return guest.WriteHostIdentity(HostNQN, HostID)
}

// ToolPath is where the harness put a carried tool (Profile.Tools) in the
// guest.
func ToolPath(name string) string { return guest.BinDir + "/" + name }

// ToolCmd returns the command that runs a carried tool, for a test that
// starts it itself (in the background, or with its own stdin). It fails
// the test when the profile did not carry the tool.
func (e *Env) ToolCmd(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	p, err := ParseProfile(e.boot.Profile)
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	carried := false
	for _, n := range p.Tools {
		carried = carried || n == name
	}
	if !carried {
		t.Fatalf("vmtest: profile %s does not carry %s (Profile.Tools: %v)", p.Name, name, p.Tools)
	}
	cmd := exec.Command(ToolPath(name), args...)
	cmd.Dir = "/tmp"
	return cmd
}

// RunTool runs a carried tool and returns its combined output and its
// error (an *exec.ExitError for a non-zero status): for a test that
// expects the tool to fail.
func (e *Env) RunTool(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	out, err := e.ToolCmd(t, name, args...).CombinedOutput()
	return string(out), err
}

// Tool runs a carried tool, logs the command line and the start of its
// output and returns the output (combined); a non-zero status fails the
// test with all of it.
func (e *Env) Tool(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := e.RunTool(t, name, args...)
	t.Logf("$ %s %s\n%s", name, quoteArgs(args), headLines(out, toolLogLines))
	if err != nil {
		t.Fatalf("vmtest: %s %s: %v\n%s", name, quoteArgs(args), err, out)
	}
	return out
}

// toolLogLines is how much of a tool's output Tool logs.
const toolLogLines = 24

// headLines returns the first n lines of s, and how many it left out.
func headLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n+1 {
		return s
	}
	return strings.Join(lines[:n], "") + fmt.Sprintf("[... %d more lines]\n", len(lines)-n)
}

func quoteArgs(args []string) string {
	s := ""
	for i, a := range args {
		if i > 0 {
			s += " "
		}
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\") {
			a = strconv.Quote(a)
		}
		s += a
	}
	return s
}

// KernelTargetConfig describes a subsystem of the kernel's NVMe/TCP target.
type KernelTargetConfig struct {
	// NQN of the subsystem; empty: DefaultKernelTargetNQN.
	NQN string
	// Devices are the namespaces' block devices ("/dev/nvme0n1",
	// "/dev/nullb0"), NSID 1 first. At least one.
	Devices []string
	// Addr and Port to listen on; zero values: KernelTargetAddr,
	// KernelTargetPort.
	Addr string
	Port int
	// DiscoveryPort, when not zero, is a second port the subsystem is
	// linked into: nvmet answers discovery on every port but listens only
	// on ports with a subsystem linked, and its discovery log lists the
	// entries of the port asked (so 8009's log names the subsystem at 8009).
	DiscoveryPort int
}

// KernelTarget is a subsystem of the kernel target (nvmet) made by
// Env.KernelTarget.
type KernelTarget struct {
	NQN  string
	Addr string
	Port int

	sub *guest.NVMetSubsystem // its ports: the data port first
}

// DefaultKernelTargetNQN is the subsystem NQN KernelTarget uses when the
// configuration names none.
const DefaultKernelTargetNQN = "nqn.2024-01.io.gonvme:nvmet"

// KernelTarget exports block devices through the kernel's own NVMe/TCP
// target (nvmet, configured through configfs; LoadFabrics first, which it
// calls): one subsystem open to any host, one namespace per device, a TCP
// port on Addr:Port (127.0.0.1:4420 by default) and optionally a second
// one for discovery. The subsystem is removed when the test ends (after
// the cleanups registered later, so a test disconnects its hosts first).
// Call it from the test's goroutine.
func (e *Env) KernelTarget(t testing.TB, cfg KernelTargetConfig) *KernelTarget {
	t.Helper()
	e.LoadFabrics(t)
	if len(cfg.Devices) == 0 {
		t.Fatal("vmtest: KernelTarget: no devices")
	}
	if cfg.NQN == "" {
		cfg.NQN = DefaultKernelTargetNQN
	}
	if cfg.Addr == "" {
		cfg.Addr = KernelTargetAddr
	}
	if cfg.Port == 0 {
		cfg.Port = KernelTargetPort
	}
	ports := []guest.NVMetPort{{ID: 1, Addr: cfg.Addr, Service: strconv.Itoa(cfg.Port)}}
	if cfg.DiscoveryPort != 0 {
		ports = append(ports, guest.NVMetPort{ID: 2, Addr: cfg.Addr, Service: strconv.Itoa(cfg.DiscoveryPort)})
	}
	sub, err := guest.NewNVMetSubsystem(cfg.NQN, cfg.Devices, ports)
	if err != nil {
		t.Fatalf("vmtest: kernel target: %v", err)
	}
	t.Cleanup(func() {
		if err := sub.Remove(); err != nil {
			t.Errorf("vmtest: kernel target: %v", err)
		}
	})
	return &KernelTarget{NQN: cfg.NQN, Addr: cfg.Addr, Port: cfg.Port, sub: sub}
}

// String returns the target as a gonvme controller name:
// tcp://ADDR:PORT/NQN.
func (k *KernelTarget) String() string {
	return fmt.Sprintf("tcp://%s:%d/%s", k.Addr, k.Port, k.NQN)
}

// Unlink removes the subsystem from its data port: the port stops
// listening and connected hosts lose their connections (a fault for
// reconnect tests). Link puts it back.
func (k *KernelTarget) Unlink(t testing.TB) {
	t.Helper()
	if err := k.sub.Unlink(k.sub.Ports[0]); err != nil {
		t.Fatalf("vmtest: %v", err)
	}
}

// Link links the subsystem into its data port again after Unlink.
func (k *KernelTarget) Link(t testing.TB) {
	t.Helper()
	if err := k.sub.Link(k.sub.Ports[0]); err != nil {
		t.Fatalf("vmtest: %v", err)
	}
}

// blockName is a namespace's block device as the kernel names it with
// multipath on (nvme<subsystem>n<nsid>) or off (nvme<ctrl>n<nsid>); the
// hidden per-path devices (nvme0c1n1) do not match.
var blockName = regexp.MustCompile(`^nvme\d+n(\d+)$`)

// FabricsDevice waits until the kernel initiator has a live controller of
// the subsystem nqn and the block device of its namespace nsid, and
// returns the controller ("nvme1", /dev/nvme1 is its char device) and the
// block device path ("/dev/nvme1n1"). Any goroutine may call it.
func (e *Env) FabricsDevice(t testing.TB, nqn string, nsid int, timeout time.Duration) (ctrl, block string) {
	t.Helper()
	ctrl, block, err := WaitFabricsDevice(nqn, nsid, timeout)
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	return ctrl, block
}

// WaitFabricsDevice is Env.FabricsDevice for a guest program that is not a
// test (guestbench): it returns an error instead of failing a test.
func WaitFabricsDevice(nqn string, nsid int, timeout time.Duration) (ctrl, block string, err error) {
	deadline := time.Now().Add(timeout)
	for {
		ctrl, block = findFabricsDevice(nqn, nsid)
		if ctrl != "" && block != "" {
			if err := guest.WaitOpen(block, os.O_RDONLY, time.Until(deadline)); err != nil {
				return "", "", err
			}
			return ctrl, block, nil
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("no live controller and namespace %d of %s after %v (found controller %q, block %q)", nsid, nqn, timeout, ctrl, block)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sysString(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func findFabricsDevice(nqn string, nsid int) (ctrl, block string) {
	ents, _ := os.ReadDir("/sys/class/nvme")
	for _, e := range ents {
		d := filepath.Join("/sys/class/nvme", e.Name())
		if sysString(filepath.Join(d, "subsysnqn")) == nqn && sysString(filepath.Join(d, "state")) == "live" {
			ctrl = e.Name()
		}
	}
	blks, _ := os.ReadDir("/sys/block")
	for _, b := range blks {
		m := blockName.FindStringSubmatch(b.Name())
		if m == nil || m[1] != strconv.Itoa(nsid) {
			continue
		}
		if sysString(filepath.Join("/sys/block", b.Name(), "device", "subsysnqn")) == nqn {
			block = "/dev/" + b.Name()
		}
	}
	return ctrl, block
}

// FabricsGone waits until the kernel has no controller of subsystem nqn
// left (after nvme disconnect).
func (e *Env) FabricsGone(t testing.TB, nqn string, timeout time.Duration) {
	t.Helper()
	if err := WaitFabricsGone(nqn, timeout); err != nil {
		t.Fatalf("vmtest: %v", err)
	}
}

// WaitFabricsGone is Env.FabricsGone for a guest program that is not a
// test: it returns an error instead of failing a test.
func WaitFabricsGone(nqn string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		found := ""
		ents, _ := os.ReadDir("/sys/class/nvme")
		for _, e := range ents {
			if sysString(filepath.Join("/sys/class/nvme", e.Name(), "subsysnqn")) == nqn {
				found = e.Name()
			}
		}
		if found == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("controller %s of %s still there after %v", found, nqn, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StartKernelTarget is run --nvmet's target, for the guest init: it
// prepares the fabrics (PrepareFabrics) and exports devices and null_blk
// (/dev/nullb0, the last namespace) as DefaultKernelTargetNQN on
// KernelTargetAddr:KernelTargetPort, with discovery on
// KernelTargetDiscoveryPort. It returns the subsystem's tcp:// name. The
// target lives until the guest powers off.
func StartKernelTarget(b *Boot, devices []string) (string, error) {
	if err := PrepareFabrics(b); err != nil {
		return "", err
	}
	devs := append(append([]string(nil), devices...), "/dev/nullb0")
	ports := []guest.NVMetPort{
		{ID: 1, Addr: KernelTargetAddr, Service: strconv.Itoa(KernelTargetPort)},
		{ID: 2, Addr: KernelTargetAddr, Service: strconv.Itoa(KernelTargetDiscoveryPort)},
	}
	if _, err := guest.NewNVMetSubsystem(DefaultKernelTargetNQN, devs, ports); err != nil {
		return "", err
	}
	return fmt.Sprintf("tcp://%s:%d/%s", KernelTargetAddr, KernelTargetPort, DefaultKernelTargetNQN), nil
}
