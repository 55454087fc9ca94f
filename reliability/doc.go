// Package reliability is gonvme's reliability suite: tests that break
// things on purpose and show that nothing is lost. It holds no library
// code; everything is in its _test.go files (package reliability_test),
// and README.md tabulates each fault, what the driver does about it, and
// the test that shows it (here and in other packages).
//
// # The data model
//
// Every block the suite writes is tagged:
//
//	offset  0  LBA         u64   where the block was meant to go
//	offset  8  generation  u64   which write put it there (unique per run)
//	offset 16  run         u64   random per test run: old data never matches
//	offset 24  crc32c      u32   over bytes [0,24) and [28,blocksize)
//	offset 28  magic       u32   "RELY"
//	offset 32  payload           pseudo-random from (run, LBA, generation)
//
// and the test keeps, on the host, the latest generation of each block
// that a successful write put there (and, for writes that failed, the
// generations that may or may not have landed). Every read is checked
// block by block against that model: a torn or corrupted block fails the
// checksum, a misdirected write shows the wrong LBA, a lost or stale write
// the wrong generation, and a phantom write a tag where the model expects
// none. Reads never race writes to the same blocks: each worker goroutine
// owns a partition of the LBA space.
//
// # The tests
//
//   - TestSoak (nvmetest, host) and TestVMSoak (QEMU, profile "default"):
//     worker goroutines read and write random sizes from one block to
//     4 MiB at random block-aligned offsets through package ddi, whose
//     Strategy splits at MDTS; some workers own a ddi.SyncSubmitter over a
//     queue pair of their own, others share a queue pair driven by a
//     polling goroutine, so commands overlap on the queues. At the end
//     every block of every partition is read back and verified; in the VM,
//     after the driver is closed, through the guest kernel's nvme driver
//     (/dev/nvme0n1) as well.
//   - TestVMKill (QEMU): a child process (this test binary again, which
//     TestMain turns into killChild, not a test, when the child's
//     environment variable is set) writes tagged batches through VFIO,
//     flushing after each and reporting it on stdout; the parent SIGKILLs it mid-I/O,
//     brings the controller up itself within a bound, and checks that every
//     flushed write is intact.
//   - TestFaults (nvmetest): each fault nvmetest can inject (bogus and
//     duplicate command IDs, SQ heads out of range, CSTS.CFS, dropped and
//     lost completions, injected error statuses, resets, removal) while
//     workers run, with end-to-end invariants: no panic, every Buf
//     delivered exactly once (counted), only the expected errors, and the
//     data model holds for every successful write.
//   - TestAbsurdIdentifyUnderLoad (nvmetest): identify data with absurd
//     values is refused with a clear error or the namespace is skipped with
//     a message; whatever survives carries the soak load intact.
//
// The flag -reliability.long runs the long version (minutes instead of
// seconds; more kill rounds). VM tests cannot receive test flags through
// the harness, so there the token gonvme.reliability.long on the guest
// kernel command line does the same:
//
//	go test -race ./reliability/ -reliability.long
//	go run ./hack/qemu test --append gonvme.reliability.long ./reliability
//
// Imports (tests only): ddi, dma, nvme, nvme/nvmetest, nvme/pcie,
// nvme/spec, hack/qemu/vmtest and the standard library.
package reliability
