package target

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/seedb8fa28ef/gonvme/nvme"
)

// Rescan reads the namespaces of every backing again and exports what
// changed: a namespace attached to a backing appears, a detached one goes
// (commands already on it complete), one whose size or format changed
// is described anew (the ddi devices of the old ones are unregistered).
// Each host controller of an affected subsystem gets
// the changed NSIDs in its Changed Namespace List (log page 04h) and an
// Asynchronous Event Request completed with a Namespace Attribute Changed
// notice, when it holds one and enabled the notice (Linux's initiator
// then reads the log and rescans). Call it when a backing controller
// reports a change: OnEvent does that for package nvme's events. Any
// goroutine.
func (t *Target) Rescan() error {
	var errs []error
	for _, s := range t.subs {
		changed, err := s.rescan()
		if err != nil {
			errs = append(errs, fmt.Errorf("target: rescan %s: %w", s.nqn, err))
		}
		if len(changed) == 0 {
			continue
		}
		t.mu.Lock()
		var ctrls []*controller
		for _, c := range t.ctrls {
			if c.sub == s {
				ctrls = append(ctrls, c)
			}
		}
		t.mu.Unlock()
		for _, c := range ctrls {
			c.namespacesChanged(changed)
		}
	}
	return errors.Join(errs...)
}

// OnEvent is a function for nvme.Options.OnEvent: it runs Rescan after a
// Namespace Attribute Changed notice of a backing controller (which the
// nvme package has handled: read its log, rescanned). Any goroutine.
func (t *Target) OnEvent(ev nvme.AsyncEvent) {
	if len(ev.Attached)+len(ev.Detached)+len(ev.Changed) == 0 && ev.RescanErr == nil {
		return
	}
	if err := t.Rescan(); err != nil {
		t.logf("nvmf: %v", err)
	}
}

// rescan publishes a new namespace table and returns the host NSIDs that
// changed.
func (s *subsystem) rescan() ([]uint32, error) {
	s.scanMu.Lock()
	defer s.scanMu.Unlock()
	old := s.tab.Load()
	tab := &nsTable{byID: map[uint32]*nsInfo{}}
	var changed []uint32
	var errs []error
	seen := map[uint32]bool{}
	for _, p := range s.parts {
		nss, err := p.b.Namespaces()
		if err != nil {
			// Keep what this backing had.
			errs = append(errs, err)
			for _, n := range old.byID {
				if n.part == p {
					tab.add(n)
					seen[n.id] = true
				}
			}
			continue
		}
		for _, ns := range nss {
			id := p.base + ns.ID()
			seen[id] = true
			if o := old.byID[id]; o != nil && o.blocks == ns.Blocks() && o.ns.BlockSize() == ns.BlockSize() &&
				len(ns.IdentifyNamespace()) >= len(o.idn) && bytes.Equal(o.idn, ns.IdentifyNamespace()[:len(o.idn)]) {
				tab.add(o)
				continue
			}
			info, err := s.newNS(p, ns)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			tab.add(info)
			changed = append(changed, id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(old.byID)) {
		if !seen[id] {
			changed = append(changed, id)
		}
	}
	s.tab.Store(tab)
	// Namespaces that left the table (detached, or described anew)
	// leave ddi's registry. A command that found one before the swap
	// still holds its *ddi.Device, which keeps working without the
	// registration: its pieces go to the backing, which answers for the
	// namespace.
	for _, o := range old.byID {
		if tab.byID[o.id] != o {
			errs = append(errs, o.detach())
		}
	}
	slices.Sort(changed)
	return changed, errors.Join(errs...)
}

// detach unregisters n's ddi devices.
func (n *nsInfo) detach() error {
	var errs []error
	for i, d := range n.devs {
		if err := n.part.queues[i].Detach(d); err != nil {
			errs = append(errs, fmt.Errorf("namespace %d: %w", n.id, err))
		}
	}
	return errors.Join(errs...)
}
