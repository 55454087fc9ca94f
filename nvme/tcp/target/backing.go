package target

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// Backing is a controller whose namespaces a subsystem exports: its
// identity, its namespaces, the DMA memory its data passes through, and
// the controller itself, whose queue pairs are those of the pollers the
// target runs on. DeviceBacking builds one from a controller opened by
// package nvme.
type Backing interface {
	// IdentifyController returns the backing controller's Identify
	// Controller data (4096 bytes). The target copies its serial, model,
	// firmware, vendor, NN, VWC and ONCS. Called once, by New.
	IdentifyController() []byte
	// Namespaces returns the namespaces to export now: called by New and
	// by Target.Rescan. Any goroutine.
	Namespaces() ([]Namespace, error)
	// MaxTransfer is the most bytes one request to the backing may carry
	// (its MDTS); the target reports it (capped by Config.MaxTransfer).
	MaxTransfer() int
	// SMARTLog fills b (512 bytes) with the SMART / Health log page.
	// Any goroutine.
	SMARTLog(b []byte) error
	// Memory is the allocator of the DMA memory I/O buffers come from.
	Memory() *dma.Allocator
	// Controller is the backing controller: every poller the target
	// runs on must own a queue pair on it (poller.Poller.Serves).
	Controller() *nvme.Controller
	// NewQueue returns the queue of poller p on the backing controller:
	// p's queue pair on it. Called by New, once per poll group.
	NewQueue(p *poller.Poller) (Queue, error)
}

// Namespace is one namespace of a Backing. Any goroutine may call its
// methods.
type Namespace interface {
	// ID is the namespace's ID on the backing controller.
	ID() uint32
	// BlockSize and Blocks are its geometry.
	BlockSize() int
	Blocks() uint64
	// IdentifyNamespace returns its Identify Namespace data (4096
	// bytes); the target reads it once.
	IdentifyNamespace() []byte
}

// Queue is a poller's queue pair on a backing controller, with the ddi
// devices that submit to it.
type Queue interface {
	// Attach registers ns with ddi on this queue: the device's Strategy
	// submits to the poller's queue pair (Poller.SubmitLocal), so only
	// the poller goroutine may call it, and its Iodones run inside the
	// poller's pass. Any goroutine.
	Attach(ns Namespace) (*ddi.Device, error)
	// Detach unregisters a device Attach returned (its namespace left
	// the subsystem). Any goroutine.
	Detach(d *ddi.Device) error
	// Close unregisters the queue's devices; the queue pair stays the
	// poller's. Any goroutine, with nothing in flight.
	Close() error
}

// DeviceBacking exports the active namespaces of ctrl, as they are when
// New and Target.Rescan ask.
func DeviceBacking(ctrl *nvme.Controller) (Backing, error) {
	id, err := ctrl.IdentifyRaw(spec.CNSController, 0)
	if err != nil {
		return nil, fmt.Errorf("identify controller: %w", err)
	}
	return &devBacking{ctrl: ctrl, id: id}, nil
}

type devBacking struct {
	ctrl *nvme.Controller
	id   []byte
}

func (b *devBacking) IdentifyController() []byte   { return b.id }
func (b *devBacking) Controller() *nvme.Controller { return b.ctrl }
func (b *devBacking) MaxTransfer() int             { return b.ctrl.MaxTransfer() }
func (b *devBacking) Memory() *dma.Allocator       { return b.ctrl.Memory() }
func (b *devBacking) SMARTLog(buf []byte) error {
	return b.ctrl.GetLogPage(spec.LogSMART, 0xffffffff, 0, false, 0, buf)
}

func (b *devBacking) Namespaces() ([]Namespace, error) {
	var nss []Namespace
	for _, id := range b.ctrl.Namespaces() {
		ns, err := b.ctrl.Namespace(id)
		if err != nil {
			if errors.Is(err, nvme.ErrNoNamespace) {
				continue // detached since the list was made
			}
			return nil, fmt.Errorf("namespace %d: %w", id, err)
		}
		raw, err := b.ctrl.IdentifyRaw(spec.CNSNamespace, id)
		if err != nil {
			return nil, fmt.Errorf("identify namespace %d: %w", id, err)
		}
		nss = append(nss, &devNamespace{ns: ns, id: raw})
	}
	return nss, nil
}

func (b *devBacking) NewQueue(p *poller.Poller) (Queue, error) {
	if !p.Serves(b.ctrl) {
		return nil, fmt.Errorf("poller %d has no queue pair on the controller", p.ID())
	}
	return &devQueue{p: p, ctrl: b.ctrl}, nil
}

type devNamespace struct {
	ns *nvme.Namespace
	id []byte
}

func (n *devNamespace) ID() uint32                { return n.ns.ID() }
func (n *devNamespace) BlockSize() int            { return n.ns.BlockSize() }
func (n *devNamespace) Blocks() uint64            { return n.ns.Blocks() }
func (n *devNamespace) IdentifyNamespace() []byte { return n.id }

// devQueue is a poller's queue pair on a backing controller and the ddi
// devices registered over it. It is the ddi.Submitter of those devices:
// Submit goes straight to the poller's queue pair (SubmitLocal), which is
// right because only the poller goroutine calls Strategy (the target
// never lets ddi split: see ioConn.start) and Iodones run inside the
// poller's pass.
type devQueue struct {
	p    *poller.Poller
	ctrl *nvme.Controller

	mu    sync.Mutex
	edevs []ddi.Edev
}

func (q *devQueue) Submit(r *nvme.Request) error { return q.p.SubmitLocal(q.ctrl, r) }
func (q *devQueue) MaxTransfer() int             { return q.ctrl.MaxTransfer() }

func (q *devQueue) Attach(ns Namespace) (*ddi.Device, error) {
	dn, ok := ns.(*devNamespace)
	if !ok {
		return nil, fmt.Errorf("namespace %d is not a device namespace", ns.ID())
	}
	d, err := ddi.RegisterDevice(dn.ns, q)
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.edevs = append(q.edevs, d.Edev())
	q.mu.Unlock()
	return d, nil
}

func (q *devQueue) Detach(d *ddi.Device) error {
	e := d.Edev()
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.Index(q.edevs, e)
	if i < 0 {
		return fmt.Errorf("device %v is not attached to this queue", e)
	}
	q.edevs = slices.Delete(q.edevs, i, i+1)
	return ddi.Unregister(e)
}

func (q *devQueue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	var errs []error
	for _, e := range q.edevs {
		errs = append(errs, ddi.Unregister(e))
	}
	q.edevs = nil
	return errors.Join(errs...)
}
