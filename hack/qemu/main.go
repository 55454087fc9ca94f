// Command qemu is gonvme's VM harness: `go run ./hack/qemu <verb>`. See
// doc.go and README.md.
package main

import (
	"errors"
	"fmt"
	"os"
)

const usage = `usage: go run ./hack/qemu <verb> [flags] [args]

verbs:
  setup                       install QEMU if missing, fetch and cache the guest kernel and modules
  test [flags] [packages]     run the *_vm_test.go tests of packages (default ./...) in QEMU guests
  run [flags] -- CMD ARGS     build ./cmd/CMD, boot a guest, run it there, exit with its status
  selftest                    prove the harness catches failures, panics, hangs and missing devices
  ci                          setup, gofmt, vet, host tests with -race, selftest, VM tests
  bench [flags]               one boot: fio on the kernel nvme driver vs nvmectl perf (gonvme), a table
  lockcheck                   disassemble nvmectl and the mmio users' tests: no register store is locked
`

// exitError carries an exit status out of a verb.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	verb, args := os.Args[1], os.Args[2:]
	var err error
	switch verb {
	case "setup":
		_, err = setup(os.Stdout)
	case "test":
		err = testVerb(args)
	case "run":
		err = runVerb(args)
	case "selftest":
		err = selftestVerb(args)
	case "ci":
		err = ciVerb(args)
	case "bench":
		err = benchVerb(args)
	case "lockcheck":
		err = lockVerb(args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "unknown verb %q\n%s", verb, usage)
		os.Exit(2)
	}
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "hack/qemu:", err)
		os.Exit(1)
	}
}
