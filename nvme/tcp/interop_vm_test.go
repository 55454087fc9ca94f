package tcp_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp"
)

// The host against the kernel's own target (nvmet on null_blk): discovery
// on both ports, bring-up, writes in the capsule and through R2T read
// back, with digests off and on, an idle association kept past KATO by
// Keep Alive, and a reconnect after the port was unlinked under a
// connected host.
func TestVMInteropKernelTarget(t *testing.T) {
	env := vmtest.Require(t, "nvmf")
	kt := env.KernelTarget(t, vmtest.KernelTargetConfig{Devices: []string{"/dev/nullb0"}, DiscoveryPort: vmtest.KernelTargetDiscoveryPort})
	for _, port := range []int{vmtest.KernelTargetDiscoveryPort, kt.Port} {
		es, err := tcp.Discover(tcp.Address{Host: kt.Addr, Port: port}, nil)
		if err != nil {
			t.Fatalf("discover on %d: %v", port, err)
		}
		found := false
		for _, e := range es {
			if e.SubNQNString() == kt.NQN && e.TRSvcIDString() == strconv.Itoa(port) {
				found = true
			}
		}
		if !found {
			t.Errorf("discover on %d: %d entries, none for %s", port, len(es), kt.NQN)
		}
	}
	a := tcp.Address{Host: kt.Addr, Port: kt.Port, NQN: kt.NQN}
	for _, dg := range []bool{false, true} {
		o := &tcp.Options{HeaderDigest: dg, DataDigest: dg, NrIOQueues: 2, ReconnectDelay: 100 * time.Millisecond, CtrlLossTimeout: 30 * time.Second,
			KeepAliveTimeout: 2 * time.Second,
			Controller:       &nvme.Options{Logf: t.Logf}}
		ctrl, err := tcp.Connect(a, o)
		if err != nil {
			t.Fatalf("connect (digests %t): %v", dg, err)
		}
		ns, err := ctrl.Namespace(1)
		if err != nil {
			t.Fatal(err)
		}
		q, err := ctrl.NewQueuePair(0)
		if err != nil {
			t.Fatal(err)
		}
		small, big := pattern(4096, 1), pattern(min(256<<10, ctrl.MaxTransfer()), 2)
		check := func(what string) {
			exec(t, q, ns, true, 8, small)
			exec(t, q, ns, true, 4096, big)
			// null_blk keeps no data: what is checked is that
			// every transfer went through whole (C2HData, R2T).
			for _, n := range []int{len(small), len(big)} {
				exec(t, q, ns, false, 8, make([]byte, n))
			}
			t.Logf("%s (digests %t): in-capsule and %d-byte writes and reads done", what, dg, len(big))
		}
		check("connected")
		if !dg {
			// Idle past KATO: nvmet ends an association that sends
			// no Keep Alive within it; the host's every KATO/2 keep
			// it. (Once: digests change nothing of Keep Alive.)
			time.Sleep(5 * time.Second) // nvmet expires after KATO, or twice that after traffic (TBKAS)
			if rs := ctrl.RecoveryStats(); rs.Resets != 0 {
				t.Errorf("idle past KATO: %d reconnects, want none (Keep Alive every KATO/2)", rs.Resets)
			}
			check("idle past KATO")
		}
		kt.Unlink(t)
		time.Sleep(200 * time.Millisecond)
		kt.Link(t)
		check("after unlink and link")
		if err := q.Close(); err != nil {
			t.Error(err)
		}
		if err := ctrl.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
}
