package tcp

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/internal/nbsock"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
)

// fabric is the nvme.Fabric of one controller at one address: it opens a
// connection per queue and keeps the controller ID the admin queue's
// Connect was given, for the I/O queues' Connects.
type fabric struct {
	addr    Address
	hostNQN string
	hostID  [16]byte
	opts    *Options
	mem     *dma.Allocator // closed at Close when the transport made it

	mu     sync.Mutex
	cntlid uint16
	live   map[*queue]struct{}
}

func newFabric(a Address, o *Options) *fabric {
	return &fabric{addr: a, hostNQN: o.HostNQN, hostID: o.HostID, opts: o, live: map[*queue]struct{}{}}
}

// String implements nvme.Fabric.
func (f *fabric) String() string { return f.addr.String() }

// ConnectQueue implements nvme.Fabric: dial, ICReq/ICResp, Connect.
func (f *fabric) ConnectQueue(p nvme.QueueParams) (nvme.QueueTransport, error) {
	return f.connectQueue(p)
}

func (f *fabric) connectQueue(p nvme.QueueParams) (*queue, error) {
	q, err := f.dialQueue(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.addr, err)
	}
	return q, nil
}

func (f *fabric) dialQueue(p nvme.QueueParams) (*queue, error) {
	name := fmt.Sprintf("queue %d", p.QID)
	if p.Depth < 2 || p.Depth > 65536 {
		return nil, fmt.Errorf("%s: %w: depth %d", name, nvme.ErrInvalid, p.Depth)
	}
	deadline := time.Now().Add(f.opts.ConnectTimeout)
	hp := net.JoinHostPort(f.addr.Host, strconv.Itoa(f.addr.Port))
	nc, err := net.DialTimeout("tcp", hp, f.opts.ConnectTimeout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	conn, err := nbsock.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	q := newQueue(f, name, p.QID, conn, p.Depth-1, p.SlotBits)
	if p.QID == 0 {
		q.inCap = adminInCapsule
	} else {
		q.inCap = p.InCapsule
	}
	f.mu.Lock()
	f.live[q] = struct{}{}
	cntlid := f.cntlid
	f.mu.Unlock()
	if err := q.initialize(deadline, f.opts.HeaderDigest, f.opts.DataDigest); err != nil {
		q.close()
		return nil, err
	}
	cc := fabrics.ConnectCommand{QID: p.QID, SQSize: uint16(p.Depth - 1)}
	if p.QID == 0 {
		cntlid = fabrics.CNTLIDDynamic
		cc.KATO = uint32(p.KeepAlive / time.Millisecond)
	} else {
		// The host never has more commands outstanding than the queue
		// holds, so it needs no SQ head pointers: the controller may
		// then complete reads with the C2HData SUCCESS flag.
		cc.CAttr = fabrics.CAttrDisableSQFlow
	}
	data, err := fabrics.NewConnectData(f.hostID, cntlid, f.addr.NQN, f.hostNQN)
	if err != nil {
		q.close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	dw0, err := q.connect(deadline, &cc, &data)
	if err != nil {
		q.close()
		return nil, err
	}
	if p.QID == 0 {
		f.mu.Lock()
		f.cntlid = fabrics.ConnectResponse(dw0).CNTLID()
		f.mu.Unlock()
	}
	return q, nil
}

// forget drops a closed queue from the live set.
func (f *fabric) forget(q *queue) {
	f.mu.Lock()
	delete(f.live, q)
	f.mu.Unlock()
}

// Disconnect implements nvme.Fabric.
func (f *fabric) Disconnect() {
	f.mu.Lock()
	qs := make([]*queue, 0, len(f.live))
	for q := range f.live {
		qs = append(qs, q)
	}
	f.mu.Unlock()
	for _, q := range qs {
		q.close()
	}
}

// Close implements nvme.Fabric: every connection ends, and the allocator
// the transport made for the controller is closed once no buffer of it is
// left (buffers still allocated stay valid until freed: nothing across
// the fabric can reach them, and their owner may still use them).
func (f *fabric) Close() error {
	f.Disconnect()
	if f.mem != nil && f.mem.Stats().Buffers == 0 {
		if err := f.mem.Close(); err != nil {
			return fmt.Errorf("nvme/tcp: %s: %w", f.addr, err)
		}
	}
	return nil
}
