package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// Helpers of the serve and trace VM tests: a random-read load on a poller
// group, and two helper processes the VM tests start by running this test
// binary again (they skip in a normal test run).

// loadCounts are a load's own counts, readable while it runs.
type loadCounts struct {
	submitted, completed, errors atomic.Uint64
}

// randomReads runs n random 4 KiB reads at depth qd on namespace 1 of
// ctrl through g (each Done resubmits) and returns when all completed or
// ctx ended (then it waits for the requests in flight).
func randomReads(ctx context.Context, g *poller.Group, ctrl *nvme.Controller, n, qd int, c *loadCounts) error {
	ns, err := ctrl.Namespace(1)
	if err != nil {
		return err
	}
	const size = 4096
	buf, err := ctrl.Memory().Alloc(qd * size)
	if err != nil {
		return err
	}
	defer ctrl.Memory().Free(buf)
	h := g.Handle(ctrl)
	blocks := ns.Blocks() / uint64(size/ns.BlockSize())
	var issued atomic.Int64
	var active atomic.Int64
	finished := make(chan struct{})
	var firstErr atomic.Pointer[error]
	// next submits req for slot i if work remains, and reports whether it did.
	next := func(req *nvme.Request, i int) bool {
		if ctx.Err() != nil || issued.Add(1) > int64(n) {
			return false
		}
		lba := rand.Uint64N(blocks) * uint64(size/ns.BlockSize())
		if err := ns.Read(req, lba, buf.Bytes[i*size:(i+1)*size], 0); err != nil {
			firstErr.CompareAndSwap(nil, &err)
			return false
		}
		if err := h.Submit(req); err != nil {
			firstErr.CompareAndSwap(nil, &err)
			return false
		}
		c.submitted.Add(1)
		return true
	}
	reqs := make([]nvme.Request, qd)
	for i := range reqs {
		reqs[i].Private = i
		reqs[i].Done = func(req *nvme.Request) {
			c.completed.Add(1)
			if req.Err != nil {
				c.errors.Add(1)
				e := req.Err
				firstErr.CompareAndSwap(nil, &e)
			}
			if !next(req, req.Private.(int)) && active.Add(-1) == 0 {
				close(finished)
			}
		}
	}
	active.Store(int64(qd))
	for i := range reqs {
		if !next(&reqs[i], i) && active.Add(-1) == 0 {
			close(finished)
		}
	}
	<-finished
	if e := firstErr.Load(); e != nil {
		return *e
	}
	return ctx.Err()
}

// TestHelperLoad is the load process of TestVMTracePID: with
// GONVME_TEST_LOAD=ADDR it opens that controller (bound to vfio-pci),
// prints "ready", then follows commands on stdin: "run N QD" starts N
// random 4 KiB reads at depth QD and prints "done N errors E ms T" when
// they completed; "stop" ends the run under way early (its "done" line
// then counts what completed); "quit" stops and prints "bye". Without the
// variable it skips.
func TestHelperLoad(t *testing.T) {
	addr := os.Getenv("GONVME_TEST_LOAD")
	if addr == "" {
		t.Skip("helper process of TestVMTracePID (set GONVME_TEST_LOAD)")
	}
	ctrl, err := pcie.Open(addr, &nvme.Options{IOQueues: 1, AsyncEvents: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Close()
	g, err := poller.New([]*nvme.Controller{ctrl}, &poller.Options{CPUs: []int{0}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	fmt.Printf("ready pid %d\n", os.Getpid())
	lines := make(chan string)
	go func() {
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			lines <- in.Text()
		}
		close(lines)
	}()
	stop := func() {}
	running := make(chan struct{})
	close(running) // no run under way
	for line := range lines {
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "run":
			<-running
			n, _ := strconv.Atoi(f[1])
			qd, _ := strconv.Atoi(f[2])
			ctx, cancel := context.WithCancel(context.Background())
			stop = cancel
			running = make(chan struct{})
			go func(done chan<- struct{}) {
				defer close(done)
				var c loadCounts
				start := time.Now()
				if err := randomReads(ctx, g, ctrl, n, qd, &c); err != nil && ctx.Err() == nil {
					t.Errorf("load: %v", err)
				}
				fmt.Printf("done %d errors %d ms %d\n", c.completed.Load(), c.errors.Load(), time.Since(start).Milliseconds())
			}(running)
		case len(f) == 1 && f[0] == "stop":
			stop()
		case len(f) == 1 && f[0] == "quit":
			stop()
			<-running
			if err := g.Close(); err != nil {
				t.Error(err)
			}
			fmt.Println("bye")
			return
		default:
			stop()
			<-running
			t.Fatalf("unknown command %q", line)
		}
	}
	stop()
	<-running
	t.Fatal("stdin closed without quit")
}

// TestHelperNvmectl runs nvmectl with the JSON argument list in
// GONVME_TEST_NVMECTL and exits with its status (a separate process, so
// the VM tests can send it SIGINT like Ctrl-C). Without it, it skips.
func TestHelperNvmectl(t *testing.T) {
	js := os.Getenv("GONVME_TEST_NVMECTL")
	if js == "" {
		t.Skip("helper process of the trace VM tests (set GONVME_TEST_NVMECTL)")
	}
	var args []string
	if err := json.Unmarshal([]byte(js), &args); err != nil {
		t.Fatal(err)
	}
	os.Exit(run(args, os.Stdout, os.Stderr, app{}))
}
