package nvme

import (
	"errors"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// TestTimedOutAdminKeepsItsBuffer: an admin command that timed out is
// still in flight: the device may write its data later. Its buffer must
// not go to the next admin command before the reset that retires it. The
// reset is held off here (resetMu), the next command runs meanwhile, and
// the fake reports a host error if that command's data lies where the
// timed-out one may still write. (An internal test: it holds resetMu.)
func TestTimedOutAdminKeepsItsBuffer(t *testing.T) {
	fake, err := nvmetest.New(nvmetest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	mem, err := dma.NewAllocator(fake.Mapper())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := mem.Close(); err != nil {
			t.Errorf("leak: %v", err)
		}
	}()
	// The timeout leaves room for the reset's own admin commands on a
	// loaded -race host (at 50 ms one of them timed out at load 6 and
	// the reset failed); the slow command outlasts it five times.
	c, err := Open(fake, mem, &Options{AdminTimeout: 250 * time.Millisecond, WatchInterval: time.Millisecond, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	fake.Slow(nvmetest.Admin(spec.AdminIdentify), 1250*time.Millisecond, 1)
	c.resetMu.Lock() // hold off the reset the timeout asks for
	_, err = c.IdentifyRaw(spec.CNSController, 0)
	if !errors.Is(err, ErrTimeout) {
		c.resetMu.Unlock()
		t.Fatalf("slow identify: %v, want ErrTimeout", err)
	}
	b, err := c.IdentifyRaw(spec.CNSController, 0)
	c.resetMu.Unlock()
	if err != nil {
		t.Fatalf("identify after the timeout: %v", err)
	}
	if id, err := spec.ParseIdentifyController(b); err != nil || id.SN != "NVMETEST0001" {
		t.Errorf("identify after the timeout: serial %q, %v", id.SN, err)
	}
	for _, e := range fake.HostErrors() {
		t.Errorf("host error: %v", e)
	}
	// The reset retires the timed-out command; then the controller works.
	deadline := time.Now().Add(5 * time.Second)
	for c.RecoveryStats().Resets == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no reset after the admin timeout")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := c.IdentifyRaw(spec.CNSController, 0); err != nil {
		t.Errorf("identify after the reset: %v", err)
	}
}

// TestNeverCID0xFFFF: on queues whose command identifiers would reach
// 0xFFFF (depth 2: no slot bits; depth 3: two slots, the last all ones)
// the driver skips it when the generation wraps; the fake records CID
// 0xFFFF as a host error. The generations start just short of the wrap
// (an internal test) instead of after 2^16 commands.
func TestNeverCID0xFFFF(t *testing.T) {
	fake, err := nvmetest.New(nvmetest.Config{Latency: nvmetest.Fixed(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	mem, err := dma.NewAllocator(fake.Mapper())
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	c, err := Open(fake, mem, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ns, err := c.Namespace(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, depth := range []int{2, 3} {
		q, err := c.NewQueuePair(depth)
		if err != nil {
			t.Fatal(err)
		}
		for i := range q.trk {
			q.trk[i].gen = q.genMask - 3
		}
		for i := 0; i < 16; i++ {
			if err := ns.Sync(q); err != nil {
				t.Fatalf("depth %d flush %d: %v", depth, i, err)
			}
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range fake.HostErrors() {
		t.Errorf("host error: %v", e)
	}
}

// TestResetDuringRecreate: a reset that starts while a queue pair
// recreates its queues after the previous one (here: the queue pair is
// waiting for the admin queue, the new reset has begun) makes the queue
// pair start over at its next poll, not give up. The sleeps only order
// the goroutines; if they fail to, the test passes without exercising
// the race, never the other way.
func TestResetDuringRecreate(t *testing.T) {
	fake, err := nvmetest.New(nvmetest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	mem, err := dma.NewAllocator(fake.Mapper())
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	c, err := Open(fake, mem, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ns, _ := c.Namespace(1)
	q, err := c.NewQueuePair(16)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mem.Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Free(b)
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	c.adminMu.Lock()
	polled := make(chan struct{})
	go func() { // the owner: recovers, and waits for the admin queue
		q.Poll()
		close(polled)
	}()
	time.Sleep(50 * time.Millisecond)
	reset := make(chan error, 1)
	go func() { reset <- c.Reset() }()
	for c.State() != StateResetting {
		time.Sleep(100 * time.Microsecond)
	}
	time.Sleep(50 * time.Millisecond) // the reset now waits for the admin queue too
	c.adminMu.Unlock()
	<-polled
	if err := <-reset; err != nil {
		t.Fatal(err)
	}
	if err := ns.WriteAt(q, b.Bytes[:512], 0); err != nil {
		t.Fatalf("write after the resets: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
}
