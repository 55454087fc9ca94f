package tcp

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Discovery: a short session on the admin queue of a discovery controller
// (Base 2.0, 3.1.2.3, "Discovery Controller"), without the I/O
// controller's bring-up (a discovery controller has no namespaces and no
// I/O queues, and refuses Set Features Number of Queues).

// discoveryDepth is the admin queue of a discovery session.
const discoveryDepth = 32

// discoveryPiece is the most log data one Get Log Page reads.
const discoveryPiece = 16 << 10

// genRetries bounds how often the log is read again because its
// generation counter moved while it was being read.
const genRetries = 10

// session runs admin commands one at a time on a queue.
type session struct {
	q       *queue
	seq     uint16
	timeout time.Duration
}

// exec runs cmd with data (sent when the opcode says host to controller,
// else filled) and returns its completion.
func (s *session) exec(cmd spec.Command, data []byte) (spec.Completion, error) {
	s.seq++
	cmd.CID = s.seq << 5 // slot 0 of a queue whose CIDs keep 5 slot bits
	s.q.Issue(0, &cmd, data)
	var cqe spec.Completion
	got := false
	err := s.q.wait(time.Now().Add(s.timeout), spec.AdminOpcodeName(spec.Opcode(cmd.Opcode)),
		func(c *spec.Completion) { cqe, got = *c, true }, func() bool { return got })
	if err != nil {
		return cqe, err
	}
	if st := cqe.StatusField(); !st.Success() {
		return cqe, fmt.Errorf("%s: %s: status %s", s.q.name, spec.AdminOpcodeName(spec.Opcode(cmd.Opcode)), fabrics.StatusName(st))
	}
	return cqe, nil
}

func (s *session) propertyGet(off uint32, size int) (uint64, error) {
	cqe, err := s.exec((&fabrics.PropertyGetCommand{Attrib: fabrics.PropertyAttrib(size), Offset: off}).SQE(), nil)
	if err != nil {
		return 0, err
	}
	if size == 4 {
		return uint64(cqe.DW0), nil
	}
	return fabrics.PropertyValue(&cqe), nil
}

func (s *session) propertySet(off uint32, v uint32) error {
	_, err := s.exec((&fabrics.PropertySetCommand{Attrib: fabrics.PropertyAttrib(4), Offset: off, Value: uint64(v)}).SQE(), nil)
	return err
}

// enable sets CC.EN and waits for CSTS.RDY, within CAP.TO.
func (s *session) enable() error {
	c, err := s.propertyGet(spec.RegCAP, 8)
	if err != nil {
		return err
	}
	to := max(spec.CAP(c).TO(), 500*time.Millisecond)
	cc := spec.CC(0).WithIOSQES(6).WithIOCQES(4).WithEN(true)
	if err := s.propertySet(spec.RegCC, uint32(cc)); err != nil {
		return err
	}
	deadline := time.Now().Add(to)
	for {
		v, err := s.propertyGet(spec.RegCSTS, 4)
		if err != nil {
			return err
		}
		if st := spec.CSTS(v); st.RDY() {
			return nil
		} else if st.CFS() || time.Now().After(deadline) {
			return fmt.Errorf("%s: %w: not ready: CSTS %v", s.q.name, nvme.ErrTimeout, st)
		}
		time.Sleep(time.Millisecond)
	}
}

// logPage reads len(b) bytes of the Discovery Log Page at offset off, in
// pieces (Get Log Page with offsets: a discovery controller supports
// them, LPA bit 2).
func (s *session) logPage(b []byte, off uint64) error {
	for done := 0; done < len(b); {
		n := min(len(b)-done, discoveryPiece)
		numd := uint32(n/4 - 1)
		o := off + uint64(done)
		cmd := spec.Command{Opcode: uint8(spec.AdminGetLogPage),
			CDW10: uint32(fabrics.LogDiscovery) | (numd&0xffff)<<16, CDW11: numd >> 16,
			CDW12: uint32(o), CDW13: uint32(o >> 32)}
		if _, err := s.exec(cmd, b[done:done+n]); err != nil {
			return fmt.Errorf("discovery log at offset %d: %w", o, err)
		}
		done += n
	}
	return nil
}

// Discover connects to the discovery controller at a, reads the whole
// Discovery Log Page (log 70h) and disconnects. a.NQN empty means the
// well-known discovery NQN. The log is read as the spec asks (Base 2.0,
// 5.16.1.23): the header, the entries, then the header again; a changed
// generation counter starts over. Any goroutine.
func Discover(a Address, opts *Options) ([]fabrics.DiscoveryLogEntry, error) {
	log, err := DiscoverLog(a, opts)
	return log.Entries, err
}

// DiscoverLog is Discover returning the whole log: the generation counter
// (GENCTR, as nvme discover prints it), the number of records and the
// record format with the entries. Any goroutine.
func DiscoverLog(a Address, opts *Options) (fabrics.DiscoveryLog, error) {
	var none fabrics.DiscoveryLog
	o := opts.withDefaults()
	if a.NQN == "" {
		a.NQN = fabrics.DiscoveryNQN
	}
	f := newFabric(a, o)
	defer f.Close()
	// KATO 0: a one-shot discovery association needs no keep alive
	// (nvme-cli and Linux do the same).
	q, err := f.connectQueue(nvme.QueueParams{QID: 0, Depth: discoveryDepth, SlotBits: 5})
	if err != nil {
		return none, fmt.Errorf("nvme/tcp: discover %s: %w", a, err)
	}
	defer q.close()
	timeout := 30 * time.Second
	if o.Controller != nil && o.Controller.AdminTimeout > 0 {
		timeout = o.Controller.AdminTimeout
	}
	s := &session{q: q, timeout: timeout}
	if err := s.enable(); err != nil {
		return none, fmt.Errorf("nvme/tcp: discover %s: %w", a, err)
	}
	hdr := make([]byte, fabrics.DiscoveryLogEntrySize)
	for try := 0; try < genRetries; try++ {
		if err := s.logPage(hdr, 0); err != nil {
			return none, fmt.Errorf("nvme/tcp: discover %s: %w", a, err)
		}
		h, size, err := fabrics.ParseDiscoveryLogHeader(hdr)
		if err != nil {
			return none, fmt.Errorf("nvme/tcp: discover %s: %w", a, err)
		}
		page := make([]byte, size)
		copy(page, hdr)
		if err := s.logPage(page[len(hdr):], uint64(len(hdr))); err != nil {
			return none, fmt.Errorf("nvme/tcp: discover %s: %w", a, err)
		}
		if err := s.logPage(hdr, 0); err != nil {
			return none, fmt.Errorf("nvme/tcp: discover %s: %w", a, err)
		}
		if binary.LittleEndian.Uint64(hdr) != h.GenCtr {
			continue // the log changed while it was read
		}
		log, err := fabrics.ParseDiscoveryLog(page)
		if err != nil {
			return none, fmt.Errorf("nvme/tcp: discover %s: %w", a, err)
		}
		// A normal shutdown ends the association politely; closing the
		// connection would too.
		_ = s.propertySet(spec.RegCC, uint32(spec.CC(0).WithIOSQES(6).WithIOCQES(4).WithEN(true).WithSHN(spec.SHNNormal)))
		return log, nil
	}
	return none, fmt.Errorf("nvme/tcp: discover %s: the log's generation counter changed %d times while it was read", a, genRetries)
}
