package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// The brief asks VM tests to use package <pkg>_test; for a command that is
// not importable, the in-process entry point run lives in package main, so
// this test stays in it.

func TestVMList(t *testing.T) {
	env := vmtest.Require(t, "default")
	c := env.Controllers()[0]
	env.BindVFIO(t, c)

	var out, errb bytes.Buffer
	if code := run([]string{"list"}, &out, &errb, app{}); code != exitOK {
		t.Fatalf("nvmectl list: exit %d, stderr %q", code, errb.String())
	}
	var row []string
	for _, l := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == c.Addr {
			row = f
		}
	}
	if len(row) < 12 || row[1] != "1b36:0010" || row[2] != "vfio-pci" || row[6] != "yes" {
		t.Fatalf("row for %s = %q in\n%s", c.Addr, row, out.String())
	}

	out.Reset()
	if code := run([]string{"list", "-o", "json"}, &out, &errb, app{}); code != exitOK {
		t.Fatalf("nvmectl -o json list: exit %d, stderr %q", code, errb.String())
	}
	var doc listJSON
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Controllers) != len(env.Controllers()) {
		t.Fatalf("%d controllers listed, the profile has %d", len(doc.Controllers), len(env.Controllers()))
	}
	j := doc.Controllers[0]
	if j.Address != c.Addr || j.Driver != "vfio-pci" || j.IOMMUGroup == nil || !j.Viable {
		t.Errorf("json entry %+v", j)
	}

	// Back on the kernel driver, list follows.
	env.BindKernel(t, c)
	out.Reset()
	run([]string{"list"}, &out, &errb, app{})
	if !strings.Contains(out.String(), c.Addr) || !strings.Contains(out.String(), " nvme ") {
		t.Errorf("after BindKernel, list printed\n%s", out.String())
	}
}
