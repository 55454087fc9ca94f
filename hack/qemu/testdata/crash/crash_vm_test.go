package crash_test

import (
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// TestCrash kills its test binary with a panic on another goroutine: the
// binary exits without a --- FAIL line for the test, and the harness must
// still fail the boot and name the test.
func TestCrash(t *testing.T) {
	vmtest.Require(t, "default")
	go func() { panic("selftest fixture: the test binary crashes") }()
	time.Sleep(time.Minute)
}
