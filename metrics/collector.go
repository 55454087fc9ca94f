package metrics

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// ErrInvalid is returned for a collector that cannot describe what it was
// given (a controller not in the group, a nil controller, names that do not
// match the controllers).
var ErrInvalid = errors.New("metrics: invalid argument")

// DefaultSMARTInterval is how long a SMART log read at scrape time is
// reused.
const DefaultSMARTInterval = 10 * time.Second

// Options configure a Collector. The zero value gives the defaults.
type Options struct {
	// Names are the values of the controller label, one per controller
	// in the order given (PCI addresses, say). Default: the serial
	// number, or "ctrlN" when it is empty or repeats.
	Names []string
	// SMARTInterval is how long a SMART / Health log read is reused
	// (0: DefaultSMARTInterval). Negative: never read it.
	SMARTInterval time.Duration
	// Now is the clock for the SMART cache (tests); nil: time.Now.
	Now func() time.Time
}

// Collector is a prometheus.Collector over a poller.Group's published
// counters and its controllers' state and SMART data. Describe and Collect
// may be called from any goroutine, concurrently.
type Collector struct {
	g        *poller.Group
	ctrls    []*nvme.Controller
	names    []string
	interval time.Duration
	now      func() time.Time
	smart    []smartCache
}

// smartCache holds the last SMART read of one controller.
type smartCache struct {
	mu   sync.Mutex // serializes reads: one admin command per interval
	at   time.Time
	log  *spec.SMARTLog
	ok   uint64
	errs uint64
}

// NewCollector returns a Collector for the pollers of g (nil: controllers
// only) and ctrls, which must be the controllers g was made with, in the
// same order (poller.QueueStats.Controller indexes them). Any goroutine.
func NewCollector(g *poller.Group, opts *Options, ctrls ...*nvme.Controller) (*Collector, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	c := &Collector{g: g, ctrls: slices.Clone(ctrls), interval: o.SMARTInterval, now: o.Now}
	if c.interval == 0 {
		c.interval = DefaultSMARTInterval
	}
	if c.now == nil {
		c.now = time.Now
	}
	if o.Names != nil && len(o.Names) != len(ctrls) {
		return nil, fmt.Errorf("%w: %d names for %d controllers", ErrInvalid, len(o.Names), len(ctrls))
	}
	seen := map[string]bool{}
	for i, ctrl := range ctrls {
		if ctrl == nil {
			return nil, fmt.Errorf("%w: controller %d is nil", ErrInvalid, i)
		}
		if g != nil && g.Handle(ctrl) == nil {
			return nil, fmt.Errorf("%w: controller %d is not in the poller group", ErrInvalid, i)
		}
		name := ""
		if o.Names != nil {
			name = o.Names[i]
			if name == "" || seen[name] {
				return nil, fmt.Errorf("%w: controller name %q is empty or repeats", ErrInvalid, name)
			}
		} else if id := ctrl.Identify(); id != nil {
			name = id.SN
		}
		if name == "" || seen[name] {
			name = "ctrl" + strconv.Itoa(i)
		}
		seen[name] = true
		c.names = append(c.names, name)
	}
	c.smart = make([]smartCache, len(ctrls))
	return c, nil
}

// Register registers a Collector (default options) for g and ctrls on
// reg; see NewCollector. Any goroutine.
func Register(reg prometheus.Registerer, g *poller.Group, ctrls ...*nvme.Controller) error {
	return RegisterWith(reg, g, nil, ctrls...)
}

// RegisterWith is Register with options.
func RegisterWith(reg prometheus.Registerer, g *poller.Group, opts *Options, ctrls ...*nvme.Controller) error {
	c, err := NewCollector(g, opts, ctrls...)
	if err != nil {
		return err
	}
	if err := reg.Register(c); err != nil {
		return fmt.Errorf("metrics: register collector: %w", err)
	}
	return nil
}

// Descriptions. Every metric the Collector emits is one of these.
var (
	queueLabels  = []string{"controller", "qid", "poller"}
	pollerLabels = []string{"poller", "cpu"}
	ctrlLabels   = []string{"controller"}

	dQSubmitted = desc("queue_submitted_commands_total", "Commands written to the submission queue.", queueLabels...)
	dQCompleted = desc("queue_completed_commands_total", "Completions with a device status (any status).", queueLabels...)
	dQErrors    = desc("queue_errors_total", "Requests completed with an error, by status: the device's status name, \"driver\" for an error without a device status (timeout, removal, close, stop), \"other\" past the poller's table of distinct statuses.", append(slices.Clone(queueLabels), "status")...)
	dQCommands  = desc("queue_commands_total", "Requests completed through the poller (any status), by operation.", append(slices.Clone(queueLabels), "op")...)
	dQBytes     = desc("queue_bytes_total", "Data bytes of the read and write requests completed through the poller (any status).", append(slices.Clone(queueLabels), "op")...)
	dQFailed    = desc("queue_failed_commands_total", "Requests failed without a device status (timeout, removal, close).", queueLabels...)
	dQTimeouts  = desc("queue_timeouts_total", "Commands past their deadline (an Abort was sent).", queueLabels...)
	dQRequeued  = desc("queue_requeued_commands_total", "Commands resubmitted after a controller reset.", queueLabels...)
	dQBogus     = desc("queue_bogus_completions_total", "Completion entries ignored: a command ID naming no outstanding command, or an SQ head outside the queue.", append(slices.Clone(queueLabels), "reason")...)
	dQFullWaits = desc("queue_full_waits_total", "Requests parked because every command ID of the queue pair was taken.", queueLabels...)
	dQPolls     = desc("queue_polls_total", "Polls of the completion queue.", queueLabels...)
	dQIdlePolls = desc("queue_idle_polls_total", "Polls of the completion queue that reaped nothing.", queueLabels...)
	dQDoorbells = desc("queue_doorbell_writes_total", "Doorbell updates (a new tail or head given to the controller), written to the register or to the shadow doorbell buffer.", append(slices.Clone(queueLabels), "doorbell")...)
	dQDBMMIO    = desc("queue_doorbell_mmio_writes_total", "Doorbell updates written to the register (MMIO), submission and completion queue.", queueLabels...)
	dQDBSaved   = desc("queue_doorbell_writes_saved_total", "Doorbell updates left in the shadow doorbell buffer: the controller's EventIdx did not ask for the register write.", queueLabels...)
	dQInFlight  = desc("queue_inflight_commands", "Commands outstanding on the device.", queueLabels...)
	dQWaiting   = desc("queue_waiting_requests", "Requests waiting for a free command ID.", queueLabels...)
	dQDepth     = desc("queue_depth_entries", "Entries per submission and completion ring.", queueLabels...)
	dQLatency   = desc("queue_latency_seconds", "Time from the submitter's call to the completion callback, by operation.", append(slices.Clone(queueLabels), "op")...)

	dPLoops     = desc("poller_loops_total", "Passes of the poll loop.", pollerLabels...)
	dPIdleLoops = desc("poller_idle_loops_total", "Passes that took no submission and reaped nothing.", pollerLabels...)
	dPSubmit    = desc("poller_submissions_total", "Submissions taken by the poller, from its inbound ring or made on its goroutine.", append(slices.Clone(pollerLabels), "path")...)
	dPCompleted = desc("poller_completions_total", "Requests completed through the poller (any status).", pollerLabels...)
	dPFailed    = desc("poller_failed_requests_total", "Requests the poller completed with its own error (refused by the queue pair, stopped).", pollerLabels...)
	dPParks     = desc("poller_parks_total", "Times the poller parked (adaptive idle policy).", pollerLabels...)
	dPYields    = desc("poller_yields_total", "Naps of an adaptive poller idle with requests in flight.", pollerLabels...)
	dPFullWaits = desc("poller_ring_full_waits_total", "Submissions that found the poller's inbound ring full.", pollerLabels...)
	dPBusy      = desc("poller_busy_rejections_total", "Submissions refused with ErrBusy.", pollerLabels...)
	dPMisuse    = desc("poller_misuse_total", "Submissions of a request already in flight (ignored).", pollerLabels...)
	dPInFlight  = desc("poller_inflight_requests", "Requests handed to queue pairs and not completed.", pollerLabels...)
	dPCPU       = desc("poller_cpu_seconds_total", "CPU time (user and system) of the poller's thread.", pollerLabels...)
	dPSleeps    = desc("poller_sleeps_total", "Sleeps on the interrupt and wake-up eventfds (interrupt and hybrid modes).", pollerLabels...)
	dPIRQs      = desc("poller_interrupts_total", "Interrupts taken: signals of the poller's queue pairs' interrupt vectors it read.", pollerLabels...)
	dPWakeups   = desc("poller_wakeups_total", "Sleeps ended by a submission or Stop writing the poller's wake-up eventfd.", pollerLabels...)
	dPAsleep    = desc("poller_asleep_seconds_total", "Time the poller spent asleep on its eventfds.", pollerLabels...)

	dCInfo      = desc("controller_info", "Controller identity; always 1.", "controller", "serial", "model", "firmware")
	dCState     = desc("controller_state", "1 for the controller's current life-cycle state, 0 for the others.", "controller", "state")
	dCTemp      = desc("controller_temperature_celsius", "Composite temperature from the SMART / Health log.", ctrlLabels...)
	dCSpare     = desc("controller_available_spare_ratio", "Available spare capacity (SMART), 0 to 1.", ctrlLabels...)
	dCSpareThr  = desc("controller_available_spare_threshold_ratio", "Available spare threshold (SMART), 0 to 1.", ctrlLabels...)
	dCUsed      = desc("controller_endurance_used_ratio", "Estimate of the life used (SMART Percentage Used), may exceed 1.", ctrlLabels...)
	dCWarning   = desc("controller_critical_warning", "SMART Critical Warning bit field (0: none).", ctrlLabels...)
	dCWarnBit   = desc("controller_critical_warning_bit", "SMART Critical Warning, one series per bit: 1 when set.", "controller", "bit")
	dCReadB     = desc("controller_data_read_bytes_total", "SMART Data Units Read, in bytes (a unit is 512,000 bytes, rounded up by the device).", ctrlLabels...)
	dCWriteB    = desc("controller_data_written_bytes_total", "SMART Data Units Written, in bytes (a unit is 512,000 bytes, rounded up by the device).", ctrlLabels...)
	dCMediaErr  = desc("controller_media_errors_total", "SMART Media and Data Integrity Errors: unrecovered data integrity errors.", ctrlLabels...)
	dCUnsafe    = desc("controller_unsafe_shutdowns_total", "SMART Unsafe Shutdowns: power losses without a shutdown notification.", ctrlLabels...)
	dCPowerOn   = desc("controller_power_on_seconds_total", "SMART Power On Hours, in seconds (whole hours).", ctrlLabels...)
	dCErrLog    = desc("controller_error_log_entries_total", "SMART Number of Error Information Log Entries over the controller's life.", ctrlLabels...)
	dCSMARTRead = desc("controller_smart_reads_total", "SMART / Health log reads made at scrape time.", "controller", "result")
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("gonvme_"+name, help, labels, nil)
}

var allDescs = []*prometheus.Desc{
	dQSubmitted, dQCompleted, dQErrors, dQCommands, dQBytes, dQFailed, dQTimeouts, dQRequeued, dQBogus, dQFullWaits,
	dQPolls, dQIdlePolls, dQDoorbells, dQDBMMIO, dQDBSaved, dQInFlight, dQWaiting, dQDepth, dQLatency,
	dPLoops, dPIdleLoops, dPSubmit, dPCompleted, dPFailed, dPParks, dPYields, dPFullWaits,
	dPBusy, dPMisuse, dPInFlight, dPCPU, dPSleeps, dPIRQs, dPWakeups, dPAsleep,
	dCInfo, dCState, dCTemp, dCSpare, dCSpareThr, dCUsed, dCWarning, dCSMARTRead,
	dCWarnBit, dCReadB, dCWriteB, dCMediaErr, dCUnsafe, dCPowerOn, dCErrLog,
}

// warningBits name the SMART Critical Warning bits for the bit label
// (NVMe Base 2.0, Figure 207).
var warningBits = []struct {
	bit  uint8
	name string
}{
	{spec.SMARTWarnSpare, "available_spare"}, {spec.SMARTWarnTemperature, "temperature"},
	{spec.SMARTWarnReliability, "reliability"}, {spec.SMARTWarnReadOnly, "read_only"},
	{spec.SMARTWarnVolatileBackup, "volatile_memory_backup"}, {spec.SMARTWarnPMRReadOnly, "pmr_read_only"},
}

// u128 is a SMART 128-bit counter as a float (exact to 2^53).
func u128(u spec.Uint128) float64 { return float64(u.Hi)*0x1p64 + float64(u.Lo) }

// states are the values of the state label, in nvme.State order.
var states = []nvme.State{nvme.StateInit, nvme.StateReady, nvme.StateResetting,
	nvme.StateFailed, nvme.StateRemoved, nvme.StateClosed}

// Describe sends every metric description. Any goroutine.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect reads the pollers' published counters (never stopping or
// slowing a poller), the controllers' states, and the SMART logs (at most
// one admin command per controller per SMARTInterval), and sends them.
// Any goroutine.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.g != nil {
		for _, ps := range c.g.Stats() {
			c.collectPoller(ch, &ps)
		}
	}
	for i, ctrl := range c.ctrls {
		c.collectController(ch, i, ctrl)
	}
}

func (c *Collector) ctrlName(i int) string {
	if i >= 0 && i < len(c.names) {
		return c.names[i]
	}
	return "ctrl" + strconv.Itoa(i)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func (c *Collector) collectPoller(ch chan<- prometheus.Metric, s *poller.PollerStats) {
	pl := []string{strconv.Itoa(s.ID), strconv.Itoa(s.CPU)}
	counter(ch, dPLoops, s.Loops, pl...)
	counter(ch, dPIdleLoops, s.IdleLoops, pl...)
	counter(ch, dPSubmit, s.Taken, pl[0], pl[1], "ring")
	counter(ch, dPSubmit, s.Local, pl[0], pl[1], "local")
	counter(ch, dPCompleted, s.Completed, pl...)
	counter(ch, dPFailed, s.Failed, pl...)
	counter(ch, dPParks, s.Parks, pl...)
	counter(ch, dPYields, s.Yields, pl...)
	counter(ch, dPFullWaits, s.FullWaits, pl...)
	counter(ch, dPBusy, s.Busy, pl...)
	counter(ch, dPMisuse, s.Misuse, pl...)
	gauge(ch, dPInFlight, float64(s.InFlight), pl...)
	ch <- prometheus.MustNewConstMetric(dPCPU, prometheus.CounterValue, s.CPUTime.Seconds(), pl...)
	counter(ch, dPSleeps, s.Sleeps, pl...)
	counter(ch, dPIRQs, s.Interrupts, pl...)
	counter(ch, dPWakeups, s.Wakeups, pl...)
	ch <- prometheus.MustNewConstMetric(dPAsleep, prometheus.CounterValue, s.Asleep.Seconds(), pl...)
	for i := range s.Queues {
		q := &s.Queues[i]
		ql := []string{c.ctrlName(q.Controller), strconv.Itoa(int(q.QID)), pl[0]}
		counter(ch, dQSubmitted, q.Submitted, ql...)
		counter(ch, dQCompleted, q.Completed, ql...)
		collectOps(ch, q, ql)
		counter(ch, dQFailed, q.Failed, ql...)
		counter(ch, dQTimeouts, q.Timeouts, ql...)
		counter(ch, dQRequeued, q.Requeued, ql...)
		counter(ch, dQBogus, q.BogusCIDs, ql[0], ql[1], ql[2], "cid")
		counter(ch, dQBogus, q.BadSQHeads, ql[0], ql[1], ql[2], "sq_head")
		counter(ch, dQFullWaits, q.Waits, ql...)
		counter(ch, dQPolls, q.Polls, ql...)
		counter(ch, dQIdlePolls, q.IdlePolls, ql...)
		counter(ch, dQDoorbells, q.SQDoorbells, ql[0], ql[1], ql[2], "sq")
		counter(ch, dQDoorbells, q.CQDoorbells, ql[0], ql[1], ql[2], "cq")
		counter(ch, dQDBMMIO, q.MMIODoorbells, ql...)
		counter(ch, dQDBSaved, q.SavedDoorbells, ql...)
		gauge(ch, dQInFlight, float64(q.InFlight), ql...)
		gauge(ch, dQWaiting, float64(q.Waiting), ql...)
		gauge(ch, dQDepth, float64(q.Depth), ql...)
		for op := range q.Ops {
			count, sum, buckets := OpLatencyBuckets(&q.Ops[op].Latency)
			ch <- prometheus.MustNewConstHistogram(dQLatency, count, sum, buckets, ql[0], ql[1], ql[2], opNames[op])
		}
	}
}

// opNames are the values of the op label, indexed like QueueStats.Ops.
var opNames = [poller.NumOps]string{poller.OpRead: "read", poller.OpWrite: "write", poller.OpOther: "other"}

// collectOps sends the per-operation and per-status counters of one queue
// pair. The "driver" series is always sent (0 when none), so the family
// exists before the first error; device statuses appear once seen. Codes
// that share a name (the reserved and vendor-specific ranges of different
// status code types) are added together.
func collectOps(ch chan<- prometheus.Metric, q *poller.QueueStats, ql []string) {
	for op, o := range q.Ops {
		counter(ch, dQCommands, o.Commands, ql[0], ql[1], ql[2], opNames[op])
		if op != poller.OpOther {
			counter(ch, dQBytes, o.Bytes, ql[0], ql[1], ql[2], opNames[op])
		}
	}
	byName := map[string]uint64{"driver": 0}
	names := []string{"driver"}
	for _, sc := range q.Statuses {
		name := "driver"
		if sc.Status != poller.StatusDriver {
			name = spec.StatusName(sc.Status.SCT(), sc.Status.SC())
		}
		if _, ok := byName[name]; !ok {
			names = append(names, name)
		}
		byName[name] += sc.Count
	}
	if q.OtherStatuses != 0 {
		names = append(names, "other")
		byName["other"] += q.OtherStatuses
	}
	for _, name := range names {
		counter(ch, dQErrors, byName[name], ql[0], ql[1], ql[2], name)
	}
}

// Latency bucket bounds: 2^minExp to 2^maxExp ns.
const (
	minExp = 10 // 1.024 µs
	maxExp = 35 // 34.4 s
)

// LatencyBounds returns the `le` bounds, in seconds, of the exported
// latency histograms: 2^10 ns to 2^35 ns by powers of two.
func LatencyBounds() []float64 {
	b := make([]float64, 0, maxExp-minExp+1)
	for e := minExp; e <= maxExp; e++ {
		b = append(b, float64(uint64(1)<<e)/1e9)
	}
	return b
}

// OpLatencyBuckets converts one operation's latency (seconds, the bounds
// of LatencyBounds): poller.OpLatency's buckets are the powers of two
// LatencyBounds names, so each cumulative count is a sum of whole buckets.
func OpLatencyBuckets(l *poller.OpLatency) (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, maxExp-minExp+1)
	var cum uint64
	for e := minExp; e <= maxExp; e++ {
		cum += l.Buckets[e-minExp] // values below 2^e ns
		buckets[float64(uint64(1)<<e)/1e9] = cum
	}
	return l.Count, float64(l.Sum) / 1e9, buckets
}

// LatencyBuckets converts a poller histogram (ns) to a Prometheus one
// (seconds): the observation count, the sum, and the cumulative count per
// upper bound of LatencyBounds. Bound 2^e ns is the low edge of a poller
// bucket, so the counts below it are exact.
func LatencyBuckets(h *poller.Histogram) (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, maxExp-minExp+1)
	var cum uint64
	i := 0
	for e := minExp; e <= maxExp; e++ {
		edge := uint64(1) << e
		for i < poller.NumBuckets && poller.BucketLow(i) < edge {
			cum += h.Buckets[i]
			i++
		}
		buckets[float64(edge)/1e9] = cum
	}
	return h.Count, float64(h.Sum) / 1e9, buckets
}

func (c *Collector) collectController(ch chan<- prometheus.Metric, i int, ctrl *nvme.Controller) {
	name := c.names[i]
	if id := ctrl.Identify(); id != nil {
		gauge(ch, dCInfo, 1, name, id.SN, id.MN, id.FR)
	} else {
		gauge(ch, dCInfo, 1, name, "", "", "")
	}
	cur := ctrl.State()
	for _, s := range states {
		v := 0.0
		if s == cur {
			v = 1
		}
		gauge(ch, dCState, v, name, s.String())
	}
	log, ok, errs := c.readSMART(i, ctrl, cur)
	counter(ch, dCSMARTRead, ok, name, "ok")
	counter(ch, dCSMARTRead, errs, name, "error")
	if log == nil {
		return
	}
	if log.CompositeTemperature != 0 {
		gauge(ch, dCTemp, float64(spec.CelsiusFromKelvin(log.CompositeTemperature)), name)
	}
	gauge(ch, dCSpare, float64(log.AvailableSpare)/100, name)
	gauge(ch, dCSpareThr, float64(log.AvailableSpareThresh)/100, name)
	gauge(ch, dCUsed, float64(log.PercentageUsed)/100, name)
	gauge(ch, dCWarning, float64(log.CriticalWarning), name)
	for _, b := range warningBits {
		v := 0.0
		if log.CriticalWarning&b.bit != 0 {
			v = 1
		}
		gauge(ch, dCWarnBit, v, name, b.name)
	}
	counterF(ch, dCReadB, u128(log.DataUnitsRead)*512000, name)
	counterF(ch, dCWriteB, u128(log.DataUnitsWritten)*512000, name)
	counterF(ch, dCMediaErr, u128(log.MediaErrors), name)
	counterF(ch, dCUnsafe, u128(log.UnsafeShutdowns), name)
	counterF(ch, dCPowerOn, u128(log.PowerOnHours)*3600, name)
	counterF(ch, dCErrLog, u128(log.ErrorLogEntries), name)
}

// counterF sends a counter with a float value.
func counterF(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

// readSMART returns the cached SMART log of controller i, reading it again
// when it is older than the interval and the controller is ready, and the
// read counters. A failed read leaves nothing to export until the next
// interval, rather than a stale value. Nil when SMART is off or not read.
func (c *Collector) readSMART(i int, ctrl *nvme.Controller, st nvme.State) (*spec.SMARTLog, uint64, uint64) {
	sc := &c.smart[i]
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if c.interval < 0 {
		return nil, sc.ok, sc.errs
	}
	now := c.now()
	if st == nvme.StateReady && (sc.at.IsZero() || now.Sub(sc.at) >= c.interval || now.Before(sc.at)) {
		sc.at = now
		log, err := ctrl.SMARTLog()
		if err != nil {
			sc.log = nil
			sc.errs++
		} else {
			sc.log = log
			sc.ok++
		}
	}
	if st != nvme.StateReady {
		return nil, sc.ok, sc.errs
	}
	return sc.log, sc.ok, sc.errs
}
