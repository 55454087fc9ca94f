// Command guestbare is the upper-bound row of `go run ./hack/qemu bench`:
// the least a program can do to run 4 KiB random I/O on an NVMe controller
// through VFIO, on the same device in the same boot as the other rows.
//
// It opens the controller bound to vfio-pci, enables it with an admin
// queue, asks for one I/O queue pair and creates it (polled, no
// interrupts), and then, for the warm-up and the measured seconds, keeps
// -q commands in flight: reap every completion whose phase bit flipped,
// resubmit its slot at a new random block, write the head and tail
// doorbells once per batch. Nothing else: no package nvme, no poller, no
// ddi, no command ID tracking beyond the slot (the command ID is the slot),
// no timeouts, no PRP lists (one 4 KiB page per command), and the only
// check is the completion status. With -shadow (the default) it uses shadow
// doorbells when the controller offers them (Doorbell Buffer Config, the
// EventIdx rule of Linux's nvme_dbbuf_need_event), as gonvme's best row
// does; -shadow=false writes every doorbell to its register.
//
// Three knobs, off in the bench, are for finding out what bounds the loop
// (issue 16): -entries sets the I/O queue size (the bench uses -q+1, as
// nvmectl perf sizes its queues); -spin adds busy work per completion, a
// stand-in for a driver's CPU time per I/O; -ring-every writes the SQ tail
// doorbell every N resubmissions within a pass as well, to overlap the
// host's work with the controller's. In a TCG guest the loop is a
// ping-pong with QEMU's main loop: -spin 1us took QD32 with MMIO doorbells
// from 272k to 160k IOPS, and -ring-every 4 made it slower, not faster.
//
// It prints one bench.Sample line (engine "bare"): IOPS, and latency from
// submission to completion in µs. Before it, on standard error, what the
// I/O queue's doorbells cost over the run (warm-up included): the passes
// that reaped and their completions, and for the SQ tail and the CQ head
// how many updates were written to the register and how many only to the
// shadow buffer (EventIdx said the controller did not need them), the
// counts gonvme's queue pair statistics keep (MMIODoorbells,
// SavedDoorbells). A separate program rather than a hidden
// nvmectl verb: it must not share the driver's code it bounds, and it is a
// bench fixture that users of nvmectl have no use for.
//
// Imports: vfio, dma, internal/mmio, nvme/spec, hack/qemu/internal/bench,
// x/sys/unix (the CPU affinity).
// One goroutine.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedb8fa28ef/gonvme/dma"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/bench"
	"github.com/seedb8fa28ef/gonvme/internal/mmio"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

func main() {
	qd := flag.Int("q", 32, "commands in flight")
	secs := flag.Int("t", 5, "measured seconds")
	warm := flag.Int("warmup", 1, "seconds before measuring")
	wl := flag.String("w", bench.RandRead, "randread or randwrite")
	shadow := flag.Bool("shadow", true, "use shadow doorbells when the controller offers them")
	entries := flag.Int("entries", 0, "I/O queue entries (0: one more than -q, the fewest that hold -q commands)")
	every := flag.Int("ring-every", 0, "write the SQ tail doorbell after every N resubmissions within a pass too (0: once per pass)")
	spin := flag.Duration("spin", 0, "busy work per completion (a stand-in for a driver's per-I/O CPU time)")
	cpu := flag.Int("cpu", 1, "CPU to run the loop on, as nvmectl perf -c 1 puts its poller; -1 for any")
	flag.Parse()
	s := bench.Sample{Engine: bench.EngineBare, Workload: *wl, Depth: *qd}
	if *entries == 0 {
		*entries = *qd + 1
	}
	if flag.NArg() != 1 || *qd < 1 || *qd > 1023 || *entries <= *qd || *entries > 256 || *secs < 1 || (*wl != bench.RandRead && *wl != bench.RandWrite) {
		fmt.Fprintln(os.Stderr, "usage: guestbare [-q QD] [-entries N] [-t SEC] [-warmup SEC] [-w randread|randwrite] [-shadow=false] [-spin D] [-ring-every N] ADDR")
		os.Exit(2)
	}
	var err error
	if *cpu >= 0 {
		// The loop's goroutine stays on this thread, and the thread on cpu.
		runtime.LockOSThread()
		var set unix.CPUSet
		set.Set(*cpu)
		if e := unix.SchedSetaffinity(0, &set); e != nil {
			err = fmt.Errorf("pin to CPU %d: %w", *cpu, e)
		}
	}
	if err == nil {
		err = run(flag.Arg(0), *qd, *entries, *secs, *warm, *wl == bench.RandWrite, *shadow, *spin, *every, &s)
	}
	if err != nil {
		s.Err = err.Error()
	}
	fmt.Println(s.Line())
	if err != nil {
		os.Exit(1)
	}
}

// ring is one submission queue and its completion queue.
type ring struct {
	regs       mmio.Region
	sq         []byte
	cq         mmio.Region
	size       uint16
	tail, head uint16
	phase      bool
	sqDB, cqDB uintptr
	// shadow doorbells (off when shadow.Len() == 0)
	shadow, ei   mmio.Region
	sqOff, cqOff uintptr
	lastTail     uint16
	lastHead     uint16
	n            counts
}

// counts is what the doorbells cost over a run, printed on standard error
// (issue 16: the same counts as gonvme's queue pair statistics).
type counts struct {
	passes, reaped  uint64 // loop passes that reaped, completions
	sqMMIO, sqSaved uint64 // SQ tail updates: register writes, shadow only
	cqMMIO, cqSaved uint64 // CQ head updates: register writes, shadow only
}

func (r *ring) put(slot uint16, cmd *[64]byte) {
	copy(r.sq[int(slot)*spec.CommandSize:], cmd[:])
}

// doorbells gives the controller the new head (if reaped) and tail.
func (r *ring) doorbells(reaped bool) {
	if r.shadow.Len() == 0 {
		if reaped {
			r.regs.Write32(r.cqDB, uint32(r.head))
			r.n.cqMMIO++
		}
		if r.tail != r.lastTail {
			r.regs.Write32(r.sqDB, uint32(r.tail))
			r.lastTail = r.tail
			r.n.sqMMIO++
		}
		return
	}
	sq := r.tail != r.lastTail
	if reaped {
		r.shadow.Write32(r.cqOff, uint32(r.head))
	}
	if sq {
		r.shadow.Write32(r.sqOff, uint32(r.tail))
	}
	mmio.Fence()
	if reaped {
		if ei := uint16(r.ei.Read32(r.cqOff)); r.head-ei-1 < r.head-r.lastHead {
			r.regs.Write32(r.cqDB, uint32(r.head))
			r.n.cqMMIO++
		} else {
			r.n.cqSaved++
		}
		r.lastHead = r.head
	}
	if sq {
		if ei := uint16(r.ei.Read32(r.sqOff)); r.tail-ei-1 < r.tail-r.lastTail {
			r.regs.Write32(r.sqDB, uint32(r.tail))
			r.n.sqMMIO++
		} else {
			r.n.sqSaved++
		}
		r.lastTail = r.tail
	}
}

// reap returns the next completion's command ID and status, if posted.
func (r *ring) reap() (cid uint16, st spec.Status, ok bool) {
	off := uintptr(r.head) * spec.CompletionSize
	dw3 := r.cq.Read32(off + 12)
	cid, phase, st := spec.SplitDW3(dw3)
	if phase != r.phase {
		return 0, 0, false
	}
	r.head++
	if r.head == r.size {
		r.head, r.phase = 0, !r.phase
	}
	return cid, st, true
}

func cmdBytes(op uint8, cid uint16, nsid uint32, prp1, prp2 uint64, cdw10, cdw11, cdw12 uint32) [64]byte {
	var b [64]byte
	le := binary.LittleEndian
	b[0] = op
	le.PutUint16(b[2:], cid)
	le.PutUint32(b[4:], nsid)
	le.PutUint64(b[24:], prp1)
	le.PutUint64(b[32:], prp2)
	le.PutUint32(b[40:], cdw10)
	le.PutUint32(b[44:], cdw11)
	le.PutUint32(b[48:], cdw12)
	return b
}

func run(addr string, qd, entries, secs, warm int, write, useShadow bool, spin time.Duration, every int, s *bench.Sample) error {
	all, err := vfio.List()
	if err != nil {
		return err
	}
	var info *vfio.Controller
	for i := range all {
		if all[i].Addr == addr {
			info = &all[i]
		}
	}
	if info == nil || info.Driver != "vfio-pci" {
		return fmt.Errorf("%s: no NVMe controller bound to vfio-pci there", addr)
	}
	cont, err := vfio.OpenContainer()
	if err != nil {
		return err
	}
	defer cont.Close()
	g, err := vfio.OpenGroup(info.Group, addr)
	if err != nil {
		return err
	}
	defer g.Close()
	if err := g.SetContainer(cont); err != nil {
		return err
	}
	mem, err := dma.NewAllocator(dma.NewVFIOMapper(cont))
	if err != nil {
		return err
	}
	dev, err := g.OpenDevice(addr)
	if err != nil {
		return err
	}
	defer dev.Close()
	bar, err := dev.MapBAR(0)
	if err != nil {
		return err
	}
	if err := dev.SetBusMaster(true); err != nil {
		return err
	}
	regs := mmio.New(bar)
	caps := spec.CAP(regs.Read64(spec.RegCAP))
	dstrd := caps.DSTRD()
	wait := func(rdy bool) error {
		for end := time.Now().Add(max(caps.TO(), time.Second)); time.Now().Before(end); time.Sleep(100 * time.Microsecond) {
			if spec.CSTS(regs.Read32(spec.RegCSTS)).RDY() == rdy {
				return nil
			}
		}
		return fmt.Errorf("CSTS.RDY did not become %v", rdy)
	}
	// Every buffer: admin SQ and CQ, I/O SQ and CQ, identify page, data
	// (one page per slot), shadow doorbells and EventIdx.
	const asize = 8
	size := uint16(entries)
	page := 4096
	buf, err := mem.Alloc(page * (4 + 1 + qd + 2 + (int(size)*spec.CommandSize+page-1)/page))
	if err != nil {
		return err
	}
	defer func() {
		regs.Write32(spec.RegCC, 0) // stop the controller before the memory goes
		_ = wait(false)
		_ = dev.SetBusMaster(false)
		mem.Free(buf)
		mem.Close()
	}()
	at := func(pg int) ([]byte, uint64) {
		return buf.Bytes[pg*page : (pg+1)*page], uint64(buf.IOVAAt(pg * page))
	}
	asq, asqIOVA := at(0)
	acq, acqIOVA := at(1)
	icq, icqIOVA := at(2)
	idb, idIOVA := at(3)
	dbs, dbsIOVA := at(4)
	eis, eisIOVA := at(5)
	dataPage := 6
	isqIOVA := uint64(buf.IOVAAt((dataPage + qd) * page))
	isq := buf.Bytes[(dataPage+qd)*page:]
	if int(size)*spec.CompletionSize > page {
		return fmt.Errorf("queue depth %d: the completion queue does not fit a page", qd)
	}

	// Enable with an admin queue.
	regs.Write32(spec.RegCC, 0)
	if err := wait(false); err != nil {
		return err
	}
	regs.Write32(spec.RegAQA, uint32(spec.MakeAQA(asize-1, asize-1)))
	regs.Write64(spec.RegASQ, asqIOVA)
	regs.Write64(spec.RegACQ, acqIOVA)
	regs.Write32(spec.RegCC, uint32(spec.CC(0).WithIOSQES(6).WithIOCQES(4).WithEN(true)))
	if err := wait(true); err != nil {
		return err
	}
	admin := &ring{regs: regs, sq: asq, cq: mmio.New(acq), size: asize, phase: true,
		sqDB: spec.SQTailDoorbell(0, dstrd), cqDB: spec.CQHeadDoorbell(0, dstrd)}
	var acid uint16
	adminCmd := func(op uint8, nsid uint32, prp1, prp2 uint64, cdw10, cdw11 uint32) (spec.Status, error) {
		acid++
		c := cmdBytes(op, acid, nsid, prp1, prp2, cdw10, cdw11, 0)
		admin.put(admin.tail, &c)
		admin.tail = (admin.tail + 1) % admin.size
		admin.doorbells(false)
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
			if _, st, ok := admin.reap(); ok {
				admin.doorbells(true)
				return st, nil
			}
		}
		return 0, fmt.Errorf("admin command %#x: no completion", op)
	}
	ok := func(what string, st spec.Status, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !st.Success() {
			return fmt.Errorf("%s: status %v", what, st)
		}
		return nil
	}
	st, err := adminCmd(uint8(spec.AdminIdentify), 0, idIOVA, 0, uint32(spec.CNSController), 0)
	if err := ok("identify", st, err); err != nil {
		return err
	}
	id, err := spec.ParseIdentifyController(idb)
	if err != nil {
		return err
	}
	st, err = adminCmd(uint8(spec.AdminIdentify), 1, idIOVA, 0, uint32(spec.CNSNamespace), 0)
	if err := ok("identify namespace 1", st, err); err != nil {
		return err
	}
	ns, err := spec.ParseIdentifyNamespace(idb)
	if err != nil {
		return err
	}
	bs, err := ns.BlockSize()
	if err != nil {
		return err
	}
	blocks := ns.NSZE
	if bs > 4096 || blocks < 4096/uint64(bs) {
		return fmt.Errorf("namespace 1: %d blocks of %d bytes: not usable for 4 KiB I/O", blocks, bs)
	}
	nlb := uint32(4096/bs) - 1
	units := blocks / uint64(4096/bs)

	st, err = adminCmd(uint8(spec.AdminSetFeatures), 0, 0, 0, uint32(spec.FeatureNumberOfQueues), 0) // one SQ, one CQ (0's based)
	if err := ok("set number of queues", st, err); err != nil {
		return err
	}
	io := &ring{regs: regs, sq: isq, cq: mmio.New(icq), size: size, phase: true,
		sqDB: spec.SQTailDoorbell(1, dstrd), cqDB: spec.CQHeadDoorbell(1, dstrd)}
	if useShadow && id.OACS&spec.OACSDoorbellBuffer != 0 {
		clear(dbs)
		clear(eis)
		st, err = adminCmd(uint8(spec.AdminDoorbellBufferConfig), 0, dbsIOVA, eisIOVA, 0, 0)
		if err := ok("doorbell buffer config", st, err); err != nil {
			return err
		}
		io.shadow, io.ei = mmio.New(dbs), mmio.New(eis)
		io.sqOff = spec.SQTailDoorbell(1, dstrd) - spec.RegDoorbellBase
		io.cqOff = spec.CQHeadDoorbell(1, dstrd) - spec.RegDoorbellBase
	}
	st, err = adminCmd(uint8(spec.AdminCreateIOCQ), 0, icqIOVA, 0, uint32(size-1)<<16|1, 1)
	if err := ok("create io cq", st, err); err != nil {
		return err
	}
	st, err = adminCmd(uint8(spec.AdminCreateIOSQ), 0, isqIOVA, 0, uint32(size-1)<<16|1, 1<<16|1)
	if err := ok("create io sq", st, err); err != nil {
		return err
	}

	// The loop. Slot i (command ID i) uses data page i.
	op := uint8(spec.IORead)
	if write {
		op = uint8(spec.IOWrite)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	cmds := make([][64]byte, qd)
	sent := make([]int64, qd)
	issue := func(slot uint16, now int64) {
		lba := rng.Uint64N(units) * uint64(4096/bs)
		c := &cmds[slot]
		binary.LittleEndian.PutUint32(c[40:], uint32(lba))
		binary.LittleEndian.PutUint32(c[44:], uint32(lba>>32))
		io.put(io.tail, c)
		io.tail++
		if io.tail == io.size {
			io.tail = 0
		}
		sent[slot] = now
	}
	for i := range cmds {
		_, prp := at(dataPage + i)
		cmds[i] = cmdBytes(op, uint16(i), 1, prp, 0, 0, 0, nlb)
	}
	base := time.Now()
	mono := func() int64 { return int64(time.Since(base)) }
	for i := range qd {
		issue(uint16(i), mono())
	}
	io.doorbells(false)
	lats := make([]int64, 0, 1<<20)
	measureFrom := int64(time.Duration(warm) * time.Second)
	end := measureFrom + int64(time.Duration(secs)*time.Second)
	var ios uint64
	for {
		now := mono()
		if now >= end {
			break
		}
		n := 0
		for {
			cid, st, got := io.reap()
			if !got {
				break
			}
			if int(cid) >= qd {
				return fmt.Errorf("completion with command ID %d: none issued", cid)
			}
			if !st.Success() {
				return fmt.Errorf("command %d: status %v", cid, st)
			}
			n++
			if spin > 0 {
				for t := time.Now(); time.Since(t) < spin; {
				}
			}
			if sent[cid] >= measureFrom {
				ios++
				if len(lats) < cap(lats) {
					lats = append(lats, now-sent[cid])
				}
			}
			issue(cid, now)
			if every > 0 && n%every == 0 {
				io.doorbells(false)
			}
		}
		if n > 0 {
			io.doorbells(true)
			io.n.passes++
			io.n.reaped += uint64(n)
		}
	}
	c := io.n
	fmt.Fprintf(os.Stderr, "guestbare: shadow %v: %d passes, %d completions; SQ tail: %d register writes, %d shadow only; CQ head: %d register writes, %d shadow only\n",
		io.shadow.Len() > 0, c.passes, c.reaped, c.sqMMIO, c.sqSaved, c.cqMMIO, c.cqSaved)
	elapsed := time.Duration(end - measureFrom).Seconds()
	if ios == 0 || len(lats) == 0 {
		return errors.New("no I/O completed")
	}
	slices.Sort(lats)
	us := func(q float64) float64 { return float64(lats[int(q*float64(len(lats)-1))]) / 1e3 }
	var sum int64
	for _, l := range lats {
		sum += l
	}
	s.IOs, s.Seconds = ios, elapsed
	s.IOPS = float64(ios) / elapsed
	s.MiBps = s.IOPS * 4096 / (1 << 20)
	s.Lat = &bench.Latency{Avg: float64(sum) / float64(len(lats)) / 1e3, Min: us(0), Max: us(1), P50: us(0.5), P90: us(0.9), P99: us(0.99), P999: us(0.999)}
	// The disable in the deferred cleanup forgets the queues and stops
	// the controller before the memory is freed.
	return nil
}
