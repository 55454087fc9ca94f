package tcptest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
)

// dialer returns connections to tgt: ends of net.Pipe, or TCP connections
// to a listener on 127.0.0.1.
type dialer func(t *testing.T) net.Conn

// pipeDialer's connections are closed when the test ends, and the test
// then waits for the target to end every Serve: a host that closes ends its
// connection on the target too.
func pipeDialer(t *testing.T, tgt *Target) dialer {
	t.Cleanup(tgt.Wait) // runs after the connections are closed
	return func(t *testing.T) net.Conn {
		h, c := net.Pipe()
		tgt.Go(c)
		t.Cleanup(func() { h.Close() })
		return h
	}
}

func tcpDialer(t *testing.T, tgt *Target) dialer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tgt.Listen(l)
	t.Cleanup(func() { l.Close(); tgt.Wait() })
	return func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed ^ byte(i) ^ byte(i>>9)
	}
	return b
}

// bringUp connects an admin queue and enables the controller, as a host
// does: Connect, Property Get CAP and VS, Property Set CC.EN, Property Get
// CSTS until RDY.
func bringUp(t *testing.T, dial dialer, hd, dd bool, subnqn string, cattr uint8) (*client, uint16) {
	return bringUpPDA(t, dial, hd, dd, 0, subnqn, cattr)
}

func bringUpPDA(t *testing.T, dial dialer, hd, dd bool, hpda uint8, subnqn string, cattr uint8) (*client, uint16) {
	admin := dial(t)
	t.Cleanup(func() { admin.Close() })
	a := dialPDA(t, admin, hd, dd, hpda)
	cqe, err := a.connect(0, fabrics.CNTLIDDynamic, subnqn, cattr)
	if err != nil || !cqe.StatusField().Success() {
		t.Fatalf("connect admin: %v %v", err, cqe.StatusField())
	}
	cntlid := fabrics.ConnectResponse(cqe.DW0).CNTLID()
	if cntlid == 0 || cntlid == fabrics.CNTLIDDynamic {
		t.Fatalf("cntlid %#x", cntlid)
	}
	if c := spec.CAP(a.propGet(spec.RegCAP)); c.MQES() != 127 || !c.CQR() || c.CSS()&1 == 0 {
		t.Errorf("CAP %v", c)
	}
	if v := spec.VS(a.propGet(spec.RegVS)); v.Major() != 2 {
		t.Errorf("VS %v", v)
	}
	cc := spec.CC(0).WithIOSQES(6).WithIOCQES(4).WithEN(true)
	a.propSet(spec.RegCC, uint64(cc))
	if spec.CC(a.propGet(spec.RegCC)) != cc {
		t.Error("CC did not stick")
	}
	if cs := spec.CSTS(a.propGet(spec.RegCSTS)); !cs.RDY() {
		t.Fatalf("CSTS %#x not ready", uint32(cs))
	}
	return a, cntlid
}

func dial2(t *testing.T, c net.Conn, hd, dd bool) *client { return dial(t, c, hd, dd) }

// The whole host side of the protocol against the loopback target: every
// PDU type, digests off and on, over a pipe and over TCP, reads completed
// by CapsuleResp and by the SUCCESS flag.
func TestEndToEnd(t *testing.T) {
	for _, transport := range []string{"pipe", "tcp"} {
		for _, dg := range []struct {
			hd, dd     bool
			hpda, cpda uint8 // data alignment each side asks for
		}{{false, false, 0, 0}, {true, false, 0, 0}, {true, true, 0, 0}, {false, true, 7, 31}, {true, true, 31, 3}} {
			for _, success := range []bool{false, true} {
				name := fmt.Sprintf("%s/hdgst=%t/ddgst=%t/hpda=%d/cpda=%d/success=%t", transport, dg.hd, dg.dd, dg.hpda, dg.cpda, success)
				t.Run(name, func(t *testing.T) {
					tgt := New(Config{Success: success, CPDA: dg.cpda})
					dial := pipeDialer(t, tgt)
					if transport == "tcp" {
						dial = tcpDialer(t, tgt)
					}
					var cattr uint8
					if success {
						cattr = fabrics.CAttrDisableSQFlow
					}
					endToEnd(t, tgt, dial, dg.hd, dg.dd, dg.hpda, cattr)
					if errs := tgt.Errors(); len(errs) != 0 {
						t.Errorf("the target found host errors: %v", errs)
					}
				})
			}
		}
	}
}

func endToEnd(t *testing.T, tgt *Target, dial dialer, hd, dd bool, hpda, cattr uint8) {
	cfg := tgt.Config()
	a, cntlid := bringUpPDA(t, dial, hd, dd, hpda, cfg.SubNQN, cattr)

	idc := make([]byte, spec.IdentifySize)
	a.ok(spec.Command{Opcode: uint8(spec.AdminIdentify), CDW10: spec.CNSController}, nil, idc)
	ic, err := spec.ParseIdentifyController(idc)
	if err != nil {
		t.Fatal(err)
	}
	if ic.SUBNQN != cfg.SubNQN || ic.CNTLID != cntlid || ic.CNTRLTYPE != spec.CtrlTypeIO || ic.MDTS != 5 || ic.NN != 1 {
		t.Errorf("identify controller: subnqn %q cntlid %d type %d mdts %d nn %d", ic.SUBNQN, ic.CNTLID, ic.CNTRLTYPE, ic.MDTS, ic.NN)
	}
	inCapsule := int(ic.IOCCSZ)*16 - spec.CommandSize
	if inCapsule != 4096 {
		t.Errorf("IOCCSZ %d", ic.IOCCSZ)
	}
	idn := make([]byte, spec.IdentifySize)
	a.ok(spec.Command{Opcode: uint8(spec.AdminIdentify), NSID: 1, CDW10: spec.CNSNamespace}, nil, idn)
	ns, err := spec.ParseIdentifyNamespace(idn)
	if err != nil {
		t.Fatal(err)
	}
	if bs, err := ns.BlockSize(); err != nil || bs != 512 || ns.NSZE != 2048 {
		t.Errorf("identify namespace: %d %v nsze %d", bs, err, ns.NSZE)
	}
	cqe := a.ok(spec.Command{Opcode: uint8(spec.AdminSetFeatures), CDW10: spec.FeatureNumberOfQueues, CDW11: 0}, nil, nil)
	if cqe.DW0 != 0 {
		t.Errorf("number of queues %#x", cqe.DW0)
	}
	a.ok(spec.Command{Opcode: uint8(spec.AdminKeepAlive)}, nil, nil)

	// An I/O queue on its own connection.
	ioc := dial(t)
	defer ioc.Close()
	q := dialPDA(t, ioc, hd, dd, hpda)
	q.inCapsule = inCapsule
	if cqe, err := q.connect(1, cntlid, cfg.SubNQN, cattr); err != nil || !cqe.StatusField().Success() {
		t.Fatalf("connect io: %v %v", err, cqe.StatusField())
	}

	small := pattern(4096, 1) // in-capsule
	q.ok(rw(spec.IOWrite, 0, 8), small, nil)
	big := pattern(100<<10, 2) // 100 KiB: four R2Ts of 32 KiB at most, H2CData of 8 KiB
	q.ok(rw(spec.IOWrite, 8, 200), big, nil)
	got := make([]byte, len(small))
	tgt.ReadAt(got, 0)
	if !bytes.Equal(got, small) {
		t.Error("in-capsule write did not land")
	}
	got = make([]byte, len(big))
	tgt.ReadAt(got, 8*512)
	if !bytes.Equal(got, big) {
		t.Error("R2T write did not land")
	}
	read := make([]byte, 128<<10) // 8 C2HData PDUs of 16 KiB
	q.ok(rw(spec.IORead, 0, 256), nil, read)
	want := append(append([]byte(nil), small...), big...)
	if !bytes.Equal(read[:len(want)], want) {
		t.Error("read back differs")
	}
	q.ok(spec.Command{Opcode: uint8(spec.IOFlush), NSID: 1}, nil, nil)

	// Errors the controller reports as a status, not a TermReq.
	cqe, err = q.do(rw(spec.IORead, 2040, 16), nil, make([]byte, 16*512))
	if err != nil || cqe.StatusField().Code() != spec.MakeStatus(spec.SCTGeneric, spec.SCLBAOutOfRange) {
		t.Errorf("read past the end: %v %v", err, cqe.StatusField())
	}
	cqe, err = q.do(spec.Command{Opcode: 0x7e, NSID: 1}, nil, nil)
	if err != nil || cqe.StatusField().Code() != spec.MakeStatus(spec.SCTGeneric, spec.SCInvalidOpcode) {
		t.Errorf("unknown opcode: %v %v", err, cqe.StatusField())
	}

	// Disconnect the I/O queue, then shut the controller down.
	q.ok((&fabrics.DisconnectCommand{}).SQE(), nil, nil)
	a.propSet(spec.RegCC, uint64(spec.CC(0).WithIOSQES(6).WithIOCQES(4).WithEN(true).WithSHN(1)))
	if cs := spec.CSTS(a.propGet(spec.RegCSTS)); cs.SHST() != spec.SHSTComplete {
		t.Errorf("CSTS %#x after shutdown", uint32(cs))
	}
}

func TestDiscovery(t *testing.T) {
	tgt := New(Config{Addr: "127.0.0.1", Port: "4420"})
	a, _ := bringUp(t, pipeDialer(t, tgt), false, false, fabrics.DiscoveryNQN, 0)
	idc := make([]byte, spec.IdentifySize)
	a.ok(spec.Command{Opcode: uint8(spec.AdminIdentify), CDW10: spec.CNSController}, nil, idc)
	if ic, err := spec.ParseIdentifyController(idc); err != nil || ic.CNTRLTYPE != spec.CtrlTypeDiscovery {
		t.Fatalf("identify: %v", err)
	}
	getLog := func(n int) []byte {
		b := make([]byte, n)
		cdw10, cdw11 := spec.GetLogPageDwords(spec.LogDiscovery, 0, false, uint32(n))
		a.ok(spec.Command{Opcode: uint8(spec.AdminGetLogPage), NSID: 0, CDW10: cdw10, CDW11: cdw11}, nil, b)
		return b
	}
	h, n, err := fabrics.ParseDiscoveryLogHeader(getLog(fabrics.DiscoveryLogEntrySize))
	if err != nil || h.NumRec != 1 {
		t.Fatalf("header %+v %v", h, err)
	}
	log, err := fabrics.ParseDiscoveryLog(getLog(n))
	if err != nil || len(log.Entries) != 1 || log.GenCtr != h.GenCtr {
		t.Fatalf("log %+v %v", log, err)
	}
	e := log.Entries[0]
	if e.TRType != fabrics.TRTypeTCP || e.AdrFam != fabrics.AdrFamIPv4 || e.SubType != fabrics.SubTypeNVM ||
		e.TRAddrString() != "127.0.0.1" || e.TRSvcIDString() != "4420" || e.SubNQNString() != tgt.Config().SubNQN {
		t.Errorf("entry %+v", e)
	}
	if errs := tgt.Errors(); len(errs) != 0 {
		t.Errorf("host errors: %v", errs)
	}
}

// A Connect the target refuses comes back as Connect Invalid Parameters
// naming the field.
func TestConnectRefused(t *testing.T) {
	tgt := New(Config{})
	dial := pipeDialer(t, tgt)
	c := dial(t)
	defer c.Close()
	cl := dial2(t, c, false, false)
	cqe, err := cl.connect(0, fabrics.CNTLIDDynamic, "nqn.2024-01.io.example:nobody", 0)
	st := cqe.StatusField()
	off, inData := fabrics.ConnectResponse(cqe.DW0).InvalidParameter()
	if err != nil || st.SCT() != spec.SCTCommandSpecific || st.SC() != fabrics.SCConnectInvalidParams || off != fabrics.ConnectOffSubNQN || !inData {
		t.Errorf("wrong subsystem: %v %v %#x %v", err, fabrics.StatusName(st), off, inData)
	}
	if fabrics.StatusName(st) != "Connect Invalid Parameters" {
		t.Errorf("status name %q", fabrics.StatusName(st))
	}
	// An I/O queue for a controller that does not exist.
	c2 := dial(t)
	defer c2.Close()
	cl2 := dial2(t, c2, false, false)
	cqe, err = cl2.connect(1, 42, tgt.Config().SubNQN, 0)
	off, inData = fabrics.ConnectResponse(cqe.DW0).InvalidParameter()
	if err != nil || cqe.StatusField().SC() != fabrics.SCConnectInvalidParams || off != fabrics.ConnectOffCNTLID || !inData {
		t.Errorf("unknown controller: %v %#x %v", err, off, inData)
	}
	if n := len(tgt.Errors()); n != 2 {
		t.Errorf("%d refusals recorded: %v", n, tgt.Errors())
	}
}

// A host that breaks the protocol gets a C2HTermReq naming the fault, and
// the connection ends.
func TestHostProtocolErrors(t *testing.T) {
	cases := []struct {
		name string
		// misbehave sends something wrong on an established I/O queue.
		misbehave func(t *testing.T, q *client)
		fes       pdu.FES
		fei       uint32
	}{
		{"h2c data with a wrong ttag", func(t *testing.T, q *client) {
			q.cid++
			cmd := rw(spec.IOWrite, 0, 64)
			cmd.CID, cmd.Flags = q.cid, spec.FlagPSDTSGL
			cmd.SetSGL1(fabrics.TransportSGL(64 * 512))
			q.send(q.w.AppendCapsuleCmd(nil, &cmd, 0))
			p, err := q.next()
			if err != nil || p.Type != pdu.TypeR2T {
				t.Fatalf("r2t: %v", err)
			}
			d := make([]byte, 4096)
			q.send(q.w.AppendH2CData(nil, cmd.CID, p.Transfer.TTag+1, 0, len(d), false), d)
		}, pdu.FESInvalidHeaderField, 10},
		{"h2c data nobody asked for", func(t *testing.T, q *client) {
			d := make([]byte, 512)
			q.send(q.w.AppendH2CData(nil, 77, 1, 0, len(d), true), d)
		}, pdu.FESInvalidHeaderField, 8},
		{"h2c data past the r2t", func(t *testing.T, q *client) {
			q.cid++
			cmd := rw(spec.IOWrite, 0, 8)
			cmd.CID, cmd.Flags = q.cid, spec.FlagPSDTSGL
			cmd.SetSGL1(fabrics.TransportSGL(8 * 512))
			q.send(q.w.AppendCapsuleCmd(nil, &cmd, 0))
			p, _ := q.next()
			d := make([]byte, 8192)
			q.send(q.w.AppendH2CData(nil, cmd.CID, p.Transfer.TTag, 0, len(d), true), d)
		}, pdu.FESDataOutOfRange, 16},
		{"header digest not negotiated", func(t *testing.T, q *client) {
			cmd := spec.Command{Opcode: uint8(spec.IOFlush), NSID: 1, Flags: spec.FlagPSDTSGL}
			w := pdu.Writer{HeaderDigest: true}
			q.send(w.AppendCapsuleCmd(nil, &cmd, 0))
		}, pdu.FESInvalidHeaderField, 1},
		{"h2c data over maxh2cdata", func(t *testing.T, q *client) {
			d := make([]byte, 8196)
			q.send(q.w.AppendH2CData(nil, 1, 1, 0, len(d), true), d)
		}, pdu.FESDataLimitExceeded, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tgt := New(Config{})
			dial := tcpDialer(t, tgt) // TCP buffers: the target's TermReq never waits for the host's write
			_, cntlid := bringUp(t, dial, false, false, tgt.Config().SubNQN, 0)
			ioc := dial(t)
			defer ioc.Close()
			q := dial2(t, ioc, false, false)
			if cqe, err := q.connect(1, cntlid, tgt.Config().SubNQN, 0); err != nil || !cqe.StatusField().Success() {
				t.Fatal(err)
			}
			c.misbehave(t, q)
			var p *pdu.PDU
			var err error
			for {
				p, err = q.next()
				if err != nil || p.Type == pdu.TypeC2HTermReq {
					break
				}
			}
			if err != nil {
				t.Fatalf("no TermReq: %v", err)
			}
			if p.Term.FES != c.fes || p.Term.FEI != c.fei || len(p.Data) == 0 {
				t.Errorf("TermReq %v fei %d with %d bytes, want %v fei %d", p.Term.FES, p.Term.FEI, len(p.Data), c.fes, c.fei)
			}
			if _, err := q.next(); err == nil {
				t.Error("connection still open after the TermReq")
			}
			var pe *pdu.Error
			if errs := tgt.Errors(); len(errs) != 1 || !errors.As(errs[0], &pe) || pe.FES != c.fes {
				t.Errorf("recorded %v", errs)
			}
		})
	}
}

// A data digest error fails the command with Transient Transport Error and
// the connection goes on.
func TestDataDigestError(t *testing.T) {
	tgt := New(Config{})
	dial := pipeDialer(t, tgt)
	_, cntlid := bringUp(t, dial, true, true, tgt.Config().SubNQN, 0)
	ioc := dial(t)
	defer ioc.Close()
	q := dial2(t, ioc, true, true)
	q.inCapsule = 4096
	if cqe, err := q.connect(1, cntlid, tgt.Config().SubNQN, 0); err != nil || !cqe.StatusField().Success() {
		t.Fatal(err)
	}
	data := pattern(1024, 5)
	cmd := rw(spec.IOWrite, 0, 2)
	q.cid++
	cmd.CID, cmd.Flags = q.cid, spec.FlagPSDTSGL
	cmd.SetSGL1(fabrics.InCapsuleSGL(0, uint32(len(data))))
	q.send(q.w.AppendCapsuleCmd(nil, &cmd, len(data)), data, pdu.AppendDigest(nil, pdu.Digest(data)^0xff))
	p, err := q.next()
	if err != nil || p.Type != pdu.TypeCapsuleResp || p.Completion.StatusField().Code() != spec.MakeStatus(spec.SCTGeneric, spec.SCTransientTransportError) {
		t.Fatalf("%v %+v", err, p)
	}
	got := make([]byte, len(data))
	tgt.ReadAt(got, 0)
	if bytes.Equal(got, data) {
		t.Error("corrupted data was written")
	}
	q.ok(rw(spec.IOWrite, 0, 2), data, nil)
	q.ok(rw(spec.IORead, 0, 2), nil, got)
	if !bytes.Equal(got, data) {
		t.Error("the connection did not go on")
	}
}
