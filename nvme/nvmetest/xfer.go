package nvmetest

import (
	"bytes"
	"encoding/binary"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// xfer walks the data pointer of one command (PRP entries and lists, or
// one SGL data block descriptor) and hands out the host memory it names,
// one translated segment at a time. NVMe Base 2.0, 4.1.1 (PRP) and 4.1.2
// (SGL). It keeps no state beyond the command and allocates nothing.
//
// PRP rules enforced: PRP1 dword aligned (its offset is where the data
// starts); with a transfer ending inside the page after PRP1's, PRP2 is a
// page-aligned data pointer; otherwise PRP2 is a qword-aligned pointer to
// a PRP list whose entries are page aligned, and when more entries are
// needed than fit before the end of a list page, the last entry of that
// page points (page aligned) at the next list page. A misaligned entry is
// PRP Offset Invalid; an IOVA nothing is mapped at is Data Transfer Error.
type xfer struct {
	c     *Controller
	sgl   bool
	prp1  uint64
	prp2  uint64
	n     int    // total bytes
	done  int    // bytes handed out
	list  uint64 // IOVA of the next PRP list entry, when useList
	pages int    // data pages after the first still to hand out

	useList bool
}

var (
	stOK          = spec.MakeStatus(spec.SCTGeneric, spec.SCSuccess)
	stInvalidOp   = spec.MakeStatus(spec.SCTGeneric, spec.SCInvalidOpcode)
	stInvalidFld  = spec.MakeStatus(spec.SCTGeneric, spec.SCInvalidField)
	stXferErr     = spec.MakeStatus(spec.SCTGeneric, spec.SCDataTransferError)
	stPRPOffset   = spec.MakeStatus(spec.SCTGeneric, spec.SCPRPOffsetInvalid)
	stInvalidNS   = spec.MakeStatus(spec.SCTGeneric, spec.SCInvalidNamespace)
	stLBARange    = spec.MakeStatus(spec.SCTGeneric, spec.SCLBAOutOfRange)
	stAbortReq    = spec.MakeStatus(spec.SCTGeneric, spec.SCAbortRequested)
	stSQDeleted   = spec.MakeStatus(spec.SCTGeneric, spec.SCAbortedSQDeletion)
	stSequence    = spec.MakeStatus(spec.SCTGeneric, spec.SCCommandSequenceError)
	stSGLLength   = spec.MakeStatus(spec.SCTGeneric, spec.SCDataSGLLengthInvalid)
	stSGLType     = spec.MakeStatus(spec.SCTGeneric, spec.SCSGLDescriptorTypeInvalid)
	stUnrecovered = spec.MakeStatus(spec.SCTMediaError, spec.SCUnrecoveredReadError)
	stCompare     = spec.MakeStatus(spec.SCTMediaError, spec.SCCompareFailure)
)

// start prepares x for a transfer of n bytes described by cmd. allowSGL
// says whether the command may use SGLs.
func (x *xfer) start(c *Controller, cmd *spec.Command, n int, allowSGL bool) spec.Status {
	*x = xfer{c: c, prp1: cmd.PRP1, prp2: cmd.PRP2, n: n}
	switch cmd.Flags & spec.FlagPSDTMask {
	case spec.FlagPSDTPRP:
	case spec.FlagPSDTSGL:
		if !allowSGL {
			return stInvalidFld
		}
		d := cmd.SGL1()
		if d.DescType() != spec.SGLTypeDataBlock || d.Subtype() != spec.SGLSubtypeAddress {
			return stSGLType
		}
		if int64(d.Length) < int64(n) {
			return stSGLLength
		}
		x.sgl = true
		c.cnt.sgl.Add(1)
		return stOK
	default:
		return stInvalidFld
	}
	if n == 0 {
		return stOK
	}
	if x.prp1&3 != 0 {
		return stPRPOffset
	}
	first := pageSize - int(x.prp1&(pageSize-1))
	if n <= first {
		return stOK
	}
	rest := n - first
	x.pages = (rest + pageSize - 1) / pageSize
	if x.pages == 1 {
		if x.prp2&(pageSize-1) != 0 {
			return stPRPOffset
		}
		return stOK
	}
	if x.prp2&7 != 0 {
		return stPRPOffset
	}
	x.list, x.useList = x.prp2, true
	return stOK
}

// next returns the next segment of host memory, nil when the transfer is
// complete, or a failure status.
func (x *xfer) next() ([]byte, spec.Status) {
	if x.done >= x.n {
		return nil, stOK
	}
	var addr uint64
	var n int
	switch {
	case x.sgl:
		addr, n = x.prp1, x.n
	case x.done == 0:
		addr = x.prp1
		n = min(x.n, pageSize-int(x.prp1&(pageSize-1)))
	case !x.useList: // the second and last page, in PRP2
		addr, n = x.prp2, x.n-x.done
	default:
		e, st := x.entry()
		if !st.Success() {
			return nil, st
		}
		addr, n = e, min(pageSize, x.n-x.done)
	}
	b, ok := x.c.translate(addr, n)
	if !ok {
		return nil, stXferErr
	}
	x.done += n
	return b, stOK
}

// entry reads the next data entry of the PRP list, following a chain
// pointer at the end of a list page.
func (x *xfer) entry() (uint64, spec.Status) {
	if x.list&(pageSize-1) == pageSize-8 && x.pages > 1 {
		p, st := x.read(x.list)
		if !st.Success() {
			return 0, st
		}
		if p&(pageSize-1) != 0 {
			return 0, stPRPOffset
		}
		x.list = p
	}
	e, st := x.read(x.list)
	if !st.Success() {
		return 0, st
	}
	if e&(pageSize-1) != 0 {
		return 0, stPRPOffset
	}
	x.list += 8
	x.pages--
	return e, stOK
}

func (x *xfer) read(addr uint64) (uint64, spec.Status) {
	b, ok := x.c.translate(addr, 8)
	if !ok {
		return 0, stXferErr
	}
	return binary.LittleEndian.Uint64(b), stOK
}

// toHost copies src to the host through the data pointer.
func (x *xfer) toHost(src []byte) spec.Status {
	for {
		seg, st := x.next()
		if !st.Success() || seg == nil {
			return st
		}
		copy(seg, src)
		src = src[len(seg):]
	}
}

// fromHost copies the host's data into dst.
func (x *xfer) fromHost(dst []byte) spec.Status {
	for {
		seg, st := x.next()
		if !st.Success() || seg == nil {
			return st
		}
		copy(dst, seg)
		dst = dst[len(seg):]
	}
}

// compare compares the host's data with want; a difference is Compare
// Failure.
func (x *xfer) compare(want []byte) spec.Status {
	for {
		seg, st := x.next()
		if !st.Success() || seg == nil {
			return st
		}
		if !bytes.Equal(seg, want[:len(seg)]) {
			return stCompare
		}
		want = want[len(seg):]
	}
}
