package cpuset

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseList(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []int
	}{
		{"0", []int{0}}, {"0-3", []int{0, 1, 2, 3}}, {"0-1,8,10-11", []int{0, 1, 8, 10, 11}},
		{"[2]", []int{2}}, {"[1,3]", []int{1, 3}}, {"3,1", []int{1, 3}}, {"", nil}, {"\n", nil}, {"0-2\n", []int{0, 1, 2}},
	} {
		if got, err := ParseList(tt.in); err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParseList(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"a", "3-1", "0,0", "[1", "-1", "0-9000", "1-"} {
		if got, err := ParseList(bad); err == nil {
			t.Errorf("ParseList(%q) = %v, want an error", bad, got)
		}
	}
}

func TestParseCoreMask(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []int
	}{
		// SPDK's meanings: a bare number is a hex mask.
		{"2", []int{1}}, {"1", []int{0}}, {"3", []int{0, 1}}, {"f", []int{0, 1, 2, 3}}, {"0xF", []int{0, 1, 2, 3}},
		{"0x40", []int{6}}, {"[0-3]", []int{0, 1, 2, 3}}, {"[2]", []int{2}}, {"0-1", []int{0, 1}}, {"1,3", []int{1, 3}},
		{"0x10000000000000000", []int{64}},
	} {
		if got, err := ParseCoreMask(tt.in); err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParseCoreMask(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, tt := range []struct{ in, msg string }{
		{"0", "selects no CPU"}, {"0x0", "selects no CPU"}, {"zz", "not hexadecimal"}, {"0x", "not hexadecimal"},
		{"[]", "empty"}, {"-1", "not a CPU"}, {"+f", "not hexadecimal"},
	} {
		if got, err := ParseCoreMask(tt.in); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseCoreMask(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.msg)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		in   []int
		want string
	}{{nil, ""}, {[]int{0}, "0"}, {[]int{0, 1, 2, 3}, "0-3"}, {[]int{8, 0, 1, 10, 11}, "0-1,8,10-11"}, {[]int{1, 1, 3}, "1,3"}} {
		if got := Format(tt.in); got != tt.want {
			t.Errorf("Format(%v) = %q, want %q", tt.in, got, tt.want)
		}
		if back, err := ParseList(tt.want); err != nil || Format(back) != tt.want {
			t.Errorf("ParseList(Format(%v)) = %v, %v", tt.in, back, err)
		}
	}
}

func TestAllowed(t *testing.T) {
	cpus, err := Allowed()
	if err != nil || len(cpus) == 0 || !slices.IsSorted(cpus) {
		t.Fatalf("Allowed() = %v, %v", cpus, err)
	}
}

func TestNodeCPUs(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "sys/devices/system/node/node1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "cpulist"), []byte("4-7,12\n"), 0o644)
	if got, err := NodeCPUs(root, 1); err != nil || !slices.Equal(got, []int{4, 5, 6, 7, 12}) {
		t.Errorf("NodeCPUs(1) = %v, %v", got, err)
	}
	if _, err := NodeCPUs(root, 0); err == nil {
		t.Error("NodeCPUs of a missing node: no error")
	}
}

func FuzzParseCoreMask(f *testing.F) {
	for _, s := range []string{"0x3", "[0-3]", "f", "1,3", "0-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cpus, err := ParseCoreMask(s)
		if err != nil {
			return
		}
		if len(cpus) == 0 || !slices.IsSorted(cpus) || cpus[0] < 0 || cpus[len(cpus)-1] > MaxCPU {
			t.Fatalf("ParseCoreMask(%q) = %v", s, cpus)
		}
	})
}
