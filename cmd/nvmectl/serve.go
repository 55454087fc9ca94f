package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/seedb8fa28ef/gonvme/internal/cpuset"
	"github.com/seedb8fa28ef/gonvme/metrics"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/target"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// nvmectl serve: open controllers, run pollers, export their counters.

// serveOpen opens the controllers serve runs, with opts, and returns a
// function that closes them. Tests replace it.
var serveOpen = openSystem

// serveOpts are serve's flags.
type serveOpts struct {
	listen  string
	pollers int
	nvmf    nvmfOpts
	mode    string // --mode: poll, interrupt, hybrid
	idle    string // --idle: adaptive, busy (poll mode)
}

func serveCmd(a app, g *globals) *cobra.Command {
	o := serveOpts{listen: metrics.DefaultListen, mode: "poll", idle: "adaptive"}
	o.nvmf.tgt = new(atomic.Pointer[target.Target])
	cmd := &cobra.Command{
		Use:   "serve ADDR... [--listen 127.0.0.1:9111]",
		Short: "Run pollers on controllers and export Prometheus metrics (/metrics, /healthz)",
		Long: "serve opens the controllers (bound to vfio-pci), runs gonvme's pollers on them (idle\n" +
			"adaptive: a poller with nothing to do parks and costs no CPU) and serves, until Ctrl-C or\n" +
			"SIGTERM, /metrics (Prometheus text format: queue, poller and controller counters, latency\n" +
			"histograms, state, SMART temperature and spare, read at most every 10 s) and /healthz (200\n" +
			"when every controller is ready, else 503 saying which is not). It listens on loopback\n" +
			"unless --listen says otherwise. The controller label is the PCI address (or the\n" +
			"tcp://HOST:PORT/NQN of a controller reached over NVMe/TCP).\n\n" +
			"--mode poll (the default) polls; its idle policy (--idle) is adaptive (park when nothing\n" +
			"is in flight) or busy (spin always, one CPU per poller). --mode interrupt gives each queue\n" +
			"pair its own MSI-X vector and sleeps on the vectors' eventfds whenever there is nothing to\n" +
			"reap or submit; --mode hybrid spins while busy and sleeps after 50 µs without work. The\n" +
			"interrupt modes also let the admin queue's interrupt wake the controller's watcher.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, err := net.SplitHostPort(o.listen); err != nil {
				return usagef("--listen %q: want host:port (%v)", o.listen, err)
			}
			if o.pollers < 0 {
				return usagef("--pollers must not be negative")
			}
			if _, _, err := o.pollerMode(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serveMain(ctx, a, args, o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", o.listen, "address to serve /metrics and /healthz on (host:port)")
	f.IntVar(&o.pollers, "pollers", 1, "pollers to run, on the first CPUs this process may use (0: one per CPU)")
	f.StringVar(&o.mode, "mode", o.mode, "how the pollers wait: poll, interrupt (sleep on MSI-X eventfds when idle) or hybrid (spin, then sleep)")
	f.StringVar(&o.idle, "idle", o.idle, "idle policy of --mode poll: adaptive (park with nothing in flight) or busy (spin always)")
	addNVMfFlags(f, &o.nvmf)
	return cmd
}

func serveMain(ctx context.Context, a app, args []string, o serveOpts, stdout io.Writer) (err error) {
	addrs := make([]string, len(args))
	for i, arg := range args {
		if isFabricsAddr(arg) {
			if addrs[i], err = parseAddr(arg); err != nil {
				return err
			}
			continue
		}
		info, err := findCtrl(a, arg)
		if err != nil {
			return err
		}
		if info.Driver != "vfio-pci" {
			drv := info.Driver
			if drv == "" {
				drv = "no driver"
			}
			return devicef("controller %s is bound to %s, not vfio-pci: run `nvmectl setup %s` first", info.Addr, drv, info.Addr)
		}
		addrs[i] = info.Addr
	}
	var cpus []int
	if o.pollers > 0 {
		all, err := cpuset.Allowed()
		if err != nil {
			return deviceError{err}
		}
		cpus = all[:min(o.pollers, len(all))]
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return usagef("--listen %s: %v", o.listen, err)
	}
	defer ln.Close()
	nq := o.pollers
	if nq == 0 {
		nq = 16
	}
	mode, idle, err := o.pollerMode()
	if err != nil {
		return err
	}
	ctrls, closeAll, err := serveOpen(a, addrs, &nvme.Options{IOQueues: nq, OnEvent: o.nvmf.onEvent,
		Interrupts: mode != poller.ModePoll})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeAll(); cerr != nil && err == nil {
			err = devicef("close: %w", cerr)
		}
	}()
	grp, err := poller.New(ctrls, &poller.Options{CPUs: cpus, Idle: idle, Mode: mode, SpinTime: o.nvmf.spinTime()})
	if err != nil {
		return deviceError{fmt.Errorf("start pollers: %w", err)}
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 35*time.Second)
		defer cancel()
		if serr := grp.Stop(sctx); serr != nil && err == nil {
			err = devicef("stop pollers: %w", serr)
		}
	}()
	stopNVMf, err := startNVMf(&o.nvmf, ctrls, grp, stdout)
	if err != nil {
		return err
	}
	defer stopNVMf()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := metrics.RegisterWith(reg, grp, &metrics.Options{Names: addrs}, ctrls...); err != nil {
		return deviceError{err}
	}
	fmt.Fprintf(stdout, "Serving metrics of %d controller(s) on http://%s/metrics and /healthz (%d poller(s), %v mode); Ctrl-C to stop.\n",
		len(ctrls), ln.Addr(), len(grp.Pollers()), mode)
	if err := metrics.ServeListener(ctx, ln, reg, metrics.Healthy(addrs, ctrls...)); err != nil {
		return deviceError{err}
	}
	return nil
}

// pollerMode validates --mode and --idle.
func (o serveOpts) pollerMode() (poller.Mode, poller.IdlePolicy, error) {
	m, err := poller.ParseMode(o.mode)
	if err != nil {
		return 0, 0, usagef("--mode %q: want poll, interrupt or hybrid", o.mode)
	}
	var idle poller.IdlePolicy
	switch o.idle {
	case "adaptive":
		idle = poller.IdleAdaptive
	case "busy":
		idle = poller.IdleBusy
	default:
		return 0, 0, usagef("--idle %q: want adaptive or busy", o.idle)
	}
	if o.idle != "adaptive" && m != poller.ModePoll {
		return 0, 0, usagef("--idle %s applies to --mode poll, not %v", o.idle, m)
	}
	return m, idle, nil
}
