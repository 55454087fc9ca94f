package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/guest"
)

// QEMU exit codes from isa-debug-exit: (value << 1) | 1.
const (
	exitPass = 0x10<<1 | 1 // 33
	exitFail = 0x01<<1 | 1 // 3
)

// verdict is what one boot showed.
type verdict struct {
	Pass   bool
	Reason string // why it did not pass
	// Test names are qualified by the package when the guest named it
	// ("nvme/pcie.TestX"; see qualify).
	Passed     []string // top-level tests with --- PASS
	Failed     []string // top-level tests with --- FAIL, each "TestX: first failure line"
	Skipped    []string // tests and subtests with --- SKIP: a skip in the guest is a failure
	NotRun     []string // selected tests that reported nothing (checkSelected)
	NoTests    []string // packages whose binary said "no tests to run"
	KernelLog  []string // guest kernel log records, as the guest printed them
	Faults     []string // kernel log records that break a rule and no test declared
	ExitStatus int      // run mode: the command's status, -1 if none printed
}

var (
	resultRe  = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+)`)
	runRe     = regexp.MustCompile(`^=== (?:RUN|CONT)\s+(\S+)`)
	msgRe     = regexp.MustCompile(`^\s+\S+\.go:\d+: `)
	pkgRe     = regexp.MustCompile(`^gonvme-init: (\S+) -test\.run `)
	noTestsRe = regexp.MustCompile(`^testing: warning: no tests to run`)
)

// qualify names a test by its package as reports show it.
func qualify(pkg, test string) string {
	if pkg == "" {
		return test
	}
	return strings.TrimPrefix(pkg, modulePath+"/") + "." + test
}

// judge reads a boot's console output and QEMU's exit: a pass needs the
// pass code AND the guest's pass line, no panic, no failed or skipped
// test, and no guest kernel log record that breaks a rule
// (guest.KernelLogRules) unless a test declared it.
func judge(lines []string, exitCode int, timedOut bool, timeout time.Duration) verdict {
	v := verdict{ExitStatus: -1}
	var panicLine, failLine, goPanic string
	passLine := false
	firstMsg := map[string]string{}
	current, pkg := "", ""
	expected := map[uint64]bool{}
	var kmsg []guest.KmsgRecord
	for _, l := range lines {
		l = strings.TrimRight(l, "\r")
		if r, ok := guest.ParseKmsgLine(l); ok {
			kmsg = append(kmsg, r)
			v.KernelLog = append(v.KernelLog, l)
			continue
		}
		if rest, ok := strings.CutPrefix(l, guest.KmsgExpectedPrefix); ok {
			if seq, err := strconv.ParseUint(strings.Fields(rest + " x")[0], 10, 64); err == nil {
				expected[seq] = true
			}
			continue
		}
		if m := pkgRe.FindStringSubmatch(l); m != nil {
			pkg = m[1]
		}
		if noTestsRe.MatchString(l) {
			v.NoTests = append(v.NoTests, strings.TrimPrefix(pkg, modulePath+"/"))
		}
		if m := runRe.FindStringSubmatch(l); m != nil {
			current = qualify(pkg, strings.SplitN(m[1], "/", 2)[0])
		}
		if current != "" && msgRe.MatchString(l) && firstMsg[current] == "" {
			firstMsg[current] = strings.TrimSpace(l)
		}
		if m := resultRe.FindStringSubmatch(l); m != nil {
			name := qualify(pkg, m[2])
			top := !strings.Contains(m[2], "/")
			switch {
			case m[1] == "PASS" && top:
				v.Passed = append(v.Passed, name)
			case m[1] == "FAIL" && top:
				v.Failed = append(v.Failed, name)
			case m[1] == "SKIP":
				v.Skipped = append(v.Skipped, name)
			}
		}
		if panicLine == "" && strings.Contains(l, "Kernel panic") {
			panicLine = strings.TrimSpace(l)
		}
		if goPanic == "" && strings.HasPrefix(l, "panic: ") {
			goPanic = strings.TrimSpace(l) // a test binary crashed or timed out
		}
		if strings.HasPrefix(l, guest.PassLine) {
			passLine = true
		}
		if strings.HasPrefix(l, guest.FailPrefix) {
			failLine = strings.TrimSpace(strings.TrimPrefix(l, guest.FailPrefix+":"))
		}
		if strings.HasPrefix(l, guest.ExitPrefix) {
			if n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(l, guest.ExitPrefix))); err == nil {
				v.ExitStatus = n
			}
		}
	}
	for _, r := range kmsg {
		if rule := guest.MatchKernelLog(r.Text); rule != "" && !expected[r.Seq] {
			v.Faults = append(v.Faults, rule+": "+r.Text)
		}
	}
	for i, name := range v.Failed {
		if msg := firstMsg[name]; msg != "" {
			v.Failed[i] = name + ": " + msg
		}
	}
	switch {
	case timedOut:
		v.Reason = fmt.Sprintf("timed out after %v: guest hung, QEMU killed", timeout)
	case panicLine != "":
		v.Reason = "guest kernel panic: " + panicLine
	case len(v.Failed) > 0:
		v.Reason = "tests failed: " + strings.Join(v.Failed, "; ")
	case len(v.Faults) > 0:
		v.Reason = "guest kernel log: " + strings.Join(v.Faults, "; ")
	case len(v.Skipped) > 0:
		v.Reason = "tests skipped in the guest (a skip there is a failure): " + strings.Join(v.Skipped, ", ")
	case len(v.NoTests) > 0:
		v.Reason = "test binary ran no tests (\"no tests to run\"): " + strings.Join(v.NoTests, ", ")
	case exitCode == exitPass && passLine:
		v.Pass = true
	case exitCode == exitPass:
		v.Reason = "QEMU exited with the pass code but the guest printed no pass line"
	case exitCode == exitFail && failLine != "":
		v.Reason = "guest reported failure: " + failLine
		if goPanic != "" {
			v.Reason += " (" + goPanic + ")"
		}
	case exitCode == exitFail:
		v.Reason = "guest reported failure (no reason printed)"
	case exitCode == 0:
		v.Reason = "QEMU exited 0 without a verdict: the guest powered off, rebooted or panicked"
	default:
		v.Reason = fmt.Sprintf("QEMU exited %d without a verdict", exitCode)
	}
	if len(v.Faults) > 0 && !strings.HasPrefix(v.Reason, "guest kernel log") && v.Reason != "" {
		v.Reason += "; guest kernel log: " + strings.Join(v.Faults, "; ")
	}
	return v
}

// checkSelected compares the tests the host selected for a boot (qualified
// names) with what the guest reported: each must have passed or failed by
// name. Those that did neither are "selected but did not run" and fail the
// boot.
func (v *verdict) checkSelected(selected []string) {
	seen := map[string]bool{}
	for _, n := range v.Passed {
		seen[n] = true
	}
	for _, f := range v.Failed {
		name, _, _ := strings.Cut(f, ": ")
		seen[name] = true
	}
	for _, n := range selected {
		if !seen[n] {
			v.NotRun = append(v.NotRun, n)
		}
	}
	if len(v.NotRun) == 0 {
		return
	}
	msg := "selected but did not run: " + strings.Join(v.NotRun, ", ")
	if v.Pass {
		v.Pass = false
		v.Reason = msg
	} else {
		v.Reason += "; " + msg
	}
}

// failures counts what a boot adds to "N failed": failed, skipped and
// not-run tests, and one for a boot that failed without any of those.
func (v *verdict) failures() int {
	n := len(v.Failed) + len(v.Skipped) + len(v.NotRun)
	if !v.Pass && n == 0 {
		n = 1
	}
	return n
}
