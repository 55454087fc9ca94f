package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/internal/mmio"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Reading a controller's registers as they are.
//
// Opening a controller through VFIO is not a way to look at it: the kernel's
// vfio-pci resets the function (FLR) when a process opens the device and
// again when the last one closes it, and the driver's bring-up disables and
// re-enables the controller. So list, status and show-regs (without
// --after-init) map BAR0 through the PCI device's sysfs resource file,
// read-only, and only load from it: no open of /dev/vfio, no reset, no
// store. The kernel refuses the mapping while a driver holds the BAR
// (the nvme driver, or a process using the device through VFIO) when it
// is built with IO_STRICT_DEVMEM, as Debian's is; then the registers are
// not shown.

// pciCommandMemory is PCI_COMMAND's Memory Space Enable bit.
const pciCommandMemory = 1 << 1

// errMemoryOff says why a BAR cannot be read without enabling the device.
var errMemoryOff = errors.New("memory decoding is off in PCI_COMMAND (no driver has enabled the device since boot): there are no registers to read without enabling it")

// regsWindow is how much of BAR0 is mapped: the controller registers up
// to the doorbells (NVMe Base 2.0, 3.1.4: the doorbells start at 0x1000).
const regsWindow = 0x1000

// sysfsRegisters maps the registers of the controller at addr read-only
// from root's /sys/bus/pci/devices/ADDR/resource0 and returns them with
// the function that unmaps them.
func sysfsRegisters(root, addr string) (mmio.Region, func() error, error) {
	dev := root + "/sys/bus/pci/devices/" + addr
	// A BAR answers only with memory decoding on (PCI_COMMAND bit 1). A
	// device no driver has enabled since boot has it off, and reading its
	// BAR returns nothing it holds (all ones on hardware, zeros in QEMU).
	if cfg, err := os.ReadFile(dev + "/config"); err == nil && len(cfg) >= 6 && cfg[4]&pciCommandMemory == 0 {
		return mmio.Region{}, nil, fmt.Errorf("BAR0 of %s: %w", addr, errMemoryOff)
	}
	p := dev + "/resource0"
	f, err := os.Open(p)
	if err != nil {
		return mmio.Region{}, nil, fmt.Errorf("open BAR0 of %s: %w", addr, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return mmio.Region{}, nil, fmt.Errorf("BAR0 of %s: %w", addr, err)
	}
	n := int(min(st.Size(), regsWindow))
	if n < 0x40 {
		return mmio.Region{}, nil, fmt.Errorf("BAR0 of %s is %d bytes, too small for NVMe registers", addr, st.Size())
	}
	b, err := unix.Mmap(int(f.Fd()), 0, n, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EBUSY) {
			err = fmt.Errorf("%w (a driver or another process holds the BAR)", err)
		}
		return mmio.Region{}, nil, fmt.Errorf("map BAR0 of %s: %w", addr, err)
	}
	return mmio.New(b), func() error { return unix.Munmap(b) }, nil
}

// regState is what CC and CSTS say about a controller, read as found.
type regState struct {
	VS    uint32 `json:"vs"`
	CC    uint32 `json:"cc"`
	CSTS  uint32 `json:"csts"`
	State string `json:"state"`
}

// readState reads VS, CC and CSTS (loads only) and names the state.
func readState(r mmio.Region) regState {
	s := regState{
		VS:   r.Read32(spec.RegVS),
		CC:   r.Read32(spec.RegCC),
		CSTS: r.Read32(spec.RegCSTS),
	}
	s.State = stateName(spec.CC(s.CC), spec.CSTS(s.CSTS))
	return s
}

// stateName names a controller's state from CC and CSTS.
func stateName(cc spec.CC, csts spec.CSTS) string {
	switch {
	case csts.Removed():
		return "no response (registers read all ones)"
	case csts.CFS():
		return "fatal (CSTS.CFS)"
	case csts.SHST() == 2:
		return "shut down"
	case csts.SHST() == 1:
		return "shutting down"
	case cc.EN() && csts.RDY():
		return "enabled"
	case cc.EN():
		return "enabling"
	case csts.RDY():
		return "disabling"
	}
	return "disabled"
}
