package target

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/cpuset"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/poller"
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
	// Pollers, if set, are the pollers the hosts' I/O queues run on:
	// one poll group on each poller of the Group (each host queue on one
	// group, in turn), polled as a poller.Source on every pass, whose
	// commands go to that poller's queue pair on the backing controller.
	// Every backing's controller must be in the Group, with a queue pair
	// on every poller. The target never stops the Group: Close the
	// target first. PollGroups, CPUs, QueueDepth and SpinTime are then
	// the Group's business and ignored here.
	Pollers *poller.Group
	// PollGroups is the number of pollers the target starts for itself
	// when Pollers is nil [1]: a poller.Group over the backings'
	// controllers, one poller per CPU (CPUs, else the first PollGroups
	// CPUs the process may use), stopped by Close. Each takes an I/O
	// queue of every backing controller.
	PollGroups int
	// CPUs, if set, are the CPUs of the pollers the target starts.
	CPUs []int
	// QueueDepth is the depth of the queue pairs of the pollers the
	// target starts [128].
	QueueDepth int
	// SpinTime is poller.Options.SpinTime of the pollers the target
	// starts: how long one with nothing in flight keeps polling after its
	// last work before it sleeps until a host sends something [50µs].
	SpinTime time.Duration
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

// Subsystem is one NVM subsystem a Target exports: the namespaces of one
// backing controller or of several. With several, the namespaces are
// numbered across them: a namespace's ID is its ID on its backing plus the
// NN (Identify Controller, the most namespaces) of every backing listed
// before it, so the first backing's namespaces keep their IDs and a
// namespace keeps its ID when others come and go.
type Subsystem struct {
	NQN      string
	Backings []Backing
}

// Target serves NVMe/TCP: it accepts connections, runs the IC exchange
// and Connect, and holds one controller per host association (admin
// queue) over the subsystems' backings. Its methods may be called from
// any goroutine.
type Target struct {
	cfg    Config
	subs   map[string]*subsystem
	groups []*group
	next   atomic.Uint32 // round-robin of I/O queues over groups
	own    *poller.Group // the pollers New started (Config.Pollers nil)

	mu     sync.Mutex
	ctrls  map[uint16]*controller
	nextID uint16
	lns    []net.Listener
	conns  map[*conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// subsystem is a Subsystem with what the target derives from it.
type subsystem struct {
	nqn     string
	parts   []*part
	idc     []byte // the first backing's Identify Controller
	nn      uint32 // NN hosts see: the sum of the backings'
	oncs    uint16
	vwc     bool
	maxXfer int // bytes
	mdts    uint8
	mems    []*dma.Allocator // the backings' allocators, each once

	tab    atomic.Pointer[nsTable] // copy on write (Rescan); read by poll groups
	scanMu sync.Mutex              // serializes rescans
}

// part is one backing of a subsystem.
type part struct {
	b      Backing
	mem    int     // index in subsystem.mems
	base   uint32  // added to the backing's NSIDs
	nn     uint32  // the backing's NN
	queues []Queue // one per poll group: its poller's queue pair
}

// nsTable is the set of namespaces a subsystem exports at one time.
type nsTable struct {
	byID map[uint32]*nsInfo
	ids  []uint32 // sorted
}

type nsInfo struct {
	id      uint32 // as hosts see it
	part    *part
	ns      Namespace
	idn     []byte // Identify Namespace as hosts see it
	bshift  uint
	blocks  uint64
	descrip []byte        // Namespace Identification Descriptor list
	devs    []*ddi.Device // per poll group (on its Queue)
	// Pieces the target sends the backing (so ddi never splits): at most
	// maxBlocks blocks, never across a multiple of stripe (NOIOB).
	maxBlocks uint64
	stripe    uint64
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
	// maxDelete is the most blocks one deallocate piece covers (what
	// ddi sends in one command).
	maxDelete = 1 << 16
)

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("target: closed")

// New returns a target exporting subs. It reads each backing's identity
// and namespaces, and puts a poll group on every poller of
// Config.Pollers, or of a poller.Group it starts over the backings'
// controllers.
func New(cfg Config, subs ...Subsystem) (_ *Target, err error) {
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
	if cfg.PollGroups == 0 {
		cfg.PollGroups = 1
	}
	if cfg.QueueDepth == 0 {
		cfg.QueueDepth = 128
	}
	if cfg.SpinTime == 0 {
		cfg.SpinTime = 50 * time.Microsecond
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
	case cfg.PollGroups < 1 || cfg.PollGroups > 1024:
		return nil, fmt.Errorf("target: %d poll groups", cfg.PollGroups)
	case cfg.QueueDepth < 2:
		return nil, fmt.Errorf("target: queue depth %d", cfg.QueueDepth)
	}
	for _, h := range cfg.AllowHosts {
		if err := fabrics.CheckNQN(h); err != nil {
			return nil, fmt.Errorf("target: allowed host: %w", err)
		}
	}
	t := &Target{cfg: cfg, subs: map[string]*subsystem{}, ctrls: map[uint16]*controller{}, nextID: 1, conns: map[*conn]struct{}{}}
	pg := cfg.Pollers
	if pg == nil {
		if pg, err = t.startPollers(subs); err != nil {
			return nil, err
		}
		t.own = pg
	}
	for i, p := range pg.Pollers() {
		t.groups = append(t.groups, newGroup(t, i, p))
	}
	defer func() {
		if err != nil {
			t.closeQueues()
		}
	}()
	for _, s := range subs {
		if err := fabrics.CheckNQN(s.NQN); err != nil {
			return nil, fmt.Errorf("target: subsystem: %w", err)
		}
		if s.NQN == fabrics.DiscoveryNQN || t.subs[s.NQN] != nil {
			return nil, fmt.Errorf("target: subsystem nqn %s used twice or reserved", s.NQN)
		}
		sub, err := t.newSubsystem(s)
		if err != nil {
			return nil, fmt.Errorf("target: subsystem %s: %w", s.NQN, err)
		}
		t.subs[s.NQN] = sub
	}
	for _, g := range t.groups {
		if err := g.open(); err != nil {
			return nil, fmt.Errorf("target: %w", err)
		}
	}
	for i, g := range t.groups {
		if err := g.start(); err != nil {
			for _, g := range t.groups[:i] {
				g.stop()
			}
			return nil, fmt.Errorf("target: %w", err)
		}
	}
	return t, nil
}

// startPollers starts the target's own pollers over the backings'
// controllers (Config.Pollers nil).
func (t *Target) startPollers(subs []Subsystem) (*poller.Group, error) {
	var ctrls []*nvme.Controller
	for _, s := range subs {
		for _, b := range s.Backings {
			if c := b.Controller(); c != nil && !slices.Contains(ctrls, c) {
				ctrls = append(ctrls, c)
			}
		}
	}
	if len(ctrls) == 0 {
		return nil, errors.New("target: no backing controller")
	}
	cpus := t.cfg.CPUs
	if len(cpus) == 0 {
		all, err := cpuset.Allowed()
		if err != nil {
			return nil, fmt.Errorf("target: %w", err)
		}
		// More pollers than CPUs share them round robin: poller i on
		// CPU i mod n would pin two to one CPU, which poller.New
		// refuses; so at most one per CPU.
		cpus = all[:min(t.cfg.PollGroups, len(all))]
	}
	g, err := poller.New(ctrls, &poller.Options{CPUs: cpus, QueueDepth: t.cfg.QueueDepth, SpinTime: t.cfg.SpinTime})
	if err != nil {
		return nil, fmt.Errorf("target: start pollers: %w", err)
	}
	return g, nil
}

// closeQueues undoes a New that did not finish: the backing queues'
// devices, the groups' epoll sets, the target's own pollers.
func (t *Target) closeQueues() {
	for _, s := range t.subs {
		for _, p := range s.parts {
			for _, q := range p.queues {
				_ = q.Close()
			}
		}
	}
	for _, g := range t.groups {
		g.closeFDs()
	}
	if t.own != nil {
		_ = t.own.Close()
	}
}

func (t *Target) newSubsystem(s Subsystem) (*subsystem, error) {
	if len(s.Backings) == 0 {
		return nil, errors.New("no backing")
	}
	sub := &subsystem{nqn: s.NQN, oncs: 1 << 2}
	x := t.cfg.MaxTransfer
	var base uint32
	for i, b := range s.Backings {
		idc := b.IdentifyController()
		if len(idc) < spec.IdentifySize {
			return nil, fmt.Errorf("backing %d: identify controller: %d bytes", i, len(idc))
		}
		if i == 0 {
			sub.idc = idc
		}
		nn := binary.LittleEndian.Uint32(idc[0x204:])
		if nn == 0 || uint64(base)+uint64(nn) >= 0xffffffff {
			return nil, fmt.Errorf("backing %d: NN %d", i, nn)
		}
		p := &part{b: b, base: base, nn: nn, mem: slices.Index(sub.mems, b.Memory())}
		if p.mem < 0 {
			p.mem = len(sub.mems)
			sub.mems = append(sub.mems, b.Memory())
		}
		base += nn
		if idc[0x20d]&1 != 0 {
			sub.vwc = true
		}
		sub.oncs &= binary.LittleEndian.Uint16(idc[0x208:]) // DSM only if every backing has it
		if m := b.MaxTransfer(); m > 0 {
			x = min(x, m)
		}
		for _, g := range t.groups {
			q, err := b.NewQueue(g.p)
			if err != nil {
				for _, q := range p.queues {
					_ = q.Close()
				}
				return nil, fmt.Errorf("backing %d: %w", i, err)
			}
			p.queues = append(p.queues, q)
		}
		sub.parts = append(sub.parts, p)
	}
	sub.nn = base
	for sub.mdts = 0; mpsMin<<(sub.mdts+1) <= x && sub.mdts < 15; sub.mdts++ {
	}
	sub.maxXfer = mpsMin << sub.mdts
	tab := &nsTable{byID: map[uint32]*nsInfo{}}
	for _, p := range sub.parts {
		nss, err := p.b.Namespaces()
		if err != nil {
			return nil, err
		}
		for _, ns := range nss {
			info, err := sub.newNS(p, ns)
			if err != nil {
				return nil, err
			}
			tab.add(info)
		}
	}
	sub.tab.Store(tab)
	return sub, nil
}

// newNS describes backing namespace ns of p as the subsystem exports it,
// with a ddi device on each poll group's queue.
func (s *subsystem) newNS(p *part, ns Namespace) (*nsInfo, error) {
	bs := ns.BlockSize()
	if bs < 512 || bs&(bs-1) != 0 || bs > s.maxXfer {
		return nil, fmt.Errorf("namespace %d: block size %d", ns.ID(), bs)
	}
	bid := ns.ID()
	if bid == 0 || bid > p.nn {
		return nil, fmt.Errorf("namespace id %d beyond NN %d", bid, p.nn)
	}
	raw := ns.IdentifyNamespace()
	if len(raw) < spec.IdentifySize {
		return nil, fmt.Errorf("namespace %d: identify data of %d bytes", bid, len(raw))
	}
	id := p.base + bid
	info := &nsInfo{id: id, part: p, ns: ns, idn: append([]byte(nil), raw[:spec.IdentifySize]...), blocks: ns.Blocks(),
		descrip: nsDescriptors(s.nqn, id)}
	for 1<<info.bshift < bs {
		info.bshift++
	}
	info.maxBlocks = uint64(s.maxXfer / bs)
	if raw[24]&(1<<4) != 0 { // NSFEAT: NOIOB and friends valid
		info.stripe = uint64(binary.LittleEndian.Uint16(raw[0x68:]))
	}
	for _, q := range p.queues {
		d, err := q.Attach(ns)
		if err != nil {
			return nil, fmt.Errorf("namespace %d: %w", bid, err)
		}
		info.maxBlocks = min(info.maxBlocks, uint64(d.MaxBlocks()))
		if d.StripeBlocks() != 0 {
			info.stripe = uint64(d.StripeBlocks())
		}
		info.devs = append(info.devs, d)
	}
	return info, nil
}

// add puts n into the table (before the table is published).
func (t *nsTable) add(n *nsInfo) {
	t.byID[n.id] = n
	i := sort.Search(len(t.ids), func(i int) bool { return t.ids[i] >= n.id })
	t.ids = slices.Insert(t.ids, i, n.id)
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

// ServeConn serves one connection (one queue) and returns at once: a
// goroutine runs the IC exchange and Connect, then serves an admin queue
// itself and hands an I/O queue to a poll group. The target closes c when
// the queue ends. An I/O queue needs c to have a file descriptor (a
// *net.TCPConn or *net.UnixConn).
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

// Close stops the listeners, closes every connection, waits until each
// has released its buffers (in-flight I/O on the backing has completed),
// takes the poll groups off their pollers, unregisters the ddi devices
// and stops the pollers the target started (not Config.Pollers).
func (t *Target) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
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
	for _, g := range t.groups {
		g.stop()
	}
	var errs []error
	for _, s := range t.subs {
		for _, p := range s.parts {
			for _, q := range p.queues {
				if err := q.Close(); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if t.own != nil {
		if err := t.own.Close(); err != nil {
			errs = append(errs, fmt.Errorf("target: stop pollers: %w", err))
		}
	}
	return errors.Join(errs...)
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
			queues: uint16(t.cfg.MaxIOQueues), kato: kato, ioConns: map[uint16]*ioConn{}}
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
	conns := make([]*ioConn, 0, len(c.ioConns))
	for _, q := range c.ioConns {
		conns = append(conns, q)
	}
	c.dead = true
	t.mu.Unlock()
	c.stopKeepAlive()
	for _, q := range conns {
		q.shutdown()
	}
}

// katoGrace is added to KATO before the association ends, for the
// network (as nvmet does). A variable for tests.
var katoGrace = 5 * time.Second
