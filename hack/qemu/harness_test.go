package main

import (
	"bytes"
	"debug/elf"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/guest"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

func TestVMTestsInFile(t *testing.T) {
	src := `package x_test

import (
	"testing"

	vt "github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

func TestA(t *testing.T) { vt.Require(t, "small-mdts+4k") }
func TestB(t *testing.T) {
	if true {
		env := vt.Require(t, "default")
		_ = env
	}
}
func helper(t *testing.T) { vt.Require(t, "null") }
func TestMain(m *testing.M) {}
`
	got, err := vmTestsInFile(token.NewFileSet(), "x_vm_test.go", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []vmTest{{Name: "TestA", Profile: "4k+small-mdts"}, {Name: "TestB", Profile: "default"}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].Profile != want[i].Profile {
			t.Errorf("test %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestVMTestsInFileErrors(t *testing.T) {
	head := "package x_test\nimport (\n\"testing\"\n\"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest\"\n)\n"
	for _, tc := range []struct{ name, body, want string }{
		{"variable", "var p = \"default\"\nfunc TestA(t *testing.T) { vmtest.Require(t, p) }", "must be a string literal"},
		{"missing", "func TestA(t *testing.T) {}", "does not call vmtest.Require"},
		{"unknown", "func TestA(t *testing.T) { vmtest.Require(t, \"bogus\") }", "unknown device profile"},
		{"two", "func TestA(t *testing.T) { vmtest.Require(t, \"null\"); vmtest.Require(t, \"4k\") }", "two profiles"},
	} {
		_, err := vmTestsInFile(token.NewFileSet(), "x_vm_test.go", []byte(head+tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestRunRegexp(t *testing.T) {
	first, rest := splitRun("TestA|TestB/sub[/]x")
	if first != "TestA|TestB" || rest != "/sub[/]x" {
		t.Fatalf("splitRun = %q, %q", first, rest)
	}
	if got := runRegexp([]string{"TestA", "TestB"}, rest); got != "^(TestA|TestB)$/sub[/]x" {
		t.Fatalf("runRegexp = %q", got)
	}
	pkgs := []vmPackage{{ImportPath: "p", Tests: []vmTest{{Name: "TestA", Profile: "default"}, {Name: "TestB", Profile: "null"}, {Name: "TestC", Profile: "null"}}}}
	g, _, err := profileTests(pkgs, "", "TestB|TestA")
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != 2 || len(g["null"][0].Tests) != 1 || g["null"][0].Tests[0].Name != "TestB" {
		t.Fatalf("groups = %+v", g)
	}
	g, _, _ = profileTests(pkgs, "null", "")
	if len(g) != 1 || len(g["null"][0].Tests) != 2 {
		t.Fatalf("--profile null groups = %+v", g)
	}
}

func argsOf(t *testing.T, prof string, omit ...string) string {
	t.Helper()
	p, err := vmtest.ParseProfile(prof)
	if err != nil {
		t.Fatal(err)
	}
	m := &machine{QEMU: "q", Firmware: "fw", Kernel: "k", Initrd: "i", Profile: p, DiskDir: "/d",
		MonitorSock: "/d/m.sock", QMPSock: "/d/q.sock", Append: "foo=1", Extra: []string{"-x"}, Omit: map[string]bool{}}
	for _, o := range omit {
		m.Omit[o] = true
	}
	return strings.Join(m.args(), " ")
}

func TestQEMUArgs(t *testing.T) {
	for _, tc := range []struct {
		prof      string
		omit      []string
		want, not []string
	}{
		{prof: "default", want: []string{
			"-accel tcg", "-bios fw", "-machine q35", "-smp 2", "intel-iommu,intremap=on", "-no-reboot",
			"isa-debug-exit,iobase=0xf4,iosize=0x04", "panic=-1 quiet no_timer_check clocksource=tsc tsc=reliable foo=1",
			"driver=file,node-name=nvme0n1-base,filename=/d/nvme0n1.img,cache.no-flush=on,discard=unmap",
			"nvme,id=nvme0,serial=gonvme0,mdts=7,addr=0x4",
			"nvme-ns,id=nvme0n1,bus=nvme0,drive=nvme0n1,nsid=1,logical_block_size=512", " -x",
		}, not: []string{"-accel kvm", "nvme1"}},
		{prof: "4k+small-mdts", want: []string{"mdts=2", "logical_block_size=4096,physical_block_size=4096"}},
		{prof: "multi-ns", want: []string{"nsid=3,logical_block_size=512", "nvme0n2,bus=nvme0,drive=nvme0n2,nsid=2,logical_block_size=4096"}},
		{prof: "two-ctrl", want: []string{"nvme,id=nvme1,serial=gonvme1,mdts=7,addr=0x5"}},
		{prof: "two-ctrl", omit: []string{"nvme1"}, not: []string{"nvme1"}},
		{prof: "null", want: []string{"driver=null-co,node-name=nvme0n1-base,size=1073741824,read-zeroes=on"}, not: []string{".img"}},
		{prof: "media-errors", want: []string{"driver=blkdebug,node-name=nvme0n1-blkdebug,image=nvme0n1-base,inject-error.0.event=read_aio,inject-error.0.iotype=read,inject-error.0.errno=5,inject-error.0.sector=100",
			"inject-error.2.sector=4000", "driver=raw,node-name=nvme0n1,file=nvme0n1-blkdebug"}},
		{prof: "media-errors+4k", want: []string{"inject-error.0.sector=800"}},
		{prof: "hotplug+two-ctrl", want: []string{"pcie-root-port,id=rp1,bus=pcie.0,chassis=2,addr=0x11", "nvme,id=nvme1,serial=gonvme1,mdts=7,addr=0x0,bus=rp1"}},
		{prof: "shared-group", want: []string{"pci-bridge,id=br0,bus=pcie.0,chassis_nr=1,addr=0x10", "nvme,id=nvme0,serial=gonvme0,mdts=7,addr=0x1,bus=br0", "addr=0x2,bus=br0"}},
	} {
		got := argsOf(t, tc.prof, tc.omit...)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: args lack %q:\n%s", tc.prof, w, got)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(got, n) {
				t.Errorf("%s: args hold %q:\n%s", tc.prof, n, got)
			}
		}
	}
}

func TestProfiles(t *testing.T) {
	p, err := vmtest.ParseProfile("small-mdts+4k+hotplug+two-ctrl")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "two-ctrl+hotplug+4k+small-mdts" {
		t.Errorf("canonical name = %q", p.Name)
	}
	if len(p.Ctrls) != 2 || p.Ctrls[1].Addr != "0000:02:00.0" || !p.Ctrls[1].Removable || p.Ctrls[0].MDTS != 2 ||
		p.Ctrls[0].Namespaces[0].Blocks != (1<<30)/4096 {
		t.Errorf("profile = %+v", p)
	}
	for _, bad := range []string{"", "bogus", "4k+4k", "hotplug+shared-group"} {
		if _, err := vmtest.ParseProfile(bad); err == nil {
			t.Errorf("ParseProfile(%q) succeeded", bad)
		}
	}
	d, _ := vmtest.ParseProfile("default")
	if d.Ctrls[0].Addr != "0000:00:04.0" || d.Ctrls[0].Serial != "gonvme0" || d.Ctrls[0].Namespaces[0].Blocks != (1<<30)/512 {
		t.Errorf("default = %+v", d)
	}
}

func TestInitramfs(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "init")
	if err := os.WriteFile(src, []byte("#!init"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "initramfs.cpio")
	err := writeInitramfs(out, []ramFile{
		{Name: "init", Src: src, Perm: 0o755},
		{Name: "gonvme/boot.json", Data: []byte(`{"profile":"default"}`), Perm: 0o644},
		{Name: "gonvme/modules/vfio.ko", Data: []byte("ko"), Perm: 0o644},
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(f))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]cpio.Record{}
	for _, r := range recs {
		got[r.Name] = r
	}
	for name, content := range map[string]string{"init": "#!init", "gonvme/boot.json": `{"profile":"default"}`, "gonvme/modules/vfio.ko": "ko"} {
		r, ok := got[name]
		if !ok {
			t.Errorf("%s missing from the archive", name)
			continue
		}
		b, _ := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if string(b) != content {
			t.Errorf("%s = %q, want %q", name, b, content)
		}
	}
	if r := got["init"]; r.Mode != cpio.S_IFREG|0o755 {
		t.Errorf("init mode = %#o", r.Mode)
	}
	if r, ok := got["dev/console"]; !ok || r.Mode&cpio.S_IFMT != cpio.S_IFCHR || r.Rmajor != 5 || r.Rminor != 1 {
		t.Errorf("dev/console = %+v, %v", r.Info, ok)
	}
	if _, ok := got["gonvme/modules"]; !ok {
		t.Error("parent directory gonvme/modules missing")
	}
}

// writeKO writes a minimal ELF object with a .modinfo section.
func writeKO(t *testing.T, path, modinfo string) {
	t.Helper()
	var b bytes.Buffer
	shstr := "\x00.modinfo\x00.shstrtab\x00"
	data := []byte(modinfo)
	// ELF64 header (64 bytes), then data, then shstrtab, then 3 section headers.
	dataOff := 64
	strOff := dataOff + len(data)
	shOff := (strOff + len(shstr) + 7) &^ 7
	hdr := make([]byte, 64)
	copy(hdr, "\x7fELF\x02\x01\x01")
	le := func(buf []byte, off int, v uint64, n int) {
		for i := 0; i < n; i++ {
			buf[off+i] = byte(v >> (8 * i))
		}
	}
	le(hdr, 16, uint64(elf.ET_REL), 2)
	le(hdr, 18, uint64(elf.EM_X86_64), 2)
	le(hdr, 20, 1, 4)
	le(hdr, 40, uint64(shOff), 8)
	le(hdr, 52, 64, 2)
	le(hdr, 58, 64, 2)
	le(hdr, 60, 3, 2)
	le(hdr, 62, 2, 2)
	b.Write(hdr)
	b.Write(data)
	b.WriteString(shstr)
	for b.Len() < shOff {
		b.WriteByte(0)
	}
	sh := func(name uint32, typ elf.SectionType, off, size int) {
		s := make([]byte, 64)
		le(s, 0, uint64(name), 4)
		le(s, 4, uint64(typ), 4)
		le(s, 24, uint64(off), 8)
		le(s, 32, uint64(size), 8)
		le(s, 48, 1, 8)
		b.Write(s)
	}
	sh(0, elf.SHT_NULL, 0, 0)
	sh(1, elf.SHT_PROGBITS, dataOff, len(data))
	sh(10, elf.SHT_STRTAB, strOff, len(shstr))
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestModuleOrder(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "kernel", "drivers")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, deps := range map[string]string{
		"vfio":             "",
		"vfio_iommu_type1": "vfio",
		"irqbypass":        "",
		"vfio-pci-core":    "vfio,irqbypass",
		"vfio-pci":         "vfio-pci-core,vfio",
		"unrelated":        "",
	} {
		writeKO(t, filepath.Join(sub, name+".ko"), "license=GPL\x00depends="+deps+"\x00name="+name+"\x00")
	}
	idx, err := indexModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	order, err := idx.order([]string{"vfio-pci", "vfio_iommu_type1", "vfio_virqfd"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range order {
		names = append(names, m.name)
	}
	want := []string{"vfio", "irqbypass", "vfio_pci_core", "vfio_pci", "vfio_iommu_type1"}
	if !slices.Equal(names, want) {
		t.Errorf("order = %v, want %v", names, want)
	}
	writeKO(t, filepath.Join(sub, "broken.ko"), "depends=nothere\x00")
	idx, _ = indexModules(dir)
	if _, err := idx.order([]string{"broken"}); err == nil || !strings.Contains(err.Error(), "nothere") {
		t.Errorf("missing dependency: err = %v", err)
	}
}

func TestParseModinfo(t *testing.T) {
	info := parseModinfo([]byte("alias=a\x00alias=b\x00depends=crc-t10dif,t10-pi\x00\x00junk\x00"))
	if !slices.Equal(info["alias"], []string{"a", "b"}) || !slices.Equal(dependsOf(info), []string{"crc_t10dif", "t10_pi"}) {
		t.Errorf("info = %v", info)
	}
}

func TestParseAptDepends(t *testing.T) {
	got, err := parseAptDepends([]byte("linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n"))
	if err != nil || got != "linux-image-6.1.0-56-amd64" {
		t.Errorf("got %q, %v", got, err)
	}
	if _, err := parseAptDepends([]byte("linux-image-amd64\n")); err == nil {
		t.Error("no dependency: want an error")
	}
}

func TestJudge(t *testing.T) {
	pass := []string{"=== RUN   TestA", "--- PASS: TestA (0.01s)", "=== RUN   TestB", "    --- PASS: TestB/sub (0.00s)", "--- PASS: TestB (0.00s)", "PASS", "GONVME-GUEST: PASS (guest 1.0s)"}
	for _, tc := range []struct {
		name     string
		lines    []string
		code     int
		timedOut bool
		pass     bool
		reason   string
		passed   int
	}{
		{"pass", pass, 33, false, true, "", 2},
		{"pass code without line", pass[:5], 33, false, false, "no pass line", 2},
		{"fail", []string{"=== RUN   TestA", "    a_test.go:9: boom", "--- FAIL: TestA (0.00s)", "GONVME-GUEST: FAIL: tests failed in p"}, 3, false, false, "TestA: a_test.go:9: boom", 0},
		{"panic exits 0", []string{"=== RUN   TestA", "[    2.0] Kernel panic - not syncing: sysrq triggered crash"}, 0, false, false, "guest kernel panic", 0},
		{"timeout", []string{"=== RUN   TestA"}, -1, true, false, "timed out after 1m0s", 0},
		{"no verdict", nil, 0, false, false, "without a verdict", 0},
		{"qemu error", nil, 1, false, false, "QEMU exited 1", 0},
		{"fail line", []string{"GONVME-GUEST: FAIL: load module vfio.ko: ENOENT"}, 3, false, false, "load module vfio.ko", 0},
		{"test timeout", []string{"=== RUN   TestH", "panic: test timed out after 1m3s", "GONVME-GUEST: FAIL: tests failed in p"}, 3, false, false, "tests failed in p (panic: test timed out after 1m3s)", 0},
	} {
		v := judge(tc.lines, tc.code, tc.timedOut, time.Minute)
		if v.Pass != tc.pass || !strings.Contains(v.Reason, tc.reason) || len(v.Passed) != tc.passed {
			t.Errorf("%s: verdict %+v, want pass=%v reason~%q passed=%d", tc.name, v, tc.pass, tc.reason, tc.passed)
		}
	}
	v := judge([]string{"hello", "GONVME-GUEST: EXIT 4", "GONVME-GUEST: PASS"}, 33, false, time.Minute)
	if !v.Pass || v.ExitStatus != 4 {
		t.Errorf("run verdict = %+v", v)
	}
}

func TestCountTestEvents(t *testing.T) {
	in := `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"    boom\n"}
{"Action":"fail","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Test":"TestB"}
{"Action":"pass","Package":"p","Test":"TestB/sub"}
{"Action":"output","Package":"p","Test":"TestC/sub","Output":"    why the subtest failed\n"}
{"Action":"fail","Package":"p","Test":"TestC/sub"}
{"Action":"output","Package":"p","Test":"TestC","Output":"--- FAIL: TestC\n"}
{"Action":"fail","Package":"p","Test":"TestC"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t0.1s\n"}
{"Action":"fail","Package":"p"}
{"Action":"fail","Package":"q"}
`
	var out bytes.Buffer
	r := countTestEvents(strings.NewReader(in), &out)
	if r.Passed != 1 || r.Failed != 3 {
		t.Errorf("passed %d failed %d, want 1 and 3", r.Passed, r.Failed)
	}
	if !strings.Contains(out.String(), "boom") || !strings.Contains(out.String(), "FAIL\tp") ||
		!strings.Contains(out.String(), "why the subtest failed") {
		t.Errorf("output %q lacks the failure", out.String())
	}
}

// TestCountTestEventsCrash: a panic in a goroutine ends the test binary
// while a test runs; test2json gives that test no result, only its output
// (the panic) and the package's failure. The output must be printed and
// the test named and counted, or ci's log hides why it failed.
func TestCountTestEventsCrash(t *testing.T) {
	in := `{"Action":"run","Package":"m/p","Test":"TestA"}
{"Action":"output","Package":"m/p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"m/p","Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}
{"Action":"pass","Package":"m/p","Test":"TestA"}
{"Action":"run","Package":"m/p","Test":"TestB"}
{"Action":"output","Package":"m/p","Test":"TestB","Output":"panic: boom\n"}
{"Action":"output","Package":"m/p","Test":"TestB","Output":"goroutine 20 [running]:\n"}
{"Action":"output","Package":"m/p","Output":"FAIL\tm/p\t0.1s\n"}
{"Action":"fail","Package":"m/p"}
{"Action":"pass","Package":"m/q","Test":"TestC"}
`
	var out bytes.Buffer
	r := countTestEvents(strings.NewReader(in), &out)
	if r.Passed != 2 || r.Failed != 1 {
		t.Errorf("passed %d failed %d, want 2 and 1", r.Passed, r.Failed)
	}
	if !strings.Contains(out.String(), "--- FAIL: TestB (did not end") || !strings.Contains(out.String(), "panic: boom") {
		t.Errorf("output %q lacks the crash", out.String())
	}
	rep := strings.Join(r.failReport(), "\n")
	if !strings.Contains(rep, "m/p.TestB") || !strings.Contains(rep, "packages failed: m/p") {
		t.Errorf("summary %q does not name the test and package", rep)
	}
}

func TestHostSkips(t *testing.T) {
	in := `{"Action":"run","Package":"github.com/seedb8fa28ef/gonvme/dma","Test":"TestHuge"}
{"Action":"output","Package":"github.com/seedb8fa28ef/gonvme/dma","Test":"TestHuge","Output":"=== RUN   TestHuge\n"}
{"Action":"output","Package":"github.com/seedb8fa28ef/gonvme/dma","Test":"TestHuge","Output":"    alloc_test.go:9: no hugepages reserved\n"}
{"Action":"output","Package":"github.com/seedb8fa28ef/gonvme/dma","Test":"TestHuge","Output":"--- SKIP: TestHuge (0.00s)\n"}
{"Action":"skip","Package":"github.com/seedb8fa28ef/gonvme/dma","Test":"TestHuge"}
{"Action":"output","Package":"github.com/seedb8fa28ef/gonvme/nvme","Test":"TestVMX","Output":"    x_vm_test.go:9: vmtest: needs a QEMU guest with profile \"default\": go run ./hack/qemu test\n"}
{"Action":"skip","Package":"github.com/seedb8fa28ef/gonvme/nvme","Test":"TestVMX"}
{"Action":"pass","Package":"github.com/seedb8fa28ef/gonvme/nvme","Test":"TestY"}
`
	r := countTestEvents(strings.NewReader(in), io.Discard)
	if len(r.Skips) != 2 || r.Skips[0].Reason != "alloc_test.go:9: no hugepages reserved" {
		t.Fatalf("skips = %+v", r.Skips)
	}
	err := r.checkSkips()
	if err == nil || !strings.Contains(err.Error(), "dma.TestHuge: alloc_test.go:9: no hugepages reserved") {
		t.Fatalf("an unlisted skip must fail ci naming it: %v", err)
	}
	if bad := r.unexpectedSkips(); len(bad) != 1 {
		t.Fatalf("the VM test's host skip is expected, the other is not: %v", bad)
	}
	rep := strings.Join(r.skipReport(), "\n")
	if !strings.Contains(rep, "1 VM tests") || !strings.Contains(rep, "NOT EXPECTED") {
		t.Errorf("report:\n%s", rep)
	}
	old := expectedSkips
	defer func() { expectedSkips = old }()
	expectedSkips = []expectedSkip{{Package: "dma", Test: regexp.MustCompile(`^TestHuge$`), Reason: regexp.MustCompile(`no hugepages`), Why: "test"}}
	if err := r.checkSkips(); err != nil {
		t.Errorf("listed skip: %v", err)
	}
}

func TestJudgeStrict(t *testing.T) {
	pkgLine := "gonvme-init: github.com/seedb8fa28ef/gonvme/nvme -test.run '^(TestA|TestB)$'"
	pass := "GONVME-GUEST: PASS (guest 1.0s)"
	for _, tc := range []struct {
		name   string
		lines  []string
		reason string
	}{
		{"skip in the guest", []string{pkgLine, "--- PASS: TestA (0.01s)", "--- SKIP: TestB (0.00s)", pass}, "tests skipped in the guest (a skip there is a failure): nvme.TestB"},
		{"subtest skip", []string{pkgLine, "    --- SKIP: TestA/x (0.00s)", "--- PASS: TestA (0.01s)", "--- PASS: TestB (0.01s)", pass}, "nvme.TestA/x"},
		{"no tests to run", []string{pkgLine, "testing: warning: no tests to run", "PASS", pass}, "no tests to run\"): nvme"},
		{"not run", []string{pkgLine, "--- PASS: TestA (0.01s)", "PASS", pass}, "selected but did not run: nvme.TestB"},
		{"warning", []string{pkgLine, "--- PASS: TestA (0.01s)", "--- PASS: TestB (0.01s)", "GONVME-KMSG 812 4 WARNING: CPU: 0 PID: 77 at drivers/iommu/x.c:9 f+0x1/0x2", pass}, "guest kernel log: warning: WARNING: CPU: 0 PID: 77"},
		{"dmar", []string{pkgLine, "--- PASS: TestA (0.01s)", "--- PASS: TestB (0.01s)",
			"GONVME-KMSG 900 3 DMAR: DRHD: handling fault status reg 2",
			"GONVME-KMSG 901 3 DMAR: [DMA Write NO_PASID] Request device [00:04.0] fault addr 0xdead000 [fault reason 0x02] Present bit in context entry is clear", pass}, "dmar fault: DMAR: DRHD: handling fault"},
		{"hung task", []string{pkgLine, "--- PASS: TestA (0.01s)", "--- PASS: TestB (0.01s)", "GONVME-KMSG 5 3 INFO: task nvmectl:99 blocked for more than 120 seconds.", pass}, "hung task"},
		{"nvme timeout", []string{pkgLine, "--- PASS: TestA (0.01s)", "--- PASS: TestB (0.01s)", "GONVME-KMSG 5 4 nvme nvme0: I/O 12 QID 1 timeout, aborting", pass}, "nvme timeout"},
	} {
		v := judge(tc.lines, 33, false, time.Minute)
		v.checkSelected([]string{"nvme.TestA", "nvme.TestB"})
		if v.Pass || !strings.Contains(v.Reason, tc.reason) || v.failures() == 0 {
			t.Errorf("%s: verdict pass=%v reason %q (failures %d), want a failure with %q", tc.name, v.Pass, v.Reason, v.failures(), tc.reason)
		}
	}
	// Declared, harmless and ordinary records pass.
	ok := []string{pkgLine, "=== RUN   TestA", "GONVME-KMSG-EXPECTED 812 TestA warning", "--- PASS: TestA (0.01s)", "--- PASS: TestB (0.01s)",
		"GONVME-KMSG 812 4 WARNING: CPU: 0 PID: 77 at x", "GONVME-KMSG 813 6 nvme nvme0: pci function 0000:00:04.0",
		"GONVME-KMSG 814 6 nvme nvme0: Shutdown timeout set to 8 seconds", "GONVME-KMSG 815 6 DMAR: IOMMU enabled", pass}
	v := judge(ok, 33, false, time.Minute)
	v.checkSelected([]string{"nvme.TestA", "nvme.TestB"})
	if !v.Pass || len(v.KernelLog) != 4 {
		t.Errorf("declared record: verdict %+v", v)
	}
}

func TestParseKmsg(t *testing.T) {
	r, ok := guest.ParseKmsg("4,812,1234567,-;WARNING: CPU: 0 PID: 1 at x\n SUBSYSTEM=pci\n")
	if !ok || r.Seq != 812 || r.Level != 4 || r.Facility != 0 || r.Text != "WARNING: CPU: 0 PID: 1 at x" {
		t.Fatalf("ParseKmsg = %+v, %v", r, ok)
	}
	back, ok := guest.ParseKmsgLine(r.Line())
	if !ok || back.Seq != r.Seq || back.Text != r.Text || back.Level != r.Level {
		t.Fatalf("round trip %+v -> %q -> %+v", r, r.Line(), back)
	}
	if r, ok := guest.ParseKmsg("14,9,1,-;user said hi"); !ok || r.Facility != 1 || r.Level != 6 {
		t.Errorf("user record = %+v", r)
	}
	for _, bad := range []string{"", "no semicolon", "x,1,2,-;t", "1;t"} {
		if _, ok := guest.ParseKmsg(bad); ok {
			t.Errorf("ParseKmsg(%q) accepted", bad)
		}
	}
}

func TestSplitCommands(t *testing.T) {
	got, bg := splitCommands([]string{"nvmectl", "id-ctrl", "X", ";", "nvmectl", "perf", "-t", "3", ";"})
	if len(got) != 2 || strings.Join(got[0], " ") != "nvmectl id-ctrl X" || strings.Join(got[1], " ") != "nvmectl perf -t 3" || len(bg) != 0 {
		t.Fatalf("splitCommands = %q, background %v", got, bg)
	}
	if got, bg := splitCommands([]string{"nvmectl", "list"}); len(got) != 1 || len(got[0]) != 2 || len(bg) != 0 {
		t.Fatalf("one command: %q, background %v", got, bg)
	}
	got, bg = splitCommands([]string{"nvmectl", "serve", "&", "nvme", "connect", ";", "fio", "x", "&", "nvme", "list"})
	if len(got) != 4 || strings.Join(got[2], " ") != "fio x" || len(bg) != 2 || bg[0] != 0 || bg[1] != 2 {
		t.Fatalf("with &: %q, background %v (want commands 0 and 2)", got, bg)
	}
}
