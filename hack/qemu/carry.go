package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/guest"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// Carrying a dynamically linked host binary into the guest (QEMU.md,
// "Carrying Debian's tools into the guest"): the binary itself, every
// library ldd lists at the path ldd gives (so RUNPATHs and the loader's
// default directories find them), and the dynamic loader at its PT_INTERP
// path. The guest has no ld.so.cache; the paths are enough.

// lddDeps is what ldd says a binary needs.
type lddDeps struct {
	Libs   []string // absolute paths, in ldd's order
	Loader string   // the dynamic loader, "" for a static binary
}

// parseLdd reads ldd's output. Lines look like
//
//	linux-vdso.so.1 (0x00007fff...)                         (no file: skipped)
//	libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)  (a library)
//	/lib64/ld-linux-x86-64.so.2 (0x...)                    (the loader)
//	libfoo.so.2 => not found                               (an error)
//	statically linked / not a dynamic executable           (no dependencies)
func parseLdd(out []byte) (lddDeps, error) {
	var d lddDeps
	var missing []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line == "statically linked" || strings.Contains(line, "not a dynamic executable") {
			continue
		}
		if name, target, ok := strings.Cut(line, "=>"); ok {
			target = strings.TrimSpace(target)
			if strings.HasPrefix(target, "not found") {
				missing = append(missing, strings.TrimSpace(name))
				continue
			}
			path := strings.Fields(target)
			if len(path) == 0 || !filepath.IsAbs(path[0]) {
				continue // "libc.so.6 => (0x...)" from old ldd: nothing to copy
			}
			d.Libs = append(d.Libs, filepath.Clean(path[0]))
			continue
		}
		f := strings.Fields(line)
		if len(f) > 0 && filepath.IsAbs(f[0]) {
			d.Loader = filepath.Clean(f[0])
		}
		// else: the vDSO, which the kernel provides
	}
	if err := sc.Err(); err != nil {
		return d, fmt.Errorf("ldd output: %w", err)
	}
	if len(missing) > 0 {
		return d, fmt.Errorf("ldd: libraries not found: %s", strings.Join(missing, ", "))
	}
	if len(d.Libs) > 0 && d.Loader == "" {
		return d, fmt.Errorf("ldd output lists libraries but no dynamic loader")
	}
	return d, nil
}

// runLdd runs ldd on a host binary.
func runLdd(bin string) ([]byte, error) {
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		// ldd exits 1 for a static binary, after saying so.
		if bytes.Contains(out, []byte("not a dynamic executable")) || bytes.Contains(out, []byte("statically linked")) {
			return out, nil
		}
		return nil, fmt.Errorf("ldd %s: %w: %s", bin, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// carrySet collects the initramfs files of several carried binaries,
// each library once.
type carrySet struct {
	ldd   func(bin string) ([]byte, error) // runLdd; tests replace it
	files map[string]ramFile               // by archive name
}

func newCarrySet() *carrySet {
	return &carrySet{ldd: runLdd, files: map[string]ramFile{}}
}

// add carries the host binary bin to dest (an absolute guest path) with
// everything ldd lists, each at its own path.
func (c *carrySet) add(bin, dest string) error {
	if !filepath.IsAbs(dest) {
		return fmt.Errorf("carry %s: guest path %q is not absolute", bin, dest)
	}
	out, err := c.ldd(bin)
	if err != nil {
		return fmt.Errorf("carry %s: %w", bin, err)
	}
	deps, err := parseLdd(out)
	if err != nil {
		return fmt.Errorf("carry %s: %w", bin, err)
	}
	c.put(dest, bin, 0o755)
	for _, lib := range deps.Libs {
		c.put(lib, lib, 0o755)
	}
	if deps.Loader != "" {
		c.put(deps.Loader, deps.Loader, 0o755)
	}
	return nil
}

// put records guest path dst with the content of host file src (symlinks
// followed: the guest gets a regular file at the path ldd named).
func (c *carrySet) put(dst, src string, perm uint64) {
	name := strings.TrimPrefix(filepath.Clean(dst), "/")
	c.files[name] = ramFile{Name: name, Src: src, Perm: perm}
}

// list returns the files sorted by archive name.
func (c *carrySet) list() []ramFile {
	out := make([]ramFile, 0, len(c.files))
	for _, f := range c.files {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// A profile that needs more than the guest init and the test binaries says
// so (vmtest.Profile's Fabrics and Tools): profileCarry adds those files to
// any boot of that profile, whichever verb builds it (test, run, bench),
// when its initramfs is written. It reads the profile from the boot
// description among the files and writes the description again with the
// fabrics modules' load order in it.

// toolDirs are searched for a carried tool after $PATH (setup runs as
// root, but a user's PATH may lack the sbin directories).
var toolDirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"}

// lookTool finds a host command to carry in $PATH or toolDirs.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return lookToolIn(name, toolDirs)
}

// lookToolIn finds an executable regular file name in dirs.
func lookToolIn(name string, dirs []string) (string, error) {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on the host (run `go run ./hack/qemu setup` as root)", name)
}

// carryNeeds is what profileCarry looks things up with; tests replace it.
type carryNeeds struct {
	assets func() (*Assets, error)      // loadAssets
	look   func(string) (string, error) // lookTool
	carry  *carrySet                    // newCarrySet()
}

func defaultCarryNeeds() carryNeeds {
	return carryNeeds{assets: loadAssets, look: lookTool, carry: newCarrySet()}
}

// profileCarry returns files with what the boot's profile needs added: the
// fabrics modules (from the cache setup made) and the profile's tools with
// their libraries. Files without a boot description, or whose profile needs
// nothing more, come back unchanged.
func profileCarry(files []ramFile, n carryNeeds) ([]ramFile, error) {
	bootName := strings.TrimPrefix(guest.BootPath, "/")
	bi := -1
	for i, f := range files {
		if f.Name == bootName && f.Src == "" {
			bi = i
		}
	}
	if bi < 0 {
		return files, nil
	}
	var bt vmtest.Boot
	if err := json.Unmarshal(files[bi].Data, &bt); err != nil {
		return nil, fmt.Errorf("initramfs: boot description: %w", err)
	}
	p, err := vmtest.ParseProfile(bt.Profile)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	if !p.Fabrics && len(p.Tools) == 0 {
		return files, nil
	}
	out := append([]ramFile(nil), files...)
	have := map[string]bool{}
	for _, f := range files {
		have[f.Name] = true
	}
	if p.Fabrics {
		a, err := n.assets()
		if err != nil {
			return nil, err
		}
		if len(a.FabricsModules) == 0 {
			return nil, fmt.Errorf("profile %s needs the NVMe/TCP modules, the cache has none (run `go run ./hack/qemu setup`)", p.Name)
		}
		for _, mod := range a.FabricsModules {
			name := strings.TrimPrefix(guest.ModuleDir, "/") + "/" + mod
			if !have[name] {
				out = append(out, ramFile{Name: name, Src: filepath.Join(a.ModuleDir, mod), Perm: 0o644})
				have[name] = true
			}
		}
		bt.FabricsModules = a.FabricsModules
	}
	cs := n.carry
	for _, t := range p.Tools {
		bin, err := n.look(t)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", p.Name, err)
		}
		if err := cs.add(bin, guest.BinDir+"/"+t); err != nil {
			return nil, fmt.Errorf("profile %s: %w", p.Name, err)
		}
	}
	for _, f := range cs.list() {
		if !have[f.Name] {
			out = append(out, f)
			have[f.Name] = true
		}
	}
	js, err := json.MarshalIndent(&bt, "", "  ")
	if err != nil {
		return nil, err
	}
	out[bi].Data = js
	return out, nil
}
