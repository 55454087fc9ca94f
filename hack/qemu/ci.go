package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ciBootTimeout bounds each VM test boot in ci, which has about 20 minutes
// on 2 cores for everything: a hung boot must not eat it all.
const ciBootTimeout = 5 * time.Minute

// staticcheck is the pinned staticcheck the ci verb runs.
const staticcheck = "honnef.co/go/tools/cmd/staticcheck@v0.8.2"

// ciVerb runs everything a fresh machine needs to trust a change: setup,
// gofmt, go vet, staticcheck, host tests with -race, the harness selftest,
// VM tests.
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

	t0 := time.Now()
	if _, err := setup(out); err != nil {
		step("setup", t0, 0, 1, err)
		return ciEnd(steps, passed, failed)
	}
	step("setup", t0, 1, 0, nil)

	t0 = time.Now()
	fmtOut, err := exec.Command("gofmt", "-l", ".").CombinedOutput()
	if err == nil && len(bytes.TrimSpace(fmtOut)) > 0 {
		err = fmt.Errorf("gofmt would change: %s", strings.Join(strings.Fields(string(fmtOut)), " "))
	}
	step("gofmt", t0, boolCount(err == nil), boolCount(err != nil), err)

	t0 = time.Now()
	err = runStream(out, "go", "vet", "./...")
	step("vet", t0, boolCount(err == nil), boolCount(err != nil), err)

	// staticcheck, pinned, from the module proxy (STYLE.md: vet and
	// staticcheck clean).
	t0 = time.Now()
	err = runStream(out, "go", "run", staticcheck, "./...")
	step("staticcheck", t0, boolCount(err == nil), boolCount(err != nil), err)

	t0 = time.Now()
	p, f, err := hostTests(out)
	step("host tests", t0, p, f, err)

	t0 = time.Now()
	p, f, err = selftest(out)
	step("selftest", t0, p, f, err)

	t0 = time.Now()
	s, err := runVMTests(&testOptions{bootFlags: bootFlags{Timeout: ciBootTimeout}, Patterns: []string{"./..."}, Out: out})
	if err == nil {
		printSummary(out, s)
	} else {
		s.Failed++
	}
	if len(s.Problems) > 0 && err == nil {
		err = fmt.Errorf("%s", strings.Join(s.Problems, "; "))
	}
	step("vm tests", t0, s.Passed, s.Failed, err)
	return ciEnd(steps, passed, failed)
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

func runStream(out io.Writer, name string, args ...string) error {
	cmd := exec.Command(name, args...)
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

// hostTests runs `go test -race -json ./...`, streams package results and
// the output of failed tests, and counts top-level tests.
func hostTests(out io.Writer) (passed, failed int, err error) {
	cmd := exec.Command("go", "test", "-race", "-json", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = io.MultiWriter(out, &stderr)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	p, f := countTestEvents(pipe, out)
	werr := cmd.Wait()
	if werr != nil && f == 0 {
		f = 1 // a build failure or a crash outside any test
	}
	if werr != nil {
		werr = fmt.Errorf("go test -race ./...: %w", werr)
	}
	return p, f, werr
}

// countTestEvents renders a `go test -json` stream the way plain `go test`
// prints it (package lines, output of failing tests) and counts top-level
// test results and failed packages without a failed test.
func countTestEvents(r io.Reader, out io.Writer) (passed, failed int) {
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
				passed++
			}
			delete(pending, key)
		case e.Action == "fail" && e.Test != "":
			// A failing subtest's output is where the reason is: print
			// it as it fails, as plain go test does; count only
			// top-level tests.
			fmt.Fprint(out, strings.Join(pending[key], ""))
			if !strings.Contains(e.Test, "/") {
				failed++
				failedIn[e.Package]++
			}
			delete(pending, key)
		case e.Action == "skip" && e.Test != "":
			delete(pending, key)
		case e.Action == "fail" && e.Test == "" && failedIn[e.Package] == 0:
			failed++ // build failure, panic in TestMain, timeout
		}
	}
	return passed, failed
}
