//go:build !gonvme_notrace

package nvme_test

import (
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"os"
	"runtime"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme"
)

const nvmePkg = "github.com/seedb8fa28ef/gonvme/nvme."

// TestTraceHookSymbols checks what nvmectl trace relies on in a built
// binary: both hooks are in the symbol table under their stable names, and
// the queue pair's issue and complete call them (a CALL rel32 whose target
// is the hook), so the compiler neither inlined nor dropped them.
func TestTraceHookSymbols(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the call scan decodes amd64 CALL rel32")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// go test links without the ELF symbol table (-s); go test -c, go
	// build and the VM harness keep it, and uprobes need it. The function
	// table (.gopclntab) is always there.
	if syms, err := f.Symbols(); err == nil {
		have := map[string]bool{}
		for _, s := range syms {
			have[s.Name] = true
		}
		for _, h := range []string{"TraceSubmit", "TraceComplete"} {
			if !have[nvmePkg+h] {
				t.Errorf("ELF symbol table has no %s", nvmePkg+h)
			}
		}
	}
	sec := f.Section(".gopclntab")
	text := f.Section(".text")
	if sec == nil || text == nil {
		t.Fatal("no .gopclntab or .text section")
	}
	pcln, err := sec.Data()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(pcln, text.Addr))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ caller, hook string }{
		{nvmePkg + "(*QueuePair).issue", nvmePkg + "TraceSubmit"},
		{nvmePkg + "(*QueuePair).complete", nvmePkg + "TraceComplete"},
	} {
		hook := tab.LookupFunc(c.hook)
		caller := tab.LookupFunc(c.caller)
		if hook == nil || caller == nil {
			t.Errorf("function table: %s %v, %s %v", c.hook, hook != nil, c.caller, caller != nil)
			continue
		}
		code := make([]byte, caller.End-caller.Entry)
		if err := readVA(f, caller.Entry, code); err != nil {
			t.Fatal(err)
		}
		calls := 0
		for i := 0; i+5 <= len(code); i++ {
			if code[i] != 0xe8 {
				continue
			}
			rel := int32(binary.LittleEndian.Uint32(code[i+1:]))
			if caller.Entry+uint64(i)+5+uint64(int64(rel)) == hook.Entry {
				calls++
			}
		}
		if calls != 1 {
			t.Errorf("%s calls %s %d times, want 1", c.caller, c.hook, calls)
		}
	}
}

// readVA reads len(b) bytes at virtual address va of an executable.
func readVA(f *elf.File, va uint64, b []byte) error {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && va >= p.Vaddr && va+uint64(len(b)) <= p.Vaddr+p.Filesz {
			_, err := p.ReadAt(b, int64(va-p.Vaddr))
			return err
		}
	}
	return os.ErrNotExist
}

// BenchmarkTraceHooks is the cost of the two hook calls one I/O makes
// when no probe is attached.
func BenchmarkTraceHooks(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		nvme.TraceSubmit(1, 1, uint16(i), 2, 1, uint64(i), 4096)
		nvme.TraceComplete(1, 1, uint16(i), 0)
	}
}
