package target

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Config describes a Target. Zero fields take the defaults in brackets.
type Config struct {
	// AllowHosts lists the host NQNs that may connect; empty lets any
	// host in.
	AllowHosts []string
	// MaxTransfer caps the MDTS the target reports, in bytes: each I/O
	// queue holds queue-depth buffers of this size in DMA memory
	// [131072]. The backing's own limit applies if smaller.
	MaxTransfer int
	// InCapsule is the in-capsule data an I/O queue accepts (IOCCSZ)
	// [8192].
	InCapsule int
	// MaxH2CData is MAXH2CDATA announced in ICResp [131072].
	MaxH2CData uint32
	// MaxIOQueues is the most I/O queues one host gets [8].
	MaxIOQueues int
	// NoSuccess turns off the C2HData SUCCESS flag (on by default, used
	// on queues whose Connect disabled SQ flow control, as Linux's
	// initiator asks).
	NoSuccess bool
	// Advertise lists the transport addresses (host, port) the
	// discovery log page reports for every subsystem: where Serve's
	// listeners are reachable. Any connection may reach the discovery
	// controller (nqn.2014-08.org.nvmexpress.discovery).
	Advertise []Address
	// Logf, if set, receives one line per refused connection, protocol
	// error and keep-alive expiry.
	Logf func(format string, args ...any)
}

// Address is a transport address: host (IPv4 or IPv6) and port.
type Address struct{ Host, Port string }

// Subsystem is one NVM subsystem a Target exports.
type Subsystem struct {
	NQN     string
	Backing Backing
}

// Target serves NVMe/TCP: it accepts connections, runs the IC exchange
// and Connect, and holds one controller per host association (admin
// queue) over the subsystems' backings. Its methods may be called from
// any goroutine.
type Target struct {
	cfg  Config
	subs map[string]*subsystem

	mu     sync.Mutex
	ctrls  map[uint16]*controller
	nextID uint16
	lns    []net.Listener
	conns  map[*conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// subsystem is a Subsystem with what the target derives from it once.
type subsystem struct {
	nqn     string
	backing Backing
	idc     []byte // backing Identify Controller
	nss     []Namespace
	byID    map[uint32]*nsInfo
	maxXfer int // bytes
	mdts    uint8
}

type nsInfo struct {
	ns      Namespace
	id      []byte // Identify Namespace as hosts see it
	bshift  uint
	blocks  uint64
	descrip []byte // Namespace Identification Descriptor list
}

// Limits and defaults.
const (
	mqes           = 127 // CAP.MQES: 128 entries per queue
	adminMQES      = 31
	adminInCapsule = 8192 // as Linux's nvmet: room for the Connect data
	vsVersion      = 0x00020000
	aerLimit       = 4 // AERL+1
	defaultKATO    = 120 * time.Second

	kasUnits = 100 * time.Millisecond
	mpsMin   = 4096
)

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("target: closed")

// New returns a target exporting subs. It reads each backing's
// identity and namespaces once.
func New(cfg Config, subs ...Subsystem) (*Target, error) {
	if cfg.MaxTransfer == 0 {
		cfg.MaxTransfer = 128 << 10
	}
	if cfg.InCapsule == 0 {
		cfg.InCapsule = 8192
	}
	if cfg.MaxH2CData == 0 {
		cfg.MaxH2CData = 128 << 10
	}
	if cfg.MaxIOQueues == 0 {
		cfg.MaxIOQueues = 8
	}
	switch {
	case cfg.MaxTransfer < mpsMin:
		return nil, fmt.Errorf("target: max transfer %d below %d", cfg.MaxTransfer, mpsMin)
	case cfg.InCapsule < 0 || cfg.InCapsule%16 != 0 || cfg.InCapsule > 1<<20:
		return nil, fmt.Errorf("target: in-capsule size %d: want a multiple of 16 up to 1 MiB", cfg.InCapsule)
	case cfg.MaxH2CData < 4096 || cfg.MaxH2CData%4 != 0:
		return nil, fmt.Errorf("target: MAXH2CDATA %d: want a multiple of 4, at least 4096", cfg.MaxH2CData)
	case cfg.MaxIOQueues < 1 || cfg.MaxIOQueues > 0xffff:
		return nil, fmt.Errorf("target: %d I/O queues", cfg.MaxIOQueues)
	}
	for _, h := range cfg.AllowHosts {
		if err := fabrics.CheckNQN(h); err != nil {
			return nil, fmt.Errorf("target: allowed host: %w", err)
		}
	}
	t := &Target{cfg: cfg, subs: map[string]*subsystem{}, ctrls: map[uint16]*controller{}, nextID: 1, conns: map[*conn]struct{}{}}
	for _, s := range subs {
		if err := fabrics.CheckNQN(s.NQN); err != nil {
			return nil, fmt.Errorf("target: subsystem: %w", err)
		}
		if s.NQN == fabrics.DiscoveryNQN || t.subs[s.NQN] != nil {
			return nil, fmt.Errorf("target: subsystem nqn %s used twice or reserved", s.NQN)
		}
		sub, err := newSubsystem(s, cfg.MaxTransfer)
		if err != nil {
			return nil, fmt.Errorf("target: subsystem %s: %w", s.NQN, err)
		}
		t.subs[s.NQN] = sub
	}
	return t, nil
}

func newSubsystem(s Subsystem, capXfer int) (*subsystem, error) {
	idc := s.Backing.IdentifyController()
	if len(idc) < spec.IdentifySize {
		return nil, fmt.Errorf("identify controller: %d bytes", len(idc))
	}
	sub := &subsystem{nqn: s.NQN, backing: s.Backing, idc: idc, byID: map[uint32]*nsInfo{}}
	x := min(capXfer, s.Backing.MaxTransfer())
	if x <= 0 {
		x = capXfer
	}
	for sub.mdts = 0; mpsMin<<(sub.mdts+1) <= x && sub.mdts < 15; sub.mdts++ {
	}
	sub.maxXfer = mpsMin << sub.mdts
	for _, ns := range s.Backing.Namespaces() {
		bs := ns.BlockSize()
		if bs < 512 || bs&(bs-1) != 0 || bs > sub.maxXfer {
			return nil, fmt.Errorf("namespace %d: block size %d", ns.ID(), bs)
		}
		id := ns.ID()
		if id == 0 || id == 0xffffffff || sub.byID[id] != nil {
			return nil, fmt.Errorf("namespace id %d", id)
		}
		raw := ns.IdentifyNamespace()
		if len(raw) < spec.IdentifySize {
			return nil, fmt.Errorf("namespace %d: identify data of %d bytes", id, len(raw))
		}
		info := &nsInfo{ns: ns, id: append([]byte(nil), raw[:spec.IdentifySize]...), blocks: ns.Blocks()}
		for 1<<info.bshift < bs {
			info.bshift++
		}
		info.descrip = nsDescriptors(s.NQN, id)
		sub.nss = append(sub.nss, ns)
		sub.byID[id] = info
	}
	return sub, nil
}

func (t *Target) logf(format string, args ...any) {
	if t.cfg.Logf != nil {
		t.cfg.Logf(format, args...)
	}
}

// hostAllowed reports whether host may connect.
func (t *Target) hostAllowed(host string) bool {
	if len(t.cfg.AllowHosts) == 0 {
		return true
	}
	for _, h := range t.cfg.AllowHosts {
		if h == host {
			return true
		}
	}
	return false
}

// Serve accepts connections on l and serves each in its own goroutines
// until l fails or Close is called. It returns ErrClosed after Close.
func (t *Target) Serve(l net.Listener) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	t.lns = append(t.lns, l)
	t.mu.Unlock()
	for {
		c, err := l.Accept()
		if err != nil {
			t.mu.Lock()
			closed := t.closed
			t.mu.Unlock()
			if closed {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("target: accept: %w", err)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		t.ServeConn(c)
	}
}

// ServeConn serves one connection (one queue) in new goroutines and
// returns at once; the target closes c when the queue ends.
func (t *Target) ServeConn(c net.Conn) {
	cn := newConn(t, c)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		c.Close()
		return
	}
	t.conns[cn] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		cn.run()
		t.mu.Lock()
		delete(t.conns, cn)
		t.mu.Unlock()
	}()
}

// Close stops the listeners, closes every connection, and waits until
// each has released its buffers (in-flight I/O on the backing has
// completed).
func (t *Target) Close() error {
	t.mu.Lock()
	t.closed = true
	lns := t.lns
	conns := make([]*conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	ctrls := make([]*controller, 0, len(t.ctrls))
	for _, c := range t.ctrls {
		ctrls = append(ctrls, c)
	}
	t.mu.Unlock()
	for _, l := range lns {
		l.Close()
	}
	for _, c := range conns {
		c.c.Close()
	}
	for _, c := range ctrls {
		c.stopKeepAlive()
	}
	t.wg.Wait()
	return nil
}

// Controllers returns the number of live controllers (host associations).
func (t *Target) Controllers() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.ctrls)
}

// newController allocates a CNTLID (1..0xffef, never reused while in use)
// for a new association.
func (t *Target) newController(sub *subsystem, disc bool, host string, hostID [16]byte, kato time.Duration) (*controller, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for range fabrics.CNTLIDDynamic {
		id := t.nextID
		t.nextID++
		if t.nextID >= 0xfff0 {
			t.nextID = 1
		}
		if t.ctrls[id] != nil {
			continue
		}
		c := &controller{t: t, id: id, sub: sub, discovery: disc, hostNQN: host, hostID: hostID,
			queues: uint16(t.cfg.MaxIOQueues), kato: kato, ioConns: map[uint16]*conn{}}
		t.ctrls[id] = c
		c.startKeepAlive()
		return c, nil
	}
	return nil, errors.New("no controller id free")
}

func (t *Target) controller(id uint16) *controller {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ctrls[id]
}

// dropController ends an association: its I/O connections close.
func (t *Target) dropController(c *controller) {
	t.mu.Lock()
	if t.ctrls[c.id] == c {
		delete(t.ctrls, c.id)
	}
	conns := make([]*conn, 0, len(c.ioConns))
	for _, q := range c.ioConns {
		conns = append(conns, q)
	}
	c.dead = true
	t.mu.Unlock()
	c.stopKeepAlive()
	for _, q := range conns {
		q.c.Close()
	}
}

// katoGrace is added to KATO before the association ends, for the
// network (as nvmet does). A variable for tests.
var katoGrace = 5 * time.Second
