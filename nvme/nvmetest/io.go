package nvmetest

import (
	"encoding/binary"
	"math/bits"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// namespace is one namespace's geometry and its storage in RAM.
type namespace struct {
	id       uint32
	attached bool
	noiob    uint16
	capBytes uint64
	formats  []uint8 // LBADS of each LBA format
	fmtIdx   int
	bs       int
	blocks   uint64
	data     []byte
	bad      []uint64 // blocks marked by Write Uncorrectable
	nbad     int
}

func newNamespace(id uint32, nc NSConfig) *namespace {
	ns := &namespace{id: id, noiob: nc.NOIOB, capBytes: nc.Blocks * uint64(nc.BlockSize), attached: !nc.Detached}
	ns.formats = []uint8{9, 12}
	lbads := uint8(bits.TrailingZeros(uint(nc.BlockSize)))
	switch lbads {
	case 9:
		ns.fmtIdx = 0
	case 12:
		ns.fmtIdx = 1
	default:
		ns.formats = append(ns.formats, lbads)
		ns.fmtIdx = 2
	}
	ns.format(ns.fmtIdx)
	return ns
}

// format switches to LBA format i and erases everything.
func (ns *namespace) format(i int) {
	ns.fmtIdx = i
	ns.bs = 1 << ns.formats[i]
	ns.blocks = ns.capBytes / uint64(ns.bs)
	ns.data = make([]byte, ns.blocks*uint64(ns.bs))
	ns.bad = make([]uint64, (ns.blocks+63)/64)
	ns.nbad = 0
}

func (ns *namespace) inRange(slba, nlb uint64) bool {
	return slba < ns.blocks && nlb <= ns.blocks-slba
}

func (ns *namespace) bytes(slba, nlb uint64) []byte {
	bs := uint64(ns.bs)
	return ns.data[slba*bs : (slba+nlb)*bs]
}

// anyBad reports whether a block in the range is marked uncorrectable.
func (ns *namespace) anyBad(slba, nlb uint64) bool {
	if ns.nbad == 0 {
		return false
	}
	for b := slba; b < slba+nlb; b++ {
		if ns.bad[b/64]&(1<<(b%64)) != 0 {
			return true
		}
	}
	return false
}

func (ns *namespace) mark(slba, nlb uint64, bad bool) {
	if !bad && ns.nbad == 0 {
		return
	}
	for b := slba; b < slba+nlb; b++ {
		w, m := &ns.bad[b/64], uint64(1)<<(b%64)
		switch {
		case bad && *w&m == 0:
			*w |= m
			ns.nbad++
		case !bad && *w&m != 0:
			*w &^= m
			ns.nbad--
		}
	}
}

// namespace returns active (attached) namespace nsid, or nil.
func (d *device) namespace(nsid uint32) *namespace {
	if ns := d.allocated(nsid); ns != nil && ns.attached {
		return ns
	}
	return nil
}

// allocated returns namespace nsid, attached or not, or nil. Namespaces
// are created and deleted at run time (admin_ext.go), so their IDs need
// not be 1..n; d.ns is kept sorted by ID.
func (d *device) allocated(nsid uint32) *namespace {
	if nsid != 0 && uint64(nsid) <= uint64(len(d.ns)) && d.ns[nsid-1].id == nsid {
		return d.ns[nsid-1]
	}
	for _, ns := range d.ns {
		if ns.id == nsid {
			return ns
		}
	}
	return nil
}

// io executes an NVM command set I/O command (NVM Command Set 1.0, 3).
func (d *device) io(cmd *spec.Command) (spec.Status, uint32) {
	op := spec.Opcode(cmd.Opcode)
	if cmd.Flags&spec.FlagFuseMask != 0 {
		return stInvalidFld, 0
	}
	var need uint16
	switch op {
	case spec.IOFlush, spec.IORead, spec.IOWrite:
	case spec.IOCompare:
		need = spec.ONCSCompare
	case spec.IOWriteUncorrectable:
		need = spec.ONCSWriteUncorrectable
	case spec.IODatasetManagement:
		need = spec.ONCSDatasetManagement
	case spec.IOWriteZeroes:
		need = spec.ONCSWriteZeroes
	case spec.IOVerify:
		need = spec.ONCSVerify
	default:
		return stInvalidOp, 0
	}
	if need != 0 && d.c.oncs&need == 0 {
		return stInvalidOp, 0
	}
	if op == spec.IOFlush && cmd.NSID == spec.NSIDAll {
		return stOK, 0
	}
	ns := d.namespace(cmd.NSID)
	if ns == nil {
		return stInvalidNS, 0
	}
	if cmd.CDW12&spec.IOFUA != 0 {
		d.c.cnt.fua.Add(1)
	}
	slba := uint64(cmd.CDW11)<<32 | uint64(cmd.CDW10)
	nlb := uint64(cmd.CDW12&spec.IONLBMask) + 1
	switch op {
	case spec.IOFlush:
		return stOK, 0
	case spec.IODatasetManagement:
		return d.dsmCmd(ns, cmd), 0
	}
	if !ns.inRange(slba, nlb) {
		return stLBARange, 0
	}
	switch op {
	case spec.IORead, spec.IOWrite, spec.IOCompare:
		n := int(nlb) * ns.bs
		if n > d.c.maxXfer {
			return stInvalidFld, 0
		}
		if st := d.x.start(d.c, cmd, n, d.c.cfg.SGL); !st.Success() {
			return st, 0
		}
		blocks := ns.bytes(slba, nlb)
		switch op {
		case spec.IORead:
			if ns.anyBad(slba, nlb) {
				return stUnrecovered, 0
			}
			d.reads++
			d.bytesRead += uint64(n)
			return d.x.toHost(blocks), 0
		case spec.IOWrite:
			d.writes++
			d.bytesWritten += uint64(n)
			st := d.x.fromHost(blocks)
			if st.Success() {
				ns.mark(slba, nlb, false)
			}
			return st, 0
		default:
			if ns.anyBad(slba, nlb) {
				return stUnrecovered, 0
			}
			return d.x.compare(blocks), 0
		}
	case spec.IOWriteZeroes:
		clear(ns.bytes(slba, nlb))
		ns.mark(slba, nlb, false)
		return stOK, 0
	case spec.IOWriteUncorrectable:
		ns.mark(slba, nlb, true)
		return stOK, 0
	default: // Verify
		if ns.anyBad(slba, nlb) {
			return stUnrecovered, 0
		}
		return stOK, 0
	}
}

// dsmCmd executes Dataset Management: deallocated ranges read back as
// zeros (DLFEAT 001b).
func (d *device) dsmCmd(ns *namespace, cmd *spec.Command) spec.Status {
	nr := int(cmd.CDW10&0xff) + 1
	buf := d.dsm[:nr*16]
	if st := d.x.start(d.c, cmd, len(buf), d.c.cfg.SGL); !st.Success() {
		return st
	}
	if st := d.x.fromHost(buf); !st.Success() {
		return st
	}
	if cmd.CDW11&spec.DSMDeallocate == 0 {
		return stOK // hints only
	}
	for i := 0; i < nr; i++ {
		r := buf[i*16:]
		nlb := uint64(binary.LittleEndian.Uint32(r[4:]))
		slba := binary.LittleEndian.Uint64(r[8:])
		if nlb == 0 {
			continue
		}
		if !ns.inRange(slba, nlb) {
			return stLBARange
		}
	}
	for i := 0; i < nr; i++ {
		r := buf[i*16:]
		nlb := uint64(binary.LittleEndian.Uint32(r[4:]))
		slba := binary.LittleEndian.Uint64(r[8:])
		if nlb == 0 {
			continue
		}
		clear(ns.bytes(slba, nlb))
		ns.mark(slba, nlb, false)
	}
	return stOK
}
