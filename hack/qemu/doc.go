// Command qemu is gonvme's VM harness (go run ./hack/qemu <verb>): it runs
// the *_vm_test.go tests of the tree in QEMU guests with emulated NVMe
// controllers behind an emulated IOMMU, so the driver is tested through
// real VFIO on any Linux machine with Go.
//
//	setup     QEMU from Debian when missing; the current Debian kernel (vmlinux for
//	          qboot's PVH entry) and its VFIO and nvme modules, cached
//	test      go list -> *_vm_test.go -> AST: the vmtest.Require profile of each TestXxx
//	          -> go test -c (static) -> one initramfs and one boot per profile
//	run       one command from ./cmd in a guest, with the controllers bound
//	selftest  fixtures under testdata/ prove that failures, panics, hangs, missing
//	          devices, skips in the guest, tests that never ran, crashed binaries, DMAR
//	          faults and kernel WARNINGs all fail the run, each with its cause named
//	ci        setup, gofmt, vet, staticcheck, lockcheck, host tests, selftest, VM tests,
//	          bench --smoke
//	bench     one boot: fio (io_uring, irq and polled) on the kernel nvme driver, nvmectl perf
//	          on gonvme and qemu-img bench on QEMU's nvme://, carried in with their libraries
//	          (carry.go); the guest half is ./guestbench; a markdown table of medians.
//	          bench --smoke (bench_smoke.go, for ci): 1 s runs at QD1 and QD32, fails on
//	          a failed run, a missing or renamed key, a zero IOPS or latency
//	lockcheck go build nvmectl, go test -c the packages importing internal/mmio ->
//	          go tool objdump: no register store is locked or bypasses mmio's assembly
//
// A boot: qemu-system-x86_64 (tcg, qboot, q35, intel-iommu) with the
// profile's controllers; the guest init (./guestinit) mounts proc, sysfs and
// devtmpfs, loads the VFIO modules, runs the test binaries and writes its
// verdict to isa-debug-exit. The host requires QEMU's exit code 33 and the
// guest's pass line, and treats "Kernel panic" in the output, a missing
// pass line, the time limit, a skip in the guest, a selected test that did
// not report by name, and a guest kernel log record that breaks a rule
// (internal/guest KernelLogRules; the guest init prints /dev/kmsg at the
// end) as failures. The guest reaches QEMU's
// monitor over its second serial port, which the host relays to QMP's
// human-monitor-command.
//
// Profiles are declared in package vmtest, shared by both sides. This
// command may import vmtest, hack/qemu/internal/guest (for shared
// constants), hack/qemu/internal/bench (bench's result lines and parsers),
// internal/perfjson (through internal/bench),
// the standard library and u-root's pkg/cpio; it is a single
// goroutine program apart from the monitor relay and the timer of a boot.
package main
