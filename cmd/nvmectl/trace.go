package main

// nvmectl trace: per-interval IOPS and latency histograms of a live driver,
// measured with eBPF.
//
// Userspace driver (--pid, --binary): uprobes on the entry of the trace
// hooks nvme.TraceSubmit and nvme.TraceComplete (nvme/trace.go documents
// them and their argument registers). The submit program stores
// (tgid, qid, cid, controller) -> (ktime, operation) in an LRU hash map;
// the complete program looks the command up, deletes it, and adds the
// latency to a log2-microsecond histogram per operation (read, write,
// other) in an array map, plus counters. Only function entries are probed:
// a uretprobe rewrites a return address on a goroutine stack that Go may
// move, and the traced program crashes. Admin commands (qid 0) are skipped.
//
// Kernel driver (--kernel): the same two programs on the tracepoints
// nvme:nvme_setup_cmd and nvme:nvme_complete_rq, keyed by
// (ctrl_id, qid, cid), with field offsets read from each tracepoint's
// format file in tracefs, so the same view covers the kernel's path.
//
// The programs are written with cilium/ebpf's asm package and built at run
// time, not compiled from C: nvmectl and its tests need no clang, no
// kernel headers and no generated object files in the tree, so CI and any
// laptop build it with the Go toolchain alone; the programs are small
// (about 50 and 125 instructions) and their few parameters (register offsets,
// tracepoint field offsets, map descriptors) are filled in directly.
// Userspace reads the array map each interval and prints the difference,
// biolatency-style. Closing the links removes the probes: the traced
// process keeps running untouched.

import (
	"bufio"
	"context"
	"debug/elf"
	"debug/gosym"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/spf13/cobra"
)

// The hooks' symbols in a gonvme binary.
const (
	hookSubmit   = "github.com/seedb8fa28ef/gonvme/nvme.TraceSubmit"
	hookComplete = "github.com/seedb8fa28ef/gonvme/nvme.TraceComplete"
)

// Layout of the stats array map: a histogram of histSlots log2-µs slots
// per operation, then counters.
const (
	opRead = iota
	opWrite
	opOther
	numOps

	histSlots    = 32
	statDone     = numOps * histSlots // + op: completions matched to a submission
	statSubmits  = statDone + numOps  // submissions seen
	statUnknown  = statSubmits + 1    // completions with no submission recorded
	statErrors   = statUnknown + 1    // completions with a non-zero status
	statEnabled  = statErrors + 1     // the programs count only while non-zero
	statEntries  = statEnabled + 1
	startEntries = 1 << 16 // commands in flight the LRU map tracks
)

var opNames = [numOps]string{"read", "write", "other"}

// x86-64 struct pt_regs offsets (arch/x86/include/asm/ptrace.h), where a
// uprobe program's context points, for Go's ABIInternal argument registers.
const (
	ptRegsAX = 80
	ptRegsBX = 40
	ptRegsCX = 88
	ptRegsDI = 112
)

// bpfField is one value a probe reads from its context: a byte offset and a
// size (1, 2, 4 or 8), and the mask of the bits that are defined.
type bpfField struct {
	off  int16
	size asm.Size
	mask int64 // 0: all
}

// probeLayout says where the submit and complete programs find their
// inputs. For uprobes the fields are pt_regs slots; for tracepoints, fields
// of the trace record.
type probeLayout struct {
	high     *bpfField // upper 32 bits of the key; nil: the current tgid
	qid, cid bpfField
	ctrl     *bpfField // second key word; nil: 0
	opcode   bpfField  // submit only
	status   bpfField  // complete only
}

func uprobeLayout() (sub, comp probeLayout) {
	reg := func(off int16, mask int64) bpfField { return bpfField{off: off, size: asm.DWord, mask: mask} }
	ctrl := reg(ptRegsAX, 0)
	sub = probeLayout{ctrl: &ctrl, qid: reg(ptRegsBX, 0xffff), cid: reg(ptRegsCX, 0xffff), opcode: reg(ptRegsDI, 0xff)}
	comp = probeLayout{ctrl: &ctrl, qid: reg(ptRegsBX, 0xffff), cid: reg(ptRegsCX, 0xffff), status: reg(ptRegsDI, 0xffff)}
	return sub, comp
}

// load emits dst = the field, masked.
func (f bpfField) load(dst asm.Register) asm.Instructions {
	insns := asm.Instructions{asm.LoadMem(dst, asm.R6, f.off, f.size)}
	if f.mask != 0 {
		insns = append(insns, asm.And.Imm(dst, int32(f.mask)))
	}
	return insns
}

// Stack layout of the programs (offsets from R10).
const (
	fpKeyA  = -16 // key word 0: high<<32 | qid<<16 | cid
	fpKeyB  = -8  // key word 1: controller
	fpValTS = -32 // value: ktime
	fpValOp = -24 // value: operation
	fpIdx   = -36 // u32 index into stats
	fpNow   = -48 // ktime at completion
)

// buildKey emits the code that leaves the map key at fpKeyA/fpKeyB, and
// jumps to "exit" for the admin queue. R6 holds the context.
func buildKey(l probeLayout) asm.Instructions {
	var insns asm.Instructions
	insns = append(insns, l.qid.load(asm.R7)...)
	insns = append(insns, asm.JEq.Imm(asm.R7, 0, "exit"))
	if l.high == nil {
		insns = append(insns, asm.FnGetCurrentPidTgid.Call(), asm.RSh.Imm(asm.R0, 32))
	} else {
		insns = append(insns, l.high.load(asm.R0)...)
		insns = append(insns, asm.LSh.Imm(asm.R0, 32), asm.RSh.Imm(asm.R0, 32))
	}
	insns = append(insns, asm.LSh.Imm(asm.R0, 32), asm.LSh.Imm(asm.R7, 16), asm.Or.Reg(asm.R0, asm.R7))
	insns = append(insns, l.cid.load(asm.R8)...)
	insns = append(insns, asm.Or.Reg(asm.R0, asm.R8), asm.StoreMem(asm.RFP, fpKeyA, asm.R0, asm.DWord))
	if l.ctrl == nil {
		// cilium/ebpf's asm has no 64-bit store of an immediate.
		insns = append(insns, asm.Mov.Imm(asm.R1, 0), asm.StoreMem(asm.RFP, fpKeyB, asm.R1, asm.DWord))
	} else {
		insns = append(insns, l.ctrl.load(asm.R1)...)
		insns = append(insns, asm.StoreMem(asm.RFP, fpKeyB, asm.R1, asm.DWord))
	}
	return insns
}

// incr emits stats[idx] += 1, idx in register r (clobbers R0-R5).
func incr(stats *ebpf.Map, r asm.Register, label string) asm.Instructions {
	return asm.Instructions{
		asm.StoreMem(asm.RFP, fpIdx, r, asm.Word),
		asm.LoadMapPtr(asm.R1, stats.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpIdx),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, label),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(label),
	}
}

func incrConst(stats *ebpf.Map, idx int32, label string) asm.Instructions {
	return append(asm.Instructions{asm.Mov.Imm(asm.R1, idx)}, incr(stats, asm.R1, label)...)
}

// gate emits the prologue of both programs: keep the context in R6 and
// return unless stats[statEnabled] is set. Userspace sets it once both
// probes are attached and clears it before it detaches them, so a session
// counts a submission only if it also sees the completion's probe, and
// the reverse: what was in flight at either end is bounded by the queue
// depth, not by how long attaching took.
func gate(stats *ebpf.Map) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.StoreImm(asm.RFP, fpIdx, statEnabled, asm.Word),
		asm.LoadMapPtr(asm.R1, stats.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpIdx),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "exit"),
	}
}

// submitProgram records the start of a command.
func submitProgram(l probeLayout, starts, stats *ebpf.Map) asm.Instructions {
	insns := gate(stats)
	insns = append(insns, buildKey(l)...)
	insns = append(insns, l.opcode.load(asm.R1)...)
	insns = append(insns,
		asm.Mov.Imm(asm.R2, opOther),
		asm.JNE.Imm(asm.R1, 0x02, "not_read"), // NVM Read
		asm.Mov.Imm(asm.R2, opRead),
		asm.JNE.Imm(asm.R1, 0x01, "not_write").WithSymbol("not_read"), // NVM Write
		asm.Mov.Imm(asm.R2, opWrite),
		asm.StoreMem(asm.RFP, fpValOp, asm.R2, asm.DWord).WithSymbol("not_write"),
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, fpValTS, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, starts.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpKeyA),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, fpValTS),
		asm.Mov.Imm(asm.R4, 0), // BPF_ANY
		asm.FnMapUpdateElem.Call(),
	)
	insns = append(insns, incrConst(stats, statSubmits, "counted")...)
	return append(insns, asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"), asm.Return())
}

// completeProgram matches a completion to its submission and records the
// latency.
//
// div turns nanoseconds into the histogram's unit: 1000 for µs, 1000000
// for ms (-m).
func completeProgram(l probeLayout, starts, stats *ebpf.Map, div int32) asm.Instructions {
	insns := gate(stats)
	insns = append(insns, l.status.load(asm.R9)...)
	insns = append(insns, buildKey(l)...)
	insns = append(insns,
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, fpNow, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, starts.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpKeyA),
		asm.FnMapLookupElem.Call(),
		asm.JNE.Imm(asm.R0, 0, "found"),
	)
	insns = append(insns, incrConst(stats, statUnknown, "unknown_counted")...)
	insns = append(insns, asm.Ja.Label("exit"))
	insns = append(insns,
		asm.LoadMem(asm.R7, asm.R0, 0, asm.DWord).WithSymbol("found"), // start ktime
		asm.LoadMem(asm.R8, asm.R0, 8, asm.DWord),                     // operation
		asm.LoadMapPtr(asm.R1, starts.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpKeyA),
		asm.FnMapDeleteElem.Call(),
		// R1 = latency in µs (ms with -m)
		asm.LoadMem(asm.R1, asm.RFP, fpNow, asm.DWord),
		asm.Sub.Reg(asm.R1, asm.R7),
		asm.Div.Imm(asm.R1, div),
		// R2 = floor(log2(R1)), 0 for 0 and 1
		asm.Mov.Imm(asm.R2, 0),
		asm.JLT.Imm(asm.R1, 2, "log_done"),
	)
	for _, s := range []int32{32, 16, 8, 4, 2} {
		next := fmt.Sprintf("log_%d", s)
		insns = append(insns,
			asm.Mov.Reg(asm.R3, asm.R1),
			asm.RSh.Imm(asm.R3, s),
			asm.JEq.Imm(asm.R3, 0, next),
			asm.Mov.Reg(asm.R1, asm.R3),
			asm.Add.Imm(asm.R2, s),
			asm.Mov.Imm(asm.R0, 0).WithSymbol(next),
		)
	}
	insns = append(insns,
		asm.RSh.Imm(asm.R1, 1),
		asm.JEq.Imm(asm.R1, 0, "log_done"),
		asm.Add.Imm(asm.R2, 1),
		asm.JLE.Imm(asm.R2, histSlots-1, "clamped").WithSymbol("log_done"),
		asm.Mov.Imm(asm.R2, histSlots-1),
		// R1 = op*histSlots + slot
		asm.Mov.Reg(asm.R1, asm.R8).WithSymbol("clamped"),
		asm.LSh.Imm(asm.R1, 5), // histSlots == 32
		asm.Add.Reg(asm.R1, asm.R2),
	)
	insns = append(insns, incr(stats, asm.R1, "hist_counted")...)
	insns = append(insns, asm.Mov.Reg(asm.R1, asm.R8), asm.Add.Imm(asm.R1, statDone))
	insns = append(insns, incr(stats, asm.R1, "done_counted")...)
	insns = append(insns, asm.JEq.Imm(asm.R9, 0, "exit"))
	insns = append(insns, incrConst(stats, statErrors, "err_counted")...)
	return append(insns, asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"), asm.Return())
}

var _ = [1]struct{}{}[histSlots-32] // completeProgram shifts by 5

// tracer owns the maps, programs and links of one trace session.
type tracer struct {
	starts, stats *ebpf.Map
	progs         []*ebpf.Program
	links         []link.Link
}

func (t *tracer) Close() error {
	var errs []error
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	for _, p := range t.progs {
		errs = append(errs, p.Close())
	}
	for _, m := range []*ebpf.Map{t.starts, t.stats} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}

// newTracer creates the maps and loads the two programs of type typ.
func newTracer(typ ebpf.ProgramType, sub, comp probeLayout, div int32) (_ *tracer, err error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise RLIMIT_MEMLOCK for BPF maps: %w", err)
	}
	t := &tracer{}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	t.starts, err = ebpf.NewMap(&ebpf.MapSpec{Name: "gonvme_starts", Type: ebpf.LRUHash, KeySize: 16, ValueSize: 16, MaxEntries: startEntries})
	if err != nil {
		return nil, fmt.Errorf("create BPF hash map: %w", err)
	}
	t.stats, err = ebpf.NewMap(&ebpf.MapSpec{Name: "gonvme_stats", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: statEntries})
	if err != nil {
		return nil, fmt.Errorf("create BPF array map: %w", err)
	}
	for _, p := range []struct {
		name  string
		insns asm.Instructions
	}{
		{"gonvme_submit", submitProgram(sub, t.starts, t.stats)},
		{"gonvme_complete", completeProgram(comp, t.starts, t.stats, div)},
	} {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: p.name, Type: typ, Instructions: p.insns, License: "Dual MIT/GPL"})
		if err != nil {
			return nil, fmt.Errorf("load BPF program %s: %w", p.name, err)
		}
		t.progs = append(t.progs, prog)
	}
	return t, nil
}

// enable starts or stops the counting (see gate).
func (t *tracer) enable(on bool) error {
	v := uint64(0)
	if on {
		v = 1
	}
	if err := t.stats.Update(uint32(statEnabled), v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("switch BPF programs on or off: %w", err)
	}
	return nil
}

// snapshot reads the stats array.
func (t *tracer) snapshot() ([statEntries]uint64, error) {
	var s [statEntries]uint64
	for i := range s {
		if err := t.stats.Lookup(uint32(i), &s[i]); err != nil {
			return s, fmt.Errorf("read BPF stats[%d]: %w", i, err)
		}
	}
	return s, nil
}

// hookOffsets returns the file offsets of the two hooks in the ELF
// executable at path, from its symbol table or, for a binary linked
// without one (-s), from Go's function table.
func hookOffsets(path string) (sub, comp uint64, err error) {
	f, err := elf.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("open executable: %w", err)
	}
	defer f.Close()
	va := map[string]uint64{}
	if syms, err := f.Symbols(); err == nil {
		for _, s := range syms {
			if s.Name == hookSubmit || s.Name == hookComplete {
				va[s.Name] = s.Value
			}
		}
	}
	if len(va) < 2 {
		pcln, text := f.Section(".gopclntab"), f.Section(".text")
		if pcln == nil || text == nil {
			return 0, 0, fmt.Errorf("%s is not a Go executable (no .gopclntab)", path)
		}
		data, err := pcln.Data()
		if err != nil {
			return 0, 0, fmt.Errorf("read .gopclntab: %w", err)
		}
		tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
		if err != nil {
			return 0, 0, fmt.Errorf("parse .gopclntab: %w", err)
		}
		for _, name := range []string{hookSubmit, hookComplete} {
			if fn := tab.LookupFunc(name); fn != nil {
				va[name] = fn.Entry
			}
		}
	}
	off := func(name string) (uint64, error) {
		v, ok := va[name]
		if !ok {
			return 0, fmt.Errorf("%s has no %s: not a gonvme program, or built with -tags gonvme_notrace", path, name)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && v >= p.Vaddr && v < p.Vaddr+p.Filesz {
				return v - p.Vaddr + p.Off, nil
			}
		}
		return 0, fmt.Errorf("%s: %s at %#x is in no executable segment", path, name, v)
	}
	if sub, err = off(hookSubmit); err != nil {
		return 0, 0, err
	}
	comp, err = off(hookComplete)
	return sub, comp, err
}

// attachUprobes traces the gonvme program at path (pid 0: every process
// running it).
// div is the histogram unit in ns (completeProgram).
func attachUprobes(path string, pid int, div int32) (*tracer, error) {
	subOff, compOff, err := hookOffsets(path)
	if err != nil {
		return nil, err
	}
	sub, comp := uprobeLayout()
	t, err := newTracer(ebpf.Kprobe, sub, comp, div)
	if err != nil {
		return nil, err
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open executable: %w", err)
	}
	for i, off := range []uint64{subOff, compOff} {
		l, err := ex.Uprobe("", t.progs[i], &link.UprobeOptions{Address: off, PID: pid})
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("attach uprobe at %s+%#x: %w", path, off, err)
		}
		t.links = append(t.links, l)
	}
	return t, nil
}

// tracefsDirs are where the kernel's trace events are described.
var tracefsDirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// tpFields parses a tracepoint format file: field name -> offset, size.
func tpFields(format string) map[string]bpfField {
	out := map[string]bpfField{}
	for _, line := range strings.Split(format, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "field:") {
			continue
		}
		var decl string
		var off, size int64 = -1, -1
		for _, part := range strings.Split(line, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), ":")
			if !ok {
				continue
			}
			switch k {
			case "field":
				decl = v
			case "offset":
				off, _ = strconv.ParseInt(v, 10, 16)
			case "size":
				size, _ = strconv.ParseInt(v, 10, 16)
			}
		}
		words := strings.Fields(decl)
		if len(words) == 0 || off < 0 {
			continue
		}
		name, _, _ := strings.Cut(words[len(words)-1], "[")
		f := bpfField{off: int16(off)}
		switch size {
		case 1:
			f.size = asm.Byte
		case 2:
			f.size = asm.Half
		case 4:
			f.size = asm.Word
		case 8:
			f.size = asm.DWord
		default:
			continue // arrays and odd sizes: not read
		}
		out[name] = f
	}
	return out
}

// kernelLayouts reads the formats of nvme:nvme_setup_cmd and
// nvme:nvme_complete_rq under root.
func kernelLayouts(root string) (sub, comp probeLayout, err error) {
	read := func(event string) (map[string]bpfField, error) {
		var errs []error
		for _, dir := range tracefsDirs {
			p := filepath.Join(root, dir, "events", "nvme", event, "format")
			b, err := os.ReadFile(p)
			if err == nil {
				return tpFields(string(b)), nil
			}
			errs = append(errs, err)
		}
		return nil, fmt.Errorf("tracepoint nvme:%s: %w (is the kernel nvme driver loaded and tracefs mounted?)", event, errors.Join(errs...))
	}
	need := func(fs map[string]bpfField, event string, names ...string) ([]bpfField, error) {
		out := make([]bpfField, len(names))
		for i, n := range names {
			f, ok := fs[n]
			if !ok {
				return nil, fmt.Errorf("tracepoint nvme:%s has no field %s", event, n)
			}
			out[i] = f
		}
		return out, nil
	}
	setup, err := read("nvme_setup_cmd")
	if err != nil {
		return sub, comp, err
	}
	done, err := read("nvme_complete_rq")
	if err != nil {
		return sub, comp, err
	}
	s, err := need(setup, "nvme_setup_cmd", "ctrl_id", "qid", "cid", "opcode")
	if err != nil {
		return sub, comp, err
	}
	c, err := need(done, "nvme_complete_rq", "ctrl_id", "qid", "cid", "status")
	if err != nil {
		return sub, comp, err
	}
	mask := func(f bpfField, m int64) bpfField { f.mask = m; return f }
	sub = probeLayout{high: &s[0], qid: mask(s[1], 0xffff), cid: mask(s[2], 0xffff), opcode: mask(s[3], 0xff)}
	comp = probeLayout{high: &c[0], qid: mask(c[1], 0xffff), cid: mask(c[2], 0xffff), status: mask(c[3], 0xffff)}
	return sub, comp, nil
}

func attachKernel(root string, div int32) (*tracer, error) {
	sub, comp, err := kernelLayouts(root)
	if err != nil {
		return nil, err
	}
	t, err := newTracer(ebpf.TracePoint, sub, comp, div)
	if err != nil {
		return nil, err
	}
	for i, ev := range []string{"nvme_setup_cmd", "nvme_complete_rq"} {
		l, err := link.Tracepoint("nvme", ev, t.progs[i], nil)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("attach tracepoint nvme:%s: %w", ev, err)
		}
		t.links = append(t.links, l)
	}
	return t, nil
}

// traceOpts are trace's flags.
type traceOpts struct {
	pid      int
	binary   string
	kernel   bool
	interval time.Duration
	duration time.Duration
	millis   bool   // -m: histograms in milliseconds, as biolatency -m
	json     bool   // -o json: one object per interval, then one for the totals
	unit     string // "usecs" or "msecs"
	div      int32  // ns per unit
}

func traceCmd(a app, g *globals) *cobra.Command {
	o := traceOpts{interval: time.Second}
	cmd := &cobra.Command{
		Use:   "trace (--pid PID | --binary PATH | --kernel) [--interval 1s] [--duration D] [-m]",
		Short: "Trace a live driver with eBPF: IOPS and latency histograms per interval",
		Long: "trace attaches eBPF uprobes to the trace hooks of a running gonvme program (--pid, or\n" +
			"every process of --binary) and prints, each --interval, the completions per second and\n" +
			"log2 histograms of the latency (µs) per operation, until Ctrl-C or --duration, then the\n" +
			"totals. --kernel traces the kernel nvme driver's tracepoints instead. Detaching leaves the\n" +
			"traced process running. -m counts milliseconds instead of microseconds (biolatency -m).\n" +
			"-o json prints one JSON object per line: one per interval, then the totals. Needs root\n" +
			"(CAP_BPF and CAP_PERFMON).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n := 0
			for _, set := range []bool{o.pid != 0, o.binary != "", o.kernel} {
				if set {
					n++
				}
			}
			if n != 1 {
				return usagef("trace needs exactly one of --pid, --binary and --kernel")
			}
			if o.interval <= 0 || o.duration < 0 {
				return usagef("--interval must be positive and --duration not negative")
			}
			if g.human && g.out == formatJSON {
				return usagef("trace: -H decodes the text output; -o json has nothing to decode")
			}
			o.json = g.out == formatJSON
			o.unit, o.div = "usecs", 1000
			if o.millis {
				o.unit, o.div = "msecs", 1000000
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runTrace(ctx, cmd.OutOrStdout(), a, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.pid, "pid", 0, "trace the gonvme program running as this process")
	f.StringVar(&o.binary, "binary", "", "trace every process running this gonvme executable")
	f.BoolVar(&o.kernel, "kernel", false, "trace the kernel nvme driver (tracepoints nvme:nvme_setup_cmd, nvme:nvme_complete_rq)")
	f.DurationVar(&o.interval, "interval", o.interval, "print every interval")
	f.DurationVar(&o.duration, "duration", 0, "stop after this long (0: until Ctrl-C)")
	f.BoolVarP(&o.millis, "milliseconds", "m", false, "histograms in milliseconds (default microseconds), as biolatency -m")
	return cmd
}

func runTrace(ctx context.Context, out io.Writer, a app, o traceOpts) (err error) {
	var t *tracer
	var what string
	switch {
	case o.kernel:
		t, err = attachKernel(a.root, o.div)
		what = "the kernel nvme driver"
	case o.pid != 0:
		exe := filepath.Join(a.root, "/proc", strconv.Itoa(o.pid), "exe")
		path, lerr := os.Readlink(exe)
		if lerr != nil {
			return usagef("process %d: %v", o.pid, lerr)
		}
		if _, serr := os.Stat(path); serr != nil {
			path = exe // deleted or in another mount namespace: the kernel resolves the link
		}
		t, err = attachUprobes(path, o.pid, o.div)
		what = fmt.Sprintf("PID %d (%s)", o.pid, path)
	default:
		if _, serr := os.Stat(o.binary); serr != nil {
			return usagef("--binary: %v", serr)
		}
		t, err = attachUprobes(o.binary, 0, o.div)
		what = o.binary
	}
	if err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EPERM) {
			return devicef("trace %s: %w (run as root: BPF and perf events need CAP_BPF and CAP_PERFMON)", what, err)
		}
		return deviceError{fmt.Errorf("trace %s: %w", what, err)}
	}
	defer func() {
		if cerr := t.Close(); cerr != nil && err == nil {
			err = devicef("detach: %w", cerr)
		}
	}()
	if err := t.enable(true); err != nil {
		return deviceError{err}
	}
	if !o.json {
		fmt.Fprintf(out, "Tracing %s. Hit Ctrl-C to end.\n", what)
	}
	start := time.Now()
	var prev [statEntries]uint64
	last := start
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	var end <-chan time.Time
	if o.duration > 0 {
		tm := time.NewTimer(o.duration)
		defer tm.Stop()
		end = tm.C
	}
	bw := bufio.NewWriter(out)
	defer bw.Flush()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-end:
			done = true
		case <-tick.C:
		}
		if done {
			if err := t.enable(false); err != nil {
				return deviceError{err}
			}
		}
		cur, err := t.snapshot()
		if err != nil {
			return deviceError{err}
		}
		now := time.Now()
		if !done {
			if o.json {
				d := diff(&prev, &cur)
				if err := writeTraceJSON(bw, "interval", now, now.Sub(last), &d, o.unit); err != nil {
					return err
				}
			} else {
				printInterval(bw, now, now.Sub(last), &prev, &cur, o.unit)
			}
			bw.Flush()
			prev, last = cur, now
			continue
		}
		// Detach before the summary: the traced process runs on unprobed.
		if err := t.Close(); err != nil {
			return devicef("detach: %w", err)
		}
		t = &tracer{}
		var zero [statEntries]uint64
		if o.json {
			d := diff(&zero, &cur)
			if err := writeTraceJSON(bw, "total", now, now.Sub(start), &d, o.unit); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(bw, "Detached from %s after %.1fs.\n", what, now.Sub(start).Seconds())
		printTotals(bw, now.Sub(start), &zero, &cur, o.unit)
	}
	return nil
}

// printInterval prints one interval: rates and the histograms of what
// completed in it.
func printInterval(w io.Writer, now time.Time, el time.Duration, prev, cur *[statEntries]uint64, unit string) {
	d := diff(prev, cur)
	s := el.Seconds()
	fmt.Fprintf(w, "%s  read %.0f/s  write %.0f/s  other %.0f/s  (submits %d, unmatched %d, errors %d)\n",
		now.Format("15:04:05"), float64(d[statDone+opRead])/s, float64(d[statDone+opWrite])/s,
		float64(d[statDone+opOther])/s, d[statSubmits], d[statUnknown], d[statErrors])
	printHists(w, &d, unit)
}

// printTotals prints the counts over the whole session and the
// histograms; the "total" line is for scripts.
func printTotals(w io.Writer, el time.Duration, zero, cur *[statEntries]uint64, unit string) {
	d := diff(zero, cur)
	fmt.Fprintf(w, "total read=%d write=%d other=%d submits=%d unmatched=%d errors=%d seconds=%.3f\n",
		d[statDone+opRead], d[statDone+opWrite], d[statDone+opOther], d[statSubmits], d[statUnknown], d[statErrors], el.Seconds())
	printHists(w, &d, unit)
}

func diff(prev, cur *[statEntries]uint64) [statEntries]uint64 {
	var d [statEntries]uint64
	for i := range d {
		d[i] = cur[i] - prev[i]
	}
	return d
}

func printHists(w io.Writer, d *[statEntries]uint64, unit string) {
	for op := range numOps {
		if d[statDone+op] == 0 {
			continue
		}
		fmt.Fprintf(w, "%s latency:\n", opNames[op])
		writeLog2Hist(w, d[op*histSlots:(op+1)*histSlots], unit)
	}
}

// traceSlot is one log2 slot of a histogram in trace's JSON.
type traceSlot struct {
	Low   uint64 `json:"low"`
	High  uint64 `json:"high"` // 0: no upper bound (the last slot)
	Count uint64 `json:"count"`
}

// traceRecord is one line of trace -o json: an interval or the totals.
type traceRecord struct {
	Type      string                 `json:"type"` // "interval" or "total"
	Time      string                 `json:"time"` // RFC 3339, when it was taken
	Seconds   float64                `json:"seconds"`
	Unit      string                 `json:"unit"`      // of the histograms: "usecs" or "msecs"
	Completed map[string]uint64      `json:"completed"` // by operation: read, write, other
	PerSecond map[string]float64     `json:"per_second"`
	Submits   uint64                 `json:"submits"`
	Unmatched uint64                 `json:"unmatched"`
	Errors    uint64                 `json:"errors"`
	Latency   map[string][]traceSlot `json:"latency"` // by operation, non-empty slots only
}

// writeTraceJSON writes d as one line of JSON.
func writeTraceJSON(w io.Writer, typ string, now time.Time, el time.Duration, d *[statEntries]uint64, unit string) error {
	r := traceRecord{Type: typ, Time: now.UTC().Format(time.RFC3339Nano), Seconds: round3(el.Seconds()), Unit: unit,
		Completed: map[string]uint64{}, PerSecond: map[string]float64{}, Latency: map[string][]traceSlot{},
		Submits: d[statSubmits], Unmatched: d[statUnknown], Errors: d[statErrors]}
	for op := range numOps {
		name := opNames[op]
		n := d[statDone+op]
		r.Completed[name] = n
		if s := el.Seconds(); s > 0 {
			r.PerSecond[name] = round3(float64(n) / s)
		}
		slots := []traceSlot{}
		for i, c := range d[op*histSlots : (op+1)*histSlots] {
			if c == 0 {
				continue
			}
			sl := traceSlot{Low: 0, High: 1, Count: c}
			if i > 0 {
				sl.Low, sl.High = 1<<i, 1<<(i+1)-1
			}
			if i == histSlots-1 {
				sl.High = 0
			}
			slots = append(slots, sl)
		}
		r.Latency[name] = slots
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// writeLog2Hist prints a log2 histogram the way bcc's biolatency does:
// slot 0 holds 0 and 1, slot k holds [2^k, 2^(k+1)-1].
func writeLog2Hist(w io.Writer, slots []uint64, unit string) {
	last, peak := -1, uint64(0)
	for i, v := range slots {
		if v > 0 {
			last = i
		}
		peak = max(peak, v)
	}
	if last < 0 {
		return
	}
	const width = 40
	fmt.Fprintf(w, "%23s : %-9s distribution\n", unit, "count")
	for i := 0; i <= last; i++ {
		lo, hi := uint64(0), uint64(1)
		if i > 0 {
			lo, hi = 1<<i, 1<<(i+1)-1
		}
		stars := 0
		if peak > 0 {
			stars = int(slots[i] * width / peak)
		}
		if i == len(slots)-1 {
			fmt.Fprintf(w, "%10d -> %-9s : %-9d |%-*s|\n", lo, "inf", slots[i], width, strings.Repeat("*", stars))
			continue
		}
		fmt.Fprintf(w, "%10d -> %-9d : %-9d |%-*s|\n", lo, hi, slots[i], width, strings.Repeat("*", stars))
	}
}
