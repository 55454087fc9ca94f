package main

import (
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

// TestNvmeCLIShorthands: the short flags nvme-cli users type work.
func TestNvmeCLIShorthands(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{VWC: true, Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}})
	if g := r.jsonOf("get-feature", fakeAddr, "-f", "4", "-c", "0"); g["feature_id"] != 4.0 {
		t.Errorf("get-feature -c: %v", g)
	}
	s := r.jsonOf("smart-log", fakeAddr, "-n", "0xffffffff")
	if _, ok := s["critical_warning"]; !ok {
		t.Errorf("smart-log -n 0xffffffff: %v", s)
	}
	if out := r.ok("smart-log", fakeAddr); !strings.Contains(out, "namespace-id:ffffffff") {
		t.Errorf("smart-log header: %q", out)
	}
	r.ok("dsm", fakeAddr, "--ad", "-s", "0,8", "-b", "1,1")
	if out := r.ok("format", fakeAddr, "-n", "1", "-s", "1", "--force"); !strings.Contains(out, "format: Success") {
		t.Errorf("format -s 1: %q", out)
	}
	if _, _, errs := r.run("set-feature", fakeAddr, "-f", "6", "-v", "1", "-s"); !strings.Contains(errs, "Saveable") {
		t.Errorf("set-feature -s did not ask to save: %q", errs)
	}
}
