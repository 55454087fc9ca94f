package spec

import (
	"encoding/binary"
	"math/big"
	"strings"
)

// Uint128 is a 128-bit little-endian counter as the spec uses for capacities
// (TNVMCAP, NVMCAP) and SMART counters.
type Uint128 struct {
	Lo, Hi uint64
}

func getUint128(b []byte) Uint128 {
	return Uint128{Lo: binary.LittleEndian.Uint64(b[0:]), Hi: binary.LittleEndian.Uint64(b[8:])}
}

// IsZero reports whether u is 0.
func (u Uint128) IsZero() bool { return u.Lo == 0 && u.Hi == 0 }

// Uint64 returns u as a uint64 and whether it fit.
func (u Uint128) Uint64() (v uint64, ok bool) { return u.Lo, u.Hi == 0 }

// Big returns u as a big.Int.
func (u Uint128) Big() *big.Int {
	b := new(big.Int).SetUint64(u.Hi)
	b.Lsh(b, 64)
	return b.Or(b, new(big.Int).SetUint64(u.Lo))
}

// String formats u in decimal.
func (u Uint128) String() string {
	if u.Hi == 0 {
		return big.NewInt(0).SetUint64(u.Lo).String()
	}
	return u.Big().String()
}

// trimString decodes an ASCII field padded with spaces (or NULs, which some
// devices use despite the spec) and trims the padding on both ends.
func trimString(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimSpace(string(b))
}
