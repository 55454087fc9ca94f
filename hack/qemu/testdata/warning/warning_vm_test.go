package warning_test

import (
	"os"
	"testing"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// TestMain logs a kernel WARNING record after every test has finished, out
// of any test's window: only the host's check of the whole boot's kernel
// log can catch it.
func TestMain(m *testing.M) {
	code := m.Run()
	if vmtest.InGuest() {
		if err := os.WriteFile("/dev/kmsg", []byte("WARNING: CPU: 0 PID: 1 at selftest/warning.c:1 fixture+0x0/0x1\n"), 0); err != nil {
			code = 1
		}
	}
	os.Exit(code)
}

// TestQuiet passes.
func TestQuiet(t *testing.T) {
	vmtest.Require(t, "default")
}
