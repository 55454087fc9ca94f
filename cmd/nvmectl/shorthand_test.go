package main

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
)

// TestNvmeCLIShorthands: the short flags nvme-cli users type work.
func TestNvmeCLIShorthands(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{VWC: true, Namespaces: []nvmetest.NSConfig{{Blocks: 4096}}})
	if g := r.jsonOf("get-feature", fakeAddr, "-f", "4", "-c", "0"); g["feature_id"] != 4.0 {
		t.Errorf("get-feature -c: %v", g)
	}
	s := r.jsonOf("smart-log", fakeAddr, "-n", "0xffffffff")
	if _, ok := s["critical_warning"]; !ok {
		t.Errorf("smart-log -n 0xffffffff: %v", s)
	}
	if out := r.ok("smart-log", fakeAddr); !strings.Contains(out, "namespace-id:ffffffff") {
		t.Errorf("smart-log header: %q", out)
	}
	r.ok("dsm", fakeAddr, "--ad", "-s", "0,8", "-b", "1,1")
	if out := r.ok("format", fakeAddr, "-n", "1", "-s", "1", "--force"); !strings.Contains(out, "format: Success") {
		t.Errorf("format -s 1: %q", out)
	}
	if _, _, errs := r.run("set-feature", fakeAddr, "-f", "6", "-v", "1", "-s"); !strings.Contains(errs, "Saveable") {
		t.Errorf("set-feature -s did not ask to save: %q", errs)
	}
}

// pieceReader yields n bytes of a pattern and records the largest read.
type pieceReader struct {
	n, off, most int
}

func (p *pieceReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	p.most = max(p.most, len(b))
	k := min(len(b), p.n-p.off)
	for i := range b[:k] {
		b[i] = byte((p.off + i) / 512)
	}
	p.off += k
	return k, nil
}

// TestWriteStreams: write reads its input in pieces of the largest
// transfer (128 KiB on the fake), not the whole transfer at once, so a
// transfer of any size needs one piece of memory; and a pipe that ends
// early says which blocks were written.
func TestWriteStreams(t *testing.T) {
	r := newFakeRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 1 << 14}}})
	in := &pieceReader{n: 4 << 20}
	r.a.stdin = in
	r.ok("write", fakeAddr, "-z", strconv.Itoa(4<<20))
	if in.off != 4<<20 || in.most != 128<<10 {
		t.Errorf("read %d bytes of input, at most %d at a time; want 4 MiB in pieces of 128 KiB", in.off, in.most)
	}
	if got := r.ok("read", fakeAddr, "-s", "8191"); got != string(bytes.Repeat([]byte{8191 & 0xff}, 512)) {
		t.Error("the last block does not hold what was written")
	}
	r.a.stdin = &pieceReader{n: 300 << 10} // 2 pieces and a half of a 4 MiB write
	code, _, errs := r.run("write", fakeAddr, "-s", "0", "-z", strconv.Itoa(4<<20))
	if code != exitDevice || !strings.Contains(errs, "standard input ended after 307200 of 4194304 bytes: blocks 0 to 511 were sent") {
		t.Errorf("short pipe: exit %d, %q", code, errs)
	}
	r.a.stdin = &pieceReader{n: 1000}
	code, _, errs = r.run("write", fakeAddr, "-s", "0", "-z", "4096")
	if code != exitUsage || !strings.Contains(errs, "holds 1000 bytes, 4096 needed") || !strings.Contains(errs, "nothing was sent") {
		t.Errorf("pipe short before the first piece: exit %d, %q", code, errs)
	}
}
