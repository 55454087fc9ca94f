package tcp_test

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/internal/nbsock"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/internal/tcptest"
)

// fakeTarget serves a tcptest.Target on a loopback listener.
func fakeTarget(t testing.TB, cfg tcptest.Config) (*tcptest.Target, tcp.Address) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(l.Addr().String())
	cfg.Addr, cfg.Port = host, port
	tg := tcptest.New(cfg)
	tg.Listen(l)
	t.Cleanup(func() {
		l.Close()
		tg.Wait()
		for _, e := range tg.Errors() {
			// A connection the fault tests cut is not the host's
			// mistake; anything else the target found is.
			if !nbsock.IsClosed(e) {
				t.Errorf("the target caught a host error: %v", e)
			}
		}
	})
	p, _ := strconv.Atoi(port)
	return tg, tcp.Address{Host: host, Port: p, NQN: tg.Config().SubNQN}
}

// quick are options for tests: short timeouts, logs to the test.
func quick(t testing.TB) *tcp.Options {
	return &tcp.Options{
		NrIOQueues: 2, QueueSize: 32,
		ReconnectDelay: 20 * time.Millisecond, CtrlLossTimeout: 2 * time.Second,
		ConnectTimeout: 2 * time.Second,
		Controller: &nvme.Options{
			WatchInterval: 5 * time.Millisecond, AdminTimeout: 5 * time.Second,
			Logf: func(f string, a ...any) { t.Logf(f, a...) },
		},
	}
}

func connect(t testing.TB, a tcp.Address, o *tcp.Options) *nvme.Controller {
	t.Helper()
	c, err := tcp.Connect(a, o)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7) + byte(i>>9)
	}
	return b
}

// exec runs one I/O on q (the test goroutine owns it).
func exec(t testing.TB, q *nvme.QueuePair, ns *nvme.Namespace, write bool, lba uint64, buf []byte) {
	t.Helper()
	var r nvme.Request
	var err error
	if write {
		err = ns.Write(&r, lba, buf, 0)
	} else {
		err = ns.Read(&r, lba, buf, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Exec(&r); err != nil {
		t.Fatalf("%s lba %d, %d bytes: %v", map[bool]string{true: "write", false: "read"}[write], lba, len(buf), err)
	}
}

// A controller on the test target: identify, then writes in-capsule and
// through R2T, read back through C2HData (completed by a response and by
// SUCCESS), with digests off and on.
func TestConnectReadWrite(t *testing.T) {
	for _, c := range []struct {
		hd, dd, success bool
	}{{false, false, false}, {true, false, true}, {true, true, false}, {false, true, true}} {
		t.Run(fmt.Sprintf("hdgst=%t/ddgst=%t/success=%t", c.hd, c.dd, c.success), func(t *testing.T) {
			tg, a := fakeTarget(t, tcptest.Config{Success: c.success, Blocks: 4096})
			o := quick(t)
			o.HeaderDigest, o.DataDigest = c.hd, c.dd
			ctrl := connect(t, a, o)
			if got := ctrl.Identify().SUBNQN; got != a.NQN {
				t.Errorf("subnqn %q, want %q", got, a.NQN)
			}
			ns, err := ctrl.Namespace(1)
			if err != nil {
				t.Fatal(err)
			}
			q, err := ctrl.NewQueuePair(0)
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			small, big := pattern(4096, 1), pattern(96<<10, 2)
			exec(t, q, ns, true, 8, small)
			exec(t, q, ns, true, 1000, big)
			for _, w := range []struct {
				lba  uint64
				want []byte
			}{{8, small}, {1000, big}} {
				got := make([]byte, len(w.want))
				exec(t, q, ns, false, w.lba, got)
				if !bytes.Equal(got, w.want) {
					t.Errorf("lba %d: read back differs", w.lba)
				}
				direct := make([]byte, len(w.want))
				tg.ReadAt(direct, int(w.lba)*512)
				if !bytes.Equal(direct, w.want) {
					t.Errorf("lba %d: the target holds other data", w.lba)
				}
			}
		})
	}
}

func tcptestConfig() tcptest.Config { return tcptest.Config{Blocks: 4096} }
