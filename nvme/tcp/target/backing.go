package target

import (
	"errors"
	"fmt"
	"sync"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Backing is a controller whose namespaces a subsystem exports: its
// identity, its namespaces, the DMA memory its data passes through, and
// queue pairs for the target's poll groups. DeviceBacking builds one from
// a controller opened by package nvme.
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
	// NewQueue opens an I/O queue pair of depth entries on the backing
	// controller for one poll group, which becomes its owner. Called by
	// New, once per poll group.
	NewQueue(depth int) (Queue, error)
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

// Queue is a queue pair on a backing controller, owned by one poll group
// goroutine, with the ddi devices that submit to it.
type Queue interface {
	// Attach registers ns with ddi on this queue: the device's Strategy
	// submits to the queue, so only the queue's owner may call it, and
	// its Iodones run inside the owner's Poll. Any goroutine.
	Attach(ns Namespace) (*ddi.Device, error)
	// Poll reaps completions (running their Iodones) and rings the
	// doorbells of what was submitted since the last Poll. Owner only.
	Poll() int
	// InFlight is the number of requests on the queue. Owner only.
	InFlight() int
	// Close deletes the queue pair and unregisters its devices. Owner
	// only, with nothing in flight.
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

func (b *devBacking) IdentifyController() []byte { return b.id }
func (b *devBacking) MaxTransfer() int           { return b.ctrl.MaxTransfer() }
func (b *devBacking) Memory() *dma.Allocator     { return b.ctrl.Memory() }
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

func (b *devBacking) NewQueue(depth int) (Queue, error) {
	qp, err := b.ctrl.NewQueuePair(depth)
	if err != nil {
		return nil, err
	}
	return &devQueue{qp: qp}, nil
}

type devNamespace struct {
	ns *nvme.Namespace
	id []byte
}

func (n *devNamespace) ID() uint32                { return n.ns.ID() }
func (n *devNamespace) BlockSize() int            { return n.ns.BlockSize() }
func (n *devNamespace) Blocks() uint64            { return n.ns.Blocks() }
func (n *devNamespace) IdentifyNamespace() []byte { return n.id }

// devQueue is a queue pair on a backing controller and the ddi devices
// registered over it. It is the ddi.Submitter of those devices: Submit
// goes straight to the queue pair, which is right because only the owner
// calls Strategy (the target never lets ddi split: see slot.start) and
// Iodones run inside the owner's Poll.
type devQueue struct {
	qp *nvme.QueuePair

	mu    sync.Mutex
	edevs []ddi.Edev
}

func (q *devQueue) Submit(r *nvme.Request) error { return q.qp.Submit(r) }
func (q *devQueue) MaxTransfer() int             { return q.qp.MaxTransfer() }
func (q *devQueue) Poll() int                    { return q.qp.Poll() }
func (q *devQueue) InFlight() int                { return q.qp.InFlight() + q.qp.Waiting() }

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

func (q *devQueue) Close() error {
	q.mu.Lock()
	for _, e := range q.edevs {
		_ = ddi.Unregister(e)
	}
	q.edevs = nil
	q.mu.Unlock()
	return q.qp.Close()
}
