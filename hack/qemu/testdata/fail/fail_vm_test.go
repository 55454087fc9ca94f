package fail_test

import (
	"testing"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// TestFail fails on purpose: the harness must exit non-zero.
func TestFail(t *testing.T) {
	vmtest.Require(t, "default")
	t.Fatal("intentional failure from the selftest fixture")
}
