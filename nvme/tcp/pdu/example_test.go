package pdu_test

import (
	"bytes"
	"fmt"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/pdu"
)

// A host receives the answer to an 8 KiB read: the controller's ICResp,
// then one C2HData with SUCCESS. The data lands in the command's buffer;
// here the stream comes from a byte slice in 1500-byte pieces, as from a
// socket.
func Example() {
	var ctrl pdu.Writer
	data := bytes.Repeat([]byte("gonvme!\n"), 1024)
	var stream []byte
	stream = ctrl.AppendICResp(stream, pdu.ICResp{MaxH2CData: 65536})
	stream = ctrl.AppendC2HData(stream, 7, 0, len(data), true, true)
	stream = append(stream, data...)

	r := pdu.NewReader(pdu.Host, 0)
	cmdBuf := make([]byte, 8192) // the buffer of command 7
	for len(stream) > 0 {
		n := copy(r.ReadBuffer()[:min(1500, len(r.ReadBuffer()))], stream)
		r.Advance(n)
		stream = stream[n:]
		for {
			p, err := r.Next()
			if err != nil {
				fmt.Println(err)
				return
			}
			if p == nil {
				break // read more
			}
			switch {
			case p.Type == pdu.TypeICResp:
				fmt.Println("ICResp, MAXH2CDATA", p.ICResp.MaxH2CData)
				r.SetParams(pdu.Params{MaxC2HData: 1 << 20})
			case p.DataPending:
				x := p.Transfer
				_ = r.SetDest(cmdBuf[x.Offset : x.Offset+x.Length])
			default:
				fmt.Printf("%v CCCID %d, %d bytes at %d, success %t\n", p.Type, p.Transfer.CCCID, len(p.Data), p.Transfer.Offset, p.Success())
			}
		}
	}
	fmt.Println(bytes.Equal(cmdBuf, data))
	// Output:
	// ICResp, MAXH2CDATA 65536
	// C2HData CCCID 7, 8192 bytes at 0, success true
	// true
}

// A host sends a write of 4 KiB in the command capsule: the head is built
// in a small buffer, the data stays where it is, and the three pieces go out
// with one writev (net.Buffers).
func ExampleWriter_AppendCapsuleCmd() {
	w := pdu.Writer{HeaderDigest: true, DataDigest: true}
	cmd := spec.Command{Opcode: uint8(spec.IOWrite), CID: 8, NSID: 1, CDW12: 7, Flags: spec.FlagPSDTSGL}
	data := make([]byte, 4096)
	head := w.AppendCapsuleCmd(make([]byte, 0, pdu.MaxHeadLen), &cmd, len(data))
	tail := w.AppendDataDigest(make([]byte, 0, pdu.DigestLen), data)
	fmt.Printf("head %d bytes (CH, SQE, HDGST), data %d, data digest %d\n", len(head), len(data), len(tail))
	// Output:
	// head 76 bytes (CH, SQE, HDGST), data 4096, data digest 4
}
