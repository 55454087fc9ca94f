// Package metrics exports gonvme's counters to Prometheus.
//
// The counters live with their owners (STYLE.md 9): each poller counts its
// passes, submissions and parks, each queue pair its polls, doorbell
// writes, waits and errors, and a latency histogram. The pollers publish
// copies through a seqlock (poller.Group.Stats); this package's Collector
// reads those copies when Prometheus scrapes, so the I/O path takes no lock
// and allocates nothing for metrics, however often it is scraped.
//
//	poller goroutine (owner)                scrape (any goroutine)
//	  plain counters ── publish every ──►  seqlock words ── Group.Stats ──► Collector.Collect
//	                    StatsInterval                                           │
//	controller: State (atomic), SMART log (admin command, cached 10 s) ◄────────┘
//
// # Metrics
//
// Per queue pair (labels controller, qid, poller):
//
//	gonvme_queue_submitted_commands_total   commands written to the submission queue
//	gonvme_queue_completed_commands_total   completions with a device status
//	gonvme_queue_commands_total             {op="read"|"write"|"other"}: requests completed, any status
//	gonvme_queue_bytes_total                {op="read"|"write"}: their data bytes
//	gonvme_queue_errors_total               {status="<spec status name>"|"driver"|"other"}: requests
//	                                        completed with an error (see below)
//	gonvme_queue_failed_commands_total      failed without a device status (timeout, removal, close)
//	gonvme_queue_timeouts_total             commands past their deadline (aborted)
//	gonvme_queue_requeued_commands_total    resubmitted after a controller reset
//	gonvme_queue_bogus_completions_total    {reason="cid"|"sq_head"}: ignored device input
//	gonvme_queue_full_waits_total           requests parked because every command ID was taken
//	gonvme_queue_polls_total, gonvme_queue_idle_polls_total
//	gonvme_queue_doorbell_writes_total      {doorbell="sq"|"cq"}: doorbell updates, to the
//	                                        register or the shadow doorbell buffer
//	gonvme_queue_doorbell_mmio_writes_total of them, written to the register
//	gonvme_queue_doorbell_writes_saved_total of them, left in the shadow doorbell buffer
//	                                        (Doorbell Buffer Config: EventIdx asked for no write)
//	gonvme_queue_inflight_commands          gauge, commands on the device
//	gonvme_queue_waiting_requests           gauge, requests waiting for a command ID
//	gonvme_queue_depth_entries              gauge, entries per ring
//	gonvme_queue_latency_seconds            {op="read"|"write"|"other"}: histogram, submission
//	                                        to completion
//
// Per poller (labels poller, cpu): gonvme_poller_loops_total,
// gonvme_poller_idle_loops_total, gonvme_poller_submissions_total
// {path="ring"|"local"}, gonvme_poller_completions_total,
// gonvme_poller_failed_requests_total, gonvme_poller_parks_total,
// gonvme_poller_yields_total, gonvme_poller_ring_full_waits_total,
// gonvme_poller_busy_rejections_total, gonvme_poller_misuse_total,
// gonvme_poller_inflight_requests, gonvme_poller_cpu_seconds_total, and
// for the interrupt and hybrid modes gonvme_poller_sleeps_total,
// gonvme_poller_interrupts_total (interrupts taken),
// gonvme_poller_wakeups_total (sleeps a submission ended) and
// gonvme_poller_asleep_seconds_total.
//
// Per controller (label controller): gonvme_controller_info{serial,model,
// firmware} (always 1), gonvme_controller_state{state} (1 for the current
// state, 0 for the others: init, ready, resetting, failed, removed,
// closed), and from the SMART / Health log, read at scrape time at most
// every Options.SMARTInterval (10 s) and only while the controller is
// ready: gonvme_controller_temperature_celsius (composite),
// gonvme_controller_available_spare_ratio,
// gonvme_controller_available_spare_threshold_ratio,
// gonvme_controller_endurance_used_ratio,
// gonvme_controller_critical_warning (the bit field),
// gonvme_controller_critical_warning_bit{bit="available_spare"|
// "temperature"|"reliability"|"read_only"|"volatile_memory_backup"|
// "pmr_read_only"} (1 when set: alert on the bit, not on a value of the
// field), gonvme_controller_data_read_bytes_total and
// gonvme_controller_data_written_bytes_total (Data Units Read and Written
// times 512,000), gonvme_controller_media_errors_total,
// gonvme_controller_unsafe_shutdowns_total,
// gonvme_controller_power_on_seconds_total (Power On Hours times 3600),
// gonvme_controller_error_log_entries_total, and
// gonvme_controller_smart_reads_total{result="ok"|"error"}.
//
// The op and status series come from counters the poller keeps on its
// completion path (poller.QueueStats.Ops and Statuses): op is the opcode
// class (Read 0x02, Write 0x01, anything else); status is
// spec.StatusName(sct, sc) of the device's status, "driver" for an error
// without a device status (timeout, removal, close, a stopped poller;
// always exported, 0 until one happens), and "other" for statuses past the
// 16 distinct ones a queue pair counts one by one. Codes that share a name
// (reserved and vendor-specific ranges) share a series. The sum over
// status is the number of requests that completed with an error: device
// statuses plus driver-side failures.
//
// # Latency buckets
//
// The latency histograms are per operation (label op): each poller keeps,
// besides its full-resolution histogram (poller.QueueStats.Latency), one
// per operation at power-of-two resolution (poller.OpStats.Latency),
// whose buckets are exactly the exported bounds below.
//
// The poller's histogram is log-linear in nanoseconds (powers of two split
// in 8). The exported histogram takes the power-of-two boundaries from
// 2^10 ns (1.024 µs) to 2^35 ns (34.4 s) as its `le` bounds, 26 buckets:
// each is a boundary of the poller's buckets, so the conversion is exact
// (a bucket le=2^e counts the values below 2^e ns) and needs no
// interpolation.
//
// # Serving
//
// Serve (and ServeListener) runs an HTTP server with /metrics (promhttp
// over a Gatherer) and /healthz (200 "ok", or 503 with the reason the
// health function gives; Healthy checks that every controller is ready),
// until its context ends. nvmectl serve and nvmectl perf --metrics-addr
// use it.
//
// # Goroutine contract
//
// NewCollector, Register, Serve: any goroutine. A Collector's Describe
// and Collect may run concurrently (promhttp does); SMART reads are
// serialized per controller. Nothing here runs on a poller.
//
// Imports: poller, nvme, nvme/spec, github.com/prometheus/client_golang and
// the standard library.
package metrics
