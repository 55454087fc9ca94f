package nvmetest

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/mmio"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// RegisterSize is the size of the fake's register window (BAR0): the
// controller properties up to 0x1000 and three pages of doorbells.
const RegisterSize = 0x4000

// pageSize is the only memory page size the fake supports (CAP.MPSMIN =
// CAP.MPSMAX = 0).
const pageSize = 4096

// NSConfig describes one namespace of the fake.
type NSConfig struct {
	// Blocks is the size in logical blocks. Default: 64 MiB worth.
	Blocks uint64
	// BlockSize is the logical block size in bytes, a power of two from
	// 512 to 65536. Default 512.
	BlockSize int
	// NOIOB is the optimal I/O boundary in blocks (0: none).
	NOIOB uint16
	// Detached starts the namespace allocated but not attached to the
	// controller (see AttachNamespace).
	Detached bool
}

// Config configures a fake controller. The zero value gives the defaults
// documented on each field.
type Config struct {
	// MQES is CAP.MQES, the largest I/O queue, 0's based. Default 1023.
	MQES uint16
	// MaxQueuePairs is the most I/O queue pairs the controller grants
	// (Set Features, Number of Queues). Default 16.
	MaxQueuePairs int
	// MDTS is the maximum data transfer size as a power of two of 4 KiB
	// pages. 0 means the default 5 (128 KiB); -1 reports MDTS 0 ("no
	// limit") and accepts transfers of up to 16 MiB.
	MDTS int
	// DSTRD is CAP.DSTRD, the doorbell stride (4 << DSTRD bytes).
	DSTRD uint8
	// TO is CAP.TO in 500 ms units. Default 1.
	TO uint8
	// SGL reports SGL support (SGLS) and accepts SGL data block
	// descriptors in I/O commands.
	SGL bool
	// ONCSOff clears ONCS bits from the default set (Compare, Write
	// Uncorrectable, Dataset Management, Write Zeroes, Verify); the
	// commands whose bit is clear fail with Invalid Command Opcode.
	ONCSOff uint16
	// VWC reports a volatile write cache.
	VWC bool
	// Namespaces are the active namespaces, NSIDs 1, 2, ... Default: one
	// namespace of 64 MiB in 512-byte blocks.
	Namespaces []NSConfig
	// Serial, Model and Firmware are the identify strings. Defaults
	// "NVMETEST0001", "gonvme nvmetest controller", "1.0".
	Serial, Model, Firmware string
	// IdentifyController, if set, may rewrite the Identify Controller
	// data (4096 bytes) before it is sent, e.g. to test absurd values. It
	// runs on the device goroutine.
	IdentifyController func(b []byte)
	// IdentifyNamespace, if set, may rewrite the Identify Namespace data
	// of nsid before it is sent. It runs on the device goroutine.
	IdentifyNamespace func(nsid uint32, b []byte)

	// Strictness. The zero values give a device as rude as hardware:
	// completions late and out of order, RDY and SHST transitions that
	// take time. A test that needs an in-order, instant device says so
	// with Latency: Fixed(0) and negative delays.

	// Latency is the time from fetching an I/O command to executing it
	// and posting its completion. Default DefaultLatency.
	Latency Latency
	// Seed seeds the fake's random source (latencies).
	Seed uint64
	// ReadyDelay is the time from CC.EN set to CSTS.RDY set. Default
	// 1 ms; negative for at once.
	ReadyDelay time.Duration
	// DisableDelay is the time from CC.EN cleared to CSTS.RDY clear (the
	// controller stops processing at once). Default 200 µs; negative for
	// at once.
	DisableDelay time.Duration
	// ShutdownDelay is the time CSTS.SHST reports shutdown processing
	// before complete. Default 1 ms; negative for at once.
	ShutdownDelay time.Duration
	// CRWMT, when set, makes the controller report NVMe 2.0 ready
	// timeouts: CAP.CRMS.CRWMS and a CRTO register whose CRWMT (and
	// CRIMT) is this, rounded up to 500 ms. ReadyDelay may then exceed
	// CAP.TO up to it.
	CRWMT time.Duration
	// NoLogOffsets clears LPA bit 2 (extended data for Get Log Page):
	// a log page offset or NUMDU other than 0 is then Invalid Field in
	// Command and a host error.
	NoLogOffsets bool
	// NoDoorbellBuffer clears OACS bit 8: Doorbell Buffer Config (shadow
	// doorbells, dbbuf.go) fails with Invalid Command Opcode.
	NoDoorbellBuffer bool
	// Vectors is the number of interrupt vectors (eventfds, irq.go).
	// Default DefaultVectors; negative for none.
	Vectors int
}

func (cfg *Config) setDefaults() error {
	if cfg.MQES == 0 {
		cfg.MQES = 1023
	}
	if cfg.MaxQueuePairs <= 0 {
		cfg.MaxQueuePairs = 16
	}
	if cfg.MaxQueuePairs > 65535 {
		return fmt.Errorf("nvmetest: %d queue pairs: at most 65535", cfg.MaxQueuePairs)
	}
	switch {
	case cfg.MDTS == 0:
		cfg.MDTS = 5
	case cfg.MDTS < -1 || cfg.MDTS > 12:
		return fmt.Errorf("nvmetest: MDTS %d out of range (-1 to 12)", cfg.MDTS)
	}
	if cfg.TO == 0 {
		cfg.TO = 1
	}
	if cfg.Vectors == 0 {
		cfg.Vectors = DefaultVectors
	}
	if cfg.DSTRD > 10 {
		return fmt.Errorf("nvmetest: DSTRD %d leaves no doorbells in a %#x-byte window", cfg.DSTRD, RegisterSize)
	}
	// Every granted queue's doorbells must fit in the window.
	for cfg.MaxQueuePairs > 0 && int(spec.CQHeadDoorbell(uint16(cfg.MaxQueuePairs), cfg.DSTRD))+4 > RegisterSize {
		cfg.MaxQueuePairs--
	}
	if cfg.MaxQueuePairs == 0 {
		return fmt.Errorf("nvmetest: DSTRD %d leaves no I/O queue doorbells", cfg.DSTRD)
	}
	if len(cfg.Namespaces) == 0 {
		cfg.Namespaces = []NSConfig{{}}
	}
	for i := range cfg.Namespaces {
		ns := &cfg.Namespaces[i]
		if ns.BlockSize == 0 {
			ns.BlockSize = 512
		}
		if ns.BlockSize < 512 || ns.BlockSize > 65536 || ns.BlockSize&(ns.BlockSize-1) != 0 {
			return fmt.Errorf("nvmetest: namespace %d: block size %d is not a power of two from 512 to 65536", i+1, ns.BlockSize)
		}
		if ns.Blocks == 0 {
			ns.Blocks = uint64(64<<20) / uint64(ns.BlockSize)
		}
		if ns.Blocks*uint64(ns.BlockSize) > 1<<32 {
			return fmt.Errorf("nvmetest: namespace %d: %d blocks of %d bytes: more than 4 GiB of RAM", i+1, ns.Blocks, ns.BlockSize)
		}
	}
	if cfg.Serial == "" {
		cfg.Serial = "NVMETEST0001"
	}
	if cfg.Model == "" {
		cfg.Model = "gonvme nvmetest controller"
	}
	if cfg.Firmware == "" {
		cfg.Firmware = "1.0"
	}
	if cfg.Latency == nil {
		cfg.Latency = DefaultLatency
	}
	defDelay := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	defDelay(&cfg.ReadyDelay, time.Millisecond)
	defDelay(&cfg.DisableDelay, 200*time.Microsecond)
	defDelay(&cfg.ShutdownDelay, time.Millisecond)
	to := time.Duration(cfg.TO) * 500 * time.Millisecond
	if max(cfg.DisableDelay, cfg.ShutdownDelay) >= to || cfg.ReadyDelay >= max(to, cfg.crwmt()) {
		return fmt.Errorf("nvmetest: RDY and SHST delays must stay below CAP.TO (%v; CRTO.CRWMT %v for ReadyDelay)", to, cfg.crwmt())
	}
	return nil
}

// crwmt returns CRWMT rounded up to 500 ms units (0 when not set).
func (cfg *Config) crwmt() time.Duration {
	u := (cfg.CRWMT + 500*time.Millisecond - 1) / (500 * time.Millisecond)
	return min(u, 0xffff) * 500 * time.Millisecond
}

// mdtsBytes returns the largest transfer the fake accepts.
func (cfg *Config) mdtsBytes() int {
	if cfg.MDTS < 0 {
		return 16 << 20
	}
	return pageSize << cfg.MDTS
}

// Stats are the fake's counters, a snapshot taken by Controller.Stats.
type Stats struct {
	Admin [256]uint64 // admin commands fetched, by opcode
	IO    [256]uint64 // I/O commands fetched, by opcode

	Enables      uint64 // CC.EN 0 -> 1 transitions that made the controller ready
	Resets       uint64 // controller resets: CC.EN 1 -> 0 while enabled, and function resets
	FuncResets   uint64 // Bus.Reset calls
	Shutdowns    uint64 // CC.SHN shutdowns completed
	DMAFaults    uint64 // device accesses to IOVAs nothing is mapped at
	FUA          uint64 // I/O commands with Force Unit Access set
	SGL          uint64 // I/O commands whose data pointer was an SGL
	BadDoorbells uint64 // doorbell writes with a value outside the queue

	Injected    uint64 // completions with an injected status (InjectStatus)
	Dropped     uint64 // completions withheld (DropCompletion, Lose)
	Bogus       uint64 // completions with a CID not outstanding (BogusCID)
	Duplicated  uint64 // completions posted twice (DuplicateCID)
	BadSQHeads  uint64 // completions with an SQ head >= the queue size (BadSQHead)
	Fatal       uint64 // FatalStatus calls delivered
	AbortsFound uint64 // Abort commands that found the command and aborted it
	AbortsMiss  uint64 // Abort commands that did not (dword 0 bit 0 set)
	Events      uint64 // asynchronous events delivered
	EventsOff   uint64 // events not sent: Asynchronous Event Configuration disables them
	EventsLost  uint64 // events dropped: too many waiting for the host

	DoorbellBufferConfigs uint64 // Doorbell Buffer Config commands that succeeded
	DoorbellWakes         uint64 // sleeping shadow-doorbell queues woken by an MMIO doorbell write
}

// Commands returns the number of I/O commands with opcode op fetched.
func (s Stats) Commands(op spec.Opcode) uint64 { return s.IO[op] }

// AdminCommands returns the number of admin commands with opcode op fetched.
func (s Stats) AdminCommands(op spec.Opcode) uint64 { return s.Admin[op] }

// TotalIO returns the number of I/O commands fetched.
func (s Stats) TotalIO() uint64 {
	var n uint64
	for _, v := range s.IO {
		n += v
	}
	return n
}

type counters struct {
	admin, io                                                          [256]atomic.Uint64
	enables, resets, funcResets, shutdowns, dmaFaults, fua, sgl, badDB atomic.Uint64
	injected, dropped, bogus, duplicated, badHeads, fatal              atomic.Uint64
	abortsFound, abortsMiss, events, eventsOff, eventsLost             atomic.Uint64
	dbbufConfigs, dbWakes                                              atomic.Uint64
}

// Controller is an in-process NVMe controller: registers in an anonymous
// mapping, queues and data in the driver's DMA memory reached through a
// dma.SoftMapper, storage in RAM, and one goroutine playing the device.
//
// It satisfies package nvme's Bus interface (Registers, Reset, Close)
// without importing it. Any goroutine may call its methods.
type Controller struct {
	cfg     Config
	mapper  *dma.SoftMapper
	regMem  []byte
	regs    mmio.Region
	cap     spec.CAP
	oncs    uint16
	maxXfer int

	// Control calls from other goroutines, run by the device goroutine.
	ctl     chan func()
	ctlN    atomic.Int32
	removed atomic.Bool
	stall   atomic.Int64 // monotonic ns until which nothing is processed

	stop      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	closeErr  error

	cnt  counters
	herr hostErrs

	dev device // owned by the device goroutine
}

var clockBase = time.Now()

func now() int64 { return int64(time.Since(clockBase)) }

// New creates a controller and starts its device goroutine. Close stops it.
func New(cfg Config) (*Controller, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	mem, err := syscall.Mmap(-1, 0, RegisterSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("nvmetest: mmap register window: %w", err)
	}
	c := &Controller{
		cfg:     cfg,
		mapper:  dma.NewSoftMapper(),
		regMem:  mem,
		regs:    mmio.New(mem),
		ctl:     make(chan func(), 16),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		maxXfer: cfg.mdtsBytes(),
	}
	c.oncs = (spec.ONCSCompare | spec.ONCSWriteUncorrectable | spec.ONCSDatasetManagement |
		spec.ONCSWriteZeroes | spec.ONCSVerify) &^ cfg.ONCSOff
	c.cap = spec.CAP(uint64(cfg.MQES) |
		1<<16 | // CQR: contiguous queues required
		uint64(cfg.TO)<<24 |
		uint64(cfg.DSTRD)<<32 |
		uint64(spec.CAPCSSNVM)<<37) // MPSMIN = MPSMAX = 0: 4 KiB pages
	if cfg.CRWMT > 0 {
		c.cap |= 1 << 59 // CRMS.CRWMS: ready with media timeouts in CRTO
	}
	c.dev.init(c)
	c.powerOn()
	go c.run()
	return c, nil
}

// powerOn puts the registers in their reset state. Device goroutine (or
// before it starts).
func (c *Controller) powerOn() {
	for off := uintptr(0); off < RegisterSize; off += 4 {
		c.regs.Write32(off, 0)
	}
	c.regs.Write64(spec.RegCAP, uint64(c.cap))
	c.regs.Write32(spec.RegVS, uint32(spec.VS1_4))
	if u := uint32(c.cfg.crwmt() / (500 * time.Millisecond)); u > 0 {
		c.regs.Write32(spec.RegCRTO, u<<16|u)
	}
	c.dev.poisonDoorbells()
}

// Mapper returns the IOMMU the fake reaches host memory through. Build the
// driver's dma.Allocator on it: the fake reads and writes only what is
// mapped there, and a command pointing anywhere else completes with Data
// Transfer Error (counted in Stats.DMAFaults). Unmapping memory that holds
// a queue the controller can still reach is a host error (HostErrors).
func (c *Controller) Mapper() dma.Mapper { return checkedMapper{c.mapper, c} }

// checkedMapper is the SoftMapper with a check of every Unmap.
type checkedMapper struct {
	*dma.SoftMapper
	c *Controller
}

func (m checkedMapper) Unmap(b []byte, iova dma.IOVA) error {
	_ = m.c.call(func() { m.c.dev.checkUnmap(uint64(iova), len(b)) })
	return m.SoftMapper.Unmap(b, iova)
}

// SetBusMaster turns bus mastering (the PCI Command register's Bus Master
// Enable) on or off: while off the device reaches no host memory. It is
// on after New. Part of package nvme's optional bus interface. Any
// goroutine.
func (c *Controller) SetBusMaster(on bool) error {
	return c.call(func() { c.dev.bme = on })
}

// SoftMapper returns the same mapper as Mapper, with its concrete type.
func (c *Controller) SoftMapper() *dma.SoftMapper { return c.mapper }

// Registers returns the register window. It stays valid until Close. Part
// of package nvme's Bus interface.
func (c *Controller) Registers() mmio.Region { return c.regs }

// Config returns the configuration with the defaults filled in.
func (c *Controller) Config() Config { return c.cfg }

// MaxTransfer returns the largest transfer in bytes the fake accepts in one
// command (MDTS).
func (c *Controller) MaxTransfer() int { return c.maxXfer }

// Reset is a function level reset: every register returns to its
// power-on value, every queue and held command is forgotten, and the
// storage is kept. It counts in Stats.Resets and FuncResets. Part of
// package nvme's Bus interface. A removed controller returns an error.
func (c *Controller) Reset() error {
	if c.removed.Load() {
		return errors.New("nvmetest: function reset: controller removed")
	}
	var wedged bool
	err := c.call(func() {
		if wedged = c.dev.wedged; wedged {
			return
		}
		c.dev.disable(now())
		c.dev.finishDisable()
		c.powerOn()
		c.dev.lastCC = 0
		c.dev.fatalEnable = 0
		c.cnt.resets.Add(1)
		c.cnt.funcResets.Add(1)
	})
	if err == nil && wedged {
		err = errors.New("nvmetest: function reset: the device does not respond (Wedge)")
	}
	return err
}

// Close stops the device goroutine and unmaps the register window. It is
// the last use of the Registers: package nvme's Controller.Close calls it
// after its own shutdown. Calling it again returns nil.
func (c *Controller) Close() error {
	c.closeOnce.Do(func() {
		close(c.stop)
		<-c.stopped
		c.closeIRQs()
		c.regs = mmio.Region{}
		c.closeErr = syscall.Munmap(c.regMem)
		c.regMem = nil
	})
	return c.closeErr
}

// call runs f on the device goroutine and waits for it.
func (c *Controller) call(f func()) error {
	done := make(chan struct{})
	select {
	case c.ctl <- func() { f(); close(done) }:
	case <-c.stopped:
		return errors.New("nvmetest: controller closed")
	}
	c.ctlN.Add(1)
	select {
	case <-done:
		return nil
	case <-c.stopped:
		return errors.New("nvmetest: controller closed")
	}
}

// Stats returns a snapshot of the counters. Any goroutine.
func (c *Controller) Stats() Stats {
	var s Stats
	for i := range s.Admin {
		s.Admin[i] = c.cnt.admin[i].Load()
		s.IO[i] = c.cnt.io[i].Load()
	}
	s.Enables = c.cnt.enables.Load()
	s.Resets = c.cnt.resets.Load()
	s.FuncResets = c.cnt.funcResets.Load()
	s.Shutdowns = c.cnt.shutdowns.Load()
	s.DMAFaults = c.cnt.dmaFaults.Load()
	s.FUA = c.cnt.fua.Load()
	s.SGL = c.cnt.sgl.Load()
	s.BadDoorbells = c.cnt.badDB.Load()
	s.Injected = c.cnt.injected.Load()
	s.Dropped = c.cnt.dropped.Load()
	s.Bogus = c.cnt.bogus.Load()
	s.Duplicated = c.cnt.duplicated.Load()
	s.BadSQHeads = c.cnt.badHeads.Load()
	s.Fatal = c.cnt.fatal.Load()
	s.AbortsFound = c.cnt.abortsFound.Load()
	s.AbortsMiss = c.cnt.abortsMiss.Load()
	s.Events = c.cnt.events.Load()
	s.EventsOff = c.cnt.eventsOff.Load()
	s.EventsLost = c.cnt.eventsLost.Load()
	s.DoorbellBufferConfigs = c.cnt.dbbufConfigs.Load()
	s.DoorbellWakes = c.cnt.dbWakes.Load()
	return s
}

// Idle spinning: this many empty passes before yielding the processor, and
// this many before sleeping between passes.
const (
	spinPasses  = 200
	yieldPasses = 20000
	idleSleep   = 50 * time.Microsecond
)

// run is the device goroutine.
func (c *Controller) run() {
	defer close(c.stopped)
	idle := 0
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		if c.ctlN.Load() > 0 {
			c.drainControl()
		}
		if c.removed.Load() {
			c.fillRemoved()
			time.Sleep(idleSleep)
			continue
		}
		if until := c.stall.Load(); until != 0 {
			if now() < until {
				time.Sleep(idleSleep)
				continue
			}
			c.stall.Store(0)
		}
		if c.dev.step() {
			idle = 0
			continue
		}
		idle++
		if idle >= yieldPasses && c.dev.busy() {
			idle = spinPasses
		}
		switch {
		case idle < spinPasses:
		case idle < yieldPasses:
			runtime.Gosched()
		default:
			time.Sleep(idleSleep)
		}
	}
}

func (c *Controller) drainControl() {
	for {
		select {
		case f := <-c.ctl:
			c.ctlN.Add(-1)
			f()
		default:
			return
		}
	}
}

// fillRemoved makes every register read all ones, as a PCIe read from a
// device that left the bus does. Writes the driver makes afterwards are
// overwritten on the next pass.
func (c *Controller) fillRemoved() {
	for off := uintptr(0); off < RegisterSize; off += 4 {
		c.regs.Write32(off, 0xffffffff)
	}
}

// translate is the device's only way into host memory. A fault is counted.
func (c *Controller) translate(iova uint64, n int) ([]byte, bool) {
	if !c.dev.bme {
		c.cnt.dmaFaults.Add(1)
		return nil, false
	}
	b, err := c.mapper.Translate(dma.IOVA(iova), n)
	if err != nil {
		c.cnt.dmaFaults.Add(1)
		return nil, false
	}
	return b, true
}
