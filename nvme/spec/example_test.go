package spec_test

import (
	"encoding/binary"
	"fmt"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// The controller configuration a driver writes to enable an NVM controller
// with 4 KiB pages and standard queue entry sizes.
func ExampleCC() {
	cc := spec.CC(0).
		WithCSS(spec.CCCSSNVM).
		WithMPS(0).
		WithIOSQES(spec.SQESLog2).
		WithIOCQES(spec.CQESLog2).
		WithEN(true)
	fmt.Printf("%#08x\n", uint32(cc))
	fmt.Println(cc)
	// Output:
	// 0x00460001
	// en=true css=0 mps=0 ams=0 shn=0 iosqes=6 iocqes=4
}

// Decoding the status of a completion queue entry: DW3 as one 32-bit load.
func ExampleSplitDW3() {
	dw3 := uint32(0x8004)<<16 | 0x0017 // DNR, Invalid Field, phase 0, CID 0x17
	cid, phase, st := spec.SplitDW3(dw3)
	fmt.Println(cid, phase, st.Success())
	fmt.Println(st)
	// Output:
	// 23 false false
	// Generic/Invalid Field in Command (sct 0x0 sc 0x02) dnr
}

func ExampleParseNamespaceList() {
	b := make([]byte, spec.IdentifySize)
	binary.LittleEndian.PutUint32(b[0:], 1)
	binary.LittleEndian.PutUint32(b[4:], 2)
	binary.LittleEndian.PutUint32(b[8:], 7)
	ids, err := spec.ParseNamespaceList(b)
	fmt.Println(ids, err)
	// Output: [1 2 7] <nil>
}

func ExampleCAP() {
	c := spec.CAP(0x0000_0020_0f01_07ff) // as QEMU reports it, roughly
	fmt.Println(c.MQES()+1, c.TO(), c.DSTRD(), c.MinPageSize(), c.CSS()&spec.CAPCSSNVM != 0)
	fmt.Printf("%#x\n", spec.SQTailDoorbell(1, c.DSTRD()))
	// Output:
	// 2048 7.5s 0 4096 true
	// 0x1008
}
