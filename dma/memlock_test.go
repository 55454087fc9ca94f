package dma

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// memlockChildEnv makes TestMemlockChild run: set only in the subprocess
// TestMemlock starts.
const memlockChildEnv = "GONVME_DMA_MEMLOCK_CHILD"

// The markers the child prints for the parent.
const (
	memlockOK      = "memlock-child: ok"
	memlockHasCap  = "memlock-child: has CAP_IPC_LOCK"
	memlockLimit   = 64 << 10
	memlockRequest = 1 << 20
)

// TestMemlock runs TestMemlockChild in a subprocess that has no
// CAP_IPC_LOCK (as root: the same binary run as nobody, which drops every
// capability), so that RLIMIT_MEMLOCK applies to it. The child lowers its
// own limit; this process's limit is never touched.
func TestMemlock(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestMemlockChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), memlockChildEnv+"=1")
	if os.Geteuid() == 0 {
		// Root holds CAP_IPC_LOCK, which lifts the limit. Run a copy of
		// the test binary as nobody, from a directory nobody can enter.
		dir, err := os.MkdirTemp("", "dma-memlock-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cp := filepath.Join(dir, "dma.test")
		if err := copyFile(cp, exe); err != nil {
			t.Fatal(err)
		}
		cmd.Path, cmd.Args[0] = cp, cp
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	switch {
	case strings.Contains(string(out), memlockHasCap):
		t.Skipf("the subprocess keeps CAP_IPC_LOCK (ambient capabilities?), so RLIMIT_MEMLOCK does not apply to it:\n%s", out)
	case err != nil || !strings.Contains(string(out), memlockOK):
		t.Fatalf("memlock subprocess: %v\n%s", err, out)
	}
	t.Logf("subprocess output:\n%s", out)
}

// TestMemlockChild is the subprocess of TestMemlock.
func TestMemlockChild(t *testing.T) {
	if os.Getenv(memlockChildEnv) == "" {
		t.Skip("runs only as TestMemlock's subprocess")
	}
	if hasCapIPCLock() {
		t.Log(memlockHasCap)
		return
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = memlockLimit
	if lim.Max != unix.RLIM_INFINITY && lim.Max < lim.Cur {
		lim.Cur = lim.Max
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		t.Fatal(err)
	}
	a := newTestAllocator(t, nil, WithHugePages(false))
	small := mustAlloc(t, a, 16<<10) // below the limit: fine
	_, err := a.Alloc(memlockRequest)
	if !errors.Is(err, ErrMemlock) {
		t.Fatalf("alloc of %d bytes under a %d-byte limit = %v, want ErrMemlock", memlockRequest, lim.Cur, err)
	}
	t.Logf("the limit speaks: %v", err)
	for _, want := range []string{
		"RLIMIT_MEMLOCK is " + strconv.FormatUint(lim.Cur, 10) + " bytes",
		"16384 bytes already locked",
		strconv.Itoa(memlockRequest) + " more needed",
		"ulimit -l", "LimitMEMLOCK",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if st := a.Stats(); st.Buffers != 1 {
		t.Errorf("failed alloc changed the accounting: %+v", st)
	}
	if err := a.Free(small); err != nil {
		t.Fatal(err)
	}
	if !t.Failed() {
		t.Log(memlockOK)
	}
}

// hasCapIPCLock reports whether CAP_IPC_LOCK (bit 14) is in this process's
// effective set.
func hasCapIPCLock() bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_IPC_LOCK) != 0
		}
	}
	return false
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
