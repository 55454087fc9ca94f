package nvmetest

import (
	"encoding/binary"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

var (
	stCQInvalid     = spec.MakeStatus(spec.SCTCommandSpecific, spec.SCCompletionQueueInvalid)
	stQIDInvalid    = spec.MakeStatus(spec.SCTCommandSpecific, spec.SCInvalidQueueIdentifier)
	stQSizeInvalid  = spec.MakeStatus(spec.SCTCommandSpecific, spec.SCInvalidQueueSize)
	stQDeletion     = spec.MakeStatus(spec.SCTCommandSpecific, spec.SCInvalidQueueDeletion)
	stAERLimit      = spec.MakeStatus(spec.SCTCommandSpecific, spec.SCAsyncEventLimitExceeded)
	stInvalidLog    = spec.MakeStatus(spec.SCTCommandSpecific, spec.SCInvalidLogPage)
	stInvalidFormat = spec.MakeStatus(spec.SCTCommandSpecific, spec.SCInvalidFormat)
	stNotSaveable   = spec.MakeStatus(spec.SCTCommandSpecific, spec.SCFeatureNotSaveable)
)

// admin executes an admin command (NVMe Base 2.0, 5). post is false for a
// command the device keeps (Asynchronous Event Request).
func (d *device) admin(q *sqState, cmd *spec.Command) (st spec.Status, dw0 uint32, post bool) {
	if cmd.Flags&(spec.FlagFuseMask|spec.FlagPSDTMask) != 0 {
		return stInvalidFld, 0, true // admin commands use PRPs and are never fused
	}
	switch spec.Opcode(cmd.Opcode) {
	case spec.AdminIdentify:
		return d.identify(cmd), 0, true
	case spec.AdminGetFeatures:
		st, dw0 = d.getFeature(cmd)
		return st, dw0, true
	case spec.AdminSetFeatures:
		st, dw0 = d.setFeature(cmd)
		return st, dw0, true
	case spec.AdminGetLogPage:
		return d.getLog(cmd), 0, true
	case spec.AdminCreateIOCQ:
		return d.createCQ(cmd), 0, true
	case spec.AdminCreateIOSQ:
		return d.createSQ(cmd), 0, true
	case spec.AdminDeleteIOSQ:
		return d.deleteSQ(cmd), 0, true
	case spec.AdminDeleteIOCQ:
		return d.deleteCQ(cmd), 0, true
	case spec.AdminAbort:
		return stOK, d.abort(cmd), true
	case spec.AdminAsyncEventRequest:
		if len(d.aers) >= aerLimit {
			d.hostError("more than AERL+1 (%d) Asynchronous Event Requests outstanding", aerLimit)
			return stAERLimit, 0, true
		}
		d.aers = append(d.aers, cmd.CID)
		d.deliverEvents()
		return stOK, 0, false
	case spec.AdminNamespaceAttachment:
		return d.namespaceAttachment(cmd), 0, true
	case spec.AdminFormatNVM:
		return d.formatNVM(cmd), 0, true
	case spec.AdminDoorbellBufferConfig:
		return d.dbbufConfig(cmd), 0, true // dbbuf.go
	}
	if st, dw0, ok := d.adminExt(cmd); ok { // admin_ext.go
		return st, dw0, true
	}
	return stInvalidOp, 0, true
}

// sendData transfers b to the host through cmd's data pointer.
func (d *device) sendData(cmd *spec.Command, b []byte) spec.Status {
	if st := d.x.start(d.c, cmd, len(b), false); !st.Success() {
		return st
	}
	return d.x.toHost(b)
}

func putString(b []byte, s string) {
	n := copy(b, s)
	for i := n; i < len(b); i++ {
		b[i] = ' '
	}
}

func (d *device) identify(cmd *spec.Command) spec.Status {
	b := d.scratch[:spec.IdentifySize]
	clear(b)
	switch uint8(cmd.CDW10) {
	case spec.CNSController:
		d.identifyController(b)
	case spec.CNSNamespace:
		ns := d.allocated(cmd.NSID)
		if ns == nil {
			return stInvalidNS
		}
		if ns.attached { // an inactive NSID reads as zeros
			d.identifyNamespace(ns, b)
		}
	case spec.CNSActiveNamespaces:
		if cmd.NSID >= 0xfffffffe {
			return stInvalidNS
		}
		n := 0
		for _, ns := range d.ns {
			if ns.attached && ns.id > cmd.NSID && n < spec.MaxNamespaceListEntries {
				binary.LittleEndian.PutUint32(b[4*n:], ns.id)
				n++
			}
		}
	case spec.CNSNamespaceDescriptors:
		ns := d.namespace(cmd.NSID)
		if ns == nil {
			return stInvalidNS
		}
		off := 0
		put := func(typ uint8, id []byte) {
			b[off], b[off+1] = typ, uint8(len(id))
			copy(b[off+4:], id)
			off += 4 + len(id)
		}
		eui, nguid, uuid := NamespaceIDs(d.c.cfg.Serial, ns.id)
		put(spec.NIDTEUI64, eui[:])
		put(spec.NIDTNGUID, nguid[:])
		put(spec.NIDTUUID, uuid[:])
		put(spec.NIDTCSI, []byte{spec.CSINVM})
	default:
		return stInvalidFld
	}
	return d.sendData(cmd, b)
}

// NamespaceIDs returns the EUI-64, NGUID and UUID the fake reports for
// namespace nsid of a controller with the given serial number.
func NamespaceIDs(serial string, nsid uint32) (eui64 [8]byte, nguid, uuid [16]byte) {
	h := uint64(14695981039346656037) // FNV-1a of the serial
	for i := 0; i < len(serial); i++ {
		h ^= uint64(serial[i])
		h *= 1099511628211
	}
	eui64 = [8]byte{0x02, 0x00, 0x5e, byte(h >> 8), byte(h), 0, byte(nsid >> 8), byte(nsid)}
	binary.BigEndian.PutUint64(nguid[:], h)
	binary.BigEndian.PutUint64(nguid[8:], uint64(nsid))
	binary.BigEndian.PutUint64(uuid[:], h^0x5a5a5a5a5a5a5a5a)
	binary.BigEndian.PutUint64(uuid[8:], uint64(nsid)|0x8000_0000_0000_0000)
	uuid[6] = uuid[6]&0x0f | 0x40 // version 4
	return
}

func (d *device) identifyController(b []byte) {
	le := binary.LittleEndian
	cfg := &d.c.cfg
	le.PutUint16(b[0x00:], 0x1b36) // VID
	le.PutUint16(b[0x02:], 0x1af4) // SSVID
	putString(b[0x04:0x18], cfg.Serial)
	putString(b[0x18:0x40], cfg.Model)
	putString(b[0x40:0x48], cfg.Firmware)
	b[0x48] = 6 // RAB
	if cfg.MDTS > 0 {
		b[0x4d] = uint8(cfg.MDTS)
	}
	le.PutUint16(b[0x4e:], cntlid)
	le.PutUint32(b[0x50:], uint32(spec.VS1_4))
	le.PutUint32(b[0x5c:], 1<<8) // OAES: namespace attribute notices
	b[0x6f] = spec.CtrlTypeIO
	le.PutUint16(b[0x100:], spec.OACSFormatNVM|extOACS|d.dbbufOACS())
	b[0x102] = 3            // ACL
	b[0x103] = aerLimit - 1 // AERL
	b[0x104] = 0x3          // FRMW: slot 1 read only, one slot
	b[0x105] = 1 << 1       // LPA: commands supported and effects log
	if !cfg.NoLogOffsets {
		b[0x105] |= lpaExtendedData
	}
	b[0x106] = errLogEntries - 1
	le.PutUint16(b[0x10a:], 343) // WCTEMP
	le.PutUint16(b[0x10c:], 353) // CCTEMP
	var total uint64
	for _, ns := range d.ns {
		total += ns.capBytes
	}
	le.PutUint64(b[0x118:], total)  // TNVMCAP
	b[0x200] = 0x66                 // SQES
	b[0x201] = 0x44                 // CQES
	le.PutUint32(b[0x204:], d.nn()) // admin_ext.go: room for created namespaces
	le.PutUint16(b[0x208:], d.c.oncs)
	if cfg.VWC {
		b[0x20d] = 1
	}
	if cfg.SGL {
		le.PutUint32(b[0x218:], 1) // SGLs supported, no alignment requirement
	}
	copy(b[0x300:0x400], "nqn.2024-01.io.github.gonvme:nvmetest:"+cfg.Serial)
	le.PutUint16(b[0x800:], 2500) // power state 0: 25 W
	if cfg.IdentifyController != nil {
		cfg.IdentifyController(b)
	}
}

func (d *device) identifyNamespace(ns *namespace, b []byte) {
	le := binary.LittleEndian
	le.PutUint64(b[0x00:], ns.blocks)
	le.PutUint64(b[0x08:], ns.blocks)
	le.PutUint64(b[0x10:], ns.blocks)
	b[0x19] = uint8(len(ns.formats) - 1)
	b[0x1a] = uint8(ns.fmtIdx&0xf) | uint8(ns.fmtIdx>>4)<<5
	b[0x21] = 0x09 // DLFEAT: deallocated blocks read zeros; Write Zeroes may deallocate
	le.PutUint16(b[0x2e:], ns.noiob)
	le.PutUint64(b[0x30:], ns.capBytes) // NVMCAP
	eui, nguid, _ := NamespaceIDs(d.c.cfg.Serial, ns.id)
	copy(b[0x68:], nguid[:])
	copy(b[0x78:], eui[:])
	for i, lbads := range ns.formats {
		b[0x80+4*i+2] = lbads
	}
	if d.c.cfg.IdentifyNamespace != nil {
		d.c.cfg.IdentifyNamespace(ns.id, b)
	}
}

func (d *device) featureSupported(fid uint8) bool {
	switch fid {
	case spec.FeatureArbitration, spec.FeaturePowerManagement, spec.FeatureTemperatureThreshold,
		spec.FeatureErrorRecovery, spec.FeatureNumberOfQueues, spec.FeatureInterruptCoalescing,
		spec.FeatureInterruptVectorConfig, spec.FeatureWriteAtomicity, spec.FeatureAsyncEventConfig:
		return true
	case spec.FeatureVolatileWriteCache:
		return d.c.cfg.VWC
	}
	return false
}

func (d *device) ioQueuesExist() bool {
	for _, id := range d.live {
		if id != 0 {
			return true
		}
	}
	return false
}

func (d *device) getFeature(cmd *spec.Command) (spec.Status, uint32) {
	fid, sel := uint8(cmd.CDW10), uint8(cmd.CDW10>>spec.SelShift)&7
	if !d.featureSupported(fid) || sel > spec.SelSupportedCap {
		return stInvalidFld, 0
	}
	if sel == spec.SelSupportedCap {
		return stOK, spec.FeatureCapChangeable
	}
	if fid == spec.FeatureNumberOfQueues {
		n := d.c.cfg.MaxQueuePairs
		if sel == spec.SelCurrent {
			return stOK, uint32(d.grantCQ-1)<<16 | uint32(d.grantSQ-1)
		}
		return stOK, uint32(n-1)<<16 | uint32(n-1)
	}
	if sel != spec.SelCurrent {
		save := d.features
		d.defaultFeatures()
		v := d.features[fid]
		d.features = save
		return stOK, v
	}
	return stOK, d.features[fid]
}

func (d *device) setFeature(cmd *spec.Command) (spec.Status, uint32) {
	fid := uint8(cmd.CDW10)
	if !d.featureSupported(fid) {
		return stInvalidFld, 0
	}
	if cmd.CDW10&spec.SetFeaturesSave != 0 {
		return stNotSaveable, 0
	}
	if fid == spec.FeatureNumberOfQueues {
		nsqr, ncqr := cmd.CDW11&0xffff, cmd.CDW11>>16
		if nsqr == 0xffff || ncqr == 0xffff {
			return stInvalidFld, 0
		}
		if d.ioQueuesExist() {
			return stSequence, 0
		}
		d.grantSQ = min(int(nsqr)+1, d.c.cfg.MaxQueuePairs)
		d.grantCQ = min(int(ncqr)+1, d.c.cfg.MaxQueuePairs)
		return stOK, uint32(d.grantCQ-1)<<16 | uint32(d.grantSQ-1)
	}
	d.features[fid] = cmd.CDW11
	return stOK, 0
}

// lpaExtendedData is LPA bit 2: Get Log Page takes NUMDU and an offset.
const lpaExtendedData = 1 << 2

// getLog returns a log page (NVMe Base 2.0, 5.16), honouring NUMD and the
// byte offset (with LPA bit 2). Reading with Retain Asynchronous Event
// clear unmasks the events the log clears.
func (d *device) getLog(cmd *spec.Command) spec.Status {
	lid := uint8(cmd.CDW10)
	rae := cmd.CDW10&(1<<15) != 0
	numd := uint64(cmd.CDW10>>16) | uint64(cmd.CDW11&0xffff)<<16
	n := int((numd + 1) * 4)
	off := uint64(cmd.CDW13)<<32 | uint64(cmd.CDW12)
	if d.c.cfg.NoLogOffsets && (off != 0 || cmd.CDW11&0xffff != 0) {
		d.hostError("get log page %#x: offset %d / NUMDU %#x without LPA bit 2 (extended data)", lid, off, cmd.CDW11&0xffff)
		return stInvalidFld
	}
	if off&3 != 0 {
		return stInvalidFld
	}
	b := d.scratch
	clear(b)
	var size int
	le := binary.LittleEndian
	switch lid {
	case spec.LogErrorInformation:
		size = errLogEntries * spec.ErrorLogEntrySize
		for i := 0; i < errLogEntries && uint64(i) < d.errCount; i++ {
			e := &d.errLog[(d.errCount-uint64(i))%errLogEntries]
			p := b[i*spec.ErrorLogEntrySize:]
			le.PutUint64(p[0x00:], e.count)
			le.PutUint16(p[0x08:], e.sqid)
			le.PutUint16(p[0x0a:], e.cid)
			le.PutUint16(p[0x0c:], e.status.CQEField(false))
			le.PutUint16(p[0x0e:], 0xffff) // parameter error location: not specific
			le.PutUint64(p[0x10:], e.lba)
			le.PutUint32(p[0x18:], e.nsid)
		}
	case spec.LogSMART:
		size = spec.SMARTLogSize
		b[0x00] = 0
		le.PutUint16(b[0x01:], 313) // composite temperature, kelvin (40 C)
		b[0x03] = 100               // available spare
		b[0x04] = 10                // available spare threshold
		units := func(bytes uint64) uint64 { return (bytes/512 + 999) / 1000 }
		le.PutUint64(b[0x20:], units(d.bytesRead))
		le.PutUint64(b[0x30:], units(d.bytesWritten))
		le.PutUint64(b[0x40:], d.reads)
		le.PutUint64(b[0x50:], d.writes)
		le.PutUint64(b[0x70:], 1) // power cycles
		le.PutUint64(b[0x80:], uint64(time.Duration(now()-d.powerOn)/time.Hour))
		le.PutUint64(b[0xa0:], d.mediaErrors)
		le.PutUint64(b[0xb0:], d.errCount)
		le.PutUint16(b[0xc8:], 313) // temperature sensor 1
	case spec.LogChangedNamespaces:
		size = 4096
		d.changedNamespaceLog(b)
		if !rae {
			d.changedNS = d.changedNS[:0]
		}
	case spec.LogFirmwareSlot:
		size = spec.FirmwareSlotLogSize
		b[0] = 1 // AFI: slot 1 active
		putString(b[8:16], d.c.cfg.Firmware)
	case spec.LogCommandEffects:
		size = spec.CommandEffectsLogSize
		for _, op := range []spec.Opcode{spec.AdminDeleteIOSQ, spec.AdminCreateIOSQ, spec.AdminGetLogPage,
			spec.AdminDeleteIOCQ, spec.AdminCreateIOCQ, spec.AdminIdentify, spec.AdminAbort,
			spec.AdminSetFeatures, spec.AdminGetFeatures, spec.AdminAsyncEventRequest} {
			le.PutUint32(b[4*int(op):], 1)
		}
		le.PutUint32(b[4*int(spec.AdminFormatNVM):], 1|1<<1|1<<2|1<<3|1<<17) // LBCC NCC NIC, one at a time per subsystem
		io := b[1024:]
		for _, op := range []spec.Opcode{spec.IOFlush, spec.IORead} {
			le.PutUint32(io[4*int(op):], 1)
		}
		le.PutUint32(io[4*int(spec.IOWrite):], 1|1<<1)
		for _, x := range []struct {
			op   spec.Opcode
			bit  uint16
			lbcc bool
		}{
			{spec.IOCompare, spec.ONCSCompare, false},
			{spec.IOWriteUncorrectable, spec.ONCSWriteUncorrectable, true},
			{spec.IODatasetManagement, spec.ONCSDatasetManagement, true},
			{spec.IOWriteZeroes, spec.ONCSWriteZeroes, true},
			{spec.IOVerify, spec.ONCSVerify, false},
		} {
			if d.c.oncs&x.bit != 0 {
				v := uint32(1)
				if x.lbcc {
					v |= 1 << 1
				}
				le.PutUint32(io[4*int(x.op):], v)
			}
		}
	default:
		var ok bool
		if size, ok = d.logExt(lid, b); !ok { // admin_ext.go
			return stInvalidLog
		}
	}
	if off > uint64(size) {
		return stInvalidFld
	}
	if !rae {
		defer d.logRead(lid)
	}
	if n > len(d.scratch) {
		// Longer than any log the fake keeps: send it in pieces of
		// zeros after the log's end.
		if st := d.x.start(d.c, cmd, n, false); !st.Success() {
			return st
		}
		src := b[off:size]
		for {
			seg, st := d.x.next()
			if !st.Success() || seg == nil {
				return st
			}
			k := copy(seg, src)
			clear(seg[k:])
			src = src[k:]
		}
	}
	// Shift the window [off, off+n) to the start of the buffer; what lies
	// past the log's end reads as zeros.
	copy(b, b[off:size])
	clear(b[uint64(size)-off:])
	return d.sendData(cmd, b[:n])
}

func (d *device) queueArgs(cmd *spec.Command, grant int) (qid uint16, size uint32, st spec.Status) {
	qid = uint16(cmd.CDW10)
	size = cmd.CDW10>>16 + 1
	switch {
	case qid == 0 || int(qid) > grant || int(qid) >= len(d.sqs):
		return 0, 0, stQIDInvalid
	case size < 2 || size > uint32(d.c.cfg.MQES)+1:
		return 0, 0, stQSizeInvalid
	case cmd.CDW11&spec.CreateQPhysContig == 0:
		return 0, 0, stInvalidFld // CAP.CQR: contiguous queues only
	case cmd.PRP1&(pageSize-1) != 0:
		return 0, 0, stPRPOffset
	}
	return qid, size, stOK
}

func (d *device) createCQ(cmd *spec.Command) spec.Status {
	qid, size, st := d.queueArgs(cmd, d.grantCQ)
	if !st.Success() {
		return st
	}
	if d.cqs[qid].live {
		return stQIDInvalid
	}
	if d.lastCC.IOCQES() != spec.CQESLog2 {
		return stQSizeInvalid
	}
	ien, iv, st := d.createCQIRQ(cmd)
	if !st.Success() {
		return st
	}
	if _, ok := d.c.translate(cmd.PRP1, int(size)*spec.CompletionSize); !ok {
		return stXferErr
	}
	d.cqs[qid].reset(qid, size, cmd.PRP1, d.c.cfg.DSTRD)
	d.cqs[qid].ien, d.cqs[qid].iv = ien, iv
	d.claimDoorbell(d.cqs[qid].headR, qid, true)
	return stOK
}

func (d *device) createSQ(cmd *spec.Command) spec.Status {
	qid, size, st := d.queueArgs(cmd, d.grantSQ)
	if !st.Success() {
		return st
	}
	if d.sqs[qid].live {
		return stQIDInvalid
	}
	cqid := uint16(cmd.CDW11 >> spec.CreateSQCQIDShift)
	if cqid == 0 || int(cqid) >= len(d.cqs) || !d.cqs[cqid].live {
		return stCQInvalid
	}
	if d.lastCC.IOSQES() != spec.SQESLog2 {
		return stQSizeInvalid
	}
	if _, ok := d.c.translate(cmd.PRP1, int(size)*spec.CommandSize); !ok {
		return stXferErr
	}
	q := &d.sqs[qid]
	q.reset(qid, size, cmd.PRP1, &d.cqs[cqid], d.c.cfg.DSTRD)
	d.cqs[cqid].nsq++
	d.claimDoorbell(q.tailR, qid, false)
	d.live = append(d.live, qid)
	return stOK
}

func (d *device) deleteSQ(cmd *spec.Command) spec.Status {
	qid := uint16(cmd.CDW10)
	if qid == 0 || int(qid) >= len(d.sqs) || !d.sqs[qid].live {
		return stQIDInvalid
	}
	q := &d.sqs[qid]
	// Commands the device holds for this queue complete as aborted, and
	// those waiting for their latency never run.
	d.cmds.filter(func(p *pendingCmd) bool {
		if p.sq != q {
			return true
		}
		d.post(q.cq, cqEntry{sqHead: uint16(q.head), sqid: qid, cid: p.cmd.CID, status: stSQDeleted})
		return false
	})
	kept := d.held[:0]
	for _, h := range d.held {
		if h.sqid == qid {
			h.e.status = stSQDeleted
			d.post(h.cq, h.e)
			continue
		}
		kept = append(kept, h)
	}
	d.held = kept
	q.live = false
	q.clearCIDs()
	d.c.regs.Write32(q.tailR, doorbellPoison)
	q.cq.nsq--
	for i, id := range d.live {
		if id == qid {
			d.live = append(d.live[:i], d.live[i+1:]...)
			break
		}
	}
	return stOK
}

func (d *device) deleteCQ(cmd *spec.Command) spec.Status {
	qid := uint16(cmd.CDW10)
	if qid == 0 || int(qid) >= len(d.cqs) || !d.cqs[qid].live {
		return stQIDInvalid
	}
	if d.cqs[qid].nsq > 0 {
		return stQDeletion
	}
	d.cqs[qid].live = false
	d.c.regs.Write32(d.cqs[qid].headR, doorbellPoison)
	return stOK
}

// abort looks for the command among those the device holds (NVMe Base
// 2.0, 5.1): found, it completes with Command Abort Requested and dword 0
// bit 0 is clear; otherwise bit 0 is set.
func (d *device) abort(cmd *spec.Command) uint32 {
	sqid, cid := uint16(cmd.CDW10), uint16(cmd.CDW10>>16)
	for i := range d.cmds.h {
		if p := &d.cmds.h[i]; p.sq.id == sqid && p.cmd.CID == cid && p.sq.live && !p.inProgress {
			p := d.cmds.remove(i)
			d.post(p.sq.cq, cqEntry{sqHead: uint16(p.sq.head), sqid: sqid, cid: cid, status: stAbortReq})
			d.c.cnt.abortsFound.Add(1)
			return 0
		}
	}
	for i, h := range d.held {
		if h.sqid == sqid && h.e.cid == cid && h.abortable && h.cq.live {
			d.held = append(d.held[:i], d.held[i+1:]...)
			h.e.status = stAbortReq
			d.post(h.cq, h.e)
			d.c.cnt.abortsFound.Add(1)
			return 0
		}
	}
	d.c.cnt.abortsMiss.Add(1)
	return 1
}

// formatNVM re-formats one namespace or all (NSID 0xffffffff) with the
// LBA format in CDW10, erasing the data (NVM Command Set 1.0, 5.2).
func (d *device) formatNVM(cmd *spec.Command) spec.Status {
	lbaf := int(cmd.CDW10&0xf) | int(cmd.CDW10>>12&3)<<4
	ses := cmd.CDW10 >> 9 & 7
	if ses > 2 || cmd.CDW10>>4&0x1f != 0 { // no metadata, no protection information
		return stInvalidFld
	}
	var targets []*namespace
	if cmd.NSID == spec.NSIDAll {
		targets = d.ns
	} else if ns := d.namespace(cmd.NSID); ns != nil {
		targets = []*namespace{ns}
	} else {
		return stInvalidNS
	}
	for _, ns := range targets {
		if lbaf >= len(ns.formats) {
			return stInvalidFormat
		}
	}
	for _, ns := range targets {
		ns.format(lbaf)
	}
	return stOK
}
