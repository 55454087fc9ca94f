package panic_test

import (
	"os"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// TestPanic crashes the guest kernel: QEMU exits 0, the harness must see
// the panic.
func TestPanic(t *testing.T) {
	vmtest.Require(t, "default")
	if err := os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0); err != nil {
		t.Fatalf("sysrq: %v", err)
	}
	time.Sleep(time.Minute)
}
