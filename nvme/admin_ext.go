package nvme

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// This file holds the admin commands a management tool sends and the
// driver itself never does: namespace management and attachment, firmware
// download and commit, device self-test and sanitize (NVMe Base 2.0, 5.6,
// 5.22, 5.23, 5.11, 5.12, 5.24), and the parsers of the two logs they
// report into (Device Self-test, 5.16.1.7; Sanitize Status, 5.16.1.25).
// Each runs on the admin queue like the other admin commands; data goes
// through the controller's one-page scratch buffer.

// NamespaceSpec is what Namespace Management (create) is told about a new
// namespace: the Identify Namespace fields the host sets.
type NamespaceSpec struct {
	NSZE  uint64 // size in logical blocks
	NCAP  uint64 // capacity in logical blocks (at most NSZE)
	FLBAS uint8  // formatted LBA size: the LBA format index (bits 3:0, 6:5)
	DPS   uint8  // end-to-end data protection settings
	NMIC  uint8  // multi-path I/O and namespace sharing (bit 0: shared)
}

// adminData runs cmd with data (at most one page) through the scratch
// buffer: sent to the device when toDevice, else copied back into data.
func (c *Controller) adminData(cmd spec.Command, data []byte, toDevice bool) (uint32, error) {
	if len(data) > c.pageSize {
		return 0, invalidf("%s: data of %d bytes exceeds one page", spec.AdminOpcodeName(spec.Opcode(cmd.Opcode)), len(data))
	}
	if toDevice {
		return c.adminExec(cmd, data, nil, c.opts.AdminTimeout, false)
	}
	return c.adminExec(cmd, nil, data, c.opts.AdminTimeout, false)
}

// CreateNamespace sends Namespace Management with SEL 0 (create) and
// returns the namespace ID the controller allocated. The new namespace is
// not attached to any controller yet (AttachNamespace). Any goroutine.
func (c *Controller) CreateNamespace(ns NamespaceSpec) (uint32, error) {
	if ns.NSZE == 0 || ns.NCAP == 0 || ns.NCAP > ns.NSZE {
		return 0, invalidf("create namespace: nsze %d and ncap %d: want 0 < ncap <= nsze", ns.NSZE, ns.NCAP)
	}
	b := make([]byte, spec.IdentifySize)
	le := binary.LittleEndian
	le.PutUint64(b[0x00:], ns.NSZE)
	le.PutUint64(b[0x08:], ns.NCAP)
	b[0x1a] = ns.FLBAS
	b[0x1d] = ns.DPS
	b[0x1e] = ns.NMIC
	dw0, err := c.adminData(spec.Command{Opcode: uint8(spec.AdminNamespaceManagement), CDW10: 0}, b, true)
	if err != nil {
		return 0, fmt.Errorf("create namespace: %w", err)
	}
	return dw0, nil
}

// DeleteNamespace sends Namespace Management with SEL 1 (delete) for nsid
// (0xffffffff: every namespace), then identifies the active namespaces
// again. Every queue pair must be idle on it. Any goroutine.
func (c *Controller) DeleteNamespace(nsid uint32) error {
	if nsid == 0 {
		return invalidf("delete namespace 0")
	}
	if _, err := c.adminSimple(spec.AdminNamespaceManagement, nsid, 1, 0); err != nil {
		return fmt.Errorf("delete namespace %d: %w", nsid, err)
	}
	return c.Rescan()
}

// AttachNamespace sends Namespace Attachment with SEL 0 (attach) for nsid
// and the controllers ctrls (their CNTLIDs; this controller's is
// Identify().CNTLID), then identifies the active namespaces again. Any
// goroutine.
func (c *Controller) AttachNamespace(nsid uint32, ctrls []uint16) error {
	return c.attachment(nsid, ctrls, 0, "attach")
}

// DetachNamespace sends Namespace Attachment with SEL 1 (detach) for nsid
// and the controllers ctrls, then identifies the active namespaces again.
// Every queue pair must be idle on it. Any goroutine.
func (c *Controller) DetachNamespace(nsid uint32, ctrls []uint16) error {
	return c.attachment(nsid, ctrls, 1, "detach")
}

func (c *Controller) attachment(nsid uint32, ctrls []uint16, sel uint32, what string) error {
	if nsid == 0 || nsid == spec.NSIDAll {
		return invalidf("%s namespace %#x: name one namespace", what, nsid)
	}
	if len(ctrls) == 0 || len(ctrls) > 2047 {
		return invalidf("%s namespace %d: %d controllers (want 1 to 2047)", what, nsid, len(ctrls))
	}
	// Controller List (Base 2.0, 4.8.3.2): a count, then the IDs.
	b := make([]byte, spec.IdentifySize)
	binary.LittleEndian.PutUint16(b, uint16(len(ctrls)))
	for i, id := range ctrls {
		binary.LittleEndian.PutUint16(b[2+2*i:], id)
	}
	if _, err := c.adminData(spec.Command{Opcode: uint8(spec.AdminNamespaceAttachment), NSID: nsid, CDW10: sel}, b, true); err != nil {
		return fmt.Errorf("%s namespace %d: %w", what, nsid, err)
	}
	return c.Rescan()
}

// FirmwareDownload sends image to the controller with Firmware Image
// Download commands, in pieces of at most one page (and of the Firmware
// Update Granularity when it is smaller), the first at byte offset off.
// off and len(image) must be multiples of 4. Any goroutine.
func (c *Controller) FirmwareDownload(image []byte, off uint32) error {
	if len(image) == 0 || len(image)%4 != 0 || off%4 != 0 {
		return invalidf("firmware download: %d bytes at offset %d: want a non-empty multiple of 4 at a multiple of 4", len(image), off)
	}
	if uint64(off)+uint64(len(image)) > 1<<34 {
		return invalidf("firmware download: %d bytes at offset %d run past the 16 GiB the command can address", len(image), off)
	}
	piece := c.pageSize
	if g := c.ident.FWUG; g != 0 && g != 0xff && int(g)*4096 < piece {
		piece = int(g) * 4096
	}
	for done := 0; done < len(image); {
		n := min(piece, len(image)-done)
		o := uint64(off) + uint64(done)
		cmd := spec.Command{Opcode: uint8(spec.AdminFirmwareDownload), CDW10: uint32(n/4 - 1), CDW11: uint32(o / 4)}
		if _, err := c.adminData(cmd, image[done:done+n], true); err != nil {
			return fmt.Errorf("firmware download at offset %d: %w", o, err)
		}
		done += n
	}
	return nil
}

// Firmware Commit actions (CDW10 CA), NVMe Base 2.0, 5.11.
const (
	FirmwareReplace            = 0 // store the downloaded image in the slot
	FirmwareReplaceActivate    = 1 // store it and activate it at the next reset
	FirmwareActivate           = 2 // activate the slot's image at the next reset
	FirmwareReplaceActivateNow = 3 // store it and activate it now, without a reset
)

// FirmwareCommit sends Firmware Commit for slot (0: the controller picks)
// with action ca (FirmwareReplace, ...); bpid selects boot partition 1
// for the boot partition actions. It returns completion dword 0. A status
// saying a reset is needed to activate the image comes back as a
// *StatusError the caller may take as success. Any goroutine.
func (c *Controller) FirmwareCommit(slot, ca uint8, bpid bool) (uint32, error) {
	if slot > 7 || ca > 7 {
		return 0, invalidf("firmware commit: slot %d or action %d out of range (0-7)", slot, ca)
	}
	cdw10 := uint32(slot) | uint32(ca)<<3
	if bpid {
		cdw10 |= 1 << 31
	}
	dw0, err := c.adminSimple(spec.AdminFirmwareCommit, 0, cdw10, 0)
	if err != nil {
		return dw0, fmt.Errorf("firmware commit slot %d action %d: %w", slot, ca, err)
	}
	return dw0, nil
}

// Device self-test codes (CDW10 STC), NVMe Base 2.0, 5.12.
const (
	SelfTestShort    = 0x1
	SelfTestExtended = 0x2
	SelfTestVendor   = 0xe
	SelfTestAbort    = 0xf
)

// DeviceSelfTest starts (or with SelfTestAbort stops) a device self-test
// of the controller and nsid (0: the controller only; 0xffffffff: every
// namespace). The test runs in the background; SelfTestLog reports it.
// Any goroutine.
func (c *Controller) DeviceSelfTest(nsid uint32, code uint8) error {
	switch code {
	case SelfTestShort, SelfTestExtended, SelfTestVendor, SelfTestAbort:
	default:
		return invalidf("device self-test code %#x: want 1 (short), 2 (extended), 0xe (vendor) or 0xf (abort)", code)
	}
	if _, err := c.adminSimple(spec.AdminDeviceSelfTest, nsid, uint32(code), 0); err != nil {
		return fmt.Errorf("device self-test %#x: %w", code, err)
	}
	return nil
}

// Sanitize actions (CDW10 SANACT), NVMe Base 2.0, 5.24.
const (
	SanitizeExitFailure = 1
	SanitizeBlockErase  = 2
	SanitizeOverwrite   = 3
	SanitizeCryptoErase = 4
)

// SanitizeOptions are the fields of a Sanitize command besides the action.
type SanitizeOptions struct {
	AUSE      bool   // allow unrestricted sanitize exit
	OWPASS    uint8  // overwrite passes (1-16; 0 means 16)
	OIPBP     bool   // overwrite invert pattern between passes
	NoDealloc bool   // NDAS: no deallocate after sanitize
	Pattern   uint32 // overwrite pattern (CDW11)
}

// Sanitize starts a sanitize operation with action sanact: every
// namespace's user data is erased, in the background; SanitizeStatus
// reports the progress. The controller's queues stay; I/O fails until it
// is done. Any goroutine.
func (c *Controller) Sanitize(sanact uint8, o SanitizeOptions) error {
	if sanact < SanitizeExitFailure || sanact > SanitizeCryptoErase {
		return invalidf("sanitize action %d: want 1 (exit failure), 2 (block erase), 3 (overwrite) or 4 (crypto erase)", sanact)
	}
	if o.OWPASS > 16 {
		return invalidf("sanitize: %d overwrite passes (want 1 to 16)", o.OWPASS)
	}
	cdw10 := uint32(sanact) | uint32(o.OWPASS&0xf)<<4
	if o.AUSE {
		cdw10 |= 1 << 3
	}
	if o.OIPBP {
		cdw10 |= 1 << 8
	}
	if o.NoDealloc {
		cdw10 |= 1 << 9
	}
	// The command itself only starts the operation, but give a slow
	// controller time to accept it.
	_, err := c.adminExec(spec.Command{Opcode: uint8(spec.AdminSanitize), CDW10: cdw10, CDW11: o.Pattern}, nil, nil, max(c.opts.AdminTimeout, time.Minute), false)
	if err != nil {
		return fmt.Errorf("sanitize action %d: %w", sanact, err)
	}
	return nil
}

// SelfTestResult is one entry of the Device Self-test log.
type SelfTestResult struct {
	Code           uint8  // the test: SelfTestShort, SelfTestExtended, SelfTestVendor
	Result         uint8  // 0 passed, 1 aborted by command, ..., 0xf unused entry
	Segment        uint8  // the failing segment, when Result says one failed
	ValidInfo      uint8  // which of NSID, FLBA, SCT, SC below are valid (bits 0-3)
	PowerOnHours   uint64 // when the test completed
	NSID           uint32
	FailingLBA     uint64
	SCT, SC        uint8
	VendorSpecific uint16
}

// SelfTestLog is the Device Self-test log page (20 results, newest first).
type SelfTestLog struct {
	Current    uint8 // the test in progress (0: none)
	Completion uint8 // its percent done
	Results    []SelfTestResult
}

// SelfTestLogSize is the size of the Device Self-test log page.
const SelfTestLogSize = 564

// ParseSelfTestLog parses a Device Self-test log page (NVMe Base 2.0,
// Figure 208). Entries whose result is 0xf (unused) are left out.
func ParseSelfTestLog(b []byte) (*SelfTestLog, error) {
	if len(b) < SelfTestLogSize {
		return nil, fmt.Errorf("device self-test log: %d bytes, want %d", len(b), SelfTestLogSize)
	}
	le := binary.LittleEndian
	l := &SelfTestLog{Current: b[0] & 0xf, Completion: b[1] & 0x7f, Results: []SelfTestResult{}}
	for i := range 20 {
		e := b[4+28*i : 4+28*(i+1)]
		r := SelfTestResult{
			Result: e[0] & 0xf, Code: e[0] >> 4, Segment: e[1], ValidInfo: e[2] & 0xf,
			PowerOnHours: le.Uint64(e[4:]), NSID: le.Uint32(e[12:]), FailingLBA: le.Uint64(e[16:]),
			SCT: e[24] & 0x7, SC: e[25], VendorSpecific: le.Uint16(e[26:]),
		}
		if r.Result == 0xf {
			continue
		}
		l.Results = append(l.Results, r)
	}
	return l, nil
}

// SelfTestLog reads and parses the Device Self-test log. Any goroutine.
func (c *Controller) SelfTestLog() (*SelfTestLog, error) {
	b := make([]byte, SelfTestLogSize)
	if err := c.GetLogPage(spec.LogDeviceSelfTest, 0, 0, false, 0, b); err != nil {
		return nil, err
	}
	return ParseSelfTestLog(b)
}

// SanitizeStatus is the Sanitize Status log page.
type SanitizeStatus struct {
	Progress uint16 // SPROG: fraction done, of 65536 (65535 when not in progress)
	Status   uint16 // SSTAT: bits 2:0 state (0 never, 1 succeeded, 2 in progress, 3 failed, 4 succeeded without deallocation)
	CDW10    uint32 // SCDW10 of the last Sanitize
	// Estimated seconds for each action (0xffffffff: no estimate).
	EstOverwrite, EstBlockErase, EstCryptoErase                       uint32
	EstOverwriteNoDealloc, EstBlockEraseNoDealloc, EstCryptoNoDealloc uint32
}

// SanitizeStatusLogSize is the size of the Sanitize Status log page.
const SanitizeStatusLogSize = 512

// ParseSanitizeStatus parses a Sanitize Status log page (NVMe Base 2.0,
// Figure 287).
func ParseSanitizeStatus(b []byte) (*SanitizeStatus, error) {
	if len(b) < 32 {
		return nil, fmt.Errorf("sanitize status log: %d bytes, want at least 32", len(b))
	}
	le := binary.LittleEndian
	return &SanitizeStatus{
		Progress: le.Uint16(b[0:]), Status: le.Uint16(b[2:]), CDW10: le.Uint32(b[4:]),
		EstOverwrite: le.Uint32(b[8:]), EstBlockErase: le.Uint32(b[12:]), EstCryptoErase: le.Uint32(b[16:]),
		EstOverwriteNoDealloc: le.Uint32(b[20:]), EstBlockEraseNoDealloc: le.Uint32(b[24:]), EstCryptoNoDealloc: le.Uint32(b[28:]),
	}, nil
}

// SanitizeStatusLog reads and parses the Sanitize Status log. Any
// goroutine.
func (c *Controller) SanitizeStatusLog() (*SanitizeStatus, error) {
	b := make([]byte, SanitizeStatusLogSize)
	if err := c.GetLogPage(spec.LogSanitizeStatus, 0, 0, false, 0, b); err != nil {
		return nil, err
	}
	return ParseSanitizeStatus(b)
}
