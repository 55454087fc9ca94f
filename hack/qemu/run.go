package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
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
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return fmt.Errorf("run: usage: go run ./hack/qemu run [--profile p] [--bind vfio|kernel|none] -- COMMAND ARGS")
	}
	switch *bind {
	case "vfio", "kernel", "none":
	default:
		return fmt.Errorf("run: --bind %q: want vfio, kernel or none", *bind)
	}
	name := argv[0]
	if strings.ContainsAny(name, "/.") {
		return fmt.Errorf("run: %q: name a command under ./cmd (e.g. nvmectl)", name)
	}
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
	if err := goBuild(os.Stdout, "build", "-o", filepath.Join(work, name), modulePath+"/cmd/"+name); err != nil {
		return err
	}
	bt := &vmtest.Boot{Command: append([]string{guest.BinDir + "/" + name}, argv[1:]...), Bind: *bind}
	extra := []ramFile{{Name: strings.TrimPrefix(guest.BinDir, "/") + "/" + name, Src: filepath.Join(work, name), Perm: 0o755}}
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
