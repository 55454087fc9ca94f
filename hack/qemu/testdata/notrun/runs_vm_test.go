package notrun_test

import (
	"testing"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// TestRuns passes, so the guest binary exists and reports something.
func TestRuns(t *testing.T) {
	vmtest.Require(t, "default")
}
