package ddi

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme"
)

// Edev is a device number (dev_t, b_edev): it names one registered
// namespace of one controller. Its major number is the registration (one
// per Register call, never reused); its minor number is the namespace ID.
// The zero Edev names no device.
type Edev uint64

// Makedevice returns the Edev with the given major and minor numbers, as
// makedevice(9F).
func Makedevice(major, minor uint32) Edev { return Edev(major)<<32 | Edev(minor) }

// Major returns the major number (getmajor(9F)): the registration.
func (d Edev) Major() uint32 { return uint32(d >> 32) }

// Minor returns the minor number (getminor(9F)): the namespace ID.
func (d Edev) Minor() uint32 { return uint32(d) }

// String formats the device as "major,minor".
func (d Edev) String() string { return fmt.Sprintf("%d,%d", d.Major(), d.Minor()) }

// Submitter gets a request to a queue pair of one controller, the one the
// registered namespace belongs to. Submit has the contract of
// nvme.QueuePair.Submit: nil means the request was accepted and its Done
// will be called exactly once, later or before Submit returns; an error
// means it was not accepted and Done will not be called.
//
// Done (and so Biodone and every Iodone of the buffers it completes) runs
// on whichever goroutine the Submitter runs completions on: the caller's
// with SyncSubmitter, a poller's with package poller. Strategy calls
// Submit from completion goroutines too (the next piece of a split); a
// Submitter whose Done may run inside its own Submit (SyncSubmitter) gets
// no Submit from inside that Done.
//
// Submit may refuse a request for want of room with an error matching
// syscall.EAGAIN (package poller's ErrBusy does): Strategy then waits for
// room for the rest of an accepted transfer, and refuses a transfer whose
// first command finds none (see Device.Strategy). Any other error refuses
// the request for good.
//
// A Submitter may also implement
//
//	interface{ MaxTransfer() int }
//
// (SyncSubmitter does) to report the most bytes one request may carry on
// its queue pairs; Strategy then splits at that size too.
type Submitter interface {
	Submit(r *nvme.Request) error
}

type maxTransferer interface{ MaxTransfer() int }

// SyncSubmitter is the synchronous completion path: Submit hands the
// request to its queue pair and polls the queue pair in the caller's
// goroutine until nothing is outstanding on it, so the request's Done (and
// the Iodone or Biowait wake-up of the buffers it completes) has run when
// Submit returns.
//
// The SyncSubmitter owns its queue pair: nothing else may use the queue
// pair while the SyncSubmitter does. Any goroutine may call Submit; a mutex
// serializes the calls (and hands ownership of the queue pair from one
// caller to the next). Submit must not be called from a Done running
// inside its own Submit (it would deadlock); Strategy never does this,
// because it completes a buffer only after the Submit calls for its
// pieces returned.
type SyncSubmitter struct {
	mu sync.Mutex
	qp *nvme.QueuePair
}

// NewSyncSubmitter returns a SyncSubmitter over qp. The caller gives up
// ownership of qp until it stops using the SyncSubmitter.
func NewSyncSubmitter(qp *nvme.QueuePair) *SyncSubmitter { return &SyncSubmitter{qp: qp} }

// QueuePair returns the queue pair.
func (s *SyncSubmitter) QueuePair() *nvme.QueuePair { return s.qp }

// MaxTransfer returns the queue pair's MaxTransfer.
func (s *SyncSubmitter) MaxTransfer() int { return s.qp.MaxTransfer() }

// Submit submits r and polls until the queue pair has nothing in flight or
// waiting, r's completion included. It does not look at r after
// submitting it: r's Done may already have freed or reused it.
func (s *SyncSubmitter) Submit(r *nvme.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.qp.Submit(r); err != nil {
		return err
	}
	for idle := 0; s.qp.InFlight()+s.qp.Waiting() > 0; {
		if s.qp.Poll() > 0 {
			idle = 0
		} else if idle++; idle%64 == 0 {
			runtime.Gosched()
		}
	}
	return nil
}

// Option configures a registration.
type Option func(*Device) error

// WithMaxTransfer caps the bytes per command below what the namespace
// (MDTS) and the Submitter allow: Strategy splits at n (rounded down to
// whole blocks).
func WithMaxTransfer(n int) Option {
	return func(d *Device) error {
		if n < d.ns.BlockSize() {
			return fmt.Errorf("ddi: max transfer %d is less than one %d-byte block", n, d.ns.BlockSize())
		}
		d.maxBlocks = min(d.maxBlocks, uint32(n/d.ns.BlockSize()))
		return nil
	}
}

// WithMaxChildren caps at n (>= 1) the pieces of one transfer Strategy
// has in flight at once (default DefaultMaxChildren): a transfer holds at
// most n headers, and the header of a piece that completes carries the
// next piece.
func WithMaxChildren(n int) Option {
	return func(d *Device) error {
		if n < 1 {
			return fmt.Errorf("ddi: max children %d: want at least 1", n)
		}
		d.maxChildren = n
		return nil
	}
}

// WithPool makes Strategy take the headers of its pieces from p instead of
// the default pool.
func WithPool(p *Pool) Option {
	return func(d *Device) error {
		if p == nil {
			return errors.New("ddi: nil pool")
		}
		d.pool = p
		return nil
	}
}

// Device is a registered namespace: its geometry, the Submitter that gets
// its requests to the controller, and the splitting limits. It is immutable
// after Register; any goroutine may use it.
type Device struct {
	edev      Edev
	ns        *nvme.Namespace
	sub       Submitter
	mem       *dma.Allocator
	pool      *Pool // nil: the default pool at the time of each split
	bsize     int
	blocks    uint64
	noiob     uint32 // stripe boundary in blocks, 0 none
	maxBlocks uint32 // per data command
	maxDelete uint32 // per deallocate command

	maxChildren int // pieces of one transfer in flight at once

	strategies, pieces, failed, refused, parked, busyWaits atomic.Uint64
}

// DeviceStats are the counters of a Device.
type DeviceStats struct {
	Strategies uint64 // buffers passed to Strategy
	Pieces     uint64 // commands submitted (one per clone, or the buffer's own)
	Failed     uint64 // buffers Strategy delivered with an error (BError), refusals included
	Refused    uint64 // buffers refused before anything was sent: no room in the Submitter (EAGAIN), no headers (StrategyNoSleep, ENOMEM)
	Parked     uint64 // times a split waited on its pool's queue with nothing in flight (no header, or a busy Submitter)
	BusyWaits  uint64 // times a split's next piece found the Submitter without room and waited for it
}

// Stats returns the device's counters. Any goroutine.
func (d *Device) Stats() DeviceStats {
	return DeviceStats{Strategies: d.strategies.Load(), Pieces: d.pieces.Load(), Failed: d.failed.Load(),
		Refused: d.refused.Load(), Parked: d.parked.Load(), BusyWaits: d.busyWaits.Load()}
}

// MaxChildren returns how many pieces of one transfer may be in flight
// at once (WithMaxChildren).
func (d *Device) MaxChildren() int { return d.maxChildren }

// Edev returns the device number.
func (d *Device) Edev() Edev { return d.edev }

// Namespace returns the namespace.
func (d *Device) Namespace() *nvme.Namespace { return d.ns }

// MaxBlocks returns the most blocks Strategy puts in one data command:
// the smallest of the namespace's MaxBlocks (MDTS), the Submitter's
// MaxTransfer, WithMaxTransfer, and 65536 (what one command addresses).
func (d *Device) MaxBlocks() uint32 { return d.maxBlocks }

// StripeBlocks returns the boundary, in blocks, no data command crosses
// (the namespace's NOIOB), or 0.
func (d *Device) StripeBlocks() uint32 { return d.noiob }

var registry struct {
	mu    sync.Mutex
	table atomic.Pointer[[]*Device] // index major-1; copy on write
}

// Register makes namespace ns available as a device and returns its Edev.
// sub carries the requests to a queue pair of ns's controller. Any
// goroutine.
func Register(ns *nvme.Namespace, sub Submitter, opts ...Option) (Edev, error) {
	d, err := RegisterDevice(ns, sub, opts...)
	if err != nil {
		return 0, err
	}
	return d.edev, nil
}

// RegisterDevice is Register returning the Device.
func RegisterDevice(ns *nvme.Namespace, sub Submitter, opts ...Option) (*Device, error) {
	if ns == nil || sub == nil {
		return nil, errors.New("ddi: register: nil namespace or submitter")
	}
	d := &Device{
		ns: ns, sub: sub, mem: ns.Controller().Memory(),
		bsize: ns.BlockSize(), blocks: ns.Blocks(), noiob: ns.OptimalIOBoundary(),
		maxBlocks: min(ns.MaxBlocks(), 1<<16), maxDelete: 1 << 16,
		maxChildren: DefaultMaxChildren,
	}
	if mt, ok := sub.(maxTransferer); ok {
		n := mt.MaxTransfer() / d.bsize
		if n < 1 {
			return nil, fmt.Errorf("ddi: register namespace %d: submitter max transfer %d is less than a block", ns.ID(), mt.MaxTransfer())
		}
		d.maxBlocks = min(d.maxBlocks, uint32(n))
	}
	for _, o := range opts {
		if err := o(d); err != nil {
			return nil, fmt.Errorf("ddi: register namespace %d: %w", ns.ID(), err)
		}
	}
	if d.maxBlocks == 0 {
		return nil, fmt.Errorf("ddi: register namespace %d: no transfer size", ns.ID())
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	var old []*Device
	if t := registry.table.Load(); t != nil {
		old = *t
	}
	if len(old) >= 1<<31 {
		return nil, errors.New("ddi: register: out of major numbers")
	}
	next := make([]*Device, len(old)+1)
	copy(next, old)
	d.edev = Makedevice(uint32(len(old)+1), ns.ID())
	next[len(old)] = d
	registry.table.Store(&next)
	return d, nil
}

// Unregister removes the device: Strategy on dev fails with ENXIO from
// now on. I/O already submitted completes normally. Any goroutine.
func Unregister(dev Edev) error {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	t := registry.table.Load()
	i := int(dev.Major()) - 1
	if t == nil || i < 0 || i >= len(*t) || (*t)[i] == nil || (*t)[i].edev != dev {
		return fmt.Errorf("ddi: unregister %v: %w", dev, ErrNoDevice)
	}
	next := make([]*Device, len(*t))
	copy(next, *t)
	next[i] = nil
	registry.table.Store(&next)
	return nil
}

// Lookup returns the registered device dev, or nil. It takes no lock and
// allocates nothing. Any goroutine.
func Lookup(dev Edev) *Device {
	t := registry.table.Load()
	i := int(dev.Major()) - 1
	if t == nil || i < 0 || i >= len(*t) {
		return nil
	}
	d := (*t)[i]
	if d == nil || d.edev != dev {
		return nil
	}
	return d
}
