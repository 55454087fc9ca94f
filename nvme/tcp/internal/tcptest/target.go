package tcptest

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Config describes the target. Zero fields take the defaults in brackets.
type Config struct {
	SubNQN     string // the NVM subsystem's NQN ["nqn.2024-01.io.gonvme:tcptest"]
	BlockSize  int    // logical block size, a power of two >= 512 [512]
	Blocks     int    // namespace size in blocks [2048]
	MDTS       uint8  // Identify MDTS, in 4 KiB units as 2^MDTS [5: 128 KiB]
	MaxH2CData uint32 // MAXH2CDATA announced [8192]
	InCapsule  uint32 // in-capsule data accepted on I/O queues [4096]
	R2TChunk   uint32 // bytes asked for per R2T [32768]
	C2HChunk   uint32 // bytes per C2HData PDU [16384]
	// CPDA is the alignment the target asks for H2C data: (CPDA+1)*4
	// bytes [0].
	CPDA uint8
	// Success completes reads with the SUCCESS flag on the last C2HData
	// instead of a CapsuleResp.
	Success bool
	// Addr and Port are what the discovery log page reports
	// ["127.0.0.1", "4420"].
	Addr, Port string
}

// AdminInCapsule is the in-capsule data the admin queue accepts: 8 KiB,
// as Linux's nvmet (room for the 1024-byte Connect data).
const AdminInCapsule = 8192

// Target is an NVMe/TCP subsystem with one dynamic controller per admin
// connection and one namespace shared by all.
type Target struct {
	cfg Config

	mu     sync.Mutex
	ctrls  map[uint16]*controller
	nextID uint16
	data   []byte // the namespace
	errs   []error
	wg     sync.WaitGroup
}

// New returns a target with cfg's defaults filled in.
func New(cfg Config) *Target {
	if cfg.SubNQN == "" {
		cfg.SubNQN = "nqn.2024-01.io.gonvme:tcptest"
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = 512
	}
	if cfg.Blocks == 0 {
		cfg.Blocks = 2048
	}
	if cfg.MDTS == 0 {
		cfg.MDTS = 5
	}
	if cfg.MaxH2CData == 0 {
		cfg.MaxH2CData = 8192
	}
	if cfg.InCapsule == 0 {
		cfg.InCapsule = 4096
	}
	if cfg.R2TChunk == 0 {
		cfg.R2TChunk = 32768
	}
	if cfg.C2HChunk == 0 {
		cfg.C2HChunk = 16384
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1"
	}
	if cfg.Port == "" {
		cfg.Port = "4420"
	}
	return &Target{cfg: cfg, ctrls: map[uint16]*controller{}, nextID: 1,
		data: make([]byte, cfg.BlockSize*cfg.Blocks)}
}

// Config returns the configuration with defaults filled in.
func (t *Target) Config() Config { return t.cfg }

// Errors returns the protocol errors the target found in what hosts sent
// (each also ended its connection with a TermReq), and Connect commands it
// refused.
func (t *Target) Errors() []error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]error(nil), t.errs...)
}

func (t *Target) record(err error) {
	t.mu.Lock()
	t.errs = append(t.errs, err)
	t.mu.Unlock()
}

// ReadAt copies namespace bytes at off into b (for tests to check what a
// host wrote).
func (t *Target) ReadAt(b []byte, off int) {
	t.mu.Lock()
	copy(b, t.data[off:])
	t.mu.Unlock()
}

// Serve runs a connection until the host closes it or breaks the protocol;
// it closes c and returns why it ended (nil for a close by the host).
func (t *Target) Serve(c net.Conn) error {
	defer c.Close()
	s := newSession(t, c)
	return s.run()
}

// Go runs Serve in a goroutine; Wait waits for all of them.
func (t *Target) Go(c net.Conn) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		_ = t.Serve(c)
	}()
}

// Wait waits for the connections started with Go and Listen to end.
func (t *Target) Wait() { t.wg.Wait() }

// Listen serves every connection l accepts until l is closed.
func (t *Target) Listen(l net.Listener) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Go(c)
		}
	}()
}

// controller is one dynamic controller: created by an admin Connect.
type controller struct {
	id      uint16
	hostNQN string
	hostID  [16]byte
	cc      spec.CC
	csts    uint32
	queues  uint16 // I/O queues granted by Set Features
}

const (
	mqes      = 127 // CAP.MQES: 128 entries
	vsVersion = 0x00020000
)

func (t *Target) newController(hostNQN string, hostID [16]byte) *controller {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := &controller{id: t.nextID, hostNQN: hostNQN, hostID: hostID, queues: 4}
	t.nextID++
	t.ctrls[c.id] = c
	return c
}

func (t *Target) controller(id uint16) *controller {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ctrls[id]
}

func (t *Target) dropController(id uint16) {
	t.mu.Lock()
	delete(t.ctrls, id)
	t.mu.Unlock()
}

// cap returns CAP: MQES 127, CQR, TO 1 s, CSS NVM, MPSMIN 0 (4 KiB).
func capValue() uint64 {
	return mqes | 1<<16 | 2<<24 | 1<<37
}

func (t *Target) propertyGet(c *controller, off uint32, size int) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	want, ok := fabrics.PropertySize(off)
	if !ok || want != size {
		return 0, false
	}
	switch off {
	case spec.RegCAP:
		return capValue(), true
	case spec.RegVS:
		return vsVersion, true
	case spec.RegCC:
		return uint64(c.cc), true
	case spec.RegCSTS:
		return uint64(c.csts), true
	}
	return 0, true
}

func (t *Target) propertySet(c *controller, off uint32, size int, v uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if off != spec.RegCC || size != 4 {
		return false
	}
	cc := spec.CC(v)
	switch {
	case cc.SHN() != 0:
		c.csts = c.csts&^(3<<2) | spec.SHSTComplete<<2
	case cc.EN() && !c.cc.EN():
		c.csts |= 1
	case !cc.EN() && c.cc.EN():
		c.csts = 0
	}
	c.cc = cc
	return true
}

func (t *Target) identifyController(c *controller) []byte {
	b := make([]byte, spec.IdentifySize)
	le := binary.LittleEndian
	le.PutUint16(b[0x000:], 0x1b36) // a QEMU-like vendor
	copy(b[0x004:0x018], fmt.Sprintf("%-20s", "TCPTEST0001"))
	copy(b[0x018:0x040], fmt.Sprintf("%-40s", "gonvme tcptest"))
	copy(b[0x040:0x048], fmt.Sprintf("%-8s", "1.0"))
	b[0x04d] = t.cfg.MDTS
	le.PutUint16(b[0x04e:], c.id)
	le.PutUint32(b[0x050:], vsVersion)
	b[0x06f] = spec.CtrlTypeIO
	le.PutUint16(b[0x140:], 100)    // KAS: 10 s granularity in 100 ms units
	b[0x200], b[0x201] = 0x66, 0x44 // SQES, CQES
	le.PutUint16(b[0x202:], mqes+1) // MAXCMD
	le.PutUint32(b[0x204:], 1)      // NN
	le.PutUint32(b[0x218:], 1|spec.SGLSAddressAsOffset)
	copy(b[0x300:0x400], t.cfg.SubNQN)
	le.PutUint32(b[0x700:], (spec.CommandSize+t.cfg.InCapsule)/16) // IOCCSZ
	le.PutUint32(b[0x704:], spec.CompletionSize/16)                // IORCSZ
	return b
}

func (t *Target) identifyNamespace() []byte {
	b := make([]byte, spec.IdentifySize)
	le := binary.LittleEndian
	n := uint64(t.cfg.Blocks)
	le.PutUint64(b[0:], n)
	le.PutUint64(b[8:], n)
	le.PutUint64(b[16:], n)
	b[25] = 0 // NLBAF: one format
	b[26] = 0 // FLBAS: format 0
	lbads := 0
	for 1<<lbads < t.cfg.BlockSize {
		lbads++
	}
	b[128+2] = byte(lbads)
	return b
}

// discoveryLog returns the Discovery Log Page: this subsystem on this
// port.
func (t *Target) discoveryLog() []byte {
	b := make([]byte, 2*fabrics.DiscoveryLogEntrySize)
	h := fabrics.DiscoveryLogHeader{GenCtr: 1, NumRec: 1}
	h.MarshalTo(b)
	e := fabrics.DiscoveryLogEntry{TRType: fabrics.TRTypeTCP, AdrFam: fabrics.AdrFamIPv4, SubType: fabrics.SubTypeNVM,
		TReq: fabrics.TReqNotSpecified, PortID: 1, CNTLID: fabrics.CNTLIDDynamic, ASQSZ: 32}
	e.SetStrings(t.cfg.Port, t.cfg.Addr, t.cfg.SubNQN)
	e.MarshalTo(b[fabrics.DiscoveryLogEntrySize:])
	return b
}
