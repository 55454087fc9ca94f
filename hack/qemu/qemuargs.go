package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// machine is everything that goes on one QEMU command line.
type machine struct {
	QEMU, Firmware, Kernel, Initrd string
	Profile                        *vmtest.Profile
	DiskDir                        string          // holds the namespace images
	MonitorSock                    string          // guest side of the monitor relay (ttyS1)
	QMPSock                        string          // QEMU's QMP socket
	Append                         string          // extra kernel command line
	Extra                          []string        // extra QEMU arguments
	Omit                           map[string]bool // controller IDs left off (selftest)
	Memory                         string          // e.g. "1G"
}

// baseCmdline is the guest kernel command line before --append.
// no_timer_check: under TCG on a loaded host the kernel's check that the
// timer interrupt arrives through the interrupt-remapped IO-APIC can time
// out and panic ("timer doesn't work through Interrupt-remapped IO-APIC").
//
// clocksource=tsc tsc=reliable: without them the guest kernel picks the
// HPET, and every clock_gettime becomes a system call that reads an
// emulated HPET register, microseconds each under TCG. Real machines (and
// KVM guests with an invariant TSC) read the clock in the vDSO. TCG's TSC
// comes from one host clock for every vCPU, so it is monotonic across
// them. Measured with `hack/qemu bench`: gonvme QD1 randread p50 43 us ->
// 19.5 us, QD32 81k -> 276k IOPS; the kernel's rows barely moved.
const baseCmdline = "console=ttyS0 intel_iommu=on panic=-1 quiet no_timer_check clocksource=tsc tsc=reliable"

// nodeName names the block node a namespace is backed by.
func nodeName(c vmtest.Ctrl, ns vmtest.NS) string { return fmt.Sprintf("%sn%d", c.ID, ns.NSID) }

// diskPath is the sparse image of a file-backed namespace.
func diskPath(dir string, c vmtest.Ctrl, ns vmtest.NS) string {
	return filepath.Join(dir, nodeName(c, ns)+".img")
}

// makeDisks creates the sparse images of the profile's file-backed
// namespaces.
func makeDisks(p *vmtest.Profile, dir string) error {
	for _, c := range p.Ctrls {
		if c.Null {
			continue
		}
		for _, ns := range c.Namespaces {
			f, err := os.Create(diskPath(dir, c, ns))
			if err != nil {
				return fmt.Errorf("disk image: %w", err)
			}
			err = f.Truncate(int64(ns.Blocks) * int64(ns.BlockSize))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("disk image: %w", err)
			}
		}
	}
	return nil
}

// args builds the QEMU command line (without the binary).
func (m *machine) args() []string {
	mem := m.Memory
	if mem == "" {
		mem = "1G"
	}
	a := []string{
		"-accel", "tcg", "-bios", m.Firmware, "-machine", "q35", "-smp", "2", "-m", mem,
		"-device", "intel-iommu,intremap=on",
		"-nodefaults", "-nographic", "-no-reboot",
		"-serial", "mon:stdio",
		"-chardev", "socket,id=gmon,path=" + m.MonitorSock + ",server=on,wait=off",
		"-serial", "chardev:gmon",
		"-qmp", "unix:" + m.QMPSock + ",server=on,wait=off",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-kernel", m.Kernel, "-initrd", m.Initrd,
		"-append", strings.TrimSpace(baseCmdline + " " + m.Append),
	}
	p := m.Profile
	switch p.Topology {
	case vmtest.RootPorts:
		for i := range p.Ctrls {
			a = append(a, "-device", fmt.Sprintf("pcie-root-port,id=rp%d,bus=pcie.0,chassis=%d,addr=0x%x", i, i+1, vmtest.BridgeSlot(i)))
		}
	case vmtest.SharedBridge:
		a = append(a, "-device", fmt.Sprintf("pci-bridge,id=br0,bus=pcie.0,chassis_nr=1,addr=0x%x", vmtest.BridgeSlot(0)))
	}
	subsys := map[string]bool{}
	for i, c := range p.Ctrls {
		if m.Omit[c.ID] {
			continue
		}
		for _, ns := range c.Namespaces {
			a = append(a, nsBackend(m.DiskDir, c, ns)...)
		}
		dev := fmt.Sprintf("nvme,id=%s,serial=%s,mdts=%d,addr=0x%x", c.ID, c.Serial, c.MDTS, p.CtrlSlot(i))
		if c.Subsys != "" {
			if !subsys[c.Subsys] {
				a = append(a, "-device", fmt.Sprintf("nvme-subsys,id=%s,nqn=%s", c.Subsys, c.Subsys))
				subsys[c.Subsys] = true
			}
			dev += ",subsys=" + c.Subsys
		}
		switch p.Topology {
		case vmtest.RootPorts:
			dev += fmt.Sprintf(",bus=rp%d", i)
		case vmtest.SharedBridge:
			dev += ",bus=br0"
		}
		a = append(a, "-device", dev)
		for _, ns := range c.Namespaces {
			nsdev := fmt.Sprintf("nvme-ns,id=%s,bus=%s,drive=%s,nsid=%d,logical_block_size=%d,physical_block_size=%d",
				nodeName(c, ns), c.ID, nodeName(c, ns), ns.NSID, ns.BlockSize, ns.BlockSize)
			if ns.Detached {
				nsdev += ",detached=on"
			}
			a = append(a, "-device", nsdev)
		}
	}
	return append(a, m.Extra...)
}

// nsBackend returns the -blockdev options of one namespace: a file (or
// null-co) node, blkdebug above it when the namespace has media errors, and
// a raw format node on top named nodeName (raw fires the read_aio event the
// blkdebug rules wait for). discard=unmap passes Dataset Management
// deallocation down as hole punching, so deallocated blocks read as zeros,
// as QEMU's DLFEAT claims.
func nsBackend(dir string, c vmtest.Ctrl, ns vmtest.NS) []string {
	name := nodeName(c, ns)
	base := name + "-base"
	var a []string
	if c.Null {
		a = append(a, "-blockdev", fmt.Sprintf("driver=null-co,node-name=%s,size=%d,read-zeroes=on", base, ns.Blocks*uint64(ns.BlockSize)))
	} else {
		a = append(a, "-blockdev", fmt.Sprintf("driver=file,node-name=%s,filename=%s,cache.no-flush=on,discard=unmap", base, diskPath(dir, c, ns)))
	}
	child := base
	if len(ns.MediaErrorLBAs) > 0 {
		dbg := name + "-blkdebug"
		opts := fmt.Sprintf("driver=blkdebug,node-name=%s,image=%s", dbg, base)
		for i, lba := range ns.MediaErrorLBAs {
			sector := lba * uint64(ns.BlockSize) / 512
			opts += fmt.Sprintf(",inject-error.%d.event=read_aio,inject-error.%d.iotype=read,inject-error.%d.errno=5,inject-error.%d.sector=%d",
				i, i, i, i, sector)
		}
		a = append(a, "-blockdev", opts)
		child = dbg
	}
	return append(a, "-blockdev", fmt.Sprintf("driver=raw,node-name=%s,file=%s,cache.no-flush=on,discard=unmap", name, child))
}
