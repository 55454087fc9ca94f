package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/seedb8fa28ef/gonvme/nvme"
)

// A format file as Linux 6.1 writes it for nvme:nvme_setup_cmd (the
// offsets follow from drivers/nvme/host/trace.h).
const setupFormat = `name: nvme_setup_cmd
ID: 1234
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:char disk[32];	offset:8;	size:32;	signed:0;
	field:int ctrl_id;	offset:40;	size:4;	signed:1;
	field:int qid;	offset:44;	size:4;	signed:1;
	field:u8 opcode;	offset:48;	size:1;	signed:0;
	field:u8 flags;	offset:49;	size:1;	signed:0;
	field:u8 fctype;	offset:50;	size:1;	signed:0;
	field:u16 cid;	offset:52;	size:2;	signed:0;
	field:u32 nsid;	offset:56;	size:4;	signed:0;
	field:bool metadata;	offset:60;	size:1;	signed:0;
	field:u8 cdw10[24];	offset:61;	size:24;	signed:0;

print fmt: "nvme%d: %sqid=%d, cmdid=%u, nsid=%u, flags=0x%x, meta=0x%x, cmd=(%s %s)"
`

const completeFormat = `name: nvme_complete_rq
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:char disk[32];	offset:8;	size:32;	signed:0;
	field:int ctrl_id;	offset:40;	size:4;	signed:1;
	field:int qid;	offset:44;	size:4;	signed:1;
	field:int cid;	offset:48;	size:4;	signed:1;
	field:u64 result;	offset:56;	size:8;	signed:0;
	field:u8 retries;	offset:64;	size:1;	signed:0;
	field:u8 flags;	offset:65;	size:1;	signed:0;
	field:u16 status;	offset:66;	size:2;	signed:0;
`

func TestTracepointFormat(t *testing.T) {
	f := tpFields(setupFormat)
	for name, want := range map[string]bpfField{
		"ctrl_id": {off: 40, size: asm.Word}, "qid": {off: 44, size: asm.Word},
		"opcode": {off: 48, size: asm.Byte}, "cid": {off: 52, size: asm.Half},
		"nsid": {off: 56, size: asm.Word}, "common_type": {off: 0, size: asm.Half},
	} {
		if got, ok := f[name]; !ok || got != want {
			t.Errorf("field %s: %+v (found %v), want %+v", name, got, ok, want)
		}
	}
	if _, ok := f["disk"]; ok {
		t.Error("the 32-byte array disk was taken as a field to load")
	}

	root := t.TempDir()
	if _, _, err := kernelLayouts(root); err == nil || !strings.Contains(err.Error(), "nvme driver loaded") {
		t.Errorf("no tracefs: %v", err)
	}
	dir := filepath.Join(root, "sys/kernel/tracing/events/nvme")
	for ev, text := range map[string]string{"nvme_setup_cmd": setupFormat, "nvme_complete_rq": completeFormat} {
		os.MkdirAll(filepath.Join(dir, ev), 0o755)
		if err := os.WriteFile(filepath.Join(dir, ev, "format"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sub, comp, err := kernelLayouts(root)
	if err != nil {
		t.Fatal(err)
	}
	if sub.high.off != 40 || sub.qid.mask != 0xffff || sub.cid.off != 52 || sub.opcode.off != 48 || sub.ctrl != nil {
		t.Errorf("submit layout %+v", sub)
	}
	if comp.cid.off != 48 || comp.cid.size != asm.Word || comp.status.off != 66 || comp.status.size != asm.Half {
		t.Errorf("complete layout %+v", comp)
	}
}

func TestLog2Hist(t *testing.T) {
	slots := make([]uint64, histSlots)
	slots[0], slots[4], slots[5] = 1, 40, 10
	var b bytes.Buffer
	writeLog2Hist(&b, slots, "usecs")
	want := []string{
		"                  usecs : count     distribution",
		"         0 -> 1         : 1         |*                                       |",
		"         2 -> 3         : 0         |                                        |",
		"         4 -> 7         : 0         |                                        |",
		"         8 -> 15        : 0         |                                        |",
		"        16 -> 31        : 40        |****************************************|",
		"        32 -> 63        : 10        |**********                              |",
	}
	if got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("histogram:\n%s\nwant:\n%s", b.String(), strings.Join(want, "\n"))
	}
	if got := histCounts(t, b.String()); got != 51 {
		t.Errorf("parsed %d, want 51", got)
	}
}

var histLine = regexp.MustCompile(`^\s*(\d+) -> \S+\s*: (\d+)\s+\|`)

// histCounts adds the counts of every histogram line in s.
func histCounts(t testing.TB, s string) uint64 {
	var n uint64
	for _, l := range strings.Split(s, "\n") {
		if m := histLine.FindStringSubmatch(l); m != nil {
			v, err := strconv.ParseUint(m[2], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			n += v
		}
	}
	return n
}

var totalLine = regexp.MustCompile(`(?m)^total read=(\d+) write=(\d+) other=(\d+) submits=(\d+) unmatched=(\d+) errors=(\d+)`)

// traceTotals parses the total line of nvmectl trace.
func traceTotals(t testing.TB, out string) (read, write, other, submits, unmatched, errs uint64) {
	t.Helper()
	m := totalLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no total line in:\n%s", out)
	}
	v := make([]uint64, 6)
	for i := range v {
		v[i], _ = strconv.ParseUint(m[i+1], 10, 64)
	}
	return v[0], v[1], v[2], v[3], v[4], v[5]
}

func TestTraceUsage(t *testing.T) {
	for _, args := range [][]string{
		{"trace"},
		{"trace", "--pid", "1", "--kernel"},
		{"trace", "--pid", "1", "--binary", "/bin/true"},
		{"trace", "--kernel", "--interval", "0s"},
		{"trace", "--binary", "/nonexistent/gonvme"},
		{"trace", "--pid", "999999999"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb, app{}); code != exitUsage {
			t.Errorf("nvmectl %q: exit %d, want %d (stderr %q)", args, code, exitUsage, errb.String())
		}
	}
}

// bpfOrSkip skips when this host cannot load BPF programs or attach
// uprobes (not root, a container without CAP_BPF, a kernel without
// uprobes); every other error fails.
func bpfOrSkip(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, syscall.EPERM) || errors.Is(err, os.ErrPermission) || errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("BPF uprobes unavailable here: %v", err)
	}
	t.Fatal(err)
}

// TestTraceSelf attaches the uprobes to this test binary and calls the
// hooks directly: the programs must key, match and bin what they see.
func TestTraceSelf(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := hookOffsets(exe); err != nil {
		t.Fatal(err) // go test links without a symbol table: the pclntab fallback must find them
	}
	tr, err := attachUprobes(exe, os.Getpid(), 1000)
	bpfOrSkip(t, err)
	defer tr.Close()
	// Disabled, the programs count nothing.
	nvme.TraceSubmit(1, 1, 1, 0x02, 1, 0, 4096)
	nvme.TraceComplete(1, 1, 1, 0)
	if s, err := tr.snapshot(); err != nil || s[statSubmits] != 0 || s[statDone+opRead] != 0 {
		t.Fatalf("disabled programs counted: submits %d reads %d (%v)", s[statSubmits], s[statDone+opRead], err)
	}
	if err := tr.enable(true); err != nil {
		t.Fatal(err)
	}

	const ctrlA, ctrlB = 0x1000, 0x2000
	// 100 reads and 50 writes on two controllers with the same qid and
	// cids (the controller keeps them apart), 10 other commands, one
	// failed read, admin commands (ignored), and two completions
	// nobody submitted.
	for i := range 100 {
		nvme.TraceSubmit(ctrlA, 1, uint16(i), 0x02, 1, uint64(i), 4096)
		nvme.TraceSubmit(ctrlB, 1, uint16(i), 0x01, 1, uint64(i), 4096)
		if i < 50 {
			nvme.TraceComplete(ctrlB, 1, uint16(i), 0)
		}
		nvme.TraceComplete(ctrlA, 1, uint16(i), 0)
	}
	for i := range 10 {
		nvme.TraceSubmit(ctrlA, 2, uint16(i), 0x09, 1, 0, 0)
		nvme.TraceComplete(ctrlA, 2, uint16(i), 0)
		nvme.TraceSubmit(ctrlA, 0, uint16(i), 0x06, 0, 0, 4096) // admin
		nvme.TraceComplete(ctrlA, 0, uint16(i), 0)
	}
	nvme.TraceSubmit(ctrlA, 3, 7, 0x02, 1, 0, 4096)
	time.Sleep(3 * time.Millisecond)
	nvme.TraceComplete(ctrlA, 3, 7, 0x0281) // Unrecovered Read Error
	nvme.TraceComplete(ctrlA, 4, 1, 0)
	nvme.TraceComplete(ctrlB, 4, 1, 0)

	s, err := tr.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ got, want uint64 }{
		"read":      {s[statDone+opRead], 101},
		"write":     {s[statDone+opWrite], 50},
		"other":     {s[statDone+opOther], 10},
		"submits":   {s[statSubmits], 100 + 100 + 10 + 1},
		"unmatched": {s[statUnknown], 2},
		"errors":    {s[statErrors], 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", name, c.got, c.want)
		}
	}
	var reads uint64
	slow := -1
	for i := range histSlots {
		reads += s[opRead*histSlots+i]
		if s[opRead*histSlots+i] > 0 {
			slow = i
		}
	}
	if reads != 101 {
		t.Errorf("read histogram holds %d, want 101", reads)
	}
	// The failed read took at least 3 ms: slot 11 (2048-4095 µs) or
	// above under load.
	if slow < 11 || slow > 20 {
		t.Errorf("slowest read in slot %d, want 11 (3 ms) or a little above", slow)
	}
}

// TestTraceCommandSelf runs nvmectl trace --pid on this process while a
// goroutine calls the hooks, and checks the output's shape and totals.
// It asks for at least one interval besides the total, not five: on a
// loaded machine the 100 ms ticks of a 550 ms session may not all fire.
func TestTraceCommandSelf(t *testing.T) {
	probe, err := attachUprobes("/proc/self/exe", os.Getpid(), 1000)
	bpfOrSkip(t, err)
	probe.Close()
	stop := make(chan struct{})
	calls := make(chan uint64)
	go func() {
		var n uint64
		for {
			select {
			case <-stop:
				calls <- n
				return
			default:
			}
			nvme.TraceSubmit(1, 1, uint16(n), 0x02, 1, n, 4096)
			nvme.TraceComplete(1, 1, uint16(n), 0)
			n++
			if n%64 == 0 {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()
	var out, errb bytes.Buffer
	code := run([]string{"trace", "--pid", strconv.Itoa(os.Getpid()), "--interval", "100ms", "--duration", "550ms"}, &out, &errb, app{})
	close(stop)
	n := <-calls
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	text := out.String()
	t.Logf("nvmectl trace --pid self:\n%s", text)
	read, write, _, submits, _, _ := traceTotals(t, text)
	if read == 0 || read > n || write != 0 || submits < read {
		t.Errorf("totals read %d write %d submits %d; the goroutine made %d", read, write, submits, n)
	}
	if !strings.HasPrefix(text, "Tracing PID ") || strings.Count(text, "read latency:") < 2 || !strings.Contains(text, "Detached from PID") {
		t.Errorf("output:\n%s", text)
	}
	// The last histogram is the session's: its counts add up to the total.
	last := text[strings.LastIndex(text, "read latency:"):]
	if got := histCounts(t, last); got != read {
		t.Errorf("total histogram holds %d, total line says %d", got, read)
	}
}

// TestTraceBinary runs nvmectl trace --binary on this test executable
// (every process running it: here, this one) and checks it counts the
// hooks this process calls.
func TestTraceBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	probe, err := attachUprobes(exe, 0, 1000)
	bpfOrSkip(t, err)
	probe.Close()
	stop := make(chan struct{})
	calls := make(chan uint64)
	go func() {
		var n uint64
		for {
			select {
			case <-stop:
				calls <- n
				return
			default:
			}
			nvme.TraceSubmit(7, 2, uint16(n), 0x01, 1, n, 512)
			nvme.TraceComplete(7, 2, uint16(n), 0)
			n++
			time.Sleep(20 * time.Microsecond)
		}
	}()
	var out, errb bytes.Buffer
	code := run([]string{"trace", "--binary", exe, "--interval", "1s", "--duration", "300ms"}, &out, &errb, app{})
	close(stop)
	n := <-calls
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	read, write, _, submits, _, _ := traceTotals(t, out.String())
	if write == 0 || write > n || read != 0 || submits < write {
		t.Errorf("totals read %d write %d submits %d; the goroutine made %d writes\n%s", read, write, submits, n, out.String())
	}
}

// TestTraceJSONAndMillis runs trace -o json -m on this process: one JSON
// object per interval, then the totals, with the histograms in
// milliseconds (a 3 ms read lands in the 2-3 ms slot).
func TestTraceJSONAndMillis(t *testing.T) {
	probe, err := attachUprobes("/proc/self/exe", os.Getpid(), 1000)
	bpfOrSkip(t, err)
	probe.Close()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := uint64(0); ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			nvme.TraceSubmit(3, 1, uint16(n), 0x02, 1, n, 4096)
			time.Sleep(3 * time.Millisecond)
			nvme.TraceComplete(3, 1, uint16(n), 0)
		}
	}()
	var out, errb bytes.Buffer
	code := run([]string{"-o", "json", "trace", "-m", "--pid", strconv.Itoa(os.Getpid()), "--interval", "100ms", "--duration", "450ms"}, &out, &errb, app{})
	close(stop)
	<-done
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 3 {
		t.Fatalf("%d lines, want one per interval and the totals:\n%s", len(lines), out.String())
	}
	var total traceRecord
	for i, l := range lines {
		var r traceRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %d is not one JSON object: %v\n%s", i, err, l)
		}
		want := "interval"
		if i == len(lines)-1 {
			want, total = "total", r
		}
		if r.Type != want || r.Unit != "msecs" {
			t.Errorf("line %d: type %q unit %q, want %q msecs", i, r.Type, r.Unit, want)
		}
	}
	slots := total.Latency["read"]
	var n uint64
	for _, s := range slots {
		n += s.Count
		if s.Low < 2 || s.Low > 64 {
			t.Errorf("a 3 ms read in slot %d-%d ms", s.Low, s.High)
		}
	}
	if n == 0 || n != total.Completed["read"] {
		t.Errorf("read histogram holds %d, completed %d: %+v", n, total.Completed["read"], total)
	}
}
