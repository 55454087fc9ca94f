package missing_test

import (
	"testing"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// TestMissing runs with --omit-device nvme1: vmtest must fail it (not skip
// it) and name the device.
func TestMissing(t *testing.T) {
	env := vmtest.Require(t, "two-ctrl")
	if n := len(env.Controllers()); n != 2 {
		t.Fatalf("controllers = %d, want 2", n)
	}
}
