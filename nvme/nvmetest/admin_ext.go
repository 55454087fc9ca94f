package nvmetest

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// The admin commands of a management tool that QEMU 7.2's controller
// lacks (it advertises Namespace Management in OACS but implements only
// Namespace Attachment, and has no firmware, self-test or sanitize
// commands), so that nvmectl's verbs have a device to run against on the
// host: Namespace Management (create, delete), Namespace Attachment,
// Firmware Image Download and Commit, Device Self-test, Sanitize, and the
// Device Self-test and Sanitize Status logs. NVMe Base 2.0, 5.22, 5.23,
// 5.11, 5.12, 5.24, 5.16.1.7, 5.16.1.25.
//
// The fake is one controller (CNTLID 1) of a subsystem with room for
// extMaxNamespaces namespaces and extCapacity bytes. A namespace is
// allocated (created, in d.ns) and, separately, attached (active: its
// attached flag; Namespace Attachment is events.go's).

// Status codes of this file's commands.
var (
	stNSInsufficientCap = spec.MakeStatus(spec.SCTCommandSpecific, spec.SCNamespaceInsufficientCapacity)
	stNSIDUnavailable   = spec.MakeStatus(spec.SCTCommandSpecific, spec.SCNamespaceIDUnavailable)
	stInvalidFWSlot     = spec.MakeStatus(spec.SCTCommandSpecific, spec.SCInvalidFirmwareSlot)
	stInvalidFWImage    = spec.MakeStatus(spec.SCTCommandSpecific, spec.SCInvalidFirmwareImage)
	stFWNeedsReset      = spec.MakeStatus(spec.SCTCommandSpecific, spec.SCFirmwareNeedsConventionalReset)
	stSelfTestRunning   = spec.MakeStatus(spec.SCTCommandSpecific, spec.SCSelfTestInProgress)
)

const (
	extMaxNamespaces = 16
	extCapacity      = 256 << 20 // bytes of all namespaces together
	extFWMax         = 1 << 20   // largest firmware image
	extCNTLID        = 1
)

// extState is the device's state for these commands, owned by the device
// goroutine like the rest of device.
type extState struct {
	fwImage  []byte    // downloaded, not committed
	fwSlots  [7]string // revisions committed to slots 2..7 (slot 1 is read only)
	selfTest []byte    // the Device Self-test log page
	sanitize []byte    // the Sanitize Status log page
}

// extOACS is what this file adds to OACS.
const extOACS = spec.OACSFirmware | spec.OACSNamespaceMgmt | spec.OACSDeviceSelfTest

// nn is the highest namespace ID the subsystem may hold (Identify
// Controller NN): room for created namespaces.
func (d *device) nn() uint32 {
	return uint32(max(extMaxNamespaces, len(d.ns)))
}

// adminExt executes the commands of this file; ok is false for any other
// opcode.
func (d *device) adminExt(cmd *spec.Command) (st spec.Status, dw0 uint32, ok bool) {
	switch spec.Opcode(cmd.Opcode) {
	case spec.AdminNamespaceManagement:
		st, dw0 = d.nsManagement(cmd)
	case spec.AdminFirmwareDownload:
		st = d.fwDownload(cmd)
	case spec.AdminFirmwareCommit:
		st = d.fwCommit(cmd)
	case spec.AdminDeviceSelfTest:
		st = d.selfTest(cmd)
	case spec.AdminSanitize:
		st = d.sanitizeCmd(cmd)
	default:
		return 0, 0, false
	}
	return st, dw0, true
}

// logExt fills b with log page lid when this file keeps it and returns
// its size; ok is false for other logs.
func (d *device) logExt(lid uint8, b []byte) (size int, ok bool) {
	switch lid {
	case spec.LogDeviceSelfTest:
		if d.ext.selfTest == nil {
			d.ext.selfTest = make([]byte, 564)
			for i := range 20 {
				d.ext.selfTest[4+28*i] = 0xf // unused entry
			}
		}
		return copy(b, d.ext.selfTest), true
	case spec.LogSanitizeStatus:
		if d.ext.sanitize == nil {
			d.ext.sanitize = make([]byte, 512)
			binary.LittleEndian.PutUint16(d.ext.sanitize[0:], 0xffff) // not in progress
			for i := 8; i < 32; i += 4 {
				binary.LittleEndian.PutUint32(d.ext.sanitize[i:], 0xffffffff) // no estimates
			}
		}
		return copy(b, d.ext.sanitize), true
	}
	return 0, false
}

func (d *device) usedBytes() uint64 {
	var n uint64
	for _, ns := range d.ns {
		n += ns.capBytes
	}
	return n
}

func (d *device) nsManagement(cmd *spec.Command) (spec.Status, uint32) {
	switch cmd.CDW10 & 0xf {
	case 0: // create
		b := make([]byte, spec.IdentifySize)
		if st := d.x.start(d.c, cmd, len(b), false); !st.Success() {
			return st, 0
		}
		if st := d.x.fromHost(b); !st.Success() {
			return st, 0
		}
		le := binary.LittleEndian
		nsze, ncap, flbas := le.Uint64(b[0:]), le.Uint64(b[8:]), b[0x1a]
		idx := int(flbas&0xf) | int(flbas>>5&3)<<4
		if nsze == 0 || ncap == 0 || ncap > nsze || idx >= 2 || flbas&0x10 != 0 {
			return stInvalidFld, 0 // the fake offers formats 0 (512) and 1 (4096), no metadata
		}
		bs := uint64(512) << (3 * idx)
		if nsze > extCapacity/bs || d.usedBytes()+nsze*bs > extCapacity {
			return stNSInsufficientCap, 0
		}
		id := uint32(0)
		for n := uint32(1); n <= d.nn(); n++ {
			if d.allocated(n) == nil {
				id = n
				break
			}
		}
		if id == 0 {
			return stNSIDUnavailable, 0
		}
		ns := newNamespace(id, NSConfig{Blocks: nsze, BlockSize: int(bs), Detached: true})
		d.ns = append(d.ns, ns)
		slices.SortFunc(d.ns, func(a, b *namespace) int { return int(a.id) - int(b.id) })
		return stOK, id
	case 1: // delete
		if cmd.NSID == spec.NSIDAll {
			for _, ns := range d.ns {
				d.setAttached(ns.id, false)
			}
			d.ns = nil
			return stOK, 0
		}
		ns := d.allocated(cmd.NSID)
		if ns == nil {
			return stInvalidNS, 0
		}
		d.setAttached(ns.id, false) // the notice, if it was attached
		d.ns = slices.DeleteFunc(d.ns, func(x *namespace) bool { return x == ns })
		return stOK, 0
	}
	return stInvalidFld, 0
}

func (d *device) fwDownload(cmd *spec.Command) spec.Status {
	n := (int(cmd.CDW10) + 1) * 4
	off := int(cmd.CDW11) * 4
	if off != len(d.ext.fwImage) || off+n > extFWMax {
		return stInvalidFld // pieces in order, without gaps or overlaps
	}
	buf := make([]byte, n)
	if st := d.x.start(d.c, cmd, n, false); !st.Success() {
		return st
	}
	if st := d.x.fromHost(buf); !st.Success() {
		return st
	}
	d.ext.fwImage = append(d.ext.fwImage, buf...)
	return stOK
}

func (d *device) fwCommit(cmd *spec.Command) spec.Status {
	slot := int(cmd.CDW10 & 7)
	ca := cmd.CDW10 >> 3 & 7
	if slot == 0 {
		slot = 2
	}
	switch {
	case ca > 3:
		return stInvalidFld // no boot partitions
	case slot == 1 && ca != 2:
		return stInvalidFWSlot // slot 1 is read only (FRMW bit 0)
	case ca == 2:
		return stFWNeedsReset
	}
	img := d.ext.fwImage
	if len(img) < 8 {
		return stInvalidFWImage
	}
	// The fake's image format: the revision in its first 8 bytes.
	d.ext.fwSlots[slot-2] = string(img[:8])
	d.ext.fwImage = nil
	if ca == 0 {
		return stOK
	}
	return stFWNeedsReset
}

func (d *device) selfTest(cmd *spec.Command) spec.Status {
	code := uint8(cmd.CDW10 & 0xf)
	switch code {
	case 0xf: // abort: nothing runs, the tests finish at once
		return stOK
	case 1, 2:
	default:
		return stInvalidFld
	}
	if cmd.NSID != 0 && cmd.NSID != spec.NSIDAll && d.namespace(cmd.NSID) == nil {
		return stInvalidNS
	}
	d.logExt(spec.LogDeviceSelfTest, d.scratch) // make the page
	l := d.ext.selfTest
	if l[0]&0xf != 0 {
		return stSelfTestRunning
	}
	// The test completes at once and passes: shift the results down and
	// put this one first.
	copy(l[4+28:], l[4:4+28*19])
	e := l[4 : 4+28]
	clear(e)
	e[0] = code << 4 // result 0: completed without error
	e[2] = 1         // NSID valid
	binary.LittleEndian.PutUint64(e[4:], uint64(time.Duration(now()-d.powerOn)/time.Hour))
	binary.LittleEndian.PutUint32(e[12:], cmd.NSID)
	return stOK
}

func (d *device) sanitizeCmd(cmd *spec.Command) spec.Status {
	act := cmd.CDW10 & 7
	d.logExt(spec.LogSanitizeStatus, d.scratch) // make the page
	l := d.ext.sanitize
	le := binary.LittleEndian
	switch act {
	case 1: // exit failure mode
		le.PutUint16(l[2:], 0)
		return stOK
	case 2, 3, 4:
	default:
		return stInvalidFld
	}
	// Every namespace's data is gone at once; the log says it succeeded.
	for _, ns := range d.ns {
		ns.format(ns.fmtIdx)
	}
	le.PutUint16(l[0:], 0xffff)
	le.PutUint16(l[2:], 1|1<<3) // completed successfully, one completed pass
	le.PutUint32(l[4:], cmd.CDW10)
	return stOK
}
