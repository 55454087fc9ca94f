package reliability_test

import (
	"fmt"
	"github.com/seedb8fa28ef/gonvme/internal/testrig"
	"sync"
	"testing"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

// rig is the driver on one controller (a fake one, or a real one in the
// VM) with the submitters and devices a test made; close tears it all
// down in order and reports leaked DMA memory.
type rig struct {
	t      testing.TB
	fake   *nvmetest.Controller // nil in the VM
	mem    *dma.Allocator
	ctrl   *nvme.Controller
	logs   *testrig.Log
	ownMem bool // close mem (and fake) after the controller

	loops []*loopSubmitter
	syncs []*ddi.SyncSubmitter
	devs  []*ddi.Device
	loads []*load
	once  sync.Once
}

// newFakeRig opens the driver on a new nvmetest controller.
func newFakeRig(t testing.TB, cfg nvmetest.Config, opts nvme.Options) *rig {
	t.Helper()
	fake, err := nvmetest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := dma.NewAllocator(fake.Mapper())
	if err != nil {
		fake.Close()
		t.Fatal(err)
	}
	r := &rig{t: t, fake: fake, mem: mem, logs: &testrig.Log{}, ownMem: true}
	if opts.Logf == nil {
		opts.Logf = r.logs.Logf
	}
	r.ctrl, err = nvme.Open(fake, mem, &opts)
	if err != nil {
		fake.Close()
		mem.Close()
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(r.close)
	return r
}

// loop returns a new loopSubmitter over a new queue pair of depth entries.
func (r *rig) loop(depth int) *loopSubmitter {
	r.t.Helper()
	qp, err := r.ctrl.NewQueuePair(depth)
	if err != nil {
		r.t.Fatalf("new queue pair: %v", err)
	}
	l := newLoop(fmt.Sprintf("loop(qid %d)", qp.ID()), qp)
	r.loops = append(r.loops, l)
	return l
}

// sync returns a new SyncSubmitter over a new queue pair.
func (r *rig) sync(depth int) *ddi.SyncSubmitter {
	r.t.Helper()
	qp, err := r.ctrl.NewQueuePair(depth)
	if err != nil {
		r.t.Fatalf("new queue pair: %v", err)
	}
	s := ddi.NewSyncSubmitter(qp)
	r.syncs = append(r.syncs, s)
	return s
}

func (r *rig) register(nsid uint32, sub ddi.Submitter) *ddi.Device {
	r.t.Helper()
	ns, err := r.ctrl.Namespace(nsid)
	if err != nil {
		r.t.Fatal(err)
	}
	d, err := ddi.RegisterDevice(ns, sub)
	if err != nil {
		r.t.Fatal(err)
	}
	r.devs = append(r.devs, d)
	return d
}

// part returns partition i of parts equal partitions of blocks.
func part(blocks uint64, parts, i int) (lo, hi uint64) {
	per := blocks / uint64(parts)
	return uint64(i) * per, uint64(i+1) * per
}

// start starts a load the rig frees at close.
func (r *rig) start(cfg loadConfig) *load { return r.newLoad(cfg).run() }

// newLoad makes a load the rig frees at close, without starting it.
func (r *rig) newLoad(cfg loadConfig) *load {
	r.t.Helper()
	cfg.mem = r.mem
	l := newLoad(r.t, cfg)
	r.loads = append(r.loads, l)
	return l
}

// qstats stops the loops and returns the counters of every queue pair,
// summed. Only after the workers stopped.
func (r *rig) qstats() nvme.QueueStats {
	var s nvme.QueueStats
	add := func(q nvme.QueueStats) {
		s.Submitted += q.Submitted
		s.Completed += q.Completed
		s.Errors += q.Errors
		s.BogusCIDs += q.BogusCIDs
		s.BadSQHeads += q.BadSQHeads
		s.Timeouts += q.Timeouts
		s.Requeued += q.Requeued
		s.Failed += q.Failed
		s.Waits += q.Waits
	}
	for _, l := range r.loops {
		l.stop()
		add(l.stats)
	}
	for _, sy := range r.syncs {
		add(sy.QueuePair().Stats())
	}
	return s
}

// close stops everything and closes the driver: loads, loops, queue
// pairs, devices, the controller, then (for a fake) the fake and the
// allocator, whose Close reports leaked buffers.
func (r *rig) close() {
	r.once.Do(func() {
		for _, l := range r.loads {
			l.stop()
			l.freeBuffers()
		}
		for _, l := range r.loops {
			l.stop()
			l.qp.Close()
		}
		for _, s := range r.syncs {
			s.QueuePair().Close()
		}
		for _, d := range r.devs {
			ddi.Unregister(d.Edev())
		}
		state := r.ctrl.State()
		if err := r.ctrl.Close(); err != nil {
			if state == nvme.StateReady {
				r.t.Errorf("close controller: %v", err)
			} else {
				r.t.Logf("close %v controller: %v", state, err)
			}
		}
		if r.ownMem {
			testrig.CheckHost(r.t, r.fake)
			r.fake.Close()
			if err := r.mem.Close(); err != nil {
				r.t.Errorf("dma memory leaked: %v", err)
			}
		}
	})
}
