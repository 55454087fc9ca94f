package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// ciBootTimeout bounds each VM test boot in ci, which has about 20 minutes
// on 2 cores for everything: a hung boot must not eat it all.
const ciBootTimeout = 5 * time.Minute

// staticcheck is the pinned staticcheck the ci verb runs.
const staticcheck = "honnef.co/go/tools/cmd/staticcheck@v0.8.2"

// ciVerb runs everything a fresh machine needs to trust a change: setup,
// gofmt, go vet, staticcheck, lockcheck, host tests with -race, the harness
// selftest, VM tests, and the bench in its smoke mode. Every step that is
// not ok counts as at least one failure in the last line.
func ciVerb(args []string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	var (
		passed, failed int
		steps          []string
	)
	step := func(name string, t0 time.Time, p, f int, err error) {
		if err != nil && f == 0 {
			f = 1 // a step that is not ok is never "0 failed"
		}
		passed += p
		failed += f
		status := "ok  "
		if err != nil || f > 0 {
			status = "FAIL"
		}
		line := fmt.Sprintf("%s %-10s %3d passed, %3d failed (%.0fs)", status, name, p, f, time.Since(t0).Seconds())
		if err != nil {
			line += ": " + err.Error()
		}
		steps = append(steps, line)
		fmt.Println("ci:", line)
	}
	out := os.Stdout
	// The host's steal over the whole run goes in the summary: on a host
	// that is itself a VM, a slow run may be the neighbours' (steal.go).
	steal := newStealClock(procStat)
	defer func() {
		if pct := steal.lap(); !math.IsNaN(pct) {
			fmt.Printf("host CPU steal over the run: %.1f%% of the host's CPU time\n", pct)
		}
	}()

	t0 := time.Now()
	assets, err := setup(out)
	if err != nil {
		step("setup", t0, 0, 1, err)
		return ciEnd(steps, passed, failed)
	}
	step("setup", t0, 1, 0, nil)
	steps = append(steps, "versions: "+versions(assets))

	// The static checks. lockcheck's builds go first, alone: one go
	// command compiles the module and the standard library once, on every
	// CPU, and vet and staticcheck then find those compiles in the cache.
	// Started at once on a cold cache, each go command compiled them
	// again (134 s on 2 CPUs). All three build as the guest's binaries are
	// built (guestEnv), so the VM tests' builds reuse the compiles too; a
	// package with cgo files is vetted and staticchecked a second time with
	// the host's default (cgo on), which guestEnv turns off. They are
	// printed and counted in this order.
	t0 = time.Now()
	lb, lerr := lockBuild(guestEnv)
	if lerr == nil {
		defer lb.cleanup()
	}
	buildTime := time.Since(t0)
	cgoPkgs, cgoErr := listCgoPackages()
	checks := []struct {
		name string
		run  func(out io.Writer) error
	}{
		{"gofmt", func(io.Writer) error {
			fmtOut, err := exec.Command("gofmt", "-l", ".").CombinedOutput()
			if err == nil && len(bytes.TrimSpace(fmtOut)) > 0 {
				err = fmt.Errorf("gofmt would change: %s", strings.Join(strings.Fields(string(fmtOut)), " "))
			}
			return err
		}},
		{"vet", func(out io.Writer) error {
			if err := runStreamEnv(out, guestEnv, "go", "vet", "./..."); err != nil || cgoErr != nil || len(cgoPkgs) == 0 {
				return cmp.Or(err, cgoErr)
			}
			return runStreamEnv(out, nil, "go", append([]string{"vet"}, cgoPkgs...)...)
		}},
		// staticcheck, pinned, from the module proxy (STYLE.md: vet and
		// staticcheck clean), installed once for both runs.
		{"staticcheck", func(out io.Writer) error {
			if cgoErr != nil {
				return cgoErr
			}
			dir, err := os.MkdirTemp("", "gonvme-staticcheck-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			if err := runStreamEnv(out, []string{"GOBIN=" + dir, "CGO_ENABLED=0"}, "go", "install", staticcheck); err != nil {
				return err
			}
			bin := filepath.Join(dir, "staticcheck")
			if err := runStreamEnv(out, guestEnv, bin, "./..."); err != nil || len(cgoPkgs) == 0 {
				return err
			}
			return runStreamEnv(out, nil, bin, cgoPkgs...)
		}},
		// No register store may be a locked instruction (internal/mmio):
		// disassemble what would ship and what the tests run.
		{"lockcheck", func(out io.Writer) error {
			if lerr != nil {
				return lerr
			}
			return lb.check(out)
		}},
	}
	type checkResult struct {
		log bytes.Buffer
		err error
		d   time.Duration
	}
	results := make([]checkResult, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			results[i].err = c.run(&results[i].log)
			results[i].d = time.Since(t)
		}()
	}
	wg.Wait()
	results[len(checks)-1].d += buildTime // lockcheck's builds
	for i, c := range checks {
		r := &results[i]
		out.Write(r.log.Bytes())
		step(c.name, time.Now().Add(-r.d), boolCount(r.err == nil), boolCount(r.err != nil), r.err)
	}
	fmt.Fprintf(out, "ci: static checks %.0fs (lockcheck's builds, alone: %.0fs)\n", time.Since(t0).Seconds(), buildTime.Seconds())

	t0 = time.Now()
	hr, err := hostTests(out)
	if err == nil {
		err = hr.checkSkips()
	}
	step("host tests", t0, hr.Passed, hr.Failed+len(hr.unexpectedSkips()), err)
	steps = append(steps, hr.failReport()...)
	steps = append(steps, hr.skipReport()...)

	// The selftest after the host tests, not beside them: beside them
	// both took longer than one after the other (203 s and 131 s against
	// 126 s and 52 s on 2 CPUs), and a timed host test failed.
	t0 = time.Now()
	p, f, err := selftest(out)
	step("selftest", t0, p, f, err)

	t0 = time.Now()
	s, err := runVMTests(&testOptions{bootFlags: bootFlags{Timeout: ciBootTimeout}, Patterns: []string{"./..."}, Out: out})
	if err == nil {
		printSummary(out, s)
	}
	if len(s.Problems) > 0 && err == nil {
		err = fmt.Errorf("%s", strings.Join(s.Problems, "; "))
	}
	if err == nil && s.Passed == 0 {
		err = fmt.Errorf("no VM test passed: a ci that ran none proves nothing")
	}
	step("vm tests", t0, s.Passed, s.Failed, err)

	// The bench's parsers and nvmectl perf's JSON, on real guest output.
	t0 = time.Now()
	err = benchSmoke(out)
	step("bench smoke", t0, boolCount(err == nil), boolCount(err != nil), err)
	return ciEnd(steps, passed, failed)
}

// listCgoPackages lists the module's packages with cgo files under the
// host's default environment: none when cgo is off there (no C compiler).
func listCgoPackages() ([]string, error) {
	out, err := exec.Command("go", "list", "-f", "{{if .CgoFiles}}{{.ImportPath}}{{end}}", "./...").Output()
	if err != nil {
		return nil, fmt.Errorf("go list (cgo packages): %w", err)
	}
	return strings.Fields(string(out)), nil
}

// versions names what the run depended on: the guest kernel (it floats
// with Debian's updates), QEMU and Go.
func versions(a *Assets) string {
	qemu := strings.TrimPrefix(qemuVersion(a.QEMU), "QEMU emulator version ")
	goVer := "unknown"
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		goVer = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("guest kernel %s (%s), QEMU %s, %s", a.Release, a.Kernel, qemu, goVer)
}

func boolCount(b bool) int {
	if b {
		return 1
	}
	return 0
}

func ciEnd(steps []string, passed, failed int) error {
	fmt.Println("--- ci summary")
	for _, s := range steps {
		fmt.Println(s)
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return exitError{1}
	}
	return nil
}

// runStreamEnv runs a command with env added to its environment, its
// output streamed to out.
func runStreamEnv(out io.Writer, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// testEvent is one line of `go test -json`.
type testEvent struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// hostResult is what the host tests showed.
type hostResult struct {
	Passed, Failed int
	Skips          []hostSkip
	FailedPackages []string // packages whose test binary failed
	FailedTests    []string // top-level tests that failed, as package.Test
}

// hostSkip is one skipped host test and the reason it printed.
type hostSkip struct {
	Package, Test, Reason string
}

// hostTests runs `go test -race -count=1 -json ./...` (never cached: a
// cached pass proves nothing about this machine), streams package results
// and the output of failed tests, and counts top-level tests and skips.
func hostTests(out io.Writer) (hostResult, error) {
	cmd := exec.Command("go", "test", "-race", "-count=1", "-json", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = io.MultiWriter(out, &stderr)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return hostResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return hostResult{}, err
	}
	r := countTestEvents(pipe, out)
	werr := cmd.Wait()
	if werr != nil && r.Failed == 0 {
		r.Failed = 1 // a build failure or a crash outside any test
	}
	if werr != nil {
		werr = fmt.Errorf("go test -race -count=1 ./...: %w", werr)
	}
	return r, werr
}

// countTestEvents renders a `go test -json` stream the way plain `go test`
// prints it (package lines, output of failing tests) and counts top-level
// test results and failed packages without a failed test.
func countTestEvents(r io.Reader, out io.Writer) (res hostResult) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	pending := map[string][]string{} // package/test -> output so far
	failedIn := map[string]int{}
	for sc.Scan() {
		var e testEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			fmt.Fprintln(out, sc.Text())
			continue
		}
		key := e.Package + "/" + e.Test
		switch {
		case e.Action == "output" && e.Test == "":
			if !strings.HasPrefix(e.Output, "=== ") && !strings.HasPrefix(e.Output, "--- ") &&
				e.Output != "PASS\n" && e.Output != "FAIL\n" && !strings.HasPrefix(e.Output, "    --- ") {
				fmt.Fprint(out, e.Output)
			}
		case e.Action == "output":
			pending[key] = append(pending[key], e.Output)
		case e.Action == "pass" && e.Test != "":
			if !strings.Contains(e.Test, "/") {
				res.Passed++
			}
			delete(pending, key)
		case e.Action == "fail" && e.Test != "":
			// A failing subtest's output is where the reason is: print
			// it as it fails, as plain go test does; count only
			// top-level tests.
			fmt.Fprint(out, strings.Join(pending[key], ""))
			if !strings.Contains(e.Test, "/") {
				res.Failed++
				failedIn[e.Package]++
				res.FailedTests = append(res.FailedTests, qualify(e.Package, e.Test))
			}
			delete(pending, key)
		case e.Action == "skip" && e.Test != "":
			res.Skips = append(res.Skips, hostSkip{Package: e.Package, Test: e.Test, Reason: skipReason(pending[key])})
			delete(pending, key)
		case e.Action == "fail" && e.Test == "":
			// Tests of the package that started and never ended were
			// running when the binary died (a panic in a goroutine, a
			// fatal error, a timeout): their output holds the reason,
			// and test2json reports no result for them. Print it and
			// count each as failed.
			var hung []string
			for k := range pending {
				if test, ok := strings.CutPrefix(k, e.Package+"/"); ok && test != "" {
					hung = append(hung, test)
				}
			}
			slices.Sort(hung)
			for _, test := range hung {
				fmt.Fprintf(out, "--- FAIL: %s (did not end: its test binary exited)\n", test)
				fmt.Fprint(out, strings.Join(pending[e.Package+"/"+test], ""))
				delete(pending, e.Package+"/"+test)
				if !strings.Contains(test, "/") {
					res.Failed++
					failedIn[e.Package]++
					res.FailedTests = append(res.FailedTests, qualify(e.Package, test))
				}
			}
			if failedIn[e.Package] == 0 {
				res.Failed++ // build failure, panic in TestMain
			}
			res.FailedPackages = append(res.FailedPackages, e.Package)
		}
	}
	return res
}

// failReport names, for the summary, the host tests and packages that
// failed: the summary is the part of a long log that is read.
func (r hostResult) failReport() []string {
	var lines []string
	if len(r.FailedTests) > 0 {
		lines = append(lines, "host failures: "+strings.Join(r.FailedTests, ", "))
	}
	if len(r.FailedPackages) > 0 {
		var short []string
		for _, p := range r.FailedPackages {
			short = append(short, strings.TrimPrefix(p, modulePath+"/"))
		}
		lines = append(lines, "host packages failed: "+strings.Join(short, ", "))
	}
	return lines
}

// skipReason is what a skipped test printed, without the --- SKIP line.
func skipReason(output []string) string {
	var msg []string
	for _, l := range output {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- SKIP") {
			continue
		}
		msg = append(msg, l)
	}
	return strings.Join(msg, " | ")
}
