package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// The NVMe/TCP target VM tests (issue 18): nvmectl serve --nvmf exports
// QEMU's controller and the guest kernel's own initiator, driven by
// Debian's nvme-cli, attaches it as a block device. Package main: see
// list_vm_test.go.

// gonvmeNQN is the default subsystem NQN of the profile's controller
// (serial gonvme0).
const gonvmeNQN = defaultNQNPrefix + "gonvme0"

// startServeNVMf runs nvmectl serve --nvmf on addr in a helper process and
// waits until it serves the subsystem.
func startServeNVMf(t *testing.T, addr string) *proc {
	t.Helper()
	p := nvmectlProc(t, "serve", addr, "--nvmf", "tcp://127.0.0.1:4420")
	l := p.expect("Serving "+gonvmeNQN, 2*time.Minute)
	t.Logf("serve (pid %d): %s", p.cmd.Process.Pid, l)
	return p
}

// connect attaches the subsystem through the kernel initiator and returns
// its controller and block device; the controller is disconnected when the
// test ends, before the serve process registered earlier is stopped.
func connect(t *testing.T, env *vmtest.Env, extra ...string) (ctrl, blk string) {
	t.Helper()
	args := append([]string{"connect", "-t", "tcp", "-a", "127.0.0.1", "-s", "4420", "-n", gonvmeNQN}, extra...)
	env.Tool(t, "nvme", args...)
	t.Cleanup(func() {
		if connected() {
			disconnect(t, env)
		}
	})
	ctrl, blk = env.FabricsDevice(t, gonvmeNQN, 1, time.Minute)
	t.Logf("connected: controller %s, namespace %s", ctrl, blk)
	return ctrl, blk
}

// connected reports whether the kernel has a controller of the subsystem.
func connected() bool {
	ents, _ := os.ReadDir("/sys/class/nvme")
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join("/sys/class/nvme", e.Name(), "subsysnqn"))
		if strings.TrimSpace(string(b)) == gonvmeNQN {
			return true
		}
	}
	return false
}

// disconnect detaches every controller of the subsystem.
func disconnect(t *testing.T, env *vmtest.Env) {
	t.Helper()
	out, err := env.RunTool(t, "nvme", "disconnect", "-n", gonvmeNQN)
	t.Logf("$ nvme disconnect -n %s\n%s", gonvmeNQN, out)
	if err != nil {
		t.Errorf("nvme disconnect: %v", err)
	}
	env.FabricsGone(t, gonvmeNQN, time.Minute)
}

// idCtrl is what the test reads from nvme id-ctrl -o json.
type idCtrl struct {
	SN      string `json:"sn"`
	MN      string `json:"mn"`
	SubNQN  string `json:"subnqn"`
	CntrlTy int    `json:"cntrltype"`
	IOCCSZ  int    `json:"ioccsz"`
}

// fioResult is the part of fio's JSON output the test checks.
type fioResult struct {
	Jobs []struct {
		Name  string `json:"jobname"`
		Error int    `json:"error"`
		Read  struct {
			IOBytes int64 `json:"io_bytes"`
		} `json:"read"`
		Write struct {
			IOBytes int64 `json:"io_bytes"`
		} `json:"write"`
	} `json:"jobs"`
}

// TestVMNVMfKernelInitiator: gonvme serves QEMU's controller over NVMe/TCP;
// Debian's nvme-cli discovers and connects it through the guest kernel's
// initiator; nvme list and id-ctrl show gonvme's subsystem; fio writes and
// verifies through the block device, in-capsule and R2T sizes; gonvme's
// own host connects beside the kernel's and each reads what the other
// wrote; ext4 is
// made, mounted, written, remounted, read back and checked clean; a
// BLKDISCARD deallocates blocks through Dataset Management; nvme
// disconnect detaches it.
func TestVMNVMfKernelInitiator(t *testing.T) {
	env := vmtest.Require(t, "nvmf")
	env.LoadFabrics(t)
	addr := env.BindVFIO(t, env.Controllers()[0])
	startServeNVMf(t, addr)

	// gonvme's discovery controller on 8009 names the subsystem at 4420.
	disc := env.Tool(t, "nvme", "discover", "-t", "tcp", "-a", "127.0.0.1", "-s", "8009")
	entry := `(?m)^trsvcid: 4420\nsubnqn:  ` + regexp.QuoteMeta(gonvmeNQN) + `\ntraddr:  127\.0\.0\.1$`
	if !regexp.MustCompile(entry).MatchString(disc) {
		t.Errorf("nvme discover on 8009: no entry of %s at 127.0.0.1:4420", gonvmeNQN)
	}

	ctrl, blk := connect(t, env)
	if tr, _ := os.ReadFile("/sys/class/nvme/" + ctrl + "/transport"); strings.TrimSpace(string(tr)) != "tcp" {
		t.Errorf("%s: transport %q, want tcp", ctrl, tr)
	}
	list := env.Tool(t, "nvme", "list")
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(blk) + `\s+\S+\s+gonvme0\s+QEMU NVMe Ctrl\s+1\s+1\.07\s+GB / +1\.07\s+GB\s+512\s+B`).MatchString(list) {
		t.Errorf("nvme list: no line for %s with serial gonvme0, model QEMU NVMe Ctrl, 1.07 GB, 512 B blocks", blk)
	}
	var id idCtrl
	js := env.Tool(t, "nvme", "id-ctrl", "/dev/"+ctrl, "-o", "json")
	if err := json.Unmarshal([]byte(js), &id); err != nil {
		t.Fatalf("nvme id-ctrl -o json: %v", err)
	}
	if strings.TrimSpace(id.SN) != "gonvme0" || strings.TrimSpace(id.MN) != "QEMU NVMe Ctrl" || id.SubNQN != gonvmeNQN || id.CntrlTy != 1 || id.IOCCSZ < 4 {
		t.Errorf("nvme id-ctrl: sn %q mn %q subnqn %q cntrltype %d ioccsz %d; want gonvme0, QEMU NVMe Ctrl, %s, 1 (I/O controller), at least 4",
			id.SN, id.MN, id.SubNQN, id.CntrlTy, id.IOCCSZ, gonvmeNQN)
	}

	t.Run("fio", func(t *testing.T) { fioVerify(t, env, blk) })
	t.Run("gonvme host beside", func(t *testing.T) { gonvmeHostBeside(t, blk) })
	t.Run("discard", func(t *testing.T) { discardReadsZeros(t, env, blk) })
	t.Run("ext4", func(t *testing.T) { ext4RoundTrip(t, env, blk) })
	disconnect(t, env)
	if _, err := os.Stat(blk); err == nil {
		t.Errorf("%s still there after nvme disconnect", blk)
	}
}

// gonvmeHostBeside connects gonvme's own host (nvmectl over tcp://, with
// digests and without) to the same subsystem while the kernel initiator
// stays connected: what one host writes, the other reads back.
func gonvmeHostBeside(t *testing.T, blk string) {
	v := vm{t}
	addr := "tcp://127.0.0.1:4420/" + gonvmeNQN
	dir := t.TempDir()
	for i, digests := range [][]string{nil, {"--hdr-digest", "--data-digest"}} {
		size := 192 << 10 // R2T writes, reads past one C2HData of MDTS
		lba := int64(1<<20 + i*4096)
		data := tcpPattern(size, byte(40+i))
		v.ok(append([]string{"write", addr, "-s", fmt.Sprint(lba), "-z", fmt.Sprint(size), "-d", writeTemp(t, dir, data)}, digests...)...)
		got, err := directAt(blk, lba*512, size, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("digests %v: the kernel initiator reads other data than gonvme's host wrote (first difference at byte %d)", digests, firstDiff(got, data))
		}
		lba2 := lba + int64(size/512)
		data2 := tcpPattern(size, byte(50+i))
		if _, err := directAt(blk, lba2*512, 0, data2); err != nil {
			t.Fatal(err)
		}
		if got := v.ok(append([]string{"read", addr, "-s", fmt.Sprint(lba2), "-z", fmt.Sprint(size)}, digests...)...); got != string(data2) {
			t.Errorf("digests %v: gonvme's host reads other data than the kernel initiator wrote (first difference at byte %d)", digests, firstDiff([]byte(got), data2))
		}
	}
}

// fioVerify writes 48 MiB at random offsets in blocks of 4 KiB to 256 KiB
// (in-capsule and R2T writes; the initiator splits at the target's MDTS, 128 KiB,
// and each read comes back in one C2HData PDU), then
// reads it all back and checks each block's CRC32C and header.
func fioVerify(t *testing.T, env *vmtest.Env, blk string) {
	const size = 48 << 20
	out := env.Tool(t, "fio", "--name=nvmf-verify", "--filename="+blk, "--ioengine=io_uring", "--direct=1",
		"--rw=randwrite", "--bsrange=4k-256k", "--iodepth=16", fmt.Sprintf("--size=%d", size), "--offset=256m",
		"--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--randrepeat=0", "--output-format=json")
	var r fioResult
	if err := json.Unmarshal([]byte(out[strings.IndexByte(out, '{'):]), &r); err != nil {
		t.Fatalf("fio json: %v", err)
	}
	if len(r.Jobs) != 1 || r.Jobs[0].Error != 0 || r.Jobs[0].Write.IOBytes != size || r.Jobs[0].Read.IOBytes != size {
		t.Fatalf("fio: %+v; want one job, error 0, %d bytes written and verified", r.Jobs, size)
	}
}

// ext4RoundTrip makes ext4 on the first 128 MiB of blk, writes files,
// remounts (the page cache of the first mount is gone), reads them back,
// unmounts and runs e2fsck. (On the whole 1 GiB namespace mkfs and fsck
// took 11 s under TCG, most of it zeroing a 32 MiB journal; 128 MiB
// gets a 4 MiB one.)
func ext4RoundTrip(t *testing.T, env *vmtest.Env, blk string) {
	env.Tool(t, "mkfs.ext4", "-F", "-q", blk, "128M")
	dir := t.TempDir()
	mount := func() {
		t.Helper()
		if err := unix.Mount(blk, dir, "ext4", 0, ""); err != nil {
			t.Fatalf("mount %s: %v", blk, err)
		}
	}
	umount := func() {
		t.Helper()
		if err := unix.Unmount(dir, 0); err != nil {
			t.Fatalf("umount %s: %v", dir, err)
		}
	}
	mount()
	rng := rand.New(rand.NewPCG(18, uint64(time.Now().UnixNano())))
	sums := map[string][32]byte{}
	for i := range 12 {
		b := make([]byte, 1+rng.IntN(3<<20))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		name := filepath.Join(dir, "sub", fmt.Sprintf("file%02d", i))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
		sums[name] = sha256.Sum256(b)
	}
	umount()
	mount()
	for name, want := range sums {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("read back: %v", err)
			continue
		}
		if sha256.Sum256(b) != want {
			t.Errorf("%s: %d bytes read back differ from what was written", name, len(b))
		}
	}
	umount()
	env.Tool(t, "e2fsck", "-f", "-n", blk) // exit status 0: clean
}

// TestVMNVMfServeKilled: with the kernel initiator connected and writing,
// nvmectl serve is killed with SIGKILL. The initiator loses the connection
// and retries; when serve runs again it reconnects, the blocked writes
// complete (or fail, which the test counts), and what was written and
// flushed before the kill reads back intact.
func TestVMNVMfServeKilled(t *testing.T) {
	env := vmtest.Require(t, "nvmf")
	env.LoadFabrics(t)
	addr := env.BindVFIO(t, env.Controllers()[0])
	srv := startServeNVMf(t, addr)
	ctrl, blk := connect(t, env, "--reconnect-delay=1", "--ctrl-loss-tmo=600")

	// Flushed before the kill: 8 MiB at offset 0, written and fsynced.
	const flushed = 8 << 20
	want := make([]byte, flushed)
	rng := rand.New(rand.NewPCG(18, uint64(time.Now().UnixNano())))
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	f, err := os.OpenFile(blk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", blk, err)
	}
	f.Close()

	// Writes in flight during the kill: O_DIRECT 64 KiB writes past the
	// flushed region, one after the other, counted.
	var done, failed atomic.Int64
	stop := make(chan struct{})
	writer := make(chan error, 1)
	go func() { writer <- directWrites(blk, 64<<20, stop, &done, &failed) }()
	waitCount(t, &done, 50, time.Minute, "writes before the kill")

	env.ExpectKernelLog(t, `^nvme `+ctrl+`: (starting error recovery|failed to connect socket: -111|Failed reconnect attempt \d+|Reconnecting in \d+ seconds\.\.\.|Successfully reconnected \(\d+ attempts?\))$`,
		"nvmectl serve is killed with SIGKILL: the kernel initiator loses its connection and reconnects when serve runs again")
	env.ExpectKernelLog(t, `^nvme `+ctrl+`: queue \d+: timeout cid 0x[0-9a-f]+ type \d+ opcode 0x[0-9a-f]+ \(\w+\)$`,
		"commands in flight when serve is killed time out on the initiator")
	if err := srv.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Wait()
	before := done.Load()
	t.Logf("serve killed (SIGKILL) after %d writes", before)
	states := waitState(t, ctrl, func(s string) bool { return s != "live" }, time.Minute)
	t.Logf("controller %s after the kill: %s", ctrl, states)
	time.Sleep(3 * time.Second) // at least one failed reconnect attempt
	if n := done.Load(); n > before+16 {
		t.Errorf("%d writes completed with no target (before the kill %d)", n-before, before)
	}

	startServeNVMf(t, addr)
	states = waitState(t, ctrl, func(s string) bool { return s == "live" }, 2*time.Minute)
	t.Logf("controller %s after serve restarted: %s", ctrl, states)
	restarted := done.Load()
	waitCount(t, &done, restarted+50, 2*time.Minute, "writes after serve restarted")
	close(stop)
	if err := <-writer; err != nil {
		t.Fatal(err)
	}
	t.Logf("writes: %d completed (%d before the kill), %d failed with an error", done.Load(), before, failed.Load())

	got, err := directRead(blk, flushed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Fatalf("data flushed before the kill differs from byte %d on", i)
	}
	disconnect(t, env)
}

// waitCount waits until c reaches n.
func waitCount(t *testing.T, c *atomic.Int64, n int64, timeout time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for c.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d after %v", what, c.Load(), n, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitState waits until the controller's sysfs state satisfies ok and
// returns the states it saw on the way.
func waitState(t *testing.T, ctrl string, ok func(string) bool, timeout time.Duration) []string {
	t.Helper()
	var seen []string
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile("/sys/class/nvme/" + ctrl + "/state")
		s := strings.TrimSpace(string(b))
		if err != nil {
			s = "gone"
		}
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		if ok(s) {
			return seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("controller %s: states %v after %v", ctrl, seen, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alignedBuf returns n bytes of page-aligned memory for O_DIRECT.
func alignedBuf(n int) ([]byte, error) {
	return unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
}

// directWrites writes 64 KiB blocks with O_DIRECT from offset base on, in
// a 32 MiB window, until stop is closed, counting completed and failed
// writes.
func directWrites(blk string, base int64, stop <-chan struct{}, done, failed *atomic.Int64) error {
	fd, err := unix.Open(blk, unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", blk, err)
	}
	defer unix.Close(fd)
	const bs = 64 << 10
	buf, err := alignedBuf(bs)
	if err != nil {
		return err
	}
	defer unix.Munmap(buf)
	for i := int64(0); ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		buf[0], buf[1] = byte(i), byte(i>>8)
		if _, err := unix.Pwrite(fd, buf, base+(i%512)*bs); err != nil {
			failed.Add(1)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		done.Add(1)
	}
}

// directRead reads n bytes from offset 0 with O_DIRECT (past the page
// cache: from the target).
func directRead(blk string, n int) ([]byte, error) {
	fd, err := unix.Open(blk, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", blk, err)
	}
	defer unix.Close(fd)
	buf, err := alignedBuf(n)
	if err != nil {
		return nil, err
	}
	defer unix.Munmap(buf)
	for off := 0; off < n; {
		m, err := unix.Pread(fd, buf[off:], int64(off))
		if err != nil {
			return nil, fmt.Errorf("read %s at %d: %w", blk, off, err)
		}
		if m == 0 {
			return nil, fmt.Errorf("read %s: end at %d", blk, off)
		}
		off += m
	}
	return append([]byte(nil), buf...), nil
}

// discardReadsZeros writes a pattern over 1 MiB, discards the middle
// 512 KiB with the BLKDISCARD ioctl - the kernel initiator sends it as
// Dataset Management with Deallocate and its 4 KiB range buffer - and
// reads the 1 MiB back past the page cache: the discarded blocks as the
// namespace's DLFEAT says deallocated blocks read (QEMU's, with
// discard=unmap under it, reports zeros), the others as written.
func discardReadsZeros(t *testing.T, env *vmtest.Env, blk string) {
	var ns struct {
		DLFEAT int `json:"dlfeat"`
	}
	if err := json.Unmarshal([]byte(env.Tool(t, "nvme", "id-ns", blk, "-o", "json")), &ns); err != nil {
		t.Fatalf("nvme id-ns -o json: %v", err)
	}
	if ns.DLFEAT&7 != 1 {
		t.Fatalf("DLFEAT %#x: want deallocated blocks to read as zeros (001b), as QEMU's namespace reports", ns.DLFEAT)
	}
	mdb, err := os.ReadFile("/sys/block/" + filepath.Base(blk) + "/queue/discard_max_bytes")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(mdb)) == "0" {
		t.Fatalf("%s: discard_max_bytes 0: the initiator sees no Dataset Management", blk)
	}

	const base, size = 512 << 20, 1 << 20
	const dOff, dLen = base + 256<<10, 512 << 10
	fd, err := unix.Open(blk, unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", blk, err)
	}
	defer unix.Close(fd)
	buf, err := alignedBuf(size)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	for i := range buf {
		buf[i] = byte(i) ^ byte(i>>9) | 1 // no zero byte: a missed read shows
	}
	want := append([]byte(nil), buf...)
	clear(want[dOff-base : dOff-base+dLen])
	if n, err := unix.Pwrite(fd, buf, base); err != nil || n != size {
		t.Fatalf("write %d bytes at %d: %d, %v", size, base, n, err)
	}
	rng := [2]uint64{dOff, dLen}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKDISCARD, uintptr(unsafe.Pointer(&rng))); errno != 0 {
		t.Fatalf("BLKDISCARD [%d, +%d): %v", dOff, dLen, errno)
	}
	clear(buf)
	if n, err := unix.Pread(fd, buf, base); err != nil || n != size {
		t.Fatalf("read %d bytes at %d: %d, %v", size, base, n, err)
	}
	for off := 0; off < size; off += 4096 {
		if !bytes.Equal(buf[off:off+4096], want[off:off+4096]) {
			discarded := base+off >= dOff && base+off < dOff+dLen
			t.Errorf("4 KiB at %d (discarded %t): read back differs", base+off, discarded)
		}
	}
}
