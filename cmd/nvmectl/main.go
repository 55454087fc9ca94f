package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/seedb8fa28ef/gonvme/vfio"
)

// Exit codes.
const (
	exitOK     = 0
	exitUsage  = 1
	exitDevice = 2
)

// deviceError marks an error that comes from the machine (sysfs, drivers,
// the device) rather than from the command line.
type deviceError struct{ err error }

func (e deviceError) Error() string { return e.err.Error() }
func (e deviceError) Unwrap() error { return e.err }

// app holds what the commands need from the outside, so tests can replace
// it.
type app struct {
	list func() ([]vfio.Controller, error)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, app{list: vfio.List}))
}

// run executes nvmectl with args, writing results to stdout and errors to
// stderr, and returns the exit code.
func run(args []string, stdout, stderr io.Writer, a app) int {
	root := newRoot(a)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "nvmectl: %v\n", err)
	var de deviceError
	if errors.As(err, &de) {
		return exitDevice
	}
	fmt.Fprintf(stderr, "run 'nvmectl --help' for usage\n")
	return exitUsage
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
	return fmt.Errorf("output format %q: want normal or json", s)
}

func newRoot(a app) *cobra.Command {
	out := formatNormal
	root := &cobra.Command{
		Use:           "nvmectl",
		Short:         "Manage NVMe controllers for gonvme's userspace driver",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fmt.Errorf("a command is required (list)")
		},
	}
	root.PersistentFlags().VarP(&out, "output", "o", "output format: normal or json")
	root.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List NVMe controllers with their drivers and IOMMU groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return list(cmd.OutOrStdout(), out, a.list)
		},
	})
	return root
}
