package tcp_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/internal/tcptest"
)

// serveEnv makes the test binary a target process (TestMain): what the
// host allocates is then counted without the target's own allocations.
const serveEnv = "GONVME_TCP_TEST_SERVE"

func TestMain(m *testing.M) {
	if v := os.Getenv(serveEnv); v != "" {
		serve(v)
		return
	}
	os.Exit(m.Run())
}

// serve runs a tcptest target (cfg "success" or "") on loopback, prints
// its port and serves until stdin closes.
func serve(cfg string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	tg := tcptest.New(tcptest.Config{Blocks: 8192, Success: cfg == "success", MaxH2CData: 16 << 10})
	tg.Listen(l)
	_, port, _ := net.SplitHostPort(l.Addr().String())
	fmt.Println(port)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	os.Exit(0)
}

// targetProcess starts a target in a child process.
func targetProcess(t testing.TB, cfg string) tcp.Address {
	t.Helper()
	cmd := osexec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"="+cfg)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	port, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		t.Fatalf("target process: %q %v %v", line, err, perr)
	}
	return tcp.Address{Host: "127.0.0.1", Port: port, NQN: "nqn.2024-01.io.gonvme:tcptest"}
}

// The I/O path allocates nothing per I/O in steady state: reads (C2HData,
// with a response or SUCCESS), in-capsule writes and R2T writes, with
// digests off and on.
func TestNoAllocsPerIO(t *testing.T) {
	for _, c := range []struct {
		cfg string
		dg  bool
	}{{"plain", false}, {"success", true}} {
		a := targetProcess(t, c.cfg)
		o := &tcp.Options{NrIOQueues: 1, QueueSize: 32, HeaderDigest: c.dg, DataDigest: c.dg,
			Controller: &nvme.Options{AsyncEvents: -1}}
		ctrl := connect(t, a, o)
		ns, _ := ctrl.Namespace(1)
		q, err := ctrl.NewQueuePair(0)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64<<10)
		var r nvme.Request
		done := false
		r.Done = func(*nvme.Request) { done = true }
		var ioErr error
		io := func(write bool, n int) func() {
			return func() {
				var err error
				if write {
					err = ns.Write(&r, 64, buf[:n], 0)
				} else {
					err = ns.Read(&r, 64, buf[:n], 0)
				}
				if err == nil {
					err = q.Submit(&r)
				}
				if err != nil {
					ioErr = err
					return
				}
				for !done {
					q.Poll()
				}
				done = false
				if r.Err != nil {
					ioErr = r.Err
				}
			}
		}
		for _, k := range []struct {
			name  string
			write bool
			n     int
		}{{"read 4k", false, 4096}, {"read 64k", false, 64 << 10}, {"write 4k in capsule", true, 4096}, {"write 64k r2t", true, 64 << 10}} {
			f := io(k.write, k.n)
			for range 10 {
				f() // warm up
			}
			if n := testing.AllocsPerRun(200, f); n != 0 {
				t.Errorf("%s (digests %t, %q): %v allocations per I/O", k.name, c.dg, c.cfg, n)
			}
			if ioErr != nil {
				t.Fatalf("%s: %v", k.name, ioErr)
			}
		}
		q.Close()
	}
}

// BenchmarkRead is 4 KiB reads through a QueuePair over loopback TCP to a
// target in a child process (the test target: one goroutine per
// connection, commands one at a time), at QD1 and QD32: the host's cost
// per I/O plus the target's and the kernel's.
func BenchmarkRead(b *testing.B) {
	for _, qd := range []int{1, 32} {
		b.Run(fmt.Sprintf("qd%d", qd), func(b *testing.B) {
			a := targetProcess(b, "success")
			ctrl := connect(b, a, &tcp.Options{NrIOQueues: 1, QueueSize: 64, Controller: &nvme.Options{AsyncEvents: -1}})
			ns, _ := ctrl.Namespace(1)
			q, err := ctrl.NewQueuePair(0)
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			buf := make([]byte, qd*4096)
			reqs := make([]nvme.Request, qd)
			issued, completed := 0, 0
			var failed error
			done := func(r *nvme.Request) {
				completed++
				if r.Err != nil {
					failed = r.Err
				}
				if issued < b.N {
					issued++
					i := r.Private.(int)
					if err := ns.Read(r, uint64(i*8), buf[i*4096:(i+1)*4096], 0); err == nil {
						_ = q.Submit(r)
					}
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range reqs {
				if issued == b.N {
					break
				}
				issued++
				reqs[i].Private, reqs[i].Done = i, done
				if err := ns.Read(&reqs[i], uint64(i*8), buf[i*4096:(i+1)*4096], 0); err != nil {
					b.Fatal(err)
				}
				if err := q.Submit(&reqs[i]); err != nil {
					b.Fatal(err)
				}
			}
			for completed < issued {
				q.Poll()
			}
			b.StopTimer()
			if failed != nil {
				b.Fatal(failed)
			}
		})
	}
}
