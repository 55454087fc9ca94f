package pcie

import (
	"errors"
	"fmt"
	"sync"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// maxVectors caps the MSI-X vectors enabled on one function: the admin
// queue's and one per I/O queue a poller group takes (QEMU's nvme offers
// 65; each vector costs the kernel an interrupt and an eventfd).
const maxVectors = 257

// busIRQ holds the function's MSI-X eventfds once enabled.
type busIRQ struct {
	mu  sync.Mutex
	fds []int  // eventfd of each vector, nil until enabled
	off []bool // vectors disconnected from their eventfd (SetInterrupt)
}

var _ nvme.InterruptBus = (*bus)(nil)

// InterruptVectors returns how many MSI-X vectors the function offers
// with eventfd signalling (at most maxVectors), or 0. Part of
// nvme.InterruptBus. Any goroutine.
func (b *bus) InterruptVectors() int {
	info, err := b.dev.IRQ(vfio.PCIMSIXIRQ)
	if err != nil || info.Flags&vfio.IRQEventfd == 0 {
		return 0
	}
	return min(int(info.Count), maxVectors)
}

// InterruptEventfd returns the eventfd MSI-X vector i signals. The first
// call enables every vector InterruptVectors counts, each with its own
// eventfd (VFIO_DEVICE_SET_IRQS); the device's Close disables them and
// closes the eventfds. Part of nvme.InterruptBus. Any goroutine.
func (b *bus) InterruptEventfd(i int) (int, error) {
	b.irq.mu.Lock()
	defer b.irq.mu.Unlock()
	if b.irq.fds == nil {
		n := b.InterruptVectors()
		if n == 0 {
			return -1, fmt.Errorf("pcie: %s: msi-x: %w", b.dev.Addr(), errors.ErrUnsupported)
		}
		fds, err := b.dev.EnableMSIX(n)
		if err != nil {
			return -1, fmt.Errorf("pcie: %s: %w", b.dev.Addr(), err)
		}
		b.irq.fds = fds
		b.irq.off = make([]bool, len(fds))
	}
	if i < 0 || i >= len(b.irq.fds) {
		return -1, fmt.Errorf("pcie: %s: msi-x vector %d: %d enabled", b.dev.Addr(), i, len(b.irq.fds))
	}
	return b.irq.fds[i], nil
}

var _ nvme.InterruptSwitch = (*bus)(nil)

// SetInterrupt connects MSI-X vector i to its eventfd (on) or disconnects
// it (VFIO_DEVICE_SET_IRQS with fd -1: the kernel masks the vector, and
// the device holds what it signals meanwhile as pending). Nothing
// happens, no system call, when the vector already is as asked. Part of
// nvme.InterruptSwitch. Any goroutine.
func (b *bus) SetInterrupt(i int, on bool) error {
	b.irq.mu.Lock()
	defer b.irq.mu.Unlock()
	if i < 0 || i >= len(b.irq.fds) {
		return fmt.Errorf("pcie: %s: msi-x vector %d: %d enabled", b.dev.Addr(), i, len(b.irq.fds))
	}
	if b.irq.off[i] != on {
		return nil
	}
	if err := b.dev.SetMSIXVector(i, on); err != nil {
		return fmt.Errorf("pcie: %s: %w", b.dev.Addr(), err)
	}
	b.irq.off[i] = !on
	return nil
}
