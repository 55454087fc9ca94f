package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// selfCase is one proof that the harness tells a bad boot from a good one.
type selfCase struct {
	name    string
	fixture string   // directory under hack/qemu/testdata
	flags   []string // extra test flags
	pass    bool     // the run must pass
	want    []string // substrings the failure message or output must hold
}

var selfCases = []selfCase{
	{name: "passing tests pass, a declared kernel log record too", fixture: "pass", pass: true},
	{name: "failing test fails", fixture: "fail", want: []string{"tests failed", "TestFail", "intentional failure"}},
	{name: "guest kernel panic fails", fixture: "panic", want: []string{"guest kernel panic", "sysrq triggered crash"}},
	{name: "hung guest times out", fixture: "hang", flags: []string{"--timeout", "6s"}, want: []string{"timed out after 6s"}},
	{name: "missing device fails the test", fixture: "missing", flags: []string{"--omit-device", "nvme1"},
		want: []string{"TestMissing", "nvme1", "device missing"}},
	{name: "skip in the guest fails", fixture: "skip",
		want: []string{"tests skipped in the guest", "skip.TestSkip"}},
	{name: "selected test that never ran fails", fixture: "notrun",
		want: []string{"selected but did not run", "notrun.TestCgoOnly"}},
	{name: "crashing test binary fails", fixture: "crash",
		want: []string{"selected but did not run", "crash.TestCrash", "panic: selftest fixture"}},
	{name: "DMAR fault fails the boot", fixture: "dmar",
		want: []string{"guest kernel log", "dmar fault", "DMAR"}},
	{name: "kernel WARNING fails the boot", fixture: "warning",
		want: []string{"guest kernel log: warning", "WARNING: CPU: 0 PID: 1 at selftest/warning.c:1"}},
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the gonvme module")
	}
	return filepath.Dir(gomod), nil
}

func selftestVerb(args []string) error {
	passed, failed, err := selftest(os.Stdout)
	if err != nil {
		return err
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return exitError{1}
	}
	return nil
}

// selftest runs the fixtures, two at a time on a machine with two CPUs
// or more (each case is a short boot and its build; the hang case mostly
// waits), and returns the cases that behaved and not. Each case's output
// is written in one piece when it ends.
func selftest(out io.Writer) (passed, failed int, err error) {
	root, err := moduleRoot()
	if err != nil {
		return 0, 0, err
	}
	// One setup before the cases, so two of them never install at once.
	if _, err := setup(out); err != nil {
		return 0, 0, err
	}
	lines := make([]string, len(selfCases))
	oks := make([]bool, len(selfCases))
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, min(2, max(1, runtime.NumCPU())))
	)
	for i, c := range selfCases {
		var buf bytes.Buffer
		o := &testOptions{Out: &buf}
		fs := newTestFlagSet(o)
		if err := fs.Parse(c.flags); err != nil {
			return 0, 0, err
		}
		o.Patterns = []string{filepath.Join(root, "hack/qemu/testdata", c.fixture)}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			t0 := time.Now()
			s, runErr := runVMTests(o)
			ok, why := judgeSelf(c, s, runErr, buf.String())
			status := "FAIL "
			if ok {
				status = "ok   "
			}
			line := fmt.Sprintf("%s%s (%.1fs): %s", status, c.name, time.Since(t0).Seconds(), why)
			mu.Lock()
			defer mu.Unlock()
			lines[i], oks[i] = line, ok
			fmt.Fprintf(out, "=== selftest: %s\n%s", c.name, buf.Bytes())
			fmt.Fprintln(out, "selftest:", line)
		}()
	}
	wg.Wait()
	fmt.Fprintln(out, "--- selftest summary")
	for i, l := range lines {
		if oks[i] {
			passed++
		} else {
			failed++
		}
		fmt.Fprintln(out, l)
	}
	return passed, failed, nil
}

// judgeSelf checks one case's outcome against what it must show.
func judgeSelf(c selfCase, s testSummary, runErr error, output string) (bool, string) {
	if runErr != nil {
		return false, "harness error: " + runErr.Error()
	}
	bad := s.Failed > 0 || len(s.Problems) > 0
	msg := strings.Join(s.Problems, "; ")
	if c.pass {
		if bad || s.Passed == 0 {
			return false, fmt.Sprintf("want pass, got %d passed, %d failed: %s", s.Passed, s.Failed, msg)
		}
		return true, fmt.Sprintf("%d passed", s.Passed)
	}
	if !bad {
		return false, "want a failure, the harness reported success"
	}
	for _, w := range c.want {
		if !strings.Contains(msg, w) && !strings.Contains(output, w) {
			return false, fmt.Sprintf("failure message lacks %q: %s", w, msg)
		}
	}
	return true, "failed as it must: " + msg
}
