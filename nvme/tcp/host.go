package tcp

import (
	"crypto/rand"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
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

	// ConnectTimeout bounds one connection's set-up: TCP connect,
	// ICReq/ICResp and Fabrics Connect. 0: 10 s.
	ConnectTimeout time.Duration
	// Memory, if set, is the allocator the controller's Memory returns
	// (data buffers may be any memory over TCP; package ddi allocates
	// from Memory). nil: Connect makes one (dma.SoftMapper: ordinary
	// locked memory, mapped for no device), closed at the controller's
	// Close when every buffer of it was freed; buffers still allocated
	// then stay valid until their owner frees them.
	Memory *dma.Allocator
}

// processHostID is the host ID of a process whose Options name none.
var processHostID = sync.OnceValue(func() [16]byte {
	var id [16]byte
	_, _ = rand.Read(id[:])
	id[6] = id[6]&0x0f | 0x40 // a version 4 UUID
	id[8] = id[8]&0x3f | 0x80
	return id
})

// withDefaults returns a copy of o (nil: the zero Options) with the
// defaults filled in.
func (o *Options) withDefaults() *Options {
	var c Options
	if o != nil {
		c = *o
	}
	if c.HostID == ([16]byte{}) {
		c.HostID = processHostID()
	}
	if c.HostNQN == "" {
		c.HostNQN = fabrics.UUIDNQN(c.HostID)
	}
	if c.NrIOQueues <= 0 {
		c.NrIOQueues = runtime.NumCPU()
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 128
	}
	if c.KeepAliveTimeout == 0 {
		c.KeepAliveTimeout = 5 * time.Second
	}
	if c.ReconnectDelay <= 0 {
		c.ReconnectDelay = 10 * time.Second
	}
	if c.CtrlLossTimeout == 0 {
		c.CtrlLossTimeout = 600 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	return &c
}

// Address is a parsed tcp://HOST[:PORT][/NQN].
type Address struct {
	Host string // an IPv4 address, an IPv6 address (no brackets) or a name
	Port int    // DefaultPort, or DefaultDiscoveryPort for a discovery address, when not given
	NQN  string // subsystem NQN; empty for discovery
}

// String formats a as ParseAddress takes it.
func (a Address) String() string {
	s := "tcp://" + net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
	if a.NQN != "" {
		s += "/" + a.NQN
	}
	return s
}

// ErrAddress and ParseAddress are in address.go.

// Connect connects to the subsystem at a (ICReq, Fabrics Connect of the
// admin queue and, as the controller's queue pairs are made, of each I/O
// queue) and brings the controller up as nvme.Open does: the result is
// the same type as pcie.Open's, and ddi and poller run over it unchanged.
// Any goroutine.
func Connect(a Address, opts *Options) (*nvme.Controller, error) {
	o := opts.withDefaults()
	if a.NQN == "" {
		return nil, fmt.Errorf("nvme/tcp: connect %s: %w: no subsystem NQN", a, ErrAddress)
	}
	f := newFabric(a, o)
	mem := o.Memory
	if mem == nil {
		var err error
		mem, err = dma.NewAllocator(dma.NewSoftMapper())
		if err != nil {
			return nil, fmt.Errorf("nvme/tcp: connect %s: %w", a, err)
		}
		f.mem = mem
	}
	var no nvme.Options
	if o.Controller != nil {
		no = *o.Controller
	}
	no.IOQueues = o.NrIOQueues
	no.IOQueueDepth = o.QueueSize
	no.KeepAliveTimeout = o.KeepAliveTimeout
	no.ReconnectDelay = o.ReconnectDelay
	no.CtrlLossTimeout = o.CtrlLossTimeout
	c, err := nvme.OpenFabric(f, mem, &no)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("nvme/tcp: connect %s: %w", a, err)
	}
	return c, nil
}
