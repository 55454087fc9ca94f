package fabrics

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"structs"
	"unicode/utf8"
	"unsafe"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// ConnectData is the data of a Connect command, 1024 bytes. Base 2.0, 6.3,
// Figure "Connect Command Data". The NQN fields are NUL-terminated UTF-8
// strings padded with NULs; use NewConnectData and the string accessors.
type ConnectData struct {
	_       structs.HostLayout
	HostID  [16]byte  // 0x000 host identifier (a UUID), the same on every connection of the host
	CNTLID  uint16    // 0x010 controller ID: CNTLIDDynamic for a new admin queue, the assigned ID for I/O queues
	_       [238]byte // 0x012 reserved
	SubNQN  [256]byte // 0x100 subsystem NQN
	HostNQN [256]byte // 0x200 host NQN
	_       [256]byte // 0x300 reserved
}

var (
	_ [unsafe.Sizeof(ConnectData{}) - ConnectDataSize]struct{}
	_ [ConnectDataSize - unsafe.Sizeof(ConnectData{})]struct{}
	_ [unsafe.Offsetof(ConnectData{}.SubNQN) - ConnectOffSubNQN]struct{}
	_ [ConnectOffSubNQN - unsafe.Offsetof(ConnectData{}.SubNQN)]struct{}
	_ [unsafe.Offsetof(ConnectData{}.HostNQN) - ConnectOffHostNQN]struct{}
	_ [ConnectOffHostNQN - unsafe.Offsetof(ConnectData{}.HostNQN)]struct{}
)

// NewConnectData fills a ConnectData. Both NQNs must pass CheckNQN.
func NewConnectData(hostID [16]byte, cntlid uint16, subNQN, hostNQN string) (ConnectData, error) {
	if err := CheckNQN(subNQN); err != nil {
		return ConnectData{}, fmt.Errorf("subsystem nqn: %w", err)
	}
	if err := CheckNQN(hostNQN); err != nil {
		return ConnectData{}, fmt.Errorf("host nqn: %w", err)
	}
	d := ConnectData{HostID: hostID, CNTLID: cntlid}
	copy(d.SubNQN[:], subNQN)
	copy(d.HostNQN[:], hostNQN)
	return d, nil
}

// SubsystemNQN returns SubNQN as a string (up to the first NUL).
func (d *ConnectData) SubsystemNQN() string { return cString(d.SubNQN[:]) }

// HostNQNString returns HostNQN as a string (up to the first NUL).
func (d *ConnectData) HostNQNString() string { return cString(d.HostNQN[:]) }

// MarshalTo stores d in b, which must hold ConnectDataSize bytes; it
// returns the number of bytes written (0 when b is too short).
func (d *ConnectData) MarshalTo(b []byte) int {
	if len(b) < ConnectDataSize {
		return 0
	}
	b = b[:ConnectDataSize]
	clear(b)
	copy(b[0x000:], d.HostID[:])
	binary.LittleEndian.PutUint16(b[0x010:], d.CNTLID)
	copy(b[ConnectOffSubNQN:], d.SubNQN[:])
	copy(b[ConnectOffHostNQN:], d.HostNQN[:])
	return ConnectDataSize
}

// ParseConnectData decodes the data of a Connect command as a controller
// receives it. It checks the length and that both NQN fields hold a
// NUL-terminated string; whether the NQNs are acceptable is the
// controller's decision (CheckNQN, its allow list).
func ParseConnectData(b []byte) (ConnectData, error) {
	if len(b) < ConnectDataSize {
		return ConnectData{}, fmt.Errorf("connect data: %d bytes, need %d: %w", len(b), ConnectDataSize, spec.ErrShort)
	}
	var d ConnectData
	copy(d.HostID[:], b[0x000:0x010])
	d.CNTLID = binary.LittleEndian.Uint16(b[0x010:])
	copy(d.SubNQN[:], b[ConnectOffSubNQN:])
	copy(d.HostNQN[:], b[ConnectOffHostNQN:])
	if !hasNUL(d.SubNQN[:]) {
		return ConnectData{}, fmt.Errorf("connect data: subsystem nqn not terminated: %w", spec.ErrMalformed)
	}
	if !hasNUL(d.HostNQN[:]) {
		return ConnectData{}, fmt.Errorf("connect data: host nqn not terminated: %w", spec.ErrMalformed)
	}
	return d, nil
}

func hasNUL(b []byte) bool {
	for _, c := range b {
		if c == 0 {
			return true
		}
	}
	return false
}

// cString returns the bytes of b up to the first NUL as a string.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// NVMe Qualified Names. Base 2.0, 4.5 "NVMe Qualified Names".
const (
	// DiscoveryNQN is the well-known NQN of a discovery subsystem.
	DiscoveryNQN = "nqn.2014-08.org.nvmexpress.discovery"
	// NQNMaxLen is the longest NQN, in bytes (UTF-8), without the NUL.
	NQNMaxLen = 223
	// UUIDNQNPrefix starts an NQN built from a UUID (UUIDNQN).
	UUIDNQNPrefix = "nqn.2014-08.org.nvmexpress:uuid:"
)

// Default TCP ports, assigned by IANA and named in the NVMe/TCP specification.
const (
	PortTCP       = 4420 // NVMe/TCP I/O controllers
	PortDiscovery = 8009 // NVMe/TCP discovery controllers
)

// ErrBadNQN is returned (wrapped) by CheckNQN.
var ErrBadNQN = fmt.Errorf("invalid nqn: %w", spec.ErrMalformed)

// CheckNQN checks the form of an NVMe Qualified Name: 1 to 223 bytes of
// valid UTF-8 without NUL, starting with "nqn.". The two forms the spec
// defines, "nqn.yyyy-mm.reverse.domain:anything" and the UUID form, are
// both accepted; so are the other "nqn." names that Linux's nvmet and SPDK
// accept in practice.
func CheckNQN(s string) error {
	switch {
	case len(s) == 0:
		return fmt.Errorf("empty: %w", ErrBadNQN)
	case len(s) > NQNMaxLen:
		return fmt.Errorf("%d bytes, at most %d: %w", len(s), NQNMaxLen, ErrBadNQN)
	case !strings.HasPrefix(s, "nqn."):
		return fmt.Errorf("%q does not start with \"nqn.\": %w", s, ErrBadNQN)
	case !utf8.ValidString(s):
		return fmt.Errorf("%q is not UTF-8: %w", s, ErrBadNQN)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%q holds a NUL: %w", s, ErrBadNQN)
	}
	return nil
}

// UUIDNQN returns the NQN of the UUID form,
// "nqn.2014-08.org.nvmexpress:uuid:xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx":
// the host NQN nvme-cli generates from a host ID.
func UUIDNQN(id [16]byte) string {
	return UUIDNQNPrefix + FormatUUID(id)
}

// FormatUUID formats id as a lowercase UUID string.
func FormatUUID(id [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], id[10:16])
	return string(b[:])
}

// ParseUUID parses a UUID string (hex digits, with or without the four
// dashes) as nvme-cli's --hostid takes it.
func ParseUUID(s string) ([16]byte, error) {
	var id [16]byte
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 {
		return id, fmt.Errorf("uuid %q: want 32 hex digits", s)
	}
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return id, fmt.Errorf("uuid %q: %w", s, err)
	}
	return id, nil
}
