package target

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// adminCommand runs a command of an admin queue on the reader goroutine.
// Data for the host is small (identify, logs) and sent from the heap.
func (c *conn) adminCommand(cmd *spec.Command, icd []byte) error {
	ctrl := c.ctrl
	ctrl.kick()
	op := spec.Opcode(cmd.Opcode)
	bad := func() error { return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0) }
	toHost := func(data []byte) error {
		if st, ok := dataSGL(cmd, len(data), true, icd); !ok {
			return c.respond(cmd.CID, st, 0, 0)
		}
		return c.sendData(cmd.CID, data)
	}
	switch op {
	case spec.AdminIdentify:
		data, ok := c.identify(cmd)
		if !ok {
			return bad()
		}
		return toHost(data)
	case spec.AdminGetLogPage:
		return c.getLogPage(cmd, toHost)
	case spec.AdminKeepAlive:
		return c.respond(cmd.CID, 0, 0, 0)
	case spec.AdminAsyncEventRequest:
		ctrl.mu.Lock()
		if len(ctrl.aers) >= aerLimit || ctrl.discovery {
			ctrl.mu.Unlock()
			return c.respond(cmd.CID, status(spec.SCTCommandSpecific, spec.SCAsyncEventLimitExceeded), 0, 0)
		}
		// Held until an event (Target.Rescan): completed at once if one
		// is waiting.
		ctrl.aers = append(ctrl.aers, cmd.CID)
		ctrl.deliverLocked()
		return nil
	case spec.AdminGetFeatures, spec.AdminSetFeatures:
		return c.features(cmd, op == spec.AdminSetFeatures)
	}
	return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInvalidOpcode), 0, 0)
}

func (c *conn) features(cmd *spec.Command, set bool) error {
	ctrl := c.ctrl
	fid := uint8(cmd.CDW10)
	if set && cmd.CDW10&(1<<31) != 0 {
		return c.respond(cmd.CID, status(spec.SCTCommandSpecific, spec.SCFeatureNotChangeable /* not saveable */), 0, 0)
	}
	switch fid {
	case spec.FeatureNumberOfQueues:
		if ctrl.discovery {
			break
		}
		ctrl.mu.Lock()
		defer ctrl.mu.Unlock()
		if set {
			nsq, ncq := uint16(cmd.CDW11)+1, uint16(cmd.CDW11>>16)+1
			if nsq == 0 || ncq == 0 { // 0xffff+1
				return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
			}
			ctrl.queues = min(nsq, ncq, uint16(c.t.cfg.MaxIOQueues))
		}
		q := uint32(ctrl.queues - 1)
		return c.respond(cmd.CID, 0, q|q<<16, 0)
	case spec.FeatureKeepAlive:
		if set {
			ctrl.setKATO(time.Duration(cmd.CDW11) * time.Millisecond)
			return c.respond(cmd.CID, 0, 0, 0)
		}
		ctrl.mu.Lock()
		kato := ctrl.kato
		ctrl.mu.Unlock()
		return c.respond(cmd.CID, 0, uint32(kato/time.Millisecond), 0)
	case spec.FeatureAsyncEventConfig:
		ctrl.mu.Lock()
		if set {
			ctrl.aen = cmd.CDW11 & (1<<8 | 1<<31) // namespace attribute notices, discovery log changes
		}
		aen := ctrl.aen
		ctrl.mu.Unlock()
		if err := c.respond(cmd.CID, 0, aen, 0); err != nil {
			return err
		}
		ctrl.mu.Lock()
		ctrl.deliverLocked() // a change that waited for the notice to be enabled
		return nil
	}
	return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
}

// getLogPage answers Get Log Page: Error Information (empty), SMART /
// Health (the first backing's), Changed Namespace List, and the
// Discovery log on a discovery controller. NVMe Base 2.0, 5.16.
func (c *conn) getLogPage(cmd *spec.Command, toHost func([]byte) error) error {
	lid := uint8(cmd.CDW10)
	numd := uint64(cmd.CDW10>>16|(cmd.CDW11&0xffff)<<16) + 1
	off := uint64(cmd.CDW12) | uint64(cmd.CDW13)<<32
	n := numd * 4
	if n > 1<<20 || off%4 != 0 {
		return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
	}
	var log []byte
	switch {
	case c.ctrl.discovery && lid == spec.LogDiscovery:
		log = c.t.discoveryLog()
	case c.ctrl.discovery:
		return c.respond(cmd.CID, status(spec.SCTCommandSpecific, spec.SCInvalidLogPage), 0, 0)
	case lid == spec.LogErrorInformation:
		log = make([]byte, 64*64)
	case lid == spec.LogSMART:
		log = make([]byte, 512)
		if err := c.ctrl.sub.parts[0].b.SMARTLog(log); err != nil {
			c.t.logf("nvmf: smart log: %v", err)
			return c.respond(cmd.CID, spec.MakeStatus(spec.SCTGeneric, spec.SCInternalError), 0, 0)
		}
	case lid == spec.LogChangedNamespaces:
		log = c.ctrl.takeChanged(cmd.CDW10&(1<<15) != 0)
	default:
		return c.respond(cmd.CID, status(spec.SCTCommandSpecific, spec.SCInvalidLogPage), 0, 0)
	}
	if off > uint64(len(log)) {
		return c.respond(cmd.CID, status(spec.SCTGeneric, spec.SCInvalidField), 0, 0)
	}
	data := make([]byte, n)
	copy(data, log[off:])
	return toHost(data)
}

// identify returns the Identify data cmd asks for, or false.
func (c *conn) identify(cmd *spec.Command) ([]byte, bool) {
	cns := uint8(cmd.CDW10)
	if cns == spec.CNSController {
		return c.identifyController(), true
	}
	if c.ctrl.discovery {
		return nil, false
	}
	tab := c.ctrl.sub.tab.Load()
	switch cns {
	case spec.CNSNamespace:
		ns := tab.byID[cmd.NSID]
		if ns == nil {
			// An inactive (unallocated) NSID: zeros. NVMe Base 2.0, 5.17.2.1.
			if cmd.NSID == 0 || cmd.NSID == 0xffffffff {
				return nil, false
			}
			return make([]byte, spec.IdentifySize), true
		}
		return ns.idn, true
	case spec.CNSActiveNamespaces:
		if cmd.NSID >= 0xfffffffe {
			return nil, false
		}
		b := make([]byte, spec.IdentifySize)
		i := 0
		for _, id := range tab.ids { // sorted
			if id > cmd.NSID && i < 1024 {
				binary.LittleEndian.PutUint32(b[4*i:], id)
				i++
			}
		}
		return b, true
	case spec.CNSNamespaceDescriptors:
		ns := tab.byID[cmd.NSID]
		if ns == nil {
			return nil, false
		}
		return ns.descrip, true
	}
	return nil, false
}

// nsDescriptors returns the Namespace Identification Descriptor list of
// namespace id: a UUID derived from the subsystem NQN and the NSID, the
// same on every start, so hosts (multipath) recognise the namespace.
func nsDescriptors(subNQN string, id uint32) []byte {
	h := sha256.Sum256(fmt.Appendf(nil, "%s/%d", subNQN, id))
	h[6] = h[6]&0x0f | 0x80 // RFC 9562 version 8 (custom)
	h[8] = h[8]&0x3f | 0x80 // variant
	b := make([]byte, spec.IdentifySize)
	b[0], b[1] = 3, 16 // NIDT UUID, NIDL
	copy(b[4:20], h[:16])
	return b
}

// identifyController builds the Identify Controller data of a fabrics
// I/O (or discovery) controller: the backing's identity, this target's
// limits. NVMe Base 2.0, 5.17.2.1, and the fabrics fields at 1792.
func (c *conn) identifyController() []byte {
	b := make([]byte, spec.IdentifySize)
	le := binary.LittleEndian
	ctrl := c.ctrl
	if ctrl.discovery {
		copy(b[0x004:0x018], fmt.Sprintf("%-20s", "gonvme-discovery"))
		copy(b[0x018:0x040], fmt.Sprintf("%-40s", "gonvme NVMe/TCP discovery"))
		copy(b[0x040:0x048], fmt.Sprintf("%-8s", "1.0"))
		b[0x06f] = spec.CtrlTypeDiscovery
		copy(b[0x300:0x400], fabrics.DiscoveryNQN)
	} else {
		idc := ctrl.sub.idc
		copy(b[0x000:0x004], idc[0x000:0x004]) // VID, SSVID
		copy(b[0x004:0x048], idc[0x004:0x048]) // SN, MN, FR
		copy(b[0x049:0x04c], idc[0x049:0x04c]) // IEEE OUI
		b[0x04c] = 1 << 1                      // CMIC: may have several controllers (hosts)
		b[0x04d] = ctrl.sub.mdts
		b[0x06f] = spec.CtrlTypeIO
		le.PutUint16(b[0x05c:], 1<<8)                      // OAES: namespace attribute notices
		le.PutUint16(b[0x208:], 1<<3|ctrl.sub.oncs&(1<<2)) // ONCS: Write Zeroes, DSM if every backing has it
		if ctrl.sub.vwc {
			b[0x20d] = 1 // VWC: Flush reaches every backing that has one
		}
		le.PutUint32(b[0x204:], ctrl.sub.nn)
		copy(b[0x300:0x400], ctrl.sub.nqn)
		le.PutUint32(b[0x700:], uint32(spec.CommandSize+c.t.cfg.InCapsule)/16) // IOCCSZ
		le.PutUint32(b[0x704:], spec.CompletionSize/16)                        // IORCSZ
		le.PutUint16(b[0x708:], 0)                                             // ICDOFF: data right after the SQE
	}
	le.PutUint16(b[0x04e:], ctrl.id)
	le.PutUint32(b[0x050:], vsVersion)
	b[0x103] = aerLimit - 1                                  // AERL
	b[0x105] = 1 << 2                                        // LPA: extended data for Get Log Page
	le.PutUint16(b[0x140:], uint16(10*time.Second/kasUnits)) // KAS
	b[0x200], b[0x201] = 0x66, 0x44                          // SQES, CQES
	le.PutUint16(b[0x202:], mqes+1)                          // MAXCMD
	le.PutUint32(b[0x218:], 1|spec.SGLSAddressAsOffset)      // SGLS: SGLs, offsets in capsules
	b[0x70a] = 0                                             // FCATT: dynamic controller model
	b[0x70b] = 1                                             // MSDBD
	return b
}

// discoveryLog returns the Discovery Log Page: one entry per subsystem
// and advertised address. NVMe Base 2.0, 5.16.1.23.
func (t *Target) discoveryLog() []byte {
	type ent struct {
		nqn  string
		addr Address
	}
	var es []ent
	for nqn := range t.subs {
		for _, a := range t.cfg.Advertise {
			es = append(es, ent{nqn, a})
		}
	}
	for i := 1; i < len(es); i++ { // stable order for hosts and tests
		for j := i; j > 0 && es[j-1].nqn > es[j].nqn; j-- {
			es[j-1], es[j] = es[j], es[j-1]
		}
	}
	b := make([]byte, (1+len(es))*fabrics.DiscoveryLogEntrySize)
	h := fabrics.DiscoveryLogHeader{GenCtr: 1, NumRec: uint64(len(es))}
	h.MarshalTo(b)
	for i, e := range es {
		fam := uint8(fabrics.AdrFamIPv4)
		if isIPv6(e.addr.Host) {
			fam = fabrics.AdrFamIPv6
		}
		d := fabrics.DiscoveryLogEntry{TRType: fabrics.TRTypeTCP, AdrFam: fam, SubType: fabrics.SubTypeNVM,
			TReq: fabrics.TReqNotSpecified | fabrics.TReqDisableSQFlowAllow, PortID: uint16(i + 1), CNTLID: fabrics.CNTLIDDynamic, ASQSZ: adminMQES + 1}
		d.SetStrings(e.addr.Port, e.addr.Host, e.nqn)
		d.MarshalTo(b[(i+1)*fabrics.DiscoveryLogEntrySize:])
	}
	return b
}

func isIPv6(h string) bool {
	for i := 0; i < len(h); i++ {
		if h[i] == ':' {
			return true
		}
	}
	return false
}
