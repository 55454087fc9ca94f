package poller

import (
	"runtime"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
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
	yields    uint64 // runtime.Gosched calls while idle
	misuse    uint64 // requests submitted again while in flight (ignored)
}

// PollerStats is a snapshot of one poller's counters.
type PollerStats struct {
	ID  int // index in the Group
	CPU int // CPU the poller is pinned to

	Loops     uint64 // passes of the poll loop
	IdleLoops uint64 // passes that took nothing from the ring and reaped nothing
	Taken     uint64 // submissions taken from the inbound ring
	Local     uint64 // submissions made directly on the poller goroutine
	Completed uint64 // requests completed through the poller (Done called), any status
	Failed    uint64 // requests the poller completed with its own error (refused by the queue pair, stopped)
	Parks     uint64 // times the poller parked (adaptive idle policy)
	Yields    uint64 // runtime.Gosched calls while idle
	Misuse    uint64 // submissions of a request already in flight on this poller (ignored)
	InFlight  uint64 // requests handed to queue pairs and not completed

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
}

// Words of a published snapshot: the poller's counters, then per queue
// pair the fixed words and the histogram.
const (
	pollerWords = 12
	queueWords  = 15 + NumBuckets + 2
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
		c.parks, c.yields, c.misuse, uint64(p.inflight), uint64(p.cpuNS), uint64(now))
	for _, q := range p.qps {
		s := q.qp.Stats()
		w = append(w, s.Polls, s.IdlePolls, s.Submitted, s.Completed, s.Errors,
			s.SQDoorbells, s.CQDoorbells, s.Waits, s.BogusCIDs, s.BadSQHeads,
			s.Timeouts, s.Requeued, s.Failed,
			uint64(q.qp.InFlight()), uint64(q.qp.Waiting()))
		w = append(w, q.hist.Buckets[:]...)
		w = append(w, q.hist.Count, q.hist.Sum)
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
	s.FullWaits = p.fullWaits.Load()
	s.Busy = p.busy.Load()
	for _, q := range p.qps {
		qs := QueueStats{Controller: int(q.ctrl), QID: q.qid, Depth: q.depth}
		for _, f := range []*uint64{&qs.Polls, &qs.IdlePolls, &qs.Submitted, &qs.Completed, &qs.Errors,
			&qs.SQDoorbells, &qs.CQDoorbells, &qs.Waits, &qs.BogusCIDs, &qs.BadSQHeads,
			&qs.Timeouts, &qs.Requeued, &qs.Failed, &qs.InFlight, &qs.Waiting} {
			*f = w[i]
			i++
		}
		copy(qs.Latency.Buckets[:], w[i:i+NumBuckets])
		i += NumBuckets
		qs.Latency.Count, qs.Latency.Sum = w[i], w[i+1]
		i += 2
		s.Queues = append(s.Queues, qs)
	}
	return s
}

// pubWords returns the number of published words for nq queue pairs.
func pubWords(nq int) int { return pollerWords + nq*queueWords }
