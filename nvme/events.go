package nvme

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// This file handles asynchronous events (NVMe Base 2.0, 5.2). The driver
// keeps up to AERL+1 Asynchronous Event Requests outstanding. When one
// completes (whoever polls the admin queue reaps it), the event goes to
// the event goroutine, which reads the log page the event names with
// Retain Asynchronous Event clear (until then the controller masks further
// events of that type), rescans the namespaces after a Namespace
// Attribute Changed notice, calls Options.OnEvent, and arms the request
// again. Asynchronous Event Configuration enables the notices the driver
// handles, at bring-up and after every reset.

// AsyncEvent is an asynchronous event the controller reported, as the
// driver handled it.
type AsyncEvent struct {
	Event spec.AsyncEvent
	At    time.Time // when the event's completion was reaped
	// Log is the log page the event named, as read to clear the event
	// (the first bytes of it for a large log); nil when it could not be
	// read, and LogErr says why.
	Log    []byte
	LogErr error
	// For a Namespace Attribute Changed notice: the namespaces the rescan
	// found attached and detached (or changed and replaced, in Changed),
	// and the rescan's error.
	Attached, Detached, Changed []uint32
	RescanErr                   error
}

// aerEvent is a completed Asynchronous Event Request waiting for the
// event goroutine: the event, and the request to arm again.
type aerEvent struct {
	ev  spec.AsyncEvent
	at  time.Time
	req *Request
}

// eventConfig returns the Asynchronous Event Configuration the driver
// sets: the SMART / Health critical warnings defined before NVMe 2.0, and
// the notices the controller supports (OAES) that the driver handles.
func (c *Controller) eventConfig() uint32 {
	aec := uint32(0x1f) // spare, temperature, reliability, read only, volatile memory backup
	for _, bit := range []uint32{spec.AECNamespaceAttribute, spec.AECFirmwareActivation} {
		if c.ident.OAES&bit != 0 {
			aec |= bit
		}
	}
	return aec
}

// configureEvents sets Asynchronous Event Configuration (a controller
// reset clears it): a bring-up and reset step. A controller that refuses
// it still works; its events may stay off, which is logged.
func (c *Controller) configureEvents() error {
	if c.opts.AsyncEvents < 0 || c.ident == nil {
		return nil
	}
	aec := c.eventConfig()
	if _, err := c.adminSimpleLocked(spec.AdminSetFeatures, 0, uint32(spec.FeatureAsyncEventConfig), aec); err != nil {
		if errors.Is(err, ErrRemoved) || errors.Is(err, ErrTimeout) {
			return err
		}
		c.logf("nvme: set asynchronous event configuration %#x: %v", aec, err)
	}
	return nil
}

// armAER submits the Asynchronous Event Requests not outstanding: a
// bring-up and reset step, adminMu held.
func (c *Controller) armAER() error {
	n := c.opts.AsyncEvents
	if n < 0 || c.ident == nil {
		return nil
	}
	n = min(n, int(c.ident.AERL)+1)
	for len(c.aers) < n {
		c.aers = append(c.aers, &Request{Done: c.aerDone})
	}
	for _, r := range c.aers[:n] {
		if err := c.submitAER(r); err != nil {
			return err
		}
	}
	c.admin.Ring()
	return nil
}

// submitAER sends r as an Asynchronous Event Request unless it is
// outstanding already. adminMu held.
func (c *Controller) submitAER(r *Request) error {
	if r.InFlight() {
		return nil
	}
	r.Reset()
	r.Cmd.Opcode = uint8(spec.AdminAsyncEventRequest)
	return c.admin.Submit(r)
}

// aerDone runs inside a Poll of the admin queue, adminMu held: it hands
// the event to the event goroutine, which arms the request again once it
// handled it.
func (c *Controller) aerDone(r *Request) {
	if r.Err != nil {
		// Aborted by a reset (armed again by it) or refused.
		if !errorsIsAbortedOrGone(r.Err) {
			c.logf("nvme: asynchronous event request: %v", r.Err)
		}
		return
	}
	c.evMu.Lock()
	c.evQ = append(c.evQ, aerEvent{ev: spec.AsyncEvent(r.DW0), at: time.Now(), req: r})
	c.evMu.Unlock()
	select {
	case c.evWake <- struct{}{}:
	default:
	}
}

func errorsIsAbortedOrGone(err error) bool {
	return errors.Is(err, ErrAborted) || errors.Is(err, ErrRemoved) || errors.Is(err, ErrClosed) || errors.Is(err, ErrFailed)
}

// eventLoop is the event goroutine.
func (c *Controller) eventLoop() {
	defer c.watchWG.Done()
	for {
		select {
		case <-c.stop:
			return
		case <-c.evWake:
		}
		for {
			c.evMu.Lock()
			if len(c.evQ) == 0 {
				c.evMu.Unlock()
				break
			}
			e := c.evQ[0]
			c.evQ = slices.Delete(c.evQ, 0, 1)
			c.evMu.Unlock()
			select {
			case <-c.stop:
				return
			default:
			}
			c.handleEvent(e)
		}
	}
}

// eventLogSize returns how much of log page lid the driver reads to clear
// an event naming it.
func (c *Controller) eventLogSize(lid uint8) int {
	switch lid {
	case spec.LogErrorInformation:
		return min((int(c.ident.ELPE)+1)*spec.ErrorLogEntrySize, c.adminXfer())
	case spec.LogChangedNamespaces:
		return 4096
	case spec.LogReservationNotification:
		return 64
	}
	return 512 // SMART, Firmware Slot, Sanitize Status, and the header of larger logs
}

// handleEvent reads the log page e names, rescans namespaces after a
// namespace notice, tells Options.OnEvent and arms the request again.
func (c *Controller) handleEvent(e aerEvent) {
	ae := AsyncEvent{Event: e.ev, At: e.at}
	lid := e.ev.LogPage()
	log := make([]byte, c.eventLogSize(lid))
	nsid := uint32(0)
	if lid == spec.LogSMART {
		nsid = spec.NSIDAll
	}
	if err := c.GetLogPage(lid, nsid, 0, false, 0, log); err != nil {
		ae.LogErr = err
		c.logf("nvme: asynchronous event %v: %v", e.ev, err)
	} else {
		ae.Log = log
	}
	if e.ev.Type() == spec.AEVTypeNotice && e.ev.Info() == spec.AEVNoticeNamespaceChanged {
		ch, err := c.rescan()
		ae.Attached, ae.Detached, ae.Changed, ae.RescanErr = ch.attached, ch.detached, ch.changed, err
		c.logf("nvme: namespace attribute changed: attached %v, detached %v, changed %v (rescan: %v)", ch.attached, ch.detached, ch.changed, err)
	} else {
		c.logf("nvme: asynchronous event %v", e.ev)
	}
	c.evMu.Lock()
	if len(c.events) >= 64 {
		c.events = slices.Delete(c.events, 0, 1)
	}
	c.events = append(c.events, ae)
	c.evMu.Unlock()
	if c.opts.OnEvent != nil {
		c.opts.OnEvent(ae)
	}
	c.adminMu.Lock()
	if c.State() == StateReady && c.admin != nil {
		if err := c.submitAER(e.req); err != nil {
			c.logf("nvme: asynchronous event request: %v", err)
		}
		c.admin.Ring()
	}
	c.adminMu.Unlock()
}

// Events returns the asynchronous events handled so far (the last 64).
// Any goroutine.
func (c *Controller) Events() []AsyncEvent {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	return append([]AsyncEvent(nil), c.events...)
}

// nsChange is what a rescan found.
type nsChange struct{ attached, detached, changed []uint32 }

func (ch nsChange) String() string {
	return fmt.Sprintf("attached %v detached %v changed %v", ch.attached, ch.detached, ch.changed)
}
