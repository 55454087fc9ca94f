package target

import (
	"net"
	"testing"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/nvmetest"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
)

// fuzzPrefix is a valid start of a session: ICReq, then a Connect of
// queue qid (0: admin, with a new controller; else an I/O queue of
// controller cntlid); the fuzzer's bytes follow on that connection.
func fuzzPrefix(qid, cntlid uint16) []byte {
	var w pdu.Writer
	b := w.AppendICReq(nil, pdu.ICReq{})
	d, _ := fabrics.NewConnectData([16]byte{1, 2, 3, 4}, cntlid, testNQN, fabrics.UUIDNQN([16]byte{1, 2, 3, 4}))
	data := make([]byte, fabrics.ConnectDataSize)
	d.MarshalTo(data)
	cmd := (&fabrics.ConnectCommand{QID: qid, SQSize: 31, KATO: 0}).SQE()
	cmd.Flags = spec.FlagPSDTSGL
	cmd.SetSGL1(fabrics.InCapsuleSGL(0, uint32(len(data))))
	b = w.AppendCapsuleCmd(b, &cmd, len(data))
	return append(b, data...)
}

// FuzzConn feeds arbitrary bytes to a target connection, from the first
// byte (mode 0), after a valid IC exchange and admin Connect (1), or after
// an I/O queue's Connect (2, served by a poll group): the target must
// answer or close, never panic or hang, and must go on serving other
// hosts (the live association's queue checks it after each input).
func FuzzConn(f *testing.F) {
	var w pdu.Writer
	f.Add(uint8(1), []byte{})
	f.Add(uint8(0), w.AppendICReq(nil, pdu.ICReq{HeaderDigest: true, DataDigest: true}))
	id := spec.Command{Opcode: uint8(spec.AdminIdentify), CDW10: spec.CNSController, Flags: spec.FlagPSDTSGL}
	id.SetSGL1(fabrics.TransportSGL(4096))
	f.Add(uint8(1), w.AppendCapsuleCmd(nil, &id, 0))
	f.Add(uint8(1), w.AppendH2CData(nil, 1, 1, 0, 16, true))
	f.Add(uint8(1), pdu.AppendTermReq(nil, pdu.Host, pdu.FESInvalidHeaderField, 0, nil))
	wr := rw(spec.IOWrite, 0, 64)
	wr.Flags = spec.FlagPSDTSGL
	wr.SetSGL1(fabrics.TransportSGL(32 << 10))
	f.Add(uint8(2), append(w.AppendCapsuleCmd(nil, &wr, 0), w.AppendH2CData(nil, 0, 1, 0, 512, false)...))
	rd := rw(spec.IORead, 0, 8)
	rd.Flags = spec.FlagPSDTSGL
	rd.SetSGL1(fabrics.TransportSGL(4096))
	f.Add(uint8(2), w.AppendCapsuleCmd(nil, &rd, 0))
	icw := rw(spec.IOWrite, 0, 1)
	icw.Flags = spec.FlagPSDTSGL
	icw.SetSGL1(fabrics.InCapsuleSGL(0, 512))
	f.Add(uint8(2), append(w.AppendCapsuleCmd(nil, &icw, 512), make([]byte, 512)...))
	r := newRig(f, Config{}, nvmetest.Config{})
	admin, cntlid := r.bringUp(f, false, false)
	good := r.ioQueue(f, cntlid, 1, false, false, 0)
	var n uint16
	f.Fuzz(func(t *testing.T, mode uint8, in []byte) {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		var prefix []byte
		switch mode % 3 {
		case 1:
			prefix = fuzzPrefix(0, fabrics.CNTLIDDynamic)
		case 2:
			n++
			prefix = fuzzPrefix(2+n%7, cntlid) // queues 2-8: an earlier one may still be closing
		}
		go func() {
			_, _ = c.Write(prefix)
			_, _ = c.Write(in)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
		}()
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		_ = good.c.SetDeadline(time.Now().Add(time.Minute)) // (dial's deadline is for one test, not a fuzz run)
		_ = admin.c.SetDeadline(time.Now().Add(time.Minute))
		if cqe, err := good.do(rw(spec.IORead, 0, 1), nil, make([]byte, 512)); err != nil || !cqe.StatusField().Success() {
			t.Fatalf("the live queue after the input: %v %v", err, cqe.StatusField())
		}
		if cqe, err := admin.do(spec.Command{Opcode: uint8(spec.AdminKeepAlive)}, nil, nil); err != nil || !cqe.StatusField().Success() {
			t.Fatalf("keep alive: %v %v", err, cqe.StatusField()) // (a long fuzz run outlives KATO)
		}
	})
}
