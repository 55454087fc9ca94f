package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/guest"
	"github.com/seedb8fa28ef/gonvme/hack/qemu/vmtest"
)

// runVerb builds ./cmd/COMMAND for the guest, boots a profile, binds the
// controllers and runs the command; it exits with the command's status.
func runVerb(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var f bootFlags
	f.register(fs, "default")
	bind := fs.String("bind", "vfio", "bind the controllers to vfio, kernel (nvme driver) or none")
	nvmet := fs.Bool("nvmet", false, "export the controllers' namespaces and null_blk through the kernel's NVMe/TCP target as "+
		vmtest.DefaultKernelTargetNQN+" on 127.0.0.1:4420, discovery on 8009 (implies --bind kernel and adds nvmf to the profile)")
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	if *nvmet {
		if err := nvmetRun(fs, &f, bind); err != nil {
			return err
		}
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return fmt.Errorf("run: usage: go run ./hack/qemu run [--profile p] [--bind vfio|kernel|none] -- COMMAND ARGS [';'|'&' COMMAND ARGS ...]")
	}
	switch *bind {
	case "vfio", "kernel", "none":
	default:
		return fmt.Errorf("run: --bind %q: want vfio, kernel or none", *bind)
	}
	prof, err := vmtest.ParseProfile(f.Profile)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	cmds, background := splitCommands(argv)
	for _, c := range cmds {
		if !slices.Contains(prof.Tools, c[0]) && strings.ContainsAny(c[0], "/.") {
			return fmt.Errorf("run: %q: name a command under ./cmd (e.g. nvmectl) or a tool the profile carries (%s)", c[0], strings.Join(prof.Tools, ", "))
		}
	}
	name := cmds[0][0]
	a, err := setup(os.Stdout)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "gonvme-run-")
	if err != nil {
		return err
	}
	if f.Keep {
		fmt.Printf("hack/qemu: work dir %s (kept)\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	if err := goBuild(os.Stdout, "build", "-o", filepath.Join(work, "init"), modulePath+"/hack/qemu/guestinit"); err != nil {
		return err
	}
	bt := &vmtest.Boot{Bind: *bind, NVMet: *nvmet, Background: background}
	var extra []ramFile
	built := map[string]bool{}
	for i, c := range cmds {
		// A tool the profile carries (nvme, fio, ...) is already in
		// guest.BinDir; anything else is built from ./cmd.
		if !built[c[0]] && !slices.Contains(prof.Tools, c[0]) {
			if err := goBuild(os.Stdout, "build", "-o", filepath.Join(work, c[0]), modulePath+"/cmd/"+c[0]); err != nil {
				return err
			}
			extra = append(extra, ramFile{Name: strings.TrimPrefix(guest.BinDir, "/") + "/" + c[0], Src: filepath.Join(work, c[0]), Perm: 0o755})
			built[c[0]] = true
		}
		full := append([]string{guest.BinDir + "/" + c[0]}, c[1:]...)
		if i == 0 {
			bt.Command = full
		} else {
			bt.Then = append(bt.Then, full)
		}
	}
	v, elapsed, err := bootProfile(os.Stdout, a, work, f.Profile, bt, extra, &f)
	if err != nil {
		return err
	}
	fmt.Printf("boot %s: %.1fs from start to verdict\n", f.Profile, elapsed.Seconds())
	if !v.Pass {
		return fmt.Errorf("run %s: %s", name, v.Reason)
	}
	if v.ExitStatus < 0 {
		return fmt.Errorf("run %s: the guest printed no exit status", name)
	}
	if v.ExitStatus != 0 {
		return exitError{v.ExitStatus}
	}
	return nil
}

// splitCommands splits argv at lone ";" and "&" arguments (quote them for
// the shell: ';' '&'), so one boot can run several commands in order. A
// command ended by "&" runs in the background (a server such as nvmectl
// serve); background lists those commands' indices.
func splitCommands(argv []string) (cmds [][]string, background []int) {
	cur := []string{}
	for _, a := range argv {
		if a == ";" || a == "&" {
			if len(cur) > 0 {
				if a == "&" {
					background = append(background, len(cmds))
				}
				cmds = append(cmds, cur)
			}
			cur = []string{}
			continue
		}
		cur = append(cur, a)
	}
	if len(cur) > 0 {
		cmds = append(cmds, cur)
	}
	return cmds, background
}

// nvmetRun adjusts run's flags for --nvmet: the controllers go to the
// kernel nvme driver (their block devices are the target's namespaces)
// and the profile carries the fabrics modules and nvme-cli.
func nvmetRun(fs *flag.FlagSet, f *bootFlags, bind *string) error {
	bindSet := false
	fs.Visit(func(fl *flag.Flag) { bindSet = bindSet || fl.Name == "bind" })
	if bindSet && *bind != "kernel" {
		return fmt.Errorf("run: --nvmet exports the controllers' kernel block devices: it takes --bind kernel, not %s", *bind)
	}
	*bind = "kernel"
	p, err := vmtest.ParseProfile(f.Profile)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	if !p.Fabrics {
		f.Profile += "+nvmf"
	}
	return nil
}
