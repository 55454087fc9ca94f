package main

// lockcheck: no register store is a locked instruction, wherever the
// compiler put it.
//
// internal/mmio stores to device registers with hand-written assembly
// (store32, store64: a plain MOVL on amd64, DMB OSHST + MOVW on arm64),
// because atomic.StoreUint32 compiles to XCHGL, a bus lock on uncached
// memory (internal/mmio/doc.go). Nothing in the source stops that from
// coming back: a Write32 rewritten with sync/atomic inlines its XCHGL into
// every caller and every test still passes, on plain memory and on QEMU
// under TCG alike. So this check reads the machine code:
//
//	go build ./cmd/nvmectl, go test -c <every package that imports internal/mmio>
//	  -> go tool objdump -s '^(<module>/|main\.)'      the module's functions only
//	  -> debug/gosym: the full source position of each instruction, inlined code included
//	  -> per function, the instructions from internal/mmio's files and from the
//	     bodies of Region.Write32 and Region.Write64 (wherever they were inlined)
//
// and fails when
//
//   - an instruction from internal/mmio's files is locked or atomic (amd64:
//     LOCK-prefixed, XCHG with memory, CMPXCHG, XADD; arm64: exclusives,
//     acquire/release stores and LSE atomics), in any function;
//   - code from Write32 (Write64) does not call store32 (store64), calls
//     anything else than Region.at and the runtime, or stores to memory
//     itself other than to its own stack;
//   - store32 or store64 is not assembly from internal/mmio's directory, is
//     not 32-bit plain stores at offsets 0 (and then 4), or on arm64 lacks
//     the DMB OSHST before each;
//   - nvmectl holds no code of Write32 or of Write64: then the check saw
//     nothing.
//
// The binaries are built for the host's architecture and without -race (a
// race build turns every sync/atomic operation into a call into the race
// runtime, which would hide the XCHGL); ci builds them as the guest's
// binaries are built (linux/amd64 without cgo, guestEnv: the stores are
// assembly, which cgo does not touch), so that the VM tests' builds reuse
// the compiles. nvmectl holds every package the
// driver ships, so a store inlined across packages (into poller, ddi) is
// seen there; test binaries are built only for the packages that import
// internal/mmio themselves. The arm64 rules run on the fixtures, and
// internal/mmio's TestStoreInstructions reads its arm64 assembly.
//
// TestLockCheckFixtures shows the rules failing a binary built with the old
// atomic.StoreUint32 store (testdata/lockcheck) and a plain Go store, and
// passing the assembly one, inlined or called.

import (
	"cmp"
	"debug/elf"
	"debug/gosym"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// mmioPkg is the package that stores to device registers.
const mmioPkg = "github.com/seedb8fa28ef/gonvme/internal/mmio"

// storeFunc is one register store: the Region method callers use and the
// assembly function it must reach.
type storeFunc struct {
	method string // Region method, "Write32"
	asm    string // assembly function, "store32"
	offs   []int  // offsets of its 32-bit stores, in order
}

var storeFuncs = []storeFunc{
	{"Write32", "store32", []int{0}},
	{"Write64", "store64", []int{0, 4}},
}

// regPkg is the register package as the check sees it: where its source is
// and which lines are the bodies of its store methods.
type regPkg struct {
	path   string             // import path
	dir    string             // source directory
	files  map[string]bool    // full paths of its Go and assembly files
	bodies map[string]srcSpan // method name -> its declaration
}

type srcSpan struct {
	file        string
	first, last int
}

func (s srcSpan) holds(file string, line int) bool {
	return file == s.file && line >= s.first && line <= s.last
}

// abs returns the absolute path of a file of the register package as the
// line table names it: absolute, or under the import path with -trimpath.
func (rp *regPkg) abs(file string) string {
	if rel, ok := strings.CutPrefix(file, rp.path+"/"); ok && !strings.Contains(rel, "/") {
		return filepath.Join(rp.dir, rel)
	}
	return file
}

// lockVerb is `go run ./hack/qemu lockcheck`.
func lockVerb(args []string) error {
	fs := flag.NewFlagSet("lockcheck", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("lockcheck takes no arguments")
	}
	return lockCheck(os.Stdout)
}

// lockCheck builds nvmectl and the test binaries of every package that
// imports internal/mmio for the host's architecture, and fails if any
// register store in them is a locked instruction or is not internal/mmio's
// assembly (the list at the top of this file).
func lockCheck(out io.Writer) error {
	b, err := lockBuild(nil)
	if err != nil {
		return err
	}
	defer b.cleanup()
	return b.check(out)
}

// lockBinaries is what lockBuild built: the binaries to read and the
// register package they were built from.
type lockBinaries struct {
	t0   time.Time
	tmp  string
	ctl  string   // nvmectl
	bins []string // nvmectl first, then the test binaries
	rp   *regPkg
}

func (b *lockBinaries) cleanup() { os.RemoveAll(b.tmp) }

// lockBuild builds the binaries lockcheck reads, with env added to the go
// commands' environment (ci passes guestEnv, so that the compiles are the
// ones the VM tests' builds reuse). It is the half of the check that
// compiles; check is the half that reads.
func lockBuild(env []string) (*lockBinaries, error) {
	b := &lockBinaries{t0: time.Now()}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	pkgs, err := goList(root, env, "./...")
	if err != nil {
		return nil, err
	}
	var users []string
	for _, p := range pkgs {
		if p.ImportPath == mmioPkg || slices.Contains(p.Imports, mmioPkg) ||
			slices.Contains(p.TestImports, mmioPkg) || slices.Contains(p.XTestImports, mmioPkg) {
			users = append(users, p.ImportPath)
		}
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("lockcheck: no package imports %s", mmioPkg)
	}
	if b.rp, err = loadRegPkg(root, env, mmioPkg); err != nil {
		return nil, err
	}
	if b.tmp, err = os.MkdirTemp("", "gonvme-lockcheck-"); err != nil {
		return nil, err
	}
	b.ctl = filepath.Join(b.tmp, "nvmectl")
	testDir := filepath.Join(b.tmp, "tests")
	err = goCmd(root, env, "build", "-o", b.ctl, "./cmd/nvmectl")
	if err == nil {
		err = goCmd(root, env, append([]string{"test", "-c", "-o", testDir + "/"}, users...)...)
	}
	var tests []string
	if err == nil {
		tests, err = filepath.Glob(filepath.Join(testDir, "*.test"))
	}
	if err != nil {
		b.cleanup()
		return nil, err
	}
	b.bins = append([]string{b.ctl}, tests...)
	return b, nil
}

// check disassembles what lockBuild built, prints one summary line per
// binary to out and fails on any problem.
func (b *lockBinaries) check(out io.Writer) error {
	mod := strings.TrimSuffix(mmioPkg, "/internal/mmio")
	var problems []string
	for _, bin := range b.bins {
		r, err := checkBinary(bin, b.rp, mod)
		if err != nil {
			return err
		}
		for _, sf := range storeFuncs {
			if bin == b.ctl && len(r.sites[sf.method]) == 0 {
				r.problems = append(r.problems, fmt.Sprintf("no code of Region.%s found: the check saw nothing", sf.method))
			}
		}
		fmt.Fprintf(out, "lockcheck: %s\n", r.summary(mod))
		for _, p := range r.problems {
			problems = append(problems, filepath.Base(bin)+": "+p)
		}
	}
	for _, p := range problems {
		fmt.Fprintf(out, "lockcheck: FAIL %s\n", p)
	}
	fmt.Fprintf(out, "lockcheck: %d binaries, %d problems (%.1fs)\n", len(b.bins), len(problems), time.Since(b.t0).Seconds())
	if len(problems) > 0 {
		return fmt.Errorf("lockcheck: %d register stores are locked or not internal/mmio's assembly", len(problems))
	}
	return nil
}

// listedPkg is what lockcheck reads of `go list -json`.
type listedPkg struct {
	ImportPath                         string
	Dir                                string
	GoFiles, SFiles                    []string
	Imports, TestImports, XTestImports []string
}

func goList(dir string, env []string, args ...string) ([]listedPkg, error) {
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var pkgs []listedPkg
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	for {
		var p listedPkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			return pkgs, nil
		} else if err != nil {
			return nil, fmt.Errorf("go list %s: %w", strings.Join(args, " "), err)
		}
		pkgs = append(pkgs, p)
	}
}

func goCmd(dir string, env []string, args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// loadRegPkg finds the register package's files and the lines of its store
// methods' declarations, as built with env (GOARCH, GOFLAGS=-tags=...).
func loadRegPkg(dir string, env []string, path string) (*regPkg, error) {
	pkgs, err := goList(dir, env, path)
	if err != nil {
		return nil, err
	}
	if len(pkgs) != 1 {
		return nil, fmt.Errorf("go list %s: %d packages", path, len(pkgs))
	}
	p := pkgs[0]
	rp := &regPkg{path: p.ImportPath, dir: p.Dir, files: map[string]bool{}, bodies: map[string]srcSpan{}}
	for _, f := range p.SFiles {
		rp.files[filepath.Join(p.Dir, f)] = true
	}
	fset := token.NewFileSet()
	for _, f := range p.GoFiles {
		name := filepath.Join(p.Dir, f)
		rp.files[name] = true
		file, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		for _, d := range file.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv == nil || len(fd.Recv.List) != 1 {
				continue
			}
			if id, ok := fd.Recv.List[0].Type.(*ast.Ident); !ok || id.Name != "Region" {
				continue
			}
			rp.bodies[fd.Name.Name] = srcSpan{name, fset.Position(fd.Pos()).Line, fset.Position(fd.End()).Line}
		}
	}
	for _, sf := range storeFuncs {
		if _, ok := rp.bodies[sf.method]; !ok {
			return nil, fmt.Errorf("%s has no method Region.%s", path, sf.method)
		}
	}
	return rp, nil
}

// insn is one disassembled instruction with its full source position
// (innermost: for inlined code, the inlined function's line).
type insn struct {
	pc   uint64
	text string // Go assembler syntax, as go tool objdump prints it
	file string
	line int
}

type textSym struct {
	name, file string // the function's symbol and the file of its declaration
	insns      []insn
}

// binReport is what checkBinary found in one binary.
type binReport struct {
	bin, arch string
	funcs     int                 // functions disassembled
	sites     map[string][]string // store method -> functions holding its code
	problems  []string
}

func (r *binReport) summary(mod string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %d functions", filepath.Base(r.bin), r.arch, r.funcs)
	for _, sf := range storeFuncs {
		fns := r.sites[sf.method]
		short := make([]string, len(fns))
		for i, f := range fns {
			short[i] = strings.TrimPrefix(f, mod+"/")
		}
		fmt.Fprintf(&b, "; %s in %d: %s", sf.method, len(fns), strings.Join(short, ", "))
	}
	return b.String()
}

// Instruction patterns, in go tool objdump's Go syntax.
var (
	lockedInsn = map[string]*regexp.Regexp{
		// XCHG with a memory operand is locked without the prefix.
		"amd64": regexp.MustCompile(`^(LOCK\b|XCHG[BWLQ]? .*\(|CMPXCHG|XADD)`),
		// Exclusives, acquire/release stores, LSE atomics.
		"arm64": regexp.MustCompile(`^(LDAXR|LDXR|STXR|STLXR|LDAXP|LDXP|STXP|STLXP|STLR|SWP|CAS|LDADD|LDCLR|LDEOR|LDSET|LDSMAX|LDSMIN|LDUMAX|LDUMIN)`),
	}
	// A store to memory through a base register: the destination is the
	// last operand, "0x4(AX)", "0(DX)(CX*1)", "4(R0)" or "(R0)"; groups:
	// mnemonic, offset, base register, index.
	memStore = regexp.MustCompile(`^(MOV\S*|STP\S*) .*, (-?(?:0x[0-9a-f]+|[0-9]+))?\(([A-Z0-9]+)\)(\([A-Z0-9*]+\))?$`)
	callInsn = regexp.MustCompile(`^CALL (\S+)\(SB\)$`)
	// The 32-bit store and the barrier before it, per architecture.
	store32Mov = map[string]string{"amd64": "MOVL", "arm64": "MOVW"}
	ioBarrier  = map[string]string{"amd64": "", "arm64": "DMB $2"} // DMB OSHST
)

// checkBinary disassembles the functions of module mod (and package main)
// in bin and checks every register store of rp in them.
func checkBinary(bin string, rp *regPkg, mod string) (*binReport, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := &binReport{bin: bin, sites: map[string][]string{}}
	switch f.Machine {
	case elf.EM_X86_64:
		r.arch = "amd64"
	case elf.EM_AARCH64:
		r.arch = "arm64"
	default:
		return nil, fmt.Errorf("%s: lockcheck knows amd64 and arm64, not %v", bin, f.Machine)
	}
	pcln, text := f.Section(".gopclntab"), f.Section(".text")
	if pcln == nil || text == nil {
		return nil, fmt.Errorf("%s: no .gopclntab or .text (stripped?)", bin)
	}
	data, err := pcln.Data()
	if err != nil {
		return nil, err
	}
	// The line table counts from runtime.text, which is where .text
	// starts only under Go's internal linker: a cgo binary (external
	// linking) puts C code first, and its lines would shift onto the
	// wrong functions.
	textStart := text.Addr
	if elfSyms, err := f.Symbols(); err == nil {
		for _, sym := range elfSyms {
			if sym.Name == "runtime.text" {
				textStart = sym.Value
				break
			}
		}
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, textStart))
	if err != nil {
		return nil, fmt.Errorf("%s: line table: %w", bin, err)
	}
	syms, err := disassemble(bin, `^(`+regexp.QuoteMeta(mod)+`/|main\.)`, tab, rp.abs)
	if err != nil {
		return nil, err
	}
	r.funcs = len(syms)
	locked := lockedInsn[r.arch]
	bySym := map[string]*textSym{}
	for _, s := range syms {
		bySym[s.name] = s
		for _, in := range s.insns {
			if rp.files[in.file] && locked.MatchString(in.text) {
				r.problems = append(r.problems, fmt.Sprintf("%s: locked or atomic instruction %q at %#x from %s:%d",
					s.name, in.text, in.pc, filepath.Base(in.file), in.line))
			}
		}
		for _, sf := range storeFuncs {
			r.problems = append(r.problems, checkSite(s, rp, sf, r)...)
		}
	}
	for _, sf := range storeFuncs {
		if len(r.sites[sf.method]) > 0 {
			r.problems = append(r.problems, checkAsm(bySym, rp, sf, r.arch)...)
		}
	}
	return r, nil
}

// checkSite checks the code of store method sf.method in function s, if it
// holds any: it calls sf.asm and stores nothing itself.
func checkSite(s *textSym, rp *regPkg, sf storeFunc, r *binReport) []string {
	body := rp.bodies[sf.method]
	asmSym := rp.path + "." + sf.asm + ".abi0"
	var problems []string
	found, calls := false, false
	for _, in := range s.insns {
		if !body.holds(in.file, in.line) {
			continue
		}
		found = true
		where := fmt.Sprintf("%s:%d", filepath.Base(in.file), in.line)
		if m := callInsn.FindStringSubmatch(in.text); m != nil {
			switch {
			case m[1] == asmSym:
				calls = true
			case m[1] == rp.path+".Region.at", strings.HasPrefix(m[1], "runtime."):
			default:
				problems = append(problems, fmt.Sprintf("%s: %s (%s) calls %s, not %s", s.name, sf.method, where, m[1], sf.asm))
			}
			continue
		}
		if m := memStore.FindStringSubmatch(in.text); m != nil && m[3] != "SP" && m[3] != "RSP" {
			problems = append(problems, fmt.Sprintf("%s: %s (%s) stores with %q itself instead of calling %s", s.name, sf.method, where, in.text, sf.asm))
		}
	}
	if !found {
		return nil
	}
	r.sites[sf.method] = append(r.sites[sf.method], s.name)
	if !calls {
		problems = append(problems, fmt.Sprintf("%s: %s does not call %s", s.name, sf.method, sf.asm))
	}
	return problems
}

// checkAsm checks the assembly store function itself.
func checkAsm(bySym map[string]*textSym, rp *regPkg, sf storeFunc, arch string) []string {
	name := rp.path + "." + sf.asm + ".abi0"
	s := bySym[name]
	if s == nil {
		return []string{fmt.Sprintf("%s is not in the binary", name)}
	}
	if filepath.Dir(s.file) != rp.dir || filepath.Ext(s.file) != ".s" {
		return []string{fmt.Sprintf("%s comes from %s, not an assembly file of %s", name, s.file, rp.path)}
	}
	var problems []string
	var offs []int
	barrier := ioBarrier[arch] == ""
	for _, in := range s.insns {
		if in.text == ioBarrier[arch] {
			barrier = true
		}
		m := memStore.FindStringSubmatch(in.text)
		if m == nil || m[3] == "SP" || m[3] == "RSP" {
			continue
		}
		if m[1] != store32Mov[arch] || m[4] != "" {
			problems = append(problems, fmt.Sprintf("%s: store %q is not a plain 32-bit %s", name, in.text, store32Mov[arch]))
		}
		if !barrier {
			problems = append(problems, fmt.Sprintf("%s: store %q without %s before it", name, in.text, ioBarrier[arch]))
		}
		barrier = ioBarrier[arch] == ""
		off, err := strconv.ParseInt(cmp.Or(m[2], "0"), 0, 64)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: offset of %q: %v", name, in.text, err))
		}
		offs = append(offs, int(off))
	}
	if !slices.Equal(offs, sf.offs) {
		problems = append(problems, fmt.Sprintf("%s: stores at offsets %v, want %v in that order", name, offs, sf.offs))
	}
	return problems
}

// disassemble runs go tool objdump on the functions of bin matching re and
// attaches each instruction's full source position from tab, through abs.
func disassemble(bin, re string, tab *gosym.Table, abs func(string) string) ([]*textSym, error) {
	cmd := exec.Command("go", "tool", "objdump", "-s", re, bin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go tool objdump %s: %w\n%s", bin, err, stderr.String())
	}
	var syms []*textSym
	var cur *textSym
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "TEXT "); ok {
			name, file, _ := strings.Cut(rest, "(SB) ")
			cur = &textSym{name: name, file: abs(file)}
			syms = append(syms, cur)
			continue
		}
		// "  file.go:12 \t0x4a1b20\t\t493b6610\t\tCMPQ SP, 0x10(R14)\t"
		var fields []string
		for _, f := range strings.Split(line, "\t") {
			if f = strings.TrimSpace(f); f != "" {
				fields = append(fields, f)
			}
		}
		if cur == nil || len(fields) < 4 || !strings.HasPrefix(fields[1], "0x") {
			continue
		}
		pc, err := strconv.ParseUint(fields[1], 0, 64)
		if err != nil {
			return nil, fmt.Errorf("go tool objdump %s: %q: %w", bin, line, err)
		}
		file, ln, _ := tab.PCToLine(pc)
		cur.insns = append(cur.insns, insn{pc: pc, text: strings.Join(fields[3:], " "), file: abs(file), line: ln})
	}
	if len(syms) == 0 {
		return nil, fmt.Errorf("go tool objdump %s: no functions match %s", bin, re)
	}
	return syms, nil
}
