package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestLockCheckFixtures runs the lockcheck rules on testdata/lockcheck, a
// doorbell rung through a register package of internal/mmio's shape,
// built with each kind of store: the rules must fail the atomic store
// internal/mmio used to have (XCHGL on amd64, STLRW on arm64) and a plain
// Go store, and pass the assembly one. In every variant Write32 is inlined
// into the fixture's ring, as it was into nvme's QueuePair.Ring.
func TestLockCheckFixtures(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	const fixture = "github.com/seedb8fa28ef/gonvme/hack/qemu/testdata/lockcheck"
	const mod = "github.com/seedb8fa28ef/gonvme"
	for _, tc := range []struct {
		name, goarch, tags string
		site               string   // a function that must hold Write32's code
		want               []string // each must be in some problem; none: no problems
	}{
		{"atomic amd64", "amd64", "", "main.(*queue).ring", []string{
			`main.(*queue).ring: locked or atomic instruction "XCHGL `,
			"Write32 does not call store32",
			"Write64 does not call store64",
		}},
		{"atomic arm64", "arm64", "", "main.(*queue).ring", []string{
			`main.(*queue).ring: locked or atomic instruction "STLRW `,
			"Write32 does not call store32",
		}},
		{"plain amd64", "amd64", "lockcheck_plain", "main.(*queue).ring", []string{
			`main.(*queue).ring: Write32 (write_plain.go:10) stores with "MOVL `,
			"Write32 does not call store32",
		}},
		{"assembly amd64", "amd64", "lockcheck_asm", "main.(*queue).ring", nil},
		{"assembly arm64", "arm64", "lockcheck_asm", "main.(*queue).ring", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := []string{"GOOS=linux", "GOARCH=" + tc.goarch, "GOFLAGS=-tags=" + tc.tags}
			bin := filepath.Join(t.TempDir(), "lockcheck")
			build := exec.Command("go", "build", "-o", bin, "./hack/qemu/testdata/lockcheck")
			build.Dir = root
			build.Env = append(os.Environ(), env...)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, out)
			}
			rp, err := loadRegPkg(root, env, fixture+"/mmio")
			if err != nil {
				t.Fatal(err)
			}
			r, err := checkBinary(bin, rp, mod)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", r.summary(mod))
			for _, p := range r.problems {
				t.Logf("problem: %s", p)
			}
			// The doorbell is seen wherever the compiler put it:
			// inlined into ring, or called.
			if !slices.Contains(r.sites["Write32"], tc.site) {
				t.Errorf("Write32's code not found in %s: %v", tc.site, r.sites)
			}
			if len(tc.want) == 0 && len(r.problems) > 0 {
				t.Errorf("problems in a binary with the assembly store: %q", r.problems)
			}
			for _, w := range tc.want {
				if !slices.ContainsFunc(r.problems, func(p string) bool { return strings.Contains(p, w) }) {
					t.Errorf("no problem mentions %q; got %q", w, r.problems)
				}
			}
		})
	}
}
