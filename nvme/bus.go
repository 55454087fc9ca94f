package nvme

import "github.com/seedb8fa28ef/gonvme/internal/mmio"

// Bus is what the driver needs from the transport a controller sits on:
// its register window (BAR0 on PCIe) and a way to reset the function.
// DMA memory comes separately, as a *dma.Allocator whose Mapper reaches
// the same device.
//
// The vfio transport (package nvme/pcie) and the in-process test
// controller (package nvme/nvmetest) implement it.
type Bus interface {
	// Registers returns the controller's register window. It stays
	// valid until Close.
	Registers() mmio.Region
	// Reset resets the PCI function (or its equivalent), the last resort
	// when a controller does not become ready. It may return an error
	// wrapping errors.ErrUnsupported.
	Reset() error
	// Close releases the transport. The controller calls it from Close.
	Close() error
}

// BusMaster is implemented by a Bus that can stop its device from
// reaching host memory: on PCIe, the Bus Master Enable bit of the
// function's Command register. Open turns it on; Close, and a failed
// Open, turn it off after disabling the controller and before freeing
// any memory the controller was given. The controller's goroutines call
// it.
type BusMaster interface {
	SetBusMaster(on bool) error
}
