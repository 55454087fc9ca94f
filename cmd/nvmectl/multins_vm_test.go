package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

func TestVMMultiNamespace(t *testing.T) {
	env := vmtest.Require(t, "multi-ns")
	c := env.Controllers()[0]
	addr := env.BindVFIO(t, c)
	v := vm{t}

	if out := v.ok("list-ns", addr); out != "[   0]:0x1\n[   1]:0x2\n[   2]:0x3\n" {
		t.Errorf("list-ns printed %q", out)
	}
	l := v.json("list-ns", addr)["nsid_list"].([]any)
	if len(l) != 3 {
		t.Fatalf("list-ns json %v", l)
	}
	for i, w := range c.Namespaces {
		if l[i].(map[string]any)["nsid"] != float64(w.NSID) {
			t.Errorf("nsid_list[%d] = %v, want %d", i, l[i], w.NSID)
		}
		ns := v.json("id-ns", addr, "-n", fmt.Sprint(w.NSID))
		if ns["nsze"] != float64(w.Blocks) {
			t.Errorf("id-ns %d nsze %v, want %d", w.NSID, ns["nsze"], w.Blocks)
		}
	}
	ltext := v.ok("list", "--identify")
	if !strings.Contains(ltext, "1:64MiB/512,2:256MiB/4096,3:16MiB/512") {
		t.Errorf("list does not show the three namespaces:\n%s", ltext)
	}

	// Format namespace 3 to a 4096-byte format without metadata and back.
	ns3 := v.json("id-ns", addr, "-n", "3")
	orig, big := -1, -1
	for _, f := range ns3["lbafs"].([]any) {
		m := f.(map[string]any)
		i := int(m["lbaf"].(float64))
		if m["in_use"] == 1.0 {
			orig = i
		}
		if m["ds"] == 12.0 && m["ms"] == 0.0 && big < 0 {
			big = i
		}
	}
	t.Logf("namespace 3 formats: %v", ns3["lbafs"])
	if big < 0 || orig < 0 {
		t.Fatalf("QEMU offers no 4096-byte format without metadata (or none in use): %v", ns3["lbafs"])
	}
	out := v.ok("format", addr, "-n", "3", "-l", strconv.Itoa(big), "--force")
	if !strings.Contains(out, fmt.Sprintf("LBA format %d, %d blocks of 4096 B", big, 16<<20/4096)) {
		t.Errorf("format printed %q", out)
	}
	after := v.json("id-ns", addr, "-n", "3")
	if after["nsze"] != float64(16<<20/4096) {
		t.Errorf("after format, nsze %v, want %d", after["nsze"], 16<<20/4096)
	}
	for _, f := range after["lbafs"].([]any) {
		m := f.(map[string]any)
		if (m["in_use"] == 1.0) != (int(m["lbaf"].(float64)) == big) {
			t.Errorf("after format, lbaf %v", m)
		}
	}
	// I/O in the new block size; 512 bytes is no longer a block.
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	data := pattern(3*4096, 0x77)
	os.WriteFile(in, data, 0o644)
	v.ok("write", addr, "-n", "3", "-s", "10", "-c", "2", "-d", in)
	if got := v.ok("read", addr, "-n", "3", "-s", "10", "-c", "2"); got != string(data) {
		t.Error("namespace 3 in 4096-byte blocks: read back differs")
	}
	if code, _, errs := v.run("read", addr, "-n", "3", "-z", "512"); code != exitUsage || !strings.Contains(errs, "4096-byte block size of namespace 3") {
		t.Errorf("read -z 512 on 4096-byte blocks: exit %d %q", code, errs)
	}
	// Namespace 1 is untouched by the format of namespace 3.
	if ns1 := v.json("id-ns", addr, "-n", "1"); ns1["nsze"] != float64(c.Namespaces[0].Blocks) {
		t.Errorf("namespace 1 after formatting 3: nsze %v", ns1["nsze"])
	}
	v.ok("format", addr, "-n", "3", "-l", strconv.Itoa(orig), "--force")
	if back := v.json("id-ns", addr, "-n", "3"); back["nsze"] != float64(c.Namespaces[2].Blocks) {
		t.Errorf("after formatting back, nsze %v, want %d", back["nsze"], c.Namespaces[2].Blocks)
	}
}
