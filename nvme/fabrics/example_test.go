package fabrics_test

import (
	"fmt"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// The Connect command a host sends first on a new connection: the admin
// queue (QID 0) of a new dynamic controller, 32 entries, a two-minute keep
// alive, the 1024-byte Connect data in the capsule.
func ExampleConnectCommand() {
	hostID := [16]byte{0xf8, 0x1d, 0x4f, 0xae, 0x7d, 0xec, 0x11, 0xd0, 0xa7, 0x65, 0x00, 0xa0, 0xc9, 0x1e, 0x6b, 0xf6}
	data, err := fabrics.NewConnectData(hostID, fabrics.CNTLIDDynamic, "nqn.2024-01.io.example:disk1", fabrics.UUIDNQN(hostID))
	if err != nil {
		panic(err)
	}
	buf := make([]byte, fabrics.ConnectDataSize)
	data.MarshalTo(buf)

	c := fabrics.ConnectCommand{
		Flags:  spec.FlagPSDTSGL,
		CID:    1,
		SGL1:   fabrics.InCapsuleSGL(0, fabrics.ConnectDataSize),
		QID:    0,
		SQSize: 31,
		KATO:   120000,
	}
	sqe := c.SQE()
	fmt.Printf("opcode %#x fctype %#x cdw10 %#08x cdw11 %#08x kato %d ms\n", sqe.Opcode, uint8(sqe.NSID), sqe.CDW10, sqe.CDW11, sqe.CDW12)
	fmt.Println(data.HostNQNString())

	// The controller answers with its ID in DW0.
	resp := fabrics.ConnectSuccess(1, 0)
	fmt.Println("cntlid", resp.CNTLID())
	// Output:
	// opcode 0x7f fctype 0x1 cdw10 0x00000000 cdw11 0x0000001f kato 120000 ms
	// nqn.2014-08.org.nvmexpress:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6
	// cntlid 1
}
