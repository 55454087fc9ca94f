package main

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// expectedSkip is a host test that skips on the CI machine (root, 2 CPUs,
// Debian 12, this harness's setup) for a reason that is not a missing
// part: the one place that says so. Any other skip fails ci, so a run that
// quietly lost tests (non-root, one CPU, no hugepages) cannot go green.
type expectedSkip struct {
	Package string         // import path below the module
	Test    *regexp.Regexp // the test (or subtest) name, anchored
	Reason  *regexp.Regexp // what its skip message must say
	Why     string         // why the skip is right on the CI machine
}

// vmSkipReason is what vmtest.Require says on the host: every VM test skips
// there and runs in the guest, where a skip is a failure.
var vmSkipReason = regexp.MustCompile(`^(\S+\.go:\d+: )?vmtest: needs a QEMU guest`)

var expectedSkips = []expectedSkip{
	{Package: "cmd/nvmectl", Test: regexp.MustCompile(`^TestHelperLoad$`), Reason: regexp.MustCompile(`helper process of TestVMTracePID`),
		Why: "the entry point of a subprocess a VM test starts, not a test of its own"},
	{Package: "cmd/nvmectl", Test: regexp.MustCompile(`^TestHelperNvmectl$`), Reason: regexp.MustCompile(`helper process of the trace VM tests`),
		Why: "the entry point of a subprocess a VM test starts, not a test of its own"},
	{Package: "dma", Test: regexp.MustCompile(`^TestMemlockChild$`), Reason: regexp.MustCompile(`runs only as TestMemlock's subprocess`),
		Why: "the entry point of TestMemlock's subprocess, which runs it under a lowered RLIMIT_MEMLOCK"},
}

func (s hostSkip) String() string {
	return fmt.Sprintf("%s.%s: %s", strings.TrimPrefix(s.Package, modulePath+"/"), s.Test, s.Reason)
}

// expected reports whether a skip is listed (or a VM test on the host).
func (s hostSkip) expected() (string, bool) {
	if vmSkipReason.MatchString(s.Reason) {
		return "VM test: runs in the guest", true
	}
	pkg := strings.TrimPrefix(s.Package, modulePath+"/")
	for _, e := range expectedSkips {
		if e.Package == pkg && e.Test.MatchString(s.Test) && e.Reason.MatchString(s.Reason) {
			return e.Why, true
		}
	}
	return "", false
}

func (r hostResult) unexpectedSkips() []hostSkip {
	var out []hostSkip
	for _, s := range r.Skips {
		if _, ok := s.expected(); !ok {
			out = append(out, s)
		}
	}
	return out
}

// checkSkips fails when a host test skipped for a reason not listed in
// expectedSkips.
func (r hostResult) checkSkips() error {
	bad := r.unexpectedSkips()
	if len(bad) == 0 {
		return nil
	}
	names := make([]string, len(bad))
	for i, s := range bad {
		names[i] = s.String()
	}
	return fmt.Errorf("%d host tests skipped that the CI machine must run (list expected ones in hack/qemu/skips.go): %s", len(bad), strings.Join(names, "; "))
}

// skipReport prints every host skip by name with its reason, counted, for
// the ci summary.
func (r hostResult) skipReport() []string {
	vm := 0
	var listed, other []string
	for _, s := range r.Skips {
		why, ok := s.expected()
		switch {
		case ok && vmSkipReason.MatchString(s.Reason):
			vm++
		case ok:
			listed = append(listed, fmt.Sprintf("  skip (expected: %s) %s", why, s))
		default:
			other = append(other, "  skip (NOT EXPECTED) "+s.String())
		}
	}
	sort.Strings(listed)
	sort.Strings(other)
	out := []string{fmt.Sprintf("host skips: %d VM tests (run in the guest), %d expected, %d not expected",
		vm, len(listed), len(other))}
	out = append(out, listed...)
	return append(out, other...)
}
