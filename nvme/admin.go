package nvme

import (
	"fmt"
	"slices"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// This file holds the admin command set (NVMe Base 2.0, 5). The admin
// queue is shared by every goroutine under adminMu, which is held only to
// submit and to poll, never while waiting: a slow or hung admin command
// holds up neither other admin commands nor the watcher (aborts, the CFS
// and removal checks). Bring-up, a reset and queue creation and deletion
// keep adminMu for their whole sequence (locked).
//
// Data moves through the driver's own admin buffers (DMA memory), which
// the caller's memory is copied to and from. A buffer goes back to the
// pool only when its command completed, or the reset that retires a
// command which timed out finished: the controller may still write to it
// until then.

// adminMaxXfer is the most data one admin command carries (before MDTS).
const adminMaxXfer = 16 << 10

// adminXfer returns the most data one admin command may carry:
// adminMaxXfer, capped by MDTS (one page before Identify).
func (c *Controller) adminXfer() int { return min(adminMaxXfer, c.maxXfer) }

// adminCall is one synchronous admin command in flight. Its fields are
// guarded by adminMu (its Done runs inside a Poll of the admin queue).
type adminCall struct {
	req       Request
	buf       *dma.Buffer
	done      bool
	abandoned bool // the caller gave up waiting: Done returns buf
}

// adminBuf takes an admin buffer from the pool. adminMu held.
func (c *Controller) adminBuf() (*dma.Buffer, error) {
	if n := len(c.adminFree); n > 0 {
		b := c.adminFree[n-1]
		c.adminFree = c.adminFree[:n-1]
		return b, nil
	}
	b, err := c.mem.Alloc(adminMaxXfer)
	if err != nil {
		return nil, fmt.Errorf("admin buffer: %w", err)
	}
	c.adminBufs = append(c.adminBufs, b)
	return b, nil
}

// putAdminBuf gives a buffer back to the pool. adminMu held.
func (c *Controller) putAdminBuf(b *dma.Buffer) {
	if b != nil {
		c.adminFree = append(c.adminFree, b)
	}
}

// adminExec runs cmd on the admin queue and waits up to timeout for it.
// in (any memory) is sent to the device; out receives the data the
// device returns; each at most adminXfer bytes. With locked the caller
// holds adminMu and keeps it throughout (bring-up, reset); otherwise the
// lock is taken to submit and for each poll.
//
// A command that does not complete in time is abandoned (its buffer stays
// reserved until it completes or a reset retires it) and the controller
// is reset; the caller gets ErrTimeout.
func (c *Controller) adminExec(cmd spec.Command, in, out []byte, timeout time.Duration, locked bool) (uint32, error) {
	dw0, _, err := c.adminExecDW(cmd, in, out, timeout, locked)
	return dw0, err
}

// adminExecDW is adminExec that also returns completion dword 1 (set only
// on a fabric, where Property Get returns a value in it).
func (c *Controller) adminExecDW(cmd spec.Command, in, out []byte, timeout time.Duration, locked bool) (uint32, uint32, error) {
	name := spec.AdminOpcodeName(spec.Opcode(cmd.Opcode))
	n := max(len(in), len(out))
	if n > c.adminXfer() {
		return 0, 0, invalidf("admin %s: %d bytes of data exceed the %d one admin command carries", name, n, c.adminXfer())
	}
	deadline := time.Now().Add(timeout)
	if !locked && c.fab != nil {
		// A fabric controller being reconnected has no admin queue to
		// take the command: wait for the reconnect (or its end).
		if err := c.waitReconnect(deadline); err != nil {
			return 0, 0, fmt.Errorf("admin %s: %w", name, err)
		}
	}
	lock := func() {
		if !locked {
			c.adminMu.Lock()
		}
	}
	unlock := func() {
		if !locked {
			c.adminMu.Unlock()
		}
	}
	lock()
	switch s := c.State(); {
	case s == StateRemoved:
		unlock()
		return 0, 0, ErrRemoved
	case s == StateFailed:
		unlock()
		return 0, 0, ErrFailed
	case s == StateClosed || c.admin == nil:
		unlock()
		return 0, 0, ErrClosed
	}
	call := &adminCall{}
	call.req.Cmd = cmd
	call.req.Done = func(*Request) {
		call.done = true
		if call.abandoned {
			c.putAdminBuf(call.buf)
		}
	}
	if n > 0 {
		b, err := c.adminBuf()
		if err != nil {
			unlock()
			return 0, 0, err
		}
		call.buf = b
		clear(b.Bytes[:n])
		copy(b.Bytes, in)
		call.req.Data = b.Bytes[:n]
	}
	if err := c.admin.Submit(&call.req); err != nil {
		c.putAdminBuf(call.buf)
		unlock()
		return 0, 0, fmt.Errorf("admin %s: %w", name, err)
	}
	c.admin.Ring()
	unlock()

	sleep := time.Microsecond
	for {
		lock()
		if !call.done && c.admin != nil && !c.admin.freed {
			if c.admin.Poll() > 0 {
				sleep = time.Microsecond
			}
		}
		if !call.done && locked && c.fab != nil && c.admin != nil && c.admin.xerr != nil {
			// The admin connection ended while the caller holds the
			// lock (bring-up, a reconnect attempt): nothing can bring
			// it back meanwhile, so fail now rather than at the timeout.
			call.abandoned = true
			err := c.admin.xerr
			unlock()
			return 0, 0, fmt.Errorf("admin %s: connection: %w", name, err)
		}
		if !call.done && c.fab == nil && c.csts().Removed() {
			c.markRemoved("CSTS reads all ones during an admin command")
			if c.admin != nil {
				c.admin.terminate(fmt.Errorf("admin queue: %w", ErrRemoved))
			}
		}
		if call.done {
			dw0, dw1, err := call.req.DW0, call.req.dw1, call.req.Err
			if err == nil {
				copy(out, call.req.Data)
			}
			c.putAdminBuf(call.buf)
			unlock()
			return dw0, dw1, err
		}
		if time.Now().After(deadline) {
			call.abandoned = true
			unlock()
			c.requestReset(epochGen(c.epoch.Load()), fmt.Sprintf("admin command %s timed out", name))
			return 0, 0, fmt.Errorf("%w: admin %s after %v", ErrTimeout, name, timeout)
		}
		unlock()
		time.Sleep(sleep)
		sleep = min(sleep*2, 200*time.Microsecond)
	}
}

// adminSimpleLocked runs a command without data, adminMu held.
func (c *Controller) adminSimpleLocked(op spec.Opcode, nsid, cdw10, cdw11 uint32) (uint32, error) {
	return c.adminExec(spec.Command{Opcode: uint8(op), NSID: nsid, CDW10: cdw10, CDW11: cdw11}, nil, nil, c.opts.AdminTimeout, true)
}

// adminSimple runs a command without data, adminMu not held.
func (c *Controller) adminSimple(op spec.Opcode, nsid, cdw10, cdw11 uint32) (uint32, error) {
	return c.adminExec(spec.Command{Opcode: uint8(op), NSID: nsid, CDW10: cdw10, CDW11: cdw11}, nil, nil, c.opts.AdminTimeout, false)
}

// identify reads one Identify data structure into a new slice; locked
// says whether the caller holds adminMu.
func (c *Controller) identify(cns uint8, nsid uint32, locked bool) ([]byte, error) {
	b := make([]byte, spec.IdentifySize)
	_, err := c.adminExec(spec.Command{Opcode: uint8(spec.AdminIdentify), NSID: nsid, CDW10: uint32(cns)}, nil, b, c.opts.AdminTimeout, locked)
	if err != nil {
		return nil, fmt.Errorf("identify cns %#x nsid %d: %w", cns, nsid, err)
	}
	return b, nil
}

// IdentifyRaw returns the 4096-byte Identify data structure for cns
// (spec.CNSController, CNSNamespace, CNSActiveNamespaces,
// CNSNamespaceDescriptors, ...) and nsid. Any goroutine.
func (c *Controller) IdentifyRaw(cns uint8, nsid uint32) ([]byte, error) {
	return c.identify(cns, nsid, false)
}

// IdentifyNamespace reads and parses Identify Namespace for nsid. Any
// goroutine.
func (c *Controller) IdentifyNamespace(nsid uint32) (*spec.IdentifyNamespace, error) {
	b, err := c.IdentifyRaw(spec.CNSNamespace, nsid)
	if err != nil {
		return nil, err
	}
	id, err := spec.ParseIdentifyNamespace(b)
	if err != nil {
		return nil, fmt.Errorf("identify namespace %d: %w: %w", nsid, ErrDevice, err)
	}
	return id, nil
}

// ActiveNamespaces returns the active namespace IDs greater than after, at
// most 1024 (one Identify page). Any goroutine.
func (c *Controller) ActiveNamespaces(after uint32) ([]uint32, error) {
	b, err := c.IdentifyRaw(spec.CNSActiveNamespaces, after)
	if err != nil {
		return nil, err
	}
	ids, err := spec.ParseNamespaceList(b)
	if err != nil {
		return nil, fmt.Errorf("active namespace list: %w: %w", ErrDevice, err)
	}
	return ids, nil
}

// NamespaceDescriptors returns the Namespace Identification Descriptors
// of nsid (EUI-64, NGUID, UUID, CSI). Any goroutine.
func (c *Controller) NamespaceDescriptors(nsid uint32) ([]spec.NamespaceDescriptor, error) {
	b, err := c.IdentifyRaw(spec.CNSNamespaceDescriptors, nsid)
	if err != nil {
		return nil, err
	}
	d, err := spec.ParseNamespaceDescriptors(b)
	if err != nil {
		return nil, fmt.Errorf("namespace %d descriptors: %w: %w", nsid, ErrDevice, err)
	}
	return d, nil
}

// GetFeature reads feature fid with select sel (0 current, 1 default, 2
// saved, 3 supported capabilities) and cdw11 as the feature needs it. For
// features that return data, data (any memory, at most one page) receives
// it. It returns completion dword 0. Any goroutine.
func (c *Controller) GetFeature(fid, sel uint8, nsid, cdw11 uint32, data []byte) (uint32, error) {
	if len(data) > c.pageSize {
		return 0, invalidf("get feature %#x: data of %d bytes exceeds one page", fid, len(data))
	}
	dw0, err := c.adminExec(spec.Command{
		Opcode: uint8(spec.AdminGetFeatures), NSID: nsid,
		CDW10: uint32(fid) | uint32(sel&7)<<8, CDW11: cdw11,
	}, nil, data, c.opts.AdminTimeout, false)
	if err != nil {
		return 0, fmt.Errorf("get feature %s: %w", spec.FeatureName(fid), err)
	}
	return dw0, nil
}

// SetFeature sets feature fid to cdw11 (and data, for features that take
// a data structure), saving it across power cycles if save. It returns
// completion dword 0. Any goroutine.
func (c *Controller) SetFeature(fid uint8, nsid, cdw11 uint32, data []byte, save bool) (uint32, error) {
	if len(data) > c.pageSize {
		return 0, invalidf("set feature %#x: data of %d bytes exceeds one page", fid, len(data))
	}
	if fid == spec.FeatureNumberOfQueues {
		return 0, invalidf("set feature %s: the driver negotiates it at bring-up", spec.FeatureName(fid))
	}
	cdw10 := uint32(fid)
	if save {
		cdw10 |= 1 << 31
	}
	dw0, err := c.adminExec(spec.Command{Opcode: uint8(spec.AdminSetFeatures), NSID: nsid, CDW10: cdw10, CDW11: cdw11}, data, nil, c.opts.AdminTimeout, false)
	if err != nil {
		return 0, fmt.Errorf("set feature %s: %w", spec.FeatureName(fid), err)
	}
	return dw0, nil
}

// lpaExtendedData is LPA bit 2: Get Log Page takes NUMDU and a byte offset
// (NVMe Base 2.0, 5.17.2.1, "Log Page Attributes").
const lpaExtendedData = 1 << 2

// logOffsets reports whether the controller honours log page offsets.
func (c *Controller) logOffsets() bool { return c.ident != nil && c.ident.LPA&lpaExtendedData != 0 }

// GetLogPage reads len(buf) bytes of log page lid for nsid, starting at
// byte offset off (a multiple of 4), into buf (any memory). lsp is the log
// specific field; rae keeps an asynchronous event pending.
//
// When the controller takes log page offsets (LPA bit 2) a large log is
// read in pieces of AdminTransfer bytes at increasing offsets. When it
// does not, the log is read with one command from its start: off must be
// 0 and buf at most AdminTransfer bytes, else ErrInvalid. Any goroutine.
func (c *Controller) GetLogPage(lid uint8, nsid uint32, lsp uint8, rae bool, off uint64, buf []byte) error {
	if len(buf) == 0 || len(buf)%4 != 0 || off%4 != 0 {
		return invalidf("log page %#x: length %d and offset %d must be non-zero multiples of 4", lid, len(buf), off)
	}
	piece := c.adminXfer()
	if !c.logOffsets() {
		if off != 0 || len(buf) > piece {
			return invalidf("log page %s: the controller reads logs only from the start in one command (no LPA extended data): offset %d, %d bytes (at most %d)",
				spec.LogName(lid), off, len(buf), piece)
		}
	}
	for done := 0; done < len(buf); {
		n := min(len(buf)-done, piece)
		numd := uint32(n/4 - 1)
		cdw10 := uint32(lid) | uint32(lsp&0x7f)<<8 | (numd&0xffff)<<16
		if rae {
			cdw10 |= 1 << 15
		}
		o := off + uint64(done)
		_, err := c.adminExec(spec.Command{
			Opcode: uint8(spec.AdminGetLogPage), NSID: nsid,
			CDW10: cdw10, CDW11: numd >> 16, CDW12: uint32(o), CDW13: uint32(o >> 32),
		}, nil, buf[done:done+n], c.opts.AdminTimeout, false)
		if err != nil {
			return fmt.Errorf("get log page %s at offset %d: %w", spec.LogName(lid), o, err)
		}
		done += n
	}
	return nil
}

// SMARTLog reads and parses the SMART / Health Information log
// (controller-wide, NSID 0xffffffff). Any goroutine.
func (c *Controller) SMARTLog() (*spec.SMARTLog, error) {
	b := make([]byte, 512)
	if err := c.GetLogPage(spec.LogSMART, 0xffffffff, 0, false, 0, b); err != nil {
		return nil, err
	}
	return spec.ParseSMARTLog(b)
}

// ErrorLog reads and parses n entries of the Error Information log (n is
// clamped to ELPE+1, and to what one command reads when the controller
// takes no log offsets). Any goroutine.
func (c *Controller) ErrorLog(n int) ([]spec.ErrorLogEntry, error) {
	n = max(1, min(n, int(c.ident.ELPE)+1))
	if !c.logOffsets() {
		n = min(n, c.adminXfer()/spec.ErrorLogEntrySize) // one read
	}
	b := make([]byte, n*64)
	if err := c.GetLogPage(spec.LogErrorInformation, 0, 0, false, 0, b); err != nil {
		return nil, err
	}
	return spec.ParseErrorLog(b)
}

// FirmwareSlotLog reads and parses the Firmware Slot Information log.
// Any goroutine.
func (c *Controller) FirmwareSlotLog() (*spec.FirmwareSlotLog, error) {
	b := make([]byte, 512)
	if err := c.GetLogPage(spec.LogFirmwareSlot, 0, 0, false, 0, b); err != nil {
		return nil, err
	}
	return spec.ParseFirmwareSlotLog(b)
}

// CommandEffectsLog reads and parses the Commands Supported and Effects
// log. Any goroutine.
func (c *Controller) CommandEffectsLog() (*spec.CommandEffectsLog, error) {
	b := make([]byte, 4096)
	if err := c.GetLogPage(spec.LogCommandEffects, 0, 0, false, 0, b); err != nil {
		return nil, err
	}
	return spec.ParseCommandEffectsLog(b)
}

// Abort asks the controller to abort command cid on submission queue
// sqid. It reports whether the controller says it aborted the command
// (completion dword 0 bit 0 clear). Any goroutine.
func (c *Controller) Abort(sqid, cid uint16) (bool, error) {
	dw0, err := c.adminSimple(spec.AdminAbort, 0, uint32(sqid)|uint32(cid)<<16, 0)
	if err != nil {
		return false, fmt.Errorf("abort sq %d cid %d: %w", sqid, cid, err)
	}
	return dw0&1 == 0, nil
}

// FormatNVM formats namespace nsid (0xffffffff: all) with LBA format
// index lbaf and secure erase setting ses (0 none, 1 user data, 2
// cryptographic). It re-reads the namespace afterwards. Every queue pair
// must be idle on that namespace. Any goroutine.
func (c *Controller) FormatNVM(nsid uint32, lbaf, ses uint8) error {
	if lbaf > 63 || ses > 7 {
		return invalidf("format: lba format %d or secure erase setting %d out of range", lbaf, ses)
	}
	cdw10 := uint32(lbaf&0xf) | uint32(ses)<<9 | uint32(lbaf>>4)<<12
	// Formatting takes as long as the device needs: no AdminTimeout.
	_, err := c.adminExec(spec.Command{Opcode: uint8(spec.AdminFormatNVM), NSID: nsid, CDW10: cdw10}, nil, nil, max(c.opts.AdminTimeout, 10*time.Minute), false)
	if err != nil {
		return fmt.Errorf("format namespace %d: %w", nsid, err)
	}
	return c.Rescan()
}

// AdminPassthru sends a raw admin command. data (any memory, at most
// AdminTransfer bytes) is sent to the device when toDevice, else filled
// from it. The driver sets CID and the data pointer (PRPs).
//
// Commands that would break the driver's own state are refused:
//   - always: creating or deleting I/O queues, Asynchronous Event
//     Request, Doorbell Buffer Config (the driver rings its doorbells
//     itself) and fabrics commands; FUSE bits (fused operations) and a
//     PSDT other than PRP, which the driver does not implement for admin
//     commands;
//   - unless the caller names the command in allow (its name in the spec
//     tables, spec.AdminOpcodeName; for Set Features "Set Features "
//     and the feature's spec.FeatureName): Format NVM, Sanitize,
//     Namespace Management, Namespace Attachment, Firmware Commit, Abort,
//     Virtualization Management, Capacity Management, Lockdown, and Set
//     Features of Number of Queues, Asynchronous Event Configuration,
//     Host Memory Buffer and Keep Alive Timer.
//
// After a Format NVM or Sanitize that succeeded, the namespaces are
// scanned again; after a Namespace Management or Namespace Attachment
// too, unless the controller sends Namespace Attribute Changed notices
// (OAES), on which the driver rescans by itself (Options.OnEvent sees
// what changed). Any goroutine.
func (c *Controller) AdminPassthru(cmd spec.Command, data []byte, toDevice bool, allow ...string) (uint32, error) {
	op := spec.Opcode(cmd.Opcode)
	name := spec.AdminOpcodeName(op)
	switch op {
	case spec.AdminCreateIOCQ, spec.AdminCreateIOSQ, spec.AdminDeleteIOCQ, spec.AdminDeleteIOSQ,
		spec.AdminAsyncEventRequest, spec.AdminDoorbellBufferConfig, spec.AdminFabrics:
		return 0, invalidf("admin passthru: %s is the driver's", name)
	}
	if cmd.Flags&spec.FlagFuseMask != 0 {
		return 0, invalidf("admin passthru: %s: FUSE %#x: the driver does not implement fused admin commands", name, cmd.Flags&spec.FlagFuseMask)
	}
	if cmd.Flags&spec.FlagPSDTMask != spec.FlagPSDTPRP {
		return 0, invalidf("admin passthru: %s: PSDT %#x: the driver describes admin data with PRPs only", name, cmd.Flags&spec.FlagPSDTMask>>6)
	}
	if guarded := passthruGuard(cmd); guarded != "" && !slices.Contains(allow, guarded) {
		return 0, invalidf("admin passthru: %s changes state the driver keeps (queues, namespaces, events, firmware); pass %q to allow it", guarded, guarded)
	}
	if len(data) > c.adminXfer() {
		return 0, invalidf("admin passthru: data of %d bytes exceeds the %d one admin command carries", len(data), c.adminXfer())
	}
	cmd.PRP1, cmd.PRP2 = 0, 0
	in, out := []byte(nil), data
	if toDevice {
		in, out = data, nil
	}
	dw0, err := c.adminExec(cmd, in, out, c.opts.AdminTimeout, false)
	if err == nil {
		rescan := false
		switch op {
		case spec.AdminFormatNVM, spec.AdminSanitize:
			rescan = true
		case spec.AdminNamespaceManagement, spec.AdminNamespaceAttachment:
			// The Namespace Attribute Changed notice makes the event
			// goroutine rescan, and tells OnEvent what changed.
			rescan = !c.nsNotices()
		}
		if rescan {
			if rerr := c.Rescan(); rerr != nil {
				c.logf("nvme: rescan after %s: %v", name, rerr)
			}
		}
	}
	return dw0, err
}

// nsNotices reports whether the driver gets Namespace Attribute Changed
// notices from the controller (and rescans on them).
func (c *Controller) nsNotices() bool {
	return c.opts.AsyncEvents >= 0 && c.ident != nil && c.ident.OAES&spec.AECNamespaceAttribute != 0
}

// PassthruGuard returns the name a caller must pass to AdminPassthru to
// send cmd (a command that changes state the driver keeps), or "" when cmd
// needs no opt-in. A tool that asked its user for explicit consent (for
// example nvmectl admin-passthru --dangerous) passes it on. Any goroutine.
func PassthruGuard(cmd spec.Command) string { return passthruGuard(cmd) }

// passthruGuard is PassthruGuard.
func passthruGuard(cmd spec.Command) string {
	op := spec.Opcode(cmd.Opcode)
	switch op {
	case spec.AdminFormatNVM, spec.AdminSanitize, spec.AdminNamespaceManagement, spec.AdminNamespaceAttachment,
		spec.AdminFirmwareCommit, spec.AdminAbort, spec.AdminVirtualizationMgmt, spec.AdminCapacityManagement, spec.AdminLockdown:
		return spec.AdminOpcodeName(op)
	case spec.AdminSetFeatures:
		switch fid := uint8(cmd.CDW10); fid {
		case spec.FeatureNumberOfQueues, spec.FeatureAsyncEventConfig, spec.FeatureHostMemoryBuffer, spec.FeatureKeepAlive:
			return spec.AdminOpcodeName(op) + " " + spec.FeatureName(fid)
		}
	}
	return ""
}

// AdminTransfer returns the most data one admin command (AdminPassthru,
// GetLogPage piece, ...) carries: 16 KiB, or less when MDTS says so. Any
// goroutine.
func (c *Controller) AdminTransfer() int { return c.adminXfer() }

// createQueues creates q's queues on the controller: Create I/O CQ and SQ
// on PCIe (pcieq.go), a connection and a Fabrics Connect on a fabric
// (fabric.go).
func (c *Controller) createQueues(q *QueuePair) error {
	if c.fab != nil {
		return c.connectQueue(q)
	}
	c.adminMu.Lock()
	defer c.adminMu.Unlock()
	// The queues belong to the epoch seen before creating them: if a
	// reset starts meanwhile, the queue pair is not in step with it.
	e := c.epoch.Load()
	if s := epochState(e); s != StateReady {
		return fmt.Errorf("create io queues %d: controller is %v", q.id, s)
	}
	if err := c.createRings(q); err != nil {
		return err
	}
	q.epoch = e
	return nil
}

// deleteQueues deletes q's queues on the controller: Delete I/O SQ and CQ
// on PCIe, closing its connection on a fabric.
func (c *Controller) deleteQueues(q *QueuePair) error {
	if c.fab != nil {
		q.dropTransport()
		return nil
	}
	c.adminMu.Lock()
	defer c.adminMu.Unlock()
	return c.deleteRings(q)
}
