package reliability_test

import (
	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"io"
	"os"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
)

// The soak's region of the default profile's 1 GiB namespace (512 B
// blocks); TestVMKill uses another.
const (
	soakLo     = 64 << 20 / 512
	soakBlocks = 256 << 20 / 512
)

// vmRig opens the profile's first controller through VFIO.
func vmRig(t *testing.T, addr string) *rig {
	t.Helper()
	ctrl, err := pcie.Open(addr, &nvme.Options{IOQueueDepth: 64})
	if err != nil {
		t.Fatalf("open %s: %v", addr, err)
	}
	r := &rig{t: t, mem: ctrl.Memory(), ctrl: ctrl, logs: &testrig.Log{}}
	t.Cleanup(r.close)
	return r
}

// TestVMSoak is the integrity soak against QEMU's controller through
// VFIO: four workers, transfers from 512 B to 4 MiB split at MDTS 7
// (512 KiB), two sharing a polled queue pair of depth 8 (so pieces wait
// for command IDs), one on another, one on a SyncSubmitter; then the driver is closed, the controller handed to the
// guest kernel's nvme driver, and every block of the region read through
// /dev/nvme0n1 and checked against the model.
func TestVMSoak(t *testing.T) {
	env := vmtest.Require(t, "default")
	c := env.Controllers()[0]
	dur := 10 * time.Second // ci; -reliability.long: 3 minutes
	if long() {
		dur = 3 * time.Minute
	}
	r := vmRig(t, env.BindVFIO(t, c))
	if mx := r.ctrl.MaxTransfer(); mx != 512<<10 {
		t.Fatalf("max transfer %d, want 512 KiB (mdts 7)", mx)
	}
	l1, l2, s1 := r.loop(8), r.loop(64), r.sync(32) // 8: two workers' pieces wait for command IDs
	var tgs []target
	for i, w := range []struct {
		sub ddi.Submitter
		via string
	}{{l1, "shared loop 1"}, {l1, "shared loop 1"}, {l2, "loop 2"}, {s1, "SyncSubmitter"}} {
		d := r.register(1, w.sub)
		lo, hi := part(soakBlocks, 4, i)
		tgs = append(tgs, target{dev: d, via: w.via, lo: soakLo + lo, hi: soakLo + hi})
	}
	run := newRun()
	start := time.Now()
	l := r.start(loadConfig{run: run, targets: tgs, maxBytes: 4 << 20, duration: dur})
	l.wg.Wait()
	ran := time.Since(start)
	l.checkExactlyOnce()
	s := l.totals()
	t.Logf("soak %v through VFIO: %v (%.1f MiB/s)", ran.Round(time.Millisecond), s, mib(s.wBytes+s.rBytes)/ran.Seconds())
	if s.writes == 0 || s.reads == 0 || s.verified == 0 || len(l.failures()) > 0 {
		t.Fatalf("soak: %v, %d failed Bufs", s, len(l.failures()))
	}
	qs := r.qstats()
	var pieces uint64
	for _, d := range r.devs {
		pieces += d.Stats().Pieces
	}
	if pieces <= s.started || qs.Errors != 0 || qs.Failed != 0 {
		t.Errorf("%d pieces for %d Bufs; queue stats %+v", pieces, s.started, qs)
	}
	t.Logf("%d commands, %d waited for a command ID", qs.Submitted, qs.Waits)
	if qs.Waits == 0 {
		t.Error("no command waited for a command ID on the depth-8 queue pair")
	}

	// Hand the controller to the kernel and read the region there.
	models := make([]*model, len(l.workers))
	for i, w := range l.workers {
		models[i] = w.m
	}
	r.close()
	if r.ctrl.State() != nvme.StateClosed {
		t.Fatalf("controller %v after close", r.ctrl.State())
	}
	name := env.BindKernel(t, c)
	kstart := time.Now()
	f, err := os.Open("/dev/" + name + "n1")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ver, blk, nbad uint64
	buf := make([]byte, 4<<20)
	for _, m := range models {
		for lba := m.lo; lba < m.hi(); {
			n := min(uint64(len(buf)/512), m.hi()-lba)
			b := buf[:n*512]
			if _, err := f.ReadAt(b, int64(lba)*512); err != nil && err != io.EOF {
				t.Fatalf("kernel read at block %d: %v", lba, err)
			}
			v, k, errs, bad := m.checkRange(lba, b, 512, run)
			ver, blk, nbad = ver+uint64(v), blk+uint64(k), nbad+uint64(bad)
			if bad > 0 {
				t.Errorf("kernel read [%d, %d): %d blocks wrong: %v", lba, lba+n, bad, errs)
			}
			lba += n
		}
	}
	kt := time.Since(kstart)
	t.Logf("kernel nvme driver (%s): read %.0f MiB in %v; %.1f MiB of tagged blocks verified (%d blocks), %d untouched blocks carry no tag, %d wrong",
		name, mib(soakBlocks*512), kt.Round(time.Millisecond), mib(ver*512), ver, blk, nbad)
	if ver == 0 || ver+blk != soakBlocks {
		t.Errorf("verified %d + blank %d blocks, want the %d of the region", ver, blk, soakBlocks)
	}
}
