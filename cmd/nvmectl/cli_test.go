package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

func TestVersion(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{})
	out := r.ok("--version")
	if !strings.HasPrefix(out, "nvmectl ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("--version printed %q", out)
	}
}

// TestCompletion: cobra's completion scripts, for the shells it knows.
func TestCompletion(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{})
	for shell, want := range map[string]string{"bash": "__start_nvmectl", "zsh": "#compdef nvmectl", "fish": "complete -c nvmectl"} {
		if out := r.ok("completion", shell); !strings.Contains(out, want) {
			t.Errorf("completion %s lacks %q", shell, want)
		}
	}
	// The verbs complete: cobra's hidden __complete answers for them.
	if out := r.ok("__complete", "id-"); !strings.Contains(out, "id-ctrl") || !strings.Contains(out, "id-ns") {
		t.Errorf("__complete id-: %q", out)
	}
}

// TestManPages: nvmectl man DIR writes a page per verb from the help.
func TestManPages(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{})
	dir := filepath.Join(t.TempDir(), "man8")
	r.ok("man", dir)
	for _, v := range verbs(newRoot(app{})) {
		p := filepath.Join(dir, "nvmectl-"+strings.ReplaceAll(v, " ", "-")+".8")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("no man page for %s: %v", v, err)
			continue
		}
		if !strings.Contains(string(b), ".TH \"NVMECTL\" \"8\"") {
			t.Errorf("%s: no .TH header", p)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "nvmectl-perf.8"))
	if err != nil || !strings.Contains(string(b), "core mask") {
		t.Errorf("nvmectl-perf.8 does not carry perf's help: %v", err)
	}
}
