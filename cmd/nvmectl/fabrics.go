package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp"
)

// nvmectl as an NVMe/TCP host: controllers named tcp://HOST[:PORT]/NQN are
// reached through package tcp wherever a PCI address is taken, with the
// connection options of nvme-cli's connect. (nvmf.go is the other side:
// serve --nvmf, the target.)

// isFabricsAddr reports whether a controller name is a transport address
// (tcp://...) rather than a PCI address. Any "scheme://" counts, so that
// rdma://... is refused by tcp.ParseAddress with a message that says so.
func isFabricsAddr(s string) bool { return strings.Contains(s, "://") }

// parseTCPAddr parses a controller name tcp://HOST[:PORT]/NQN; every
// error is a usage error.
func parseTCPAddr(s string, discovery bool) (tcp.Address, error) {
	a, err := tcp.ParseAddress(strings.TrimSpace(s), discovery)
	if err != nil {
		return tcp.Address{}, usageError{err}
	}
	return a, nil
}

// tcpFlags are nvme-cli connect's options, on every verb that takes a
// controller. One value per nvmectl run, shared by its commands through
// app.tcp; check turns the flags into opts.
type tcpFlags struct {
	hostNQN, hostID       string
	nrIOQueues, queueSize int
	kato, reconnectDelay  int // seconds
	ctrlLossTmo           int // seconds; -1: forever
	hdrDigest, dataDigest bool

	root string      // app.root: where /etc/nvme is
	opts tcp.Options // what check made of the flags
}

// Limits of the options, as Linux's fabrics code (drivers/nvme/host/
// fabrics.c) enforces them for nvme-cli's connect.
const (
	minQueueSize = 16   // NVMF_MIN_QUEUE_SIZE
	maxQueueSize = 1024 // NVMF_MAX_QUEUE_SIZE
	maxIOQueues  = 65535
	maxKATO      = 4294967 // seconds: KATO is in milliseconds in 32 bits
)

// tcpFlagNames are the flags addTCPFlags registers, for checks that want
// to know whether any was given.
var tcpFlagNames = []string{"hostnqn", "hostid", "nr-io-queues", "queue-size", "keep-alive-tmo", "reconnect-delay", "ctrl-loss-tmo", "hdr-digest", "data-digest"}

// addTCPFlags registers nvme-cli connect's options on cmd (long names only:
// nvme-cli's one-letter forms clash with nvmectl's -q, -c and -l). They
// appear in --help, the man pages and the shell completion like any flag.
func addTCPFlags(cmd *cobra.Command, f *tcpFlags) {
	fl := cmd.Flags()
	fl.StringVar(&f.hostNQN, "hostnqn", "", "NVMe/TCP: host NQN to connect as (default: /etc/nvme/hostnqn, as nvme-cli; else one made from the host ID)")
	fl.StringVar(&f.hostID, "hostid", "", "NVMe/TCP: host ID, a UUID (default: /etc/nvme/hostid, as nvme-cli; else a random one)")
	fl.IntVar(&f.nrIOQueues, "nr-io-queues", 0, "NVMe/TCP: I/O queues (TCP connections) to create (default: as many as the verb uses: 1, or one per perf poller)")
	fl.IntVar(&f.queueSize, "queue-size", 0, fmt.Sprintf("NVMe/TCP: entries per I/O queue, %d to %d (default 128)", minQueueSize, maxQueueSize))
	fl.IntVar(&f.kato, "keep-alive-tmo", 0, "NVMe/TCP: keep-alive timeout in seconds; Keep Alive goes out every half of it (default 5)")
	fl.IntVar(&f.reconnectDelay, "reconnect-delay", 0, "NVMe/TCP: seconds between attempts to reconnect a lost connection (default 10)")
	fl.IntVar(&f.ctrlLossTmo, "ctrl-loss-tmo", 0, "NVMe/TCP: seconds to keep reconnecting before failing outstanding I/O with ErrRemoved; -1 forever (default 600)")
	fl.BoolVar(&f.hdrDigest, "hdr-digest", false, "NVMe/TCP: CRC32C header digests")
	fl.BoolVar(&f.dataDigest, "data-digest", false, "NVMe/TCP: CRC32C data digests")
	cmd.PreRunE = func(cmd *cobra.Command, args []string) error { return f.check(cmd, args) }
}

// check validates the NVMe/TCP flags before anything connects and fills
// f.opts; the host identity defaults to nvme-cli's files under f.root. A
// flag given with no tcp:// controller among args is a usage error: it
// would be silently ignored.
func (f *tcpFlags) check(cmd *cobra.Command, args []string) error {
	root := f.root
	var given []string
	for _, n := range tcpFlagNames {
		if fl := cmd.Flags().Lookup(n); fl != nil && fl.Changed {
			given = append(given, "--"+n)
		}
	}
	if len(given) > 0 && !slices.ContainsFunc(args, isFabricsAddr) {
		return usagef("%s: only for NVMe/TCP controllers (tcp://HOST[:PORT]/NQN), and none is named", strings.Join(given, ", "))
	}
	o := tcp.Options{HeaderDigest: f.hdrDigest, DataDigest: f.dataDigest}
	hostNQN, hostID := f.hostNQN, f.hostID
	if !cmd.Flags().Changed("hostnqn") {
		hostNQN = readHostFile(root, "hostnqn")
	} else if hostNQN == "" {
		return usagef("--hostnqn is empty")
	}
	if hostNQN != "" {
		if err := fabrics.CheckNQN(hostNQN); err != nil {
			return usagef("--hostnqn: %v", err)
		}
		o.HostNQN = hostNQN
	}
	fromFile := !cmd.Flags().Changed("hostid")
	if fromFile {
		hostID = readHostFile(root, "hostid")
	}
	if hostID != "" {
		id, err := parseUUID(hostID)
		switch {
		case err != nil && fromFile:
			return usagef("%s: %v (give --hostid)", filepath.Join(root, "/etc/nvme/hostid"), err)
		case err != nil:
			return usagef("--hostid: %v", err)
		}
		o.HostID = id
	} else if !fromFile {
		return usagef("--hostid is empty")
	}
	if f.nrIOQueues < 0 || f.nrIOQueues > maxIOQueues {
		return usagef("--nr-io-queues %d: want 1 to %d (or 0 for the default)", f.nrIOQueues, maxIOQueues)
	}
	if cmd.Flags().Changed("nr-io-queues") && f.nrIOQueues == 0 {
		return usagef("--nr-io-queues 0: want 1 to %d", maxIOQueues)
	}
	o.NrIOQueues = f.nrIOQueues
	if cmd.Flags().Changed("queue-size") && (f.queueSize < minQueueSize || f.queueSize > maxQueueSize) {
		return usagef("--queue-size %d: want %d to %d entries, as Linux's nvme-fabrics takes", f.queueSize, minQueueSize, maxQueueSize)
	}
	o.QueueSize = f.queueSize
	if cmd.Flags().Changed("keep-alive-tmo") && (f.kato < 1 || f.kato > maxKATO) {
		return usagef("--keep-alive-tmo %d: want 1 to %d seconds (gonvme always sends Keep Alive)", f.kato, maxKATO)
	}
	o.KeepAliveTimeout = time.Duration(f.kato) * time.Second
	if cmd.Flags().Changed("reconnect-delay") && f.reconnectDelay < 1 {
		return usagef("--reconnect-delay %d: want 1 or more seconds", f.reconnectDelay)
	}
	o.ReconnectDelay = time.Duration(f.reconnectDelay) * time.Second
	switch {
	case !cmd.Flags().Changed("ctrl-loss-tmo"):
	case f.ctrlLossTmo < -1:
		return usagef("--ctrl-loss-tmo %d: want 0 or more seconds, or -1 to reconnect forever", f.ctrlLossTmo)
	case f.ctrlLossTmo == -1:
		o.CtrlLossTimeout = -1
	case f.ctrlLossTmo == 0:
		// nvme-cli's 0: give up at the first loss. tcp.Options reads 0
		// as its default, so the shortest positive time stands for it:
		// the controller is given up when the reconnect attempt made at
		// once fails.
		o.CtrlLossTimeout = time.Nanosecond
	default:
		o.CtrlLossTimeout = time.Duration(f.ctrlLossTmo) * time.Second
	}
	f.opts = o
	return nil
}

// readHostFile reads nvme-cli's /etc/nvme/hostnqn or hostid ("" when
// absent or empty).
func readHostFile(root, name string) string {
	b, err := os.ReadFile(filepath.Join(root, "/etc/nvme", name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// parseUUID reads a host ID as nvme-cli writes it:
// xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, 32 hex digits.
func parseUUID(s string) ([16]byte, error) {
	var id [16]byte
	parts := strings.Split(s, "-")
	if len(parts) != 5 || len(parts[0]) != 8 || len(parts[1]) != 4 || len(parts[2]) != 4 || len(parts[3]) != 4 || len(parts[4]) != 12 {
		return id, fmt.Errorf("%q is not a UUID (want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx in hex)", s)
	}
	if _, err := hex.Decode(id[:], []byte(strings.Join(parts, ""))); err != nil {
		return id, fmt.Errorf("%q is not a UUID: %v", s, err)
	}
	return id, nil
}

// connectTCP connects to the controller named addr (canonical, from
// parseAddr) with the run's NVMe/TCP options and the verb's controller
// options, as pcie.Open would open a PCI one. Without --nr-io-queues it
// asks for the I/O queues the verb asked for.
func connectTCP(a app, addr string, copts *nvme.Options) (*nvme.Controller, error) {
	ta, err := parseTCPAddr(addr, false)
	if err != nil {
		return nil, err
	}
	o := tcp.Options{}
	if a.tcp != nil {
		o = a.tcp.opts
	}
	c := nvme.Options{}
	if copts != nil {
		c = *copts
	}
	if o.NrIOQueues == 0 {
		o.NrIOQueues = c.IOQueues
	} else if c.IOQueues > o.NrIOQueues {
		return nil, usagef("--nr-io-queues %d: this run needs %d I/O queues (one per poller)", o.NrIOQueues, c.IOQueues)
	} else {
		c.IOQueues = o.NrIOQueues
	}
	o.Controller = &c
	ctrl, err := a.connect(ta, &o)
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			return nil, err
		}
		return nil, devicef("connect %s: %w", addr, err)
	}
	return ctrl, nil
}
