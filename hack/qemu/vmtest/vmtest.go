package vmtest

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/guest"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// Boot is the description of one guest boot that the harness writes into
// the initramfs (JSON at guest.BootPath) for the guest init and vmtest.
type Boot struct {
	Profile     string   `json:"profile"` // canonical profile name
	Ctrls       []Ctrl   `json:"ctrls"`   // the devices the profile declares
	VFIOModules []string `json:"vfio_modules"`
	NVMeModules []string `json:"nvme_modules"`
	HugePages   int      `json:"huge_pages"` // 2 MiB pages to reserve
	Tests       []Test   `json:"tests,omitempty"`
	// TestTimeout is passed on as -test.timeout (Go syntax, "" for none) so
	// that a hung test dumps its goroutines before the host kills QEMU.
	TestTimeout string     `json:"test_timeout,omitempty"`
	Command     []string   `json:"command,omitempty"` // run mode: argv[0] in guest.BinDir
	Then        [][]string `json:"then,omitempty"`    // run mode: further commands, run while each exits 0
	// Background (run mode) lists the commands, by index in Command
	// followed by Then, that are started and not waited for (run's
	// "&" separator); they get SIGTERM once the others are done.
	Background []int  `json:"background,omitempty"`
	Bind       string `json:"bind,omitempty"` // run mode: vfio, kernel or none
	// NVMet (run mode, run --nvmet): after binding, export the
	// controllers' namespaces through the kernel target (StartKernelTarget).
	NVMet bool `json:"nvmet,omitempty"`

	// FabricsModules are the NVMe over TCP modules in load order, carried
	// when the profile asks for them (Profile.Fabrics); Env.LoadFabrics.
	FabricsModules []string `json:"fabrics_modules,omitempty"`
}

// Test is one test binary to run in the guest with -test.run Run.
type Test struct {
	Package string `json:"package"`
	Binary  string `json:"binary"` // path in the guest
	Run     string `json:"run"`
}

// Env is the guest a VM test runs in.
type Env struct {
	t    testing.TB
	boot *Boot
	kmsg *guest.KmsgReader

	mu     sync.Mutex
	expect []kernelLogExpectation
}

type kernelLogExpectation struct {
	re  *regexp.Regexp
	why string
}

const bindTimeout = 60 * time.Second

// InGuest reports whether this process runs in a gonvme guest.
func InGuest() bool {
	if os.Getenv(guest.EnvGuest) != "1" {
		return false
	}
	_, err := os.Stat(bootPath())
	return err == nil
}

func bootPath() string {
	if p := os.Getenv(guest.EnvBoot); p != "" {
		return p
	}
	return guest.BootPath
}

// LoadBoot reads the boot description in a guest.
func LoadBoot() (*Boot, error) {
	b, err := os.ReadFile(bootPath())
	if err != nil {
		return nil, fmt.Errorf("vmtest: read boot description: %w", err)
	}
	var bt Boot
	if err := json.Unmarshal(b, &bt); err != nil {
		return nil, fmt.Errorf("vmtest: parse %s: %w", bootPath(), err)
	}
	return &bt, nil
}

// Require declares that the calling test needs a guest booted with the
// named device profile (a string literal: the harness reads it from the
// source). On the host (not in a gonvme guest) it calls t.Skip. In a guest
// booted with a different profile it skips with "runs in the <p> boot". In
// the right guest it returns the Env; if the profile's devices are missing
// it fails the test.
//
// From Require to the end of the test (after the test's own cleanups), the
// guest kernel's log is watched: a record that breaks one of
// guest.KernelLogRules (Oops, BUG, WARNING, a DMAR fault, an nvme timeout
// or reset, a hung task) fails the test unless the test declared it with
// ExpectKernelLog. The host checks the whole boot's log the same way.
func Require(t testing.TB, profile string) *Env {
	t.Helper()
	want, err := ParseProfile(profile)
	if err != nil {
		t.Fatalf("vmtest.Require: %v", err)
	}
	if !InGuest() {
		t.Skipf("vmtest: needs a QEMU guest with profile %q: go run ./hack/qemu test", want.Name)
	}
	boot, err := LoadBoot()
	if err != nil {
		t.Fatal(err)
	}
	if boot.Profile != want.Name {
		t.Skipf("vmtest: runs in the %s boot (this is the %s boot)", want.Name, boot.Profile)
	}
	e := &Env{t: t, boot: boot}
	k, err := guest.OpenKmsg(true)
	if err != nil {
		t.Fatalf("vmtest: the guest kernel log must be watched: %v", err)
	}
	e.kmsg = k
	t.Cleanup(func() { e.checkKernelLog(t) })
	e.checkDevices(t)
	return e
}

// ExpectKernelLog declares that this test causes guest kernel log records
// matching pattern (a regexp, as narrow as the cause allows) on purpose,
// for the reason given: they do not fail the test or the boot. Records
// that match no guest.KernelLogRule need no declaration. It may be called
// from the test's goroutine or its subtests.
func (e *Env) ExpectKernelLog(t testing.TB, pattern, why string) {
	t.Helper()
	re, err := regexp.Compile(pattern)
	if err != nil {
		t.Fatalf("vmtest: ExpectKernelLog: %v", err)
	}
	if why == "" {
		t.Fatalf("vmtest: ExpectKernelLog(%q): say why the test causes it", pattern)
	}
	e.mu.Lock()
	e.expect = append(e.expect, kernelLogExpectation{re: re, why: why})
	e.mu.Unlock()
}

// kernelLogSettle is how long a test that expects kernel log records
// waits for late ones (a fault reported by interrupt) before judging.
const kernelLogSettle = 200 * time.Millisecond

// checkKernelLog judges the records logged since Require.
func (e *Env) checkKernelLog(t testing.TB) {
	defer e.kmsg.Close()
	e.mu.Lock()
	expect := append([]kernelLogExpectation(nil), e.expect...)
	e.mu.Unlock()
	if len(expect) > 0 {
		time.Sleep(kernelLogSettle)
	}
	recs, err := e.kmsg.ReadNew()
	if err != nil {
		t.Errorf("vmtest: %v", err)
	}
	for _, r := range recs {
		rule := guest.MatchKernelLog(r.Text)
		if rule == "" {
			continue
		}
		claimed := false
		for _, x := range expect {
			if x.re.MatchString(r.Text) {
				// The host reads this line and does not fail the boot
				// for the record.
				fmt.Printf("%s%d %s %s\n", guest.KmsgExpectedPrefix, r.Seq, t.Name(), rule)
				t.Logf("vmtest: expected guest kernel log (%s; %s): %s", rule, x.why, r.Text)
				claimed = true
				break
			}
		}
		if !claimed {
			t.Errorf("vmtest: guest kernel log (%s) during the test: %q (a test that causes this on purpose declares it with env.ExpectKernelLog)", rule, r.Text)
		}
	}
}

// checkDevices fails the test for each declared controller the guest lacks.
func (e *Env) checkDevices(t testing.TB) {
	t.Helper()
	missing := 0
	for _, c := range e.boot.Ctrls {
		class, err := guest.PCIClass(c.Addr)
		if err != nil || class != vfio.ClassNVMe {
			t.Errorf("vmtest: profile %s declares controller %s (serial %s) at %s, but the guest has no NVMe controller there: device missing",
				e.boot.Profile, c.ID, c.Serial, c.Addr)
			missing++
		}
	}
	if missing > 0 {
		t.FailNow()
	}
}

// Profile returns the canonical name of the guest's profile.
func (e *Env) Profile() string { return e.boot.Profile }

// Controllers returns the controllers in profile order; it fails the test
// if the guest has fewer than the profile declares.
func (e *Env) Controllers() []Ctrl {
	e.t.Helper()
	e.checkDevices(e.t)
	out := make([]Ctrl, len(e.boot.Ctrls))
	copy(out, e.boot.Ctrls)
	return out
}

// BindVFIO binds the controller to vfio-pci (if not already) and returns
// its address. It registers no cleanup: the guest is thrown away.
//
// vfio.Bind's in-use check runs (mounts, swap, holders, exclusive opens,
// locks) but for data signatures: every package of a profile shares one
// boot and its disks, and a test may leave a file system on a namespace
// on purpose. A test that needs the signature check calls vfio.Bind.
func (e *Env) BindVFIO(t testing.TB, c Ctrl) string {
	t.Helper()
	if _, err := vfio.Bind(c.Addr, vfio.IgnoreSignatures()); err != nil {
		t.Fatalf("vmtest: bind %s (%s) to vfio-pci: %v", c.ID, c.Addr, err)
	}
	return c.Addr
}

var (
	nvmeOnce sync.Mutex
	nvmeErr  error
	nvmeDone bool
)

// LoadNVMeDriver loads the kernel's nvme driver with a module parameter
// string (e.g. "poll_queues=1"). Call it before the first BindKernel to
// pass parameters; later calls do nothing.
func (e *Env) LoadNVMeDriver(t testing.TB, params string) {
	t.Helper()
	if err := e.loadNVMe(params); err != nil {
		t.Fatalf("vmtest: %v", err)
	}
}

func (e *Env) loadNVMe(params string) error {
	nvmeOnce.Lock()
	defer nvmeOnce.Unlock()
	if !nvmeDone {
		nvmeErr = guest.LoadModules(guest.ModuleDir, e.boot.NVMeModules, map[string]string{"nvme": params})
		nvmeDone = true
	}
	return nvmeErr
}

// BindKernel gives the controller to the kernel nvme driver, loading it
// first if needed, and waits for /dev/nvmeX and its first namespace. It
// returns the controller's char device name ("nvme0") and registers no
// cleanup.
func (e *Env) BindKernel(t testing.TB, c Ctrl) string {
	t.Helper()
	if err := e.loadNVMe(""); err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	name, err := guest.BindKernel(c.Addr, bindTimeout)
	if err != nil {
		t.Fatalf("vmtest: %s: %v", c.ID, err)
	}
	return name
}

// Monitor sends one HMP command to QEMU's monitor (reached from the guest
// over a serial port) and returns its output.
func (e *Env) Monitor(t testing.TB, cmd string) string {
	t.Helper()
	out, err := guest.Monitor(cmd, 60*time.Second)
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	return out
}
