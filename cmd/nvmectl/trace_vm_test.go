package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// The trace VM tests: nvmectl trace on a live gonvme process (uprobes on
// its hooks) and on the kernel's nvme driver (tracepoints). Package main:
// see list_vm_test.go.

// proc is a helper process of this test binary with line-oriented output.
type proc struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	all   strings.Builder // every line, for the log
	done  chan struct{}
}

// startHelper runs this test binary's helper test name with env.
func startHelper(t *testing.T, name string, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	p := &proc{t: t, cmd: cmd, lines: make(chan string, 4096), done: make(chan struct{})}
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.all.WriteString(sc.Text() + "\n")
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	return p
}

// expect waits for a line starting with prefix and returns it.
func (p *proc) expect(prefix string, timeout time.Duration) string {
	p.t.Helper()
	tm := time.After(timeout)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("helper ended before printing %q; output:\n%s", prefix, p.output())
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-tm:
			p.t.Fatalf("no %q from the helper within %v; output:\n%s", prefix, timeout, p.output())
		}
	}
}

// wait waits for the process to exit and returns its output.
func (p *proc) wait(timeout time.Duration) (string, error) {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("helper still running after %v; output:\n%s", timeout, p.output())
	}
	for range p.lines {
	}
	err := p.cmd.Wait()
	return p.output(), err
}

func (p *proc) output() string {
	return p.all.String()
}

func (p *proc) send(line string) {
	p.t.Helper()
	if _, err := fmt.Fprintln(p.stdin, line); err != nil {
		p.t.Fatal(err)
	}
}

// stopTrace sends nvmectl trace SIGINT (Ctrl-C) and returns its output.
func stopTrace(t *testing.T, tr *proc) string {
	t.Helper()
	if err := tr.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	out, err := tr.wait(time.Minute)
	if err != nil {
		t.Fatalf("nvmectl trace: %v\n%s", err, out)
	}
	return out
}

// nvmectlProc runs nvmectl in a helper process.
func nvmectlProc(t *testing.T, args ...string) *proc {
	js, _ := json.Marshal(args)
	return startHelper(t, "TestHelperNvmectl", "GONVME_TEST_NVMECTL="+string(js))
}

// checkGuestTracing records what the guest kernel offers for tracing and
// fails with exactly what is missing.
func checkGuestTracing(t *testing.T) {
	t.Helper()
	for _, p := range []string{"/sys/kernel/tracing/events", "/sys/bus/event_source/devices/uprobe/type", "/sys/fs/bpf"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("guest kernel: %v", err)
		}
	}
	var u unix.Utsname
	unix.Uname(&u)
	t.Logf("guest kernel %s", unix.ByteSliceToString(u.Release[:]))
}

func TestVMTracePID(t *testing.T) {
	env := vmtest.Require(t, "default")
	checkGuestTracing(t)
	addr := env.BindVFIO(t, env.Controllers()[0])
	load := startHelper(t, "TestHelperLoad", "GONVME_TEST_LOAD="+addr)
	ready := load.expect("ready pid ", 2*time.Minute)
	pid := load.cmd.Process.Pid
	if ready != fmt.Sprintf("ready pid %d", pid) {
		t.Fatalf("load helper says %q, its pid is %d", ready, pid)
	}
	// Warm up without the probes.
	load.send("run 500 8")
	load.expect("done 500 errors 0", 2*time.Minute)

	// Session 1 brackets a counted run: attached before it starts,
	// detached after it ended, so the histograms hold exactly its reads.
	const n = 3000
	tr := nvmectlProc(t, "trace", "--pid", strconv.Itoa(pid), "--interval", "1s")
	tr.expect("Tracing PID "+strconv.Itoa(pid), time.Minute)
	load.send(fmt.Sprintf("run %d 16", n))
	done := load.expect("done ", 5*time.Minute)
	if !strings.HasPrefix(done, fmt.Sprintf("done %d errors 0 ", n)) {
		t.Fatalf("load: %q", done)
	}
	time.Sleep(1200 * time.Millisecond) // one interval line at least
	out := stopTrace(t, tr)
	t.Logf("session 1, nvmectl trace --pid %d around %d reads (%s):\n%s", pid, n, done, out)
	read, write, other, submits, unmatched, errs := traceTotals(t, out)
	if read != n || write != 0 || other != 0 || errs != 0 || submits != n || unmatched != 0 {
		t.Errorf("session 1 totals: read %d write %d other %d submits %d unmatched %d errors %d; want exactly %d reads",
			read, write, other, submits, unmatched, errs, n)
	}
	if got := histCounts(t, out[strings.LastIndex(out, "read latency:"):]); got != n {
		t.Errorf("session 1 histogram holds %d reads, want %d", got, n)
	}
	if strings.Count(out, "read latency:") < 2 {
		t.Error("session 1: no interval histogram before the total")
	}

	// Session 2 attaches and detaches while a long run is under way
	// (stopped once the session has ended).
	const n2 = 4000000
	load.send(fmt.Sprintf("run %d 16", n2))
	time.Sleep(500 * time.Millisecond)
	tr = nvmectlProc(t, "trace", "--pid", strconv.Itoa(pid), "--interval", "500ms")
	tr.expect("Tracing PID "+strconv.Itoa(pid), time.Minute)
	time.Sleep(2 * time.Second)
	out = stopTrace(t, tr)
	t.Logf("session 2, nvmectl trace --pid %d during a run:\n%s", pid, out)
	read, write, other, submits, unmatched, errs = traceTotals(t, out)
	// At attach up to one queue depth (16) of reads was in flight
	// (completions without a recorded submission); at detach as many
	// submissions may lack their completion.
	if read == 0 || read >= n2 || write != 0 || other != 0 || errs != 0 || unmatched > 16 || submits < read || submits > read+16 {
		t.Errorf("session 2 totals: read %d write %d other %d submits %d unmatched %d errors %d", read, write, other, submits, unmatched, errs)
	}
	if got := histCounts(t, out[strings.LastIndex(out, "read latency:"):]); got != read {
		t.Errorf("session 2 histogram holds %d reads, total line %d", got, read)
	}

	// Detached: the load runs on without errors, stops, and takes another
	// run and exits normally.
	time.Sleep(500 * time.Millisecond)
	load.send("stop")
	done = load.expect("done ", 2*time.Minute)
	var got, gotErrs, ms int
	if _, err := fmt.Sscanf(done, "done %d errors %d ms %d", &got, &gotErrs, &ms); err != nil || gotErrs != 0 || uint64(got) <= read || got >= n2 {
		t.Errorf("after detach: %q (session 2 saw %d reads of a run of %d)", done, read, n2)
	}
	load.send("run 1000 4")
	load.expect("done 1000 errors 0", 2*time.Minute)
	load.send("quit")
	load.expect("bye", time.Minute)
	lout, err := load.wait(time.Minute)
	if err != nil {
		t.Errorf("load process after detach: %v\n%s", err, lout)
	}
	if !strings.Contains(lout, "--- PASS: TestHelperLoad") {
		t.Errorf("load process did not pass:\n%s", lout)
	}
}

func TestVMTraceKernel(t *testing.T) {
	env := vmtest.Require(t, "default")
	checkGuestTracing(t)
	name := env.BindKernel(t, env.Controllers()[0])
	dev := "/dev/" + name + "n1"
	for _, ev := range []string{"nvme_setup_cmd", "nvme_complete_rq"} {
		b, err := os.ReadFile(filepath.Join("/sys/kernel/tracing/events/nvme", ev, "format"))
		if err != nil {
			t.Fatalf("tracepoint nvme:%s: %v", ev, err)
		}
		t.Logf("nvme:%s format:\n%s", ev, b)
	}
	tr := nvmectlProc(t, "trace", "--kernel", "--interval", "1s")
	tr.expect("Tracing the kernel nvme driver", time.Minute)

	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	const n = 2000
	var reads atomic.Int64
	errc := make(chan error, 1)
	go func() {
		for range n {
			off := rand.Int64N(size/4096) * 4096
			if _, err := f.ReadAt(buf, off); err != nil {
				errc <- err
				return
			}
			reads.Add(1)
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("read %s: %v", dev, err)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := tr.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	out, err := tr.wait(time.Minute)
	t.Logf("nvmectl trace --kernel while %d O_DIRECT reads of %s ran:\n%s", reads.Load(), dev, out)
	if err != nil {
		t.Fatalf("nvmectl trace --kernel: %v", err)
	}
	read, _, _, submits, unmatched, errs := traceTotals(t, out)
	// Every read we made, and little else: the guest runs nothing else
	// on the device.
	if read < n || read > n+20 || errs != 0 || unmatched > 4 || submits < read {
		t.Errorf("kernel trace: read %d (made %d), submits %d, unmatched %d, errors %d", read, n, submits, unmatched, errs)
	}
	last := out[strings.LastIndex(out, "read latency:"):]
	if got := histCounts(t, last); got != read {
		t.Errorf("final histogram holds %d reads, total line %d", got, read)
	}
}
