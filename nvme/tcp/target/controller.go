package target

import (
	"encoding/binary"
	"slices"
	"sync"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// controller is one dynamic controller: the association a host makes
// with an admin Connect, ended when the admin connection closes or the
// keep-alive timer expires. Its mutable state is guarded by mu; the
// admin connection's goroutine runs its admin commands.
type controller struct {
	t         *Target
	id        uint16
	sub       *subsystem // nil for the discovery controller
	discovery bool
	hostNQN   string
	hostID    [16]byte

	mu      sync.Mutex
	cc      spec.CC
	csts    spec.CSTS
	queues  uint16 // I/O queues granted (Number of Queues)
	kato    time.Duration
	katimer *time.Timer
	aen     uint32 // Asynchronous Event Configuration
	admin   *conn
	ioConns map[uint16]*ioConn // by QID; guarded by t.mu
	dead    bool               // guarded by t.mu
	expired bool

	// Asynchronous events (NVMe Base 2.0, 5.2): the AERs the host left
	// with us, and the Namespace Attribute Changed notice.
	aers       []uint16 // CIDs of the AERs held
	changed    []uint32 // Changed Namespace List (host NSIDs)
	overflow   bool     // more than 1024 changed: the log says FFFFFFFFh
	nsPending  bool     // a change not yet reported by an AEN
	nsMasked   bool     // reported; masked until log page 04h is read
	nsNotified int      // AENs completed (tests)
}

// maxChanged is the most NSIDs the Changed Namespace List holds.
const maxChanged = 1024

// aenNSChanged is DW0 of a Namespace Attribute Changed notice: type
// Notice (2), info 0, log page 04h.
const aenNSChanged = uint32(spec.AEVTypeNotice) | uint32(spec.AEVNoticeNamespaceChanged)<<8 | uint32(spec.LogChangedNamespaces)<<16

// namespacesChanged records that ids changed and reports it to the host
// with an AEN when one is held and the notice enabled and unmasked. Any
// goroutine.
func (c *controller) namespacesChanged(ids []uint32) {
	c.mu.Lock()
	for _, id := range ids {
		if c.overflow || slices.Contains(c.changed, id) {
			continue
		}
		if len(c.changed) == maxChanged {
			c.overflow, c.changed = true, c.changed[:0]
			continue
		}
		c.changed = append(c.changed, id)
	}
	c.nsPending = true
	c.deliverLocked()
}

// deliverLocked completes an AER if an event is due, and unlocks c.mu.
func (c *controller) deliverLocked() {
	if !c.nsPending || c.nsMasked || len(c.aers) == 0 || c.aen&spec.AECNamespaceAttribute == 0 || c.admin == nil {
		c.mu.Unlock()
		return
	}
	cid := c.aers[0]
	c.aers = c.aers[1:]
	c.nsPending, c.nsMasked = false, true
	c.nsNotified++
	admin := c.admin
	c.mu.Unlock()
	_ = admin.respond(cid, 0, aenNSChanged, 0)
}

// takeChanged returns the Changed Namespace List (4096 bytes) and, unless
// rae (Retain Asynchronous Event), clears it and unmasks the notice.
func (c *controller) takeChanged(rae bool) []byte {
	b := make([]byte, 4096)
	c.mu.Lock()
	if c.overflow {
		binary.LittleEndian.PutUint32(b, 0xffffffff)
	} else {
		ids := slices.Clone(c.changed)
		slices.Sort(ids)
		for i, id := range ids {
			binary.LittleEndian.PutUint32(b[4*i:], id)
		}
	}
	if rae {
		c.mu.Unlock()
		return b
	}
	c.changed, c.overflow, c.nsMasked = c.changed[:0], false, false
	c.deliverLocked()
	return b
}

// startKeepAlive arms the keep-alive timer (KATO 0: none).
func (c *controller) startKeepAlive() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kato == 0 {
		return
	}
	c.katimer = time.AfterFunc(c.kato+katoGrace, c.keepAliveExpired)
}

// kick restarts the keep-alive timer: a Keep Alive command (or any
// admin command, which also proves the host alive) arrived.
func (c *controller) kick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.katimer != nil && !c.expired {
		c.katimer.Reset(c.kato + katoGrace)
	}
}

func (c *controller) setKATO(d time.Duration) {
	c.mu.Lock()
	c.kato = d
	if c.katimer != nil {
		c.katimer.Stop()
		c.katimer = nil
	}
	c.mu.Unlock()
	c.startKeepAlive()
}

func (c *controller) stopKeepAlive() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.katimer != nil {
		c.katimer.Stop()
	}
}

// keepAliveExpired runs on the timer's goroutine: the host went silent,
// so the controller goes (NVMe Base 2.0, 3.9.4: the controller fails and
// its queues are torn down).
func (c *controller) keepAliveExpired() {
	c.mu.Lock()
	c.expired = true
	c.csts |= 1 << 1 // CFS
	admin := c.admin
	c.mu.Unlock()
	c.t.logf("nvmf: controller %d (host %s): keep-alive timeout expired", c.id, c.hostNQN)
	c.t.dropController(c)
	if admin != nil {
		admin.c.Close()
	}
}

// capValue returns CAP: MQES, CQR, TO 10 s (units of 500 ms), CSS NVM,
// MPSMIN 4 KiB, MPSMAX 4 KiB.
func capValue() uint64 {
	return mqes | 1<<16 | 20<<24 | 1<<37
}

// propertyGet answers Property Get; ok is false for an offset or size
// that is not a property.
func (c *controller) propertyGet(off uint32, size int) (uint64, bool) {
	want, ok := fabrics.PropertySize(off)
	if !ok || want != size {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch off {
	case spec.RegCAP:
		return capValue(), true
	case spec.RegVS:
		return vsVersion, true
	case spec.RegCC:
		return uint64(c.cc), true
	case spec.RegCSTS:
		return uint64(c.csts), true
	}
	return 0, true
}

// propertySet answers Property Set: only CC is writable. Enabling makes
// the controller ready at once (there is nothing to bring up: the
// backing runs already); a shutdown completes at once too.
func (c *controller) propertySet(off uint32, size int, v uint64) bool {
	if off != spec.RegCC || size != 4 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cc := spec.CC(v)
	switch {
	case cc.SHN() != 0:
		c.csts = c.csts&^(3<<2) | spec.SHSTComplete<<2
	case cc.EN() && !c.cc.EN():
		if cc.IOSQES() != 0 && cc.IOSQES() != 6 || cc.IOCQES() != 0 && cc.IOCQES() != 4 || cc.MPS() != 0 {
			c.csts |= 1 << 1 // CFS: a configuration the controller cannot run
		} else {
			c.csts |= 1
		}
	case !cc.EN() && c.cc.EN():
		c.csts = 0
	}
	c.cc = cc
	return true
}

func (c *controller) ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.csts.RDY() && !c.expired
}
