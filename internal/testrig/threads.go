package testrig

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ThreadSwitches returns the voluntary context switches of each thread of
// the process (/proc/self/task/TID/status), by thread ID. It reports an
// error (not fatal: it may run off the test's goroutine) if the task
// directory cannot be read.
func ThreadSwitches(t testing.TB) map[string]uint64 {
	m := map[string]uint64{}
	e, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Error(err)
		return m
	}
	for _, x := range e {
		b, err := os.ReadFile("/proc/self/task/" + x.Name() + "/status")
		if err != nil {
			continue // ended meanwhile
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "voluntary_ctxt_switches:"); ok {
				m[x.Name()], _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	return m
}

// NanosleepThreads returns the threads seen in nanosleep(2) over 50 looks
// a millisecond apart (/proc/self/task/TID/syscall): among the Go
// runtime's threads the monitor (sysmon) sleeps there, and spinning
// threads briefly.
func NanosleepThreads(t testing.TB) map[string]bool {
	m := map[string]bool{}
	for range 50 {
		e, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Error(err)
			return m
		}
		for _, x := range e {
			b, _ := os.ReadFile("/proc/self/task/" + x.Name() + "/syscall")
			if f := strings.Fields(string(b)); len(f) > 0 && f[0] == strconv.Itoa(unix.SYS_NANOSLEEP) {
				m[x.Name()] = true
			}
		}
		time.Sleep(time.Millisecond)
	}
	return m
}
