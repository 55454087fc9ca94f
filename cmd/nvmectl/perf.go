package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	mathbits "math/bits"
	"net"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/cpuset"
	"github.com/seedb8fa28ef/gonvme/internal/perfjson"
	"github.com/seedb8fa28ef/gonvme/metrics"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// nvmectl perf: SPDK's perf (examples/nvme/perf) on gonvme's pollers.
//
// The model, SPDK's: a job is one namespace driven by one poller (SPDK: a
// namespace context of a worker core). Each job owns QD requests with a
// data buffer each; a request's Done callback, which runs on the job's
// poller, takes the next offset and resubmits the same request with
// Poller.SubmitLocal. Nothing is allocated per I/O: requests, buffers and
// the Done callbacks are made before the run, and the per-job counters and
// latency histogram are plain fields that only the job's poller writes.
//
// Jobs are bound to pollers by seeding each job's requests with
// Handle.SubmitTo its poller: the first submission goes through that
// poller's ring, and from then on every resubmission stays on it
// (SubmitLocal). The run checks the binding at
// the end: each poller's own completion counter must equal the completions
// its jobs counted.
//
// Phases: (with --verify) write, then warmup, then measure, then stop.
// A phase change is one atomic store; counters only count completions
// seen in the measure phase, so the warmup needs no reset. Between the
// write phase and the workload every job drains (each request stops
// instead of resubmitting), so the workload starts on blocks whose writes
// all completed.

// perfWorkload is a value of -w.
type perfWorkload struct {
	name    string
	random  bool
	readPct int // -1: taken from -M (rw, randrw)
}

var perfWorkloads = []perfWorkload{
	{"read", false, 100}, {"write", false, 0}, {"randread", true, 100},
	{"randwrite", true, 0}, {"rw", false, -1}, {"randrw", true, -1},
}

// perfFlags are perf's command-line values before validation.
type perfFlags struct {
	qd       int
	ioSize   string
	workload string
	mix      int
	seconds  float64
	warmup   float64
	cores    string
	qpairs   int
	nsid     uint32
	verify   bool
	metrics  string
	seed     uint64
	latency  int // -L count: 1 summary, 2 full histogram
	noShadow bool
	mode     string
	rate     float64
}

// perfConfig is a validated perf run.
type perfConfig struct {
	addrs   []string
	nsid    uint32 // 0: every active namespace
	qd      int
	ioSize  int
	wl      perfWorkload
	readPct int
	dur     time.Duration
	warmup  time.Duration
	pollers int   // how many: len(cpus) once placed
	cpus    []int // the pollers' CPUs
	// placement says how the pollers' CPUs were chosen, for the header:
	// "-c 0x3", or the NUMA node they were placed on.
	placement string
	verify    bool
	seed      uint64 // --seed: the offsets and --verify's pattern; 0 picks one
	latency   int    // -L: 1 prints the latency summary, 2 also the histogram
	metrics   string // --metrics-addr: serve /metrics and /healthz here during the run ("": off)
	noShadow  bool   // --no-shadow-doorbells: MMIO doorbells even where Doorbell Buffer Config is offered
	mode      poller.Mode
	rate      float64 // --rate: total IOPS cap, open-loop pacing (perf_rate.go); 0: none
	// metricsLn listens on metrics: opened before any controller, so a
	// port that cannot be had is a usage error that costs no bring-up.
	metricsLn net.Listener

	// Test hooks, nil in nvmectl: called when the measure phase starts
	// and when it ends (before the drain).
	onMeasure, onMeasureEnd func()
}

// Limits on the flags.
const (
	perfMaxQD     = 4096
	perfMaxSize   = 16 << 20
	perfDrainWait = 90 * time.Second // command timeout (30 s) + abort + reset, with margin
)

func perfCmd(a app, g *globals) *cobra.Command {
	var f perfFlags
	cmd := &cobra.Command{
		Use:   "perf ADDR [ADDR...]",
		Short: "Measure IOPS, bandwidth and latency, like SPDK's perf",
		Long: `perf drives the namespaces of one or more controllers with a synthetic workload from
gonvme's per-core pollers, as SPDK's perf does, and prints IOPS, MiB/s and latency (average,
min, max and the 50th, 90th, 99th, 99.9th and 99.99th percentiles) per namespace and in total.

Each poller (-c) drives every selected namespace with its own queue depth (-q), through the one
queue pair it owns on that namespace's controller: in flight at once are pollers x namespaces x
QD requests. Latency runs from the submission to the completion callback, on the poller. A
queue pair holds at most the controller's MQES+1 entries (4096 at most); requests beyond that
wait in the driver, and the wait counts in their latency.

SPDK perf's flags and these:
  -q  --io-depth       -q, --queue-depth      requests per namespace and poller (default 32)
  -o  --io-size        -s, --io-size          bytes per I/O, K/M/G suffixes are binary (4096, 4K, 128KiB)
  -w  --io-pattern     -w, --workload         read, write, randread, randwrite, rw, randrw
  -M  --rwmixread      -M, --rwmixread        percent reads of rw and randrw (required there)
  -t  --time           -t, --time             seconds measured (default 10; fractions allowed)
  -a  --warmup-time        --warmup           seconds run before measuring, not counted (default 0)
  -c  --core-mask      -c, --cores            SPDK's core mask, with SPDK's meaning: hex ("0x3" or
                                              "3": cores 0 and 1; "2": core 1 only; "f": cores 0-3)
                                              or a list in brackets ("[0-3]", "[1,3]"); one poller
                                              per core
  -P  --num-qpairs     -P, --qpairs-per-ns    queue pairs per namespace. A gonvme poller owns one
                                              queue pair per controller, so N queue pairs are N
                                              pollers: without -c, N pollers (default 1) go on the
                                              CPUs of the first controller's NUMA node; with -c
                                              it must agree with the number of cores
  -L  --enable-sw-latency-tracking  -L        print the latency summary by percentile after the
                                              table; -LL adds the histogram, as SPDK perf does
      --seed           --seed                 seed of the random offsets and of --verify's
                                              pattern (default: picked, and printed)
  -r  (transport ID)   ADDR...                PCI addresses of controllers bound to vfio-pci
  -n  --nsid?          -n, --namespace-id     one namespace (default: all active ones)
                           --verify           check the data (below)
                       -o normal|json         output format

Sequential workloads start each poller at its own offset (poller k of N at k/N of the
namespace) and wrap at the end; random ones pick aligned offsets over the whole namespace. For
rw and randrw each I/O is a read with probability M/100.

--verify first writes a tagged pattern (a hash of a per-run seed, the namespace and the LBA, in
every 8-byte word) sequentially for --time seconds, each poller in its own slice of each
namespace, and waits for every write to complete. The workload then runs within the blocks
written; its writes write the same tags, and every read is compared with the tag its LBA must
hold. A mismatch (stale, misplaced or corrupt data) is counted and the first one described;
any mismatch exits 2. The workload must read (not write or randwrite). A device that drops
writes (QEMU's null-co) fails verification by design.

--metrics-addr 127.0.0.1:9112 serves Prometheus metrics (/metrics, the gonvme_ families of
nvmectl serve, controller label = PCI address) and /healthz on that address while the run lasts;
a port that cannot be listened on is a usage error. Off by default.

--mode poll (the default) spins the pollers, one CPU each, all the time; --mode interrupt
gives every queue pair its own MSI-X vector and lets a poller sleep on the vectors' eventfds
whenever a pass finds nothing to reap or submit; --mode hybrid spins while there is work and
sleeps after 50 µs without any (1.05 ms with I/O in flight). The header and the JSON ("mode") say which.

--rate N caps the total at N I/Os per second, to measure latency and CPU at a fixed load. The
pacing is open-loop: one pacer goroutine starts I/O k at time k/N from the start of the
workload, whether or not earlier ones completed, taking the jobs in turn; between starts it
sleeps, and when late (the Go timer woke it late) it starts what is due at once. Each I/O goes
through its poller's submission ring, as a submission from another goroutine does, so a
sleeping poller is woken for it. A job with all its QD requests in flight makes the pacer look
again one interval later: the rate is then not met, and the IOPS printed say so. Latency counts from the
submission. --rate does not apply to --verify's write phase.

A live line on standard error shows IOPS, MiB/s and the time left, once a second (rewritten in
place on a terminal). Ctrl-C, SIGTERM (timeout(1), kill) and SIGHUP end the measurement early
and print what was measured. Exit
status 2 when any I/O failed or any read mismatched, after printing the results.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.config(cmd, args)
			if err != nil {
				return err
			}
			if n := a.tcp.nrIOQueues; n > 0 && n < cfg.pollers {
				return usagef("--nr-io-queues %d: this run needs %d I/O queues (one per poller)", n, cfg.pollers)
			}
			// SIGTERM (timeout(1), systemd, kill) and SIGHUP (a closed
			// terminal) end the run as Ctrl-C does: the pollers stop and
			// what was measured is printed.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, unix.SIGTERM, unix.SIGHUP)
			defer stop()
			return perfMain(ctx, a, g, cfg, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.GroupID = "io"
	fl := cmd.Flags()
	fl.IntVarP(&f.qd, "queue-depth", "q", 32, "requests in flight per namespace and poller (SPDK -q)")
	fl.StringVarP(&f.ioSize, "io-size", "s", "4096", "bytes per I/O, with K, M or G (binary) suffixes (SPDK -o)")
	fl.StringVarP(&f.workload, "workload", "w", "randread", "read, write, randread, randwrite, rw or randrw (SPDK -w)")
	fl.IntVarP(&f.mix, "rwmixread", "M", 0, "percent of reads for rw and randrw (SPDK -M)")
	fl.Float64VarP(&f.seconds, "time", "t", 10, "seconds to measure (SPDK -t)")
	fl.Float64VarP(&f.warmup, "warmup", "a", 0, "seconds to run before measuring, not counted (SPDK -a)")
	fl.StringVarP(&f.cores, "cores", "c", "", `SPDK's core mask: hex ("0x3" or "3" = cores 0 and 1, "2" = core 1 only) or a list in brackets ("[0-3]"); one poller per core (default: --qpairs-per-ns cores on the controller's NUMA node)`)
	fl.IntVarP(&f.qpairs, "qpairs-per-ns", "P", 1, "queue pairs per namespace: one per poller in gonvme, so this is the poller count; without -c they go on the controller's NUMA node (SPDK -P)")
	fl.Uint64Var(&f.seed, "seed", 0, "seed of the random offsets and of --verify's pattern (printed with the results; 0 picks one): the same seed replays the same offsets")
	fl.CountVarP(&f.latency, "latency", "L", "-L prints the latency summary by percentile, -LL also the histogram, as SPDK perf does")
	nsFlag(cmd, &f.nsid, 0, "namespace to drive (default 0: every active namespace)")
	fl.BoolVar(&f.verify, "verify", false, "write a tagged pattern first, then check every read against it")
	fl.StringVar(&f.metrics, "metrics-addr", "", "serve /metrics and /healthz here during the run")
	fl.BoolVar(&f.noShadow, "no-shadow-doorbells", false, "write every doorbell to its register, even on a controller that offers shadow doorbells (Doorbell Buffer Config)")
	fl.StringVar(&f.mode, "mode", "poll", "how the pollers wait: poll (spin), interrupt (sleep on the queues' MSI-X eventfds whenever idle) or hybrid (spin, sleep after 50 µs without work, 1.05 ms with I/O in flight)")
	fl.Float64Var(&f.rate, "rate", 0, "cap the total IOPS at N (open-loop pacing, see below; 0: as fast as the queue depth allows)")
	return cmd
}

// config validates the flags; every error is a usage error.
func (f *perfFlags) config(cmd *cobra.Command, args []string) (*perfConfig, error) {
	c := &perfConfig{nsid: f.nsid, verify: f.verify, metrics: f.metrics, noShadow: f.noShadow}
	if err := f.modeConfig(c); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, arg := range args {
		a, err := parseAddr(arg)
		if err != nil {
			return nil, err
		}
		if seen[a] {
			return nil, usagef("controller %s is named twice", a)
		}
		seen[a] = true
		c.addrs = append(c.addrs, a)
	}
	if f.qd < 1 || f.qd > perfMaxQD {
		return nil, usagef("--queue-depth %d: want 1 to %d", f.qd, perfMaxQD)
	}
	size, err := parseSize(f.ioSize)
	if err != nil {
		return nil, usagef("--io-size: %v", err)
	}
	if size < 512 || size > perfMaxSize {
		return nil, usagef("--io-size %s: want 512 bytes to %s", f.ioSize, humanBytes(perfMaxSize))
	}
	c.ioSize = size
	c.qd = f.qd
	i := slices.IndexFunc(perfWorkloads, func(w perfWorkload) bool { return w.name == f.workload })
	if i < 0 {
		return nil, usagef("--workload %q: want read, write, randread, randwrite, rw or randrw", f.workload)
	}
	c.wl = perfWorkloads[i]
	mixSet := cmd.Flags().Changed("rwmixread")
	switch {
	case c.wl.readPct >= 0 && mixSet:
		return nil, usagef("--rwmixread applies to rw and randrw only, not %s", c.wl.name)
	case c.wl.readPct >= 0:
		c.readPct = c.wl.readPct
	case !mixSet:
		return nil, usagef("--workload %s needs --rwmixread (-M), the percent of reads", c.wl.name)
	case f.mix < 0 || f.mix > 100:
		return nil, usagef("--rwmixread %d: want 0 to 100", f.mix)
	default:
		c.readPct = f.mix
	}
	if c.verify && c.readPct == 0 {
		return nil, usagef("--verify checks what reads return: %s with %d%% reads reads nothing", c.wl.name, c.readPct)
	}
	if math.IsNaN(f.seconds) || f.seconds <= 0 || f.seconds > 1e6 {
		return nil, usagef("--time %v: want more than 0 seconds", f.seconds)
	}
	if math.IsNaN(f.warmup) || f.warmup < 0 || f.warmup > 1e6 {
		return nil, usagef("--warmup %v: want 0 or more seconds", f.warmup)
	}
	c.dur = time.Duration(f.seconds * float64(time.Second))
	c.warmup = time.Duration(f.warmup * float64(time.Second))
	c.seed, c.latency = f.seed, f.latency
	if f.latency > 2 {
		return nil, usagef("-L given %d times: -L prints the latency summary, -LL adds the histogram", f.latency)
	}
	allowed, err := cpuset.Allowed()
	if err != nil {
		return nil, deviceError{err}
	}
	if f.qpairs < 1 {
		return nil, usagef("--qpairs-per-ns %d: want 1 or more", f.qpairs)
	}
	if !cmd.Flags().Changed("cores") {
		// Placed in perfMain, near the controllers.
		if f.qpairs > len(allowed) {
			return nil, usagef("--qpairs-per-ns %d: %d pollers, but this process may run on %d CPU(s) (%s)", f.qpairs, f.qpairs, len(allowed), cpuset.Format(allowed))
		}
		c.pollers = f.qpairs
		return c, nil
	}
	c.cpus, err = cpuset.ParseCoreMask(f.cores)
	if err == nil {
		for _, cpu := range c.cpus {
			if !slices.Contains(allowed, cpu) {
				err = fmt.Errorf("core %d is not one this process may run on (%s)", cpu, cpuset.Format(allowed))
				break
			}
		}
	}
	if err != nil {
		return nil, usagef("--cores %s: %v; -c is SPDK's core mask: hex (0x3 or 3 = cores 0 and 1, 2 = core 1) or a list in brackets ([0-3]); --qpairs-per-ns N picks N cores near the controller", f.cores, err)
	}
	c.pollers = len(c.cpus)
	c.placement = "-c " + f.cores
	if cmd.Flags().Changed("qpairs-per-ns") && f.qpairs != len(c.cpus) {
		return nil, usagef("--qpairs-per-ns %d with %d poller(s) from --cores %s: each gonvme poller owns one queue pair per controller, so a namespace has as many queue pairs as there are pollers; give one of the two flags, or make them agree",
			f.qpairs, len(c.cpus), f.cores)
	}
	return c, nil
}

// placePollers picks cfg.pollers CPUs for a run without -c: the allowed
// CPUs of the NUMA node of the first controller that has one (so the
// pollers touch the controller's memory and registers locally, as SPDK
// advises placing its cores), then, if that node has too few, the other
// allowed CPUs in order. Without NUMA information it takes the first
// allowed CPUs.
func placePollers(a app, cfg *perfConfig) error {
	allowed, err := cpuset.Allowed()
	if err != nil {
		return deviceError{err}
	}
	pci := a.pciInfo()
	var near []int
	where := "first allowed CPUs"
	for _, addr := range cfg.addrs {
		n := pci[addr].numa
		if n == nil {
			continue
		}
		node, err := cpuset.NodeCPUs(a.root, *n)
		if err != nil {
			continue
		}
		for _, c := range node {
			if slices.Contains(allowed, c) {
				near = append(near, c)
			}
		}
		where = fmt.Sprintf("NUMA node %d of %s", *n, addr)
		break
	}
	cpus := slices.Clone(near)
	for _, c := range allowed {
		if len(cpus) >= cfg.pollers {
			break
		}
		if !slices.Contains(cpus, c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < cfg.pollers {
		return usagef("%d pollers, but this process may run on %d CPU(s) (%s)", cfg.pollers, len(allowed), cpuset.Format(allowed))
	}
	cpus = cpus[:cfg.pollers]
	slices.Sort(cpus)
	if len(near) > 0 && len(near) < cfg.pollers {
		where += fmt.Sprintf(" (%d of its CPUs allowed; the rest elsewhere)", len(near))
	}
	cfg.cpus, cfg.placement = cpus, where
	return nil
}

// parseSize parses a byte count with an optional binary suffix: 4096,
// 4k, 4K, 4KiB, 4KB, 1M, 1G. It is written by hand because go-humanize's
// ParseBytes takes "4K" and "4KB" as 4000 bytes, where SPDK perf's -o
// (spdk_parse_capacity) and every storage engineer mean 4096.
func parseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	lower := strings.ToLower(t)
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(lower, u.suffix) {
			t, mult = t[:len(t)-len(u.suffix)], u.mult
			break
		}
	}
	n, err := strconv.ParseUint(strings.TrimSpace(t), 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a size in bytes (like 4096, 4K, 128KiB or 1M)", s)
	}
	if n > uint64(math.MaxInt32/mult) {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int(n) * mult, nil
}

// perfOpen opens the controllers perf drives with opts and returns a
// function that closes them. nvmectl opens them in one pcie.System, so
// they share a VFIO container and a DMA allocator; the other verbs' app.open
// gives each controller a single I/O queue, and perf needs one per
// poller. Host tests replace it with one over nvmetest.
var perfOpen = openSystem

// perfTarget is one namespace the run drives.
type perfTarget struct {
	addr string
	ctrl *nvme.Controller
	ns   *nvme.Namespace
}

func perfMain(ctx context.Context, a app, g *globals, cfg *perfConfig, stdout, stderr io.Writer) (err error) {
	if cfg.metrics != "" && cfg.metricsLn == nil {
		ln, err := net.Listen("tcp", cfg.metrics)
		if err != nil {
			return usagef("--metrics-addr %s: %v", cfg.metrics, err)
		}
		defer ln.Close()
		cfg.metricsLn = ln
	}
	for _, addr := range cfg.addrs {
		if isFabricsAddr(addr) {
			continue
		}
		info, err := findCtrl(a, addr)
		if err != nil {
			return err
		}
		if info.Driver != "vfio-pci" {
			drv := info.Driver
			if drv == "" {
				drv = "no driver"
			}
			return devicef("controller %s is bound to %s, not vfio-pci: run `nvmectl setup %s` first", addr, drv, addr)
		}
	}
	if cfg.cpus == nil {
		if err := placePollers(a, cfg); err != nil {
			return err
		}
	}
	ctrls, closeAll, err := perfOpen(a, cfg.addrs, &nvme.Options{IOQueues: len(cfg.cpus), AsyncEvents: -1, NoShadowDoorbells: cfg.noShadow,
		Interrupts: cfg.mode != poller.ModePoll})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeAll(); cerr != nil && err == nil {
			err = devicef("close: %w", cerr)
		}
	}()
	targets, err := perfTargets(cfg, ctrls)
	if err != nil {
		return err
	}
	rep, err := perfExec(ctx, cfg, targets, stderr)
	if err != nil {
		return classify(err)
	}
	if g.out == formatJSON {
		if err := perfjson.Write(stdout, &rep.Report); err != nil {
			return deviceError{err}
		}
	} else {
		rep.writeTable(stdout)
		rep.writeLatency(stdout)
	}
	return rep.failure()
}

// perfTargets picks the namespaces and checks the I/O size against each.
func perfTargets(cfg *perfConfig, ctrls []*nvme.Controller) ([]perfTarget, error) {
	var ts []perfTarget
	for i, c := range ctrls {
		ids := c.Namespaces()
		if cfg.nsid != 0 {
			if !slices.Contains(ids, cfg.nsid) {
				return nil, usagef("namespace %d is not active on %s (active: %s)", cfg.nsid, cfg.addrs[i], nsList(ids))
			}
			ids = []uint32{cfg.nsid}
		}
		if len(ids) == 0 {
			return nil, usagef("controller %s has no active namespace", cfg.addrs[i])
		}
		for _, id := range ids {
			ns, err := c.Namespace(id)
			if err != nil {
				return nil, usagef("namespace %d of %s: %v", id, cfg.addrs[i], err)
			}
			bs := ns.BlockSize()
			if cfg.ioSize%bs != 0 {
				return nil, usagef("--io-size %d is not a multiple of the %d-byte block size of namespace %d on %s", cfg.ioSize, bs, id, cfg.addrs[i])
			}
			if most := int(ns.MaxBlocks()) * bs; cfg.ioSize > most {
				return nil, usagef("--io-size %d exceeds the largest transfer of namespace %d on %s (%s); perf does not split I/O", cfg.ioSize, id, cfg.addrs[i], humanBytes(uint64(most)))
			}
			if chunks := ns.Blocks() / uint64(cfg.ioSize/bs); chunks < uint64(len(cfg.cpus)) {
				return nil, usagef("namespace %d on %s holds %d I/Os of %d bytes, fewer than the %d poller(s)", id, cfg.addrs[i], chunks, cfg.ioSize, len(cfg.cpus))
			}
			ts = append(ts, perfTarget{addr: cfg.addrs[i], ctrl: c, ns: ns})
		}
	}
	return ts, nil
}

// Phases of a run, in perfRun.phase.
const (
	phaseIdle     uint32 = iota
	phaseFill            // --verify: write the tagged pattern, not counted
	phaseFillStop        // the fill is over: requests stop instead of resubmitting
	phaseWarmup          // the workload, not counted
	phaseMeasure         // the workload, counted
	phaseStop            // the run is over: requests stop
)

// perfRun is one run: the shared state of every job.
type perfRun struct {
	cfg     *perfConfig
	phase   atomic.Uint32
	active  atomic.Int64  // requests still cycling
	drained chan struct{} // receives when active reaches 0
	seed    uint64
	jobs    []*perfJob
	g       *poller.Group
	meta    perfjson.Run      // the run's metadata for the report
	samples []perfjson.Sample // per second of the measured phase (wait's goroutine)
	pace    *pacer            // --rate (perf_rate.go)
	start   time.Time         // of the measured phase
}

// perfJob is one namespace on one poller. After seeding, only that
// poller's goroutine touches it, until the run has drained.
type perfJob struct {
	run     *perfRun
	row     int // result row (its target)
	target  perfTarget
	nsid    uint32
	p       *poller.Poller
	h       *poller.Handle
	bs      int
	perIO   uint64 // blocks per I/O
	start   uint64 // first chunk (I/O-sized unit) of the job's region
	span    uint64 // chunks in the region
	cursor  uint64 // next sequential chunk, relative to start
	rng     uint64
	readPct uint64
	random  bool
	verify  bool
	slots   []perfSlot
	mem     *dma.Buffer
	idle    chan *perfSlot // --rate: slots waiting for the pacer (perf_rate.go)

	// Counters, written by the job's poller only.
	completions uint64 // every completion, any phase
	failed      uint64 // completions with an error, any phase
	firstErr    string
	ios         uint64 // measure phase from here on
	reads       uint64
	writes      uint64
	errors      uint64
	lat         [2]perfLat // measured latency of writes [0] and reads [1]
	checked     uint64     // reads compared with the pattern (any phase after the fill)
	mismatches  uint64
	bad         perfMismatch // the first mismatch
}

// perfMismatch describes the first word that differed.
type perfMismatch struct {
	found     bool
	lba       uint64
	off       int
	want, got uint64
}

// perfSlot is one request of a job with its buffer.
type perfSlot struct {
	req   nvme.Request
	job   *perfJob
	buf   []byte
	lba   uint64
	read  bool
	stamp int64
}

// perfNow reads the pollers' clock (poller.Monotonic), which a slot's
// stamps share with the poller's own reading of a pass (Poller.Now, in
// done).
func perfNow() int64 { return int64(poller.Monotonic()) }

// errSlotDone stops a slot whose fill region is written.
var errSlotDone = errors.New("perf: fill region written")

// jobSeed is the random state job i starts from with the run's seed: the
// same --seed replays the same offsets and read/write choices.
func jobSeed(seed uint64, i int) uint64 {
	x := seed ^ (uint64(i)+1)*0xD1B54A32D192ED03
	if x == 0 {
		x = 1
	}
	return x
}

// rand is xorshift64*.
func (j *perfJob) rand() uint64 {
	j.rng ^= j.rng >> 12
	j.rng ^= j.rng << 25
	j.rng ^= j.rng >> 27
	return j.rng * 0x2545F4914F6CDD1D
}

// below returns a random number in [0, n): the high word of rand()*n,
// a multiplication where a remainder would be a division per I/O (a
// helper call in a TCG guest, issue 16). Its bias is below n/2^64.
func (j *perfJob) below(n uint64) uint64 {
	hi, _ := mathbits.Mul64(j.rand(), n)
	return hi
}

// prepare picks the next I/O of s for phase ph and builds its command.
func (j *perfJob) prepare(s *perfSlot, ph uint32) error {
	var chunk uint64
	read := false
	if ph == phaseFill {
		if j.cursor >= j.span {
			return errSlotDone
		}
		chunk = j.cursor
		j.cursor++
	} else {
		if j.random {
			chunk = j.below(j.span)
		} else {
			chunk = j.cursor
			if j.cursor++; j.cursor >= j.span {
				j.cursor = 0
			}
		}
		read = j.readPct == 100 || (j.readPct > 0 && j.below(100) < j.readPct)
	}
	s.lba = (j.start + chunk) * j.perIO
	s.read = read
	ns := j.target.ns
	if read {
		return ns.Read(&s.req, s.lba, s.buf, 0)
	}
	if j.verify {
		j.fill(s.buf, s.lba)
	}
	return ns.Write(&s.req, s.lba, s.buf, 0)
}

// perfTag returns the pattern's word i of block lba.
func perfTag(seed uint64, nsid uint32, lba uint64, i int) uint64 {
	x := seed ^ uint64(nsid)<<48 ^ lba*0x9E3779B97F4A7C15
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	x ^= x >> 31
	return x + uint64(i)*0xD6E8FEB86659FD93
}

// fill writes the pattern of the blocks at lba into b.
func (j *perfJob) fill(b []byte, lba uint64) {
	seed := j.run.seed
	for blk := 0; blk*j.bs < len(b); blk++ {
		w := b[blk*j.bs : (blk+1)*j.bs]
		for i := 0; i < len(w); i += 8 {
			binary.LittleEndian.PutUint64(w[i:], perfTag(seed, j.nsid, lba+uint64(blk), i/8))
		}
	}
}

// check compares what a read returned with the pattern.
func (j *perfJob) check(s *perfSlot) {
	j.checked++
	seed := j.run.seed
	for blk := 0; blk*j.bs < len(s.buf); blk++ {
		w := s.buf[blk*j.bs : (blk+1)*j.bs]
		lba := s.lba + uint64(blk)
		for i := 0; i < len(w); i += 8 {
			want := perfTag(seed, j.nsid, lba, i/8)
			if got := binary.LittleEndian.Uint64(w[i:]); got != want {
				j.mismatches++
				if !j.bad.found {
					j.bad = perfMismatch{found: true, lba: lba, off: i, want: want, got: got}
				}
				return
			}
		}
	}
}

// doneFunc returns s's Done callback, which runs on the job's poller. A
// closure with the work in it rather than the method value s.done: a
// method value is called through a wrapper the compiler makes, a second
// call per I/O (about 40 ns in a TCG guest, issue 16).
func (s *perfSlot) doneFunc() func(*nvme.Request) {
	return func(r *nvme.Request) {
		j := s.job
		// The poller's reading for this pass: one clock read per pass, not
		// one per I/O (about half a microsecond each in a TCG guest; issue
		// 16). The completion was posted before the pass began.
		now := int64(j.p.Now())
		ph := j.run.phase.Load()
		j.completions++
		if r.Err != nil {
			j.failed++
			if j.firstErr == "" {
				op := "write"
				if s.read {
					op = "read"
				}
				j.firstErr = fmt.Sprintf("%s of namespace %d at lba %d: %v", op, j.nsid, s.lba, r.Err)
			}
		} else if s.read && j.verify {
			j.check(s)
		}
		if ph == phaseMeasure {
			lat := now - s.stamp
			j.ios++
			if s.read {
				j.reads++
			} else {
				j.writes++
			}
			if r.Err != nil {
				j.errors++
			}
			j.lat[b2i(s.read)].record(lat)
		}
		if ph == phaseFillStop || ph == phaseStop || (ph == phaseFill && r.Err != nil) {
			j.run.slotStopped()
			return
		}
		if j.idle != nil && ph != phaseFill {
			j.idle <- s // the pacer submits it again (perf_rate.go)
			return
		}
		if err := j.prepare(s, ph); err != nil {
			j.slotFailed(s, err)
			return
		}
		// The next I/O's clock starts at this completion's reading unless
		// prepare wrote a --verify pattern (or check read one): picking an
		// offset and building the command take nanoseconds, a clock read
		// about half a microsecond in a TCG guest, one per I/O (issue 16). The
		// latency is the longer for it, by those nanoseconds.
		if j.verify {
			now = perfNow()
		}
		s.stamp = now
		if err := j.p.SubmitLocal(j.target.ctrl, &s.req); err != nil {
			j.slotFailed(s, err)
		}
	}
}

// slotFailed stops a slot that could not go on; an error other than the
// end of the fill counts as a failure unless the run is stopping.
func (j *perfJob) slotFailed(s *perfSlot, err error) {
	if err != errSlotDone && j.run.phase.Load() != phaseStop && j.run.phase.Load() != phaseFillStop {
		j.failed++
		if j.firstErr == "" {
			j.firstErr = fmt.Sprintf("submit to namespace %d at lba %d: %v", j.nsid, s.lba, err)
		}
	}
	j.run.slotStopped()
}

func (r *perfRun) slotStopped() {
	if r.active.Add(-1) == 0 {
		select {
		case r.drained <- struct{}{}:
		default:
		}
	}
}

// perfExec runs the workload on the targets and returns the report. live
// receives the progress lines.
func perfExec(ctx context.Context, cfg *perfConfig, targets []perfTarget, live io.Writer) (rep *perfReport, err error) {
	var ctrls []*nvme.Controller
	var names []string // PCI address of each of ctrls
	perCtrl := map[*nvme.Controller]int{}
	for _, t := range targets {
		if perCtrl[t.ctrl] == 0 {
			ctrls = append(ctrls, t.ctrl)
			names = append(names, t.addr)
		}
		perCtrl[t.ctrl]++
	}
	most := 0
	for _, n := range perCtrl {
		most = max(most, n)
	}
	// Each poller's queue pair on a controller carries QD requests per
	// namespace; one more entry because a ring of n holds n-1.
	depth := min(most*cfg.qd+1, 4096)
	ring := 1024
	for ring < most*len(ctrls)*cfg.qd {
		ring <<= 1
	}
	// Busy pollers hold a P each; leave one for the rest (timers, this
	// goroutine, nvmetest's device). A --rate run's pacer and (in the
	// interrupt modes) each poller sleep in system calls, holding a P
	// each: with no P left idle, the runtime's monitor retakes one in
	// every sleep (a hand-off and a spinning thread per I/O), so the
	// pacer gets a P of its own too.
	want := len(cfg.cpus) + 1
	if cfg.rate > 0 {
		want++
	}
	if prev := runtime.GOMAXPROCS(0); prev < want {
		runtime.GOMAXPROCS(want)
		defer runtime.GOMAXPROCS(prev)
	}
	g, err := poller.New(ctrls, &poller.Options{CPUs: cfg.cpus, QueueDepth: depth, RingSize: ring,
		Idle: poller.IdleBusy, Mode: cfg.mode})
	if err != nil {
		return nil, deviceError{fmt.Errorf("start pollers: %w", err)}
	}
	run := &perfRun{cfg: cfg, g: g, drained: make(chan struct{}, 1), seed: cfg.seed}
	stopped := false
	defer func() {
		if !stopped {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			g.Stop(sctx)
			cancel()
		}
		run.freeBuffers()
	}()
	if cfg.metricsLn != nil {
		stopMetrics, err := perfServeMetrics(cfg.metricsLn, g, ctrls, names, live)
		if err != nil {
			return nil, err
		}
		defer stopMetrics() // before the pollers stop (deferred earlier)
	}
	if run.seed == 0 {
		run.seed = uint64(time.Now().UnixNano())*0x9E3779B97F4A7C15 | 1
	}
	if err := run.makeJobs(targets, ctrls); err != nil {
		return nil, err
	}
	run.meta = runMeta(ctrls, names)

	if cfg.verify {
		run.phase.Store(phaseFill)
		if err := run.seedAll(); err != nil {
			return nil, err
		}
		run.wait(ctx, live, "write", cfg.dur)
		run.phase.Store(phaseFillStop)
		if err := run.waitDrained(); err != nil {
			return nil, err
		}
		for _, j := range run.jobs {
			if j.failed > 0 {
				return nil, deviceError{fmt.Errorf("verify: %d writes of the pattern failed, first: %s", j.failed, j.firstErr)}
			}
			if j.cursor == 0 {
				return nil, deviceError{fmt.Errorf("verify: no block of namespace %d was written on poller %d", j.nsid, j.p.ID())}
			}
			j.span, j.cursor = j.cursor, 0
		}
		if ctx.Err() != nil {
			return nil, usagef("interrupted while writing the pattern")
		}
	}
	first := phaseMeasure
	if cfg.warmup > 0 {
		first = phaseWarmup
	}
	run.phase.Store(first)
	seed := run.seedAll
	if cfg.rate > 0 {
		seed = run.seedPaced // perf_rate.go
	}
	if err := seed(); err != nil {
		return nil, err
	}
	if first == phaseWarmup {
		run.wait(ctx, live, "warmup", cfg.warmup)
		run.phase.Store(phaseMeasure)
	}
	if cfg.onMeasure != nil {
		cfg.onMeasure()
	}
	start := time.Now()
	run.start = start
	run.meta.StartTime = start.UTC().Format(time.RFC3339)
	if ctx.Err() == nil {
		run.wait(ctx, live, "run", cfg.dur)
	}
	if cfg.onMeasureEnd != nil {
		cfg.onMeasureEnd()
	}
	run.phase.Store(phaseStop)
	elapsed := time.Since(start)
	run.stopPacer()
	if err := run.waitDrained(); err != nil {
		return nil, err
	}
	run.waitPacer()         // its counts go into the report
	writeDoorbells(live, g) // perf_doorbells.go
	stopped = true
	if err := g.Close(); err != nil {
		return nil, deviceError{fmt.Errorf("stop pollers: %w", err)}
	}
	if err := run.checkBinding(); err != nil {
		return nil, err
	}
	return run.report(targets, elapsed), nil
}

// runMeta describes the run for the report: nvmectl's version, the
// machine, the controllers (names[i] is ctrls[i]'s address) and the DMA
// memory the buffers got.
func runMeta(ctrls []*nvme.Controller, names []string) perfjson.Run {
	m := perfjson.Run{NvmectlVersion: versionString(), GoVersion: runtime.Version(), Controllers: []perfjson.Controller{}}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	m.CPUModel = cpuModel()
	var st dma.Stats
	seen := map[*dma.Allocator]bool{}
	for i, c := range ctrls {
		id := c.Identify()
		m.Controllers = append(m.Controllers, perfjson.Controller{Address: names[i], Model: id.MN, Serial: id.SN, Firmware: id.FR, ShadowDoorbells: c.ShadowDoorbells()})
		mem := c.Memory()
		if seen[mem] {
			continue
		}
		seen[mem] = true
		s := mem.Stats()
		st.Bytes += s.Bytes
		st.HugeBytes += s.HugeBytes
		st.HugeFallbacks += s.HugeFallbacks
		if err := mem.LastHugeFallback(); err != nil && m.HugepageFallbackReason == "" {
			m.HugepageFallbackReason = err.Error()
		}
	}
	switch {
	case st.HugeBytes == st.Bytes && st.Bytes > 0:
		m.DMAMemory = "2MiB hugepages"
	case st.HugeBytes == 0:
		m.DMAMemory = "4KiB pages"
	default:
		m.DMAMemory = "mixed"
	}
	m.HugepageFallback = st.HugeFallbacks > 0
	if !m.HugepageFallback {
		m.HugepageFallbackReason = ""
	}
	return m
}

// cpuModel names the processor (prometheus/procfs reads /proc/cpuinfo).
func cpuModel() string {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return ""
	}
	info, err := fs.CPUInfo()
	if err != nil || len(info) == 0 {
		return ""
	}
	return info[0].ModelName
}

// perfServeMetrics serves g's and ctrls' metrics (controller label: names)
// and /healthz on ln until the returned function is called, which stops
// the server and waits for it (and closes ln).
func perfServeMetrics(ln net.Listener, g *poller.Group, ctrls []*nvme.Controller, names []string, live io.Writer) (func(), error) {
	reg := prometheus.NewRegistry()
	if err := metrics.RegisterWith(reg, g, &metrics.Options{Names: names}, ctrls...); err != nil {
		return nil, deviceError{err}
	}
	fmt.Fprintf(live, "perf: serving /metrics and /healthz on http://%s\n", ln.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- metrics.ServeListener(ctx, ln, reg, metrics.Healthy(names, ctrls...)) }()
	return func() {
		cancel()
		if err := <-served; err != nil {
			fmt.Fprintf(live, "perf: %v\n", err)
		}
	}, nil
}

// makeJobs creates a job for every namespace on every poller that owns a
// queue pair on its controller, with QD slots and their buffers.
func (r *perfRun) makeJobs(targets []perfTarget, ctrls []*nvme.Controller) error {
	cfg := r.cfg
	onTarget := make([]int, len(targets)) // jobs per target so far
	perTarget := make([]int, len(targets))
	type pj struct {
		p  *poller.Poller
		ti int
	}
	var plan []pj
	for _, p := range r.g.Pollers() {
		for _, q := range p.Stats().Queues {
			c := ctrls[q.Controller]
			for ti, t := range targets {
				if t.ctrl == c {
					plan = append(plan, pj{p, ti})
					perTarget[ti]++
				}
			}
		}
	}
	for _, x := range plan {
		t := targets[x.ti]
		bs := t.ns.BlockSize()
		perIO := uint64(cfg.ioSize / bs)
		chunks := t.ns.Blocks() / perIO
		part := chunks / uint64(perTarget[x.ti])
		k := uint64(onTarget[x.ti])
		onTarget[x.ti]++
		j := &perfJob{
			run: r, row: x.ti, target: t, nsid: t.ns.ID(), p: x.p, h: r.g.Handle(t.ctrl),
			bs: bs, perIO: perIO, readPct: uint64(cfg.readPct), random: cfg.wl.random, verify: cfg.verify,
			lat: [2]perfLat{{minNS: math.MaxInt64}, {minNS: math.MaxInt64}},
			rng: jobSeed(r.seed, len(r.jobs)),
		}
		if cfg.verify {
			// Each job writes, then works in, a slice of its own.
			j.start, j.span = k*part, part
		} else {
			j.start, j.span, j.cursor = 0, chunks, k*part
		}
		mem, err := t.ctrl.Memory().Alloc(cfg.qd * cfg.ioSize)
		if err != nil {
			return deviceError{fmt.Errorf("dma buffers for namespace %d (%d x %d bytes): %w", j.nsid, cfg.qd, cfg.ioSize, err)}
		}
		j.mem = mem
		j.slots = make([]perfSlot, cfg.qd)
		for i := range j.slots {
			s := &j.slots[i]
			s.job = j
			s.buf = mem.Bytes[i*cfg.ioSize : (i+1)*cfg.ioSize]
			s.req.Done = s.doneFunc()
		}
		if cfg.rate > 0 {
			j.idle = make(chan *perfSlot, len(j.slots))
		}
		r.jobs = append(r.jobs, j)
	}
	return nil
}

// freeBuffers gives every job's buffers back; the pollers are stopped.
func (r *perfRun) freeBuffers() {
	r.waitPacer()
	for _, j := range r.jobs {
		if j.mem != nil {
			j.target.ctrl.Memory().Free(j.mem)
			j.mem = nil
		}
	}
}

// seedAll starts every request of every job on its poller with
// Handle.SubmitTo. Every slot's first command is built before any is
// submitted: once one is, the poller owns the job.
func (r *perfRun) seedAll() error {
	ph := r.phase.Load()
	n := 0
	for _, j := range r.jobs {
		n += len(j.slots)
	}
	select {
	case <-r.drained:
	default:
	}
	r.active.Store(int64(n))
	for _, p := range r.g.Pollers() {
		var mine []*perfJob
		for _, j := range r.jobs {
			if j.p == p {
				mine = append(mine, j)
			}
		}
		if len(mine) == 0 {
			continue
		}
		var serr error
		var ready []*perfSlot
		for _, j := range mine {
			for i := range j.slots {
				s := &j.slots[i]
				if err := j.prepare(s, ph); err != nil {
					if err != errSlotDone {
						serr = deviceError{fmt.Errorf("namespace %d: %w", j.nsid, err)}
					}
					r.slotStopped()
					continue
				}
				ready = append(ready, s)
			}
		}
		now := perfNow()
		for _, s := range ready {
			s.stamp = now
			if err := s.job.h.SubmitTo(p, &s.req); err != nil {
				if serr == nil {
					serr = deviceError{fmt.Errorf("submit to namespace %d: %w", s.job.nsid, err)}
				}
				r.slotStopped()
			}
		}
		if serr != nil {
			return serr
		}
	}
	return nil
}

// wait lets a phase run for d, printing the live line once a second. It
// returns early on ctx (Ctrl-C) or when every request has stopped (the
// fill wrote its whole region, or every request failed to resubmit).
func (r *perfRun) wait(ctx context.Context, live io.Writer, name string, d time.Duration) {
	tty := isTerminal(live)
	start := time.Now()
	timer := time.NewTimer(d)
	defer timer.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, lastAt := r.completed(), start
	defer func() {
		if tty {
			fmt.Fprint(live, "\n")
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			return
		case <-r.drained:
			// Put it back for waitDrained.
			select {
			case r.drained <- struct{}{}:
			default:
			}
			return
		case now := <-tick.C:
			c := r.completed()
			sec := now.Sub(lastAt).Seconds()
			iops := float64(c-last) / sec
			left := max(0, d-now.Sub(start))
			line := fmt.Sprintf("perf %-6s %10.0f IOPS %10.2f MiB/s %6.0f s left", name, iops,
				iops*float64(r.cfg.ioSize)/(1<<20), math.Round(left.Seconds()))
			if tty {
				fmt.Fprintf(live, "\r%s\x1b[K", line)
			} else {
				fmt.Fprintln(live, line)
			}
			if name == "run" && r.phase.Load() == phaseMeasure {
				r.samples = append(r.samples, perfjson.Sample{Second: round3(now.Sub(r.start).Seconds()), IOs: c - last,
					IOPS: round3(iops), MiBps: round3(iops * float64(r.cfg.ioSize) / (1 << 20))})
			}
			last, lastAt = c, now
		}
	}
}

// completed sums the completions the pollers published.
func (r *perfRun) completed() uint64 {
	var n uint64
	for _, s := range r.g.Stats() {
		n += s.Completed
	}
	return n
}

// waitDrained waits until every request has stopped.
func (r *perfRun) waitDrained() error {
	if r.active.Load() == 0 {
		return nil
	}
	select {
	case <-r.drained:
		return nil
	case <-time.After(perfDrainWait):
		return deviceError{fmt.Errorf("%d requests still outstanding %v after the run ended", r.active.Load(), perfDrainWait)}
	}
}

// checkBinding compares each poller's completion counter with what its
// jobs counted: they differ if a request ran on a poller other than its
// job's (the seeding did not land where it was pinned).
func (r *perfRun) checkBinding() error {
	for _, s := range r.g.Stats() {
		var n uint64
		for _, j := range r.jobs {
			if j.p.ID() == s.ID {
				n += j.completions
			}
		}
		if n != s.Completed {
			return deviceError{fmt.Errorf("internal error: poller %d completed %d requests, its jobs counted %d", s.ID, s.Completed, n)}
		}
	}
	return nil
}

// isTerminal reports whether w is a terminal (golang.org/x/term), where
// the live line is rewritten in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// perfRow accumulates one row of the report: a namespace (all its
// pollers) or the total.
type perfRow struct {
	perfjson.Result
	lat [2]perfLat // writes, reads
}

// perfLat is a latency histogram with the exact extremes.
type perfLat struct {
	hist  poller.Histogram
	minNS int64
	maxNS int64
}

func (l *perfLat) record(ns int64) {
	l.minNS = min(l.minNS, ns)
	l.maxNS = max(l.maxNS, ns)
	l.hist.Record(time.Duration(ns))
}

func (l *perfLat) add(o *perfLat) {
	l.hist.Add(&o.hist)
	l.minNS = min(l.minNS, o.minNS)
	l.maxNS = max(l.maxNS, o.maxNS)
}

// summary is the latency summary in µs; zero without I/O.
func (l *perfLat) summary() perfjson.Latency {
	if l.hist.Count == 0 {
		return perfjson.Latency{}
	}
	// A bucket's midpoint can lie outside [min, max]; the true quantile
	// cannot.
	q := func(p float64) float64 { return usOf(min(max(int64(l.hist.Quantile(p)), l.minNS), l.maxNS)) }
	return perfjson.Latency{
		Avg: usOf(min(max(int64(l.hist.Mean()), l.minNS), l.maxNS)), Min: usOf(l.minNS), Max: usOf(l.maxNS),
		P50: q(0.5), P90: q(0.9), P99: q(0.99), P999: q(0.999), P9999: q(0.9999),
	}
}

// buckets lists the non-empty buckets of the histogram in µs.
func (l *perfLat) buckets() []perfjson.Bucket {
	out := []perfjson.Bucket{}
	for i, n := range l.hist.Buckets {
		if n == 0 {
			continue
		}
		hi := float64(math.MaxUint64)
		if i+1 < poller.NumBuckets {
			hi = float64(poller.BucketLow(i + 1))
		}
		out = append(out, perfjson.Bucket{LowUs: float64(poller.BucketLow(i)) / 1e3, HighUs: hi / 1e3, Count: n})
	}
	return out
}

func usOf(ns int64) float64 { return round3(float64(ns) / 1e3) }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// perfReport is what perf prints: the JSON of package perfjson (the one
// definition of its keys, which doc.go lists) and what the exit status
// needs.
type perfReport struct {
	perfjson.Report

	failedIOs  uint64
	firstError string
	seed       uint64 // the run's seed (--seed, or the one picked)
	placement  string // how the pollers' CPUs were chosen
	latency    int    // -L count
	// pacerScheds counts the --rate pacer's passes through the Go
	// scheduler (pacerSchedEvery); tests read it.
	pacerScheds uint64
	rows        []perfRow
	total       perfRow
}

func (r *perfRun) report(targets []perfTarget, elapsed time.Duration) *perfReport {
	cfg := r.cfg
	rep := &perfReport{Report: perfjson.Report{
		Workload: cfg.wl.name, IOSize: cfg.ioSize, QueueDepth: cfg.qd, RWMixRead: cfg.readPct,
		Pollers: len(cfg.cpus), CPUs: cfg.cpus, Seconds: round3(elapsed.Seconds()), WarmupSeconds: round3(cfg.warmup.Seconds()),
		Verify: perfjson.Verify{Enabled: cfg.verify}, Mode: cfg.mode.String(), RateIOPS: cfg.rate,
	}}
	base := perfRow{Result: perfjson.Result{Workload: cfg.wl.name, IOSize: cfg.ioSize, QueueDepth: cfg.qd, Seconds: elapsed.Seconds()},
		lat: [2]perfLat{{minNS: math.MaxInt64}, {minNS: math.MaxInt64}}}
	rows := make([]perfRow, len(targets))
	for i, t := range targets {
		rows[i] = base
		rows[i].Controller, rows[i].NSID = t.addr, t.ns.ID()
	}
	tot := base
	tot.Controller = "total"
	for _, j := range r.jobs {
		for _, x := range []*perfRow{&rows[j.row], &tot} {
			x.Pollers++
			x.IOs += j.ios
			x.Reads += j.reads
			x.Writes += j.writes
			x.Errors += j.errors
			x.lat[0].add(&j.lat[0])
			x.lat[1].add(&j.lat[1])
		}
		rep.failedIOs += j.failed
		if rep.firstError == "" {
			rep.firstError = j.firstErr
		}
		if r.pace != nil && j == r.jobs[0] {
			rep.failedIOs += r.pace.failed
			rep.pacerScheds = r.pace.scheds
			if rep.firstError == "" {
				rep.firstError = r.pace.first
			}
		}
		if cfg.verify {
			rep.Verify.Blocks += j.span * j.perIO
			rep.Verify.Checked += j.checked
			rep.Verify.Mismatches += j.mismatches
			if j.bad.found && rep.Verify.FirstMismatch == "" {
				rep.Verify.FirstMismatch = fmt.Sprintf("%s namespace %d lba %d byte %d: read %#016x, want %#016x",
					j.target.addr, j.nsid, j.bad.lba, j.bad.off, j.bad.got, j.bad.want)
			}
		}
	}
	tot.Pollers = len(cfg.cpus)
	if cfg.verify {
		rep.Verify.Seed = r.seed
	}
	rep.seed, rep.placement, rep.latency = r.seed, cfg.placement, cfg.latency
	rep.Seed, rep.Run, rep.Samples = r.seed, r.meta, r.samples
	if rep.Samples == nil {
		rep.Samples = []perfjson.Sample{}
	}
	rep.Results = make([]perfjson.Result, len(rows))
	rep.rows = rows
	for i := range rows {
		rows[i].finish(elapsed)
		rep.Results[i] = rows[i].Result
	}
	tot.finish(elapsed)
	rep.Total = tot.Result
	rep.total = tot
	return rep
}

// finish turns the counts into rates and the latency summaries.
func (x *perfRow) finish(elapsed time.Duration) {
	sec := elapsed.Seconds()
	if sec > 0 {
		x.IOPS = round3(float64(x.IOs) / sec)
		x.MiBps = round3(float64(x.IOs) * float64(x.IOSize) / (1 << 20) / sec)
	}
	x.Seconds = round3(sec)
	all := x.all()
	x.Latency = all.summary()
	x.WriteLatency = x.lat[0].summary()
	x.ReadLatency = x.lat[1].summary()
	x.Histogram = all.buckets()
}

// all is the row's reads and writes together.
func (x *perfRow) all() *perfLat {
	all := perfLat{minNS: math.MaxInt64}
	all.add(&x.lat[0])
	all.add(&x.lat[1])
	return &all
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// perfColumns is the table header; the VM tests look for it.
var perfColumns = []string{"IOPS", "MiB/s", "Avg(us)", "Min(us)", "p50(us)", "p90(us)", "p99(us)", "p99.9(us)", "p99.99(us)", "Max(us)"}

func (rep *perfReport) writeTable(w io.Writer) {
	mix := ""
	if rep.Workload == "rw" || rep.Workload == "randrw" {
		mix = fmt.Sprintf(" (%d%% reads)", rep.RWMixRead)
	}
	where := ""
	if rep.placement != "" {
		where = " (" + rep.placement + ")"
	}
	rate := ""
	if rep.RateIOPS > 0 {
		rate = fmt.Sprintf(", capped at %g IOPS", rep.RateIOPS)
	}
	fmt.Fprintf(w, "perf: %s%s, %d-byte I/O, queue depth %d per namespace and poller, %d poller(s) on CPU %s%s, %.2f s measured (%.2f s warmup), seed %d, %s mode%s, %s\n",
		rep.Workload, mix, rep.IOSize, rep.QueueDepth, rep.Pollers, cpuset.Format(rep.CPUs), where, rep.Seconds, rep.WarmupSeconds, rep.seed, rep.Mode, rate, doorbellNote(rep.Run.Controllers))
	// The controller column fits the longest name: a PCI address is 12
	// characters, a tcp:// name many more.
	cw := 12
	for i := range rep.Results {
		cw = max(cw, len(rep.Results[i].Controller))
	}
	fmt.Fprintf(w, "%-*s %5s %6s", cw, "Controller", "NSID", "Read%")
	for i, c := range perfColumns {
		width := 10
		if i < 2 {
			width = 11
		}
		fmt.Fprintf(w, " %*s", width, c)
	}
	fmt.Fprintln(w)
	row := func(x *perfjson.Result, name, nsid string) {
		readPct := 0.0
		if x.IOs > 0 {
			readPct = 100 * float64(x.Reads) / float64(x.IOs)
		}
		l := x.Latency
		fmt.Fprintf(w, "%-*s %5s %6.1f %11.2f %11.2f", cw, name, nsid, readPct, x.IOPS, x.MiBps)
		for _, v := range []float64{l.Avg, l.Min, l.P50, l.P90, l.P99, l.P999, l.P9999, l.Max} {
			fmt.Fprintf(w, " %10.2f", v)
		}
		fmt.Fprintln(w)
	}
	mixed := rep.RWMixRead > 0 && rep.RWMixRead < 100
	// For a mixed workload, a row each for the reads and the writes
	// alone under each row: their latencies differ, and the blend hides
	// both.
	split := func(x *perfjson.Result) {
		if !mixed {
			return
		}
		for _, op := range []struct {
			name string
			n    uint64
			l    perfjson.Latency
		}{{"  reads", x.Reads, x.ReadLatency}, {"  writes", x.Writes, x.WriteLatency}} {
			sub := perfjson.Result{IOs: op.n, Reads: op.n, Latency: op.l}
			if x.Seconds > 0 {
				sub.IOPS = float64(op.n) / x.Seconds
				sub.MiBps = sub.IOPS * float64(x.IOSize) / (1 << 20)
			}
			if op.name == "  writes" {
				sub.Reads = 0
			}
			row(&sub, op.name, "")
		}
	}
	for i := range rep.Results {
		x := &rep.Results[i]
		row(x, x.Controller, strconv.Itoa(int(x.NSID)))
		split(x)
	}
	row(&rep.Total, "Total", "")
	split(&rep.Total)
	if e := rep.Total.Errors; e > 0 {
		fmt.Fprintf(w, "errors: %d of %d I/Os failed\n", e, rep.Total.IOs)
	}
	if v := rep.Verify; v.Enabled {
		fmt.Fprintf(w, "verify: %d reads checked against the pattern of %d blocks, %d mismatches\n", v.Checked, v.Blocks, v.Mismatches)
		if v.FirstMismatch != "" {
			fmt.Fprintf(w, "verify: first mismatch: %s\n", v.FirstMismatch)
		}
	}
}

// latencyPercentiles are the points of SPDK perf's -L summary.
var latencyPercentiles = []float64{1, 10, 25, 50, 75, 90, 95, 98, 99, 99.5, 99.9, 99.99, 99.999, 99.9999, 99.99999}

// writeLatency prints -L's summary by percentile for each namespace (and
// for the reads and the writes of a mixed workload), and with -LL the
// histogram, the way SPDK perf does.
func (rep *perfReport) writeLatency(w io.Writer) {
	if rep.latency == 0 {
		return
	}
	mixed := rep.RWMixRead > 0 && rep.RWMixRead < 100
	for i := range rep.rows {
		x := &rep.rows[i]
		parts := []struct {
			what string
			l    *perfLat
		}{{"", x.all()}}
		if mixed {
			parts = append(parts, struct {
				what string
				l    *perfLat
			}{" reads", &x.lat[1]}, struct {
				what string
				l    *perfLat
			}{" writes", &x.lat[0]})
		}
		for _, p := range parts {
			h := &p.l.hist
			name := fmt.Sprintf("%s NSID %d%s from %d poller(s) on CPU %s", x.Controller, x.NSID, p.what, rep.Pollers, cpuset.Format(rep.CPUs))
			fmt.Fprintf(w, "\nSummary latency data for %s:\n", name)
			fmt.Fprintln(w, strings.Repeat("=", 81))
			if h.Count == 0 {
				fmt.Fprintln(w, "  no I/O measured")
				continue
			}
			for _, pc := range latencyPercentiles {
				v := min(max(int64(h.Quantile(pc/100)), p.l.minNS), p.l.maxNS)
				fmt.Fprintf(w, "%10.5f%% : %12.3fus\n", pc, float64(v)/1e3)
			}
			if rep.latency < 2 {
				continue
			}
			fmt.Fprintf(w, "\nLatency histogram for %s:\n", name)
			fmt.Fprintln(w, strings.Repeat("=", 78))
			fmt.Fprintln(w, "       Range in us     Cumulative    IO count")
			var cum uint64
			for _, b := range p.l.buckets() {
				cum += b.Count
				fmt.Fprintf(w, "%10.3f - %10.3f: %9.4f%%  (%9d)\n", b.LowUs, b.HighUs, 100*float64(cum)/float64(h.Count), b.Count)
			}
		}
	}
}

// failure is the error perf exits with after printing: failed I/O or a
// verify mismatch (exit 2).
func (rep *perfReport) failure() error {
	var errs []error
	if rep.failedIOs > 0 {
		errs = append(errs, fmt.Errorf("perf: %d I/Os failed, first: %s", rep.failedIOs, rep.firstError))
	}
	if rep.Verify.Mismatches > 0 {
		errs = append(errs, fmt.Errorf("perf: verify: %d of %d reads returned data that was not written (first: %s)",
			rep.Verify.Mismatches, rep.Verify.Checked, rep.Verify.FirstMismatch))
	}
	if len(errs) == 0 {
		return nil
	}
	return deviceError{errors.Join(errs...)}
}

// doorbellNote says for perf's header how the doorbells were written:
// "shadow doorbells" (Doorbell Buffer Config, most doorbells stay in
// memory), "MMIO doorbells", or each controller's when they differ.
func doorbellNote(cs []perfjson.Controller) string {
	var shadow, mmio []string
	for _, c := range cs {
		if strings.HasPrefix(c.Address, "tcp://") {
			continue // a fabric has no doorbells
		}
		if c.ShadowDoorbells {
			shadow = append(shadow, c.Address)
		} else {
			mmio = append(mmio, c.Address)
		}
	}
	switch {
	case len(mmio) == 0 && len(shadow) == 0:
		return "no doorbells (NVMe/TCP)"
	case len(mmio) == 0:
		return "shadow doorbells"
	case len(shadow) == 0:
		return "MMIO doorbells"
	}
	return "shadow doorbells on " + strings.Join(shadow, " ") + ", MMIO doorbells on " + strings.Join(mmio, " ")
}
