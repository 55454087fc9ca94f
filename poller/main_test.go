package poller_test

import (
	"os"
	"runtime"
	"testing"
)

// TestMain gives the tests more Ps than pollers: a busy poller holds its P
// for good, and on a 2-CPU host the fake controller's device goroutine and
// the test goroutines would otherwise wait for preemption (10 ms) to run.
// The package doc asks the same of real programs.
func TestMain(m *testing.M) {
	if runtime.GOMAXPROCS(0) < 8 {
		runtime.GOMAXPROCS(8)
	}
	os.Exit(m.Run())
}
