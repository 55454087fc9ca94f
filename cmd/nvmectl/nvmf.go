package main

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp/target"
	"github.com/seedb8fa28ef/gonvme/poller"
)

// nvmectl serve --nvmf: export the controllers' namespaces over NVMe/TCP.

// nvmfOpts are serve's NVMe/TCP flags.
type nvmfOpts struct {
	listen     string        // tcp://HOST:PORT, empty: no target
	nqn        string        // subsystem NQN (one controller), or its prefix
	allowHosts []string      // host NQNs let in; empty: any host
	discPort   int           // discovery controller port; 0: none
	oneSub     bool          // one subsystem for all the controllers
	groups     int           // deprecated --nvmf-pollers: the target runs on serve's pollers
	spin       time.Duration // the pollers' spin before sleeping, with --nvmf

	// tgt is the running target, for the controllers' OnEvent (set
	// before the controllers open, the target starts after).
	tgt *atomic.Pointer[target.Target]
}

// onEvent is nvme.Options.OnEvent for serve's controllers: a namespace
// change reaches the target's hosts.
func (o *nvmfOpts) onEvent(ev nvme.AsyncEvent) {
	if o.tgt == nil {
		return
	}
	if t := o.tgt.Load(); t != nil {
		t.OnEvent(ev)
	}
}

// spinTime is poller.Options.SpinTime for serve's pollers: --nvmf-spin
// with --nvmf (the target's host queues run on those pollers), else 0 (the
// default).
func (o *nvmfOpts) spinTime() time.Duration {
	if o.listen == "" {
		return 0
	}
	return o.spin
}

// defaultNQNPrefix is the start of the default subsystem NQN; the
// controller's serial number follows: nqn.2024-01.io.gonvme:SERIAL (the
// serial's printable ASCII without blanks; ctrlN, N from 1 in the
// order given, if none is left). With --one-subsystem the default is
// nqn.2024-01.io.gonvme:SERIAL of the first controller named.
const defaultNQNPrefix = "nqn.2024-01.io.gonvme:"

func addNVMfFlags(f *pflag.FlagSet, o *nvmfOpts) {
	f.StringVar(&o.listen, "nvmf", "", "export the namespaces over NVMe/TCP at tcp://HOST:PORT (HOST defaults to 127.0.0.1, PORT to 4420)")
	f.StringVar(&o.nqn, "nqn", "", "subsystem NQN (default "+defaultNQNPrefix+"SERIAL; with several controllers, -N is appended for the N-th)")
	f.StringSliceVar(&o.allowHosts, "allow-host", nil, "host NQN allowed to connect (repeatable; default: any host)")
	f.IntVar(&o.discPort, "discovery-port", 8009, "port of the NVMe/TCP discovery controller, on the --nvmf host (0: none)")
	f.BoolVar(&o.oneSub, "one-subsystem", false, "export all the controllers as one subsystem (namespace IDs numbered across them: the N-th controller's NSIDs follow the NN of those before)")
	f.IntVar(&o.groups, "nvmf-pollers", 1, "ignored: the hosts' I/O queues run on serve's pollers (--pollers)")
	_ = f.MarkDeprecated("nvmf-pollers", "the hosts' I/O queues run on serve's pollers: use --pollers")
	f.DurationVar(&o.spin, "nvmf-spin", 50*time.Microsecond, "with --nvmf: how long an idle poller keeps polling its queue pairs and the hosts' sockets before it sleeps (longer: lower latency at low depth, more CPU)")
}

// nvmfAddr parses --nvmf.
func nvmfAddr(s string) (host, port string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "tcp" || u.Path != "" && u.Path != "/" {
		return "", "", fmt.Errorf("--nvmf %q: want tcp://HOST:PORT", s)
	}
	host, port = u.Hostname(), u.Port()
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "4420"
	}
	return host, port, nil
}

// subsystemNQN returns the NQN of the i-th of n controllers.
func subsystemNQN(o nvmfOpts, c *nvme.Controller, i, n int) string {
	if o.nqn != "" {
		if n == 1 {
			return o.nqn
		}
		return fmt.Sprintf("%s-%d", o.nqn, i+1)
	}
	serial := strings.TrimSpace(string(c.Identify().SN[:]))
	var b strings.Builder
	for _, r := range serial {
		if r > ' ' && r < 0x7f {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		fmt.Fprintf(&b, "ctrl%d", i+1)
	}
	return defaultNQNPrefix + b.String()
}

// startNVMf runs the NVMe/TCP target over ctrls, if --nvmf was given,
// and returns a function that stops it (before grp stops). The hosts'
// I/O queues run on grp's pollers, one poll group on each, with those
// pollers' queue pairs on the controllers.
func startNVMf(o *nvmfOpts, ctrls []*nvme.Controller, grp *poller.Group, stdout io.Writer) (stop func(), err error) {
	if o.listen == "" {
		return func() {}, nil
	}
	if o.spin < 0 {
		return nil, usagef("--nvmf-spin must not be negative")
	}
	host, port, err := nvmfAddr(o.listen)
	if err != nil {
		return nil, usagef("%v", err)
	}
	for _, h := range o.allowHosts {
		if err := fabrics.CheckNQN(h); err != nil {
			return nil, usagef("--allow-host: %v", err)
		}
	}
	var lns []net.Listener
	var tgt *target.Target
	if o.tgt == nil {
		o.tgt = new(atomic.Pointer[target.Target])
	}
	stop = func() {
		o.tgt.Store(nil)
		if tgt != nil {
			tgt.Close()
			for i, g := range tgt.Stats() {
				avg := func(d time.Duration) float64 {
					return float64(d.Microseconds()) / float64(max(g.Commands, 1))
				}
				fmt.Fprintf(stdout, "NVMe/TCP poll group %d: %d commands, average %.0f µs on the device and %.0f µs from capsule to answer sent; %d sleeps, %d naps.\n",
					i, g.Commands, avg(g.Backing), avg(g.Answer), g.Sleeps, g.Naps)
			}
		}
		for _, l := range lns {
			l.Close()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	var subs []target.Subsystem
	for i, c := range ctrls {
		b, err := target.DeviceBacking(c)
		if err != nil {
			return nil, deviceError{err}
		}
		if o.oneSub && i > 0 {
			subs[0].Backings = append(subs[0].Backings, b)
			continue
		}
		n := len(ctrls)
		if o.oneSub {
			n = 1
		}
		subs = append(subs, target.Subsystem{NQN: subsystemNQN(*o, c, i, n), Backings: []target.Backing{b}})
	}
	addrs := []target.Address{{Host: host, Port: port}}
	tgt, err = target.New(target.Config{AllowHosts: o.allowHosts, Advertise: addrs, Pollers: grp,
		Logf: func(f string, a ...any) { fmt.Fprintf(stdout, f+"\n", a...) }}, subs...)
	if err != nil {
		return nil, deviceError{err}
	}
	o.tgt.Store(tgt)
	ports := []string{port}
	if o.discPort != 0 && fmt.Sprint(o.discPort) != port {
		ports = append(ports, fmt.Sprint(o.discPort))
	}
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort(host, p))
		if err != nil {
			return nil, usagef("--nvmf: %v", err)
		}
		lns = append(lns, l)
		go func() { _ = tgt.Serve(l) }()
	}
	for _, s := range subs {
		fmt.Fprintf(stdout, "Serving %s over NVMe/TCP on %s (discovery on port %s).\n", s.NQN, net.JoinHostPort(host, port), ports[len(ports)-1])
	}
	return stop, nil
}
