package pdu

import (
	"encoding/binary"
	"hash/crc32"
)

// castagnoli is the CRC32C table; hash/crc32 uses the SSE4.2 / ARMv8 CRC
// instructions for it where the CPU has them.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Digest returns the NVMe/TCP digest of b: CRC32C (Castagnoli), initial
// value and final XOR all ones, the same as iSCSI (NVMe/TCP 1.0a, the
// HDGST and DDGST fields of the PDU structure). On the wire it is stored
// little endian.
func Digest(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// UpdateDigest continues a digest over more bytes: UpdateDigest(Digest(a),
// b) == Digest(a+b), and UpdateDigest(0, a) == Digest(a). For data that
// arrives or leaves in pieces.
func UpdateDigest(crc uint32, b []byte) uint32 { return crc32.Update(crc, castagnoli, b) }

// AppendDigest appends crc as the 4 bytes of a digest.
func AppendDigest(b []byte, crc uint32) []byte { return binary.LittleEndian.AppendUint32(b, crc) }
