package nvme_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/nvme"
)

// TestVMShadowDoorbells runs I/O with data checked against QEMU's
// controller (which offers Doorbell Buffer Config: OACS 0x10a) with shadow
// doorbells and without. Every command gets a doorbell update of its own
// (Ring after each Submit), so with register doorbells there are at least
// as many MMIO writes as commands; with shadow doorbells QEMU's EventIdx
// lets the driver skip some while QEMU is still working on the queue, and
// the counters show it.
func TestVMShadowDoorbells(t *testing.T) {
	env := vmtest.Require(t, "default")
	for _, shadow := range []bool{true, false} {
		t.Run(fmt.Sprintf("shadow=%v", shadow), func(t *testing.T) {
			c, want := vmCtrl(t, env, 0, &nvme.Options{NoShadowDoorbells: !shadow})
			if got := c.ShadowDoorbells(); got != shadow {
				t.Fatalf("ShadowDoorbells() = %v with NoShadowDoorbells %v (OACS %#x)", got, !shadow, c.Identify().OACS)
			}
			ns, err := c.Namespace(want.Namespaces[0].NSID)
			if err != nil {
				t.Fatal(err)
			}
			q := vmQP(t, c, 64)
			const n, qd = 4096, 32
			bs := int(ns.BlockSize())
			wbuf, rbuf := vmBuf(t, c, n*bs), vmBuf(t, c, n*bs)
			seed := uint64(time.Now().UnixNano())
			vmFill(wbuf, 0, bs, seed)
			reqs := make([]nvme.Request, qd)
			for _, write := range []bool{true, false} {
				next, done := 0, 0
				var failed error
				submit := func(r *nvme.Request) {
					i := next
					next++
					if write {
						err = ns.Write(r, uint64(i), wbuf[i*bs:(i+1)*bs], 0)
					} else {
						err = ns.Read(r, uint64(i), rbuf[i*bs:(i+1)*bs], 0)
					}
					if err == nil {
						err = q.Submit(r)
					}
					if err != nil && failed == nil {
						failed = err
					}
					q.Ring()
				}
				for i := range reqs {
					reqs[i].Done = func(r *nvme.Request) {
						done++
						if r.Err != nil && failed == nil {
							failed = r.Err
						}
						if next < n {
							submit(r)
						}
					}
				}
				for i := 0; i < qd; i++ {
					submit(&reqs[i])
				}
				deadline := time.Now().Add(60 * time.Second)
				for done < n && failed == nil {
					if q.Poll() == 0 && time.Now().After(deadline) {
						t.Fatalf("write %v: %d of %d done after 60 s (in flight %d)", write, done, n, q.InFlight())
					}
				}
				if failed != nil {
					t.Fatalf("write %v: %v", write, failed)
				}
			}
			if !bytes.Equal(wbuf, rbuf) {
				t.Fatal("read back differs from what was written")
			}
			s := q.Stats()
			t.Logf("shadow %v: %d commands, %d SQ + %d CQ doorbell updates, %d MMIO writes, %d saved",
				shadow, s.Submitted, s.SQDoorbells, s.CQDoorbells, s.MMIODoorbells, s.SavedDoorbells)
			if s.MMIODoorbells+s.SavedDoorbells != s.SQDoorbells+s.CQDoorbells {
				t.Errorf("MMIO %d + saved %d != updates %d", s.MMIODoorbells, s.SavedDoorbells, s.SQDoorbells+s.CQDoorbells)
			}
			if s.SQDoorbells < s.Submitted {
				t.Errorf("%d submission doorbell updates for %d commands: the test rings after each", s.SQDoorbells, s.Submitted)
			}
			if shadow {
				if s.SavedDoorbells == 0 || s.MMIODoorbells >= s.Submitted {
					t.Errorf("shadow doorbells: %d MMIO writes (%d saved) for %d commands: want fewer MMIO writes than commands", s.MMIODoorbells, s.SavedDoorbells, s.Submitted)
				}
			} else if s.SavedDoorbells != 0 || s.MMIODoorbells != s.SQDoorbells+s.CQDoorbells {
				t.Errorf("register doorbells: %d MMIO writes, %d saved, of %d updates: want every update written", s.MMIODoorbells, s.SavedDoorbells, s.SQDoorbells+s.CQDoorbells)
			}
		})
	}
}
