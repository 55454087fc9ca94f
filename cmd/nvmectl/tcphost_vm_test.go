package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/internal/perfjson"
)

// The NVMe/TCP host VM tests (issue 17): nvmectl reaches the guest
// kernel's own target (nvmet), which exports QEMU's controller through the
// kernel nvme driver and a null_blk device, and everything nvmectl says
// is checked against what Debian's nvme-cli says through the kernel's
// initiator, in the same boot. Package main: see list_vm_test.go.

// tcpHostTarget exports the profile's controller (on the kernel driver)
// as namespace 1 and null_blk as namespace 2 through nvmet, with a
// discovery port; it returns the target and the backing block device of
// namespace 1.
func tcpHostTarget(t *testing.T, env *vmtest.Env) (*vmtest.KernelTarget, string) {
	t.Helper()
	env.LoadFabrics(t)
	name := env.BindKernel(t, env.Controllers()[0])
	backing := "/dev/" + name + "n1"
	kt := env.KernelTarget(t, vmtest.KernelTargetConfig{
		Devices:       []string{backing, "/dev/nullb0"},
		DiscoveryPort: vmtest.KernelTargetDiscoveryPort,
	})
	return kt, backing
}

// kernelConnect attaches kt through the kernel's initiator and returns its
// controller ("nvme1") and namespace 1's block device; it disconnects when
// the test ends.
func kernelConnect(t *testing.T, env *vmtest.Env, kt *vmtest.KernelTarget) (ctrl, blk string) {
	t.Helper()
	env.Tool(t, "nvme", "connect", "-t", "tcp", "-a", kt.Addr, "-s", fmt.Sprint(kt.Port), "-n", kt.NQN)
	t.Cleanup(func() {
		out, err := env.RunTool(t, "nvme", "disconnect", "-n", kt.NQN)
		if err != nil {
			t.Errorf("nvme disconnect: %v\n%s", err, out)
		}
		env.FabricsGone(t, kt.NQN, time.Minute)
	})
	return env.FabricsDevice(t, kt.NQN, 1, time.Minute)
}

// trimLines drops trailing blanks from every line: nvme-cli prints
// TRSVCID and TRADDR with the padding the target put in them.
func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

// TestVMTCPHostDiscover: nvmectl discover prints what nvme discover
// prints for the same discovery controller, in text and in JSON.
func TestVMTCPHostDiscover(t *testing.T) {
	env := vmtest.Require(t, "nvmf")
	kt, _ := tcpHostTarget(t, env)
	v := vm{t}
	for _, port := range []int{vmtest.KernelTargetDiscoveryPort, vmtest.KernelTargetPort} {
		url := fmt.Sprintf("tcp://%s:%d", kt.Addr, port)
		if port == vmtest.KernelTargetDiscoveryPort {
			url = "tcp://" + kt.Addr // the default port
		}
		want := env.Tool(t, "nvme", "discover", "-t", "tcp", "-a", kt.Addr, "-s", fmt.Sprint(port))
		wantJSON := env.Tool(t, "nvme", "discover", "-t", "tcp", "-a", kt.Addr, "-s", fmt.Sprint(port), "-o", "json")
		got := v.ok("discover", url)
		if trimLines(got) != trimLines(want) {
			t.Errorf("nvmectl discover %s:\n%s\nnvme discover -s %d:\n%s", url, got, port, want)
		}
		if !strings.Contains(got, "subnqn:  "+kt.NQN+"\n") {
			t.Errorf("nvmectl discover %s does not list %s:\n%s", url, kt.NQN, got)
		}
		var mine, theirs map[string]any
		if err := json.Unmarshal([]byte(v.ok("-o", "json", "discover", url)), &mine); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(wantJSON), &theirs); err != nil {
			t.Fatal(err)
		}
		if a, b := jsonText(mine), jsonText(theirs); a != b {
			t.Errorf("discover -o json on port %d:\nnvmectl   %s\nnvme-cli  %s", port, a, b)
		}
	}
}

// jsonText renders decoded JSON with string values trimmed, keys sorted.
func jsonText(v any) string {
	var norm func(any) any
	norm = func(v any) any {
		switch x := v.(type) {
		case string:
			return strings.TrimSpace(x)
		case []any:
			for i := range x {
				x[i] = norm(x[i])
			}
		case map[string]any:
			for k := range x {
				x[k] = norm(x[k])
			}
		}
		return v
	}
	b, _ := json.Marshal(norm(v))
	return string(b)
}

// identifyKeys are the Identify fields both hosts must report alike (the
// controller ID is not among them: nvmet gives each connection its own).
var (
	idCtrlKeys = []string{"vid", "ssvid", "sn", "mn", "fr", "ieee", "cmic", "mdts", "ver", "oacs", "acl", "aerl", "lpa", "elpe", "sqes", "cqes", "maxcmd", "nn", "oncs", "fuses", "vwc", "awun", "awupf", "sgls", "subnqn", "ioccsz", "iorcsz", "icdoff", "msdbd", "cntrltype", "kas"}
	idNSKeys   = []string{"nsze", "ncap", "nuse", "nsfeat", "nlbaf", "flbas", "dlfeat", "nawun", "noiob"}
)

// TestVMTCPHostIdentify: id-ctrl and id-ns through gonvme over TCP match
// nvme-cli's through the kernel initiator, for both namespaces (QEMU's
// controller behind the kernel nvme driver, and null_blk).
func TestVMTCPHostIdentify(t *testing.T) {
	env := vmtest.Require(t, "nvmf")
	kt, _ := tcpHostTarget(t, env)
	kctrl, _ := kernelConnect(t, env, kt)
	v := vm{t}
	compare := func(what string, mine map[string]any, theirsJSON string, keys []string) {
		t.Helper()
		var theirs map[string]any
		if err := json.Unmarshal([]byte(theirsJSON), &theirs); err != nil {
			t.Fatalf("%s: nvme-cli: %v", what, err)
		}
		for _, k := range keys {
			a, b := jsonText(mine[k]), jsonText(theirs[k])
			if a != b || mine[k] == nil {
				t.Errorf("%s %s: gonvme %s, nvme-cli %s", what, k, a, b)
			}
		}
	}
	compare("id-ctrl", v.json("id-ctrl", kt.String()), env.Tool(t, "nvme", "id-ctrl", "/dev/"+kctrl, "-o", "json"), idCtrlKeys)
	for _, nsid := range []string{"1", "2"} {
		compare("id-ns "+nsid, v.json("id-ns", kt.String(), "-n", nsid),
			env.Tool(t, "nvme", "id-ns", "/dev/"+kctrl, "-n", nsid, "-o", "json"), idNSKeys)
	}
	if ns := v.ok("list-ns", kt.String()); !strings.Contains(ns, "0x1") || !strings.Contains(ns, "0x2") {
		t.Errorf("list-ns over tcp: %q", ns)
	}
	v.ok("get-feature", kt.String(), "-f", "7")
	v.ok("smart-log", kt.String())
	v.ok("error-log", kt.String())
	v.ok("flush", kt.String())
}

// pattern fills n bytes with a pattern no other write here leaves: seed,
// then the offset of each 8-byte word.
func tcpPattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		copy(b[i:], fmt.Sprintf("%c%07x", 'A'+seed%26, i&0xfffffff))
	}
	return b
}

// directAt reads (data nil: n bytes) or writes data at off on blk with
// O_DIRECT, past the page cache.
func directAt(blk string, off int64, n int, data []byte) ([]byte, error) {
	flags := unix.O_RDONLY
	if data != nil {
		flags, n = unix.O_RDWR, len(data)
	}
	fd, err := unix.Open(blk, flags|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", blk, err)
	}
	defer unix.Close(fd)
	buf, err := alignedBuf(n)
	if err != nil {
		return nil, err
	}
	defer unix.Munmap(buf)
	copy(buf, data)
	for done := 0; done < n; {
		var m int
		if data != nil {
			m, err = unix.Pwrite(fd, buf[done:], off+int64(done))
		} else {
			m, err = unix.Pread(fd, buf[done:], off+int64(done))
		}
		if err != nil || m == 0 {
			return nil, fmt.Errorf("%s at %d: %d bytes, %v", blk, off+int64(done), m, err)
		}
		done += m
	}
	return append([]byte(nil), buf...), nil
}

// TestVMTCPHostData: data written through gonvme over TCP reads back
// identical through the kernel's block devices (the initiator's and the
// target's backing device), and data written through the kernel's
// initiator reads back identical through gonvme; with digests off and on,
// and a 2 MiB transfer that goes out in pieces of the largest transfer.
func TestVMTCPHostData(t *testing.T) {
	env := vmtest.Require(t, "nvmf")
	kt, backing := tcpHostTarget(t, env)
	_, kblk := kernelConnect(t, env, kt)
	v := vm{t}
	dir := t.TempDir()
	for i, digests := range [][]string{nil, {"--hdr-digest"}, {"--data-digest"}, {"--hdr-digest", "--data-digest"}} {
		name := "digests off"
		if len(digests) > 0 {
			name = strings.Join(digests, " ")
		}
		t.Run(name, func(t *testing.T) {
			v := vm{t}
			size := 512 << 10
			if i == 0 {
				size = 2 << 20 // two pieces of nvmectl's 1 MiB buffer
			}
			lba := int64(8192 + i*2*(4<<20)/512)
			// gonvme writes, the kernel reads.
			data := tcpPattern(size, byte(2*i))
			in := filepath.Join(dir, fmt.Sprintf("in%d", i))
			if err := os.WriteFile(in, data, 0o644); err != nil {
				t.Fatal(err)
			}
			v.ok(append([]string{"write", kt.String(), "-s", fmt.Sprint(lba), "-z", fmt.Sprint(size), "-d", in}, digests...)...)
			for _, blk := range []string{kblk, backing} {
				got, err := directAt(blk, lba*512, size, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Errorf("%s reads back other data than gonvme wrote over tcp (first difference at byte %d)", blk, firstDiff(got, data))
				}
			}
			// The kernel writes, gonvme reads.
			lba2 := lba + int64(size/512)
			data2 := tcpPattern(size, byte(2*i+1))
			if _, err := directAt(kblk, lba2*512, 0, data2); err != nil {
				t.Fatal(err)
			}
			got := v.ok(append([]string{"read", kt.String(), "-s", fmt.Sprint(lba2), "-z", fmt.Sprint(size)}, digests...)...)
			if got != string(data2) {
				t.Errorf("gonvme reads back over tcp other data than the kernel initiator wrote (first difference at byte %d)", firstDiff([]byte(got), data2))
			}
		})
	}
	// nvmet has no Compare (ONCS bit 0 clear): nvmectl says so and sends
	// nothing.
	code, _, errs := v.run("compare", kt.String(), "-s", "0", "-c", "0", "-d", writeTemp(t, dir, make([]byte, 512)))
	if code != exitDevice || !strings.Contains(errs, "does not support Compare (ONCS bit 0 is clear)") {
		t.Errorf("compare over tcp: exit %d, %q; want 2 and ONCS named", code, errs)
	}
	// null_blk, namespace 2: the data path works there too (it keeps no data).
	v.ok("write", kt.String(), "-n", "2", "-s", "0", "-z", "65536", "-d", writeTemp(t, dir, tcpPattern(65536, 9)))
	v.ok("read", kt.String(), "-n", "2", "-s", "0", "-z", "65536")
}

func writeTemp(t *testing.T, dir string, b []byte) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "data")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestVMTCPHostPerf: nvmectl perf tcp://... measures 4 KiB random reads
// against nvmet with no failed I/O, and --verify finds every block it
// wrote.
func TestVMTCPHostPerf(t *testing.T) {
	env := vmtest.Require(t, "nvmf")
	kt, _ := tcpHostTarget(t, env)
	v := vm{t}
	out := v.ok("perf", kt.String(), "-n", "1", "-q", "32", "-s", "4096", "-w", "randread", "-t", "2", "-c", "0x1", "-o", "json")
	var rep perfjson.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("perf -o json: %v\n%s", err, out)
	}
	if rep.Total.IOs == 0 || rep.Total.Errors != 0 || len(rep.Results) != 1 || rep.Results[0].Controller != kt.String() {
		t.Fatalf("perf over tcp: %s", out)
	}
	t.Logf("perf %s QD32 randread: %.0f IOPS", kt.String(), rep.Total.IOPS)
	v.ok("perf", kt.String(), "-n", "1", "-q", "8", "-s", "4096", "-w", "randread", "-t", "1", "-c", "0x1", "--verify", "--hdr-digest", "--data-digest")
}

// TestVMTCPHostServe: nvmectl serve runs pollers on a controller reached
// over NVMe/TCP and labels its metrics with the tcp:// name.
func TestVMTCPHostServe(t *testing.T) {
	env := vmtest.Require(t, "nvmf")
	kt, _ := tcpHostTarget(t, env)
	base, cancel, code := startServe(t, app{}, kt.String(), "--listen", "127.0.0.1:0")
	defer cancel()
	if c, body := httpGet(t, base+"/healthz"); c != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", c, body)
	}
	if v := value(scrape(t, base), "gonvme_controller_state", "controller", kt.String(), "state", "ready"); v != 1 {
		t.Errorf("gonvme_controller_state{controller=%q,state=ready} = %v", kt.String(), v)
	}
	cancel()
	select {
	case c := <-code:
		if c != exitOK {
			t.Errorf("serve exit %d", c)
		}
	case <-time.After(time.Minute):
		t.Fatal("serve did not stop")
	}
}
