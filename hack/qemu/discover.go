package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

const (
	modulePath = "github.com/seedb8fa28ef/gonvme"
	vmtestPath = modulePath + "/hack/qemu/vmtest"
)

// vmTest is one VM test and the profile it declared.
type vmTest struct {
	Name    string // TestXxx
	Profile string // canonical profile name
	Pos     string // file:line of the Require call
}

// vmPackage is a package with VM tests.
type vmPackage struct {
	ImportPath string
	Dir        string
	Tests      []vmTest
}

type listedPackage struct {
	ImportPath     string
	Dir            string
	TestGoFiles    []string
	XTestGoFiles   []string
	IgnoredGoFiles []string
	Error          *struct{ Err string }
}

// discover lists the packages and returns those with *_vm_test.go tests.
func discover(patterns []string) ([]vmPackage, error) {
	args := append([]string{"list", "-e", "-json=ImportPath,Dir,TestGoFiles,XTestGoFiles,IgnoredGoFiles,Error"}, patterns...)
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w: %s", strings.Join(patterns, " "), err, stderr.Bytes())
	}
	var pkgs []vmPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var lp listedPackage
		if err := dec.Decode(&lp); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list: %w", err)
		}
		if lp.Error != nil && lp.Dir == "" {
			return nil, fmt.Errorf("go list: %s", lp.Error.Err)
		}
		var files []string
		// Files a build constraint drops count too: the host selects
		// them, and a guest binary built without them reports them as
		// "selected but did not run" instead of passing silently.
		for _, f := range append(append(lp.TestGoFiles, lp.XTestGoFiles...), lp.IgnoredGoFiles...) {
			if strings.HasSuffix(f, "_vm_test.go") {
				files = append(files, filepath.Join(lp.Dir, f))
			}
		}
		if len(files) == 0 {
			continue
		}
		tests, err := findVMTests(files)
		if err != nil {
			return nil, err
		}
		if len(tests) > 0 {
			pkgs = append(pkgs, vmPackage{ImportPath: lp.ImportPath, Dir: lp.Dir, Tests: tests})
		}
	}
	return pkgs, nil
}

// isTestName reports whether name is a test function name (TestXxx).
func isTestName(name string) bool {
	if !strings.HasPrefix(name, "Test") || name == "TestMain" {
		return false
	}
	if len(name) == 4 {
		return true
	}
	r, _ := utf8.DecodeRuneInString(name[4:])
	return !unicode.IsLower(r)
}

// findVMTests parses the files and returns each TestXxx function with the
// profile literal of its vmtest.Require call.
func findVMTests(files []string) ([]vmTest, error) {
	fset := token.NewFileSet()
	var out []vmTest
	for _, path := range files {
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		tests, err := vmTestsInFile(fset, path, src)
		if err != nil {
			return nil, err
		}
		out = append(out, tests...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func vmTestsInFile(fset *token.FileSet, path string, src []byte) ([]vmTest, error) {
	f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("parse VM test: %w", err)
	}
	local := ""
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if p != vmtestPath {
			continue
		}
		local = "vmtest"
		if imp.Name != nil {
			local = imp.Name.Name
		}
	}
	var out []vmTest
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Recv != nil || fn.Body == nil || !isTestName(fn.Name.Name) {
			continue
		}
		var (
			found   *vmTest
			findErr error
		)
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if findErr != nil {
				return false
			}
			call, ok := n.(*ast.CallExpr)
			if !ok || !isRequire(call, local) {
				return true
			}
			pos := fset.Position(call.Pos())
			where := fmt.Sprintf("%s:%d", pos.Filename, pos.Line)
			if len(call.Args) != 2 {
				findErr = fmt.Errorf("%s: vmtest.Require takes (t, profile)", where)
				return false
			}
			lit, ok := call.Args[1].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				findErr = fmt.Errorf("%s: %s: the profile passed to vmtest.Require must be a string literal (the harness reads it from the source)", where, fn.Name.Name)
				return false
			}
			name, _ := strconv.Unquote(lit.Value)
			prof, err := vmtest.ParseProfile(name)
			if err != nil {
				findErr = fmt.Errorf("%s: %s: %w", where, fn.Name.Name, err)
				return false
			}
			if found != nil && found.Profile != prof.Name {
				findErr = fmt.Errorf("%s: %s calls vmtest.Require with two profiles (%s, %s)", where, fn.Name.Name, found.Profile, prof.Name)
				return false
			}
			found = &vmTest{Name: fn.Name.Name, Profile: prof.Name, Pos: where}
			return true
		})
		if findErr != nil {
			return nil, findErr
		}
		if found == nil {
			pos := fset.Position(fn.Pos())
			return nil, fmt.Errorf("%s:%d: %s is in a _vm_test.go file but does not call vmtest.Require(t, \"<profile>\")", pos.Filename, pos.Line, fn.Name.Name)
		}
		out = append(out, *found)
	}
	return out, nil
}

func isRequire(call *ast.CallExpr, local string) bool {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Require" {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && local != "" && id.Name == local
}
