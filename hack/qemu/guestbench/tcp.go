package main

import (
	"fmt"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/guest"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// The NVMe/TCP rows (-tcp): one kernel target, two hosts. The emulated
// controller stays on the kernel nvme driver; nvmet exports its namespace
// (/dev/nvme0n1) on 127.0.0.1:4420. In every repetition the kernel's
// initiator connects (nvme-cli), fio runs on its block device, it
// disconnects, and then gonvme's host runs nvmectl perf tcp://... against
// the same target. A polled kernel row would need the polled run, which
// this kernel cannot do cleanly (runTCP says why).

// tcpBenchNQN is the subsystem the bench exports.
const tcpBenchNQN = "nqn.2024-01.io.gonvme:bench"

// runTCP does the NVMe/TCP rows and returns how many runs failed; an error
// means the target or the initiator could not be set up at all.
func runTCP(o *options, boot *vmtest.Boot, addr string) (failed int, err error) {
	name, err := toKernel(addr)
	if err != nil {
		return 0, err
	}
	dev := "/dev/" + name + "n1"
	if err := vmtest.PrepareFabrics(boot); err != nil {
		return 0, err
	}
	sub, err := guest.NewNVMetSubsystem(tcpBenchNQN, []string{dev},
		[]guest.NVMetPort{{ID: 1, Addr: vmtest.KernelTargetAddr, Service: fmt.Sprint(vmtest.KernelTargetPort)}})
	if err != nil {
		return 0, err
	}
	defer func() {
		if rerr := sub.Remove(); rerr != nil && err == nil {
			err = rerr
		}
	}()
	info("tcp_target", fmt.Sprintf("nvmet %s on %s:%d, namespace %s", tcpBenchNQN, vmtest.KernelTargetAddr, vmtest.KernelTargetPort, dev))
	url := fmt.Sprintf("tcp://%s:%d/%s", vmtest.KernelTargetAddr, vmtest.KernelTargetPort, tcpBenchNQN)
	r := &runner{o: o, addr: url, est: map[string]float64{}, estQemu: map[string]float64{}, tcp: true}
	nvme := guest.BinDir + "/nvme"
	for rep := 0; rep < o.reps; rep++ {
		blk, err := tcpConnect(nvme)
		if err != nil {
			// Without the kernel's rows there is still gonvme's.
			fmt.Printf("guestbench: rep %d: kernel initiator: %v\n", rep+1, err)
			for _, wl := range o.workloads {
				for _, qd := range o.depths {
					r.emit(bench.Sample{Engine: bench.EngineTCPKernelIRQ, Workload: wl, Depth: qd, Rep: rep, Err: err.Error()}, 0)
				}
			}
		} else {
			if rep == 0 {
				info("tcp_kernel_dev", blk)
			}
			// Interrupts only (hipri=0): on this kernel (6.1) a polled
			// nvme-tcp queue sleeps in lock_sock inside the RCU read
			// section bio_poll holds, and the kernel says so with a
			// WARNING (rcu_note_context_switch) that fails the boot.
			for _, wl := range o.workloads {
				for _, qd := range o.depths {
					r.fio(rep, wl, qd, blk, false)
				}
			}
			if _, err := output(nvme, time.Minute, "disconnect", "-n", tcpBenchNQN); err != nil {
				return r.failed, err
			}
			if err := vmtest.WaitFabricsGone(tcpBenchNQN, time.Minute); err != nil {
				return r.failed, err
			}
		}
		for _, wl := range o.workloads {
			for _, qd := range o.depths {
				r.perf(rep, wl, qd)
			}
		}
	}
	return r.failed, nil
}

// tcpConnect attaches the bench subsystem through the kernel's initiator
// and returns its block device.
func tcpConnect(nvme string) (string, error) {
	if _, err := output(nvme, time.Minute, "connect", "-t", "tcp", "-a", vmtest.KernelTargetAddr,
		"-s", fmt.Sprint(vmtest.KernelTargetPort), "-n", tcpBenchNQN); err != nil {
		return "", err
	}
	_, blk, err := vmtest.WaitFabricsDevice(tcpBenchNQN, 1, time.Minute)
	return blk, err
}

// engine names a run's engine: the local one, or over NVMe/TCP its
// counterpart.
func (r *runner) engine(local string) string {
	if !r.tcp {
		return local
	}
	switch local {
	case bench.EngineIRQ:
		return bench.EngineTCPKernelIRQ
	case bench.EngineGonvme:
		return bench.EngineTCPGonvme
	}
	return local
}
