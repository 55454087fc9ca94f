// Command guestinit is PID 1 of a gonvme QEMU guest. It mounts the virtual
// file systems, loads the VFIO modules, reserves hugepages, then runs what
// the boot description (vmtest.Boot) asks: each test binary with its
// -test.run filter, or one command with the controllers bound. It prints a
// pass line (or a fail line), drains the console and reports the verdict to
// QEMU's isa-debug-exit port: 0x10 for pass (QEMU exits 33), 1 for fail
// (QEMU exits 3). PID 1 never returns.
//
// It is built statically (CGO_ENABLED=0) by the harness and may import
// vmtest, hack/qemu/internal/guest, vfio and x/sys/unix.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/guest"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// Port and values of QEMU's isa-debug-exit device (see QEMU.md).
const (
	debugExitPort = 0xf4
	verdictPass   = 0x10
	verdictFail   = 0x01
)

func main() {
	start := time.Now()
	pass, why := run()
	if pass {
		fmt.Printf("%s (guest %.1fs)\n", guest.PassLine, time.Since(start).Seconds())
	} else {
		fmt.Printf("%s: %s\n", guest.FailPrefix, why)
	}
	verdict(pass)
}

func run() (bool, string) {
	if err := mountAll(); err != nil {
		return false, err.Error()
	}
	boot, err := vmtest.LoadBoot()
	var why string
	if err != nil {
		return false, err.Error()
	}
	for k, v := range map[string]string{
		guest.EnvGuest: "1", guest.EnvBoot: guest.BootPath, "PATH": guest.BinDir + ":/bin:/sbin:/usr/bin",
		"HOME": "/root", "TMPDIR": "/tmp",
	} {
		os.Setenv(k, v)
	}
	t0 := time.Now()
	if err := guest.LoadModules(guest.ModuleDir, boot.VFIOModules, nil); err != nil {
		return false, err.Error()
	}
	fmt.Printf("gonvme-init: %d VFIO modules loaded in %v\n", len(boot.VFIOModules), time.Since(t0).Round(time.Millisecond))
	if boot.HugePages > 0 {
		p := "/proc/sys/vm/nr_hugepages"
		if err := os.WriteFile(p, []byte(strconv.Itoa(boot.HugePages)), 0); err != nil {
			return false, fmt.Sprintf("set %s: %v", p, err)
		}
	}
	var pass bool
	if len(boot.Command) > 0 {
		pass, why = runCommand(boot)
	} else {
		pass, why = runTests(boot)
	}
	if err := dumpKernelLog(); err != nil {
		return false, err.Error()
	}
	return pass, why
}

// dumpKernelLog prints the whole kernel log, one record a line, for the
// host to judge (guest.KmsgPrefix). It first gives a late record (a fault
// reported by interrupt) a moment to arrive.
func dumpKernelLog() error {
	time.Sleep(100 * time.Millisecond)
	k, err := guest.OpenKmsg(false)
	if err != nil {
		return err
	}
	defer k.Close()
	recs, err := k.ReadNew()
	if err != nil {
		return err
	}
	for _, r := range recs {
		fmt.Println(r.Line())
	}
	fmt.Printf("gonvme-init: %d kernel log records\n", len(recs))
	return nil
}

func mountAll() error {
	for _, m := range []struct {
		src, dst, fstype string
		must             bool
	}{
		{"proc", "/proc", "proc", true},
		{"sysfs", "/sys", "sysfs", true},
		{"devtmpfs", "/dev", "devtmpfs", true},
		{"tmpfs", "/run", "tmpfs", false},
		{"hugetlbfs", "/dev/hugepages", "hugetlbfs", false},
		{"debugfs", "/sys/kernel/debug", "debugfs", false},
		{"tracefs", "/sys/kernel/tracing", "tracefs", false},
		{"bpf", "/sys/fs/bpf", "bpf", false},
	} {
		_ = os.MkdirAll(m.dst, 0o755)
		err := unix.Mount(m.src, m.dst, m.fstype, 0, "")
		if err != nil && !errors.Is(err, unix.EBUSY) && m.must {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	return os.MkdirAll("/tmp", 0o1777)
}

func runTests(boot *vmtest.Boot) (bool, string) {
	var failed []string
	for _, t := range boot.Tests {
		dir := filepath.Join("/tmp/work", filepath.Base(t.Binary))
		_ = os.MkdirAll(dir, 0o755)
		fmt.Printf("gonvme-init: %s -test.run '%s'\n", t.Package, t.Run)
		args := []string{"-test.v", "-test.run", t.Run}
		if boot.TestTimeout != "" {
			args = append(args, "-test.timeout", boot.TestTimeout)
		}
		cmd := exec.Command(t.Binary, args...)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Printf("gonvme-init: %s: %v\n", t.Package, err)
			failed = append(failed, t.Package)
		}
	}
	if len(failed) > 0 {
		return false, "tests failed in " + strings.Join(failed, ", ")
	}
	return true, ""
}

func runCommand(boot *vmtest.Boot) (bool, string) {
	var blocks []string // the controllers' first namespaces, on the kernel driver
	for _, c := range boot.Ctrls {
		switch boot.Bind {
		case "vfio":
			if _, err := vfio.Bind(c.Addr); err != nil {
				return false, fmt.Sprintf("bind %s to vfio-pci: %v", c.Addr, err)
			}
		case "kernel":
			if err := guest.LoadModules(guest.ModuleDir, boot.NVMeModules, nil); err != nil {
				return false, err.Error()
			}
			name, err := guest.BindKernel(c.Addr, time.Minute)
			if err != nil {
				return false, err.Error()
			}
			fmt.Printf("gonvme-init: %s is /dev/%s\n", c.Addr, name)
			blocks = append(blocks, "/dev/"+name+"n1")
		}
	}
	if !boot.NVMet && len(boot.FabricsModules) > 0 {
		// A profile with nvmf: the fabrics modules, configfs, lo and
		// the host identity, so that nvme-cli connect works.
		if err := vmtest.PrepareFabrics(boot); err != nil {
			return false, fmt.Sprintf("prepare NVMe/TCP: %v", err)
		}
	}
	if boot.NVMet {
		url, err := vmtest.StartKernelTarget(boot, blocks)
		if err != nil {
			return false, fmt.Sprintf("kernel NVMe/TCP target: %v", err)
		}
		fmt.Printf("gonvme-init: nvmet exports %s and /dev/nullb0 as %s (discovery on port %d)\n", strings.Join(blocks, ", "), url, vmtest.KernelTargetDiscoveryPort)
	}
	// The commands run in order, like a shell's &&: the first that
	// exits non-zero ends the run with its status. A background command
	// (run's "&") is started and left running, and gets SIGTERM (then,
	// after 10 s, SIGKILL) once the others are done; its own exit status
	// counts only if it ended on its own with a failure.
	code := 0
	var bg []*exec.Cmd
	for i, argv := range append([][]string{boot.Command}, boot.Then...) {
		background := slices.Contains(boot.Background, i)
		if len(boot.Then) > 0 {
			amp := ""
			if background {
				amp = " &"
			}
			fmt.Printf("gonvme-init: $ %s%s\n", strings.Join(append([]string{filepath.Base(argv[0])}, argv[1:]...), " "), amp)
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = "/tmp"
		cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
		if background {
			if err := cmd.Start(); err != nil {
				return false, fmt.Sprintf("start %s: %v", argv[0], err)
			}
			bg = append(bg, cmd)
			// A server needs a moment to listen before the next
			// command connects to it; there is no shell to poll with.
			time.Sleep(3 * time.Second)
			continue
		}
		code = exitCode(cmd.Run())
		if code < 0 {
			return false, fmt.Sprintf("run %s: did not start", argv[0])
		}
		if code != 0 {
			break
		}
	}
	for _, cmd := range bg {
		done := make(chan error, 1)
		_ = cmd.Process.Signal(unix.SIGTERM)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			fmt.Printf("gonvme-init: %s did not end on SIGTERM within 10 s: SIGKILL\n", filepath.Base(cmd.Path))
			_ = cmd.Process.Kill()
			<-done
		}
	}
	fmt.Printf("%s%d\n", guest.ExitPrefix, code)
	return true, ""
}

// exitCode turns cmd.Run's error into an exit status: 0 for nil, the
// status (128+signal for a signal) for an exit, -1 if it did not start.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		fmt.Printf("gonvme-init: %v\n", err)
		return -1
	}
	if code := ee.ExitCode(); code >= 0 {
		return code
	}
	return 128 + int(ee.Sys().(unix.WaitStatus).Signal())
}

// verdict drains the console and tells QEMU how the guest ended.
func verdict(pass bool) {
	v := byte(verdictFail)
	if pass {
		v = verdictPass
	}
	_ = unix.IoctlSetInt(1, unix.TCSBRK, 1) // wait until the UART sent everything
	if f, err := os.OpenFile("/dev/port", os.O_WRONLY, 0); err == nil {
		_, err = f.WriteAt([]byte{v}, debugExitPort)
		fmt.Printf("gonvme-init: write verdict: %v\n", err)
	} else {
		fmt.Printf("gonvme-init: open /dev/port: %v\n", err)
	}
	// Only reached without isa-debug-exit: QEMU exits 0 on power-off, which
	// the harness reads as "no verdict".
	_ = unix.IoctlSetInt(1, unix.TCSBRK, 1)
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	for {
		time.Sleep(time.Hour)
	}
}
