package spec

import (
	"encoding/binary"
	"testing"
)

// The fuzz targets feed device data to every parser. Each must return
// either a value or an error, never panic, and never return more than the
// input can describe.

func FuzzParseIdentifyController(f *testing.F) {
	f.Add(qemuIdentifyController())
	f.Add(make([]byte, IdentifySize))
	f.Add(make([]byte, 100))
	all := make([]byte, IdentifySize)
	for i := range all {
		all[i] = 0xff
	}
	f.Add(all)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseIdentifyController(b)
		if err != nil {
			if len(b) >= IdentifySize {
				t.Fatalf("full-size input rejected: %v", err)
			}
			return
		}
		if len(b) < IdentifySize {
			t.Fatalf("accepted %d bytes", len(b))
		}
		if len(c.SN) > 20 || len(c.MN) > 40 || len(c.FR) > 8 || len(c.SUBNQN) > 256 {
			t.Fatalf("string longer than its field: %q %q %q", c.SN, c.MN, c.FR)
		}
		if c.VID != binary.LittleEndian.Uint16(b) || c.MDTS != b[77] || c.NN != binary.LittleEndian.Uint32(b[516:]) {
			t.Fatal("field at a wrong offset")
		}
		for _, page := range []int{4096, 1 << 27, 0, 12345} {
			n, unl := c.MaxTransfer(page)
			if unl && n != 0 || !unl && (n <= 0 || n > maxTransferLimit) {
				t.Fatalf("MaxTransfer(%d) with MDTS %d = %d, %t", page, c.MDTS, n, unl)
			}
		}
		if len(c.PowerStates()) != min(int(c.NPSS)+1, 32) {
			t.Fatalf("%d power states for NPSS %d", len(c.PowerStates()), c.NPSS)
		}
		_ = c.TNVMCAP.String()
		_ = c.VER.String()
	})
}

func FuzzParseIdentifyNamespace(f *testing.F) {
	f.Add(namespaceBytes(262144, 0x04, LBAFormat{0, 9, 0}, LBAFormat{8, 9, 0}, LBAFormat{0, 12, 0}, LBAFormat{0, 12, 0}, LBAFormat{0, 12, 0}))
	f.Add(namespaceBytes(1, 0x7f, LBAFormat{0, 255, 3}))
	f.Add(make([]byte, 384))
	f.Add(make([]byte, 10))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseIdentifyNamespace(b)
		if err != nil {
			if len(b) >= 384 {
				t.Fatalf("full-size input rejected: %v", err)
			}
			return
		}
		if i := n.FormatIndex(); i < 0 || i > 63 {
			t.Fatalf("format index %d", i)
		}
		if n.NumFormats() < 1 || n.NumFormats() > 64 {
			t.Fatalf("NumFormats %d", n.NumFormats())
		}
		size, err := n.BlockSize()
		if err == nil && (size < 512 || size > 1<<31 || size&(size-1) != 0) {
			t.Fatalf("BlockSize %d accepted", size)
		}
		if err == nil && n.FormatIndex() >= n.NumFormats() {
			t.Fatal("format beyond NLBAF accepted")
		}
		_ = n.MetadataSize()
		_ = n.NVMCAP.String()
	})
}

func FuzzParseNamespaceList(f *testing.F) {
	f.Add(nsList(1, 2, 3))
	f.Add(nsList(3, 2, 1))
	f.Add(nsList(1, NSIDAll))
	f.Add([]byte{1, 0, 0})
	f.Add(make([]byte, 8192))
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := ParseNamespaceList(b)
		if err != nil {
			return
		}
		if len(ids) > MaxNamespaceListEntries || len(ids) > len(b)/4 {
			t.Fatalf("%d ids from %d bytes", len(ids), len(b))
		}
		for i, id := range ids {
			if id == 0 || id == NSIDAll || (i > 0 && id <= ids[i-1]) {
				t.Fatalf("bad list accepted: %v", ids)
			}
		}
	})
}

func FuzzParseNamespaceDescriptors(f *testing.F) {
	var seed []byte
	seed = append(seed, descriptor(NIDTEUI64, []byte{1, 2, 3, 4, 5, 6, 7, 8})...)
	seed = append(seed, descriptor(NIDTNGUID, make([]byte, 16))...)
	seed = append(seed, descriptor(NIDTCSI, []byte{2})...)
	f.Add(seed)
	f.Add([]byte{NIDTUUID, 255, 0, 0, 1})
	f.Add([]byte{0x7, 3, 0, 0, 1, 2, 3})
	f.Add(make([]byte, IdentifySize))
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := ParseNamespaceDescriptors(b)
		if err != nil {
			return
		}
		total := 0
		for _, d := range ds {
			if d.Type == 0 || len(d.ID) == 0 {
				t.Fatalf("empty descriptor returned: %+v", d)
			}
			if want := nidtLen(d.Type); want != 0 && len(d.ID) != want {
				t.Fatalf("type %d with %d-byte id accepted", d.Type, len(d.ID))
			}
			total += 4 + len(d.ID)
			_ = d.String()
		}
		if total > len(b) || total > IdentifySize {
			t.Fatalf("descriptors describe %d bytes of a %d-byte buffer", total, len(b))
		}
	})
}

// FuzzParseLogs feeds the same bytes to every log page parser.
func FuzzParseLogs(f *testing.F) {
	f.Add(make([]byte, 64))
	f.Add(make([]byte, 512))
	f.Add(make([]byte, 4096))
	e := make([]byte, 128)
	binary.LittleEndian.PutUint64(e, 1)
	binary.LittleEndian.PutUint16(e[12:], 0xffff)
	f.Add(e)
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if es, err := ParseErrorLog(b); err == nil {
			if len(es) > len(b)/ErrorLogEntrySize {
				t.Fatalf("%d error entries from %d bytes", len(es), len(b))
			}
			for _, e := range es {
				if e.ErrorCount == 0 {
					t.Fatal("empty error entry returned")
				}
				_ = e.Status.String()
			}
		} else if len(b) >= ErrorLogEntrySize && len(b)%ErrorLogEntrySize == 0 {
			t.Fatalf("valid-size error log rejected: %v", err)
		}
		if s, err := ParseSMARTLog(b); err == nil {
			_ = s.DataUnitsRead.String()
		} else if len(b) >= SMARTLogSize {
			t.Fatalf("full-size smart log rejected: %v", err)
		}
		if fw, err := ParseFirmwareSlotLog(b); err == nil {
			for _, s := range fw.FRS {
				if len(s) > 8 {
					t.Fatalf("firmware revision %q longer than 8", s)
				}
			}
		}
		if c, err := ParseCommandEffectsLog(b); err == nil {
			_ = c.Admin[0].CSE()
		}
		if len(b) >= 4 {
			ev := AsyncEvent(binary.LittleEndian.Uint32(b))
			_ = ev.String()
			st := Status(binary.LittleEndian.Uint16(b))
			if st.String() == "" || st.Name() == "" {
				t.Fatal("empty status name")
			}
		}
	})
}
