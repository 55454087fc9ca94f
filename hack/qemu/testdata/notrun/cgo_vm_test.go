//go:build cgo

package notrun_test

import (
	"testing"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// TestCgoOnly is compiled out of the CGO_ENABLED=0 guest binary: the host
// selects it, the guest never runs it, and the harness must say so.
func TestCgoOnly(t *testing.T) {
	vmtest.Require(t, "default")
}
