// Package pcie opens NVMe controllers on the PCI bus through VFIO: it joins
// package vfio (the device, its BAR and IOMMU) to package nvme (the
// protocol) and package dma (memory the device can reach).
//
//	System ── one VFIO container ── one dma.Allocator (every buffer is
//	   │                              mapped for every controller)
//	   ├── Open("0000:00:04.0") ── vfio group + device ── nvme.Controller
//	   └── Open("0000:00:05.0") ── vfio group + device ── nvme.Controller
//
// Controllers that share a System share one IOVA space, so one data
// buffer can go to any of them (striping, mirroring). The controllers
// must already be bound to vfio-pci (vfio.Bind, or nvmectl setup).
//
// Imports: nvme, dma, vfio, internal/mmio and the standard library.
package pcie

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/mmio"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// System is a VFIO container with its DMA allocator and the controllers
// opened in it. Any goroutine may call its methods.
type System struct {
	mu     sync.Mutex
	cont   *vfio.Container
	mem    *dma.Allocator
	groups map[int]*groupRef
	ctrls  map[*nvme.Controller]struct{}
	closed bool
	opts   []dma.Option
}

type groupRef struct {
	g    *vfio.Group
	refs int
}

// NewSystem opens a VFIO container. opts configure the DMA allocator
// created when the first controller joins.
func NewSystem(opts ...dma.Option) (*System, error) {
	c, err := vfio.OpenContainer()
	if err != nil {
		return nil, fmt.Errorf("pcie: %w", err)
	}
	return &System{cont: c, groups: map[int]*groupRef{}, ctrls: map[*nvme.Controller]struct{}{}, opts: opts}, nil
}

// Memory returns the allocator for data buffers: its memory is mapped for
// every controller of the System. It is nil until the first Open.
func (s *System) Memory() *dma.Allocator {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mem
}

// Open opens the controller at addr (bound to vfio-pci), enables bus
// mastering, maps BAR0 and brings the controller up with opts. Closing
// the controller releases its device; the System stays open, and so does
// Memory: buffers allocated before, while or after the controller is open
// stay mapped (the System keeps an IOMMU group attached while there are
// any), and a controller opened again in the System can use them.
func (s *System) Open(addr string, opts *nvme.Options) (*nvme.Controller, error) {
	b, err := s.attach(addr)
	if err != nil {
		return nil, err
	}
	c, err := nvme.Open(b, b.mem, opts)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("pcie: open %s: %w", addr, err)
	}
	b.setController(c)
	s.mu.Lock()
	s.ctrls[c] = struct{}{}
	s.mu.Unlock()
	b.ctrl = c
	return c, nil
}

func (s *System) attach(addr string) (_ *bus, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("pcie: open %s: system closed", addr)
	}
	info, err := lookup(addr)
	if err != nil {
		return nil, err
	}
	if info.Driver != "vfio-pci" {
		drv := info.Driver
		if drv == "" {
			drv = "no driver"
		}
		return nil, fmt.Errorf("pcie: open %s: %w (bound to %s): run `nvmectl setup %s` or vfio.Bind first", addr, vfio.ErrNotBound, drv, addr)
	}
	gr := s.groups[info.Group]
	if gr == nil {
		g, err := vfio.OpenGroup(info.Group, addr)
		if err != nil {
			return nil, fmt.Errorf("pcie: open %s: %w", addr, err)
		}
		if err := g.SetContainer(s.cont); err != nil {
			g.Close()
			return nil, fmt.Errorf("pcie: open %s: %w", addr, err)
		}
		gr = &groupRef{g: g}
		s.groups[info.Group] = gr
		s.dropIdleGroups(info.Group)
	}
	gr.refs++
	defer func() {
		if err != nil {
			s.dropGroup(info.Group)
		}
	}()
	if s.mem == nil {
		m, err := dma.NewAllocator(dma.NewVFIOMapper(s.cont), s.opts...)
		if err != nil {
			return nil, fmt.Errorf("pcie: dma allocator: %w", err)
		}
		s.mem = m
	}
	dev, err := gr.g.OpenDevice(addr)
	if err != nil {
		return nil, fmt.Errorf("pcie: open %s: %w", addr, err)
	}
	bar, err := dev.MapBAR(0)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("pcie: open %s: map bar 0: %w", addr, err)
	}
	if err := dev.SetBusMaster(true); err != nil {
		dev.Close()
		return nil, fmt.Errorf("pcie: open %s: %w", addr, err)
	}
	b := &bus{sys: s, dev: dev, group: info.Group, regs: mmio.New(bar), mem: s.mem}
	if fd, err := dev.RequestNotify(); err == nil {
		b.watchDone = make(chan struct{})
		go b.watchRequest(fd)
	}
	return b, nil
}

// dropGroup releases one reference to group n and closes the group when
// none is left, except the System's last group while Memory has live
// buffers: the container's IOMMU, and with it every DMA mapping, exists
// only while a group is attached, so closing the last one would unmap the
// buffers behind the allocator's back. That group stays open (reused if a
// controller in it opens again) until another group is attached or the
// System closes. s.mu is held.
func (s *System) dropGroup(n int) {
	gr := s.groups[n]
	if gr == nil {
		return
	}
	gr.refs--
	if gr.refs > 0 {
		return
	}
	if len(s.groups) == 1 && !s.closed && s.mem != nil && s.mem.Stats().Buffers > 0 {
		return
	}
	gr.g.Close()
	delete(s.groups, n)
}

// dropIdleGroups closes groups kept open only for the DMA mappings, now
// that group keep holds the IOMMU. s.mu is held.
func (s *System) dropIdleGroups(keep int) {
	for n, gr := range s.groups {
		if n != keep && gr.refs == 0 {
			gr.g.Close()
			delete(s.groups, n)
		}
	}
}

func lookup(addr string) (vfio.Controller, error) {
	all, err := vfio.List()
	if err != nil {
		return vfio.Controller{}, fmt.Errorf("pcie: %w", err)
	}
	for _, c := range all {
		if c.Addr == addr {
			return c, nil
		}
	}
	return vfio.Controller{}, fmt.Errorf("pcie: open %s: no NVMe controller at that address (nvmectl list shows them)", addr)
}

// Close closes every controller still open, the allocator (reporting
// leaked buffers) and the container.
func (s *System) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	ctrls := make([]*nvme.Controller, 0, len(s.ctrls))
	for c := range s.ctrls {
		ctrls = append(ctrls, c)
	}
	s.mu.Unlock()
	var errs []error
	for _, c := range ctrls {
		errs = append(errs, c.Close())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.mem != nil {
		errs = append(errs, s.mem.Close())
	}
	for n := range s.groups {
		s.groups[n].g.Close()
		delete(s.groups, n)
	}
	errs = append(errs, s.cont.Close())
	return errors.Join(errs...)
}

// Open opens the controller at addr in a System of its own: closing the
// controller closes the System (and reports DMA buffers not freed).
// Data buffers come from ctrl.Memory().
func Open(addr string, opts *nvme.Options, dmaOpts ...dma.Option) (*nvme.Controller, error) {
	s, err := NewSystem(dmaOpts...)
	if err != nil {
		return nil, err
	}
	b, err := s.attach(addr)
	if err != nil {
		s.Close()
		return nil, err
	}
	b.owned = true
	c, err := nvme.Open(b, b.mem, opts)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("pcie: open %s: %w", addr, err)
	}
	b.ctrl = c
	b.setController(c)
	return c, nil
}

// bus is the nvme.Bus of one VFIO device.
type bus struct {
	sys   *System
	dev   *vfio.Device
	group int
	regs  mmio.Region
	mem   *dma.Allocator
	ctrl  *nvme.Controller
	owned bool // the System exists for this controller alone
	once  sync.Once

	live      atomic.Pointer[nvme.Controller] // for the request watcher
	removed   atomic.Bool                     // the kernel asked for the device
	closing   atomic.Bool
	watchDone chan struct{}

	irq busIRQ // MSI-X eventfds (irq.go)
}

// watchRequest waits on the device request eventfd. The kernel signals it
// when the device is being hot-removed (or unbound) and waits, signalling
// again every few seconds, until the device fd is closed. The controller
// is marked removed, so its queue pairs fail their I/O with
// nvme.ErrRemoved; the user's Close then lets the kernel finish.
func (b *bus) watchRequest(fd int) {
	defer close(b.watchDone)
	var buf [8]byte
	for {
		_, err := syscall.Read(fd, buf[:])
		if b.closing.Load() {
			return
		}
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return
		}
		b.removed.Store(true)
		if c := b.live.Load(); c != nil {
			c.MarkRemoved()
		}
	}
}

// setController lets the request watcher reach c; a request that came
// during bring-up marks it removed at once.
func (b *bus) setController(c *nvme.Controller) {
	b.live.Store(c)
	if b.removed.Load() {
		c.MarkRemoved()
	}
}

func (b *bus) Registers() mmio.Region { return b.regs }

// String names the controller by its PCI address (in the driver's log
// lines).
func (b *bus) String() string { return b.dev.Addr() }

// SetBusMaster turns the function's Bus Master Enable on or off: package
// nvme turns it off after disabling the controller and before freeing
// its queues (nvme.BusMaster).
func (b *bus) SetBusMaster(on bool) error { return b.dev.SetBusMaster(on) }

func (b *bus) Reset() error {
	if !b.dev.CanReset() {
		return fmt.Errorf("pcie: %s: function reset: %w", b.dev.Addr(), errors.ErrUnsupported)
	}
	if err := b.dev.Reset(); err != nil {
		return err
	}
	return b.dev.SetBusMaster(true)
}

func (b *bus) Close() error {
	var err error
	b.once.Do(func() {
		if b.watchDone != nil {
			b.closing.Store(true)
			b.dev.WakeRequest()
			<-b.watchDone
		}
		_ = b.dev.SetBusMaster(false)
		err = b.dev.Close()
		s := b.sys
		s.mu.Lock()
		if b.ctrl != nil {
			delete(s.ctrls, b.ctrl)
		}
		s.dropGroup(b.group)
		s.mu.Unlock()
		if b.owned {
			err = errors.Join(err, s.Close())
		}
	})
	return err
}
