package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Modules the guest loads, by name, in a preferred order; depends= from each
// .ko's modinfo adds what is missing and fixes the order (QEMU.md).
var (
	vfioModules = []string{"vfio", "vfio_iommu_type1", "vfio_virqfd", "irqbypass", "vfio-pci-core", "vfio-pci"}
	// ext4 rides along with the kernel nvme driver: it mounts ext2, so
	// tests can put a file system on a kernel-driven namespace (nvmectl
	// setup must refuse a controller with a mounted file system).
	nvmeModules = []string{"crct10dif_common", "crct10dif_generic", "crc-t10dif", "crc64",
		"crc64_rocksoft_generic", "crc64-rocksoft", "t10-pi", "nvme-core", "nvme", "crc32c_generic", "ext4"}
	// fabricsModules are loaded on demand by the tests that need NVMe over
	// TCP (vmtest's LoadFabrics): the kernel target (configfs, nvmet,
	// nvmet-tcp), the initiator (nvme-fabrics, nvme-tcp), CRC32C for
	// digests, null_blk as a second backing device and ext4 for a file
	// system on a connected namespace. The generic CRC algorithms come
	// first, as in nvmeModules: the guest has no modprobe for the crypto
	// API to call. Only boots whose profile asks for them carry them
	// (vmtest.Profile.Fabrics); nvme, the PCI driver, is not among them.
	fabricsModules = []string{"crct10dif_generic", "crc64_rocksoft_generic", "configfs", "nvmet", "nvmet-tcp",
		"nvme-fabrics", "nvme-tcp", "crc32c_generic", "null_blk", "ext4"}
)

// moduleRoots is what the cached module set was made from: a change to the
// lists above makes setup build the cache again.
func moduleRoots() []string { return append(append([]string{}, vfioModules...), nvmeModules...) }

// Assets is what setup leaves in the cache for a boot: recorded in
// assets.json, the stamp that makes setup idempotent.
type Assets struct {
	Kernel      string   `json:"kernel"`       // package, "linux-image-6.1.0-56-amd64"
	Release     string   `json:"release"`      // uname -r, "6.1.0-56-amd64"
	Vmlinux     string   `json:"vmlinux"`      // uncompressed kernel for the PVH entry
	ModuleDir   string   `json:"module_dir"`   // holds the .ko files below
	VFIOModules []string `json:"vfio_modules"` // file names in load order
	NVMeModules []string `json:"nvme_modules"` // file names in load order
	ModuleRoots []string `json:"module_roots"` // the module lists the set was made from
	// FabricsModules are file names in load order (fabricsModules and what
	// they depend on, some of them in NVMeModules too), made from
	// FabricsRoots. They are kept apart from ModuleRoots so that a
	// checkout without them still takes the cache as it is.
	FabricsModules []string `json:"fabrics_modules,omitempty"`
	FabricsRoots   []string `json:"fabrics_roots,omitempty"`
	QEMU           string   `json:"-"`
	Firmware       string   `json:"-"`
}

// cacheDir returns $GONVME_CACHE, $XDG_CACHE_HOME/gonvme or ~/.cache/gonvme.
func cacheDir() (string, error) {
	if d := os.Getenv("GONVME_CACHE"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "gonvme"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache dir: %w", err)
	}
	return filepath.Join(home, ".cache", "gonvme"), nil
}

// qboot locations Debian's qemu-system-data uses.
var firmwarePaths = []string{"/usr/share/qemu/qboot.rom", "/usr/share/qboot/bios.bin"}

func findQEMU() (qemu, firmware string, err error) {
	qemu, err = exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return "", "", fmt.Errorf("qemu-system-x86_64 not found: %w", err)
	}
	for _, p := range firmwarePaths {
		if _, err := os.Stat(p); err == nil {
			return qemu, p, nil
		}
	}
	return "", "", fmt.Errorf("qboot.rom not found in %v", firmwarePaths)
}

const aptInstall = "apt-get install -y --no-install-recommends qemu-system-x86 xz-utils"

// ensureTools installs QEMU and xz from Debian when they are missing.
func ensureTools(log io.Writer) error {
	missing := false
	if _, _, err := findQEMU(); err != nil {
		missing = true
	}
	if _, err := exec.LookPath("xz"); err != nil {
		missing = true
	}
	if !missing {
		fmt.Fprintln(log, "setup: qemu-system-x86_64, qboot.rom and xz present")
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("qemu or xz missing and not root: run `sudo apt-get update && sudo %s`", aptInstall)
	}
	fmt.Fprintln(log, "setup: installing QEMU and xz from Debian:", aptInstall)
	if err := aptGet(log, strings.Fields(aptInstall)[1:]...); err != nil {
		return err
	}
	_, _, err := findQEMU()
	return err
}

// aptGet runs apt-get, running apt-get update first when the package lists
// are empty or when the first attempt fails.
func aptGet(log io.Writer, args ...string) error {
	lists, _ := filepath.Glob("/var/lib/apt/lists/*_Packages")
	if len(lists) == 0 {
		if err := runLogged(log, "", "apt-get", "update"); err != nil {
			return err
		}
	}
	if err := runLogged(log, "", "apt-get", args...); err == nil {
		return nil
	}
	if err := runLogged(log, "", "apt-get", "update"); err != nil {
		return err
	}
	return runLogged(log, "", "apt-get", args...)
}

func runLogged(log io.Writer, dir, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.Stdin = nil
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// resolveKernel names the package linux-image-amd64 depends on right now.
func resolveKernel() (string, error) {
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends linux-image-amd64: %w", err)
	}
	return parseAptDepends(out)
}

func parseAptDepends(out []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(strings.TrimSpace(sc.Text()))
		if len(f) == 2 && strings.TrimPrefix(f[0], "|") == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("no linux-image dependency in apt-cache output %q", out)
}

// loadAssets reads the stamp; it fails when setup has not run.
func loadAssets() (*Assets, error) {
	dir, err := cacheDir()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "assets.json"))
	if err != nil {
		return nil, fmt.Errorf("no cached kernel (run `go run ./hack/qemu setup`): %w", err)
	}
	var a Assets
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("read %s/assets.json: %w", dir, err)
	}
	for _, p := range []string{a.Vmlinux, a.ModuleDir} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("cache incomplete (run setup again): %w", err)
		}
	}
	a.QEMU, a.Firmware, err = findQEMU()
	if err != nil {
		return nil, fmt.Errorf("%w (run `go run ./hack/qemu setup`)", err)
	}
	return &a, nil
}

// setup provisions QEMU, the kernel and its modules; it does nothing that
// is already done.
func setup(log io.Writer) (*Assets, error) {
	if err := ensureTools(log); err != nil {
		return nil, err
	}
	if err := ensureCC(log); err != nil {
		return nil, err
	}
	ensureBenchTools(log)
	dir, err := cacheDir()
	if err != nil {
		return nil, err
	}
	cached, cacheErr := loadAssets()
	pkg, err := resolveKernel()
	if err != nil {
		if cacheErr == nil {
			fmt.Fprintf(log, "setup: %v; using cached %s\n", err, cached.Kernel)
			return cached, nil
		}
		if os.Geteuid() == 0 {
			if uerr := runLogged(log, "", "apt-get", "update"); uerr == nil {
				pkg, err = resolveKernel()
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if cacheErr == nil && cached.Kernel == pkg && slices.Equal(cached.ModuleRoots, moduleRoots()) {
		if !slices.Equal(cached.FabricsRoots, fabricsModules) {
			fmt.Fprintf(log, "setup: adding the NVMe/TCP modules of %s to %s\n", pkg, dir)
			if err := addFabrics(log, dir, cached); err != nil {
				return nil, err
			}
			return cached, nil
		}
		fmt.Fprintf(log, "setup: kernel %s cached in %s\n", pkg, dir)
		return cached, nil
	}
	fmt.Fprintf(log, "setup: fetching kernel %s into %s\n", pkg, dir)
	a, err := fetchKernel(log, dir, pkg)
	if err != nil {
		if cacheErr == nil && slices.Equal(cached.ModuleRoots, moduleRoots()) {
			// Offline, with apt lists that name a newer kernel than the
			// one cached: the cached one still boots every test.
			fmt.Fprintf(log, "setup: WARNING: cannot fetch %s (%v); using the cached %s\n", pkg, err, cached.Kernel)
			return cached, nil
		}
		return nil, err
	}
	if err := writeStamp(dir, a); err != nil {
		return nil, err
	}
	a.QEMU, a.Firmware, err = findQEMU()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "setup: kernel %s ready: vmlinux %s, %d VFIO and %d nvme modules\n",
		a.Release, a.Vmlinux, len(a.VFIOModules), len(a.NVMeModules))
	return a, nil
}

func writeStamp(dir string, a *Assets) error {
	b, _ := json.MarshalIndent(a, "", "  ")
	tmp := filepath.Join(dir, "assets.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write stamp: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "assets.json")); err != nil {
		return fmt.Errorf("write stamp: %w", err)
	}
	return nil
}

// addFabrics fetches the cached kernel's package again and adds the
// fabrics modules to its module directory, leaving every file already
// there as it is (a boot may be reading them), then rewrites the stamp.
func addFabrics(log io.Writer, dir string, a *Assets) error {
	tmp, root, err := downloadKernel(log, dir, a.Kernel)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	mods, err := moduleTree(root, a.Kernel)
	if err != nil {
		return err
	}
	idx, err := indexModules(mods)
	if err != nil {
		return err
	}
	if err := copyFabrics(log, idx, a); err != nil {
		return err
	}
	return writeStamp(dir, a)
}

// copyFabrics orders fabricsModules with their dependencies, records that
// order in a, and copies the files not already in a's VFIO and nvme lists
// into a.ModuleDir (each through a temporary file and a rename).
func copyFabrics(log io.Writer, idx moduleIndex, a *Assets) error {
	order, err := idx.order(fabricsModules)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, n := range append(append([]string{}, a.VFIOModules...), a.NVMeModules...) {
		have[n] = true
	}
	var names []string
	for _, m := range order {
		name := filepath.Base(m.path)
		names = append(names, name)
		if have[name] {
			continue
		}
		dst := filepath.Join(a.ModuleDir, name)
		if err := copyFile(m.path, dst+".tmp"); err != nil {
			return err
		}
		if err := os.Rename(dst+".tmp", dst); err != nil {
			return err
		}
	}
	a.FabricsModules = names
	a.FabricsRoots = append([]string{}, fabricsModules...)
	fmt.Fprintf(log, "setup: fabrics modules %v\n", names)
	return nil
}

// ensureCC makes sure the race detector (cgo) has a C compiler, and that
// the kernel's UAPI headers are there for the tests that compare gonvme's
// ioctl structs with <linux/vfio.h> (package vfio, cgo).
func ensureCC(log io.Writer) error {
	var pkgs []string
	if _, err := exec.LookPath("gcc"); err != nil {
		pkgs = append(pkgs, "gcc", "libc6-dev")
	}
	if _, err := os.Stat(vfioHeader); err != nil {
		pkgs = append(pkgs, "linux-libc-dev")
	}
	if len(pkgs) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		fmt.Fprintf(log, "setup: `go test -race` and the UAPI layout tests need: sudo apt-get install -y %s\n", strings.Join(pkgs, " "))
		return nil
	}
	fmt.Fprintf(log, "setup: installing %s for the race detector and the UAPI layout tests\n", strings.Join(pkgs, " "))
	return aptGet(log, append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)...)
}

// vfioHeader is the kernel UAPI header the vfio layout tests read.
const vfioHeader = "/usr/include/linux/vfio.h"

// benchTools are the host packages `bench` carries into the guest: fio for
// the kernel driver's rows, qemu-img (qemu-utils) for QEMU's nvme:// row.
var benchTools = []struct{ bin, pkg string }{{"fio", "fio"}, {"qemu-img", "qemu-utils"}}

// nvmfTools are the host packages the profiles with Tools (vmtest's nvmf)
// carry into the guest: Debian's nvme-cli, and e2fsprogs for a file system
// on a connected namespace (fio is a bench tool already).
var nvmfTools = []struct{ bin, pkg string }{{"nvme", "nvme-cli"}, {"mkfs.ext4", "e2fsprogs"}, {"e2fsck", "e2fsprogs"}}

// ensureBenchTools installs fio, qemu-utils, nvme-cli and e2fsprogs when
// they are missing and setup runs as root. Only `bench` and the boots of
// profiles that carry tools need them, so a failure is reported and not
// fatal (such a boot then fails naming the missing tool).
func ensureBenchTools(log io.Writer) {
	var pkgs []string
	for _, t := range append(append(benchTools[:0:0], benchTools...), nvmfTools...) {
		if _, err := exec.LookPath(t.bin); err != nil && !slices.Contains(pkgs, t.pkg) {
			pkgs = append(pkgs, t.pkg)
		}
	}
	if len(pkgs) == 0 {
		return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintf(log, "setup: %s missing; `bench` and the nvmf profile need them: sudo apt-get install -y --no-install-recommends %s\n",
			strings.Join(pkgs, " "), strings.Join(pkgs, " "))
		return
	}
	fmt.Fprintf(log, "setup: installing %s for bench and the nvmf profile\n", strings.Join(pkgs, " "))
	if err := aptGet(log, append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)...); err != nil {
		fmt.Fprintf(log, "setup: %v (bench and the nvmf profile will not run)\n", err)
	}
}

// downloadKernel fetches the kernel package pkg into a new temporary
// directory under dir (the caller removes it) and unpacks it into root.
func downloadKernel(log io.Writer, dir, pkg string) (tmp, root string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("cache dir: %w", err)
	}
	tmp, err = os.MkdirTemp(dir, "fetch-")
	if err != nil {
		return "", "", fmt.Errorf("cache dir: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	// apt-get download writes into the current directory; as root it drops
	// to the _apt user, which needs to be able to write there.
	_ = os.Chmod(tmp, 0o777)
	if err := runLogged(log, tmp, "apt-get", "download", pkg); err != nil {
		return "", "", err
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", "", fmt.Errorf("apt-get download %s: found %d .deb files", pkg, len(debs))
	}
	root = filepath.Join(tmp, "root")
	if err := runLogged(log, "", "dpkg-deb", "-x", debs[0], root); err != nil {
		return "", "", err
	}
	return tmp, root, nil
}

// moduleTree returns the lib/modules/<release> directory of an unpacked
// kernel package.
func moduleTree(root, pkg string) (string, error) {
	mods, _ := filepath.Glob(filepath.Join(root, "lib/modules/*"))
	if len(mods) == 0 {
		mods, _ = filepath.Glob(filepath.Join(root, "usr/lib/modules/*"))
	}
	if len(mods) != 1 {
		return "", fmt.Errorf("%s: want one lib/modules/<release>, found %v", pkg, mods)
	}
	return mods[0], nil
}

func fetchKernel(log io.Writer, dir, pkg string) (*Assets, error) {
	tmp, root, err := downloadKernel(log, dir, pkg)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	modTree, err := moduleTree(root, pkg)
	if err != nil {
		return nil, err
	}
	release := filepath.Base(modTree)
	out := filepath.Join(dir, "kernel", release)
	if err := os.RemoveAll(out); err != nil {
		return nil, err
	}
	modOut := filepath.Join(out, "modules")
	if err := os.MkdirAll(modOut, 0o755); err != nil {
		return nil, err
	}
	vmlinux := filepath.Join(out, "vmlinux")
	if err := extractVmlinux(filepath.Join(root, "boot", "vmlinuz-"+release), vmlinux); err != nil {
		return nil, err
	}
	idx, err := indexModules(modTree)
	if err != nil {
		return nil, err
	}
	a := &Assets{Kernel: pkg, Release: release, Vmlinux: vmlinux, ModuleDir: modOut, ModuleRoots: moduleRoots()}
	for _, set := range []struct {
		roots []string
		dst   *[]string
	}{{vfioModules, &a.VFIOModules}, {nvmeModules, &a.NVMeModules}} {
		order, err := idx.order(set.roots)
		if err != nil {
			return nil, err
		}
		for _, m := range order {
			name := filepath.Base(m.path)
			if err := copyFile(m.path, filepath.Join(modOut, name)); err != nil {
				return nil, err
			}
			*set.dst = append(*set.dst, name)
		}
		fmt.Fprintf(log, "setup: modules %v\n", *set.dst)
	}
	if err := copyFabrics(log, idx, a); err != nil {
		return nil, err
	}
	return a, nil
}

// xzMagic starts an XZ stream (the kernel's compressed payload).
var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

// extractVmlinux finds the XZ payload in a bzImage and decompresses it.
func extractVmlinux(vmlinuz, out string) error {
	b, err := os.ReadFile(vmlinuz)
	if err != nil {
		return fmt.Errorf("read kernel: %w", err)
	}
	i := bytes.Index(b, xzMagic)
	if i < 0 {
		return fmt.Errorf("%s: no xz payload", vmlinuz)
	}
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	defer f.Close()
	var stderr bytes.Buffer
	cmd := exec.Command("xz", "-dc", "--single-stream")
	cmd.Stdin = bytes.NewReader(b[i:])
	cmd.Stdout = f
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("xz -dc %s: %w: %s", vmlinuz, err, stderr.Bytes())
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// walkKOs lists every .ko under dir.
func walkKOs(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk modules: %w", err)
	}
	if len(out) == 0 {
		return nil, errors.New("no .ko files (compressed modules are not supported)")
	}
	return out, nil
}
