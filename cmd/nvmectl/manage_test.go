package main

import (
	"bytes"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

// TestNamespaceVerbs: create-ns, attach-ns, I/O on the new namespace,
// detach-ns, delete-ns on the fake.
func TestNamespaceVerbs(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}})
	c := r.jsonOf("create-ns", fakeAddr, "-s", "2048", "-c", "2048", "-b", "4096")
	if c["nsid"] != 2.0 {
		t.Fatalf("create-ns: %v", c)
	}
	if out := r.ok("list-ns", fakeAddr); strings.Contains(out, "0x2") {
		t.Errorf("namespace 2 active before attach-ns:\n%s", out)
	}
	if out := r.ok("attach-ns", fakeAddr, "-n", "2"); out != "attach-ns: Success, nsid:2\n" {
		t.Errorf("attach-ns printed %q", out)
	}
	if ns := r.jsonOf("id-ns", fakeAddr, "-n", "2"); ns["nsze"] != 2048.0 {
		t.Errorf("id-ns 2: nsze %v", ns["nsze"])
	}
	in := filepath.Join(t.TempDir(), "in")
	data := bytes.Repeat([]byte("gonvme!!"), 1024)
	writeFile(t, in, data)
	r.ok("write", fakeAddr, "-n", "2", "-s", "10", "-z", "8192", "-d", in)
	if got := r.ok("read", fakeAddr, "-n", "2", "-s", "10", "-c", "1"); got != string(data) {
		t.Error("namespace 2 did not read back what was written")
	}
	r.ok("detach-ns", fakeAddr, "-n", "2", "-c", "1")
	code, _, errs := r.run("read", fakeAddr, "-n", "2")
	if code != exitUsage || !strings.Contains(errs, "namespace 2 is not active") {
		t.Errorf("read of a detached namespace: exit %d %q", code, errs)
	}
	if out := r.ok("delete-ns", fakeAddr, "-n", "2"); out != "delete-ns: Success, deleted nsid:2\n" {
		t.Errorf("delete-ns printed %q", out)
	}
	code, _, errs = r.run("attach-ns", fakeAddr, "-n", "2")
	if code != exitDevice || !strings.Contains(errs, "Invalid Namespace or Format") {
		t.Errorf("attach of a deleted namespace: exit %d %q", code, errs)
	}
}

func TestGetLogAndPassthru(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}})
	l := r.jsonOf("get-log", fakeAddr, "-i", "2", "-l", "512")
	if l["log_id"] != 2.0 || l["log_name"] != "SMART / Health Information" || len(l["data"].(string)) != 1024 {
		t.Errorf("get-log 2: %v", l)
	}
	raw := r.ok("get-log", fakeAddr, "-i", "2", "-l", "512", "-b")
	if len(raw) != 512 || raw[1] != 0x39 || raw[2] != 1 { // composite temperature 313 K
		t.Errorf("get-log -b: %d bytes, temperature % x", len(raw), raw[1:3])
	}
	// Identify Controller through admin-passthru reads what id-ctrl does.
	p := r.jsonOf("admin-passthru", fakeAddr, "-O", "6", "--cdw10", "1", "-l", "4096", "-r")
	b, _ := hex.DecodeString(p["data"].(string))
	if len(b) != 4096 || string(b[4:16]) != "NVMETEST0001" {
		t.Errorf("admin-passthru identify: %d bytes, serial %q", len(b), b[4:16])
	}
	// A dangerous command goes with --dangerous.
	r.ok("admin-passthru", fakeAddr, "-O", "0x80", "-n", "1", "--dangerous")
	// io-passthru: a write then a read of LBA 7 (opcode 1 and 2, CDW10 SLBA).
	in := filepath.Join(t.TempDir(), "blk")
	writeFile(t, in, bytes.Repeat([]byte{0x5a}, 512))
	r.ok("io-passthru", fakeAddr, "-O", "1", "--cdw10", "7", "-l", "512", "-w", "-i", in)
	if got := r.ok("io-passthru", fakeAddr, "-O", "2", "--cdw10", "7", "-l", "512", "-r", "-b"); got != string(bytes.Repeat([]byte{0x5a}, 512)) {
		t.Errorf("io-passthru read back %d bytes % x...", len(got), got[:min(8, len(got))])
	}
	if got := r.ok("read", fakeAddr, "-s", "7"); got != string(bytes.Repeat([]byte{0x5a}, 512)) {
		t.Error("read does not see io-passthru's write")
	}
	// write-uncor: the block then fails to read.
	r.ok("write-uncor", fakeAddr, "-s", "7")
	code, _, errs := r.run("read", fakeAddr, "-s", "7")
	if code != exitDevice || !strings.Contains(errs, "Unrecovered Read Error") {
		t.Errorf("read after write-uncor: exit %d %q", code, errs)
	}
}

func TestFirmwareSelfTestSanitizeVerbs(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}})
	img := filepath.Join(t.TempDir(), "fw.bin")
	b := make([]byte, 10000)
	copy(b, "NEWFW002")
	writeFile(t, img, b)
	if out := r.ok("fw-download", fakeAddr, "-f", img, "-x", "4096"); out != "Firmware download success\n" {
		t.Errorf("fw-download printed %q", out)
	}
	out := r.ok("fw-commit", fakeAddr, "-s", "2", "-a", "1")
	if !strings.Contains(out, "Success committing firmware action:1 slot:2") || !strings.Contains(out, "after a conventional reset") {
		t.Errorf("fw-commit printed %q", out)
	}
	code, _, errs := r.run("fw-commit", fakeAddr, "-s", "1", "-a", "0")
	if code != exitDevice || !strings.Contains(errs, "Invalid Firmware Slot") {
		t.Errorf("fw-commit to the read-only slot: exit %d %q", code, errs)
	}

	if out := r.ok("device-self-test", fakeAddr, "-s", "1", "-n", "1"); out != "Short Device self-test started\n" {
		t.Errorf("device-self-test printed %q", out)
	}
	st := r.jsonOf("self-test-log", fakeAddr)
	hasKeys(t, "self-test-log", st, "Current Device Self-Test Operation", "Current Device Self-Test Completion", "List of Valid Reports")
	reps := st["List of Valid Reports"].([]any)
	if len(reps) != 1 || reps[0].(map[string]any)["Self test code"] != 1.0 || reps[0].(map[string]any)["Namespace Identifier (NSID)"] != 1.0 {
		t.Errorf("self-test-log reports %v", reps)
	}
	if text := r.ok("self-test-log", fakeAddr); !strings.Contains(text, "Operation completed without error") {
		t.Errorf("self-test-log text:\n%s", text)
	}

	in := filepath.Join(t.TempDir(), "d")
	writeFile(t, in, bytes.Repeat([]byte{1}, 512))
	r.ok("write", fakeAddr, "-s", "3", "-d", in)
	if out := r.ok("sanitize", fakeAddr, "-a", "2", "--force"); !strings.Contains(out, "block erase started") {
		t.Errorf("sanitize printed %q", out)
	}
	sl := r.jsonOf("sanitize-log", fakeAddr)[fakeAddr].(map[string]any)
	hasKeys(t, "sanitize-log", sl, "sprog", "sstat", "cdw10_info", "time_over_write", "time_block_erase", "time_crypto_erase")
	if sl["sstat"].(map[string]any)["status"] != 1.0 || sl["cdw10_info"] != 2.0 {
		t.Errorf("sanitize-log %v", sl)
	}
	if got := r.ok("read", fakeAddr, "-s", "3"); got != string(make([]byte, 512)) {
		t.Error("block 3 not erased by sanitize")
	}
}
