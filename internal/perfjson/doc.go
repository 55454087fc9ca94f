// Package perfjson is the one definition of the JSON `nvmectl perf -o json`
// prints: its Go types, its schema version, and a strict decoder. nvmectl
// writes its report through Write; nvmectl's tests, the bench guest
// (hack/qemu/guestbench) and the bench host (hack/qemu) read it through
// Decode. Nothing else spells perf's keys.
//
//	nvmectl perf  ->  Report  ->  Write  ->  {"schema_version": 1, ...}
//	                                              |
//	tests, hack/qemu/internal/bench  <-  Decode  <-
//
// Decode is strict so that a change on one side cannot turn into a
// plausible number on the other: a key the types do not name is an error,
// a key they name and the input lacks is an error (unless its tag says
// omitempty), a schema_version other than SchemaVersion is an error, and
// so is a row that measured I/O with a zero rate or a zero latency, whose
// counts do not add up, or whose latencies are out of order. A renamed key
// therefore fails a test instead of printing 0 µs in the bench table.
//
// # Schema, version 3
//
//	{
//	  "schema_version": 3,
//	  "workload": "randread", "io_size": 4096, "queue_depth": 32, "rwmixread": 100,
//	  "pollers": 1, "cpus": [0], "seconds": 5.001, "warmup_seconds": 1,
//	  "seed": 12345,             the random offsets' (and --verify's) seed: --seed replays a run
//	  "mode": "poll",            how the pollers waited: "poll", "interrupt" or "hybrid"
//	  "rate_iops": 0,            --rate's IOPS cap (open-loop pacing), 0 without
//	  "run": {"nvmectl_version", "go_version", "start_time" (RFC 3339, UTC), "kernel",
//	          "cpu_model", "dma_memory" ("2MiB hugepages", "4KiB pages" or "mixed"),
//	          "hugepage_fallback", "hugepage_fallback_reason" (only with a fallback),
//	          "controllers": [{"address", "model", "serial", "firmware", "shadow_doorbells"}]},
//	  "results": [ROW, ...],     one per namespace: "controller" is its PCI address
//	  "total": ROW,              every namespace: "controller" is "total", "nsid" 0
//	  "verify": {"enabled": false, "seed": 0, "blocks": 0, "checked": 0,
//	             "mismatches": 0, "first_mismatch": "..." (only when there is one)},
//	  "samples": [{"second", "ios", "iops", "mibps"}, ...]   one per second measured
//	}
//	ROW = {"controller", "nsid", "workload", "io_size", "queue_depth", "pollers",
//	       "ios", "reads", "writes", "errors", "seconds", "iops", "mibps",
//	       "latency_us": LAT, "read_latency_us": LAT, "write_latency_us": LAT,
//	       "histogram": [{"low_us", "high_us", "count"}, ...]}
//	LAT = {"avg", "min", "max", "p50", "p90", "p99", "p99_9", "p99_99"}
//
// read_latency_us and write_latency_us summarize the reads and the writes
// alone (all zero without any); the histogram lists the non-empty buckets
// of the poller's log-linear histogram (powers of two split in 8) over
// every measured I/O, so its counts add up to "ios". Version 1 had no
// seed, run, samples, read/write latency or histogram.
//
// Counts are of the measured phase only; latencies are in microseconds
// from submission to completion; rates are per second of "seconds".
//
// # Extending it
//
// Add a field with a json tag to the struct it belongs to: Write prints it
// and Decode requires it, with no list of keys to keep in step (the
// required keys are read from the struct tags). Mark a key that may be
// absent with omitempty. Any change to the keys (added, renamed, removed,
// or a new meaning) bumps SchemaVersion, so output of one version never
// decodes as another; the whole module is built together, so nvmectl,
// its tests and the bench move in one commit. Describe the key here and in
// cmd/nvmectl/doc.go.
//
// The package keeps no state; its functions may be called from any
// goroutine. Imports: the standard library only.
package perfjson
