package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/guest"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (f *multiFlag) String() string     { return strings.Join(*f, " ") }
func (f *multiFlag) Set(v string) error { *f = append(*f, v); return nil }

// bootFlags are the flags test and run share.
type bootFlags struct {
	Profile  string
	QEMUArgs multiFlag
	Append   string
	Timeout  time.Duration
	Keep     bool
	Omit     multiFlag
}

func (b *bootFlags) register(fs *flag.FlagSet, profileDefault string) {
	fs.StringVar(&b.Profile, "profile", profileDefault, "device profile (names joined with +)")
	fs.Var(&b.QEMUArgs, "qemu-arg", "extra QEMU argument (repeatable)")
	fs.StringVar(&b.Append, "append", "", "extra guest kernel command line")
	fs.DurationVar(&b.Timeout, "timeout", 10*time.Minute, "time limit per boot")
	fs.BoolVar(&b.Keep, "keep", false, "keep the work directory (initramfs, disks, sockets)")
	fs.Var(&b.Omit, "omit-device", "") // hidden: leave a controller off the QEMU command line (selftest)
}

// testOptions drive one `test` run.
type testOptions struct {
	bootFlags
	Patterns []string
	Run      string
	Out      io.Writer
}

// testSummary counts what a `test` run saw.
type testSummary struct {
	Passed, Failed, Skipped int
	Problems                []string // one per failed boot: "<profile>: reason"
}

func testVerb(args []string) error {
	var o testOptions
	fs := newTestFlagSet(&o)
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	o.Patterns = fs.Args()
	o.Out = os.Stdout
	s, err := runVMTests(&o)
	if err != nil {
		fmt.Fprintln(os.Stdout, "hack/qemu test:", err)
		fmt.Printf("%d passed, %d failed\n", s.Passed, s.Failed+1)
		return exitError{1}
	}
	printSummary(os.Stdout, s)
	if s.Failed > 0 || len(s.Problems) > 0 {
		return exitError{1}
	}
	return nil
}

func newTestFlagSet(o *testOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	o.register(fs, "")
	fs.StringVar(&o.Run, "run", "", "run only tests matching this regexp (passed on to -test.run)")
	return fs
}

func printSummary(w io.Writer, s testSummary) {
	fmt.Fprintln(w, "--- summary")
	for _, p := range s.Problems {
		fmt.Fprintln(w, "FAIL", p)
	}
	if s.Skipped > 0 {
		fmt.Fprintf(w, "%d skipped\n", s.Skipped)
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", s.Passed, s.Failed)
}

// splitRun splits a -test.run regexp at its top-level slashes.
func splitRun(re string) (first, rest string) {
	depth := 0
	for i, r := range re {
		switch r {
		case '[', '(':
			depth++
		case ']', ')':
			depth--
		case '/':
			if depth == 0 {
				return re[:i], re[i:]
			}
		}
	}
	return re, ""
}

// runRegexp is the -test.run value that selects exactly names (plus the
// subtest part of the user's --run).
func runRegexp(names []string, rest string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = regexp.QuoteMeta(n)
	}
	return "^(" + strings.Join(q, "|") + ")$" + rest
}

// profileTests groups the selected tests by profile.
func profileTests(pkgs []vmPackage, only, run string) (map[string][]vmPackage, string, error) {
	var first, rest string
	var runRe *regexp.Regexp
	if run != "" {
		first, rest = splitRun(run)
		var err error
		if runRe, err = regexp.Compile(first); err != nil {
			return nil, "", fmt.Errorf("--run: %w", err)
		}
	}
	if only != "" {
		p, err := vmtest.ParseProfile(only)
		if err != nil {
			return nil, "", err
		}
		only = p.Name
	}
	out := map[string][]vmPackage{}
	for _, p := range pkgs {
		byProf := map[string][]vmTest{}
		for _, t := range p.Tests {
			if only != "" && t.Profile != only {
				continue
			}
			if runRe != nil && !runRe.MatchString(t.Name) {
				continue
			}
			byProf[t.Profile] = append(byProf[t.Profile], t)
		}
		for prof, ts := range byProf {
			out[prof] = append(out[prof], vmPackage{ImportPath: p.ImportPath, Dir: p.Dir, Tests: ts})
		}
	}
	return out, rest, nil
}

func binName(importPath string) string {
	return strings.ReplaceAll(strings.TrimPrefix(importPath, modulePath+"/"), "/", "_") + ".test"
}

// guestEnv is what the go commands that build for the guest add to their
// environment: static, no cgo, the guest's system. ci's static checks
// build with it too, so the VM tests' builds reuse their compiles.
var guestEnv = []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}

// goBuild runs a go build/test -c for the guest: static, no cgo.
func goBuild(out io.Writer, args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), guestEnv...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// buildTestBinaries builds the guest test binaries of pkgs into dir, as
// many at once as the host has CPUs: each go command compiles in parallel
// but links alone, and the links of a dozen binaries were most of the
// build. Each build's output is written to out in one piece; the first
// error (in pkgs' order) is returned.
func buildTestBinaries(out io.Writer, dir string, pkgs []string) error {
	logs := make([]bytes.Buffer, len(pkgs))
	errs := make([]error, len(pkgs))
	sem := make(chan struct{}, max(1, runtime.NumCPU()))
	var wg sync.WaitGroup
	for i, p := range pkgs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = goBuild(&logs[i], "test", "-c", "-o", filepath.Join(dir, binName(p)), p)
		}()
	}
	wg.Wait()
	for i := range pkgs {
		out.Write(logs[i].Bytes())
	}
	return errors.Join(errs...)
}

func runVMTests(o *testOptions) (testSummary, error) {
	var s testSummary
	if len(o.Patterns) == 0 {
		o.Patterns = []string{"./..."}
	}
	assets, err := setup(o.Out)
	if err != nil {
		return s, err
	}
	pkgs, err := discover(o.Patterns)
	if err != nil {
		return s, err
	}
	groups, rest, err := profileTests(pkgs, o.Profile, o.Run)
	if err != nil {
		return s, err
	}
	if len(groups) == 0 {
		// Nothing selected is never a pass: a VM test that cannot be
		// found cannot fail either.
		what := strings.Join(o.Patterns, " ")
		if o.Run != "" {
			what += " matching --run " + o.Run
		}
		if o.Profile != "" {
			what += " in profile " + o.Profile
		}
		return s, fmt.Errorf("no VM tests selected in %s", what)
	}
	work, err := os.MkdirTemp("", "gonvme-vm-")
	if err != nil {
		return s, err
	}
	if o.Keep {
		fmt.Fprintf(o.Out, "hack/qemu: work dir %s (kept)\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	bin := filepath.Join(work, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return s, err
	}
	t0 := time.Now()
	if err := goBuild(o.Out, "build", "-o", filepath.Join(work, "init"), modulePath+"/hack/qemu/guestinit"); err != nil {
		return s, err
	}
	var paths []string
	for _, ps := range groups {
		for _, p := range ps {
			if !slices.Contains(paths, p.ImportPath) {
				paths = append(paths, p.ImportPath)
			}
		}
	}
	if err := buildTestBinaries(o.Out, bin, paths); err != nil {
		return s, err
	}
	fmt.Fprintf(o.Out, "hack/qemu: built guest init and %d test binaries in %.1fs\n", len(paths), time.Since(t0).Seconds())

	profiles := make([]string, 0, len(groups))
	for p := range groups {
		profiles = append(profiles, p)
	}
	sort.Strings(profiles)
	// The boots of the profiles whose tests measure rates and latencies
	// run one at a time, their logs streamed. The others go first, two at
	// a time on a host with two CPUs or more, each log printed whole when
	// its boot and the ones before it have ended. Under TCG a boot with a
	// few functional tests is mostly the kernel's own start, one vCPU's
	// work: two of them took 8.1 s together against 12.4 s one after the
	// other on 2 CPUs.
	var pairs, lone []*vmBoot
	for _, prof := range profiles {
		b := &vmBoot{prof: prof, done: make(chan struct{})}
		if timedProfile(prof) {
			lone = append(lone, b)
		} else {
			pairs = append(pairs, b)
		}
	}
	if runtime.NumCPU() < 2 || len(pairs) < 2 {
		lone, pairs = append(pairs, lone...), nil
		sort.Slice(lone, func(i, j int) bool { return lone[i].prof < lone[j].prof })
	}
	go func() {
		sem := make(chan struct{}, 2)
		for _, b := range pairs { // started in order
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; close(b.done) }()
				b.run(&b.log, o, assets, work, bin, groups[b.prof], rest)
			}()
		}
	}()
	var timings []string
	var firstErr error
	account := func(b *vmBoot) {
		if b.err != nil {
			firstErr = cmp.Or(firstErr, b.err)
			return
		}
		v := b.v
		s.Passed += len(v.Passed)
		s.Failed += v.failures()
		s.Skipped += len(v.Skipped)
		timings = append(timings, fmt.Sprintf("boot %s: %.1fs from start to verdict, %d selected, %d passed", b.prof, b.elapsed.Seconds(), len(b.selected), len(v.Passed)))
		fmt.Fprintln(o.Out, timings[len(timings)-1])
		if !v.Pass {
			s.Problems = append(s.Problems, b.prof+": "+v.Reason)
		}
	}
	for _, b := range pairs { // every one, even after an error: they use work
		<-b.done
		o.Out.Write(b.log.Bytes())
		account(b)
	}
	for _, b := range lone {
		if firstErr != nil {
			break
		}
		b.run(o.Out, o, assets, work, bin, groups[b.prof], rest)
		account(b)
	}
	if firstErr != nil {
		return s, firstErr
	}
	if len(timings) > 1 {
		for _, t := range timings {
			fmt.Fprintln(o.Out, t)
		}
	}
	return s, nil
}

// timedProfile reports whether a profile's VM tests measure rates or
// latencies (nvmectl perf, the poller modes, the soak, the NVMe/TCP
// runs), so that its boot must have the host to itself.
func timedProfile(prof string) bool {
	switch prof {
	case "default", "null", "nvmf":
		return true
	}
	return false
}

// vmBoot is one boot of runVMTests: its profile and, once it ran, its
// verdict and time; a paired boot also its log, and done is closed when
// it ended.
type vmBoot struct {
	prof     string
	done     chan struct{}
	log      bytes.Buffer
	v        verdict
	elapsed  time.Duration
	selected []string
	err      error
}

// run boots the tests of pkgs in b's profile, logging to out.
func (b *vmBoot) run(out io.Writer, o *testOptions, assets *Assets, work, bin string, pkgs []vmPackage, rest string) {
	boot := &vmtest.Boot{}
	if o.Timeout >= time.Minute {
		// Let a hung test time out in the guest (goroutine dump, clean
		// verdict) a little before the host kills QEMU.
		boot.TestTimeout = (o.Timeout * 9 / 10).String()
	}
	var extra []ramFile
	for _, p := range pkgs {
		names := make([]string, len(p.Tests))
		for i, t := range p.Tests {
			names[i] = t.Name
			b.selected = append(b.selected, qualify(p.ImportPath, t.Name))
		}
		name := binName(p.ImportPath)
		boot.Tests = append(boot.Tests, vmtest.Test{Package: p.ImportPath, Binary: guest.BinDir + "/" + name, Run: runRegexp(names, rest)})
		extra = append(extra, ramFile{Name: strings.TrimPrefix(guest.BinDir, "/") + "/" + name, Src: filepath.Join(bin, name), Perm: 0o755})
	}
	b.v, b.elapsed, b.err = bootProfile(out, assets, work, b.prof, boot, extra, &o.bootFlags)
	if b.err == nil {
		b.v.checkSelected(b.selected)
	}
}

// bootProfile writes the initramfs for one profile, boots it and judges it.
func bootProfile(out io.Writer, a *Assets, work, prof string, bt *vmtest.Boot, extra []ramFile, f *bootFlags) (verdict, time.Duration, error) {
	p, err := vmtest.ParseProfile(prof)
	if err != nil {
		return verdict{}, 0, err
	}
	dir := filepath.Join(work, strings.ReplaceAll(p.Name, "+", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return verdict{}, 0, err
	}
	bt.Profile = p.Name
	bt.Ctrls = p.Ctrls
	bt.VFIOModules = a.VFIOModules
	bt.NVMeModules = a.NVMeModules
	bt.HugePages = 128
	js, err := json.MarshalIndent(bt, "", "  ")
	if err != nil {
		return verdict{}, 0, err
	}
	files := []ramFile{
		{Name: "init", Src: filepath.Join(work, "init"), Perm: 0o755},
		{Name: strings.TrimPrefix(guest.BootPath, "/"), Data: js, Perm: 0o644},
	}
	for _, mod := range append(append([]string{}, a.VFIOModules...), a.NVMeModules...) {
		files = append(files, ramFile{Name: strings.TrimPrefix(guest.ModuleDir, "/") + "/" + mod, Src: filepath.Join(a.ModuleDir, mod), Perm: 0o644})
	}
	files = append(files, extra...)
	m := newMachine(a, dir)
	m.Profile = p
	m.Append = f.Append
	m.Extra = f.QEMUArgs
	m.Omit = map[string]bool{}
	for _, id := range f.Omit {
		m.Omit[id] = true
	}
	if err := writeInitramfs(m.Initrd, files); err != nil {
		return verdict{}, 0, err
	}
	if err := makeDisks(p, dir); err != nil {
		return verdict{}, 0, err
	}
	fmt.Fprintf(out, "=== boot %s: %s %s\n", p.Name, m.QEMU, strings.Join(m.args(), " "))
	o, err := boot(m, f.Timeout, out)
	if err != nil {
		return verdict{}, 0, err
	}
	v := judge(o.Lines, o.ExitCode, o.TimedOut, f.Timeout)
	if !v.Pass || len(v.Faults) > 0 {
		// The kernel log is printed only when it matters.
		fmt.Fprintf(out, "--- guest kernel log of boot %s (%d records)\n", p.Name, len(v.KernelLog))
		for _, l := range v.KernelLog {
			fmt.Fprintln(out, strings.TrimPrefix(l, guest.KmsgPrefix))
		}
		for _, f := range v.Faults {
			fmt.Fprintln(out, "hack/qemu: guest kernel log breaks a rule:", f)
		}
	}
	if !f.Keep {
		_ = os.RemoveAll(dir)
	}
	return v, o.Elapsed, nil
}
