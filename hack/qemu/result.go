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
	Pass       bool
	Reason     string   // why it did not pass
	Passed     []string // top-level tests with --- PASS
	Failed     []string // with --- FAIL, each "TestX: first failure line"
	Skipped    []string
	ExitStatus int // run mode: the command's status, -1 if none printed
}

var (
	resultRe = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+)`)
	runRe    = regexp.MustCompile(`^=== (?:RUN|CONT)\s+(\S+)`)
	msgRe    = regexp.MustCompile(`^\s+\S+\.go:\d+: `)
)

// judge reads a boot's console output and QEMU's exit: a pass needs the
// pass code AND the guest's pass line, no panic, and no failed test.
func judge(lines []string, exitCode int, timedOut bool, timeout time.Duration) verdict {
	v := verdict{ExitStatus: -1}
	var panicLine, failLine, goPanic string
	passLine := false
	firstMsg := map[string]string{}
	current := ""
	for _, l := range lines {
		l = strings.TrimRight(l, "\r")
		if m := runRe.FindStringSubmatch(l); m != nil {
			current = strings.SplitN(m[1], "/", 2)[0]
		}
		if current != "" && msgRe.MatchString(l) && firstMsg[current] == "" {
			firstMsg[current] = strings.TrimSpace(l)
		}
		if m := resultRe.FindStringSubmatch(l); m != nil {
			switch m[1] {
			case "PASS":
				v.Passed = append(v.Passed, m[2])
			case "FAIL":
				v.Failed = append(v.Failed, m[2])
			case "SKIP":
				v.Skipped = append(v.Skipped, m[2])
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
	return v
}
