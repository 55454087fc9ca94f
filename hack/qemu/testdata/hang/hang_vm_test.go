package hang_test

import (
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// TestHang never returns: the harness must kill QEMU at its time limit.
func TestHang(t *testing.T) {
	vmtest.Require(t, "default")
	time.Sleep(24 * time.Hour)
}
