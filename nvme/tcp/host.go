package tcp

// THIS FILE IS THE API CONTRACT between the transport (helper s17) and its
// users (helper s17e: nvmectl, VM tests, bench). s17 fills in the bodies
// and may add to the API; changing a signature below needs the lead.

import (
	"errors"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
)

// DefaultPort is the NVMe/TCP port of I/O controllers (IANA 4420), and
// DefaultDiscoveryPort that of discovery controllers (8009).
const (
	DefaultPort          = 4420
	DefaultDiscoveryPort = 8009
)

// Options are a host's connection options, named as nvme-cli's connect
// names them. The zero value gives nvme-cli's defaults.
type Options struct {
	HostNQN          string        // --hostnqn; empty: derived from HostID (nqn.2014-08.org.nvmexpress:uuid:...)
	HostID           [16]byte      // --hostid; zero: a random one per process
	NrIOQueues       int           // --nr-io-queues; 0: one per CPU
	QueueSize        int           // --queue-size; 0: 128
	KeepAliveTimeout time.Duration // --keep-alive-tmo; 0: 5 s (admin: KATO in Connect; Keep Alive every KATO/2)
	ReconnectDelay   time.Duration // --reconnect-delay; 0: 10 s
	CtrlLossTimeout  time.Duration // --ctrl-loss-tmo; 0: 600 s; negative: try forever
	HeaderDigest     bool          // --hdr-digest
	DataDigest       bool          // --data-digest
	// Controller holds the transport-independent options (timeouts, ...).
	Controller *nvme.Options
}

// Address is a parsed tcp://HOST[:PORT][/NQN].
type Address struct {
	Host string // an IPv4 address, an IPv6 address (no brackets) or a name
	Port int    // DefaultPort, or DefaultDiscoveryPort for a discovery address, when not given
	NQN  string // subsystem NQN; empty for discovery
}

// ParseAddress parses tcp://HOST[:PORT]/NQN (IPv6 in brackets). discovery
// selects the default port and allows the NQN to be empty.
func ParseAddress(s string, discovery bool) (Address, error) {
	return Address{}, errors.ErrUnsupported
}

// Connect connects to the subsystem at a (ICReq, Fabrics Connect of the
// admin queue and, as the controller's queue pairs are made, of each I/O
// queue) and brings the controller up as nvme.Open does: the result is
// the same type as pcie.Open's, and ddi and poller run over it unchanged.
func Connect(a Address, opts *Options) (*nvme.Controller, error) {
	return nil, errors.ErrUnsupported
}

// Discover connects to the discovery controller at a, reads the whole
// Discovery Log Page (log 70h) and disconnects.
func Discover(a Address, opts *Options) ([]fabrics.DiscoveryLogEntry, error) {
	return nil, errors.ErrUnsupported
}
