package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/seedb8fa28ef/gonvme/nvme"
)

// ioCmds returns the nvme-cli style I/O verbs.
func ioCmds(a app, g *globals) []*cobra.Command {
	return []*cobra.Command{
		readCmd(a), writeCmd(a), compareCmd(a), writeZeroesCmd(a), dsmCmd(a), flushCmd(a), verifyCmd(a),
	}
}

// ioArgs are the flags of the block I/O verbs.
type ioArgs struct {
	nsid  uint32
	start uint64
	count uint32 // 0's based, like nvme-cli
	size  uint64 // bytes
	data  string
}

func (o *ioArgs) flags(cmd *cobra.Command, withData bool, dataHelp string) {
	nsFlag(cmd, &o.nsid, 1, "namespace")
	cmd.Flags().Uint64VarP(&o.start, "start-block", "s", 0, "first logical block (LBA)")
	cmd.Flags().Uint32VarP(&o.count, "block-count", "c", 0, "number of blocks, 0's based (0 = one block)")
	if withData {
		cmd.Flags().Uint64VarP(&o.size, "data-size", "z", 0, "bytes to transfer, a multiple of the block size (instead of -c)")
		cmd.Flags().StringVarP(&o.data, "data", "d", "", dataHelp)
	}
}

// precheck validates what can be checked without the device: the
// namespace ID, and -c and -z against each other. It runs before any
// controller is opened.
func (o *ioArgs) precheck(cmd *cobra.Command) error {
	if err := checkNSIDFlag(o.nsid, false); err != nil {
		return err
	}
	z := cmd.Flags().Lookup("data-size")
	if z == nil || !z.Changed {
		return nil
	}
	if o.size == 0 || o.size%512 != 0 {
		return usagef("--data-size %d: want a positive multiple of the block size (512 bytes at least)", o.size)
	}
	if cmd.Flags().Changed("block-count") {
		c := uint64(o.count) + 1
		if bs := o.size / c; o.size%c != 0 || bs < 512 || bs&(bs-1) != 0 {
			return usagef("--block-count %d (%d blocks, 0's based) and --data-size %d disagree: no block size gives both", o.count, c, o.size)
		}
	}
	return nil
}

// blocks works out how many blocks the command covers and checks the
// range against the namespace; every error is a usage error.
func (o *ioArgs) blocks(cmd *cobra.Command, ns *nvme.Namespace) (uint64, error) {
	bs := uint64(ns.BlockSize())
	n := uint64(1)
	z := cmd.Flags().Lookup("data-size")
	if z != nil && z.Changed {
		if o.size == 0 || o.size%bs != 0 {
			return 0, usagef("data size %d is not a multiple of the %d-byte block size of namespace %d", o.size, bs, ns.ID())
		}
		n = o.size / bs
	}
	if cmd.Flags().Changed("block-count") {
		c := uint64(o.count) + 1
		if z != nil && z.Changed && c != n {
			return 0, usagef("--block-count %d (%d blocks, 0's based) and --data-size %d (%d blocks of %d bytes) disagree", o.count, c, o.size, n, bs)
		}
		n = c
	}
	if o.start >= ns.Blocks() || n > ns.Blocks()-o.start {
		return 0, usagef("blocks %d to %d are past the end of namespace %d (%d blocks, last LBA %d)", o.start, o.start+n-1, ns.ID(), ns.Blocks(), ns.Blocks()-1)
	}
	return n, nil
}

// withIO opens the controller, looks up the namespace, creates a queue
// pair and runs f on them.
func withIO(a app, addr string, nsid uint32, f func(c *nvme.Controller, ns *nvme.Namespace, qp *nvme.QueuePair) error) error {
	return withCtrl(a, addr, func(c *nvme.Controller) (err error) {
		ns, err := namespace(c, nsid)
		if err != nil {
			return err
		}
		qp, err := c.NewQueuePair(0)
		if err != nil {
			return deviceError{err}
		}
		defer func() {
			if cerr := qp.Close(); cerr != nil && err == nil {
				err = deviceError{cerr}
			}
		}()
		return f(c, ns, qp)
	})
}

// dmaBuf allocates a DMA buffer for up to n blocks, capped at what one
// command moves, and returns it with its size in blocks.
func dmaBuf(c *nvme.Controller, ns *nvme.Namespace, n uint64) ([]byte, uint64, func(), error) {
	per := min(n, uint64(ns.MaxBlocks()))
	b, err := c.Memory().Alloc(int(per) * ns.BlockSize())
	if err != nil {
		return nil, 0, nil, deviceError{fmt.Errorf("dma buffer: %w", err)}
	}
	return b.Bytes, per, func() { c.Memory().Free(b) }, nil
}

// input is where write and compare take their data: the -d file, opened
// before the device, or standard input.
type input struct {
	r       io.Reader
	name    string
	size    int64 // bytes a regular file holds; -1 for a pipe or terminal
	closeFn func() error
}

// openInput opens the -d file (standard input for "" or "-"). A file that
// cannot be opened is a usage error, found before any controller is.
func openInput(a app, path string) (*input, error) {
	if path == "" || path == "-" {
		return &input{r: a.stdin, name: "standard input", size: -1, closeFn: func() error { return nil }}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("data file: %w", err)}
	}
	in := &input{r: f, name: path, size: -1, closeFn: f.Close}
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		in.size = st.Size()
	}
	return in, nil
}

func readCmd(a app) *cobra.Command {
	var o ioArgs
	cmd := &cobra.Command{
		Use:   "read ADDR",
		Short: "Read blocks to a file or standard output (nvme read)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := parseAddr(args[0]); err != nil {
				return err
			}
			if err := o.precheck(cmd); err != nil {
				return err
			}
			var out io.Writer = cmd.OutOrStdout()
			var file *os.File
			if o.data != "" && o.data != "-" {
				f, err := os.Create(o.data)
				if err != nil {
					return usageError{fmt.Errorf("data file: %w", err)}
				}
				defer f.Close()
				out, file = f, f
			}
			return withIO(a, args[0], o.nsid, func(c *nvme.Controller, ns *nvme.Namespace, qp *nvme.QueuePair) error {
				n, err := o.blocks(cmd, ns)
				if err != nil {
					return err
				}
				buf, per, free, err := dmaBuf(c, ns, n)
				if err != nil {
					return err
				}
				defer free()
				bs := uint64(ns.BlockSize())
				for done := uint64(0); done < n; {
					k := min(per, n-done)
					if err := ns.ReadAt(qp, buf[:k*bs], o.start+done); err != nil {
						return fmt.Errorf("read at lba %d: %w", o.start+done, err)
					}
					if _, err := out.Write(buf[:k*bs]); err != nil {
						return deviceError{fmt.Errorf("write output: %w", err)}
					}
					done += k
				}
				if file != nil {
					if err := file.Close(); err != nil {
						return deviceError{fmt.Errorf("data file: %w", err)}
					}
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "read: Success, %d blocks at lba %d\n", n, o.start)
				return nil
			})
		},
	}
	o.flags(cmd, true, "file to write the data to (default standard output)")
	return cmd
}

// dataCmd builds write and compare: both send the blocks of a file. The
// data moves in pieces of the largest transfer, through one DMA buffer of
// that size: a transfer of any length needs no more memory than that. A
// regular file shorter than asked is refused before anything is sent; a
// pipe that ends early stops the command where it ended.
func dataCmd(a app, use, short string, exec func(ns *nvme.Namespace, qp *nvme.QueuePair, data []byte, lba uint64) error) *cobra.Command {
	var o ioArgs
	cmd := &cobra.Command{
		Use:   use + " ADDR",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := parseAddr(args[0]); err != nil {
				return err
			}
			if err := o.precheck(cmd); err != nil {
				return err
			}
			in, err := openInput(a, o.data)
			if err != nil {
				return err
			}
			defer in.closeFn()
			return withIO(a, args[0], o.nsid, func(c *nvme.Controller, ns *nvme.Namespace, qp *nvme.QueuePair) error {
				n, err := o.blocks(cmd, ns)
				if err != nil {
					return err
				}
				bs := uint64(ns.BlockSize())
				need := n * bs
				if in.size >= 0 && uint64(in.size) < need {
					return usagef("%s holds %d bytes, %d needed (%d blocks of %d bytes); nothing was sent", in.name, in.size, need, n, bs)
				}
				buf, per, free, err := dmaBuf(c, ns, n)
				if err != nil {
					return err
				}
				defer free()
				for done := uint64(0); done < n; {
					k := min(per, n-done)
					got, err := io.ReadFull(in.r, buf[:k*bs])
					if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
						have := done*bs + uint64(got)
						if done == 0 {
							return usagef("%s holds %d bytes, %d needed (%d blocks of %d bytes); nothing was sent", in.name, have, need, n, bs)
						}
						return deviceError{fmt.Errorf("%s ended after %d of %d bytes: blocks %d to %d were sent to %s, the rest was not",
							in.name, have, need, o.start, o.start+done-1, use)}
					}
					if err != nil {
						return usageError{fmt.Errorf("read %s: %w", in.name, err)}
					}
					if err := exec(ns, qp, buf[:k*bs], o.start+done); err != nil {
						return fmt.Errorf("%s at lba %d: %w", use, o.start+done, err)
					}
					done += k
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: Success, %d blocks at lba %d\n", use, n, o.start)
				return nil
			})
		},
	}
	o.flags(cmd, true, "file to read the data from (default standard input)")
	return cmd
}

func writeCmd(a app) *cobra.Command {
	return dataCmd(a, "write", "Write blocks from a file or standard input (nvme write)",
		func(ns *nvme.Namespace, qp *nvme.QueuePair, data []byte, lba uint64) error {
			return ns.WriteAt(qp, data, lba)
		})
}

func compareCmd(a app) *cobra.Command {
	return dataCmd(a, "compare", "Compare blocks with a file; a mismatch fails with Compare Failure (nvme compare)",
		func(ns *nvme.Namespace, qp *nvme.QueuePair, data []byte, lba uint64) error {
			if !ns.Controller().Identify().SupportsCompare() {
				return devicef("compare: the controller does not support Compare (ONCS bit 0 is clear)")
			}
			r := &nvme.Request{}
			if err := ns.Compare(r, lba, data, 0); err != nil {
				return err
			}
			return ns.Exec(qp, r)
		})
}

// rangeCmd builds the verbs that name blocks but move no data.
func rangeCmd(a app, use, short string, chunk func(ns *nvme.Namespace) uint64, build func(ns *nvme.Namespace, r *nvme.Request, lba uint64, n uint32) error) *cobra.Command {
	var o ioArgs
	cmd := &cobra.Command{
		Use:   use + " ADDR",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := parseAddr(args[0]); err != nil {
				return err
			}
			if err := o.precheck(cmd); err != nil {
				return err
			}
			return withIO(a, args[0], o.nsid, func(c *nvme.Controller, ns *nvme.Namespace, qp *nvme.QueuePair) error {
				n, err := o.blocks(cmd, ns)
				if err != nil {
					return err
				}
				per := chunk(ns)
				for done := uint64(0); done < n; {
					k := min(per, n-done)
					r := &nvme.Request{}
					if err := build(ns, r, o.start+done, uint32(k)); err != nil {
						return err
					}
					if err := ns.Exec(qp, r); err != nil {
						return fmt.Errorf("%s at lba %d: %w", use, o.start+done, err)
					}
					done += k
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: Success, %d blocks at lba %d\n", use, n, o.start)
				return nil
			})
		},
	}
	o.flags(cmd, false, "")
	return cmd
}

func writeZeroesCmd(a app) *cobra.Command {
	return rangeCmd(a, "write-zeroes", "Zero blocks without a data transfer (nvme write-zeroes)",
		func(*nvme.Namespace) uint64 { return 1 << 16 },
		func(ns *nvme.Namespace, r *nvme.Request, lba uint64, n uint32) error {
			if !ns.Controller().Identify().SupportsWriteZeroes() {
				return devicef("write-zeroes: the controller does not support Write Zeroes (ONCS bit 3 is clear)")
			}
			return ns.WriteZeroes(r, lba, n, 0)
		})
}

func verifyCmd(a app) *cobra.Command {
	return rangeCmd(a, "verify", "Verify blocks on the media without a data transfer (nvme verify)",
		func(ns *nvme.Namespace) uint64 { return uint64(ns.MaxBlocks()) },
		func(ns *nvme.Namespace, r *nvme.Request, lba uint64, n uint32) error {
			if !ns.Controller().Identify().SupportsVerify() {
				return devicef("verify: the controller does not support Verify (ONCS bit 7 is clear)")
			}
			return ns.Verify(r, lba, n, 0)
		})
}

func flushCmd(a app) *cobra.Command {
	var nsid uint32
	cmd := &cobra.Command{
		Use:   "flush ADDR",
		Short: "Commit the volatile write cache to media (nvme flush)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := parseAddr(args[0]); err != nil {
				return err
			}
			if err := checkNSIDFlag(nsid, false); err != nil {
				return err
			}
			return withIO(a, args[0], nsid, func(c *nvme.Controller, ns *nvme.Namespace, qp *nvme.QueuePair) error {
				if err := ns.Sync(qp); err != nil {
					return fmt.Errorf("flush: %w", err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "flush: Success, namespace %d\n", ns.ID())
				return nil
			})
		},
	}
	nsFlag(cmd, &nsid, 1, "namespace")
	return cmd
}

// parseList parses a comma-separated list of numbers (decimal or 0x hex).
func parseList(flag, s string, bits int) ([]uint64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []uint64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(f), 0, bits)
		if err != nil {
			return nil, usagef("--%s: %q is not a number", flag, f)
		}
		out = append(out, v)
	}
	return out, nil
}

func dsmCmd(a app) *cobra.Command {
	var nsid uint32
	var dealloc bool
	var slbs, blocks string
	cmd := &cobra.Command{
		Use:   "dsm ADDR",
		Short: "Dataset Management: deallocate (trim) ranges (nvme dsm --ad)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := parseAddr(args[0]); err != nil {
				return err
			}
			if err := checkNSIDFlag(nsid, false); err != nil {
				return err
			}
			if !dealloc {
				return usagef("dsm: only --ad/--deallocate is supported; add it")
			}
			starts, err := parseList("slbs", slbs, 64)
			if err != nil {
				return err
			}
			counts, err := parseList("blocks", blocks, 32)
			if err != nil {
				return err
			}
			if len(starts) == 0 || len(starts) != len(counts) {
				return usagef("dsm: --slbs and --blocks need the same number of entries (got %d and %d)", len(starts), len(counts))
			}
			if len(starts) > 256 {
				return usagef("dsm: %d ranges: one command takes at most 256", len(starts))
			}
			for i, n := range counts {
				if n == 0 || n > 1<<16 {
					return usagef("dsm: range %d: %d blocks (want 1 to 65536)", i, n)
				}
				if starts[i]+n < starts[i] {
					return usagef("dsm: range %d: blocks %d + %d overflow", i, starts[i], n)
				}
			}
			return withIO(a, args[0], nsid, func(c *nvme.Controller, ns *nvme.Namespace, qp *nvme.QueuePair) error {
				if !c.Identify().SupportsDSM() {
					return devicef("dsm: the controller does not support Dataset Management (ONCS bit 2 is clear)")
				}
				// Check every range before deallocating any.
				for i := range starts {
					s, n := starts[i], counts[i]
					if s >= ns.Blocks() || n > ns.Blocks()-s {
						return usagef("dsm: range %d: blocks %d to %d are past the end of namespace %d (%d blocks)", i, s, s+n-1, ns.ID(), ns.Blocks())
					}
				}
				for i := range starts {
					r := &nvme.Request{}
					if err := ns.Deallocate(r, starts[i], uint32(counts[i])); err != nil {
						return err
					}
					if err := ns.Exec(qp, r); err != nil {
						return fmt.Errorf("dsm range %d: %w", i, err)
					}
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "dsm: Success, %d ranges deallocated\n", len(starts))
				return nil
			})
		},
	}
	nsFlag(cmd, &nsid, 1, "namespace")
	f := cmd.Flags()
	f.BoolVarP(&dealloc, "ad", "d", false, "attribute deallocate: trim the ranges (required)")
	f.BoolVar(&dealloc, "deallocate", false, "same as --ad")
	f.StringVarP(&slbs, "slbs", "s", "", "comma-separated starting LBAs")
	f.StringVarP(&blocks, "blocks", "b", "", "comma-separated block counts (1-based), one per starting LBA")
	return cmd
}
