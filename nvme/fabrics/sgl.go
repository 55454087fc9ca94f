package fabrics

import (
	"fmt"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// SGL descriptors a fabrics host puts in SGL1 of its commands (and sets
// spec.FlagPSDTSGL in the command's Flags: fabrics commands always use
// SGLs). Base 2.0, 4.1.2 "SGL"; which ones a transport uses is the
// transport's (NVMe/TCP 1.0a, "Data Transfer"):
//
//	in-capsule data        Data Block, sub type Offset: Addr is the offset of
//	                       the data in the capsule (ICDOFF-relative; 0 on TCP)
//	data by the transport  Transport Data Block, sub type Transport Specific
//	  (C2HData, R2T)       (0Ah): Addr 0, Length the transfer length
//	no data                Transport Data Block of length 0
//
// Keyed SGL Data Block descriptors (remote keys) are RDMA's only.

// SGLSubtypeTransport is the sub type of the Transport SGL Data Block
// descriptor NVMe/TCP uses ("Transport Specific", Ah).
const SGLSubtypeTransport = 0xa

// InCapsuleSGL returns the descriptor of length bytes of in-capsule data at
// offset in the capsule's data area.
func InCapsuleSGL(offset uint64, length uint32) spec.SGLDescriptor {
	return spec.SGLDescriptor{
		Addr: offset, Length: length,
		Type: spec.MakeSGLType(spec.SGLTypeDataBlock, spec.SGLSubtypeOffset),
	}
}

// TransportSGL returns the descriptor of length bytes moved by the
// transport's data PDUs; length 0 describes "no data".
func TransportSGL(length uint32) spec.SGLDescriptor {
	return spec.SGLDescriptor{
		Length: length,
		Type:   spec.MakeSGLType(spec.SGLTypeTransportDataBlock, SGLSubtypeTransport),
	}
}

// DataKind is where a command's data travels, from its SGL1.
type DataKind uint8

// Data kinds.
const (
	DataNone      DataKind = iota // no data (length 0)
	DataInCapsule                 // in the command capsule, after the SQE
	DataTransport                 // in the transport's data PDUs
)

// ErrBadSGL is returned (wrapped) by ParseDataSGL; a controller completes
// the command with a status from the SGL family (SGL Descriptor Type
// Invalid, SGL Offset Invalid, Data SGL Length Invalid).
var ErrBadSGL = fmt.Errorf("unsupported sgl: %w", spec.ErrMalformed)

// ParseDataSGL classifies SGL1 of a command a fabrics controller received,
// for a transport that uses the descriptors above, and returns the data
// length and, for in-capsule data, its offset.
func ParseDataSGL(d spec.SGLDescriptor) (kind DataKind, offset uint64, length uint32, err error) {
	switch {
	case d.DescType() == spec.SGLTypeDataBlock && d.Subtype() == spec.SGLSubtypeOffset:
		if d.Length == 0 {
			return DataNone, 0, 0, nil
		}
		return DataInCapsule, d.Addr, d.Length, nil
	case d.DescType() == spec.SGLTypeTransportDataBlock && d.Subtype() == SGLSubtypeTransport:
		if d.Length == 0 {
			return DataNone, 0, 0, nil
		}
		return DataTransport, 0, d.Length, nil
	}
	return DataNone, 0, 0, fmt.Errorf("sgl type %#x sub type %#x: %w", d.DescType(), d.Subtype(), ErrBadSGL)
}
