package nvmetest

import (
	"sync/atomic"
	"time"

	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// Match selects the commands a fault applies to. The zero Match selects
// every I/O command.
type Match struct {
	// Admin selects admin commands instead of I/O commands.
	Admin bool
	// Opcode is the opcode to match when HasOpcode is set.
	Opcode    spec.Opcode
	HasOpcode bool
	// NSID, when not 0, is the namespace to match.
	NSID uint32
	// With Blocks > 0, only commands whose block range (SLBA in CDW10-11,
	// NLB in CDW12) overlaps [LBA, LBA+Blocks) match.
	LBA, Blocks uint64
}

// IO returns a Match for I/O commands with opcode op.
func IO(op spec.Opcode) Match { return Match{Opcode: op, HasOpcode: true} }

// Admin returns a Match for admin commands with opcode op.
func Admin(op spec.Opcode) Match { return Match{Admin: true, Opcode: op, HasOpcode: true} }

// AnyIO returns a Match for every I/O command.
func AnyIO() Match { return Match{} }

// Range returns m restricted to commands touching [lba, lba+n).
func (m Match) Range(lba, n uint64) Match { m.LBA, m.Blocks = lba, n; return m }

func (m *Match) matches(admin bool, cmd *spec.Command) bool {
	if m.Admin != admin || (m.HasOpcode && spec.Opcode(cmd.Opcode) != m.Opcode) {
		return false
	}
	if m.NSID != 0 && cmd.NSID != m.NSID {
		return false
	}
	if m.Blocks > 0 {
		slba := uint64(cmd.CDW11)<<32 | uint64(cmd.CDW10)
		nlb := uint64(cmd.CDW12&0xffff) + 1
		if slba >= m.LBA+m.Blocks || slba+nlb <= m.LBA {
			return false
		}
	}
	return true
}

type faultKind uint8

const (
	faultInject faultKind = iota
	faultDrop
	faultLose
	faultSlow
)

type rule struct {
	kind  faultKind
	m     Match
	st    spec.Status
	delay time.Duration // faultSlow
	count int           // < 0: forever
}

// faults is the armed fault state; the device goroutine owns it.
type faults struct {
	rules               []rule
	bogus, dup, badHead int
}

func (f *faults) armed() bool { return len(f.rules) > 0 }

// action is what the faults do to one command.
type action struct {
	inject bool
	status spec.Status
	drop   bool // hold the completion; Abort finds it
	lose   bool // hold the completion; Abort does not find it
}

// slow reports whether a Slow rule takes cmd, and for how long; it
// counts the rule down. Called when the command is fetched.
func (f *faults) slow(admin bool, cmd *spec.Command) (time.Duration, bool) {
	for i := range f.rules {
		r := &f.rules[i]
		if r.kind != faultSlow || !r.m.matches(admin, cmd) {
			continue
		}
		d := r.delay
		if r.count > 0 {
			r.count--
			if r.count == 0 {
				f.rules = append(f.rules[:i], f.rules[i+1:]...)
			}
		}
		return d, true
	}
	return 0, false
}

func (f *faults) match(admin bool, cmd *spec.Command) action {
	var a action
	for i := 0; i < len(f.rules); i++ {
		r := &f.rules[i]
		if r.kind == faultSlow || !r.m.matches(admin, cmd) {
			continue
		}
		switch r.kind {
		case faultInject:
			if a.inject {
				continue
			}
			a.inject, a.status = true, r.st
		case faultDrop:
			if a.drop || a.lose {
				continue
			}
			a.drop = true
		case faultLose:
			if a.drop || a.lose {
				continue
			}
			a.lose = true
		}
		if r.count > 0 {
			r.count--
			if r.count == 0 {
				f.rules = append(f.rules[:i], f.rules[i+1:]...)
				i--
			}
		}
	}
	return a
}

func (c *Controller) addRule(r rule) {
	if r.count == 0 {
		return
	}
	_ = c.call(func() { c.dev.faults.rules = append(c.dev.faults.rules, r) })
}

// InjectStatus makes the next count commands matching m complete with
// status (sct, sc) without being executed (count < 0: every one, until
// ClearFaults). Any goroutine, also while I/O runs.
func (c *Controller) InjectStatus(m Match, sct, sc uint8, count int) {
	c.addRule(rule{kind: faultInject, m: m, st: spec.MakeStatus(sct, sc), count: count})
}

// DropCompletion makes the next count commands matching m execute but
// post no completion. The device holds each one: an Abort naming it
// completes it with Command Abort Requested (and the Abort's dword 0 bit 0
// clear); a controller reset forgets it. Any goroutine.
func (c *Controller) DropCompletion(m Match, count int) {
	c.addRule(rule{kind: faultDrop, m: m, count: count})
}

// Lose is DropCompletion for a device that has lost the command: Abort
// does not find it (dword 0 bit 0 set), only a controller reset clears
// it. Any goroutine.
func (c *Controller) Lose(m Match, count int) {
	c.addRule(rule{kind: faultLose, m: m, count: count})
}

// Slow makes the next count commands matching m (admin ones too, with
// Admin) take d from fetch to completion, and complete normally then. The
// device is busy with them: an Abort does not find them (dword 0 bit 0
// set), as a controller that cannot stop a command in progress answers.
// Any goroutine.
func (c *Controller) Slow(m Match, d time.Duration, count int) {
	c.addRule(rule{kind: faultSlow, m: m, delay: d, count: count})
}

// BogusCID makes each of the next count I/O completions followed by an
// extra completion whose CID no command visible to the device carries.
// Any goroutine.
func (c *Controller) BogusCID(count int) {
	_ = c.call(func() { c.dev.faults.bogus += count })
}

// DuplicateCID makes each of the next count I/O completions posted twice.
// Any goroutine.
func (c *Controller) DuplicateCID(count int) {
	_ = c.call(func() { c.dev.faults.dup += count })
}

// BadSQHead makes the next count I/O completions report an SQ head
// pointer at or beyond the queue size. Any goroutine.
func (c *Controller) BadSQHead(count int) {
	_ = c.call(func() { c.dev.faults.badHead += count })
}

// ClearFaults disarms every fault armed with the calls above. Commands
// already held stay held. Any goroutine.
func (c *Controller) ClearFaults() {
	_ = c.call(func() { c.dev.faults = faults{} })
}

// FatalStatus sets CSTS.CFS: the controller processes nothing until the
// host clears CC.EN (and sets it again). Any goroutine.
func (c *Controller) FatalStatus() {
	_ = c.call(func() {
		c.dev.fatal = true
		c.dev.setCSTS()
		c.cnt.fatal.Add(1)
	})
}

// Remove takes the controller off the bus: from the time Remove returns,
// every register reads 0xffffffff and nothing is processed, for good.
// Any goroutine.
func (c *Controller) Remove() {
	_ = c.call(func() {
		c.removed.Store(true)
		c.fillRemoved()
	})
}

// Removed reports whether Remove was called.
func (c *Controller) Removed() bool { return c.removed.Load() }

// Stall makes the controller process nothing, not even CC changes, for d
// from now (between two passes of the device: what a pass in progress
// fetches is processed first); Stall(0) ends a stall. Any goroutine.
func (c *Controller) Stall(d time.Duration) {
	_ = c.call(func() { c.stall.Store(now() + int64(d)) })
}

// TriggerEvent completes an outstanding Asynchronous Event Request with
// dword 0 ev (see spec.AsyncEvent), or the next one the host sends. Any
// goroutine.
func (c *Controller) TriggerEvent(ev uint32) {
	_ = c.call(func() { c.dev.triggerEvent(ev) })
}

// Hang makes the controller stop completing anything: from now on it
// fetches commands (admin and I/O) and neither executes nor completes
// them, as a controller whose firmware hung does. Abort finds nothing. A
// controller reset (CC.EN cleared) or a function reset ends it; the
// commands it took are forgotten. Any goroutine.
func (c *Controller) Hang() {
	_ = c.call(func() {
		c.dev.hung = true
		// What waits for its latency hangs too.
		c.dev.cmds.filter(func(p *pendingCmd) bool {
			c.dev.held = append(c.dev.held, heldCmd{sqid: p.sq.id, cq: p.sq.cq, e: cqEntry{sqid: p.sq.id, cid: p.cmd.CID}, op: p.cmd.Opcode, prp1: p.cmd.PRP1})
			return false
		})
	})
}

// Wedge makes the controller unresettable: it hangs (see Hang), ignores
// every later write to CC (CC.EN cleared never takes effect, CSTS.RDY
// stays set) and its function reset fails. Only Remove or Close end it.
// A host can do nothing but leave its memory alone. Any goroutine.
func (c *Controller) Wedge() {
	c.Hang()
	_ = c.call(func() { c.dev.wedged = true })
}

// FatalAtEnable makes the next count enables fail: CSTS.RDY sets together
// with CSTS.CFS, and nothing is processed until the next disable. Any
// goroutine.
func (c *Controller) FatalAtEnable(count int) {
	_ = c.call(func() { c.dev.fatalEnable += count })
}

// A Counter counts the commands matching its Match that the device
// executed (not those completed with an injected status, not those
// dropped by a reset before their latency passed). Count creates one.
type Counter struct {
	m Match
	n atomic.Uint64
}

// Load returns the count so far. Any goroutine.
func (ctr *Counter) Load() uint64 { return ctr.n.Load() }

// Count starts counting the executions of commands matching m, from now
// on. A test registers one per command it wants to follow (with
// Match.Range, one per LBA range) and checks that each ran exactly once.
// Any goroutine.
func (c *Controller) Count(m Match) *Counter {
	ctr := &Counter{m: m}
	_ = c.call(func() { c.dev.counters = append(c.dev.counters, ctr) })
	return ctr
}

// Held returns how many commands the device holds without a completion
// (DropCompletion, Lose, Hang). Any goroutine.
func (c *Controller) Held() int {
	n := 0
	_ = c.call(func() { n = len(c.dev.held) })
	return n
}
