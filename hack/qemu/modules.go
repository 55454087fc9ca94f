package main

import (
	"bytes"
	"debug/elf"
	"fmt"
	"path/filepath"
	"strings"
)

// module is one kernel module found in the kernel package.
type module struct {
	name    string   // normalized: '-' becomes '_'
	path    string   // the .ko file
	depends []string // normalized names from modinfo depends=
}

// modName normalizes a module name the way the kernel does ('-' and '_' are
// the same).
func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// readModinfo returns the key=value strings of a module's .modinfo section.
func readModinfo(path string) (map[string][]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("modinfo %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("modinfo %s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("modinfo %s: %w", path, err)
	}
	return parseModinfo(data), nil
}

// parseModinfo splits a .modinfo section: NUL-separated "key=value" strings.
func parseModinfo(data []byte) map[string][]string {
	info := map[string][]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok || k == "" {
			continue
		}
		info[k] = append(info[k], v)
	}
	return info
}

// dependsOf parses the depends= value ("a,b-c" or "").
func dependsOf(info map[string][]string) []string {
	var out []string
	for _, v := range info["depends"] {
		for _, d := range strings.Split(v, ",") {
			if d = strings.TrimSpace(d); d != "" {
				out = append(out, modName(d))
			}
		}
	}
	return out
}

// moduleIndex maps normalized module names to modules.
type moduleIndex map[string]*module

// indexModules reads the dependencies of the modules under dir. Only the
// modinfo of modules we may need is read, lazily, by order.
func indexModules(dir string) (moduleIndex, error) {
	kos, err := walkKOs(dir)
	if err != nil {
		return nil, err
	}
	idx := moduleIndex{}
	for _, p := range kos {
		n := modName(strings.TrimSuffix(filepath.Base(p), ".ko"))
		idx[n] = &module{name: n, path: p, depends: nil}
	}
	return idx, nil
}

// order returns the modules named by roots and everything they depend on,
// each after its dependencies; among independent modules the order of roots
// is kept. A root the kernel does not ship is skipped (e.g. vfio_virqfd,
// merged into vfio in later kernels); a missing dependency is an error.
func (idx moduleIndex) order(roots []string) ([]*module, error) {
	var (
		out   []*module
		state = map[string]int{} // 1 visiting, 2 done
	)
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, name), " -> "))
		case 2:
			return nil
		}
		m, ok := idx[name]
		if !ok {
			return fmt.Errorf("module %s (needed by %s) not in the kernel package", name, strings.Join(chain, " -> "))
		}
		if m.depends == nil && m.path != "" {
			info, err := readModinfo(m.path)
			if err != nil {
				return err
			}
			m.depends = append([]string{}, dependsOf(info)...)
		}
		state[name] = 1
		for _, d := range m.depends {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, m)
		return nil
	}
	for _, r := range roots {
		n := modName(r)
		if _, ok := idx[n]; !ok {
			continue
		}
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("none of the modules %v found", roots)
	}
	return out, nil
}
