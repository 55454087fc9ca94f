package reliability_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain runs the tests, except in the child process TestVMKill starts
// (childEnv set): that process runs killChild, which is not a test, so a
// run of it is never counted as a test that passed. The child exits 1 when
// it cannot go on; otherwise it is killed.
func TestMain(m *testing.M) {
	if params, ok := os.LookupEnv(childEnv); ok {
		if err := killChild(params); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestKillChildIsNoTest: with childEnv set, the test binary runs killChild
// and no test at all, whatever -test.run says, so the child can never be
// reported as a test that passed; bad parameters exit 1 with the reason.
func TestKillChildIsNoTest(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.v", "-test.short", "-test.run=.", "-test.skip=^TestKillChildIsNoTest$")
	cmd.Env = append(os.Environ(), childEnv+"=not-an-address")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("child with bad parameters: %v, want exit status 1", err)
	}
	if !strings.Contains(stderr.String(), childEnv+`="not-an-address"`) {
		t.Errorf("stderr %q does not name the bad parameters", stderr.String())
	}
	if out := stdout.String(); strings.Contains(out, "=== RUN") || strings.Contains(out, "PASS") {
		t.Errorf("the child ran tests:\n%s", out)
	}
}
