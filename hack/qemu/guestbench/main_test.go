package main

import (
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(strings.Fields("-reps 2 -time 3 -warmup 0 -depths 1,32 -workloads randread -qemu-img randread -cpuprofile"))
	if err != nil {
		t.Fatal(err)
	}
	if o.reps != 2 || o.seconds != 3 || o.warmup != 0 || len(o.depths) != 2 || o.depths[1] != 32 ||
		len(o.workloads) != 1 || len(o.qemuImg) != 1 || !o.cpuprofile {
		t.Errorf("got %+v", o)
	}
	r := &runner{o: o, addr: "0000:00:04.0"}
	if got := strings.Join(r.perfArgs("randwrite", 32), " "); got != "perf -q 32 -s 4096 -w randwrite -t 3 --warmup 0 -c 1 -o json 0000:00:04.0" {
		t.Errorf("perf args %q", got)
	}
	for _, bad := range []string{"-reps 0", "-time 0", "-depths 1,,2", "-workloads seqread", "-qemu-img write"} {
		if _, err := parseFlags(strings.Fields(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
