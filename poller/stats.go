package poller

import (
	"math/bits"
	"runtime"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// counters are a poller's own counters: plain integers, written only by
// the poller goroutine, and published as copies (see publish).
type counters struct {
	loops     uint64 // passes of the poll loop
	idleLoops uint64 // passes that took no submission and reaped nothing
	taken     uint64 // submissions taken from the inbound ring
	local     uint64 // submissions made on the poller goroutine (no ring)
	completed uint64 // requests completed through the poller (any status)
	failed    uint64 // requests completed with an error the poller delivered (refused by the queue pair, stopped)
	parks     uint64 // times the poller went to sleep (adaptive idle policy)
	yields    uint64 // naps with requests in flight (IdleAdaptive)
	misuse    uint64 // requests submitted again while in flight (ignored)
	sleeps    uint64 // sleeps on the eventfds (ModeInterrupt, ModeHybrid)
	irqs      uint64 // interrupts: the eventfd counts read from the queue pairs' vectors
	wakeups   uint64 // sleeps a submitter or Stop ended (the wake-up eventfd)
	asleep    uint64 // ns spent in those sleeps
}

// PollerStats is a snapshot of one poller's counters.
type PollerStats struct {
	ID  int // index in the Group
	CPU int // CPU the poller is pinned to

	Loops     uint64 // passes of the poll loop
	IdleLoops uint64 // passes that took nothing from the ring and reaped nothing
	Taken     uint64 // submissions taken from the inbound ring
	Local     uint64 // submissions made directly on the poller goroutine (SubmitLocal, and resubmissions from Done)
	Completed uint64 // requests completed through the poller (Done called), any status
	Failed    uint64 // requests the poller completed with its own error (refused by the queue pair, stopped)
	Parks     uint64 // times the poller parked (adaptive idle policy)
	Yields    uint64 // naps: times the poller gave its thread up while idle with requests in flight (IdleAdaptive; it never calls runtime.Gosched)
	Misuse    uint64 // submissions of a request already in flight on this poller (ignored)
	InFlight  uint64 // requests handed to queue pairs and not completed

	// ModeInterrupt and ModeHybrid (irq.go).
	Sleeps     uint64        // times the poller slept on its eventfds
	Interrupts uint64        // interrupts taken: signals of its queue pairs' vectors, read from their eventfds
	Wakeups    uint64        // sleeps ended by a submission or Stop (the wake-up eventfd)
	Asleep     time.Duration // time spent asleep

	// Written by submitters (atomics), read live.
	FullWaits uint64 // submissions that found the inbound ring full
	Busy      uint64 // submissions refused with ErrBusy

	// CPUTime is the CPU time (user + system) the poller thread used,
	// from getrusage(RUSAGE_THREAD) at the last publication.
	CPUTime time.Duration
	// At is when the poller published this copy (time since the Group
	// started).
	At time.Duration

	Queues []QueueStats // one per queue pair the poller owns
}

// QueueStats is a snapshot of one queue pair owned by a poller.
type QueueStats struct {
	Controller int    // index of the controller in the Group
	QID        uint16 // queue identifier on the controller
	Depth      int    // entries per ring
	nvme.QueueStats
	InFlight uint64    // commands outstanding on the device
	Waiting  uint64    // requests waiting for a command ID
	Latency  Histogram // submission (by the caller) to completion (Done), ns
	// Interrupts counts the signals of the queue pair's vector the
	// poller read (ModeInterrupt, ModeHybrid).
	Interrupts uint64

	// Ops counts the requests the queue pair completed (Done called,
	// any status) by operation, indexed by OpRead, OpWrite and OpOther.
	Ops [NumOps]OpStats
	// Statuses counts the requests that completed with an error, by
	// status, in the order each status was first seen (nil when none
	// did): the device's status with CRD, More and DNR cleared
	// (spec.Status.Code), or StatusDriver for an error without a device
	// status (timeout, removal, close, stop). A queue pair counts at most
	// MaxStatuses distinct statuses; the errors with a status seen after
	// that are counted in OtherStatuses.
	Statuses      []StatusCount
	OtherStatuses uint64
}

// Operation classes of QueueStats.Ops, by I/O command opcode.
const (
	OpRead  = iota // Read (opcode 0x02)
	OpWrite        // Write (opcode 0x01)
	OpOther        // every other opcode (Flush, Write Zeroes, Dataset Management, ...)
	NumOps
)

// OpStats counts the requests of one operation class.
type OpStats struct {
	Commands uint64    // requests completed, any status
	Bytes    uint64    // len(Request.Data) of those requests (reads and writes only)
	Latency  OpLatency // their latency, submission to completion
}

// OpLatencyBuckets is the number of buckets of an OpLatency.
const OpLatencyBuckets = 27

// OpLatency is one operation's latency at power-of-two resolution:
// Buckets[i] counts the values in [2^(9+i), 2^(10+i)) ns, the first also
// those below 2^9 ns and the last (i = 26) everything from 2^35 ns (34 s)
// up. That is exactly what a Prometheus histogram with the bounds 2^10 to
// 2^35 ns needs (package metrics), in 29 words a poller publishes per
// operation, where QueueStats.Latency's full resolution would take 274.
type OpLatency struct {
	Buckets [OpLatencyBuckets]uint64
	Count   uint64
	Sum     uint64 // ns
}

// coarsen writes into out the OpLatency buckets of the values h holds.
// A bucket of h lies within one power of two (bucketOf: the values below
// 8 one by one, then 8 buckets per power of two), so the bucket of its
// lowest value is that of all of them: the counts are those of the
// values themselves (TestOpLatencyBuckets).
func (h *Histogram) coarsen(out *[OpLatencyBuckets]uint64) {
	clear(out[:])
	if h.Count == 0 {
		return
	}
	for b, n := range h.Buckets {
		if n != 0 {
			out[opBucketOf(BucketLow(b))] += n
		}
	}
}

// opBucketOf returns the OpLatency bucket of v ns.
func opBucketOf(v uint64) int { return min(max(bits.Len64(v)-10, 0), OpLatencyBuckets-1) }

// StatusCount is the number of requests that completed with one status.
type StatusCount struct {
	Status spec.Status // spec.Status.Code(), or StatusDriver
	Count  uint64
}

// StatusDriver is the status QueueStats.Statuses counts errors under that
// carry no device status (Request.Err set, Request.Status success): a
// timeout, a removed or closed controller, a stopped poller. It is outside
// the 15-bit status field, so no device status equals it.
const StatusDriver spec.Status = 0xffff

// MaxStatuses is the number of distinct statuses a queue pair counts one
// by one (QueueStats.Statuses); the rest go to QueueStats.OtherStatuses.
const MaxStatuses = 16

// opCounts and statusCounts are a queue pair's per-operation and
// per-status counters, written by the poller goroutine only. An
// operation's completions are its histogram's Count (one record per
// completion, any status), not a counter of their own.
type opCounts [NumOps]struct {
	bytes uint64
	lat   Histogram // at full resolution: publish derives the queue's Latency and the OpLatency from it
}

type statusCounts struct {
	tab   [MaxStatuses]struct{ st, n uint64 } // n == 0: free slot
	other uint64
}

// opOf returns r's operation class.
func opOf(r *nvme.Request) int {
	switch spec.Opcode(r.Cmd.Opcode) {
	case spec.IORead:
		return OpRead
	case spec.IOWrite:
		return OpWrite
	}
	return OpOther
}

// countFailed counts r's status; r completed with an error.
func (q *qstate) countFailed(r *nvme.Request) {
	var st spec.Status
	switch {
	case !r.Status.Success():
		st = r.Status.Code()
	case r.Err != nil:
		st = StatusDriver
	default:
		return
	}
	for i := range q.st.tab {
		e := &q.st.tab[i]
		if e.n == 0 {
			e.st, e.n = uint64(st), 1
			return
		}
		if e.st == uint64(st) {
			e.n++
			return
		}
	}
	q.st.other++
}

// Words of a published snapshot: the poller's counters, then per queue
// pair the fixed words and the histogram.
const (
	pollerWords = 16
	queueWords  = 18 + NumBuckets + 2 + NumOps*(2+OpLatencyBuckets+2) + 2*MaxStatuses + 1
)

// publish copies the counters into the published words under the seqlock.
// Poller goroutine only; it allocates nothing and never waits for readers.
func (p *Poller) publish(now int64) {
	p.lastPub = now
	if t, err := cpuTime(); err == nil {
		p.cpuNS = t
	}
	w := p.scratch[:0]
	c := &p.c
	w = append(w, c.loops, c.idleLoops, c.taken, c.local, c.completed, c.failed,
		c.parks, c.yields, c.misuse, uint64(p.inflight), uint64(p.cpuNS), uint64(now),
		c.sleeps, c.irqs, c.wakeups, c.asleep)
	for _, q := range p.qps {
		s := q.qp.Stats()
		w = append(w, s.Polls, s.IdlePolls, s.Submitted, s.Completed, s.Errors,
			s.SQDoorbells, s.CQDoorbells, s.Waits, s.BogusCIDs, s.BadSQHeads,
			s.Timeouts, s.Requeued, s.Failed,
			uint64(q.qp.InFlight()), uint64(q.qp.Waiting()),
			s.MMIODoorbells, s.SavedDoorbells, // shadow doorbells (issue 16)
			q.irqs) // interrupt modes (irq.go)
		// The queue's histogram is the sum of its operations'.
		var all Histogram
		for i := range q.ops {
			if q.ops[i].lat.Count != 0 { // not an operation the queue has not seen (a randread's writes)
				all.Add(&q.ops[i].lat)
			}
		}
		w = append(w, all.Buckets[:]...)
		w = append(w, all.Count, all.Sum)
		for i := range q.ops {
			o := &q.ops[i]
			w = append(w, o.lat.Count, o.bytes) // OpStats.Commands, Bytes
			n := len(w)
			w = w[:n+OpLatencyBuckets]
			o.lat.coarsen((*[OpLatencyBuckets]uint64)(w[n:]))
			w = append(w, o.lat.Count, o.lat.Sum)
		}
		for _, e := range q.st.tab {
			w = append(w, e.st, e.n)
		}
		w = append(w, q.st.other)
	}
	p.pubSeq.Add(1) // odd: writing
	for i, v := range w {
		p.pub[i].Store(v)
	}
	p.pubSeq.Add(1)
}

// Stats returns the counters the poller last published (at most
// Options.StatsInterval old while it is busy; a parked or stopped poller
// published before it stopped polling). It never stops or slows the
// poller. Any goroutine.
func (p *Poller) Stats() PollerStats {
	w := make([]uint64, len(p.pub))
	for spins := 0; ; spins++ {
		s1 := p.pubSeq.Load()
		if s1&1 == 0 {
			for i := range w {
				w[i] = p.pub[i].Load()
			}
			if p.pubSeq.Load() == s1 {
				break
			}
		}
		if spins > 16 {
			runtime.Gosched()
		}
	}
	s := PollerStats{ID: p.id, CPU: p.cpu}
	for j, f := range []*uint64{&s.Loops, &s.IdleLoops, &s.Taken, &s.Local, &s.Completed,
		&s.Failed, &s.Parks, &s.Yields, &s.Misuse, &s.InFlight} {
		*f = w[j]
	}
	i := pollerWords
	s.CPUTime = time.Duration(w[10])
	s.At = time.Duration(w[11])
	s.Sleeps, s.Interrupts, s.Wakeups, s.Asleep = w[12], w[13], w[14], time.Duration(w[15])
	s.FullWaits = p.fullWaits.Load()
	s.Busy = p.busy.Load()
	for _, q := range p.qps {
		qs := QueueStats{Controller: int(q.ctrl), QID: q.qid, Depth: q.depth}
		for _, f := range []*uint64{&qs.Polls, &qs.IdlePolls, &qs.Submitted, &qs.Completed, &qs.Errors,
			&qs.SQDoorbells, &qs.CQDoorbells, &qs.Waits, &qs.BogusCIDs, &qs.BadSQHeads,
			&qs.Timeouts, &qs.Requeued, &qs.Failed, &qs.InFlight, &qs.Waiting,
			&qs.MMIODoorbells, &qs.SavedDoorbells, &qs.Interrupts} {
			*f = w[i]
			i++
		}
		copy(qs.Latency.Buckets[:], w[i:i+NumBuckets])
		i += NumBuckets
		qs.Latency.Count, qs.Latency.Sum = w[i], w[i+1]
		i += 2
		for k := range qs.Ops {
			o := &qs.Ops[k]
			o.Commands, o.Bytes = w[i], w[i+1]
			i += 2
			copy(o.Latency.Buckets[:], w[i:i+OpLatencyBuckets])
			i += OpLatencyBuckets
			o.Latency.Count, o.Latency.Sum = w[i], w[i+1]
			i += 2
		}
		for range MaxStatuses {
			if n := w[i+1]; n != 0 {
				qs.Statuses = append(qs.Statuses, StatusCount{Status: spec.Status(w[i]), Count: n})
			}
			i += 2
		}
		qs.OtherStatuses = w[i]
		i++
		s.Queues = append(s.Queues, qs)
	}
	return s
}

// pubWords returns the number of published words for nq queue pairs.
func pubWords(nq int) int { return pollerWords + nq*queueWords }
