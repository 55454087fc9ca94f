// Package spec holds the NVMe wire formats: controller registers, queue
// entries, status codes, opcodes, and the data structures a controller
// returns (Identify, log pages, feature values), from the NVM Express Base
// Specification 2.0 and the NVM Command Set Specification 1.0. Comments cite
// sections as "NVMe Base 2.0, 3.1.3.1 CAP".
//
// Two kinds of types live here:
//
//   - Queue entries (Command, Completion, SGLDescriptor, DSMRange) have a
//     fixed memory layout (structs.HostLayout, sizes asserted at compile
//     time) because the queue code in package nvme casts DMA memory to them.
//     Their fields are little endian, as on every host gonvme supports.
//   - Everything else the device writes into a buffer (Identify data, log
//     pages) is decoded with encoding/binary by a Parse function that takes
//     a byte slice. The device is not trusted: parsers bound-check every
//     length and index it reports, return errors for data that cannot be
//     right, never panic, and never allocate more than a small multiple of
//     the input.
//
// Registers are integer types with accessor methods (CAP, VS, CC, CSTS,
// AQA, CMBLOC, CMBSZ): read the raw value through internal/mmio, convert,
// then ask. CC's With methods return a modified copy:
//
//	cc := spec.CC(0).WithIOSQES(spec.SQESLog2).WithIOCQES(spec.CQESLog2).
//		WithMPS(0).WithEN(true)
//
// The status field of a completion is Status (without the phase tag), with
// names from the spec tables through StatusName.
//
// Imports: the standard library only. Everything here is a value or a pure
// function; any goroutine may call anything.
package spec
