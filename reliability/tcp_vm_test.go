package reliability_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// gonvme as an NVMe/TCP host against the guest kernel's own target
// (issue 17): the kernel's nvmet exports QEMU's controller (through the
// kernel nvme driver, /dev/nvme0n1), and the checks read that block device
// behind the target's back.

// tcpTarget exports the profile's controller through nvmet on
// 127.0.0.1:4420 and returns the target, its address and the backing
// block device.
func tcpTarget(t *testing.T, env *vmtest.Env) (*vmtest.KernelTarget, tcp.Address, string) {
	t.Helper()
	env.LoadFabrics(t)
	backing := "/dev/" + env.BindKernel(t, env.Controllers()[0]) + "n1"
	kt := env.KernelTarget(t, vmtest.KernelTargetConfig{Devices: []string{backing}})
	a, err := tcp.ParseAddress(kt.String(), false)
	if err != nil {
		t.Fatal(err)
	}
	return kt, a, backing
}

// tcpConnect connects with o (the host identity LoadFabrics wrote) and
// closes the controller when the test ends.
func tcpConnect(t *testing.T, a tcp.Address, o tcp.Options) *nvme.Controller {
	t.Helper()
	o.HostNQN = vmtest.HostNQN
	c, err := tcp.Connect(a, &o)
	if err != nil {
		t.Fatalf("connect %v: %v", a, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

// readBacking reads n bytes at byte offset off of the target's backing
// device with O_DIRECT.
func readBacking(blk string, off int64, n int) ([]byte, error) {
	fd, err := unix.Open(blk, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	buf, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	defer unix.Munmap(buf)
	for done := 0; done < n; {
		m, err := unix.Pread(fd, buf[done:], off+int64(done))
		if err != nil || m == 0 {
			return nil, fmt.Errorf("read %s at %d: %d, %v", blk, off+int64(done), m, err)
		}
		done += m
	}
	return append([]byte(nil), buf...), nil
}

// tcpTag fills b with words naming (seq, block): what a block written as
// part of write seq must hold.
func tcpTag(b []byte, seq uint64, lba uint64) {
	for i := 0; i+16 <= len(b); i += 16 {
		binary.LittleEndian.PutUint64(b[i:], seq)
		binary.LittleEndian.PutUint64(b[i+8:], lba+uint64(i/512))
	}
}

// TestVMTCPSplitDigests: a 2 MiB write and read through ddi over TCP go
// out in pieces of the controller's largest transfer (the target's MDTS,
// or Options.MaxTransfer when nvmet reports none), with digests off and
// on; the backing device holds exactly what was written and the read
// brings back exactly that.
func TestVMTCPSplitDigests(t *testing.T) {
	env := vmtest.Require(t, "nvmf")
	_, a, backing := tcpTarget(t, env)
	for i, dg := range []struct{ hdr, data bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		t.Run(fmt.Sprintf("hdr=%v,data=%v", dg.hdr, dg.data), func(t *testing.T) {
			const maxXfer = 128 << 10
			c := tcpConnect(t, a, tcp.Options{HeaderDigest: dg.hdr, DataDigest: dg.data, Controller: &nvme.Options{IOQueues: 1, MaxTransfer: maxXfer}})
			want := maxXfer
			if mdts := c.Identify().MDTS; mdts != 0 {
				want = min(want, c.Capabilities().MinPageSize()<<mdts)
			}
			if c.MaxTransfer() != want {
				t.Fatalf("MaxTransfer %d with MDTS %d and Options.MaxTransfer %d, want %d", c.MaxTransfer(), c.Identify().MDTS, maxXfer, want)
			}
			ns, err := c.Namespace(1)
			if err != nil {
				t.Fatal(err)
			}
			qp, err := c.NewQueuePair(0)
			if err != nil {
				t.Fatal(err)
			}
			defer qp.Close()
			dev, err := ddi.RegisterDevice(ns, ddi.NewSyncSubmitter(qp))
			if err != nil {
				t.Fatal(err)
			}
			defer ddi.Unregister(dev.Edev())
			const size = 2 << 20
			lba := uint64(65536 + i*size/512)
			buf, err := c.Memory().Alloc(size)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Memory().Free(buf)
			tcpTag(buf.Bytes, uint64(i+1), lba)
			data := append([]byte(nil), buf.Bytes...)

			before := qp.Stats().Submitted
			bp := ddi.Getrbuf(ddi.KMSleep)
			bp.Bcount, bp.Addr, bp.Blkno, bp.Edev = size, buf.Bytes, int64(lba), dev.Edev()
			dev.Strategy(bp)
			if err := ddi.Biowait(bp); err != nil {
				t.Fatalf("write: %v", err)
			}
			pieces := bp.Children()
			ddi.Freerbuf(bp)
			if sent := qp.Stats().Submitted - before; sent != size/uint64(want) || pieces != size/want {
				t.Errorf("2 MiB write went out as %d commands (%d clones), want %d of %d bytes", sent, pieces, size/want, want)
			}
			got, err := readBacking(backing, int64(lba)*512, size)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("the backing device does not hold what went over TCP")
			}
			clear(buf.Bytes)
			bp = ddi.Getrbuf(ddi.KMSleep)
			bp.Flags |= ddi.BRead
			bp.Bcount, bp.Addr, bp.Blkno, bp.Edev = size, buf.Bytes, int64(lba), dev.Edev()
			dev.Strategy(bp)
			if err := ddi.Biowait(bp); err != nil {
				t.Fatalf("read: %v", err)
			}
			ddi.Freerbuf(bp)
			if !bytes.Equal(buf.Bytes, data) {
				t.Fatal("the read over TCP brought back other data")
			}
		})
	}
}

// TestVMTCPReconnect: the target drops the connection mid-I/O (its port
// link removed in configfs for 3 s, then put back). Writers keep going
// through pollers and ddi; the host reconnects every ReconnectDelay and
// resubmits what had no completion. Every write completes exactly once
// and without error, and the backing device holds every one of them.
func TestVMTCPReconnect(t *testing.T) {
	env := vmtest.Require(t, "nvmf")
	kt, a, backing := tcpTarget(t, env)
	c := tcpConnect(t, a, tcp.Options{ReconnectDelay: time.Second, CtrlLossTimeout: time.Minute, KeepAliveTimeout: 5 * time.Second,
		Controller: &nvme.Options{IOQueues: 1}})
	ns, err := c.Namespace(1)
	if err != nil {
		t.Fatal(err)
	}
	grp, err := poller.New([]*nvme.Controller{c}, &poller.Options{CPUs: []int{0}})
	if err != nil {
		t.Fatal(err)
	}
	defer grp.Stop(context.Background())
	dev, err := ddi.RegisterDevice(ns, grp.Handle(c))
	if err != nil {
		t.Fatal(err)
	}
	defer ddi.Unregister(dev.Edev())

	const (
		workers = 4
		chunk   = 64 << 10
		perW    = 1024 // chunks per worker at most: 256 MiB in all
		base    = 1 << 20 / 512
	)
	type write struct {
		seq, lba uint64
		done     atomic.Int32 // Iodone calls
		err      error
	}
	var (
		mu     sync.Mutex
		writes []*write
		stamps []time.Time // completion times
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf, err := c.Memory().Alloc(chunk)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Memory().Free(buf)
			for i := range perW {
				select {
				case <-stop:
					return
				default:
				}
				wr := &write{seq: uint64(w*perW + i + 1), lba: uint64(base + (w*perW+i)*chunk/512)}
				tcpTag(buf.Bytes, wr.seq, wr.lba)
				fin := make(chan struct{})
				bp := ddi.Getrbuf(ddi.KMSleep)
				bp.Bcount, bp.Addr, bp.Blkno, bp.Edev = chunk, buf.Bytes, int64(wr.lba), dev.Edev()
				bp.Iodone = func(bp *ddi.Buf) int {
					if wr.done.Add(1) == 1 {
						wr.err = bp.Error
						close(fin)
					}
					return 0
				}
				mu.Lock()
				writes = append(writes, wr)
				mu.Unlock()
				dev.Strategy(bp)
				select {
				case <-fin:
				case <-time.After(2 * time.Minute):
					t.Errorf("write %d never completed", wr.seq)
					return
				}
				ddi.Freerbuf(bp)
				mu.Lock()
				stamps = append(stamps, time.Now())
				mu.Unlock()
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(stamps) }
	for deadline := time.Now().Add(time.Minute); count() < 50 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	kt.Unlink(t)
	cut := time.Now()
	time.Sleep(3 * time.Second)
	kt.Link(t)
	relinked := time.Now()
	after := count()
	for deadline := time.Now().Add(2 * time.Minute); count() < after+50 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	// The fault happened: no write completed for most of the 3 s the port
	// was gone.
	mu.Lock()
	var gap time.Duration
	for i := 1; i < len(stamps); i++ {
		if stamps[i].After(cut) && stamps[i-1].Before(relinked) {
			gap = max(gap, stamps[i].Sub(stamps[i-1]))
		}
	}
	mu.Unlock()
	if gap < 2*time.Second {
		t.Errorf("the longest pause in completions around the cut was %v: the connection did not drop", gap)
	}
	t.Logf("%d writes; longest pause %v; recovery %+v", len(writes), gap, c.RecoveryStats())
	if count() < after+50 {
		t.Fatalf("I/O did not resume after the port came back: %d writes before, %d after", after, count())
	}
	for _, wr := range writes {
		if n := wr.done.Load(); n != 1 || wr.err != nil {
			t.Errorf("write %d: completed %d times, error %v", wr.seq, n, wr.err)
		}
	}
	// Nothing lost: the backing device holds every write.
	want := make([]byte, chunk)
	for _, wr := range writes {
		got, err := readBacking(backing, int64(wr.lba)*512, chunk)
		if err != nil {
			t.Fatal(err)
		}
		tcpTag(want, wr.seq, wr.lba)
		if !bytes.Equal(got, want) {
			t.Errorf("write %d at LBA %d is not on the backing device", wr.seq, wr.lba)
		}
	}
}

// TestVMTCPCtrlLoss: the port goes away and stays away. Requests fail
// with nvme.ErrRemoved once no reconnect can succeed within
// CtrlLossTimeout (not earlier than one reconnect delay before it), and
// from then on at once.
func TestVMTCPCtrlLoss(t *testing.T) {
	env := vmtest.Require(t, "nvmf")
	kt, a, _ := tcpTarget(t, env)
	const lossTmo = 3 * time.Second
	c := tcpConnect(t, a, tcp.Options{ReconnectDelay: time.Second, CtrlLossTimeout: lossTmo, Controller: &nvme.Options{IOQueues: 1}})
	ns, err := c.Namespace(1)
	if err != nil {
		t.Fatal(err)
	}
	qp, err := c.NewQueuePair(0)
	if err != nil {
		t.Fatal(err)
	}
	defer qp.Close()
	buf, err := c.Memory().Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Memory().Free(buf)
	if err := ns.ReadAt(qp, buf.Bytes, 0); err != nil {
		t.Fatalf("read before the loss: %v", err)
	}
	kt.Unlink(t)
	defer kt.Link(t)
	cut := time.Now()
	// The first read after the cut waits out the reconnect attempts.
	err = ns.ReadAt(qp, buf.Bytes, 8)
	took := time.Since(cut)
	if !errors.Is(err, nvme.ErrRemoved) {
		t.Fatalf("read after the port went away: %v, want ErrRemoved", err)
	}
	// gonvme gives up once the next attempt would come after the
	// timeout (reconnect attempts at 0, 1 and 2 s here), Linux's
	// initiator after its last attempt at the timeout: either way no
	// earlier than one reconnect delay before it.
	if took < lossTmo-time.Second-200*time.Millisecond {
		t.Errorf("ErrRemoved after %v: more than one reconnect delay (1s) before ctrl-loss-tmo %v", took, lossTmo)
	}
	t.Logf("ErrRemoved %v after the cut (ctrl-loss-tmo %v): %v", took.Round(time.Millisecond), lossTmo, err)
	// And from then on at once.
	if err := ns.ReadAt(qp, buf.Bytes, 16); !errors.Is(err, nvme.ErrRemoved) {
		t.Errorf("read after removal: %v, want ErrRemoved", err)
	}
	if !c.Removed() {
		t.Error("the controller does not say it is removed")
	}
}
