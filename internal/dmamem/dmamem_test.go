package dmamem

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

func TestMapAligned(t *testing.T) {
	for _, align := range []int{0, PageSize, 64 << 10, 1 << 20} {
		for _, size := range []int{PageSize, 3 * PageSize, 64 << 10} {
			m, err := Map(size, align, false, false)
			if err != nil {
				t.Fatalf("Map(%d, %d): %v", size, align, err)
			}
			b := m.Bytes()
			addr := uintptr(unsafe.Pointer(&b[0]))
			if len(b) != size || (align > 0 && addr%uintptr(align) != 0) {
				t.Errorf("Map(%d, %d) = %d bytes at %#x", size, align, len(b), addr)
			}
			b[0], b[size-1] = 1, 2 // writable, both ends
			if Find(b) != m || Find(b[:size-1]) != nil || Find(b[1:]) != nil {
				t.Errorf("Find of the whole (or a part of) a Memory wrong")
			}
			if err := m.Unmap(); err != nil {
				t.Fatal(err)
			}
			if m.Bytes() != nil || Find(b) != nil {
				t.Error("an unmapped Memory is still found")
			}
			if err := m.Unmap(); err == nil {
				t.Error("second Unmap accepted")
			}
		}
	}
	if Find(make([]byte, 8192)) != nil {
		t.Error("Find accepted Go heap memory")
	}
	var zero Memory
	if zero.Bytes() != nil || (*Memory)(nil).Bytes() != nil {
		t.Error("zero Memory has bytes")
	}
	if _, err := Map(0, 0, false, false); err == nil {
		t.Error("Map(0) accepted")
	}
}

// TestOnlyDMAMaps checks the promise vfio relies on: no package but dma
// (and tests) makes a Memory, so everything vfio.Container.MapDMA pins
// came through dma's Allocator.
func TestOnlyDMAMaps(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	const self = "github.com/seedb8fa28ef/gonvme/internal/dmamem"
	allowed := map[string]bool{"dma": true, "internal/dmamem": true}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, src, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, im := range f.Imports {
			if path, _ := strconv.Unquote(im.Path.Value); path != self {
				continue
			}
			rel, _ := filepath.Rel(root, filepath.Dir(p))
			if !allowed[filepath.ToSlash(rel)] && strings.Contains(string(src), "dmamem.Map(") {
				t.Errorf("%s calls dmamem.Map: only package dma makes DMA memory", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
