package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestSetupEnvironment: setup and reset read setup.sh's PCI_ALLOWED and
// PCI_BLOCKED, a flag wins over its variable, and every controller left
// out is named with the reason.
func TestSetupEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		bound string
		say   []string
	}{
		{"PCI_BLOCKED", map[string]string{"PCI_BLOCKED": "0000:00:05.0"}, []string{"setup"}, "0000:00:04.0",
			[]string{"0000:00:05.0 (1b36 0010): skipped: denied by PCI_BLOCKED"}},
		{"PCI_ALLOWED short form", map[string]string{"PCI_ALLOWED": "00:05.0"}, []string{"setup"}, "0000:00:05.0",
			[]string{"0000:00:04.0 (1b36 0010): skipped: not in PCI_ALLOWED"}},
		{"PCI_ALLOWED none", map[string]string{"PCI_ALLOWED": "none"}, []string{"setup"}, "",
			[]string{"0000:00:04.0 (1b36 0010): skipped: PCI_ALLOWED is \"none\"", "0000:00:05.0 (1b36 0010): skipped"}},
		{"blocked wins over allowed", map[string]string{"PCI_ALLOWED": "0000:00:04.0 0000:00:05.0", "PCI_BLOCKED": "0000:00:04.0"}, []string{"setup"}, "0000:00:05.0",
			[]string{"skipped: denied by PCI_BLOCKED"}},
		{"--deny wins over PCI_BLOCKED", map[string]string{"PCI_BLOCKED": "0000:00:05.0"}, []string{"setup", "--deny", "0000:00:04.0"}, "0000:00:05.0",
			[]string{"0000:00:04.0 (1b36 0010): skipped: denied by --deny"}},
		{"named and denied", nil, []string{"setup", "0000:00:04.0", "--deny", "0000:00:04.0"}, "",
			[]string{"0000:00:04.0 (1b36 0010): skipped: denied by --deny"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, bound := setupSys(t, "")
			a.getenv = envOf(tc.env)
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb, a); code != exitOK {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			if got := strings.Join(*bound, " "); got != tc.bound {
				t.Errorf("bound %q, want %q", got, tc.bound)
			}
			for _, s := range tc.say {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, out.String())
				}
			}
		})
	}
	// reset ADDR --deny ADDR says why it did nothing.
	a, bound := setupSys(t, "")
	var out, errb bytes.Buffer
	if code := run([]string{"reset", "0000:00:04.0", "--deny", "0000:00:04.0"}, &out, &errb, a); code != exitOK || len(*bound) != 0 ||
		!strings.Contains(out.String(), "0000:00:04.0 (1b36 0010): skipped: denied by --deny") {
		t.Errorf("reset --deny: exit %d, released %q, output %q", code, *bound, out.String())
	}
	out.Reset()
	if code := run([]string{"-o", "json", "reset", "0000:00:04.0", "--deny", "0000:00:04.0"}, &out, &errb, a); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	var doc struct{ Controllers []setupResult }
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || len(doc.Controllers) != 1 || doc.Controllers[0].Action != "skipped" ||
		doc.Controllers[0].Reasons[0] != "denied by --deny" {
		t.Errorf("reset --deny json: %v %s", err, out.String())
	}
	// A bad address in the environment is a usage error naming it.
	a.getenv = envOf(map[string]string{"PCI_BLOCKED": "nvme0"})
	errb.Reset()
	if code := run([]string{"setup"}, &out, &errb, a); code != exitUsage || !strings.Contains(errb.String(), "PCI_BLOCKED") {
		t.Errorf("bad PCI_BLOCKED: exit %d, %q", code, errb.String())
	}
}

// TestSetupHugepagesEnvironment: HUGEMEM and HUGENODE with setup.sh's
// meanings; --hugemem wins over HUGEMEM.
func TestSetupHugepagesEnvironment(t *testing.T) {
	a, _ := setupSys(t, "")
	node := func(n, v string) string {
		p := a.path("/sys/devices/system/node/node" + n + "/hugepages/hugepages-2048kB/nr_hugepages")
		if v != "" {
			os.MkdirAll(filepath.Dir(p), 0o755)
			writeFile(t, p, []byte(v+"\n"))
		}
		return readTrim(p)
	}
	node("0", "0")
	node("1", "0")
	var out, errb bytes.Buffer
	a.getenv = envOf(map[string]string{"HUGEMEM": "128"})
	if code := run([]string{"setup"}, &out, &errb, a); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if n0, n1 := node("0", ""), node("1", ""); n0 != "64" || n1 != "0" {
		t.Errorf("HUGEMEM=128: node0 %s node1 %s pages, want 64 on node 0 (setup.sh's default node)", n0, n1)
	}
	a.getenv = envOf(map[string]string{"HUGEMEM": "128", "HUGENODE": "nodes_hp[1]=10,0"})
	node("0", "0")
	run([]string{"setup"}, &out, &errb, a)
	if n0, n1 := node("0", ""), node("1", ""); n0 != "64" || n1 != "10" {
		t.Errorf("HUGENODE=nodes_hp[1]=10,0: node0 %s node1 %s, want 64 and 10", n0, n1)
	}
	// The flag wins over HUGEMEM and HUGENODE; a node that already has
	// as many keeps them (setup.sh does not shrink).
	errb.Reset()
	run([]string{"setup", "--hugemem", "32", "--hugenode", "0,1"}, &out, &errb, a)
	if n0, n1 := node("0", ""), node("1", ""); n0 != "64" || n1 != "16" || !strings.Contains(errb.String(), "16 hugepages of 2 MiB requested on node 0, 64 already reserved: left as is") {
		t.Errorf("--hugemem 32 --hugenode 0,1: node0 %s node1 %s, stderr %q", n0, n1, errb.String())
	}
	for _, bad := range []map[string]string{{"HUGEMEM": "lots"}, {"HUGEMEM": "64", "HUGENODE": "x"}, {"HUGEMEM": "-5"}} {
		a.getenv = envOf(bad)
		errb.Reset()
		if code := run([]string{"setup"}, &out, &errb, a); code != exitUsage {
			t.Errorf("%v: exit %d, stderr %q", bad, code, errb.String())
		}
	}
}
