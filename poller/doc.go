// Package poller runs the per-core pollers of gonvme: goroutines locked to
// an OS thread pinned to one CPU, each owning one I/O queue pair per
// controller, that take submissions from any goroutine, ring doorbells,
// reap completions and run the completion callbacks (where package ddi
// runs biodone). Nothing on the I/O path takes a lock or allocates.
//
//	submitters (any goroutine)              pollers (one per CPU, thread pinned)
//	  Handle.Submit(r) ──────────────┐
//	     │ r's own Done is running ──┼─ hand-off word ─► after Done: ─┐ direct
//	     ▼                           ▼                                ▼
//	  MPSC ring (poller 0) ──► poller 0 ─ take ─ Submit ─► QueuePair (ctrl A, qid 1) ─┐
//	  MPSC ring (poller 1) ──► poller 1        Ring once   QueuePair (ctrl B, qid 1) ─┤ Poll: reap,
//	                                                       QueuePair (ctrl A, qid 2)  │ deadlines
//	                                                                                  ▼
//	                                                  Request.Done (caller's callback, on the poller)
//
// # Routing
//
// A request resubmitted with Handle.Submit while its own Done runs (a
// completion callback that sends its request down again, SPDK perf's
// pattern, and what package ddi does when an Iodone calls Strategy) takes
// the direct path: it stays on the poller that completed it and goes to
// that poller's queue pair as soon as Done returns, without the ring and
// without a system call. The request knows its poller while Done runs
// (nvme.Request.Owner), and the poller publishes the request whose Done
// it is running in a hand-off word; Submit claims it with one
// compare-and-swap, and the poller, after Done, submits what was claimed.
// Since the poller does the submission itself, on its own goroutine, it
// does not matter which goroutine claimed the request: one that Done
// handed the request to may do it too, race-free. (An earlier design let
// the submitter touch the queue pair when it believed it ran on the
// poller, which needed the goroutine's identity.)
//
// Otherwise Handle.Submit sends a request to the pollers in round-robin
// order (one atomic add); Handle.SubmitTo sends it to a poller the caller
// chose. With Options.RouteByCPU it sends it to the poller on the
// caller's CPU when one runs there and owns a queue pair on the controller
// (learned with the getcpu system call: BenchmarkGetcpu measures about
// 120 ns on an AMD EPYC host, gettid about 100 ns; a VM under TCG pays
// more), and when the caller is the poller goroutine itself the request
// goes straight to the queue pair: the poller's thread is locked to it,
// so a CPU match confirmed by the kernel thread ID (gettid, compared with
// the ID the poller recorded at start) identifies it exactly. Those two
// system calls per submission cost more than the rest of the path, so CPU
// routing is opt-in. Poller.SubmitLocal, from the poller's goroutine,
// submits at once and returns the queue pair's errors (BenchmarkOverhead
// reports both paths).
//
// # Inbound rings and backpressure
//
// Each poller has a bounded lock-free MPSC ring (Vyukov's bounded queue
// with per-cell sequence numbers; Options.RingSize cells of 32 bytes). A
// poller takes from its ring only while the target queue pair has fewer
// than 2*(depth-1) requests in flight or waiting, so a device slower than
// its submitters fills the ring, and submitters then wait (FullWait) or
// get ErrBusy (FullFail). Nothing is ever dropped. A poller never waits
// for another poller's ring (two pollers resubmitting into each other's
// full rings would deadlock): it submits to its own queue pair instead.
//
// # Goroutine contract
//
// New, Stop, Close, Stats, Handle.Submit, Handle.SubmitTo and
// Group.Submit: any goroutine (Stop not from a Done callback).
// Poller.SubmitLocal: only the poller's goroutine. Request.Done runs on
// the poller goroutine; it must not block and may submit again. A queue
// pair is touched only by its poller, except before the pollers start
// (New creates them).
//
// # Idle policies
//
// IdleBusy polls without pause: reaction to a submission or a completion
// is one pass of the loop (tens of ns on nvmetest), and the poller spends
// 100% of a CPU and keeps one Go P busy at all times, idle or not; give
// the process GOMAXPROCS greater than the number of busy pollers. With
// IdleAdaptive (the default), a poller with nothing in flight spins for
// SpinTime (50 µs) and then parks: its thread sleeps in futex(2) on a word
// the submitters check (one atomic load per submission), and a submitter
// that finds it parked wakes it directly with one futex system call. A
// parked poller costs no CPU (TestIdleCPU measures the thread's getrusage
// time over a second: about 100% busy, about 0% adaptive once parked); the
// first submission after a park pays the wake-up (the thread then needs a
// P again: TestWakeLatency). With requests in flight an adaptive poller
// never parks and never calls runtime.Gosched (on a thread locked to its
// goroutine each call is two thread hand-offs, which the completion it
// waits for would pay): it spins for SpinTime+YieldTime (1.05 ms, longer
// than a NAND read), so a completion is seen within one pass, as under
// IdleBusy, and only then, the device being slow, naps between passes:
// futex waits with a timeout of a sixteenth of the time waited so far
// (20 µs to 1 ms), which a submission ends early. While it spins it holds
// its P, as a busy poller does (BenchmarkAdaptiveQD1 compares the two).
//
// # Modes: poll, interrupt, hybrid
//
// Options.Mode ModePoll (the default) is the above. ModeInterrupt and
// ModeHybrid give every queue pair its own MSI-X vector
// (nvme.Controller.NewInterruptQueuePair: vector i for queue i, an
// eventfd through VFIO) and let the poller sleep in ppoll(2) on those
// eventfds and on a wake-up eventfd of its own: ModeInterrupt whenever a
// pass found nothing to reap or submit, ModeHybrid once passes have found
// nothing for SpinTime (SpinTime+YieldTime with requests in flight). Nothing is lost between deciding to sleep and
// sleeping (irq.go, Poller.sleep): the poller announces the sleep with a
// sequentially consistent store, then looks at its ring, its state and
// every completion queue's head again; a submitter pushes, then loads the
// flag (the one atomic load kick always did), and writes the wake-up
// eventfd only if it finds the poller asleep. An eventfd counts, so a
// signal that comes before ppoll does not get lost either; the counts are
// read when the poller wakes, before it reaps. With requests in flight a
// sleep lasts at most 10 ms, and the deadlines are scanned on waking, so
// a command the device drops is still aborted and the controller reset.
// Stop and a controller's removal wake it as a submission does. The
// counters say how many times the poller slept, the interrupts it took
// (the vectors' signals), the sleeps a submission ended and the time
// asleep (PollerStats.Sleeps, Interrupts, Wakeups, Asleep).
//
// # Work sources
//
// A poller can also serve work that does not come through its ring: a
// Source (source.go), such as the sockets of the NVMe/TCP target's host
// queues (package nvme/tcp/target), added with Poller.AddSource. Each
// pass polls the sources after taking from the ring and before the queue
// pairs, so what a source submits (Poller.SubmitLocal) goes out with that
// pass's doorbell; the completions' Done callbacks run in the same pass.
// The idle policy is the poller's own, for sources too: a pass counts as
// work if a source did some; a source that waits for something no file
// descriptor announces (Source.Pending) counts as a request in flight
// (spin, then nap, never park); and a source's file descriptor (an epoll
// set, an eventfd) joins the poller's sleep set, so that it ends a park,
// a nap or, in the interrupt modes, a sleep: ModePoll then parks and naps
// in ppoll(2) on the descriptors and a wake-up eventfd instead of
// futex(2), and the interrupt modes add them after the vectors' eventfds.
// The same announce-then-look-again rule applies; Poller.Wake is the kick
// of a source without a descriptor.
//
// # Counters
//
// Each poller counts its passes, idle passes, submissions (from its ring,
// and direct), completions, parks, naps, and per queue pair the nvme.QueueStats (doorbell writes, waits on
// full queues, ...) plus a latency histogram (HDR-style: powers of two
// split in 8 linear sub-buckets, ns to 34 s) from the submitter's call to
// the Done callback (for a resubmission from Done on the direct path, from
// the reaping of the completion whose Done resubmitted it), and what completed per queue pair: requests and data
// bytes by operation (read, write, other; QueueStats.Ops) and failed
// requests by status (a fixed table of 16 statuses and an overflow count,
// StatusDriver for errors without a device status; QueueStats.Statuses).
// The poller publishes copies every StatsInterval (and
// before parking and at exit) through a seqlock of atomic words; Stats
// readers retry on a torn read and never block the poller.
//
// # Stop
//
// Stop closes every ring (new submissions fail with ErrStopped), lets
// the pollers drain what they accepted, closes the queue pairs on their
// pollers and ends the goroutines, restoring the thread's CPU mask and
// unlocking it. If Stop's context ends first, what remains fails:
// ErrStopped for requests still in a ring, a *StopError (Is ErrStopped)
// for requests on the device, delivered once their queue pair's queues
// are deleted, so the device has nothing of theirs left. If the controller
// does not delete them, the poller has it reset (as Linux does) and
// delivers the requests after the reset; until then their memory and the
// queue pair's stay the device's, and Stop, which returns at most
// Options.StopGrace after its deadline, reports them (nvme.ErrDeviceOwned).
// Every accepted request completes exactly once, except on a controller
// whose reset fails: nothing but its Close can stop it, so its requests
// stay the device's and are never delivered (Stop says so).
//
// # Memory per poller
//
// RingSize*32 bytes of ring (32 KiB by default) and per queue pair about
// 5.3 KiB of counters (the histogram, the op and status counts, and their
// published copy) plus the queue pair's DMA memory,
// nvme.Controller.QueueMemory(depth).
// What the poller keeps of a request in flight (its caller's Done, the
// submission time, the queue pair) lives in the request (nvme.Relay).
//
// Imports: nvme, nvme/spec, golang.org/x/sys/unix and the standard library.
package poller
