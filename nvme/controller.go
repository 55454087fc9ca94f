package nvme

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/mmio"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// State is the controller's life-cycle state.
type State uint8

const (
	StateInit      State = iota // being brought up
	StateReady                  // enabled, queues usable
	StateResetting              // being reset: queues wait
	StateFailed                 // could not be brought up or reset
	StateRemoved                // gone from the bus (registers read all ones)
	StateClosed                 // shut down by Close
)

var stateNames = [...]string{"init", "ready", "resetting", "failed", "removed", "closed"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// The controller's epoch packs a generation (bumped when a reset completes
// and the I/O queues must be created again) with the State, so a queue pair
// learns about both from one atomic load.
func makeEpoch(gen uint64, s State) uint64 { return gen<<4 | uint64(s) }
func epochState(e uint64) State            { return State(e & 0xf) }
func epochGen(e uint64) uint64             { return e >> 4 }

// Options configure a controller. The zero value gives the defaults.
type Options struct {
	// IOQueues is how many I/O queue pairs to ask the controller for
	// (Set Features, Number of Queues). Default 16.
	IOQueues int
	// IOQueueDepth is the default number of entries per I/O queue,
	// clamped to CAP.MQES+1. Default 256.
	IOQueueDepth int
	// AdminQueueDepth is the number of admin queue entries. Default 32.
	AdminQueueDepth int
	// MaxTransfer caps the bytes per command below what MDTS allows
	// (and replaces "unlimited"). Default 1 MiB.
	MaxTransfer int
	// CommandTimeout is how long an I/O command may take before it is
	// aborted. Default 30 s.
	CommandTimeout time.Duration
	// AbortTimeout is how long an aborted command may still take before
	// the controller is reset. Default 5 s.
	AbortTimeout time.Duration
	// AdminTimeout bounds each admin command. Default 30 s.
	AdminTimeout time.Duration
	// ShutdownTimeout caps the wait for a normal shutdown at Close
	// (CSTS.SHST complete), which otherwise follows the controller's
	// RTD3E entry latency (at least 5 s; RTD3E may claim up to 71
	// minutes). Default 60 s.
	ShutdownTimeout time.Duration
	// SGL selects Scatter Gather Lists instead of PRPs for I/O data when
	// the controller supports them.
	SGL bool
	// AsyncEvents is how many Asynchronous Event Requests to keep
	// outstanding (capped by the controller's AERL). Default 4; -1 for none.
	AsyncEvents int
	// WatchInterval is how often the background watcher polls the admin
	// queue and CSTS (removal, fatal status). Default 100 ms.
	WatchInterval time.Duration
	// MaxNamespaces caps how many active namespaces are identified at
	// bring-up. Default 1024.
	MaxNamespaces int
	// Logf, if set, receives state changes and recoveries.
	Logf func(format string, args ...any)
	// KeepAliveTimeout, ReconnectDelay and CtrlLossTimeout apply to a
	// controller on a fabric (OpenFabric). KeepAliveTimeout is the KATO
	// of the admin Connect; Keep Alive goes every half of it, and one
	// unanswered for that long reconnects. Default 5 s; negative: none.
	KeepAliveTimeout time.Duration
	// ReconnectDelay is the wait between reconnect attempts after a
	// connection was lost. Default 10 s.
	ReconnectDelay time.Duration
	// CtrlLossTimeout is how long reconnect attempts go on before the
	// controller is given up (StateRemoved, requests fail with
	// ErrRemoved). Default 600 s; negative: forever.
	CtrlLossTimeout time.Duration
	// NoShadowDoorbells keeps every doorbell a register write even when
	// the controller offers Doorbell Buffer Config (OACS bit 8), which
	// the driver otherwise uses for the I/O queues (dbbuf.go).
	NoShadowDoorbells bool
	// OnEvent, if set, is called for each asynchronous event once the
	// driver handled it: read the log page it names (which clears it
	// and lets the next event of its type through), rescanned the
	// namespaces after a Namespace Attribute Changed notice, and armed
	// another Asynchronous Event Request. It runs on the controller's
	// event goroutine, one event at a time; it may call Controller
	// methods but Close (which waits for it), and the next event waits
	// for it to return.
	OnEvent func(AsyncEvent)
	// Interrupts makes the admin queue's interrupt vector wake the
	// watcher when the bus delivers interrupts (InterruptBus; irq.go).
	// I/O queue pairs get a vector with NewInterruptQueuePair.
	Interrupts bool
	// InterruptCoalescing, when set, is sent at bring-up and after every
	// reset (Set Features, Interrupt Coalescing).
	InterruptCoalescing Coalescing
}

func (o *Options) setDefaults() {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	defd := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&o.IOQueues, 16)
	def(&o.IOQueueDepth, 256)
	def(&o.AdminQueueDepth, 32)
	def(&o.MaxTransfer, 1<<20)
	def(&o.MaxNamespaces, 1024)
	defd(&o.CommandTimeout, 30*time.Second)
	defd(&o.AbortTimeout, 5*time.Second)
	defd(&o.AdminTimeout, 30*time.Second)
	defd(&o.WatchInterval, 100*time.Millisecond)
	defd(&o.ShutdownTimeout, 60*time.Second)
	defd(&o.ReconnectDelay, 10*time.Second)
	if o.KeepAliveTimeout == 0 {
		o.KeepAliveTimeout = 5 * time.Second
	}
	if o.CtrlLossTimeout == 0 {
		o.CtrlLossTimeout = 600 * time.Second
	}
	if o.AsyncEvents == 0 {
		o.AsyncEvents = 4
	}
	o.IOQueues = min(o.IOQueues, 65535)
	o.AdminQueueDepth = max(2, min(o.AdminQueueDepth, 4096))
}

// Controller is one NVMe controller.
//
// Any goroutine may call its methods: admin commands are serialized on the
// admin queue. I/O goes through QueuePairs, each owned by one goroutine.
// A background goroutine (the watcher) reaps asynchronous events, sends
// aborts for late commands, resets the controller when asked or when CSTS
// reports a fatal status, and notices removal.
type Controller struct {
	bus  Bus         // PCIe (and the in-process fake): nil on a fabric
	regs mmio.Region // the register window of bus
	fab  Fabric      // a fabric transport: nil on PCIe
	mem  *dma.Allocator
	opts Options
	logf func(string, ...any)

	cap       spec.CAP
	vs        spec.VS
	dstrd     uint8
	pageSize  int
	maxXfer   int
	useSGL    bool
	toutCAP   time.Duration // CAP.TO: CSTS.RDY to clear, or to set without CRTO
	toutReady time.Duration // CSTS.RDY to set after CC.EN: CAP.TO, or CRTO.CRWMT
	ident     *spec.IdentifyController
	ioQueues  int // granted by the controller

	db       dbbuf       // shadow doorbell buffers (dbbuf.go); adminMu
	shadowOn atomic.Bool // db.on, for any goroutine

	epoch atomic.Uint64

	adminMu   sync.Mutex // the admin queue and everything below
	admin     *QueuePair
	adminBufs []*dma.Buffer // every admin buffer, freed at Close
	adminFree []*dma.Buffer // those no command holds
	aers      []*Request
	aborts    []*abortCall // Abort commands outstanding (the watcher's)

	evMu   sync.Mutex
	evQ    []aerEvent   // completed event requests for the event goroutine
	events []AsyncEvent // bounded record of handled events
	evWake chan struct{}

	qmu     sync.Mutex
	qids    []bool // qids[i]: I/O queue i+1 in use
	qpairs  map[*QueuePair]struct{}
	retired []*QueuePair // closed by their owners, memory freed at Close

	scanMu     sync.Mutex // one namespace scan at a time
	nsMu       sync.RWMutex
	namespaces map[uint32]*Namespace
	nsids      []uint32

	resetMu   sync.Mutex
	resetNeed atomic.Uint64 // a reset is pending while the generation is below this
	resetWhy  atomic.Pointer[string]
	abortMu   sync.Mutex
	abortQ    []abortReq // aborts asked for, not yet sent
	wake      chan struct{}
	stop      chan struct{}
	watchWG   sync.WaitGroup
	closeMu   sync.Mutex
	closed    bool

	statMu sync.Mutex
	rstats RecoveryStats

	ka        keepAlive     // fabrics: Keep Alive commands (fabric.go), adminMu
	adminIRQs atomic.Uint64 // admin interrupts that woke the watcher (irq.go)
	adminIRQ  bool          // the admin queue's interrupt wakes the watcher; set before it starts
}

// RecoveryStats count the controller's recoveries. Controller.RecoveryStats
// returns a copy.
type RecoveryStats struct {
	Resets         uint64        // resets completed
	LastResetTime  time.Duration // the last reset, from disabling to ready
	MaxResetTime   time.Duration // the longest reset
	Aborts         uint64        // Abort commands sent for late commands
	AbortsTimedOut uint64        // of them, those that did not complete in AbortTimeout (each reset the controller)
	MaxAborts      int           // the most Abort commands outstanding at once
	AbortLimit     int           // what the controller allows outstanding (ACL+1)
}

// abortReq is an abort a queue pair asked for: the command's queue and
// identifier, and the generation it was issued in (a reset since then
// makes the abort pointless, and the identifier may have been reused).
type abortReq struct {
	sqid, cid uint16
	gen       uint64
}

// abortCall is an Abort command the watcher sent. Its fields are guarded
// by adminMu.
type abortCall struct {
	req  Request
	at   time.Time
	done bool
}

// Open brings up the controller behind bus, using mem for every queue and
// buffer (mem's Mapper must reach the device behind bus). It runs the
// bring-up state machine: read capabilities, disable and wait not ready,
// configure the admin queue, enable and wait ready (each wait bounded by
// CAP.TO), identify the controller, negotiate the number of I/O queues,
// identify the active namespaces, and arm asynchronous events.
//
// On error the bus is left open for the caller to close.
func Open(bus Bus, mem *dma.Allocator, opts *Options) (*Controller, error) {
	c := newController(mem, opts)
	c.bus, c.regs = bus, bus.Registers()
	if bm, ok := bus.(BusMaster); ok {
		if err := bm.SetBusMaster(true); err != nil {
			return nil, fmt.Errorf("nvme: bring-up: bus master enable: %w", err)
		}
	}
	c.enableIRQs() // irq.go: before the admin queue is created
	if err := c.bringUp(bringup); err != nil {
		return nil, err
	}
	return c, nil
}

func newController(mem *dma.Allocator, opts *Options) *Controller {
	c := &Controller{mem: mem, pageSize: 4096, qpairs: map[*QueuePair]struct{}{}, evWake: make(chan struct{}, 1)}
	if opts != nil {
		c.opts = *opts
	}
	c.opts.setDefaults()
	c.logf = c.opts.Logf
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	c.epoch.Store(makeEpoch(0, StateInit))
	return c
}

// bringUp runs the bring-up steps and starts the controller's goroutines.
func (c *Controller) bringUp(steps []step) error {
	c.adminMu.Lock()
	for _, s := range steps {
		if err := s.run(c); err != nil {
			c.setState(StateFailed)
			c.release(c.stopDevice())
			c.adminMu.Unlock()
			return fmt.Errorf("nvme: bring-up: %s: %w", s.name, err)
		}
	}
	c.adminMu.Unlock()
	c.setState(StateReady)
	c.wake = make(chan struct{}, 1)
	c.stop = make(chan struct{})
	c.startAdminIRQ() // irq.go: before the watcher picks its interval
	c.watchWG.Add(2)
	go c.watch()
	go c.eventLoop()
	return nil
}

// A bring-up step is one state of the bring-up state machine. Steps run
// with adminMu held.
type step struct {
	name string
	run  func(*Controller) error
}

var bringup = []step{
	{"read capabilities", (*Controller).readCaps},
	{"disable", (*Controller).disable},
	{"configure admin queue", (*Controller).configureAdmin},
	{"enable", (*Controller).enable},
	{"identify controller", (*Controller).identifyController},
	{"set number of queues", (*Controller).setNumQueues},
	{"configure shadow doorbells", (*Controller).configureShadowDoorbells},
	{"set interrupt coalescing", (*Controller).setCoalescing},
	{"identify namespaces", (*Controller).scanNamespaces},
	{"configure asynchronous events", (*Controller).configureEvents},
	{"arm asynchronous events", (*Controller).armAER},
}

// resetSteps re-run after a controller reset; namespaces and the
// controller data are kept.
var resetSteps = []step{
	{"disable", (*Controller).disable},
	{"configure admin queue", (*Controller).configureAdmin},
	{"enable", (*Controller).enable},
	{"set number of queues", (*Controller).setNumQueues},
	{"configure shadow doorbells", (*Controller).configureShadowDoorbells},
	{"set interrupt coalescing", (*Controller).setCoalescing},
	{"configure asynchronous events", (*Controller).configureEvents},
	{"arm asynchronous events", (*Controller).armAER},
}

// setState moves the controller to s, keeping the generation. Removed
// and Closed are terminal (Closed may still follow Removed); a transition
// out of them is refused and setState reports false.
func (c *Controller) setState(s State) bool { return c.transition(s, 0) }

// transition is setState that also adds genInc to the generation.
func (c *Controller) transition(s State, genInc uint64) bool {
	for {
		e := c.epoch.Load()
		cur := epochState(e)
		if cur == StateClosed || (cur == StateRemoved && s != StateClosed) {
			return false
		}
		if c.epoch.CompareAndSwap(e, makeEpoch(epochGen(e)+genInc, s)) {
			return true
		}
	}
}

// State returns the controller's current state. Any goroutine.
func (c *Controller) State() State { return epochState(c.epoch.Load()) }

// csts reads CSTS through the register window (PCIe only: the checks
// that run on every poll of the admin queue and every watcher pass).
func (c *Controller) csts() spec.CSTS { return spec.CSTS(c.regs.Read32(spec.RegCSTS)) }

func (c *Controller) readCaps() error {
	cap64, err := c.reg64(spec.RegCAP)
	if err != nil {
		return err
	}
	c.cap = spec.CAP(cap64)
	if c.cap == ^spec.CAP(0) {
		return ErrRemoved
	}
	vs, err := c.reg32(spec.RegVS)
	if err != nil {
		return err
	}
	c.vs = spec.VS(vs)
	if c.cap.CSS()&1 == 0 {
		return fmt.Errorf("%w: CAP.CSS %#x: NVM command set not supported", ErrDevice, c.cap.CSS())
	}
	if c.cap.MQES() < 1 {
		return fmt.Errorf("%w: CAP.MQES %d: queues of fewer than 2 entries", ErrDevice, c.cap.MQES())
	}
	if c.cap.MPSMIN() != 0 {
		return fmt.Errorf("%w: CAP.MPSMIN %d: memory pages larger than 4 KiB are not supported", ErrDevice, c.cap.MPSMIN())
	}
	c.pageSize = 4096
	c.dstrd = c.cap.DSTRD()
	// The doorbells of the admin queue must lie in the register window.
	if c.fab == nil && int(spec.CQHeadDoorbell(0, c.dstrd))+4 > c.regs.Len() {
		return fmt.Errorf("%w: CAP.DSTRD %d puts the doorbells outside the %#x-byte register window", ErrDevice, c.dstrd, c.regs.Len())
	}
	c.toutCAP = max(c.cap.TO(), 500*time.Millisecond)
	c.toutReady = c.toutCAP
	if c.cap.CRMS()&1 != 0 {
		// NVMe 2.0 ready timeouts (CAP.CRMS.CRWMS): becoming ready
		// with media (CC.CRIME clear, as the driver enables) may take
		// CRTO.CRWMT, which CAP.TO no longer has to cover.
		v, err := c.reg32(spec.RegCRTO)
		if err != nil {
			return err
		}
		crto := spec.CRTO(v)
		if w := crto.CRWMT(); w > c.toutReady {
			c.toutReady = w
		} else if w < c.toutCAP {
			c.logf("nvme: CRTO.CRWMT %v below CAP.TO %v: waiting CAP.TO", w, c.toutCAP)
		}
	}
	c.logf("nvme: CAP %v VS %v", c.cap, c.vs)
	return nil
}

// waitCSTS polls CSTS until ok returns true, the timeout passes, or the
// device disappears.
func (c *Controller) waitCSTS(what string, ok func(spec.CSTS) bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	sleep := time.Microsecond
	for {
		v, err := c.reg32(spec.RegCSTS)
		if err != nil {
			return err
		}
		s := spec.CSTS(v)
		if s.Removed() {
			return ErrRemoved
		}
		if ok(s) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s: CSTS %v after %v (CAP.TO or CRTO)", ErrTimeout, what, s, timeout)
		}
		time.Sleep(sleep)
		sleep = min(sleep*2, time.Millisecond)
	}
}

func (c *Controller) disable() error {
	v, err := c.reg32(spec.RegCC)
	if err != nil {
		return err
	}
	cc := spec.CC(v)
	if cc.EN() {
		// Enabling in progress: the spec asks to wait for it to finish
		// before clearing EN. A fatal controller never gets there.
		_ = c.waitCSTS("wait ready before disable", func(s spec.CSTS) bool { return s.RDY() || s.CFS() }, c.toutReady)
	}
	if err := c.setReg32(spec.RegCC, uint32(cc.WithEN(false))); err != nil {
		return err
	}
	err = c.waitCSTS("wait not ready", func(s spec.CSTS) bool { return !s.RDY() }, c.toutCAP)
	if err != nil && !errors.Is(err, ErrRemoved) && c.fab == nil {
		// Last resort: reset the function, then try again.
		c.logf("nvme: %v; resetting the function", err)
		if ferr := c.bus.Reset(); ferr == nil {
			c.regs.Write32(spec.RegCC, 0)
			err = c.waitCSTS("wait not ready after function reset", func(s spec.CSTS) bool { return !s.RDY() }, c.toutCAP)
		}
	}
	return err
}

func (c *Controller) configureAdmin() error {
	if c.admin == nil {
		// Bring-up: the limits are known only after identify, so the
		// admin queue uses one page per command (PRP1 + PRP2 cover 8 KiB
		// at most; admin transfers are split to fit).
		c.maxXfer = c.pageSize
		q, err := newQueuePair(c, 0, c.opts.AdminQueueDepth, true)
		if err != nil {
			return err
		}
		c.admin = q
	} else {
		// Reset: the controller is disabled. Keep what it completed
		// (an event, an abort's answer, a command whose caller waits),
		// fail the rest.
		c.admin.reapStale()
		c.admin.failAll(fmt.Errorf("admin queue: %w: controller reset", ErrAborted))
		c.admin.resetRings()
	}
	if c.fab != nil {
		return c.connectAdmin()
	}
	c.configureAdminRings()
	return nil
}

func (c *Controller) enable() error {
	cc := spec.CC(0).WithCSS(0).WithMPS(0).WithAMS(0).WithIOSQES(6).WithIOCQES(4).WithEN(true)
	if err := c.setReg32(spec.RegCC, uint32(cc)); err != nil {
		return err
	}
	err := c.waitCSTS("wait ready", func(s spec.CSTS) bool {
		return s.RDY() || s.CFS()
	}, c.toutReady)
	if err != nil {
		return err
	}
	v, err := c.reg32(spec.RegCSTS)
	if err != nil {
		return err
	}
	if s := spec.CSTS(v); s.CFS() {
		// A fatal controller may also report ready; it processes
		// nothing, so say so now rather than time out an Identify.
		return fmt.Errorf("%w: CSTS.CFS (controller fatal status) set while enabling: CSTS %v", ErrDevice, s)
	}
	return nil
}

func (c *Controller) identifyController() error {
	b, err := c.identify(spec.CNSController, 0, true)
	if err != nil {
		return err
	}
	id, err := spec.ParseIdentifyController(b)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDevice, err)
	}
	if sq, cq := id.SQES, id.CQES; sq&0xf > 6 || sq>>4 < 6 || cq&0xf > 4 || cq>>4 < 4 {
		return fmt.Errorf("%w: SQES %#x CQES %#x do not allow 64-byte SQ and 16-byte CQ entries", ErrDevice, sq, cq)
	}
	c.ident = id
	xfer, unlimited := id.MaxTransfer(c.cap.MinPageSize())
	if unlimited || xfer > c.opts.MaxTransfer || xfer <= 0 {
		xfer = c.opts.MaxTransfer
	}
	c.maxXfer = max(xfer, c.pageSize)
	c.useSGL = c.opts.SGL && id.SupportsSGL()
	return nil
}

func (c *Controller) setNumQueues() error {
	want := uint16(c.opts.IOQueues)
	dw0, err := c.adminSimpleLocked(spec.AdminSetFeatures, 0, uint32(spec.FeatureNumberOfQueues), spec.NumberOfQueues(want, want))
	if err != nil {
		return err
	}
	nsq, ncq := spec.ParseNumberOfQueues(dw0)
	n := min(int(nsq), int(ncq), int(want))
	// Every queue's doorbells must lie inside the register window.
	for c.fab == nil && n > 0 && int(spec.CQHeadDoorbell(uint16(n), c.dstrd))+4 > c.regs.Len() {
		n--
	}
	if n < 1 {
		return fmt.Errorf("%w: controller grants no I/O queues (dword 0 %#x)", ErrDevice, dw0)
	}
	c.ioQueues = n
	c.qmu.Lock()
	if len(c.qids) != n {
		old := c.qids
		c.qids = make([]bool, n)
		copy(c.qids, old)
	}
	c.qmu.Unlock()
	return nil
}

// watch is the controller's background goroutine: every WatchInterval,
// and at once when woken (a reset or an abort asked for), it checks CSTS
// for removal and a fatal status, resets the controller when a reset is
// pending, reaps the admin queue (events, the answers to aborts), resets
// when an abort took longer than AbortTimeout, and sends queued aborts
// while fewer than ACL+1 are outstanding. It never waits for an admin
// command: aborts are sent and reaped asynchronously, so the CSTS checks
// never wait behind one.
func (c *Controller) watch() {
	defer c.watchWG.Done()
	t := time.NewTicker(c.watchInterval()) // irq.go
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		case <-t.C:
		}
		c.watchOnce()
	}
}

// watchOnce is one pass of the watcher.
func (c *Controller) watchOnce() {
	if c.State() != StateReady {
		return
	}
	if c.fab != nil {
		// A fabric controller has no register window to watch: its
		// liveness is the Keep Alive and its connections (a failed
		// one asks for a reconnect).
		if !c.resetPending() && c.adminMu.TryLock() {
			if c.admin != nil {
				c.admin.Poll()
				c.checkAborts()
				c.keepAliveOnce()
			}
			c.adminMu.Unlock()
		}
		if c.resetPending() {
			c.resetFromWatcher()
		}
		return
	}
	s := c.csts()
	switch {
	case s.Removed():
		c.markRemoved("CSTS reads all ones")
		return
	case s.CFS():
		c.logf("nvme: controller fatal status (CSTS %v): resetting", s)
		if err := c.reset("controller fatal status"); err != nil {
			c.logf("nvme: reset after fatal status: %v", err)
		}
		return
	}
	if !c.resetPending() && c.adminMu.TryLock() {
		if c.admin != nil {
			c.admin.Poll()
			c.checkAborts()
		}
		c.adminMu.Unlock()
	}
	if c.resetPending() {
		c.resetFromWatcher()
	}
}

// resetFromWatcher runs the reset a queue pair or the watcher asked for.
func (c *Controller) resetFromWatcher() {
	why := "requested"
	if p := c.resetWhy.Load(); p != nil {
		why = *p
	}
	if err := c.reset(why); err != nil {
		c.logf("nvme: reset (%s): %v", why, err)
	}
}

// checkAborts retires the aborts that completed, asks for a reset when one
// is past AbortTimeout, and sends queued aborts while fewer than ACL+1 are
// outstanding (NVMe Base 2.0, 5.1: more fail with Abort Command Limit
// Exceeded). Queued aborts of an earlier generation are dropped: a reset
// since settled those commands. adminMu held.
func (c *Controller) checkAborts() {
	now := time.Now()
	gen := epochGen(c.epoch.Load())
	live := c.aborts[:0]
	for _, a := range c.aborts {
		switch {
		case a.done:
			continue
		case now.Sub(a.at) > c.opts.AbortTimeout:
			c.statMu.Lock()
			c.rstats.AbortsTimedOut++
			c.statMu.Unlock()
			c.requestReset(gen, fmt.Sprintf("abort (cid %d) got no answer within %v", a.req.Cmd.CDW10>>16, c.opts.AbortTimeout))
		}
		live = append(live, a)
	}
	clear(c.aborts[len(live):])
	c.aborts = live
	if c.resetPending() {
		return
	}
	limit := c.abortLimit()
	c.abortMu.Lock()
	q := c.abortQ
	sent := 0
	for sent < len(q) && len(c.aborts) < limit {
		r := q[sent]
		sent++
		if r.gen != gen {
			continue
		}
		a := &abortCall{at: now}
		a.req.Cmd = spec.Command{Opcode: uint8(spec.AdminAbort), CDW10: uint32(r.sqid) | uint32(r.cid)<<16}
		a.req.Done = func(req *Request) {
			a.done = true
			switch {
			case req.Err != nil:
				c.logf("nvme: abort queue %d cid %d: %v", r.sqid, r.cid, req.Err)
			case req.DW0&1 != 0:
				c.logf("nvme: abort queue %d cid %d: the controller did not abort it", r.sqid, r.cid)
			default:
				c.logf("nvme: abort queue %d cid %d: aborted", r.sqid, r.cid)
			}
		}
		if err := c.admin.Submit(&a.req); err != nil {
			c.logf("nvme: abort queue %d cid %d: %v", r.sqid, r.cid, err)
			continue
		}
		c.aborts = append(c.aborts, a)
	}
	c.abortQ = append(q[:0], q[sent:]...)
	c.abortMu.Unlock()
	if sent > 0 {
		c.admin.Ring()
	}
	c.statMu.Lock()
	c.rstats.Aborts += uint64(sent)
	c.rstats.MaxAborts = max(c.rstats.MaxAborts, len(c.aborts))
	c.statMu.Unlock()
}

// abortLimit is ACL+1, the Abort commands the controller takes at once.
func (c *Controller) abortLimit() int {
	if c.ident == nil {
		return 1
	}
	return int(c.ident.ACL) + 1
}

// markRemoved moves the controller to StateRemoved (once: Removed and
// Closed are terminal) and logs how the driver learned it.
func (c *Controller) markRemoved(how string) {
	if c.setState(StateRemoved) {
		c.logf("nvme: controller removed: %s", how)
		c.kick()
	}
}

// MarkRemoved tells the driver its device is gone or being taken away
// (the transport learned it: a VFIO request interrupt, a surprise-removal
// notice). From then on admin commands fail with ErrRemoved, and every
// queue pair, the next time its owner polls, fails what it holds with
// ErrRemoved and takes no more work. The caller should then Close the
// controller, which skips the shutdown handshake. Any goroutine.
func (c *Controller) MarkRemoved() { c.markRemoved("reported by the transport") }

// Removed reports whether the controller is gone (StateRemoved), and is
// there for transports and callers that poll for it. Any goroutine.
func (c *Controller) Removed() bool { return c.State() == StateRemoved }

// kick wakes the watcher. Any goroutine; never blocks.
func (c *Controller) kick() {
	if c.wake == nil {
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// requestAbort asks the watcher to abort command cid on queue sqid, issued
// in generation gen. Any goroutine; never blocks, never drops: the queue
// holds at most one entry per late command, and the command's own second
// deadline (AbortTimeout later) resets the controller whether or not the
// abort went out.
func (c *Controller) requestAbort(sqid, cid uint16, gen uint64) {
	c.abortMu.Lock()
	c.abortQ = append(c.abortQ, abortReq{sqid: sqid, cid: cid, gen: gen})
	c.abortMu.Unlock()
	c.kick()
}

// requestReset asks the watcher to reset the controller, which is then
// pending until a reset completes after generation gen (the one the
// asker was in step with: a reset that completed since already settled
// what it is about). A pending reset is sticky, supersedes queued aborts,
// and is never dropped. Any goroutine; never blocks.
func (c *Controller) requestReset(gen uint64, reason string) {
	for {
		need := c.resetNeed.Load()
		if need > gen {
			break
		}
		if c.resetNeed.CompareAndSwap(need, gen+1) {
			c.resetWhy.Store(&reason)
			break
		}
	}
	c.kick()
}

// resetPending reports whether a requested reset has not happened yet.
func (c *Controller) resetPending() bool {
	return epochGen(c.epoch.Load()) < c.resetNeed.Load()
}

// RecoveryStats returns the counts of resets and aborts so far. Any
// goroutine.
func (c *Controller) RecoveryStats() RecoveryStats {
	c.statMu.Lock()
	defer c.statMu.Unlock()
	s := c.rstats
	s.AbortLimit = c.abortLimit()
	return s
}

// Reset resets the controller: it disables it (resetting the PCI function
// if it does not stop), brings the admin queue back, and lets every queue
// pair recreate its queues the next time its owner polls. Commands in
// flight are resubmitted then, except those that timed out, which fail
// with ErrTimeout. Nothing is completed twice.
//
// Any goroutine except a queue pair's owner inside a Done callback of an
// admin command. It returns when the controller is ready again.
func (c *Controller) Reset() error { return c.reset("requested") }

func (c *Controller) reset(reason string) error {
	c.resetMu.Lock()
	defer c.resetMu.Unlock()
	switch s := c.State(); s {
	case StateClosed, StateRemoved, StateFailed:
		return fmt.Errorf("reset: controller is %v", s)
	}
	c.logf("nvme: reset: %s", reason)
	start := time.Now()
	c.setState(StateResetting)
	// The reset settles every late command: queued aborts are moot.
	c.abortMu.Lock()
	c.abortQ = c.abortQ[:0]
	c.abortMu.Unlock()
	c.quiesce()
	if c.fab != nil {
		if err := c.reconnect(); err != nil {
			return err
		}
		defer c.adminMu.Unlock() // reconnect returns with it held
		return c.resetDone(start)
	}
	c.adminMu.Lock()
	defer c.adminMu.Unlock()
	for _, s := range resetSteps {
		if err := s.run(c); err != nil {
			if errors.Is(err, ErrRemoved) {
				c.setState(StateRemoved)
				return fmt.Errorf("reset: %s: %w", s.name, err)
			}
			c.setState(StateFailed)
			return fmt.Errorf("reset: %s: %w", s.name, err)
		}
	}
	return c.resetDone(start)
}

// resetDone moves a controller whose reset steps succeeded to
// StateReady in a new generation. adminMu held.
func (c *Controller) resetDone(start time.Time) error {
	// The Abort commands outstanding were failed with the admin queue.
	clear(c.aborts)
	c.aborts = c.aborts[:0]
	if !c.transition(StateReady, 1) {
		return fmt.Errorf("reset: %w", ErrRemoved)
	}
	d := time.Since(start)
	c.statMu.Lock()
	c.rstats.Resets++
	c.rstats.LastResetTime = d
	c.rstats.MaxResetTime = max(c.rstats.MaxResetTime, d)
	c.statMu.Unlock()
	c.logf("nvme: reset done in %v", d)
	return nil
}

// quiesce waits until no queue pair owner is inside its doorbell section
// (ringDoorbells). The epoch has moved on, so any owner entering it from
// now on writes nothing: after quiesce no doorbell of the old epoch
// reaches the controller.
func (c *Controller) quiesce() {
	c.qmu.Lock()
	qs := make([]*QueuePair, 0, len(c.qpairs))
	for q := range c.qpairs {
		qs = append(qs, q)
	}
	c.qmu.Unlock()
	for _, q := range qs {
		for q.ringing.Load() != 0 {
			runtime.Gosched()
		}
	}
}

// NewQueuePair creates an I/O queue pair of depth entries (0 for
// Options.IOQueueDepth; clamped to what CAP.MQES allows). The caller
// becomes its owner. Any goroutine.
func (c *Controller) NewQueuePair(depth int) (*QueuePair, error) {
	return c.newIOQueuePair(depth, false)
}

// newIOQueuePair is NewQueuePair, with an interrupt vector when irq.
func (c *Controller) newIOQueuePair(depth int, irq bool) (*QueuePair, error) {
	if depth <= 0 {
		depth = c.opts.IOQueueDepth
	}
	depth = max(2, min(depth, int(c.cap.MQES())+1, 4096))
	if s := c.State(); s != StateReady {
		return nil, fmt.Errorf("new queue pair: controller is %v", s)
	}
	c.qmu.Lock()
	qid := 0
	for i, used := range c.qids {
		if !used {
			c.qids[i] = true
			qid = i + 1
			break
		}
	}
	c.qmu.Unlock()
	if qid == 0 {
		return nil, fmt.Errorf("new queue pair: all %d I/O queues the controller granted are in use", c.ioQueues)
	}
	q, err := newQueuePair(c, uint16(qid), depth, false)
	if err == nil && irq {
		if err = c.attachVector(q); err != nil {
			q.free_()
		}
	}
	if err == nil {
		err = c.createQueues(q)
		if err != nil {
			q.free_()
		}
	}
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if err != nil {
		c.qids[qid-1] = false
		return nil, err
	}
	c.qpairs[q] = struct{}{}
	return q, nil
}

// retireQueue takes a closed queue pair whose queues may still exist on
// the controller: its memory is freed by release, after stopDevice.
func (c *Controller) retireQueue(q *QueuePair) {
	c.releaseQueue(q)
	c.qmu.Lock()
	c.retired = append(c.retired, q)
	c.qmu.Unlock()
}

func (c *Controller) releaseQueue(q *QueuePair) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if _, ok := c.qpairs[q]; ok {
		delete(c.qpairs, q)
		if int(q.id) <= len(c.qids) {
			c.qids[q.id-1] = false
		}
	}
}

// Close shuts the controller down (CC.SHN normal, waiting for the
// shutdown to complete), frees its DMA memory and closes the bus. Every
// queue pair's owner must have stopped using it; queue pairs not closed
// are freed here. Any goroutine; later calls return nil.
func (c *Controller) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	close(c.stop)
	c.watchWG.Wait()
	c.resetMu.Lock()
	defer c.resetMu.Unlock()
	var errs []error
	if c.State() == StateReady {
		c.qmu.Lock()
		qs := make([]*QueuePair, 0, len(c.qpairs))
		for q := range c.qpairs {
			qs = append(qs, q)
		}
		c.qmu.Unlock()
		for _, q := range qs {
			errs = append(errs, c.deleteQueues(q))
		}
		c.adminMu.Lock()
		if c.fab == nil || c.admin.xerr == nil {
			// (A fabric controller whose admin connection ended is
			// gone already: nothing to shut down.)
			errs = append(errs, c.shutdown())
		}
		c.adminMu.Unlock()
	}
	c.adminMu.Lock()
	stopped := c.stopDevice()
	c.setState(StateClosed)
	c.release(stopped)
	c.adminMu.Unlock()
	if c.fab != nil {
		errs = append(errs, c.fab.Close())
	} else {
		errs = append(errs, c.bus.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nvme: close: %w", err)
	}
	return nil
}

// shutdown performs a normal shutdown (NVMe Base 2.0, 3.6.2). adminMu
// held.
func (c *Controller) shutdown() error {
	v, err := c.reg32(spec.RegCC)
	if err != nil {
		return err
	}
	if err := c.setReg32(spec.RegCC, uint32(spec.CC(v).WithSHN(spec.SHNNormal))); err != nil {
		return err
	}
	return c.waitCSTS("shutdown", func(s spec.CSTS) bool { return s.SHST() == spec.SHSTComplete }, c.shutdownWait())
}

// shutdownWait is how long a normal shutdown may take: RTD3E (the
// controller's own figure, up to 71 minutes), at least 5 s or CAP.TO,
// and at most Options.ShutdownTimeout.
func (c *Controller) shutdownWait() time.Duration {
	timeout := max(c.toutCAP, 5*time.Second)
	if c.ident != nil && c.ident.RTD3E > 0 {
		timeout = max(timeout, time.Duration(c.ident.RTD3E)*time.Microsecond)
	}
	return min(timeout, c.opts.ShutdownTimeout)
}

// stopDevice makes sure the controller can no longer reach host memory,
// before any of it is freed: it disables the controller (CC.EN cleared,
// waiting for CSTS.RDY to clear), resets the function if it does not
// stop, and turns bus mastering off. It reports whether the controller
// is stopped (or gone: a removed device reaches nothing). Called with
// adminMu held, or during bring-up.
func (c *Controller) stopDevice() bool {
	if c.fab != nil {
		// A controller across a fabric reaches no host memory: ending
		// its connections ends the association.
		c.disconnectAll()
		return true
	}
	stopped := false
	wait := max(c.toutCAP, 500*time.Millisecond)
	if c.csts().Removed() {
		stopped = true // registers read all ones: the device is gone
	} else {
		cc := spec.CC(c.regs.Read32(spec.RegCC))
		if cc.EN() {
			c.regs.Write32(spec.RegCC, uint32(cc.WithEN(false).WithSHN(spec.SHNNone)))
		}
		err := c.waitCSTS("disable", func(s spec.CSTS) bool { return !s.RDY() }, wait)
		if err != nil && !errors.Is(err, ErrRemoved) {
			c.logf("nvme: %s: %v; resetting the function", c.name(), err)
			if ferr := c.bus.Reset(); ferr != nil {
				c.logf("nvme: %s: function reset: %v", c.name(), ferr)
			} else {
				c.regs.Write32(spec.RegCC, 0)
				err = c.waitCSTS("disable after function reset", func(s spec.CSTS) bool { return !s.RDY() }, wait)
			}
		}
		stopped = err == nil || errors.Is(err, ErrRemoved)
	}
	if bm, ok := c.bus.(BusMaster); ok {
		if err := bm.SetBusMaster(false); err != nil {
			c.logf("nvme: %s: bus master disable: %v", c.name(), err)
		}
	}
	return stopped
}

// release frees the DMA memory of every queue and admin buffer when the
// controller is stopped (stopDevice). Otherwise the memory stays mapped,
// leaked for good with a log line: a controller that could not be
// disabled may still write to it, and freed memory (its IOVA) could go to
// another buffer, even of another controller sharing the IOVA space.
func (c *Controller) release(stopped bool) {
	if stopped {
		c.releaseAll()
		return
	}
	n := 0
	c.qmu.Lock()
	for q := range c.qpairs {
		n += q.memBytes()
		q.abandon()
	}
	clear(c.qpairs)
	for _, q := range c.retired {
		n += q.memBytes()
		q.abandon()
	}
	c.retired = nil
	c.qmu.Unlock()
	if c.admin != nil {
		n += c.admin.memBytes()
		c.admin.abandon()
		c.admin = nil
	}
	for _, b := range c.adminBufs {
		n += b.Len()
	}
	c.adminBufs, c.adminFree = nil, nil
	n += c.freeShadow(true) // dbbuf.go
	c.logf("nvme: %s: the controller could not be disabled: leaving %d bytes of DMA memory mapped and unused for good", c.name(), n)
}

// name names the controller in log lines: the bus's String (the PCI
// address), else the serial number.
func (c *Controller) name() string {
	if s, ok := c.bus.(fmt.Stringer); ok {
		return s.String()
	}
	if c.fab != nil {
		return c.fab.String()
	}
	if c.ident != nil {
		return "controller " + c.ident.SN
	}
	return "controller"
}

// releaseAll frees the DMA memory of every queue.
func (c *Controller) releaseAll() {
	c.qmu.Lock()
	for q := range c.qpairs {
		q.free_()
	}
	clear(c.qpairs)
	for _, q := range c.retired {
		q.free_()
	}
	c.retired = nil
	c.qmu.Unlock()
	if c.admin != nil {
		c.admin.free_()
		c.admin = nil
	}
	for _, b := range c.adminBufs {
		c.mem.Free(b)
	}
	c.adminBufs, c.adminFree = nil, nil
	c.freeShadow(false) // dbbuf.go
}

// Capabilities returns CAP as read at bring-up.
func (c *Controller) Capabilities() spec.CAP { return c.cap }

// Version returns VS as read at bring-up.
func (c *Controller) Version() spec.VS { return c.vs }

// Identify returns the Identify Controller data read at bring-up.
func (c *Controller) Identify() *spec.IdentifyController { return c.ident }

// MaxTransfer returns the largest transfer in bytes one command may carry:
// MDTS in units of CAP.MPSMIN, capped by Options.MaxTransfer.
func (c *Controller) MaxTransfer() int { return c.maxXfer }

// IOQueues returns how many I/O queue pairs the controller granted.
func (c *Controller) IOQueues() int { return c.ioQueues }

// Memory returns the DMA allocator data buffers must come from.
func (c *Controller) Memory() *dma.Allocator { return c.mem }

// Registers returns the controller's register window (for show-regs
// style tools; the driver owns CC, the doorbells and the admin queue
// registers, so write nothing). A controller on a fabric has none: the
// Region is empty (Len 0); read its properties with Property.
func (c *Controller) Registers() mmio.Region { return c.regs }

// QueueMemory returns the DMA memory in bytes an I/O queue pair of depth
// entries takes on this controller.
func (c *Controller) QueueMemory(depth int) int {
	if c.fab != nil {
		return 0
	}
	return depth*(spec.CommandSize+spec.CompletionSize) + (depth-1)*prpStrideFor(c.maxXfer, c.pageSize)
}
