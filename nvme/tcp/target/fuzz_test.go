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

// fuzzPrefix is a valid start of a session: ICReq, then an admin
// Connect; the fuzzer's bytes follow on that connection.
func fuzzPrefix() []byte {
	var w pdu.Writer
	b := w.AppendICReq(nil, pdu.ICReq{})
	d, _ := fabrics.NewConnectData([16]byte{1}, fabrics.CNTLIDDynamic, testNQN, fabrics.UUIDNQN([16]byte{1}))
	data := make([]byte, fabrics.ConnectDataSize)
	d.MarshalTo(data)
	cmd := (&fabrics.ConnectCommand{QID: 0, SQSize: 31, KATO: 0}).SQE()
	cmd.Flags = spec.FlagPSDTSGL
	cmd.SetSGL1(fabrics.InCapsuleSGL(0, uint32(len(data))))
	b = w.AppendCapsuleCmd(b, &cmd, len(data))
	return append(b, data...)
}

// FuzzConn feeds arbitrary bytes to a target connection, after a valid
// IC exchange and Connect or from the first byte: the target must answer
// or close, never panic or hang, and must go on serving other hosts.
func FuzzConn(f *testing.F) {
	var w pdu.Writer
	f.Add(false, []byte{})
	f.Add(true, w.AppendICReq(nil, pdu.ICReq{HeaderDigest: true, DataDigest: true}))
	id := spec.Command{Opcode: uint8(spec.AdminIdentify), CDW10: spec.CNSController, Flags: spec.FlagPSDTSGL}
	id.SetSGL1(fabrics.TransportSGL(4096))
	f.Add(false, w.AppendCapsuleCmd(nil, &id, 0))
	f.Add(false, w.AppendH2CData(nil, 1, 1, 0, 16, true))
	f.Add(false, pdu.AppendTermReq(nil, pdu.Host, pdu.FESInvalidHeaderField, 0, nil))
	r := newRig(f, Config{}, nvmetest.Config{})
	prefix := fuzzPrefix()
	f.Fuzz(func(t *testing.T, raw bool, in []byte) {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			if !raw {
				_, _ = c.Write(prefix)
			}
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
	})
}
