package spec

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
)

// Identify CNS values (CDW10 bits 7:0). NVMe Base 2.0, 5.17.1.
const (
	CNSNamespace             = 0x00 // Identify Namespace data structure for NSID (NVM Command Set)
	CNSController            = 0x01 // Identify Controller data structure
	CNSActiveNamespaces      = 0x02 // active namespace ID list, NSIDs above CDW1.NSID
	CNSNamespaceDescriptors  = 0x03 // Namespace Identification Descriptor list for NSID
	CNSNVMSetList            = 0x04
	CNSNamespaceIOCS         = 0x05 // I/O Command Set specific Identify Namespace (CSI in CDW11)
	CNSControllerIOCS        = 0x06 // I/O Command Set specific Identify Controller
	CNSActiveNamespacesIOCS  = 0x07
	CNSIndependentNamespace  = 0x08 // I/O Command Set Independent Identify Namespace
	CNSAllocatedNamespaces   = 0x10
	CNSAllocatedNamespace    = 0x11
	CNSNamespaceControllers  = 0x12
	CNSControllerList        = 0x13
	CNSPrimaryCtrlCaps       = 0x14
	CNSSecondaryCtrlList     = 0x15
	CNSNamespaceGranularity  = 0x16
	CNSUUIDList              = 0x17
	CNSDomainList            = 0x18
	CNSEnduranceGroupList    = 0x19
	CNSIOCommandSetDataStruc = 0x1c
)

// IdentifySize is the size of every Identify data structure, in bytes.
const IdentifySize = 4096

// Command Set Identifiers (CSI). NVMe Base 2.0.
const (
	CSINVM = 0x00
	CSIKV  = 0x01
	CSIZNS = 0x02
)

// NSIDAll is the broadcast namespace identifier.
const NSIDAll = 0xffffffff

// PowerState is a Power State Descriptor from Identify Controller (bytes
// 2048 + 32*n). NVMe Base 2.0, 5.17.2.1.
type PowerState struct {
	MP    uint16 // 0x00 maximum power, in units of MPScale()
	MXPS  bool   // 0x03 bit 0: MP is in 0.0001 W units instead of 0.01 W
	NOPS  bool   // 0x03 bit 1: non-operational state
	ENLAT uint32 // 0x04 entry latency, microseconds
	EXLAT uint32 // 0x08 exit latency, microseconds
	RRT   uint8  // 0x0c bits 4:0, relative read throughput
	RRL   uint8  // 0x0d bits 4:0, relative read latency
	RWT   uint8  // 0x0e bits 4:0, relative write throughput
	RWL   uint8  // 0x0f bits 4:0, relative write latency
	IDLP  uint16 // 0x10 idle power
	IPS   uint8  // 0x12 bits 7:6, idle power scale (1: 0.0001 W, 2: 0.01 W)
	ACTP  uint16 // 0x14 active power
	APW   uint8  // 0x16 bits 2:0, active power workload
	APS   uint8  // 0x16 bits 7:6, active power scale
}

// MaxPowerWatts returns MP in watts.
func (p PowerState) MaxPowerWatts() float64 {
	if p.MXPS {
		return float64(p.MP) * 0.0001
	}
	return float64(p.MP) * 0.01
}

func parsePowerState(b []byte) PowerState {
	le := binary.LittleEndian
	return PowerState{
		MP:    le.Uint16(b[0:]),
		MXPS:  b[3]&1 != 0,
		NOPS:  b[3]&2 != 0,
		ENLAT: le.Uint32(b[4:]),
		EXLAT: le.Uint32(b[8:]),
		RRT:   b[12] & 0x1f,
		RRL:   b[13] & 0x1f,
		RWT:   b[14] & 0x1f,
		RWL:   b[15] & 0x1f,
		IDLP:  le.Uint16(b[16:]),
		IPS:   b[18] >> 6,
		ACTP:  le.Uint16(b[20:]),
		APW:   b[22] & 0x7,
		APS:   b[22] >> 6,
	}
}

// OACS bits, Optional Admin Command Support. NVMe Base 2.0,
// bytes 257:256.
const (
	OACSSecurity        = 1 << 0
	OACSFormatNVM       = 1 << 1
	OACSFirmware        = 1 << 2
	OACSNamespaceMgmt   = 1 << 3
	OACSDeviceSelfTest  = 1 << 4
	OACSDirectives      = 1 << 5
	OACSNVMeMI          = 1 << 6
	OACSVirtualization  = 1 << 7
	OACSDoorbellBuffer  = 1 << 8
	OACSGetLBAStatus    = 1 << 9
	OACSCommandLockdown = 1 << 10
)

// ONCS bits, Optional NVM Command Support. NVMe Base 2.0,
// bytes 521:520.
const (
	ONCSCompare            = 1 << 0
	ONCSWriteUncorrectable = 1 << 1
	ONCSDatasetManagement  = 1 << 2
	ONCSWriteZeroes        = 1 << 3
	ONCSSaveSelect         = 1 << 4 // Save field in Set Features, Select in Get Features
	ONCSReservations       = 1 << 5
	ONCSTimestamp          = 1 << 6
	ONCSVerify             = 1 << 7
	ONCSCopy               = 1 << 8
)

// SGLS bits, SGL Support. NVMe Base 2.0, bytes 539:536.
const (
	SGLSSupportMask      = 0x3     // bits 1:0: 0 none, 1 no alignment, 2 dword alignment
	SGLSKeyed            = 1 << 2  // keyed SGL data block descriptor
	SGLSBitBucket        = 1 << 16 // SGL bit bucket descriptor
	SGLSByteAlignedMeta  = 1 << 17 // byte aligned contiguous metadata buffer
	SGLSLongerThanData   = 1 << 18 // SGL longer than the data to transfer
	SGLSMPTRSingleDesc   = 1 << 19 // MPTR may hold one SGL descriptor
	SGLSAddressAsOffset  = 1 << 20
	SGLSTransportDataBlk = 1 << 21
)

// Controller types (CNTRLTYPE). NVMe Base 2.0, byte 111.
const (
	CtrlTypeIO        = 1
	CtrlTypeDiscovery = 2
	CtrlTypeAdmin     = 3
)

// IdentifyController is the Identify Controller data structure (CNS 0x01),
// decoded. NVMe Base 2.0, 5.17.2.1. Offsets in comments.
type IdentifyController struct {
	VID       uint16         // 0x000 PCI vendor ID
	SSVID     uint16         // 0x002 PCI subsystem vendor ID
	SN        string         // 0x004 serial number, 20 bytes, trimmed
	MN        string         // 0x018 model number, 40 bytes, trimmed
	FR        string         // 0x040 firmware revision, 8 bytes, trimmed
	RAB       uint8          // 0x048 recommended arbitration burst (2^n)
	IEEE      [3]byte        // 0x049 IEEE OUI, little endian as on the wire
	CMIC      uint8          // 0x04c multi-path I/O and namespace sharing
	MDTS      uint8          // 0x04d maximum data transfer size, 2^n min pages, 0 no limit
	CNTLID    uint16         // 0x04e controller ID
	VER       VS             // 0x050 version (0 before NVMe 1.2)
	RTD3R     uint32         // 0x054 RTD3 resume latency, microseconds
	RTD3E     uint32         // 0x058 RTD3 entry latency, microseconds
	OAES      uint32         // 0x05c optional asynchronous events supported
	CTRATT    uint32         // 0x060 controller attributes
	RRLS      uint16         // 0x064 read recovery levels supported
	CNTRLTYPE uint8          // 0x06f controller type (CtrlType*)
	FGUID     [16]byte       // 0x070 FRU globally unique identifier
	CRDT      [3]uint16      // 0x080 command retry delay times 1-3, 100 ms units
	NVMSR     uint8          // 0x0fd NVM subsystem report (NVMe-MI)
	VWCI      uint8          // 0x0fe VPD write cycle information
	MEC       uint8          // 0x0ff management endpoint capabilities
	OACS      uint16         // 0x100 optional admin command support (OACS* bits)
	ACL       uint8          // 0x102 abort command limit, 0's based
	AERL      uint8          // 0x103 async event request limit, 0's based
	FRMW      uint8          // 0x104 firmware updates
	LPA       uint8          // 0x105 log page attributes
	ELPE      uint8          // 0x106 error log page entries, 0's based
	NPSS      uint8          // 0x107 number of power states support, 0's based
	AVSCC     uint8          // 0x108 admin vendor specific command configuration
	APSTA     uint8          // 0x109 autonomous power state transition attributes
	WCTEMP    uint16         // 0x10a warning composite temperature threshold, kelvin
	CCTEMP    uint16         // 0x10c critical composite temperature threshold, kelvin
	MTFA      uint16         // 0x10e maximum time for firmware activation, 100 ms units
	HMPRE     uint32         // 0x110 host memory buffer preferred size, 4 KiB units
	HMMIN     uint32         // 0x114 host memory buffer minimum size, 4 KiB units
	TNVMCAP   Uint128        // 0x118 total NVM capacity, bytes
	UNVMCAP   Uint128        // 0x128 unallocated NVM capacity, bytes
	RPMBS     uint32         // 0x138 replay protected memory block support
	EDSTT     uint16         // 0x13c extended device self-test time, minutes
	DSTO      uint8          // 0x13e device self-test options
	FWUG      uint8          // 0x13f firmware update granularity, 4 KiB units
	KAS       uint16         // 0x140 keep alive support, 100 ms units
	HCTMA     uint16         // 0x142 host controlled thermal management attributes
	MNTMT     uint16         // 0x144 minimum thermal management temperature, kelvin
	MXTMT     uint16         // 0x146 maximum thermal management temperature, kelvin
	SANICAP   uint32         // 0x148 sanitize capabilities
	HMMINDS   uint32         // 0x14c host memory buffer minimum descriptor entry size, 4 KiB units
	HMMAXD    uint16         // 0x150 host memory maximum descriptors entries
	NSETIDMAX uint16         // 0x152 NVM set identifier maximum
	ENDGIDMAX uint16         // 0x154 endurance group identifier maximum
	ANATT     uint8          // 0x156 ANA transition time, seconds
	ANACAP    uint8          // 0x157 asymmetric namespace access capabilities
	ANAGRPMAX uint32         // 0x158 ANA group identifier maximum
	NANAGRPID uint32         // 0x15c number of ANA group identifiers
	PELS      uint32         // 0x160 persistent event log size, 64 KiB units
	DomainID  uint16         // 0x164 domain identifier
	MEGCAP    Uint128        // 0x170 max endurance group capacity
	SQES      uint8          // 0x200 SQ entry size: required 3:0, maximum 7:4 (log2)
	CQES      uint8          // 0x201 CQ entry size: required 3:0, maximum 7:4 (log2)
	MAXCMD    uint16         // 0x202 maximum outstanding commands (fabrics)
	NN        uint32         // 0x204 number of namespaces (maximum NSID)
	ONCS      uint16         // 0x208 optional NVM command support (ONCS* bits)
	FUSES     uint16         // 0x20a fused operation support (bit 0: compare and write)
	FNA       uint8          // 0x20c format NVM attributes
	VWC       uint8          // 0x20d volatile write cache (bit 0 present)
	AWUN      uint16         // 0x20e atomic write unit normal, 0's based blocks
	AWUPF     uint16         // 0x210 atomic write unit power fail, 0's based blocks
	NVSCC     uint8          // 0x212 I/O command set vendor specific command configuration (ICSVSCC)
	NWPC      uint8          // 0x213 namespace write protection capabilities
	ACWU      uint16         // 0x214 atomic compare and write unit, 0's based blocks
	OCFS      uint16         // 0x216 optional copy formats supported
	SGLS      uint32         // 0x218 SGL support (SGLS* bits)
	MNAN      uint32         // 0x21c maximum number of allowed namespaces
	MAXDNA    Uint128        // 0x220 maximum domain namespace attachments
	MAXCNA    uint32         // 0x230 maximum I/O controller namespace attachments
	SUBNQN    string         // 0x300 NVM subsystem NVMe qualified name, NUL terminated
	IOCCSZ    uint32         // 0x700 I/O queue command capsule supported size (fabrics), 16-byte units
	IORCSZ    uint32         // 0x704 I/O queue response capsule supported size (fabrics), 16-byte units
	ICDOFF    uint16         // 0x708 in capsule data offset (fabrics)
	FCATT     uint8          // 0x70a fabrics controller attributes
	MSDBD     uint8          // 0x70b maximum SGL data block descriptors (fabrics)
	OFCS      uint16         // 0x70c optional fabric commands support
	PSD       [32]PowerState // 0x800 power state descriptors 0-31 (NPSS+1 valid)
}

// ParseIdentifyController decodes an Identify Controller data structure. b
// must hold the full 4096 bytes.
func ParseIdentifyController(b []byte) (*IdentifyController, error) {
	if err := needLen("identify controller", b, IdentifySize); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	c := &IdentifyController{
		VID:       le.Uint16(b[0:]),
		SSVID:     le.Uint16(b[2:]),
		SN:        trimString(b[4:24]),
		MN:        trimString(b[24:64]),
		FR:        trimString(b[64:72]),
		RAB:       b[72],
		IEEE:      [3]byte{b[73], b[74], b[75]},
		CMIC:      b[76],
		MDTS:      b[77],
		CNTLID:    le.Uint16(b[78:]),
		VER:       VS(le.Uint32(b[80:])),
		RTD3R:     le.Uint32(b[84:]),
		RTD3E:     le.Uint32(b[88:]),
		OAES:      le.Uint32(b[92:]),
		CTRATT:    le.Uint32(b[96:]),
		RRLS:      le.Uint16(b[100:]),
		CNTRLTYPE: b[111],
		CRDT:      [3]uint16{le.Uint16(b[128:]), le.Uint16(b[130:]), le.Uint16(b[132:])},
		NVMSR:     b[253],
		VWCI:      b[254],
		MEC:       b[255],
		OACS:      le.Uint16(b[256:]),
		ACL:       b[258],
		AERL:      b[259],
		FRMW:      b[260],
		LPA:       b[261],
		ELPE:      b[262],
		NPSS:      b[263],
		AVSCC:     b[264],
		APSTA:     b[265],
		WCTEMP:    le.Uint16(b[266:]),
		CCTEMP:    le.Uint16(b[268:]),
		MTFA:      le.Uint16(b[270:]),
		HMPRE:     le.Uint32(b[272:]),
		HMMIN:     le.Uint32(b[276:]),
		TNVMCAP:   getUint128(b[280:]),
		UNVMCAP:   getUint128(b[296:]),
		RPMBS:     le.Uint32(b[312:]),
		EDSTT:     le.Uint16(b[316:]),
		DSTO:      b[318],
		FWUG:      b[319],
		KAS:       le.Uint16(b[320:]),
		HCTMA:     le.Uint16(b[322:]),
		MNTMT:     le.Uint16(b[324:]),
		MXTMT:     le.Uint16(b[326:]),
		SANICAP:   le.Uint32(b[328:]),
		HMMINDS:   le.Uint32(b[332:]),
		HMMAXD:    le.Uint16(b[336:]),
		NSETIDMAX: le.Uint16(b[338:]),
		ENDGIDMAX: le.Uint16(b[340:]),
		ANATT:     b[342],
		ANACAP:    b[343],
		ANAGRPMAX: le.Uint32(b[344:]),
		NANAGRPID: le.Uint32(b[348:]),
		PELS:      le.Uint32(b[352:]),
		DomainID:  le.Uint16(b[356:]),
		MEGCAP:    getUint128(b[368:]),
		SQES:      b[512],
		CQES:      b[513],
		MAXCMD:    le.Uint16(b[514:]),
		NN:        le.Uint32(b[516:]),
		ONCS:      le.Uint16(b[520:]),
		FUSES:     le.Uint16(b[522:]),
		FNA:       b[524],
		VWC:       b[525],
		AWUN:      le.Uint16(b[526:]),
		AWUPF:     le.Uint16(b[528:]),
		NVSCC:     b[530],
		NWPC:      b[531],
		ACWU:      le.Uint16(b[532:]),
		OCFS:      le.Uint16(b[534:]),
		SGLS:      le.Uint32(b[536:]),
		MNAN:      le.Uint32(b[540:]),
		MAXDNA:    getUint128(b[544:]),
		MAXCNA:    le.Uint32(b[560:]),
		SUBNQN:    trimString(b[768:1024]),
		IOCCSZ:    le.Uint32(b[1792:]),
		IORCSZ:    le.Uint32(b[1796:]),
		ICDOFF:    le.Uint16(b[1800:]),
		FCATT:     b[1802],
		MSDBD:     b[1803],
		OFCS:      le.Uint16(b[1804:]),
	}
	copy(c.FGUID[:], b[112:128])
	for i := range c.PSD {
		c.PSD[i] = parsePowerState(b[2048+32*i : 2048+32*(i+1)])
	}
	return c, nil
}

// maxTransferLimit is the largest transfer MaxTransfer reports as a limit;
// an MDTS that allows more is reported as unlimited. 4 GiB is more than any
// single command can move with a 16-bit NLB and 64 KiB blocks.
const maxTransferLimit = 1 << 32

// MaxTransfer returns the largest data transfer of one command in bytes,
// from MDTS in units of the minimum memory page size (CAP.MinPageSize(),
// pass it in). MDTS 0 means no limit: unlimited is true and bytes is 0. A
// limit of more than 4 GiB (or one that would overflow int) is also
// reported as unlimited. A minPageSize that is not a positive power of two
// is replaced by 4096.
func (c *IdentifyController) MaxTransfer(minPageSize int) (bytes int, unlimited bool) {
	if c.MDTS == 0 {
		return 0, true
	}
	if minPageSize <= 0 || minPageSize&(minPageSize-1) != 0 {
		minPageSize = 4096
	}
	if c.MDTS >= 32 {
		return 0, true
	}
	n := uint64(minPageSize) << c.MDTS
	if n > maxTransferLimit || n > math.MaxInt || n < uint64(minPageSize) {
		return 0, true
	}
	return int(n), false
}

// SupportsSGL reports whether the controller supports SGLs for NVM command
// set I/O (SGLS bits 1:0 non-zero).
func (c *IdentifyController) SupportsSGL() bool { return c.SGLS&SGLSSupportMask != 0 }

// SGLDwordAligned reports whether SGL data blocks must be dword aligned
// (SGLS bits 1:0 = 10b).
func (c *IdentifyController) SGLDwordAligned() bool { return c.SGLS&SGLSSupportMask == 2 }

// SupportsCompare reports ONCS bit 0, the Compare command.
func (c *IdentifyController) SupportsCompare() bool { return c.ONCS&ONCSCompare != 0 }

// SupportsWriteUncorrectable reports ONCS bit 1.
func (c *IdentifyController) SupportsWriteUncorrectable() bool {
	return c.ONCS&ONCSWriteUncorrectable != 0
}

// SupportsDSM reports ONCS bit 2, the Dataset Management command.
func (c *IdentifyController) SupportsDSM() bool { return c.ONCS&ONCSDatasetManagement != 0 }

// SupportsWriteZeroes reports ONCS bit 3.
func (c *IdentifyController) SupportsWriteZeroes() bool { return c.ONCS&ONCSWriteZeroes != 0 }

// SupportsSaveSelect reports ONCS bit 4, the Save field in Set Features and
// the Select field in Get Features.
func (c *IdentifyController) SupportsSaveSelect() bool { return c.ONCS&ONCSSaveSelect != 0 }

// SupportsReservations reports ONCS bit 5.
func (c *IdentifyController) SupportsReservations() bool { return c.ONCS&ONCSReservations != 0 }

// SupportsTimestamp reports ONCS bit 6, the Timestamp feature.
func (c *IdentifyController) SupportsTimestamp() bool { return c.ONCS&ONCSTimestamp != 0 }

// SupportsVerify reports ONCS bit 7.
func (c *IdentifyController) SupportsVerify() bool { return c.ONCS&ONCSVerify != 0 }

// SupportsCopy reports ONCS bit 8.
func (c *IdentifyController) SupportsCopy() bool { return c.ONCS&ONCSCopy != 0 }

// HasVolatileWriteCache reports VWC bit 0: a volatile write cache is
// present, so Flush matters.
func (c *IdentifyController) HasVolatileWriteCache() bool { return c.VWC&1 != 0 }

// SQESMin and SQESMax return the required and maximum SQ entry sizes as
// log2 bytes (6 = 64 bytes for NVM).
func (c *IdentifyController) SQESMin() uint8 { return c.SQES & 0xf }

// SQESMax returns the maximum SQ entry size as log2 bytes.
func (c *IdentifyController) SQESMax() uint8 { return c.SQES >> 4 }

// CQESMin returns the required CQ entry size as log2 bytes (4 = 16 bytes).
func (c *IdentifyController) CQESMin() uint8 { return c.CQES & 0xf }

// CQESMax returns the maximum CQ entry size as log2 bytes.
func (c *IdentifyController) CQESMax() uint8 { return c.CQES >> 4 }

// PowerStates returns the valid power state descriptors, NPSS+1 of them
// (at most 32).
func (c *IdentifyController) PowerStates() []PowerState {
	n := int(c.NPSS) + 1
	if n > len(c.PSD) {
		n = len(c.PSD)
	}
	return c.PSD[:n]
}

// LBAFormat is an LBA Format descriptor of Identify Namespace. NVM Command
// Set 1.0, 4.1.5.1.
type LBAFormat struct {
	MS    uint16 // bits 15:0, metadata bytes per block
	LBADS uint8  // bits 23:16, block size as log2 bytes (0: format not available)
	RP    uint8  // bits 25:24, relative performance (0 best, 3 degraded)
}

// NSFEAT bits. NVM Command Set 1.0, byte 24.
const (
	NSFEATThinProvisioning = 1 << 0
	NSFEATAtomicFields     = 1 << 1 // NAWUN, NAWUPF, NACWU are valid
	NSFEATDeallocError     = 1 << 2 // deallocated blocks error on read (DULBE)
	NSFEATUIDReuse         = 1 << 3
	NSFEATOptPerf          = 1 << 4 // NPWG, NPWA, NPDG, NPDA, NOWS are valid
)

// IdentifyNamespace is the NVM Command Set Identify Namespace data
// structure (CNS 0x00), decoded. NVM Command Set 1.0, 4.1.5.1.
type IdentifyNamespace struct {
	NSZE     uint64        // 0x00 namespace size, blocks
	NCAP     uint64        // 0x08 namespace capacity, blocks
	NUSE     uint64        // 0x10 namespace utilization, blocks
	NSFEAT   uint8         // 0x18 namespace features (NSFEAT* bits)
	NLBAF    uint8         // 0x19 number of LBA formats, 0's based (as the device reports it)
	FLBAS    uint8         // 0x1a formatted LBA size
	MC       uint8         // 0x1b metadata capabilities
	DPC      uint8         // 0x1c end-to-end data protection capabilities
	DPS      uint8         // 0x1d end-to-end data protection type settings
	NMIC     uint8         // 0x1e namespace multi-path I/O and sharing
	RESCAP   uint8         // 0x1f reservation capabilities
	FPI      uint8         // 0x20 format progress indicator
	DLFEAT   uint8         // 0x21 deallocate logical block features
	NAWUN    uint16        // 0x22 atomic write unit normal, 0's based
	NAWUPF   uint16        // 0x24 atomic write unit power fail, 0's based
	NACWU    uint16        // 0x26 atomic compare and write unit, 0's based
	NABSN    uint16        // 0x28 atomic boundary size normal, 0's based
	NABO     uint16        // 0x2a atomic boundary offset
	NABSPF   uint16        // 0x2c atomic boundary size power fail, 0's based
	NOIOB    uint16        // 0x2e optimal I/O boundary, blocks (0: none)
	NVMCAP   Uint128       // 0x30 NVM capacity, bytes
	NPWG     uint16        // 0x40 preferred write granularity, 0's based blocks
	NPWA     uint16        // 0x42 preferred write alignment, 0's based blocks
	NPDG     uint16        // 0x44 preferred deallocate granularity, 0's based blocks
	NPDA     uint16        // 0x46 preferred deallocate alignment, 0's based blocks
	NOWS     uint16        // 0x48 optimal write size, 0's based blocks
	MSSRL    uint16        // 0x4a maximum single source range length (Copy)
	MCL      uint32        // 0x4c maximum copy length
	MSRC     uint8         // 0x50 maximum source range count, 0's based
	ANAGRPID uint32        // 0x5c ANA group identifier
	NSATTR   uint8         // 0x63 namespace attributes (bit 0: write protected)
	NVMSETID uint16        // 0x64 NVM set identifier
	ENDGID   uint16        // 0x66 endurance group identifier
	NGUID    [16]byte      // 0x68 namespace globally unique identifier
	EUI64    [8]byte       // 0x78 IEEE extended unique identifier
	LBAF     [64]LBAFormat // 0x80 LBA formats 0-63 (NLBAF+1 valid)
}

// ParseIdentifyNamespace decodes an Identify Namespace data structure. b
// must hold at least the first 384 bytes (through LBA format 63); the rest
// of the 4096 is vendor specific.
func ParseIdentifyNamespace(b []byte) (*IdentifyNamespace, error) {
	if err := needLen("identify namespace", b, 384); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	n := &IdentifyNamespace{
		NSZE:     le.Uint64(b[0x00:]),
		NCAP:     le.Uint64(b[0x08:]),
		NUSE:     le.Uint64(b[0x10:]),
		NSFEAT:   b[0x18],
		NLBAF:    b[0x19],
		FLBAS:    b[0x1a],
		MC:       b[0x1b],
		DPC:      b[0x1c],
		DPS:      b[0x1d],
		NMIC:     b[0x1e],
		RESCAP:   b[0x1f],
		FPI:      b[0x20],
		DLFEAT:   b[0x21],
		NAWUN:    le.Uint16(b[0x22:]),
		NAWUPF:   le.Uint16(b[0x24:]),
		NACWU:    le.Uint16(b[0x26:]),
		NABSN:    le.Uint16(b[0x28:]),
		NABO:     le.Uint16(b[0x2a:]),
		NABSPF:   le.Uint16(b[0x2c:]),
		NOIOB:    le.Uint16(b[0x2e:]),
		NVMCAP:   getUint128(b[0x30:]),
		NPWG:     le.Uint16(b[0x40:]),
		NPWA:     le.Uint16(b[0x42:]),
		NPDG:     le.Uint16(b[0x44:]),
		NPDA:     le.Uint16(b[0x46:]),
		NOWS:     le.Uint16(b[0x48:]),
		MSSRL:    le.Uint16(b[0x4a:]),
		MCL:      le.Uint32(b[0x4c:]),
		MSRC:     b[0x50],
		ANAGRPID: le.Uint32(b[0x5c:]),
		NSATTR:   b[0x63],
		NVMSETID: le.Uint16(b[0x64:]),
		ENDGID:   le.Uint16(b[0x66:]),
	}
	copy(n.NGUID[:], b[0x68:0x78])
	copy(n.EUI64[:], b[0x78:0x80])
	for i := range n.LBAF {
		v := le.Uint32(b[0x80+4*i:])
		n.LBAF[i] = LBAFormat{MS: uint16(v), LBADS: uint8(v >> 16), RP: uint8(v>>24) & 0x3}
	}
	return n, nil
}

// FormatIndex returns the index of the LBA format in use: FLBAS bits 3:0,
// with bits 6:5 as the high bits (NVM Command Set 1.0, byte 26).
// It is in 0-63 but not necessarily within NLBAF; BlockSize checks that.
func (n *IdentifyNamespace) FormatIndex() int {
	return int(n.FLBAS&0xf) | int(n.FLBAS>>5&0x3)<<4
}

// ExtendedLBA reports FLBAS bit 4: metadata is transferred at the end of
// each block (an extended LBA) rather than in a separate buffer.
func (n *IdentifyNamespace) ExtendedLBA() bool { return n.FLBAS&(1<<4) != 0 }

// NumFormats returns the number of valid LBA formats, NLBAF+1 clamped to 64.
func (n *IdentifyNamespace) NumFormats() int { return min(int(n.NLBAF)+1, len(n.LBAF)) }

// Format returns the LBA format in use, or an error (wrapping ErrMalformed)
// if the format index is beyond NLBAF.
func (n *IdentifyNamespace) Format() (LBAFormat, error) {
	i := n.FormatIndex()
	if i >= n.NumFormats() {
		return LBAFormat{}, fmt.Errorf("identify namespace: format index %d beyond %d formats: %w", i, n.NumFormats(), ErrMalformed)
	}
	return n.LBAF[i], nil
}

// BlockSize returns the logical block size in bytes of the format in use.
// It returns an error (wrapping ErrMalformed) if the format index is beyond
// NLBAF, or if LBADS is below 9 (512 bytes, the spec minimum) or 32 and above.
func (n *IdentifyNamespace) BlockSize() (int, error) {
	f, err := n.Format()
	if err != nil {
		return 0, err
	}
	if f.LBADS < 9 || f.LBADS >= 32 {
		return 0, fmt.Errorf("identify namespace: lba format %d has lbads %d: %w", n.FormatIndex(), f.LBADS, ErrMalformed)
	}
	return 1 << f.LBADS, nil
}

// MetadataSize returns the metadata bytes per block of the format in use
// (0 for an invalid format index).
func (n *IdentifyNamespace) MetadataSize() int {
	f, err := n.Format()
	if err != nil {
		return 0
	}
	return int(f.MS)
}

// Blocks returns the namespace size in logical blocks (NSZE).
func (n *IdentifyNamespace) Blocks() uint64 { return n.NSZE }

// Active reports whether the namespace is active: an inactive NSID returns
// an all-zero structure (NVMe Base 2.0, 3.2.1.4).
func (n *IdentifyNamespace) Active() bool { return n.NSZE != 0 }

// MaxNamespaceListEntries is the number of NSIDs a namespace list (CNS 0x02)
// holds: 4096 bytes of 32-bit IDs.
const MaxNamespaceListEntries = IdentifySize / 4

// ParseNamespaceList decodes an active namespace ID list (CNS 0x02): up to
// 1024 little-endian NSIDs in increasing order, ended by the first 0. It
// returns an error (wrapping ErrMalformed) for a list that is not strictly
// increasing or that contains the broadcast ID 0xFFFFFFFF, and for a
// length that is not a multiple of 4. Bytes beyond 4096 are ignored.
func ParseNamespaceList(b []byte) ([]uint32, error) {
	if err := needLen("namespace list", b, 4); err != nil {
		return nil, err
	}
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("namespace list: %d bytes is not a multiple of 4: %w", len(b), ErrMalformed)
	}
	if len(b) > IdentifySize {
		b = b[:IdentifySize]
	}
	var out []uint32
	var prev uint32
	for off := 0; off < len(b); off += 4 {
		id := binary.LittleEndian.Uint32(b[off:])
		if id == 0 {
			break
		}
		if id == NSIDAll {
			return nil, fmt.Errorf("namespace list: entry %d is the broadcast nsid: %w", off/4, ErrMalformed)
		}
		if id <= prev {
			return nil, fmt.Errorf("namespace list: entry %d nsid %d not above previous %d: %w", off/4, id, prev, ErrMalformed)
		}
		out = append(out, id)
		prev = id
	}
	return out, nil
}

// Namespace Identifier Types (NIDT). NVMe Base 2.0, 5.17.2.3.
const (
	NIDTEUI64 = 0x1 // 8 bytes
	NIDTNGUID = 0x2 // 16 bytes
	NIDTUUID  = 0x3 // 16 bytes
	NIDTCSI   = 0x4 // 1 byte, command set identifier
)

// nidtLen returns the NIDL a known NIDT must have, 0 for unknown types.
func nidtLen(t uint8) int {
	switch t {
	case NIDTEUI64:
		return 8
	case NIDTNGUID, NIDTUUID:
		return 16
	case NIDTCSI:
		return 1
	}
	return 0
}

// NamespaceDescriptor is one Namespace Identification Descriptor (CNS
// 0x03). NVMe Base 2.0, 5.17.2.3.
type NamespaceDescriptor struct {
	Type uint8  // NIDT
	ID   []byte // NID, NIDL bytes
}

// String formats d as "eui64 0011223344556677", "nguid ...", "uuid
// 8-4-4-4-12", "csi 0" or "type 0x9 <hex>".
func (d NamespaceDescriptor) String() string {
	switch d.Type {
	case NIDTEUI64:
		return "eui64 " + hex.EncodeToString(d.ID)
	case NIDTNGUID:
		return "nguid " + hex.EncodeToString(d.ID)
	case NIDTUUID:
		if len(d.ID) == 16 {
			h := hex.EncodeToString(d.ID)
			return "uuid " + h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
		}
	case NIDTCSI:
		if len(d.ID) == 1 {
			return fmt.Sprintf("csi %d", d.ID[0])
		}
	}
	return fmt.Sprintf("type %#x %s", d.Type, hex.EncodeToString(d.ID))
}

// ParseNamespaceDescriptors decodes a Namespace Identification Descriptor
// list (CNS 0x03). Each descriptor is NIDT (1 byte), NIDL (1 byte), 2
// reserved bytes and NIDL bytes of ID; the list ends at a descriptor with
// NIDT or NIDL 0, or at the end of b (at most 4096 bytes are read). A known
// type whose NIDL is not its defined length, or a descriptor that runs past
// the buffer, is an error wrapping ErrMalformed. Unknown types are returned
// as they are.
func ParseNamespaceDescriptors(b []byte) ([]NamespaceDescriptor, error) {
	if len(b) > IdentifySize {
		b = b[:IdentifySize]
	}
	var out []NamespaceDescriptor
	off := 0
	for off+4 <= len(b) {
		nidt, nidl := b[off], int(b[off+1])
		if nidt == 0 || nidl == 0 {
			break
		}
		if want := nidtLen(nidt); want != 0 && nidl != want {
			return nil, fmt.Errorf("namespace descriptor at %d: type %d has length %d, want %d: %w", off, nidt, nidl, want, ErrMalformed)
		}
		end := off + 4 + nidl
		if end > len(b) {
			return nil, fmt.Errorf("namespace descriptor at %d: length %d runs past %d-byte buffer: %w", off, nidl, len(b), ErrMalformed)
		}
		out = append(out, NamespaceDescriptor{Type: nidt, ID: append([]byte(nil), b[off+4:end]...)})
		off = end
	}
	return out, nil
}
