package nvme

import "errors"

// This file holds what a layer that submits requests on its callers'
// behalf (package poller) needs from a Request and a queue pair, and
// nothing else uses: a word naming that layer, the layer's own slot in
// each request, and the rule for closing a queue pair whose deletion
// failed.

// ErrDeviceOwned: deleting a queue pair's queues failed while the
// controller may still be working on them (it was neither reset nor
// disabled since). The queue memory and the data buffers of the requests
// still outstanding on it belong to the device: QueuePair.Close then
// completes nothing and frees nothing; call it again once the controller
// was reset, removed or closed.
var ErrDeviceOwned = errors.New("nvme: the controller may still use the queue and its requests' memory")

// SetOwner records who submitted r on the caller's behalf and runs its
// Done: package poller stores its *Poller here when it takes r, so that a
// resubmission from inside Done can find the poller that runs it. The
// value is kept across Reset and across completions; callers leave it
// alone. Only the goroutine that owns r may call it.
func (r *Request) SetOwner(o any) { r.owner = o }

// Owner returns what SetOwner recorded, or nil. Only the goroutine that
// owns r may call it (inside r's Done, the one running Done).
func (r *Request) Owner() any { return r.owner }

// A Relay is the slot a layer that submits requests on its callers'
// behalf keeps in each request while the request is in its hands: the
// caller's Done, which the layer replaced with its own, and a time stamp
// and an index of the layer's choosing. Package poller times and routes
// its completions with it, by two stores at submission and two loads at
// completion, with no table keyed by request.
//
// The driver never reads or writes it; Reset clears it. A layer fills it
// when it takes a request and clears it before it calls the caller's Done,
// so a Relay whose Done is set names a request that layer still holds.
type Relay struct {
	Done  func(*Request)
	Stamp int64
	Index int32
}

// Relay returns r's relay slot. Only the goroutine that owns r may use
// it: the submitting layer while r is in its hands.
func (r *Request) Relay() *Relay { return &r.relay }

// releasedSince reports whether the controller can no longer be working
// on queues created in epoch e: it was reset since (a reset disables it
// first), or it is removed or closed. A failed reset does not count: it
// may have failed before the controller stopped.
func (c *Controller) releasedSince(e uint64) bool {
	if c.fab != nil {
		return true // nothing across a fabric reaches host memory
	}
	now := c.epoch.Load()
	if epochGen(now) != epochGen(e) {
		return true
	}
	switch epochState(now) {
	case StateRemoved, StateClosed:
		return true
	}
	return false
}
