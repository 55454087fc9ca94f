// Package bench is what both ends of `go run ./hack/qemu bench` share: the
// result line the guest prints for every measured run, the parsers for the
// JSON fio and `nvmectl perf` write and for qemu-img bench's two lines of
// text, and the median/range arithmetic the host's table is made of.
//
//	guest (hack/qemu/guestbench)                    host (hack/qemu bench)
//	fio --output-format=json  -> ParseFio  \
//	nvmectl perf -o json      -> ParsePerf  > Sample -> Line ... ParseLine -> Summarize -> table
//	qemu-img bench            -> ParseQemuImg /
//
// The parsers live here, not in the guest program, so that the host's unit
// tests run them on captured output. Latencies are in microseconds
// throughout.
//
// nvmectl perf's JSON is defined once, in internal/perfjson; ParsePerf
// decodes it through that package, strictly.
//
// The package imports the standard library and internal/perfjson. Its functions keep no
// state and may be called from any goroutine.
package bench
