package fabrics

import (
	"encoding/binary"
	"testing"
)

// The discovery log and the Connect data come from the network. The parsers
// must return a value or an error, never panic, and never return more than
// the input holds.

func FuzzParseDiscoveryLog(f *testing.F) {
	e := DiscoveryLogEntry{TRType: TRTypeTCP, AdrFam: AdrFamIPv4, SubType: SubTypeNVM}
	e.SetStrings("4420", "127.0.0.1", "nqn.2024-01.io.example:a")
	b := make([]byte, 2048)
	binary.LittleEndian.PutUint64(b[8:], 1)
	e.MarshalTo(b[1024:])
	f.Add(b)
	f.Add(b[:1024])
	f.Add(make([]byte, 10))
	f.Fuzz(func(t *testing.T, b []byte) {
		log, err := ParseDiscoveryLog(b)
		if err != nil {
			return
		}
		if len(log.Entries) != int(log.NumRec) || (1+len(log.Entries))*DiscoveryLogEntrySize > len(b) {
			t.Fatalf("%d entries from %d bytes (NUMREC %d)", len(log.Entries), len(b), log.NumRec)
		}
		for i := range log.Entries {
			e := &log.Entries[i]
			if len(e.TRAddrString()) > 256 || len(e.TRSvcIDString()) > 32 || len(e.SubNQNString()) > 256 {
				t.Fatal("string longer than its field")
			}
			_ = TRTypeName(e.TRType) + AdrFamName(e.AdrFam) + SubTypeName(e.SubType) + TReqName(e.TReq)
		}
	})
}

func FuzzParseConnectData(f *testing.F) {
	d, _ := NewConnectData([16]byte{1}, CNTLIDDynamic, DiscoveryNQN, UUIDNQN([16]byte{2}))
	b := make([]byte, ConnectDataSize)
	d.MarshalTo(b)
	f.Add(b)
	f.Add(b[:100])
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseConnectData(b)
		if err != nil {
			return
		}
		if len(b) < ConnectDataSize || len(d.SubsystemNQN()) > 255 || len(d.HostNQNString()) > 255 {
			t.Fatal("accepted more than the input holds")
		}
		if d.CNTLID != binary.LittleEndian.Uint16(b[16:]) {
			t.Fatal("CNTLID at a wrong offset")
		}
		_ = CheckNQN(d.SubsystemNQN())
	})
}
