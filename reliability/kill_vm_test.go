package reliability_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
)

// childEnv carries killChild's parameters from TestVMKill: the
// controller address, the region [lo, hi), the run, the last generation
// used, and a seed. TestMain (main_test.go) runs killChild instead of the
// tests when it is set.
const childEnv = "GONVME_RELIABILITY_KILL_CHILD"

// The region of the default profile's namespace the kill test writes.
const (
	killLo     = 768 << 20 / 512
	killBlocks = 64 << 20 / 512
	killBatch  = 4 // writes per flushed batch
)

// killBound is how soon after the SIGKILL the parent must have the
// controller up again.
const killBound = 5 * time.Second

// killChild is the child process of TestVMKill: the test binary run again
// with childEnv set to params. It is not a test (a run of it is not a test
// that passed): it opens the controller through VFIO and writes tagged
// batches until it is killed, reporting each write before it starts
// ("write gen N lba A..B") and each batch once its Flush completed
// ("flushed gen N lba A..B" per write, then "flushed gen N done"). It
// returns an error only when it cannot go on; not being killed within 2
// minutes is one.
func killChild(params string) error {
	var addr string
	var lo, hi, run, gen0, seed uint64
	if _, err := fmt.Sscan(params, &addr, &lo, &hi, &run, &gen0, &seed); err != nil {
		return fmt.Errorf("%s=%q: %w", childEnv, params, err)
	}
	ctrl, err := pcie.Open(addr, nil)
	if err != nil {
		return fmt.Errorf("child: open %s: %w", addr, err)
	}
	ns, err := ctrl.Namespace(1)
	if err != nil {
		return err
	}
	qp, err := ctrl.NewQueuePair(32)
	if err != nil {
		return err
	}
	d, err := ddi.RegisterDevice(ns, ddi.NewSyncSubmitter(qp))
	if err != nil {
		return err
	}
	buf, err := ctrl.Memory().Alloc(4 << 20)
	if err != nil {
		return err
	}
	say := func(format string, args ...any) { os.Stdout.WriteString(fmt.Sprintf(format, args...) + "\n") }
	rng := rand.New(rand.NewPCG(seed, run))
	var bp ddi.Buf
	ddi.Bioinit(&bp)
	io := func(cmd ddi.Cmd, lba, n uint64) error {
		ddi.Bioreset(&bp)
		bp.Cmd, bp.Edev, bp.Lblkno = cmd, d.Edev(), lba
		if cmd == ddi.CmdData {
			bp.Bcount, bp.Addr = int(n)*512, buf.Bytes[:n*512]
		}
		ddi.Strategy(&bp)
		if err := ddi.Biowait(&bp); err != nil {
			return fmt.Errorf("child: %w", err)
		}
		return nil
	}
	say("ready")
	for gen, deadline := gen0+1, time.Now().Add(2*time.Minute); time.Now().Before(deadline); gen++ {
		var done [][2]uint64
		for range killBatch {
			e := rng.IntN(14) // up to 8192 blocks: 4 MiB
			n := min(8192, uint64(1)<<e+rng.Uint64N(uint64(1)<<e))
			lba := lo + rng.Uint64N(hi-lo-n+1)
			fillBlocks(buf.Bytes[:n*512], 512, lba, gen, run)
			say("write gen %d lba %d..%d", gen, lba, lba+n-1)
			if err := io(ddi.CmdData, lba, n); err != nil {
				return err
			}
			done = append(done, [2]uint64{lba, n})
		}
		if err := io(ddi.CmdFlush, 0, 0); err != nil {
			return err
		}
		for _, w := range done {
			say("flushed gen %d lba %d..%d", gen, w[0], w[0]+w[1]-1)
		}
		say("flushed gen %d done", gen)
	}
	return errors.New("child: not killed within 2 minutes")
}

// killRound is what one child reported before it died.
type killRound struct {
	writes   map[uint64][][2]uint64 // announced, by generation: [lba, n]
	flushed  []uint64               // generations whose flush completed, in order
	ranges   map[uint64][][2]uint64 // reported flushed, by generation
	lastGen  uint64
	killedAt time.Time
	other    []string // any other output
}

// TestVMKill SIGKILLs a process writing through VFIO in the middle of
// its I/O, then brings the controller up in this process (a controller
// reset) within killBound and checks that every write of every batch the
// child reported flushed reads back intact; writes of the batch in
// progress may or may not be there, but nothing else may be.
func TestVMKill(t *testing.T) {
	env := vmtest.Require(t, "default")
	addr := env.BindVFIO(t, env.Controllers()[0])
	rounds := 3
	if long() {
		rounds = 20
	}
	run := newRun()
	m := newModel(killLo, killBlocks)
	var gen, batches uint64
	var worst time.Duration
	for round := range rounds {
		kr := runChild(t, addr, run, gen, rand.Uint64(), 3+rand.IntN(3))
		// What the child reported flushed is the model now; what it
		// announced without a flush may have landed.
		for _, g := range kr.flushed {
			if fmt.Sprint(kr.ranges[g]) != fmt.Sprint(kr.writes[g]) {
				t.Fatalf("gen %d: flushed %v, announced %v", g, kr.ranges[g], kr.writes[g])
			}
			for _, w := range kr.ranges[g] {
				m.wrote(w[0], w[1], uint32(g))
			}
			delete(kr.writes, g)
		}
		for g, ws := range kr.writes {
			for _, w := range ws {
				m.unsure(w[0], w[1], uint32(g))
			}
		}
		batches += uint64(len(kr.flushed))
		gen = kr.lastGen

		ctrl, err := pcie.Open(addr, nil)
		up := time.Since(kr.killedAt)
		if err != nil {
			t.Fatalf("round %d: bring-up after the kill: %v", round, err)
		}
		worst = max(worst, up)
		if up > killBound {
			t.Errorf("round %d: controller up %v after the kill, want under %v", round, up, killBound)
		}
		r := &rig{t: t, mem: ctrl.Memory(), ctrl: ctrl, logs: &testrig.Log{}}
		d := r.register(1, r.sync(32))
		l := r.newLoad(loadConfig{run: run, targets: []target{{dev: d, via: "parent", lo: killLo, hi: killLo + killBlocks}}, maxBytes: 4 << 20})
		l.workers[0].m = m
		verifiedBytes := l.sweep()
		r.close()
		t.Logf("round %d: killed after %d flushed batches (gen %d in flight), controller up %v after the kill; %.1f MiB of tagged blocks verified",
			round, len(kr.flushed), kr.lastGen, up.Round(time.Millisecond), mib(verifiedBytes))
		if len(kr.flushed) < 3 {
			t.Errorf("round %d: only %d batches flushed before the kill", round, len(kr.flushed))
		}
		if t.Failed() {
			return
		}
	}
	t.Logf("%d kills, %d flushed batches intact; slowest bring-up %v after SIGKILL", rounds, batches, worst.Round(time.Millisecond))
}

// runChild starts killChild in a new process (this test binary, with
// childEnv set; -test.run=^$ so that, were TestMain to miss childEnv, it
// would run no test and exit, which fails below), lets it flush `after`
// batches, kills it during a write of the next one, and returns what it
// reported.
func runChild(t *testing.T, addr string, run, gen, seed uint64, after int) *killRound {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d %d %d %d", childEnv, addr, uint64(killLo), uint64(killLo+killBlocks), run, gen, seed))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	kr := &killRound{writes: map[uint64][][2]uint64{}, ranges: map[uint64][][2]uint64{}, lastGen: gen}
	killAt := 1 + rand.IntN(killBatch) // the write of the next batch to die in
	timeout := time.After(90 * time.Second)
	handle := func(line string) {
		var g, a, b uint64
		switch {
		case strings.HasPrefix(line, "write "):
			if _, err := fmt.Sscanf(line, "write gen %d lba %d..%d", &g, &a, &b); err == nil {
				kr.writes[g] = append(kr.writes[g], [2]uint64{a, b - a + 1})
				kr.lastGen = max(kr.lastGen, g)
				return
			}
		case strings.HasSuffix(line, " done"):
			if _, err := fmt.Sscanf(line, "flushed gen %d done", &g); err == nil {
				kr.flushed = append(kr.flushed, g)
				return
			}
		case strings.HasPrefix(line, "flushed "):
			if _, err := fmt.Sscanf(line, "flushed gen %d lba %d..%d", &g, &a, &b); err == nil {
				kr.ranges[g] = append(kr.ranges[g], [2]uint64{a, b - a + 1})
				return
			}
		case line == "ready":
			return
		}
		kr.other = append(kr.other, line)
	}
	killed := false
	for !killed {
		select {
		case line, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("the child exited before it was killed: %v\nstdout: %q\nstderr: %s", cmd.ProcessState, kr.other, stderr.Bytes())
			}
			handle(line)
			if len(kr.flushed) >= after && strings.HasPrefix(line, "write ") && len(kr.writes[kr.lastGen]) == killAt {
				// The child is about to submit this write (or is in it):
				// let it get going, then kill it.
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				if err := cmd.Process.Kill(); err != nil {
					t.Fatalf("kill: %v", err)
				}
				kr.killedAt = time.Now()
				killed = true
			}
		case <-timeout:
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the child made no progress in 90 s: %d batches flushed\nstdout: %q\nstderr: %s", len(kr.flushed), kr.other, stderr.Bytes())
		}
	}
	// Lines the child wrote before it died are true: read them all.
	for line := range lines {
		handle(line)
	}
	wg.Wait()
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(interface{ Signaled() bool }); !ok || !ws.Signaled() {
		t.Errorf("the child ended with %v, not by the SIGKILL", err)
	}
	if len(kr.other) > 0 {
		t.Logf("child output: %q", kr.other)
	}
	return kr
}
