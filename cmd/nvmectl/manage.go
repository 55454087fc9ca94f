package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/seedb8fa28ef/gonvme/nvme"
	"github.com/seedb8fa28ef/gonvme/nvme/spec"
)

// The management verbs nvme-cli users reach for: a generic get-log,
// namespace management, raw passthrough, write-uncor, firmware, self-test
// and sanitize. Names, flags and JSON keys are nvme-cli's where it has
// them (-o is nvmectl's output format everywhere, so nvme-cli's -o
// shorthands are long flags here).

func manageCmds(a app, g *globals) []*cobra.Command {
	return []*cobra.Command{
		getLogCmd(a, g), createNSCmd(a, g), deleteNSCmd(a, g), attachNSCmd(a, g, true), attachNSCmd(a, g, false),
		adminPassthruCmd(a, g), ioPassthruCmd(a, g), writeUncorCmd(a), fwDownloadCmd(a, g), fwCommitCmd(a, g),
		selfTestCmd(a, g), selfTestLogCmd(a, g), sanitizeCmd(a, g), sanitizeLogCmd(a, g),
	}
}

// unsupported adds, to a command the controller rejected as an invalid
// opcode, which OACS bit would have advertised it.
func unsupported(c *nvme.Controller, err error, bit uint16, what string) error {
	var se *nvme.StatusError
	if errors.As(err, &se) && se.SCT == spec.SCTGeneric && se.SC == spec.SCInvalidOpcode {
		adv := "does not advertise it"
		if c.Identify().OACS&bit != 0 {
			adv = "advertises it in OACS but does not implement it"
		}
		return devicef("%w (the controller %s: %s)", err, adv, what)
	}
	return err
}

func getLogCmd(a app, g *globals) *cobra.Command {
	var lid, lsp uint8
	var nsid uint32
	var length int
	var off uint64
	var rae, raw bool
	cmd := ctrlCmd(a, "get-log", "Get Log Page: any log, as a hex dump or raw bytes (nvme get-log -i LID -l LEN)", func(cmd *cobra.Command) error {
		if !cmd.Flags().Changed("log-id") || !cmd.Flags().Changed("log-len") {
			return usagef("get-log: -i/--log-id and -l/--log-len are required")
		}
		if length <= 0 || length%4 != 0 || length > 16<<20 {
			return usagef("get-log: --log-len %d: want a positive multiple of 4, at most 16 MiB", length)
		}
		if off%4 != 0 {
			return usagef("get-log: --lpo %d: want a multiple of 4", off)
		}
		if lsp > 0x7f {
			return usagef("get-log: --lsp %d: want 0 to 127", lsp)
		}
		if raw && g.out == formatJSON {
			return usagef("get-log: -b/--raw-binary and -o json exclude each other")
		}
		return nil
	}, func(cmd *cobra.Command, c *nvme.Controller) error {
		b := make([]byte, length)
		if err := c.GetLogPage(lid, nsid, lsp, rae, off, b); err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		switch {
		case raw:
			_, err := w.Write(b)
			return err
		case g.out == formatJSON:
			var r record
			r.add("log_id", lid)
			r.add("log_name", spec.LogName(lid))
			r.add("namespace_id", nsid)
			r.add("offset", off)
			r.add("length", length)
			r.add("data", hex.EncodeToString(b))
			return writeJSON(w, r)
		}
		fmt.Fprintf(w, "Device:%s log-id:%d namespace-id:%#x (%s)\n", cmd.Flags().Arg(0), lid, nsid, spec.LogName(lid))
		fmt.Fprint(w, hex.Dump(b))
		return nil
	})
	f := cmd.Flags()
	f.Uint8VarP(&lid, "log-id", "i", 0, "log page identifier (required)")
	f.IntVarP(&length, "log-len", "l", 0, "bytes to read, a multiple of 4 (required)")
	f.Uint32VarP(&nsid, "namespace-id", "n", spec.NSIDAll, "namespace (default 0xffffffff)")
	f.Uint64VarP(&off, "lpo", "L", 0, "log page offset in bytes, a multiple of 4")
	f.Uint8VarP(&lsp, "lsp", "s", 0, "log specific field")
	f.BoolVarP(&rae, "rae", "r", false, "retain an asynchronous event")
	f.BoolVarP(&raw, "raw-binary", "b", false, "write the log's bytes to standard output")
	return cmd
}

// namespace management

func createNSCmd(a app, g *globals) *cobra.Command {
	var s nvme.NamespaceSpec
	var blockSize uint32
	cmd := ctrlCmd(a, "create-ns", "Namespace Management: create a namespace (nvme create-ns -s NSZE -c NCAP -f FLBAS)", func(cmd *cobra.Command) error {
		if !cmd.Flags().Changed("nsze") || !cmd.Flags().Changed("ncap") {
			return usagef("create-ns: -s/--nsze and -c/--ncap are required (blocks)")
		}
		if s.NSZE == 0 || s.NCAP == 0 || s.NCAP > s.NSZE {
			return usagef("create-ns: --nsze %d --ncap %d: want 0 < ncap <= nsze", s.NSZE, s.NCAP)
		}
		if cmd.Flags().Changed("flbas") && cmd.Flags().Changed("block-size") {
			return usagef("create-ns: give -f/--flbas or -b/--block-size, not both")
		}
		if cmd.Flags().Changed("block-size") && (blockSize < 512 || blockSize&(blockSize-1) != 0) {
			return usagef("create-ns: --block-size %d: want a power of two, 512 or more", blockSize)
		}
		if s.FLBAS&0x90 != 0 {
			return usagef("create-ns: --flbas %#x: bits 4 (metadata) and 7 are not for this command", s.FLBAS)
		}
		if s.NMIC > 1 {
			return usagef("create-ns: --nmic %d: want 0 (private) or 1 (shared)", s.NMIC)
		}
		return nil
	}, func(cmd *cobra.Command, c *nvme.Controller) error {
		if cmd.Flags().Changed("block-size") {
			// Pick the LBA format of that size without metadata, from
			// the first namespace's list (the formats are the controller's).
			f, err := formatForBlockSize(c, blockSize)
			if err != nil {
				return err
			}
			s.FLBAS = f&0xf | (f>>4)<<5
		}
		id, err := c.CreateNamespace(s)
		if err != nil {
			return unsupported(c, err, spec.OACSNamespaceMgmt, "Namespace Management")
		}
		if g.out == formatJSON {
			return writeJSON(cmd.OutOrStdout(), record{{key: "nsid", val: id}})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "create-ns: Success, created nsid:%d\n", id)
		return nil
	})
	f := cmd.Flags()
	f.Uint64VarP(&s.NSZE, "nsze", "s", 0, "size in blocks (required)")
	f.Uint64VarP(&s.NCAP, "ncap", "c", 0, "capacity in blocks (required)")
	f.Uint8VarP(&s.FLBAS, "flbas", "f", 0, "formatted LBA size: the LBA format index")
	f.Uint8VarP(&s.DPS, "dps", "d", 0, "data protection settings")
	f.Uint8VarP(&s.NMIC, "nmic", "m", 0, "1: shared between controllers")
	f.Uint32VarP(&blockSize, "block-size", "b", 0, "block size in bytes, instead of --flbas")
	return cmd
}

// formatForBlockSize finds the LBA format of size bs without metadata.
func formatForBlockSize(c *nvme.Controller, bs uint32) (uint8, error) {
	ids := c.Namespaces()
	if len(ids) == 0 {
		return 0, usagef("create-ns: --block-size needs an active namespace to read the LBA formats from; give --flbas")
	}
	id, err := c.IdentifyNamespace(ids[0])
	if err != nil {
		return 0, err
	}
	for i := range id.NumFormats() {
		if f := id.LBAF[i]; f.MS == 0 && f.LBADS > 0 && f.LBADS < 32 && 1<<f.LBADS == bs {
			return uint8(i), nil
		}
	}
	return 0, usagef("create-ns: no LBA format of %d bytes without metadata (nvmectl id-ns lists them)", bs)
}

func deleteNSCmd(a app, g *globals) *cobra.Command {
	var nsid uint32
	cmd := ctrlCmd(a, "delete-ns", "Namespace Management: delete a namespace and its data (nvme delete-ns -n NSID)", func(cmd *cobra.Command) error {
		if !cmd.Flags().Changed("namespace-id") {
			return usagef("delete-ns: -n/--namespace-id is required")
		}
		return checkNSIDFlag(nsid, true)
	}, func(cmd *cobra.Command, c *nvme.Controller) error {
		if err := c.DeleteNamespace(nsid); err != nil {
			return unsupported(c, err, spec.OACSNamespaceMgmt, "Namespace Management")
		}
		if g.out == formatJSON {
			return writeJSON(cmd.OutOrStdout(), record{{key: "nsid", val: nsid}})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "delete-ns: Success, deleted nsid:%d\n", nsid)
		return nil
	})
	nsFlag(cmd, &nsid, 0, "namespace to delete (required; 0xffffffff: all)")
	return cmd
}

func attachNSCmd(a app, g *globals, attach bool) *cobra.Command {
	var nsid uint32
	var ctrls string
	use, what := "detach-ns", "detach"
	if attach {
		use, what = "attach-ns", "attach"
	}
	var ids []uint64
	cmd := ctrlCmd(a, use, fmt.Sprintf("Namespace Attachment: %s a namespace to controllers (nvme %s -n NSID -c IDS)", what, use), func(cmd *cobra.Command) error {
		if !cmd.Flags().Changed("namespace-id") {
			return usagef("%s: -n/--namespace-id is required", use)
		}
		if err := checkNSIDFlag(nsid, false); err != nil {
			return err
		}
		var err error
		if ids, err = parseList("controllers", ctrls, 16); err != nil {
			return err
		}
		if len(ids) > 2047 {
			return usagef("%s: %d controllers (at most 2047)", use, len(ids))
		}
		return nil
	}, func(cmd *cobra.Command, c *nvme.Controller) error {
		list := make([]uint16, len(ids))
		for i, id := range ids {
			list[i] = uint16(id)
		}
		if len(list) == 0 {
			list = []uint16{c.Identify().CNTLID} // this controller, as nvme-cli does
		}
		var err error
		if attach {
			err = c.AttachNamespace(nsid, list)
		} else {
			err = c.DetachNamespace(nsid, list)
		}
		if err != nil {
			return unsupported(c, err, spec.OACSNamespaceMgmt, "Namespace Attachment")
		}
		if g.out == formatJSON {
			return writeJSON(cmd.OutOrStdout(), record{{key: "nsid", val: nsid}, {key: "controllers", val: list}})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: Success, nsid:%d\n", use, nsid)
		return nil
	})
	nsFlag(cmd, &nsid, 0, "namespace (required)")
	cmd.Flags().StringVarP(&ctrls, "controllers", "c", "", "comma-separated controller IDs (default: this controller's CNTLID)")
	return cmd
}

// passthru

// passthruArgs are the flags admin-passthru and io-passthru share.
type passthruArgs struct {
	opcode, flags          uint8
	nsid                   uint32
	cdw2, cdw3             uint32
	cdw                    [6]uint32 // CDW10..CDW15
	dataLen                int
	read, write, raw, show bool
	input                  string
	dangerous              bool
}

func (p *passthruArgs) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.Uint8VarP(&p.opcode, "opcode", "O", 0, "opcode (required)")
	f.Uint8VarP(&p.flags, "flags", "f", 0, "CDW0 bits 15:8: must be 0 (the driver sets PSDT; fused commands are not supported)")
	f.Uint32VarP(&p.nsid, "namespace-id", "n", 0, "NSID")
	f.Uint32Var(&p.cdw2, "cdw2", 0, "CDW2")
	f.Uint32Var(&p.cdw3, "cdw3", 0, "CDW3")
	for i := range p.cdw {
		f.Uint32Var(&p.cdw[i], fmt.Sprintf("cdw%d", 10+i), 0, fmt.Sprintf("CDW%d", 10+i))
	}
	f.IntVarP(&p.dataLen, "data-len", "l", 0, "bytes of data")
	f.BoolVarP(&p.read, "read", "r", false, "data from the device (default with --data-len)")
	f.BoolVarP(&p.write, "write", "w", false, "data to the device, from --input-file or standard input")
	f.StringVarP(&p.input, "input-file", "i", "", "data to send with --write")
	f.BoolVarP(&p.raw, "raw-binary", "b", false, "write the data read to standard output as bytes")
	f.BoolVarP(&p.show, "show-command", "s", false, "print the command before sending it")
	f.BoolVar(&p.dangerous, "dangerous", false, "send a command that changes the controller under the driver (format, sanitize, namespace management, firmware commit, abort, ...)")
}

// check validates the flags; maxLen is the largest transfer.
func (p *passthruArgs) check(cmd *cobra.Command, name string, maxLen int) error {
	if !cmd.Flags().Changed("opcode") {
		return usagef("%s: -O/--opcode is required", name)
	}
	if p.flags != 0 {
		return usagef("%s: --flags %#x: FUSE and PSDT are the driver's (it sets the data pointer and sends no fused pairs)", name, p.flags)
	}
	if p.read && p.write {
		return usagef("%s: --read and --write exclude each other", name)
	}
	if p.dataLen < 0 || p.dataLen > maxLen || p.dataLen%4 != 0 {
		return usagef("%s: --data-len %d: want a multiple of 4 from 0 to %d", name, p.dataLen, maxLen)
	}
	if (p.read || p.write) && p.dataLen == 0 {
		return usagef("%s: --read/--write need --data-len", name)
	}
	if p.input != "" && !p.write {
		return usagef("%s: --input-file needs --write", name)
	}
	if p.raw && (p.write || cmd.Flags().Changed("output")) {
		return usagef("%s: --raw-binary prints read data; not with --write or -o", name)
	}
	return nil
}

// command builds the submission queue entry.
func (p *passthruArgs) command() spec.Command {
	return spec.Command{Opcode: p.opcode, NSID: p.nsid, CDW2: p.cdw2, CDW3: p.cdw3,
		CDW10: p.cdw[0], CDW11: p.cdw[1], CDW12: p.cdw[2], CDW13: p.cdw[3], CDW14: p.cdw[4], CDW15: p.cdw[5]}
}

// data reads what --write sends; it is called before the device is opened.
func (p *passthruArgs) data(a app) ([]byte, error) {
	b := make([]byte, p.dataLen)
	if !p.write {
		return b, nil
	}
	in, err := openInput(a, p.input)
	if err != nil {
		return nil, err
	}
	defer in.closeFn()
	if got, err := io.ReadFull(in.r, b); err != nil {
		return nil, usagef("%s holds %d bytes, --data-len %d needed; nothing was sent", in.name, got, p.dataLen)
	}
	return b, nil
}

// report prints the result the way nvme-cli does.
func (p *passthruArgs) report(cmd *cobra.Command, g *globals, name string, dw0 uint32, data []byte) error {
	w := cmd.OutOrStdout()
	if p.raw {
		_, err := w.Write(data)
		return err
	}
	if g.out == formatJSON {
		var r record
		r.add("opcode", p.opcode)
		r.add("result", dw0)
		if len(data) > 0 && !p.write {
			r.add("data", hex.EncodeToString(data))
		}
		return writeJSON(w, r)
	}
	fmt.Fprintf(w, "NVMe command result:%08x\n", dw0)
	if len(data) > 0 && !p.write {
		fmt.Fprint(w, hex.Dump(data))
	}
	return nil
}

func (p *passthruArgs) showCommand(w io.Writer) {
	c := p.command()
	fmt.Fprintf(w, "opcode       : %02x\nflags        : %02x\nnsid         : %08x\ncdw2         : %08x\ncdw3         : %08x\ndata_len     : %08x\n",
		c.Opcode, p.flags, c.NSID, c.CDW2, c.CDW3, p.dataLen)
	for i, v := range p.cdw {
		fmt.Fprintf(w, "cdw%-2d        : %08x\n", 10+i, v)
	}
}

// adminGuard says why an admin opcode may not be sent: the driver's own
// commands never (they would corrupt its queues or events), and commands
// that change the controller under the driver only with --dangerous.
// (NVMe Base 2.0, Figure 28.)
func adminGuard(p *passthruArgs) error {
	op := spec.Opcode(p.opcode)
	name := spec.AdminOpcodeName(op)
	switch op {
	case spec.AdminCreateIOSQ, spec.AdminCreateIOCQ, spec.AdminDeleteIOSQ, spec.AdminDeleteIOCQ,
		spec.AdminAsyncEventRequest, spec.AdminDoorbellBufferConfig:
		return usagef("admin-passthru: %s (%#02x) is the driver's own command: sending it would break its queues", name, p.opcode)
	case spec.AdminSetFeatures:
		if uint8(p.cdw[0]) == spec.FeatureNumberOfQueues {
			return usagef("admin-passthru: Set Features %s is the driver's: it negotiates the queues at every bring-up", spec.FeatureName(spec.FeatureNumberOfQueues))
		}
	case spec.AdminFormatNVM, spec.AdminSanitize, spec.AdminNamespaceManagement, spec.AdminNamespaceAttachment,
		spec.AdminFirmwareCommit, spec.AdminAbort, spec.AdminVirtualizationMgmt, spec.AdminSecuritySend:
		if !p.dangerous {
			return usagef("admin-passthru: %s (%#02x) changes the controller under the driver (data, namespaces, firmware or commands in flight): add --dangerous to send it anyway, or use its verb", name, p.opcode)
		}
	}
	return nil
}

func adminPassthruCmd(a app, g *globals) *cobra.Command {
	var p passthruArgs
	var data []byte
	cmd := ctrlCmd(a, "admin-passthru", "Send a raw admin command (nvme admin-passthru)", func(cmd *cobra.Command) error {
		if err := p.check(cmd, "admin-passthru", 4096); err != nil {
			return err
		}
		if err := adminGuard(&p); err != nil {
			return err
		}
		var err error
		data, err = p.data(a)
		return err
	}, func(cmd *cobra.Command, c *nvme.Controller) error {
		if p.show {
			p.showCommand(cmd.ErrOrStderr())
		}
		var buf []byte
		if p.dataLen > 0 {
			buf = data
		}
		var allow []string
		if p.dangerous {
			// The user asked for it by name of flag: pass the
			// library's own opt-in for this command on.
			allow = append(allow, nvme.PassthruGuard(p.command()))
		}
		dw0, err := c.AdminPassthru(p.command(), buf, p.write, allow...)
		if err != nil {
			return err
		}
		return p.report(cmd, g, "admin-passthru", dw0, buf)
	})
	p.register(cmd)
	return cmd
}

// ioGuard: reservations change who may use the namespace, this host
// included; they go with --dangerous.
func ioGuard(p *passthruArgs) error {
	switch spec.Opcode(p.opcode) {
	case 0x0d, 0x11, 0x15: // Reservation Register, Acquire, Release
		if !p.dangerous {
			return usagef("io-passthru: reservation commands (%#02x) can lock this host out of the namespace: add --dangerous", p.opcode)
		}
	}
	return nil
}

func ioPassthruCmd(a app, g *globals) *cobra.Command {
	var p passthruArgs
	var data []byte
	cmd := &cobra.Command{
		Use:   "io-passthru ADDR",
		Short: "Send a raw I/O command on an I/O queue (nvme io-passthru)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := parseAddr(args[0]); err != nil {
				return err
			}
			if err := p.check(cmd, "io-passthru", 1<<20); err != nil {
				return err
			}
			if err := checkNSIDFlag(p.nsid, false); err != nil {
				return err
			}
			if err := ioGuard(&p); err != nil {
				return err
			}
			var err error
			if data, err = p.data(a); err != nil {
				return err
			}
			return withIO(a, args[0], p.nsid, func(c *nvme.Controller, ns *nvme.Namespace, qp *nvme.QueuePair) error {
				if p.show {
					p.showCommand(cmd.ErrOrStderr())
				}
				r := &nvme.Request{Cmd: p.command()}
				var buf []byte
				if p.dataLen > 0 {
					if p.dataLen > c.MaxTransfer() {
						return usagef("io-passthru: --data-len %d exceeds the controller's largest transfer (%d)", p.dataLen, c.MaxTransfer())
					}
					b, err := c.Memory().Alloc(p.dataLen)
					if err != nil {
						return deviceError{fmt.Errorf("dma buffer: %w", err)}
					}
					defer c.Memory().Free(b)
					buf = b.Bytes[:p.dataLen]
					copy(buf, data)
					r.Data = buf
				}
				if err := ns.Exec(qp, r); err != nil {
					return err
				}
				return p.report(cmd, g, "io-passthru", r.DW0, buf)
			})
		},
	}
	p.register(cmd)
	cmd.Flags().Lookup("namespace-id").DefValue = "1"
	p.nsid = 1
	return cmd
}

func writeUncorCmd(a app) *cobra.Command {
	return rangeCmd(a, "write-uncor", "Mark blocks unreadable until written (nvme write-uncor)",
		func(*nvme.Namespace) uint64 { return 1 << 16 },
		func(ns *nvme.Namespace, r *nvme.Request, lba uint64, n uint32) error {
			if ns.Controller().Identify().ONCS&spec.ONCSWriteUncorrectable == 0 {
				return devicef("write-uncor: the controller does not support Write Uncorrectable (ONCS bit 1 is clear)")
			}
			return ns.WriteUncorrectable(r, lba, n)
		})
}

// firmware

func fwDownloadCmd(a app, g *globals) *cobra.Command {
	var file string
	var xfer, off uint32
	var image []byte
	cmd := ctrlCmd(a, "fw-download", "Firmware Image Download: send an image for fw-commit (nvme fw-download -f FILE)", func(cmd *cobra.Command) error {
		if file == "" {
			return usagef("fw-download: -f/--fw is required")
		}
		if xfer%4 != 0 || off%4 != 0 {
			return usagef("fw-download: --xfer %d and --offset %d must be multiples of 4", xfer, off)
		}
		var err error
		if image, err = os.ReadFile(file); err != nil {
			return usageError{fmt.Errorf("fw-download: %w", err)}
		}
		if len(image) == 0 || len(image)%4 != 0 {
			return usagef("fw-download: %s is %d bytes: a firmware image is a non-empty multiple of 4", file, len(image))
		}
		return nil
	}, func(cmd *cobra.Command, c *nvme.Controller) error {
		step := len(image)
		if xfer > 0 {
			step = int(xfer)
		}
		for done := 0; done < len(image); done += step {
			end := min(done+step, len(image))
			if err := c.FirmwareDownload(image[done:end], off+uint32(done)); err != nil {
				return unsupported(c, err, spec.OACSFirmware, "Firmware Image Download")
			}
		}
		if g.out == formatJSON {
			return writeJSON(cmd.OutOrStdout(), record{{key: "bytes", val: len(image)}, {key: "offset", val: off}})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Firmware download success\n")
		return nil
	})
	f := cmd.Flags()
	f.StringVarP(&file, "fw", "f", "", "firmware image file (required)")
	f.Uint32VarP(&xfer, "xfer", "x", 0, "bytes per command (default: one page, or FWUG)")
	f.Uint32Var(&off, "offset", 0, "byte offset of the file in the image")
	return cmd
}

var fwActions = []string{"replace, not activated", "replace, activate at the next reset", "activate at the next reset",
	"replace and activate now", "", "", "replace boot partition", "activate boot partition"}

func fwCommitCmd(a app, g *globals) *cobra.Command {
	var slot, action uint8
	var bpid bool
	cmd := ctrlCmd(a, "fw-commit", "Firmware Commit: store and/or activate an image (nvme fw-commit -s SLOT -a ACTION)", func(cmd *cobra.Command) error {
		if !cmd.Flags().Changed("action") {
			return usagef("fw-commit: -a/--action is required: 0 replace, 1 replace and activate at reset, 2 activate at reset, 3 replace and activate now")
		}
		if slot > 7 || action > 7 || fwActions[action] == "" {
			return usagef("fw-commit: --slot %d --action %d: want slot 0-7 and action 0-3, 6 or 7", slot, action)
		}
		return nil
	}, func(cmd *cobra.Command, c *nvme.Controller) error {
		dw0, err := c.FirmwareCommit(slot, action, bpid)
		needs := ""
		var se *nvme.StatusError
		if errors.As(err, &se) && se.SCT == spec.SCTCommandSpecific {
			switch se.SC {
			case spec.SCFirmwareNeedsConventionalReset:
				needs, err = "conventional reset", nil
			case spec.SCFirmwareNeedsSubsystemReset:
				needs, err = "NVM subsystem reset", nil
			case spec.SCFirmwareNeedsControllerReset:
				needs, err = "controller reset", nil
			}
		}
		if err != nil {
			return unsupported(c, err, spec.OACSFirmware, "Firmware Commit")
		}
		if g.out == formatJSON {
			return writeJSON(cmd.OutOrStdout(), record{{key: "slot", val: slot}, {key: "action", val: action}, {key: "result", val: dw0},
				{key: "reset_needed", val: needs}})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Success committing firmware action:%d slot:%d (%s)\n", action, slot, fwActions[action])
		if needs != "" {
			fmt.Fprintf(cmd.OutOrStdout(), "The new firmware becomes active after a %s\n", needs)
		}
		return nil
	})
	f := cmd.Flags()
	f.Uint8VarP(&slot, "slot", "s", 0, "firmware slot, 0: the controller picks")
	f.Uint8VarP(&action, "action", "a", 0, "commit action (required): 0 replace, 1 replace and activate at reset, 2 activate at reset, 3 replace and activate now")
	f.BoolVarP(&bpid, "bpid", "b", false, "boot partition 1 (actions 6 and 7)")
	return cmd
}

// self-test

var selfTestNames = map[uint8]string{nvme.SelfTestShort: "Short", nvme.SelfTestExtended: "Extended", nvme.SelfTestVendor: "Vendor Specific", nvme.SelfTestAbort: "Abort"}

func selfTestCmd(a app, g *globals) *cobra.Command {
	var nsid uint32
	var code uint8
	cmd := ctrlCmd(a, "device-self-test", "Device Self-test: start or abort a self-test (nvme device-self-test -s 1|2|0xf)", func(cmd *cobra.Command) error {
		if !cmd.Flags().Changed("self-test-code") {
			return usagef("device-self-test: -s/--self-test-code is required: 1 short, 2 extended, 0xe vendor, 0xf abort")
		}
		if selfTestNames[code] == "" {
			return usagef("device-self-test: --self-test-code %#x: want 1 (short), 2 (extended), 0xe (vendor) or 0xf (abort)", code)
		}
		return nil
	}, func(cmd *cobra.Command, c *nvme.Controller) error {
		if err := c.DeviceSelfTest(nsid, code); err != nil {
			return unsupported(c, err, spec.OACSDeviceSelfTest, "Device Self-test")
		}
		if g.out == formatJSON {
			return writeJSON(cmd.OutOrStdout(), record{{key: "self_test_code", val: code}, {key: "namespace_id", val: nsid}})
		}
		if code == nvme.SelfTestAbort {
			fmt.Fprintln(cmd.OutOrStdout(), "Aborting device self-test operation")
		} else {
			fmt.Fprintf(cmd.OutOrStdout(), "%s Device self-test started\n", selfTestNames[code])
		}
		return nil
	})
	nsFlag(cmd, &nsid, spec.NSIDAll, "namespaces to test (default 0xffffffff: all; 0: the controller only)")
	cmd.Flags().Uint8VarP(&code, "self-test-code", "s", 0, "1 short, 2 extended, 0xe vendor specific, 0xf abort (required)")
	return cmd
}

var selfTestResults = []string{"Operation completed without error", "Operation was aborted by a Device Self-test command",
	"Operation was aborted by a Controller Level Reset", "Operation was aborted due to a removal of a namespace from the namespace inventory",
	"Operation was aborted due to the processing of a Format NVM command", "A fatal error or unknown test error occurred",
	"Operation completed with a segment that failed and the segment that failed is not known",
	"Operation completed with one or more failed segments and the first segment that failed is indicated in the Segment Number field",
	"Operation was aborted for unknown reason", "Operation was aborted due to a sanitize operation"}

func selfTestLogCmd(a app, g *globals) *cobra.Command {
	var entries int
	cmd := ctrlCmd(a, "self-test-log", "Device Self-test log (nvme self-test-log)", func(cmd *cobra.Command) error {
		if entries < 0 || entries > 20 {
			return usagef("self-test-log: --dst-entries %d: want 0 (all) to 20", entries)
		}
		return nil
	}, func(cmd *cobra.Command, c *nvme.Controller) error {
		l, err := c.SelfTestLog()
		if err != nil {
			return err
		}
		res := l.Results
		if entries > 0 && len(res) > entries {
			res = res[:entries]
		}
		w := cmd.OutOrStdout()
		if g.out == formatJSON {
			list := []record{}
			for _, e := range res {
				var r record
				r.add("Self test result", e.Result)
				r.add("Self test code", e.Code)
				r.add("Segment number", e.Segment)
				r.add("Valid Diagnostic Information", e.ValidInfo)
				r.add("Power on hours (POH)", e.PowerOnHours)
				if e.ValidInfo&1 != 0 {
					r.add("Namespace Identifier (NSID)", e.NSID)
				}
				if e.ValidInfo&2 != 0 {
					r.add("Failing LBA", e.FailingLBA)
				}
				if e.ValidInfo&4 != 0 {
					r.add("Status Code Type", e.SCT)
				}
				if e.ValidInfo&8 != 0 {
					r.add("Status Code", e.SC)
				}
				r.add("Vendor Specific", e.VendorSpecific)
				list = append(list, r)
			}
			return writeJSON(w, record{{key: "Current Device Self-Test Operation", val: l.Current},
				{key: "Current Device Self-Test Completion", val: l.Completion}, {key: "List of Valid Reports", val: list}})
		}
		fmt.Fprintf(w, "Device Self Test Log for NVME device:%s\n", cmd.Flags().Arg(0))
		cur := "No device self-test operation in progress"
		if l.Current != 0 {
			cur = fmt.Sprintf("%s device self-test in progress, %d%% done", selfTestNames[l.Current], l.Completion)
		}
		fmt.Fprintf(w, "Current operation  : %#x (%s)\nCurrent Completion : %d%%\n", l.Current, cur, l.Completion)
		for i, e := range res {
			r := fmt.Sprintf("%#x", e.Result)
			if int(e.Result) < len(selfTestResults) {
				r += " (" + selfTestResults[e.Result] + ")"
			}
			fmt.Fprintf(w, "Self Test Result[%d]:\n  Operation Result             : %s\n  Self Test Code               : %s\n  Valid Diagnostic Information : %#x\n  Power on hours (POH)         : %#x\n",
				i, r, selfTestNames[e.Code], e.ValidInfo, e.PowerOnHours)
			if e.ValidInfo&1 != 0 {
				fmt.Fprintf(w, "  Namespace Identifier         : %#x\n", e.NSID)
			}
			if e.ValidInfo&2 != 0 {
				fmt.Fprintf(w, "  Failing LBA                  : %#x\n", e.FailingLBA)
			}
			if e.ValidInfo&0xc != 0 {
				fmt.Fprintf(w, "  Status                       : %s\n", spec.StatusName(e.SCT, e.SC))
			}
		}
		return nil
	})
	cmd.Flags().IntVarP(&entries, "dst-entries", "e", 0, "results to show, newest first (0: all)")
	return cmd
}

// sanitize

var sanitizeActions = map[uint8]string{nvme.SanitizeExitFailure: "exit failure mode", nvme.SanitizeBlockErase: "block erase",
	nvme.SanitizeOverwrite: "overwrite", nvme.SanitizeCryptoErase: "crypto erase"}

func sanitizeCmd(a app, g *globals) *cobra.Command {
	var o nvme.SanitizeOptions
	var act uint8
	var force bool
	cmd := ctrlCmd(a, "sanitize", "Sanitize: erase all user data of every namespace (nvme sanitize -a ACTION; needs --force)", func(cmd *cobra.Command) error {
		if !cmd.Flags().Changed("sanact") {
			return usagef("sanitize: -a/--sanact is required: 1 exit failure mode, 2 block erase, 3 overwrite, 4 crypto erase")
		}
		if sanitizeActions[act] == "" {
			return usagef("sanitize: --sanact %d: want 1 (exit failure mode), 2 (block erase), 3 (overwrite) or 4 (crypto erase)", act)
		}
		if o.OWPASS > 16 {
			return usagef("sanitize: --owpass %d: want 0 to 16", o.OWPASS)
		}
		if act != nvme.SanitizeOverwrite && (cmd.Flags().Changed("owpass") || cmd.Flags().Changed("ovrpat") || o.OIPBP) {
			return usagef("sanitize: --owpass, --ovrpat and --oipbp go with --sanact 3 (overwrite)")
		}
		if act != nvme.SanitizeExitFailure && !force {
			return usagef("sanitize erases every namespace of the controller: add --force (nvmectl never prompts)")
		}
		return nil
	}, func(cmd *cobra.Command, c *nvme.Controller) error {
		if err := c.Sanitize(act, o); err != nil {
			var se *nvme.StatusError
			if errors.As(err, &se) && se.SCT == spec.SCTGeneric && se.SC == spec.SCInvalidOpcode {
				return devicef("%w (the controller's SANICAP is %#x: it has no sanitize)", err, c.Identify().SANICAP)
			}
			return err
		}
		if g.out == formatJSON {
			return writeJSON(cmd.OutOrStdout(), record{{key: "sanact", val: act}})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "sanitize: Success, %s started; sanitize-log shows the progress\n", sanitizeActions[act])
		return nil
	})
	f := cmd.Flags()
	f.Uint8VarP(&act, "sanact", "a", 0, "action (required): 1 exit failure mode, 2 block erase, 3 overwrite, 4 crypto erase")
	f.BoolVarP(&o.AUSE, "ause", "u", false, "allow unrestricted sanitize exit")
	f.Uint8VarP(&o.OWPASS, "owpass", "n", 0, "overwrite passes (0: 16)")
	f.BoolVarP(&o.OIPBP, "oipbp", "i", false, "invert the overwrite pattern between passes")
	f.BoolVarP(&o.NoDealloc, "no-dealloc", "d", false, "no deallocate after sanitize")
	f.Uint32VarP(&o.Pattern, "ovrpat", "p", 0, "overwrite pattern")
	f.BoolVar(&force, "force", false, "really erase everything (required, except for exit failure mode)")
	return cmd
}

var sanitizeStates = []string{"NVM subsystem has never been sanitized", "Most recent sanitize operation completed successfully",
	"A sanitize operation is currently in progress", "Most recent sanitize operation failed",
	"Most recent sanitize operation completed successfully with deallocation of all user data"}

func sanitizeLogCmd(a app, g *globals) *cobra.Command {
	return ctrlCmd(a, "sanitize-log", "Sanitize Status log (nvme sanitize-log)", nil, func(cmd *cobra.Command, c *nvme.Controller) error {
		s, err := c.SanitizeStatusLog()
		if err != nil {
			return err
		}
		st := s.Status & 7
		state := "reserved"
		if int(st) < len(sanitizeStates) {
			state = sanitizeStates[st]
		}
		var r record
		r.add("sprog", s.Progress)
		r.add("sstat", record{{key: "global_erased", val: s.Status >> 8 & 1}, {key: "no_cmplted_passes", val: s.Status >> 3 & 0x1f},
			{key: "status", val: st}}, fmt.Sprintf("%#x (%s)", s.Status, state))
		r.add("cdw10_info", s.CDW10, fmt.Sprintf("%#x", s.CDW10))
		est := func(k string, v uint32) {
			t := strconv.FormatUint(uint64(v), 10) + " s"
			if v == 0xffffffff {
				t = "no estimate"
			}
			r.add(k, v, t)
		}
		est("time_over_write", s.EstOverwrite)
		est("time_block_erase", s.EstBlockErase)
		est("time_crypto_erase", s.EstCryptoErase)
		est("time_over_write_no_dealloc", s.EstOverwriteNoDealloc)
		est("time_block_erase_no_dealloc", s.EstBlockEraseNoDealloc)
		est("time_crypto_erase_no_dealloc", s.EstCryptoNoDealloc)
		w := cmd.OutOrStdout()
		if g.out == formatJSON {
			// nvme-cli keys the object by device name.
			return writeJSON(w, record{{key: cmd.Flags().Arg(0), val: r}})
		}
		fmt.Fprintf(w, "Sanitize Progress Log for device:%s\n", cmd.Flags().Arg(0))
		if err := r.writeText(w); err != nil {
			return err
		}
		if strings.Contains(state, "progress") {
			fmt.Fprintf(w, "progress: %.1f%%\n", float64(s.Progress)*100/65536)
		}
		return nil
	})
}
