package target

import (
	"fmt"

	"github.com/seedb8fa28ef/gonvme/ddi"
	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Backing is what a subsystem exports: a controller's identity, its
// namespaces and the DMA memory its data passes through. DeviceBacking
// builds one from a controller opened by package nvme and its namespaces
// registered with ddi; tests may use any other.
type Backing interface {
	// IdentifyController returns the backing controller's Identify
	// Controller data (4096 bytes). The target copies its serial, model,
	// firmware, vendor, VWC and ONCS. Called once, by New.
	IdentifyController() []byte
	// Namespaces returns the namespaces to export. Called once, by New.
	Namespaces() []Namespace
	// MaxTransfer is the most bytes one request to the backing may carry
	// (its MDTS); the target reports it (capped by Config.MaxTransfer).
	MaxTransfer() int
	// SMARTLog fills b (512 bytes) with the SMART / Health log page.
	// Any goroutine.
	SMARTLog(b []byte) error
	// Memory is the allocator of the DMA memory I/O buffers come from.
	Memory() *dma.Allocator
}

// Namespace is one exported namespace. Any goroutine may call its
// methods.
type Namespace interface {
	// ID is the namespace ID hosts see.
	ID() uint32
	// BlockSize and Blocks are its geometry.
	BlockSize() int
	Blocks() uint64
	// IdentifyNamespace returns its Identify Namespace data (4096
	// bytes); the target reads it once.
	IdentifyNamespace() []byte
	// Strategy starts bp (ddi.Device.Strategy): the Buf's Iodone runs
	// when it is done, on whichever goroutine completes it, and must not
	// block.
	Strategy(bp *ddi.Buf)
}

// DeviceBacking exports ctrl's namespaces devs (registered with ddi, on a
// poller.Handle or any Submitter of ctrl).
func DeviceBacking(ctrl *nvme.Controller, devs ...*ddi.Device) (Backing, error) {
	id, err := ctrl.IdentifyRaw(spec.CNSController, 0)
	if err != nil {
		return nil, fmt.Errorf("identify controller: %w", err)
	}
	b := &devBacking{ctrl: ctrl, id: id}
	for _, d := range devs {
		ns := d.Namespace()
		if ns.Controller() != ctrl {
			return nil, fmt.Errorf("namespace %d is not on this controller", ns.ID())
		}
		raw, err := ctrl.IdentifyRaw(spec.CNSNamespace, ns.ID())
		if err != nil {
			return nil, fmt.Errorf("identify namespace %d: %w", ns.ID(), err)
		}
		b.nss = append(b.nss, &devNamespace{dev: d, ns: ns, id: raw})
	}
	return b, nil
}

type devBacking struct {
	ctrl *nvme.Controller
	id   []byte
	nss  []Namespace
}

func (b *devBacking) IdentifyController() []byte { return b.id }
func (b *devBacking) Namespaces() []Namespace    { return b.nss }
func (b *devBacking) MaxTransfer() int           { return b.ctrl.MaxTransfer() }
func (b *devBacking) Memory() *dma.Allocator     { return b.ctrl.Memory() }
func (b *devBacking) SMARTLog(buf []byte) error {
	return b.ctrl.GetLogPage(spec.LogSMART, 0xffffffff, 0, false, 0, buf)
}

type devNamespace struct {
	dev *ddi.Device
	ns  *nvme.Namespace
	id  []byte
}

func (n *devNamespace) ID() uint32                { return n.ns.ID() }
func (n *devNamespace) BlockSize() int            { return n.ns.BlockSize() }
func (n *devNamespace) Blocks() uint64            { return n.ns.Blocks() }
func (n *devNamespace) IdentifyNamespace() []byte { return n.id }
func (n *devNamespace) Strategy(bp *ddi.Buf) {
	bp.Edev = n.dev.Edev()
	n.dev.Strategy(bp)
}
