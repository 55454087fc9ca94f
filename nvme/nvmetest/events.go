package nvmetest

import (
	"encoding/binary"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Asynchronous events (NVMe Base 2.0, 5.2): an event waits until an
// Asynchronous Event Request is outstanding and its type is not masked.
// Reporting an event masks its type until the host reads the log page the
// event names with Retain Asynchronous Event clear; until then further
// events of that type wait. Notices and SMART / Health warnings are sent
// only when Asynchronous Event Configuration enables them (all are off
// after a controller reset); error events always are.

// maxPendingEvents bounds the events kept for the host; more are dropped.
const maxPendingEvents = 64

// aecEnabled reports whether the Asynchronous Event Configuration
// feature lets ev through.
func (d *device) aecEnabled(ev spec.AsyncEvent) bool {
	aec := d.features[spec.FeatureAsyncEventConfig]
	switch ev.Type() {
	case spec.AEVTypeSMART:
		// Each SMART event follows a critical warning bit; enabled if
		// any of the warning bits is.
		return aec&spec.AECSMARTMask != 0
	case spec.AEVTypeNotice:
		var bit uint32
		switch ev.Info() {
		case spec.AEVNoticeNamespaceChanged:
			bit = spec.AECNamespaceAttribute
		case spec.AEVNoticeFirmwareActivation:
			bit = spec.AECFirmwareActivation
		case spec.AEVNoticeTelemetryLogChanged:
			bit = spec.AECTelemetryLog
		case spec.AEVNoticeANAChange:
			bit = spec.AECANAChange
		default:
			return true
		}
		return aec&bit != 0
	}
	return true
}

// queueEvent keeps ev for the host (if the configuration enables it) and
// delivers what can be delivered. Device goroutine.
func (d *device) queueEvent(ev uint32) {
	if !d.aecEnabled(spec.AsyncEvent(ev)) {
		d.c.cnt.eventsOff.Add(1)
		return
	}
	if len(d.pending) >= maxPendingEvents {
		d.c.cnt.eventsLost.Add(1)
		return
	}
	d.pending = append(d.pending, ev)
	d.deliverEvents()
}

// deliverEvents completes outstanding Asynchronous Event Requests with
// the oldest pending events whose type is not masked.
func (d *device) deliverEvents() {
	for len(d.aers) > 0 && d.rdy && !d.fatal {
		i := 0
		for i < len(d.pending) && d.masked[spec.AsyncEvent(d.pending[i]).Type()] {
			i++
		}
		if i == len(d.pending) {
			return
		}
		ev := d.pending[i]
		d.pending = append(d.pending[:i], d.pending[i+1:]...)
		t := spec.AsyncEvent(ev).Type()
		d.masked[t], d.clearLog[t] = true, spec.AsyncEvent(ev).LogPage()
		cid := d.aers[0]
		d.aers = append(d.aers[:0], d.aers[1:]...)
		d.post(&d.cqs[0], cqEntry{dw0: ev, sqHead: uint16(d.sqs[0].head), cid: cid})
		d.c.cnt.events.Add(1)
	}
}

// logRead unmasks the event types the log page lid clears, after a Get
// Log Page with Retain Asynchronous Event clear.
func (d *device) logRead(lid uint8) {
	for t := range d.masked {
		if d.masked[t] && d.clearLog[t] == lid {
			d.masked[t] = false
		}
	}
	d.deliverEvents()
}

// nsChanged notes a namespace attribute change of nsid for the Changed
// Namespace List log and sends the notice, once until the host reads the
// list (as QEMU's controller does).
func (d *device) nsChanged(nsid uint32) {
	for _, id := range d.changedNS {
		if id == nsid {
			return // noted already: the host has not read the list since
		}
	}
	d.changedNS = append(d.changedNS, nsid)
	d.queueEvent(uint32(spec.AEVTypeNotice) | uint32(spec.AEVNoticeNamespaceChanged)<<8 | uint32(spec.LogChangedNamespaces)<<16)
}

// changedNamespaceLog fills b (4096 bytes) with the Changed Namespace List
// (NVMe Base 2.0, 5.16.1.5): up to 1024 NSIDs, or 0xffffffff first when
// more changed.
func (d *device) changedNamespaceLog(b []byte) {
	if len(d.changedNS) > spec.MaxNamespaceListEntries {
		binary.LittleEndian.PutUint32(b, 0xffffffff)
		return
	}
	for i, id := range d.changedNS {
		binary.LittleEndian.PutUint32(b[4*i:], id)
	}
}

// setAttached attaches or detaches an allocated namespace. It returns
// false when nothing changed.
func (d *device) setAttached(nsid uint32, on bool) bool {
	ns := d.allocated(nsid)
	if ns == nil || ns.attached == on {
		return false
	}
	ns.attached = on
	d.nsChanged(nsid)
	return true
}

// AttachNamespace attaches namespace nsid (a Config.Namespaces entry,
// 1-based) to the controller: it becomes active, joins the Changed
// Namespace List and a Namespace Attribute Changed notice is sent. It
// reports whether the namespace was detached before. Any goroutine.
func (c *Controller) AttachNamespace(nsid uint32) bool {
	var ok bool
	_ = c.call(func() { ok = c.dev.setAttached(nsid, true) })
	return ok
}

// DetachNamespace detaches namespace nsid: it becomes inactive (I/O to it
// fails with Invalid Namespace or Format, Identify returns zeros), with
// the same notice as AttachNamespace. Its data is kept. Any goroutine.
func (c *Controller) DetachNamespace(nsid uint32) bool {
	var ok bool
	_ = c.call(func() { ok = c.dev.setAttached(nsid, false) })
	return ok
}

// namespaceAttachment executes Namespace Attachment (NVMe Base 2.0,
// 5.22): SEL 0 attaches, 1 detaches nsid for the controllers in the
// controller list; this fake is controller 1.
func (d *device) namespaceAttachment(cmd *spec.Command) spec.Status {
	sel := cmd.CDW10 & 0xf
	if sel > 1 {
		return stInvalidFld
	}
	ns := d.allocated(cmd.NSID)
	if ns == nil {
		return stInvalidNS
	}
	list := d.scratch[:4096]
	if st := d.x.start(d.c, cmd, len(list), false); !st.Success() {
		return st
	}
	if st := d.x.fromHost(list); !st.Success() {
		return st
	}
	n := binary.LittleEndian.Uint16(list)
	if n != 1 || binary.LittleEndian.Uint16(list[2:]) != cntlid {
		return spec.MakeStatus(spec.SCTCommandSpecific, spec.SCControllerListInvalid)
	}
	switch {
	case sel == 0 && ns.attached:
		return spec.MakeStatus(spec.SCTCommandSpecific, spec.SCNamespaceAlreadyAttached)
	case sel == 1 && !ns.attached:
		return spec.MakeStatus(spec.SCTCommandSpecific, spec.SCNamespaceNotAttached)
	}
	d.setAttached(cmd.NSID, sel == 0)
	return stOK
}
