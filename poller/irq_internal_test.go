package poller

import (
	"sync"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

// TestSubmitBeforeArm makes the race of Poller.sleep happen every time: a
// submission lands in the ring after the poller's last pass found it
// empty and before the poller announces its sleep, so the submitter sees
// no sleeper and writes no wake-up. Only the poller's second look, after
// announcing, finds it; without that look the poller sleeps with no time
// limit (nothing is in flight) and the request never completes.
func TestSubmitBeforeArm(t *testing.T) {
	for _, mode := range []Mode{ModeInterrupt, ModeHybrid} {
		t.Run(mode.String(), func(t *testing.T) {
			tr := testrig.Open(t, nvmetest.Config{}, nil)
			ns, err := tr.Ctrl.Namespace(1)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var h *Handle
			var req *nvme.Request
			pending := false // a round asks the hook to submit
			// Set before the poller starts, cleared after it ended.
			testHookBeforeArm = func(p *Poller) {
				mu.Lock()
				defer mu.Unlock()
				if !pending {
					return
				}
				pending = false
				if err := h.Submit(req); err != nil {
					t.Errorf("submit from the hook: %v", err)
				}
			}
			t.Cleanup(func() { testHookBeforeArm = nil })
			g, err := New([]*nvme.Controller{tr.Ctrl}, &Options{CPUs: []int{0}, Mode: mode, SpinTime: time.Microsecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := g.Close(); err != nil {
					t.Error(err)
				}
			})
			const rounds = 20
			buf := tr.Buf(t, 4096)
			done := make(chan struct{}, 1)
			mu.Lock()
			h = g.Handle(tr.Ctrl)
			req = &nvme.Request{Done: func(*nvme.Request) { done <- struct{}{} }}
			mu.Unlock()
			for i := range rounds {
				if err := ns.Read(req, uint64(i), buf, 0); err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				pending = true
				mu.Unlock()
				// A sleeping poller wakes, finds nothing and sleeps again:
				// the hook runs. Kick until it has: a kick that landed
				// between the hook's last look and the sleep's
				// announcement woke nobody (that lost the round at load
				// 4, 1 in 40 runs). Each kick is made under mu while the
				// submission is still pending, so none comes after it
				// and hides a lost wake-up.
				for {
					mu.Lock()
					if !pending {
						mu.Unlock()
						break
					}
					g.pollers[0].kick()
					mu.Unlock()
					time.Sleep(time.Millisecond)
				}
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Fatalf("round %d: a request submitted just before the poller armed its sleep was never taken: lost wake-up", i)
				}
				if req.Err != nil {
					t.Fatal(req.Err)
				}
			}
		})
	}
}
