package guest

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The guest kernel's log travels to the host on the console, one record a
// line, so the host judges it (a guest-side mistake cannot hide a fault):
//
//	GONVME-KMSG <seq> <level> <text>         every record, printed by the guest init at the end
//	GONVME-KMSG-EXPECTED <seq> <test> <rule> a record a test declared it causes (vmtest)
//
// The host fails a boot on every record that matches a KernelLogRule and
// that no test claimed.
const (
	KmsgPrefix         = "GONVME-KMSG "
	KmsgExpectedPrefix = "GONVME-KMSG-EXPECTED "
)

// KmsgRecord is one record of /dev/kmsg (Documentation/ABI/testing/dev-kmsg).
type KmsgRecord struct {
	Seq      uint64
	Level    int // 0 emerg .. 7 debug
	Facility int // 0 kernel, 1 user (a record written to /dev/kmsg), ...
	Text     string
}

// ParseKmsg parses one record as read(2) returns it from /dev/kmsg:
// "prio,seq,usec,flags[,...];text\n" followed by " KEY=value" dictionary
// lines, which are dropped.
func ParseKmsg(rec string) (KmsgRecord, bool) {
	head, text, ok := strings.Cut(rec, ";")
	if !ok {
		return KmsgRecord{}, false
	}
	f := strings.Split(head, ",")
	if len(f) < 3 {
		return KmsgRecord{}, false
	}
	prio, err1 := strconv.Atoi(f[0])
	seq, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || prio < 0 {
		return KmsgRecord{}, false
	}
	text, _, _ = strings.Cut(text, "\n")
	return KmsgRecord{Seq: seq, Level: prio & 7, Facility: prio >> 3, Text: text}, true
}

// Line is the console form of r (KmsgPrefix).
func (r KmsgRecord) Line() string {
	return fmt.Sprintf("%s%d %d %s", KmsgPrefix, r.Seq, r.Level, r.Text)
}

// ParseKmsgLine is the inverse of KmsgRecord.Line.
func ParseKmsgLine(l string) (KmsgRecord, bool) {
	rest, ok := strings.CutPrefix(l, KmsgPrefix)
	if !ok {
		return KmsgRecord{}, false
	}
	f := strings.SplitN(rest, " ", 3)
	if len(f) < 2 {
		return KmsgRecord{}, false
	}
	seq, err1 := strconv.ParseUint(f[0], 10, 64)
	lvl, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return KmsgRecord{}, false
	}
	r := KmsgRecord{Seq: seq, Level: lvl}
	if len(f) == 3 {
		r.Text = f[2]
	}
	return r, true
}

// KmsgReader reads /dev/kmsg without blocking.
type KmsgReader struct {
	f   *os.File
	buf []byte
}

// OpenKmsg opens the kernel log. With fromEnd it skips every record
// already logged, so ReadNew returns only what comes after.
func OpenKmsg(fromEnd bool) (*KmsgReader, error) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/kmsg: %w", err)
	}
	if fromEnd {
		if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("seek /dev/kmsg: %w", err)
		}
	}
	return &KmsgReader{f: os.NewFile(uintptr(fd), "/dev/kmsg"), buf: make([]byte, 16<<10)}, nil
}

// ReadNew returns the records logged since the last call (or the open).
func (k *KmsgReader) ReadNew() ([]KmsgRecord, error) {
	var out []KmsgRecord
	fd := int(k.f.Fd())
	for {
		n, err := unix.Read(fd, k.buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return out, nil
		case errors.Is(err, unix.EPIPE):
			continue // records were overwritten before we read them; go on
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return out, fmt.Errorf("read /dev/kmsg: %w", err)
		case n == 0:
			return out, nil
		}
		if r, ok := ParseKmsg(string(k.buf[:n])); ok {
			out = append(out, r)
		}
	}
}

// Close closes the log.
func (k *KmsgReader) Close() error { return k.f.Close() }

// KernelLogRule names a kind of guest kernel log line that fails a boot:
// what a userspace DMA driver and its tests must never cause.
type KernelLogRule struct {
	Name string
	Re   *regexp.Regexp
}

// KernelLogRules are checked against every guest kernel log record, by the
// host for the whole boot and by vmtest for each test's own window. A test
// that causes such a line on purpose declares it with
// vmtest.Env.ExpectKernelLog.
var KernelLogRules = []KernelLogRule{
	{"oops", regexp.MustCompile(`\bOops\b|general protection fault|unable to handle (kernel|page)`)},
	{"bug", regexp.MustCompile(`\bBUG:|kernel BUG at`)},
	{"warning", regexp.MustCompile(`^WARNING: (CPU: \d+ PID: \d+ )?at |^WARNING: `)},
	{"dmar fault", regexp.MustCompile(`(?i)DMAR:.*fault|DMAR: \[DMA (Read|Write)|AMD-Vi:.*PAGE_FAULT|iommu.*page fault`)},
	{"nvme timeout", regexp.MustCompile(`^nvme nvme\d+: .*(I/O (tag )?\d* ?(QID \d+ )?timeout|timeout, (aborting|reset controller|disable controller|completion polled))`)},
	{"nvme reset", regexp.MustCompile(`^nvme nvme\d+: .*(resetting controller|controller is down; will reset|reset controller|Removing after probe failure|Device not ready; aborting)`)},
	{"hung task", regexp.MustCompile(`INFO: task .* blocked for more than|hung_task|soft lockup|hard LOCKUP|rcu.* detected stall|self-detected stall`)},
}

// MatchKernelLog returns the name of the first rule text breaks, "" if none.
func MatchKernelLog(text string) string {
	for _, r := range KernelLogRules {
		if r.Re.MatchString(text) {
			return r.Name
		}
	}
	return ""
}
