package nvme_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// TestNamespaceManagement: create, attach, write and read back, detach,
// delete, on the fake (QEMU 7.2 implements only the attachment).
func TestNamespaceManagement(t *testing.T) {
	r := newRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 2048}}}, nil)
	c := r.ctrl
	id, err := c.CreateNamespace(nvme.NamespaceSpec{NSZE: 1024, NCAP: 1024, FLBAS: 1})
	if err != nil {
		t.Fatal(err)
	}
	if id != 2 {
		t.Errorf("created namespace %d, want 2 (the first free ID)", id)
	}
	if slices.Contains(c.Namespaces(), id) {
		t.Fatalf("namespace %d active before it was attached: %v", id, c.Namespaces())
	}
	me := []uint16{c.Identify().CNTLID}
	if err := c.AttachNamespace(id, me); err != nil {
		t.Fatal(err)
	}
	ns := r.ns(id)
	if ns.BlockSize() != 4096 || ns.Blocks() != 1024 {
		t.Errorf("namespace %d: %d blocks of %d, want 1024 of 4096", id, ns.Blocks(), ns.BlockSize())
	}
	qp := r.qp(0)
	w, rd := r.buf(8192), r.buf(8192)
	pat(w, 7)
	if err := ns.WriteAt(qp, w, 100); err != nil {
		t.Fatal(err)
	}
	if err := ns.ReadAt(qp, rd, 100); err != nil {
		t.Fatal(err)
	}
	checkData(t, "new namespace", rd, w)
	var se *nvme.StatusError
	if err := c.AttachNamespace(id, me); !errors.As(err, &se) || se.SC != spec.SCNamespaceAlreadyAttached {
		t.Errorf("attaching twice: %v", err)
	}
	if err := c.DetachNamespace(id, me); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(c.Namespaces(), id) {
		t.Errorf("namespace %d still active after detach: %v", id, c.Namespaces())
	}
	if err := c.DeleteNamespace(id); err != nil {
		t.Fatal(err)
	}
	if err := c.AttachNamespace(id, me); !errors.As(err, &se) || se.SC != spec.SCInvalidNamespace {
		t.Errorf("attaching a deleted namespace: %v", err)
	}
	if _, err := c.CreateNamespace(nvme.NamespaceSpec{NSZE: 1 << 40, NCAP: 1 << 40}); !errors.As(err, &se) || se.SC != spec.SCNamespaceInsufficientCapacity {
		t.Errorf("creating 512 TiB: %v", err)
	}
	if _, err := c.CreateNamespace(nvme.NamespaceSpec{NSZE: 8, NCAP: 9}); !errors.Is(err, nvme.ErrInvalid) {
		t.Errorf("ncap > nsze: %v", err)
	}
}

func TestFirmwareSelfTestSanitize(t *testing.T) {
	r := newRig(t, nvmetest.Config{Namespaces: []nvmetest.NSConfig{{Blocks: 2048}}}, nil)
	c := r.ctrl
	img := make([]byte, 3*4096+512)
	copy(img, "NEWFW001")
	if err := c.FirmwareDownload(img[:4096], 0); err != nil {
		t.Fatal(err)
	}
	if err := c.FirmwareDownload(img[4096:], 4096); err != nil {
		t.Fatal(err)
	}
	var se *nvme.StatusError
	if _, err := c.FirmwareCommit(1, nvme.FirmwareReplace, false); !errors.As(err, &se) || se.SC != spec.SCInvalidFirmwareSlot {
		t.Errorf("commit to read-only slot 1: %v", err)
	}
	if _, err := c.FirmwareCommit(2, nvme.FirmwareReplaceActivate, false); !errors.As(err, &se) || se.SC != spec.SCFirmwareNeedsConventionalReset {
		t.Errorf("commit and activate at reset: %v, want Firmware Activation Requires Conventional Reset", err)
	}
	if err := c.FirmwareDownload(img[:6], 0); !errors.Is(err, nvme.ErrInvalid) {
		t.Errorf("6-byte piece: %v", err)
	}

	if err := c.DeviceSelfTest(1, nvme.SelfTestShort); err != nil {
		t.Fatal(err)
	}
	l, err := c.SelfTestLog()
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Results) != 1 || l.Results[0].Code != nvme.SelfTestShort || l.Results[0].Result != 0 || l.Results[0].NSID != 1 {
		t.Errorf("self-test log %+v", l)
	}
	if err := c.DeviceSelfTest(0, 7); !errors.Is(err, nvme.ErrInvalid) {
		t.Errorf("self-test code 7: %v", err)
	}

	qp := r.qp(0)
	ns := r.ns(1)
	w := r.buf(512)
	pat(w, 3)
	if err := ns.WriteAt(qp, w, 5); err != nil {
		t.Fatal(err)
	}
	st, err := c.SanitizeStatusLog()
	if err != nil || st.Status&7 != 0 {
		t.Fatalf("sanitize status before: %+v %v", st, err)
	}
	if err := c.Sanitize(nvme.SanitizeBlockErase, nvme.SanitizeOptions{}); err != nil {
		t.Fatal(err)
	}
	if st, err = c.SanitizeStatusLog(); err != nil || st.Status&7 != 1 || st.CDW10&7 != nvme.SanitizeBlockErase {
		t.Errorf("sanitize status after: %+v %v", st, err)
	}
	if err := ns.ReadAt(qp, w, 5); err != nil || !bytes.Equal(w, make([]byte, 512)) {
		t.Errorf("block 5 after sanitize: %v, zero %v", err, bytes.Equal(w, make([]byte, 512)))
	}
}

func FuzzParseSelfTestLog(f *testing.F) {
	b := make([]byte, nvme.SelfTestLogSize)
	b[4] = 0x10
	f.Add(b)
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := nvme.ParseSelfTestLog(b)
		if err != nil {
			return
		}
		if len(l.Results) > 20 {
			t.Fatalf("%d results", len(l.Results))
		}
		for _, r := range l.Results {
			if r.Result == 0xf || r.Code > 0xf {
				t.Fatalf("result %+v", r)
			}
		}
	})
}

func FuzzParseSanitizeStatus(f *testing.F) {
	b := make([]byte, nvme.SanitizeStatusLogSize)
	binary.LittleEndian.PutUint16(b, 0xffff)
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := nvme.ParseSanitizeStatus(b)
		if err == nil && binary.LittleEndian.Uint16(b) != s.Progress {
			t.Fatalf("progress %d from %x", s.Progress, b[:2])
		}
	})
}
