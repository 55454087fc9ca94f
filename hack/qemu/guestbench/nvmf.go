package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/guest"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// The NVMe/TCP target rows (-nvmf-target, `hack/qemu bench
// --nvmf-target`): in every repetition the guest kernel's initiator
// (nvme-cli connect, fio io_uring) reads the same emulated controller
// through two targets on loopback, one after the other:
//
//  1. Linux's nvmet (configfs, block-device backend) over the kernel nvme
//     driver's namespace, on port 4420;
//  2. gonvme, `nvmectl serve ADDR --nvmf tcp://127.0.0.1:4421` after
//     binding the controller to vfio-pci, with the default idle policy
//     (a poll group sleeps in epoll_wait 50 µs after its last work) and
//     with --nvmf-spin 10ms (it polls 10 ms first: under TCG, waking a
//     halted vCPU costs more than the I/O).
//
// The controller moves between the kernel driver and vfio-pci within the
// boot, as for the other rows.

// Subsystem NQNs and ports of the two targets.
const (
	nvmetNQN   = "nqn.2024-01.io.gonvme:bench-nvmet"
	gonvmeNQN  = "nqn.2024-01.io.gonvme:bench-gonvme"
	nvmetPort  = "4420"
	gonvmePort = "4421"
)

// nvmfTarget runs the target rows and returns how many runs failed; an
// error means the guest could not be set up for them.
func (r *runner) nvmfTarget(boot *vmtest.Boot) (int, error) {
	if len(boot.FabricsModules) == 0 {
		return 0, fmt.Errorf("profile %s carries no NVMe/TCP modules (bench adds +nvmf with --nvmf-target)", boot.Profile)
	}
	if err := guest.LoadModules(guest.ModuleDir, boot.FabricsModules, nil); err != nil {
		return 0, err
	}
	if err := guest.MountConfigfs(); err != nil {
		return 0, err
	}
	if err := guest.LoopbackUp(); err != nil {
		return 0, err
	}
	if err := guest.WriteHostIdentity(vmtest.HostNQN, vmtest.HostID); err != nil {
		return 0, err
	}
	nvme := guest.BinDir + "/nvme"
	for rep := 0; rep < r.o.reps; rep++ {
		// Linux's target over the kernel driver.
		name, err := toKernel(r.addr)
		if err != nil {
			return r.failed, err
		}
		dev := "/dev/" + name + "n1"
		sub, err := guest.NewNVMetSubsystem(nvmetNQN, []string{dev}, []guest.NVMetPort{{ID: 1, Addr: "127.0.0.1", Service: nvmetPort}})
		if err != nil {
			return r.failed, err
		}
		err = r.initiatorRows(rep, nvme, nvmetNQN, nvmetPort, bench.EngineNVMet)
		if rerr := sub.Remove(); rerr != nil && err == nil {
			err = rerr
		}
		if err != nil {
			return r.failed, err
		}
		// gonvme's target, with the default spin and with a long one.
		if _, err := vfio.Bind(r.addr); err != nil {
			return r.failed, fmt.Errorf("bind %s to vfio-pci: %w", r.addr, err)
		}
		for _, v := range []struct{ engine, spin string }{{bench.EngineNVMfGonvme, ""}, {bench.EngineNVMfGonvmeSpin, "10ms"}} {
			stop, err := r.serveNVMf(v.spin)
			if err != nil {
				return r.failed, err
			}
			err = r.initiatorRows(rep, nvme, gonvmeNQN, gonvmePort, v.engine)
			if serr := stop(); serr != nil && err == nil {
				err = serr
			}
			if err != nil {
				return r.failed, err
			}
		}
	}
	return r.failed, nil
}

// initiatorRows connects the kernel initiator to nqn on port, runs fio on
// its block device for every workload and depth, and disconnects.
func (r *runner) initiatorRows(rep int, nvme, nqn, port, engine string) error {
	if _, err := output(nvme, time.Minute, "connect", "-t", "tcp", "-a", "127.0.0.1", "-s", port, "-n", nqn); err != nil {
		return err
	}
	_, blk, err := vmtest.WaitFabricsDevice(nqn, 1, time.Minute)
	if err == nil {
		if rep == 0 {
			info(engine+"_dev", blk)
		}
		for _, wl := range r.o.workloads {
			for _, qd := range r.o.depths {
				r.fioNVMf(rep, wl, qd, blk, engine)
			}
		}
	}
	if _, derr := output(nvme, time.Minute, "disconnect", "-n", nqn); derr != nil && err == nil {
		err = derr
	}
	if gerr := vmtest.WaitFabricsGone(nqn, time.Minute); gerr != nil && err == nil {
		err = gerr
	}
	return err
}

// fioNVMf is one fio run on a connected NVMe/TCP block device: io_uring
// with interrupts (the initiator has no polled queues by default).
func (r *runner) fioNVMf(rep int, wl string, qd int, dev, engine string) {
	s := bench.Sample{Engine: engine, Workload: wl, Depth: qd, Rep: rep}
	args := []string{
		"--name=" + fmt.Sprintf("%s-qd%d-%s", wl, qd, engine),
		"--ioengine=io_uring", "--direct=1", "--eta=never", "--output-format=json",
		"--time_based", fmt.Sprintf("--runtime=%ds", r.o.seconds), fmt.Sprintf("--ramp_time=%ds", r.o.warmup),
		"--filename=" + dev, "--bs=4k", "--rw=" + wl, fmt.Sprintf("--iodepth=%d", qd),
		"--norandommap", "--randrepeat=0", "--lat_percentiles=1", "--percentile_list=50:90:99:99.9",
	}
	t0 := time.Now()
	out, err := output(r.o.fio, r.limit(), args...)
	took := time.Since(t0)
	if err == nil {
		var jobs []bench.FioJob
		jobs, err = bench.ParseFio(out)
		switch {
		case err != nil:
		case jobs[0].Error != 0:
			err = fmt.Errorf("fio job error %d (%v)", jobs[0].Error, unix.Errno(jobs[0].Error))
		default:
			d := jobs[0].Dir(wl)
			lat := d.Lat
			s.IOPS, s.MiBps, s.IOs, s.Seconds, s.Lat = d.IOPS, d.BWBytes/(1<<20), d.TotalIOs, d.RuntimeS, &lat
			if s.IOPS <= 0 {
				err = fmt.Errorf("fio measured no I/O")
			}
		}
	}
	if err != nil {
		s.Err = err.Error()
	}
	r.emit(s, took)
}

// serveNVMf starts nvmectl serve with the NVMe/TCP target on the
// controller and waits until its port answers; stop ends it (SIGTERM)
// and waits.
func (r *runner) serveNVMf(spin string) (stop func() error, err error) {
	log, err := os.Create(filepath.Join(os.TempDir(), "serve-nvmf.log"))
	if err != nil {
		return nil, err
	}
	args := []string{"serve", r.addr, "--listen", "127.0.0.1:9111",
		"--nvmf", "tcp://127.0.0.1:" + gonvmePort, "--nqn", gonvmeNQN, "--discovery-port", "0"}
	if spin != "" {
		args = append(args, "--nvmf-spin", spin)
	}
	cmd := exec.Command(r.o.nvmectl, args...)
	cmd.Stdout, cmd.Stderr, cmd.Dir = log, log, "/tmp"
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	if spin == "" {
		info("nvmf_serve", strings.Join(cmd.Args[1:], " "))
	}
	stop = func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		werr := cmd.Wait()
		log.Close()
		if werr != nil {
			b, _ := os.ReadFile(log.Name())
			return fmt.Errorf("nvmectl serve: %w: %s", werr, clipTail(b))
		}
		return nil
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+gonvmePort, time.Second)
		if err == nil {
			c.Close()
			return stop, nil
		}
		if time.Now().After(deadline) {
			_ = stop()
			b, _ := os.ReadFile(log.Name())
			return nil, fmt.Errorf("nvmectl serve: port %s not open after 2m: %s", gonvmePort, clipTail(b))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
