package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// TestVMNamespaceManagement runs the namespace verbs end to end on QEMU's
// controller: create (where the controller implements Namespace
// Management), attach, I/O on the attached namespace, detach, delete.
// QEMU 7.2 sets OACS bit 3 but implements only Namespace Attachment: there
// create-ns and delete-ns must fail with Invalid Command Opcode and say
// so, and the profile's detached namespace 2 stands in for the created one.
func TestVMNamespaceManagement(t *testing.T) {
	env := vmtest.Require(t, "ns-mgmt")
	c := env.Controllers()[0]
	addr := env.BindVFIO(t, c)
	v := vm{t}
	if ids := v.ok("list-ns", addr); ids != "[   0]:0x1\n" {
		t.Fatalf("list-ns at boot: %q, want namespace 1 only", ids)
	}
	nsid := "2"
	code, out, errs := v.run("create-ns", addr, "-s", "8192", "-c", "8192", "-b", "4096")
	switch {
	case code == exitOK:
		t.Logf("create-ns: the controller implements Namespace Management: %s", strings.TrimSpace(out))
		if !strings.HasPrefix(out, "create-ns: Success, created nsid:") {
			t.Fatalf("create-ns printed %q", out)
		}
		nsid = strings.TrimSpace(strings.TrimPrefix(out, "create-ns: Success, created nsid:"))
	case code == exitDevice && strings.Contains(errs, "Invalid Command Opcode") && strings.Contains(errs, "advertises it in OACS but does not implement it"):
		t.Logf("create-ns: QEMU's controller has no Namespace Management command; using the detached namespace 2: %s", strings.TrimSpace(errs))
	default:
		t.Fatalf("create-ns: exit %d, stderr %q", code, errs)
	}
	if out := v.ok("attach-ns", addr, "-n", nsid); out != "attach-ns: Success, nsid:"+nsid+"\n" {
		t.Errorf("attach-ns printed %q", out)
	}
	if ids := v.ok("list-ns", addr); !strings.Contains(ids, "]:0x"+nsid+"\n") {
		t.Fatalf("list-ns after attach-ns: %q", ids)
	}
	in := filepath.Join(t.TempDir(), "in")
	data := bytes.Repeat([]byte("nvmectl namespace management!!!\n"), 256) // 8 KiB
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	v.ok("write", addr, "-n", nsid, "-s", "100", "-z", "8192", "-d", in)
	if got := v.ok("read", addr, "-n", nsid, "-s", "100", "-z", "8192"); got != string(data) {
		t.Errorf("namespace %s read back %d bytes that differ from the %d written", nsid, len(got), len(data))
	}
	v.ok("detach-ns", addr, "-n", nsid)
	if ids := v.ok("list-ns", addr); strings.Contains(ids, "]:0x"+nsid+"\n") {
		t.Errorf("list-ns after detach-ns: %q", ids)
	}
	if code, _, errs := v.run("read", addr, "-n", nsid); code != exitUsage || !strings.Contains(errs, "is not active") {
		t.Errorf("read of the detached namespace: exit %d %q", code, errs)
	}
	code, _, errs = v.run("delete-ns", addr, "-n", nsid)
	if nsid == "2" && code == exitDevice && strings.Contains(errs, "Invalid Command Opcode") {
		t.Logf("delete-ns: refused as create-ns was: %s", strings.TrimSpace(errs))
	} else if code != exitOK {
		t.Errorf("delete-ns: exit %d, stderr %q", code, errs)
	}
	// The controller is left as the profile made it: namespace 1 only.
	if ids := v.ok("list-ns", addr); ids != "[   0]:0x1\n" {
		t.Errorf("list-ns at the end: %q", ids)
	}
}
