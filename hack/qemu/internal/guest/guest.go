// Package guest holds what the gonvme guest init and package vmtest share
// inside a QEMU guest: where the harness puts things in the initramfs,
// module loading, sysfs waits, and the guest end of the monitor channel.
//
// It runs only in the guest (Linux) and imports only the standard library
// and golang.org/x/sys/unix. Every function may be called from any
// goroutine; Monitor serializes callers with a lock file.
package guest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/seedb8fa28ef/gonvme/vfio"
	"golang.org/x/sys/unix"
)

// Paths and variables the harness and guest agree on.
const (
	// EnvGuest is set to "1" in the environment of everything the guest
	// init starts.
	EnvGuest = "GONVME_GUEST"
	// EnvBoot names the boot description (JSON, vmtest.Boot).
	EnvBoot = "GONVME_BOOT"
	// BootPath is where the harness puts the boot description.
	BootPath = "/gonvme/boot.json"
	// ModuleDir holds the kernel modules.
	ModuleDir = "/gonvme/modules"
	// BinDir holds the test binaries and commands.
	BinDir = "/gonvme/bin"
	// MonitorTTY is the serial port the host relays to QEMU's monitor.
	MonitorTTY = "/dev/ttyS1"

	// PassLine is printed by the guest init when everything passed;
	// FailPrefix starts the line it prints otherwise; ExitPrefix precedes
	// the exit status of a command in run mode.
	PassLine   = "GONVME-GUEST: PASS"
	FailPrefix = "GONVME-GUEST: FAIL"
	ExitPrefix = "GONVME-GUEST: EXIT "

	// MonitorReply starts the host's answer on the monitor channel:
	// "GONVME-MON <n>\n" then n bytes of monitor output. MonitorError is
	// the same for an error message.
	MonitorReply = "GONVME-MON "
	MonitorError = "GONVME-MONERR "
)

// LoadModules loads the named .ko files from dir in order with
// finit_module. params maps a module name (file name without .ko) to its
// parameter string. A module that is already loaded is not an error.
func LoadModules(dir string, names []string, params map[string]string) error {
	for _, n := range names {
		if err := loadModule(filepath.Join(dir, n), params[strings.TrimSuffix(n, ".ko")]); err != nil {
			return err
		}
	}
	return nil
}

func loadModule(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), params, 0)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", filepath.Base(path), err)
	}
	return nil
}

// WaitFor waits until path exists.
func WaitFor(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitOpen waits until path opens with flag, for up to timeout. A disk's
// node appears (sysfs, devtmpfs) before the kernel has finished adding
// the disk, and an open in between fails with ENXIO: a test that opened a
// namespace the moment its node appeared failed so once in CI (nvme/tcp/
// target, TestVMNamespaceChangeReachesKernelInitiator). ENXIO, ENODEV and
// ENOENT are retried; other errors are returned at once.
func WaitOpen(path string, flag int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		f, err := os.OpenFile(path, flag, 0)
		if err == nil {
			return f.Close()
		}
		if !errors.Is(err, syscall.ENXIO) && !errors.Is(err, syscall.ENODEV) && !errors.Is(err, syscall.ENOENT) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not open within %v: %w", path, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Driver returns the driver bound to a PCI device, "" for none.
func Driver(addr string) string {
	l, err := os.Readlink(filepath.Join("/sys/bus/pci/devices", addr, "driver"))
	if err != nil {
		return ""
	}
	return filepath.Base(l)
}

// PCIClass returns the class code of a PCI device.
func PCIClass(addr string) (uint32, error) {
	b, err := os.ReadFile(filepath.Join("/sys/bus/pci/devices", addr, "class"))
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 32)
	return uint32(v), err
}

// BindKernel gives the controller at addr to the kernel nvme driver (the
// modules must be loaded), from whatever driver it is on (vfio.Release),
// and waits for its char device and first namespace's block device. It
// returns the char device name ("nvme0").
func BindKernel(addr string, timeout time.Duration) (string, error) {
	if Driver(addr) != "nvme" {
		if err := vfio.Release(addr, "nvme"); err != nil {
			return "", fmt.Errorf("bind %s to nvme: %w", addr, err)
		}
	}
	deadline := time.Now().Add(timeout)
	dir := filepath.Join("/sys/bus/pci/devices", addr, "nvme")
	var name string
	for name == "" {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "nvme") {
				name = e.Name()
			}
		}
		if name == "" {
			if time.Now().After(deadline) {
				return "", fmt.Errorf("bind %s to nvme: no controller in %s after %v", addr, dir, timeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, p := range []string{"/dev/" + name, "/sys/block/" + name + "n1"} {
		if err := WaitFor(p, time.Until(deadline)); err != nil {
			return "", fmt.Errorf("bind %s to nvme: %w", addr, err)
		}
	}
	if err := WaitOpen("/dev/"+name+"n1", os.O_RDONLY, time.Until(deadline)); err != nil {
		return "", fmt.Errorf("bind %s to nvme: %w", addr, err)
	}
	return name, nil
}

// Monitor sends one HMP command over MonitorTTY and returns the output.
func Monitor(cmd string, timeout time.Duration) (string, error) {
	if strings.ContainsAny(cmd, "\r\n") {
		return "", fmt.Errorf("monitor command %q: one line only", cmd)
	}
	lock, err := os.OpenFile("/run/gonvme-monitor.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		_ = os.MkdirAll("/run", 0o755)
		if lock, err = os.OpenFile("/run/gonvme-monitor.lock", os.O_CREATE|os.O_RDWR, 0o600); err != nil {
			return "", fmt.Errorf("monitor lock: %w", err)
		}
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("monitor lock: %w", err)
	}
	tty, err := os.OpenFile(MonitorTTY, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return "", fmt.Errorf("monitor: %w", err)
	}
	defer tty.Close()
	if err := makeRaw(tty); err != nil {
		return "", fmt.Errorf("monitor: %w", err)
	}
	if err := tty.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", fmt.Errorf("monitor: %w", err)
	}
	if _, err := tty.WriteString(cmd + "\n"); err != nil {
		return "", fmt.Errorf("monitor %q: %w", cmd, err)
	}
	r := bufio.NewReader(tty)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("monitor %q: no reply: %w", cmd, err)
		}
		line = strings.TrimRight(line, "\r\n")
		isErr := strings.HasPrefix(line, MonitorError)
		if !isErr && !strings.HasPrefix(line, MonitorReply) {
			continue // noise from before the reply
		}
		n, err := strconv.Atoi(strings.TrimSpace(line[strings.IndexByte(line, ' ')+1:]))
		if err != nil || n < 0 || n > 16<<20 {
			return "", fmt.Errorf("monitor %q: bad reply header %q", cmd, line)
		}
		body := make([]byte, n)
		if _, err := ioReadFull(r, body); err != nil {
			return "", fmt.Errorf("monitor %q: short reply: %w", cmd, err)
		}
		if isErr {
			return "", fmt.Errorf("monitor %q: %s", cmd, body)
		}
		return string(body), nil
	}
}

func ioReadFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// makeRaw switches a tty to raw mode: no echo, no line editing, no CR/LF
// translation.
func makeRaw(f *os.File) error {
	// SyscallConn, not Fd: Fd would switch the file to blocking mode and
	// disable the read deadline.
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ctlErr error
	if err := rc.Control(func(fd uintptr) { ctlErr = setRaw(int(fd)) }); err != nil {
		return err
	}
	return ctlErr
}

func setRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("tcgets: %w", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8 | unix.CLOCAL | unix.CREAD
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("tcsets: %w", err)
	}
	return nil
}
