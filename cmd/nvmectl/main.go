package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/seedb8fa28ef/gonvme/internal/mmio"
	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
	"github.com/seedb8fa28ef/gonvme/nvme/pcie"
	"github.com/seedb8fa28ef/gonvme/nvme/tcp"
	"github.com/seedb8fa28ef/gonvme/vfio"
)

// Exit codes; doc.go explains them.
const (
	exitOK     = 0
	exitUsage  = 1
	exitDevice = 2
)

// deviceError marks an error that comes from the machine (sysfs, drivers,
// the device) rather than from the command line: exit status 2.
type deviceError struct{ err error }

func (e deviceError) Error() string { return e.err.Error() }
func (e deviceError) Unwrap() error { return e.err }

// usageError marks an error in what the user asked for (a bad value, an
// unknown controller or namespace, a range past the end): exit status 1.
// Nothing was sent to the device.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }
func devicef(format string, args ...any) error {
	return deviceError{fmt.Errorf(format, args...)}
}

// app holds what the commands need from the outside, so tests can replace
// it. Zero fields get the real thing (see defaults).
type app struct {
	// list enumerates NVMe controllers (vfio.List).
	list func() ([]vfio.Controller, error)
	// open brings up a controller bound to vfio-pci (pcie.Open).
	open func(addr string) (*nvme.Controller, error)
	// bind and release move a controller between drivers (vfio.Bind,
	// vfio.Release).
	bind    func(addr string, opts ...vfio.BindOption) (string, error)
	release func(addr, driver string) error
	// root prefixes /sys, /proc and /dev: "" on a real machine, a fake
	// tree in tests.
	root string
	// memlock returns RLIMIT_MEMLOCK (soft, hard).
	memlock func() (uint64, uint64, error)
	// stdin is where write and compare read data without -d.
	stdin io.Reader
	// getenv reads the environment (setup.sh's variables).
	getenv func(string) string
	// regs maps a controller's registers read-only without opening it
	// through VFIO (sysfsRegisters), and returns them with the function
	// that unmaps them.
	regs func(addr string) (mmio.Region, func() error, error)
	// connect reaches a controller over NVMe/TCP (tcp.Connect), discover
	// reads a discovery controller's log (tcp.Discover).
	connect  func(a tcp.Address, o *tcp.Options) (*nvme.Controller, error)
	discover func(a tcp.Address, o *tcp.Options) (fabrics.DiscoveryLog, error)
	// tcp holds the run's NVMe/TCP flags (newRoot makes it).
	tcp *tcpFlags
}

func (a app) defaults() app {
	if a.list == nil {
		a.list = vfio.List
	}
	if a.open == nil {
		a.open = openController
	}
	if a.bind == nil {
		a.bind = vfio.Bind
	}
	if a.release == nil {
		a.release = vfio.Release
	}
	if a.memlock == nil {
		a.memlock = memlockLimit
	}
	if a.stdin == nil {
		a.stdin = os.Stdin
	}
	if a.getenv == nil {
		a.getenv = os.Getenv
	}
	if a.connect == nil {
		a.connect = tcp.Connect
	}
	if a.discover == nil {
		a.discover = discoverTCP
	}
	if a.regs == nil {
		root := a.root
		a.regs = func(addr string) (mmio.Region, func() error, error) { return sysfsRegisters(root, addr) }
	}
	return a
}

// openController opens a controller for one command: one I/O queue, no
// asynchronous events (nvmectl does not wait for any).
func openController(addr string) (*nvme.Controller, error) {
	return pcie.Open(addr, &nvme.Options{IOQueues: 1, AsyncEvents: -1})
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, app{}))
}

// run executes nvmectl with args, writing results to stdout and errors to
// stderr, and returns the exit code.
func run(args []string, stdout, stderr io.Writer, a app) int {
	root := newRoot(a.defaults())
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "nvmectl: %v\n", err)
	code := exitCode(err)
	if code == exitUsage && !errors.As(err, new(usageError)) {
		// A cobra parse error: point at the help.
		fmt.Fprintf(stderr, "run 'nvmectl --help' for usage\n")
	}
	return code
}

// exitCode maps an error to the documented exit status.
func exitCode(err error) int {
	var ue usageError
	var de deviceError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &de):
		return exitDevice
	}
	return exitUsage
}

// classify marks an error returned by the driver: requests the driver
// refused before reaching the device (nvme.ErrInvalid, an inactive
// namespace) are usage errors; everything else is a device error.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ue usageError
	var de deviceError
	if errors.As(err, &ue) || errors.As(err, &de) {
		return err
	}
	var se *nvme.StatusError
	if errors.Is(err, nvme.ErrInvalid) || (errors.Is(err, nvme.ErrNoNamespace) && !errors.As(err, &se)) {
		return usageError{err}
	}
	return deviceError{err}
}

// format is the value of -o.
type format string

const (
	formatNormal format = "normal"
	formatJSON   format = "json"
)

func (f *format) String() string { return string(*f) }
func (f *format) Type() string   { return "normal|json" }
func (f *format) Set(s string) error {
	switch format(s) {
	case formatNormal, formatJSON:
		*f = format(s)
		return nil
	}
	if _, err := strconv.ParseUint(strings.TrimSuffix(strings.ToLower(s), "k"), 0, 64); err == nil {
		// SPDK perf's -o is the I/O size; a ported command line lands here.
		return fmt.Errorf("output format %q: want normal or json (-o is the output format; SPDK perf's -o, the I/O size, is -s/--io-size here)", s)
	}
	return fmt.Errorf("output format %q: want normal or json", s)
}

// globals are the flags every verb shares.
type globals struct {
	out   format
	human bool
}

func newRoot(a app) *cobra.Command {
	g := &globals{out: formatNormal}
	a.tcp = &tcpFlags{root: a.root}
	root := &cobra.Command{
		Use:   "nvmectl",
		Short: "Manage NVMe controllers for gonvme's userspace driver",
		Long: "nvmectl binds NVMe controllers to vfio-pci (like SPDK's setup.sh) and drives them\n" +
			"through gonvme's userspace driver with nvme-cli's verbs. Controllers are named by PCI\n" +
			"address (0000:01:00.0) or, over NVMe/TCP, as tcp://HOST[:PORT]/NQN (nvmectl discover\n" +
			"lists a target's subsystems), namespaces with -n/--namespace-id. Exit status: 0 success,\n" +
			"1 usage error (nothing was sent to the device), 2 device or driver error.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fmt.Errorf("a command is required (list, setup, id-ctrl, read, ...; see --help)")
		},
	}
	root.PersistentFlags().VarP(&g.out, "output", "o", "output format: normal or json")
	root.PersistentFlags().BoolVarP(&g.human, "human-readable", "H", false, "decode fields")
	// Shell completion (cobra's: nvmectl completion bash|zsh|fish|powershell)
	// and --version.
	root.CompletionOptions.HiddenDefaultCmd = false
	setVersion(root)
	root.AddGroup(&cobra.Group{ID: "setup", Title: "Setup (like SPDK's setup.sh):"},
		&cobra.Group{ID: "admin", Title: "Admin commands (like nvme-cli):"},
		&cobra.Group{ID: "io", Title: "I/O commands (like nvme-cli):"})
	for _, c := range []*cobra.Command{
		listCmd(a, g), setupCmd(a, g), resetCmd(a, g), statusCmd(a, g),
	} {
		c.GroupID = "setup"
		root.AddCommand(c)
	}
	for _, c := range adminCmds(a, g) {
		c.GroupID = "admin"
		root.AddCommand(c)
	}
	for _, c := range manageCmds(a, g) {
		c.GroupID = "admin"
		if c.Name() == "io-passthru" || c.Name() == "write-uncor" {
			c.GroupID = "io"
		}
		root.AddCommand(c)
	}
	for _, c := range ioCmds(a, g) {
		c.GroupID = "io"
		root.AddCommand(c)
	}
	root.AddCommand(perfCmd(a, g))
	root.AddCommand(serveCmd(a, g))
	root.AddCommand(traceCmd(a, g))
	root.AddCommand(manCmd())
	d := discoverCmd(a, g)
	d.GroupID = "admin"
	root.AddCommand(d)
	// Every verb that takes a controller takes it over NVMe/TCP too, with
	// nvme-cli connect's options; setup and reset bind PCI functions only.
	for _, c := range root.Commands() {
		if strings.Contains(c.Use, "ADDR") && c.Name() != "setup" && c.Name() != "reset" || c == d {
			addTCPFlags(c, a.tcp)
		}
	}
	return root
}
