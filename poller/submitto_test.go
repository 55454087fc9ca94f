package poller_test

import (
	"errors"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// TestSubmitTo: requests handed to a chosen poller are taken by that
// poller alone, and a poller of another group is refused.
func TestSubmitTo(t *testing.T) {
	r := newRig(t, nvmetest.Config{}, nil)
	g := r.group(&poller.Options{CPUs: []int{0, 1}})
	h := g.Handle(r.ctrl)
	ps := g.Pollers()
	const per = 6
	xs := r.ios(2*per, nil)
	for i, x := range xs {
		p := ps[i%2]
		if err := r.ns.Read(&x.req, uint64(i*8), x.buf, 0); err != nil {
			t.Fatal(err)
		}
		if err := h.SubmitTo(p, &x.req); err != nil {
			t.Fatalf("SubmitTo poller %d: %v", p.ID(), err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, x := range xs {
		for x.done.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("requests did not complete")
			}
			time.Sleep(time.Millisecond)
		}
		if e := x.err.Load(); e != nil {
			t.Fatalf("read %d: %v", x.index, *e)
		}
	}
	settle(t, g, 2*per)
	for _, p := range ps {
		if s := p.Stats(); s.Taken != per {
			t.Errorf("poller %d took %d requests from its ring, want %d", p.ID(), s.Taken, per)
		}
	}

	other := r.group(&poller.Options{CPUs: []int{1}})
	x := r.ios(1, nil)[0]
	r.ns.Read(&x.req, 0, x.buf, 0)
	if err := h.SubmitTo(other.Pollers()[0], &x.req); !errors.Is(err, nvme.ErrInvalid) {
		t.Errorf("SubmitTo a poller of another group: %v, want ErrInvalid", err)
	}
}
