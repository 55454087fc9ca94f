package nvme

import (
	"errors"
	"fmt"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// This file is the transport seam (DESIGN.md, "Transports"). One
// controller state machine, one admin command set, one set of command
// IDs, timeouts, aborts and resets (package nvme) sit over two ways of
// reaching a controller:
//
//	                 Controller, QueuePair (queue.go): CIDs, trackers,
//	                 wait lists, deadlines, abort, reset, resubmission
//	                 ├───────────────────────────┬──────────────────────────────┐
//	                 PCIe (Bus, pcieq.go)         fabric (Fabric, fabric.go)
//	registers        MMIO on the register window  Property Get/Set on the admin queue
//	a queue          Create I/O CQ/SQ (admin)     a connection + Fabrics Connect
//	submit           SQE in the ring, doorbell    QueueTransport.Issue, Flush
//	reap             CQ ring by phase tag         QueueTransport.Reap
//	reset            CC.EN cleared, queues        every connection closed, a new
//	                 recreated on the same rings  association, queues reconnected
//	removal          registers read all ones      no reconnect within CtrlLossTimeout
//
// The PCIe ring code is concrete (no interface call on its fast path);
// a fabric queue costs one interface call per command issued, one per
// flush and one per Poll.

// Fabric is a transport that reaches its controller across a fabric (NVMe
// over Fabrics: NVMe/TCP in package nvme/tcp). Package nvme calls it to
// connect queues; the registers become properties, read and written with
// Property Get and Set commands on the admin queue (NVMe Base 2.0, 3.1.3,
// 6.5, 6.6), which package nvme sends itself.
//
// ConnectQueue and Disconnect may be called from any goroutine, and
// concurrently.
type Fabric interface {
	// ConnectQueue opens a connection for queue p.QID and binds it with
	// a Fabrics Connect (NVMe Base 2.0, 6.3): queue 0, the admin queue,
	// to a new controller (CNTLID FFFFh) with keep alive timeout
	// p.KeepAlive, whose controller ID the transport keeps; an I/O queue
	// to that controller. It blocks until the queue is connected or
	// failed. The QueueTransport it returns belongs to the caller.
	ConnectQueue(p QueueParams) (QueueTransport, error)
	// Disconnect ends every connection the transport opened: a reset
	// (reconnect) or Close is under way. The QueueTransports' next calls
	// fail.
	Disconnect()
	// Close releases the transport. The controller calls it last, from
	// Close.
	Close() error
	// String names the controller for log lines (its address and NQN).
	String() string
}

// QueueParams describe a queue to connect.
type QueueParams struct {
	QID   uint16
	Depth int // entries: SQSIZE is Depth-1; at most Depth-1 commands are outstanding
	// KeepAlive is the Keep Alive Timeout of the admin queue's Connect
	// (KATO), 0 for none. The controller sends Keep Alive every
	// KeepAlive/2.
	KeepAlive time.Duration
	// InCapsule is the most data a command capsule carries on this
	// queue (IOCCSZ*16 - 64 for I/O queues, from Identify Controller); 0
	// for the admin queue, whose limit is the transport's.
	InCapsule int
	// MaxTransfer is the most data one command on the queue moves.
	MaxTransfer int
	// SlotBits is how the queue pair builds its command IDs: the low
	// SlotBits bits of a CID are the slot Issue was given (the rest is
	// a generation). The transport finds a received CID's command with
	// it, in O(1), and still compares the whole CID.
	SlotBits uint8
}

// QueueTransport is one queue pair's connection on a fabric. Its owner is
// the QueuePair's owner (a poller, or the admin queue's user under the
// controller's lock): Issue, Flush and Reap are called only by it, never
// concurrently, and must not block. Close may be called by any
// goroutine.
type QueueTransport interface {
	// Issue queues command cmd (its CID set by the queue pair) with its
	// data for the next Flush. slot, below Depth-1, names the command
	// until Reap delivers its completion; no other command uses slot
	// until then. data is any memory: sent to the controller when the
	// opcode's direction (bits 1:0) is host to controller, filled from
	// it otherwise; it stays the caller's until the completion. The
	// transport sets the data pointer (SGL1, PSDT). cmd is read before
	// Issue returns.
	Issue(slot uint16, cmd *spec.Command, data []byte)
	// Flush sends what Issue queued, as much as the connection takes
	// without blocking. An error ends the connection.
	Flush() error
	// Reap reads what arrived without blocking, and calls done for each
	// completion, at most max times; it returns how many. The
	// transport has forgotten the command before done runs (done may
	// Issue into the same slot). An error (the connection ended, the
	// controller sent something malformed or ended it with a TermReq)
	// is returned after the completions that arrived before it were
	// delivered.
	Reap(max int, done func(*spec.Completion)) (int, error)
	// Close ends the connection. Any goroutine.
	Close() error
}

// errNotConnected is the state of a fabric queue pair between losing its
// connection and being reconnected: its requests wait.
var errNotConnected = errors.New("not connected")

// OpenFabric brings up the controller that f reaches, using mem for the
// admin buffers (a fabric moves data from any memory; mem is what
// Memory returns, for callers such as package ddi that allocate their
// buffers there). It connects the admin queue, reads CAP and VS, enables
// the controller (Property Set CC, Property Get CSTS until ready),
// identifies it, negotiates the number of I/O queues, identifies the
// namespaces and arms asynchronous events, as Open does on PCIe. Each
// NewQueuePair then connects an I/O queue.
//
// On error f is left open for the caller to close. Any goroutine.
func OpenFabric(f Fabric, mem *dma.Allocator, opts *Options) (*Controller, error) {
	if f == nil || mem == nil {
		return nil, fmt.Errorf("nvme: open fabric: %w: nil transport or allocator", ErrInvalid)
	}
	c := newController(mem, opts)
	c.fab = f
	// A fabric admin queue has at least 32 entries (Base 2.0, 6.3:
	// Connect SQSIZE of the admin queue at least 31).
	c.opts.AdminQueueDepth = max(c.opts.AdminQueueDepth, fabrics.ConnectSQSizeAdminMin+1)
	if err := c.bringUp(fabricBringup); err != nil {
		return nil, err
	}
	return c, nil
}

var fabricBringup = []step{
	{"connect admin queue", (*Controller).configureAdmin},
	{"read capabilities", (*Controller).readCaps},
	{"enable", (*Controller).enable},
	{"identify controller", (*Controller).identifyController},
	{"set number of queues", (*Controller).setNumQueues},
	{"identify namespaces", (*Controller).scanNamespaces},
	{"configure asynchronous events", (*Controller).configureEvents},
	{"arm asynchronous events", (*Controller).armAER},
}

// fabricReconnect re-run after a fabric controller lost its association
// (a reset): the admin queue is connected to a new controller, which is
// enabled and configured; namespaces and the controller data are kept.
var fabricReconnect = []step{
	{"connect admin queue", (*Controller).configureAdmin},
	{"enable", (*Controller).enable},
	{"set number of queues", (*Controller).setNumQueues},
	{"rescan namespaces", (*Controller).rescanReconnected},
	{"configure asynchronous events", (*Controller).configureEvents},
	{"arm asynchronous events", (*Controller).armAER},
}

// rescanReconnected identifies the namespaces again after a reconnect:
// what the subsystem exports may have changed while the host was away,
// and no notice of it came (as Linux's host rescans after a reconnect).
// A rescan already under way (the event goroutine's, waiting for the
// admin queue this step holds) is left to do it. adminMu held.
func (c *Controller) rescanReconnected() error {
	if !c.scanMu.TryLock() {
		return nil
	}
	defer c.scanMu.Unlock()
	ch, err := c.scanHeld(true)
	if err != nil {
		return err
	}
	if len(ch.detached)+len(ch.attached)+len(ch.changed) > 0 {
		c.logf("nvme: %s: namespaces after the reconnect: attached %v, detached %v, changed %v", c.name(), ch.attached, ch.detached, ch.changed)
	}
	return nil
}
