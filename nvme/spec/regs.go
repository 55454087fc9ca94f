package spec

import (
	"fmt"
	"time"
)

// Controller property (register) offsets in BAR0 of a PCIe NVMe controller.
// NVMe Base 2.0, 3.1.3 "Controller Properties". The PCIe-only registers
// (INTMS, INTMC, CMB*, PMR*, doorbells) are cited by their NVMe 1.4 sections;
// in 2.0 they are described by the NVMe over PCIe Transport specification.
const (
	RegCAP     = 0x00 // Controller Capabilities, 64 bit (3.1.3.1)
	RegVS      = 0x08 // Version, 32 bit (3.1.3.2)
	RegINTMS   = 0x0c // Interrupt Mask Set, 32 bit (NVMe 1.4, 3.1.3)
	RegINTMC   = 0x10 // Interrupt Mask Clear, 32 bit (NVMe 1.4, 3.1.4)
	RegCC      = 0x14 // Controller Configuration, 32 bit (3.1.3.5)
	RegCSTS    = 0x1c // Controller Status, 32 bit (3.1.3.6)
	RegNSSR    = 0x20 // NVM Subsystem Reset, 32 bit (3.1.3.7)
	RegAQA     = 0x24 // Admin Queue Attributes, 32 bit (3.1.3.8)
	RegASQ     = 0x28 // Admin Submission Queue Base Address, 64 bit (3.1.3.9)
	RegACQ     = 0x30 // Admin Completion Queue Base Address, 64 bit (3.1.3.10)
	RegCMBLOC  = 0x38 // Controller Memory Buffer Location, 32 bit (NVMe 1.4, 3.1.11)
	RegCMBSZ   = 0x3c // Controller Memory Buffer Size, 32 bit (NVMe 1.4, 3.1.12)
	RegBPINFO  = 0x40 // Boot Partition Information, 32 bit (NVMe 1.4, 3.1.13)
	RegBPRSEL  = 0x44 // Boot Partition Read Select, 32 bit (NVMe 1.4, 3.1.14)
	RegBPMBL   = 0x48 // Boot Partition Memory Buffer Location, 64 bit (NVMe 1.4, 3.1.15)
	RegCMBMSC  = 0x50 // Controller Memory Buffer Memory Space Control, 64 bit (NVMe 1.4, 3.1.16)
	RegCMBSTS  = 0x58 // Controller Memory Buffer Status, 32 bit (NVMe 1.4, 3.1.17)
	RegCMBEBS  = 0x5c // Controller Memory Buffer Elasticity Buffer Size, 32 bit
	RegCMBSWTP = 0x60 // Controller Memory Buffer Sustained Write Throughput, 32 bit
	RegNSSD    = 0x64 // NVM Subsystem Shutdown, 32 bit (new in NVMe 2.0)
	RegCRTO    = 0x68 // Controller Ready Timeouts, 32 bit (new in NVMe 2.0)
	RegPMRCAP  = 0xe00
	RegPMRCTL  = 0xe04
	RegPMRSTS  = 0xe08
	RegPMREBS  = 0xe0c
	RegPMRSWTP = 0xe10
	RegPMRMSCL = 0xe14
	RegPMRMSCU = 0xe18

	// RegDoorbellBase is the offset of the first doorbell, the admin
	// submission queue tail (NVMe 1.4, 3.1.24).
	RegDoorbellBase = 0x1000
)

// NSSRReset is the value ("NVMe" in ASCII) that, written to NSSR, starts an
// NVM subsystem reset when CAP.NSSRS is set. NVMe Base 2.0, 3.1.3.7.
const NSSRReset = 0x4E564D65

// SQTailDoorbell returns the register offset of the Submission Queue qid Tail
// Doorbell, given the doorbell stride CAP.DSTRD:
// 0x1000 + (2*qid) * (4 << dstrd). NVMe 1.4, 3.1.24 "SQyTDBL".
//
// The caller must check the result against the size of BAR0: a device may
// report any DSTRD up to 15.
func SQTailDoorbell(qid uint16, dstrd uint8) uintptr {
	return RegDoorbellBase + (2*uintptr(qid))*(4<<uintptr(dstrd&0xf))
}

// CQHeadDoorbell returns the register offset of the Completion Queue qid Head
// Doorbell: 0x1000 + (2*qid + 1) * (4 << dstrd). NVMe 1.4, 3.1.25 "CQyHDBL".
func CQHeadDoorbell(qid uint16, dstrd uint8) uintptr {
	return RegDoorbellBase + (2*uintptr(qid)+1)*(4<<uintptr(dstrd&0xf))
}

// INTMS and INTMC (offsets 0x0c and 0x10) are plain 32-bit masks: writing a 1
// to bit n of INTMS masks interrupt vector n, to bit n of INTMC unmasks it.
// They are used only with pin-based or single-message MSI interrupts; a
// polled driver never writes them. NVMe 1.4, 3.1.3 and 3.1.4.

// CAP is the Controller Capabilities property. NVMe Base 2.0, 3.1.3.1.
type CAP uint64

// MQES is Maximum Queue Entries Supported, bits 15:0: the largest I/O queue
// the controller supports, 0's based (the raw field; add 1 for entries).
// The spec forbids 0, so a value of 0 is a broken device.
func (c CAP) MQES() uint16 { return uint16(c) }

// CQR is Contiguous Queues Required, bit 16.
func (c CAP) CQR() bool { return c&(1<<16) != 0 }

// AMS is Arbitration Mechanism Supported, bits 18:17: bit 0 weighted round
// robin with urgent priority class, bit 1 vendor specific.
func (c CAP) AMS() uint8 { return uint8(c>>17) & 0x3 }

// TO is Timeout, bits 31:24: the worst-case time to wait for CSTS.RDY to
// change after CC.EN changes, in units of 500 ms.
func (c CAP) TO() time.Duration { return time.Duration(uint8(c>>24)) * 500 * time.Millisecond }

// DSTRD is Doorbell Stride, bits 35:32: doorbells are 4 << DSTRD bytes apart.
func (c CAP) DSTRD() uint8 { return uint8(c>>32) & 0xf }

// NSSRS is NVM Subsystem Reset Supported, bit 36.
func (c CAP) NSSRS() bool { return c&(1<<36) != 0 }

// CSS is Command Sets Supported, bits 44:37. See the CAPCSS constants.
func (c CAP) CSS() uint8 { return uint8(c >> 37) }

// CAP.CSS bits. NVMe Base 2.0, 3.1.3.1.
const (
	CAPCSSNVM     = 1 << 0 // NVM Command Set
	CAPCSSIOCS    = 1 << 6 // one or more I/O Command Sets (select with CC.CSS = CCCSSAll)
	CAPCSSNoIOCSS = 1 << 7 // no I/O Command Set (admin only)
)

// BPS is Boot Partition Support, bit 45.
func (c CAP) BPS() bool { return c&(1<<45) != 0 }

// CPS is Controller Power Scope, bits 47:46 (0 not reported, 1 controller,
// 2 domain, 3 NVM subsystem).
func (c CAP) CPS() uint8 { return uint8(c>>46) & 0x3 }

// MPSMIN is Memory Page Size Minimum, bits 51:48: 2^(12+MPSMIN) bytes.
func (c CAP) MPSMIN() uint8 { return uint8(c>>48) & 0xf }

// MPSMAX is Memory Page Size Maximum, bits 55:52: 2^(12+MPSMAX) bytes.
func (c CAP) MPSMAX() uint8 { return uint8(c>>52) & 0xf }

// PMRS is Persistent Memory Region Supported, bit 56.
func (c CAP) PMRS() bool { return c&(1<<56) != 0 }

// CMBS is Controller Memory Buffer Supported, bit 57.
func (c CAP) CMBS() bool { return c&(1<<57) != 0 }

// NSSS is NVM Subsystem Shutdown Supported, bit 58.
func (c CAP) NSSS() bool { return c&(1<<58) != 0 }

// CRMS is Controller Ready Modes Supported, bits 60:59: bit 0 Controller
// Ready With Media, bit 1 Controller Ready Independent of Media.
func (c CAP) CRMS() uint8 { return uint8(c>>59) & 0x3 }

// MinPageSize is the minimum memory page size in bytes, 1 << (12+MPSMIN).
func (c CAP) MinPageSize() int { return 1 << (12 + int(c.MPSMIN())) }

// MaxPageSize is the maximum memory page size in bytes, 1 << (12+MPSMAX).
func (c CAP) MaxPageSize() int { return 1 << (12 + int(c.MPSMAX())) }

// String formats the fields of c, in the spirit of nvme-cli's show-regs.
func (c CAP) String() string {
	return fmt.Sprintf("mqes=%d cqr=%t ams=%#x to=%s dstrd=%d nssrs=%t css=%#x bps=%t mpsmin=%d mpsmax=%d pmrs=%t cmbs=%t",
		c.MQES(), c.CQR(), c.AMS(), c.TO(), c.DSTRD(), c.NSSRS(), c.CSS(), c.BPS(), c.MPSMIN(), c.MPSMAX(), c.PMRS(), c.CMBS())
}

// VS is the Version property. NVMe Base 2.0, 3.1.3.2.
type VS uint32

// Major is MJR, bits 31:16.
func (v VS) Major() uint16 { return uint16(v >> 16) }

// Minor is MNR, bits 15:8.
func (v VS) Minor() uint8 { return uint8(v >> 8) }

// Tertiary is TER, bits 7:0.
func (v VS) Tertiary() uint8 { return uint8(v) }

// MakeVS builds a version value, as in the VER field of Identify Controller.
func MakeVS(major uint16, minor, tertiary uint8) VS {
	return VS(uint32(major)<<16 | uint32(minor)<<8 | uint32(tertiary))
}

// Well-known versions.
const (
	VS1_0 VS = 0x00010000
	VS1_1 VS = 0x00010100
	VS1_2 VS = 0x00010200
	VS1_3 VS = 0x00010300
	VS1_4 VS = 0x00010400
	VS2_0 VS = 0x00020000
)

// String formats v as "major.minor.tertiary", e.g. "1.4.0".
func (v VS) String() string { return fmt.Sprintf("%d.%d.%d", v.Major(), v.Minor(), v.Tertiary()) }

// CC is the Controller Configuration property. NVMe Base 2.0, 3.1.3.5. The
// With methods return a modified copy.
type CC uint32

// CC field values.
const (
	// CC.CSS, I/O Command Set Selected.
	CCCSSNVM       = 0 // NVM Command Set
	CCCSSAll       = 6 // all supported I/O Command Sets (CAP.CSS bit 6)
	CCCSSAdminOnly = 7 // admin command set only

	// CC.AMS, Arbitration Mechanism Selected.
	CCAMSRoundRobin = 0
	CCAMSWeightedRR = 1 // weighted round robin with urgent priority class
	CCAMSVendor     = 7

	// CC.SHN, Shutdown Notification.
	SHNNone   = 0
	SHNNormal = 1
	SHNAbrupt = 2

	// Queue entry sizes as log2, for CC.IOSQES and CC.IOCQES.
	SQESLog2 = 6 // 64-byte submission queue entries
	CQESLog2 = 4 // 16-byte completion queue entries
)

func (c CC) field(shift, width uint) uint8 {
	return uint8(uint32(c)>>shift) & uint8(1<<width-1)
}

func (c CC) withField(shift, width uint, v uint8) CC {
	mask := uint32(1<<width-1) << shift
	return CC(uint32(c)&^mask | uint32(v)<<shift&mask)
}

// EN is Enable, bit 0.
func (c CC) EN() bool { return c&1 != 0 }

// CSS is I/O Command Set Selected, bits 6:4.
func (c CC) CSS() uint8 { return c.field(4, 3) }

// MPS is Memory Page Size, bits 10:7: pages are 2^(12+MPS) bytes.
func (c CC) MPS() uint8 { return c.field(7, 4) }

// AMS is Arbitration Mechanism Selected, bits 13:11.
func (c CC) AMS() uint8 { return c.field(11, 3) }

// SHN is Shutdown Notification, bits 15:14 (SHNNone, SHNNormal, SHNAbrupt).
func (c CC) SHN() uint8 { return c.field(14, 2) }

// IOSQES is I/O Submission Queue Entry Size, bits 19:16, as log2 bytes.
func (c CC) IOSQES() uint8 { return c.field(16, 4) }

// IOCQES is I/O Completion Queue Entry Size, bits 23:20, as log2 bytes.
func (c CC) IOCQES() uint8 { return c.field(20, 4) }

// CRIME is Controller Ready Independent of Media Enable, bit 24.
func (c CC) CRIME() bool { return c&(1<<24) != 0 }

// WithEN returns c with EN set to v.
func (c CC) WithEN(v bool) CC {
	if v {
		return c | 1
	}
	return c &^ 1
}

// WithCSS returns c with CSS set to v (3 bits; higher bits are dropped).
func (c CC) WithCSS(v uint8) CC { return c.withField(4, 3, v) }

// WithMPS returns c with MPS set to v (4 bits).
func (c CC) WithMPS(v uint8) CC { return c.withField(7, 4, v) }

// WithAMS returns c with AMS set to v (3 bits).
func (c CC) WithAMS(v uint8) CC { return c.withField(11, 3, v) }

// WithSHN returns c with SHN set to v (2 bits).
func (c CC) WithSHN(v uint8) CC { return c.withField(14, 2, v) }

// WithIOSQES returns c with IOSQES set to v (4 bits).
func (c CC) WithIOSQES(v uint8) CC { return c.withField(16, 4, v) }

// WithIOCQES returns c with IOCQES set to v (4 bits).
func (c CC) WithIOCQES(v uint8) CC { return c.withField(20, 4, v) }

// WithCRIME returns c with CRIME set to v.
func (c CC) WithCRIME(v bool) CC {
	if v {
		return c | 1<<24
	}
	return c &^ (1 << 24)
}

// String formats the fields of c.
func (c CC) String() string {
	return fmt.Sprintf("en=%t css=%d mps=%d ams=%d shn=%d iosqes=%d iocqes=%d",
		c.EN(), c.CSS(), c.MPS(), c.AMS(), c.SHN(), c.IOSQES(), c.IOCQES())
}

// CSTS is the Controller Status property. NVMe Base 2.0, 3.1.3.6.
type CSTS uint32

// CSTS.SHST values, Shutdown Status.
const (
	SHSTNormal    = 0 // normal operation, no shutdown requested
	SHSTOccurring = 1 // shutdown processing occurring
	SHSTComplete  = 2 // shutdown processing complete
)

// RDY is Ready, bit 0.
func (c CSTS) RDY() bool { return c&1 != 0 }

// CFS is Controller Fatal Status, bit 1.
func (c CSTS) CFS() bool { return c&2 != 0 }

// SHST is Shutdown Status, bits 3:2.
func (c CSTS) SHST() uint8 { return uint8(c>>2) & 0x3 }

// NSSRO is NVM Subsystem Reset Occurred, bit 4 (write 1 to clear).
func (c CSTS) NSSRO() bool { return c&(1<<4) != 0 }

// PP is Processing Paused, bit 5.
func (c CSTS) PP() bool { return c&(1<<5) != 0 }

// ST is Shutdown Type, bit 6: the shutdown reported by SHST is an NVM
// subsystem shutdown (NSSD) rather than a controller shutdown.
func (c CSTS) ST() bool { return c&(1<<6) != 0 }

// Removed reports whether c reads as all ones: a PCIe read from a device
// that is gone (surprise removal, link down) completes with 0xffffffff,
// which is never a valid CSTS because its reserved bits are zero.
func (c CSTS) Removed() bool { return c == 0xffffffff }

// String formats the fields of c.
func (c CSTS) String() string {
	if c.Removed() {
		return "removed (0xffffffff)"
	}
	return fmt.Sprintf("rdy=%t cfs=%t shst=%d nssro=%t pp=%t", c.RDY(), c.CFS(), c.SHST(), c.NSSRO(), c.PP())
}

// AQA is the Admin Queue Attributes property. NVMe Base 2.0, 3.1.3.8.
type AQA uint32

// MakeAQA builds an AQA from 0's based queue sizes: asqs is the admin
// submission queue size minus one, acqs the completion queue size minus one.
// Both fields are 12 bits (at most 4096 entries); higher bits are dropped.
func MakeAQA(asqs, acqs uint16) AQA {
	return AQA(uint32(asqs&0xfff) | uint32(acqs&0xfff)<<16)
}

// ASQS is Admin Submission Queue Size, bits 11:0, 0's based.
func (a AQA) ASQS() uint16 { return uint16(a) & 0xfff }

// ACQS is Admin Completion Queue Size, bits 27:16, 0's based.
func (a AQA) ACQS() uint16 { return uint16(a>>16) & 0xfff }

// CMBLOC is the Controller Memory Buffer Location property. NVMe 1.4,
// 3.1.11.
type CMBLOC uint32

// BIR is Base Indicator Register, bits 2:0: the BAR that holds the CMB.
func (c CMBLOC) BIR() uint8 { return uint8(c) & 0x7 }

// CQMMS is CMB Queue Mixed Memory Support, bit 3.
func (c CMBLOC) CQMMS() bool { return c&(1<<3) != 0 }

// CQPDS is CMB Queue Physically Discontiguous Support, bit 4.
func (c CMBLOC) CQPDS() bool { return c&(1<<4) != 0 }

// CDPMLS is CMB Data Pointer Mixed Locations Support, bit 5.
func (c CMBLOC) CDPMLS() bool { return c&(1<<5) != 0 }

// CDPCILS is CMB Data Pointer and Command Independent Locations Support, bit 6.
func (c CMBLOC) CDPCILS() bool { return c&(1<<6) != 0 }

// CDMMMS is CMB Data Metadata Mixed Memory Support, bit 7.
func (c CMBLOC) CDMMMS() bool { return c&(1<<7) != 0 }

// CQDA is CMB Queue Dword Alignment, bit 8.
func (c CMBLOC) CQDA() bool { return c&(1<<8) != 0 }

// OFST is Offset, bits 31:12, in units of CMBSZ.SZU.
func (c CMBLOC) OFST() uint32 { return uint32(c) >> 12 }

// CMBSZ is the Controller Memory Buffer Size property. NVMe 1.4, 3.1.12.
type CMBSZ uint32

// SQS is Submission Queue Support, bit 0.
func (c CMBSZ) SQS() bool { return c&1 != 0 }

// CQS is Completion Queue Support, bit 1.
func (c CMBSZ) CQS() bool { return c&2 != 0 }

// LISTS is PRP SGL List Support, bit 2.
func (c CMBSZ) LISTS() bool { return c&4 != 0 }

// RDS is Read Data Support, bit 3.
func (c CMBSZ) RDS() bool { return c&8 != 0 }

// WDS is Write Data Support, bit 4.
func (c CMBSZ) WDS() bool { return c&16 != 0 }

// SZU is Size Units, bits 11:8: 0 4 KiB, 1 64 KiB, 2 1 MiB, 3 16 MiB,
// 4 256 MiB, 5 4 GiB, 6 64 GiB; 7-15 reserved.
func (c CMBSZ) SZU() uint8 { return uint8(c>>8) & 0xf }

// SZ is Size, bits 31:12, in units of SZU.
func (c CMBSZ) SZ() uint32 { return uint32(c) >> 12 }

// Unit returns the size unit in bytes, or 0 for a reserved SZU.
func (c CMBSZ) Unit() uint64 {
	if c.SZU() > 6 {
		return 0
	}
	return 4096 << (4 * uint64(c.SZU()))
}

// Bytes returns the CMB size in bytes (SZ * Unit), 0 for a reserved SZU.
// It cannot overflow: SZ < 2^20 and Unit <= 2^36.
func (c CMBSZ) Bytes() uint64 { return uint64(c.SZ()) * c.Unit() }

// Offset returns the CMB offset within its BAR in bytes (OFST * sz.Unit()).
func (c CMBLOC) Offset(sz CMBSZ) uint64 { return uint64(c.OFST()) * sz.Unit() }

// CRTO is the Controller Ready Timeouts property (new in NVMe Base 2.0).
type CRTO uint32

// CRWMT is Controller Ready With Media Timeout, bits 15:0, in 500 ms units.
func (c CRTO) CRWMT() time.Duration { return time.Duration(uint16(c)) * 500 * time.Millisecond }

// CRIMT is Controller Ready Independent of Media Timeout, bits 31:16, in
// 500 ms units.
func (c CRTO) CRIMT() time.Duration { return time.Duration(uint16(c>>16)) * 500 * time.Millisecond }
