package guest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// What NVMe over TCP needs in the guest besides its modules (QEMU.md, "NVMe
// over TCP inside the guest"): configfs for the kernel target, lo up, and
// the host identity nvme-cli reads.

// ConfigfsDir is where configfs is mounted; the kernel target lives in
// ConfigfsDir/nvmet.
const ConfigfsDir = "/sys/kernel/config"

// MountConfigfs mounts configfs at ConfigfsDir unless it is mounted.
func MountConfigfs() error {
	if _, err := os.Stat(filepath.Join(ConfigfsDir, "nvmet")); err == nil {
		return nil
	}
	err := unix.Mount("configfs", ConfigfsDir, "configfs", 0, "")
	if err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount configfs on %s: %w", ConfigfsDir, err)
	}
	return nil
}

// LoopbackUp brings the loopback interface up (the guest init leaves it
// down).
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	return nil
}

// WriteHostIdentity writes /etc/nvme/hostnqn and /etc/nvme/hostid, which
// nvme-cli's connect and discover read.
func WriteHostIdentity(nqn, id string) error {
	if err := os.MkdirAll("/etc/nvme", 0o755); err != nil {
		return fmt.Errorf("host identity: %w", err)
	}
	for name, v := range map[string]string{"hostnqn": nqn, "hostid": id} {
		if err := os.WriteFile("/etc/nvme/"+name, []byte(v+"\n"), 0o644); err != nil {
			return fmt.Errorf("host identity: %w", err)
		}
	}
	return nil
}

// writeAttr writes one configfs attribute.
func writeAttr(path, v string) error {
	if err := os.WriteFile(path, []byte(v), 0); err != nil {
		return fmt.Errorf("nvmet: write %q to %s: %w", v, path, err)
	}
	return nil
}

// NVMetPort is one port of the kernel target.
type NVMetPort struct {
	ID      int    // the directory name under nvmet/ports
	Addr    string // IPv4 address, "127.0.0.1"
	Service string // TCP port, "4420"
}

// NVMetSubsystem is a subsystem of the kernel target, as NewNVMetSubsystem
// made it.
type NVMetSubsystem struct {
	NQN   string
	Ports []NVMetPort
	// Devices are the namespaces' block devices, NSID i+1 for Devices[i].
	Devices []string
}

func nvmetDir(parts ...string) string {
	return filepath.Join(append([]string{ConfigfsDir, "nvmet"}, parts...)...)
}

// NewNVMetSubsystem creates, through configfs, the subsystem nqn open to
// any host with one namespace per block device, and links it into each
// port (creating the port as TCP over IPv4 when it does not exist). On an
// error it removes what it made.
func NewNVMetSubsystem(nqn string, devices []string, ports []NVMetPort) (s *NVMetSubsystem, err error) {
	if strings.ContainsAny(nqn, "/\x00") || nqn == "" {
		return nil, fmt.Errorf("nvmet: bad subsystem NQN %q", nqn)
	}
	s = &NVMetSubsystem{NQN: nqn}
	defer func() {
		if err != nil {
			_ = s.Remove()
		}
	}()
	sub := nvmetDir("subsystems", nqn)
	if err := os.Mkdir(sub, 0o755); err != nil {
		return nil, fmt.Errorf("nvmet: create subsystem: %w", err)
	}
	if err := writeAttr(filepath.Join(sub, "attr_allow_any_host"), "1"); err != nil {
		return nil, err
	}
	for i, dev := range devices {
		ns := filepath.Join(sub, "namespaces", fmt.Sprint(i+1))
		if err := os.Mkdir(ns, 0o755); err != nil {
			return nil, fmt.Errorf("nvmet: create namespace %d: %w", i+1, err)
		}
		s.Devices = append(s.Devices, dev)
		if err := writeAttr(filepath.Join(ns, "device_path"), dev); err != nil {
			return nil, err
		}
		if err := writeAttr(filepath.Join(ns, "enable"), "1"); err != nil {
			return nil, err
		}
	}
	for _, p := range ports {
		dir := nvmetDir("ports", fmt.Sprint(p.ID))
		if _, err := os.Stat(dir); err != nil {
			if err := os.Mkdir(dir, 0o755); err != nil {
				return nil, fmt.Errorf("nvmet: create port %d: %w", p.ID, err)
			}
			for _, a := range [][2]string{{"addr_trtype", "tcp"}, {"addr_adrfam", "ipv4"}, {"addr_traddr", p.Addr}, {"addr_trsvcid", p.Service}} {
				if err := writeAttr(filepath.Join(dir, a[0]), a[1]); err != nil {
					return nil, err
				}
			}
		}
		s.Ports = append(s.Ports, p)
		if err := s.Link(p); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Link links the subsystem into port p: the port starts listening when its
// first subsystem is linked.
func (s *NVMetSubsystem) Link(p NVMetPort) error {
	link := nvmetDir("ports", fmt.Sprint(p.ID), "subsystems", s.NQN)
	if err := os.Symlink(nvmetDir("subsystems", s.NQN), link); err != nil {
		return fmt.Errorf("nvmet: link %s into port %d: %w", s.NQN, p.ID, err)
	}
	return nil
}

// Unlink removes the subsystem from port p: the port stops listening when
// its last subsystem is unlinked, and the hosts connected through it lose
// their connections.
func (s *NVMetSubsystem) Unlink(p NVMetPort) error {
	link := nvmetDir("ports", fmt.Sprint(p.ID), "subsystems", s.NQN)
	if err := os.Remove(link); err != nil {
		return fmt.Errorf("nvmet: unlink %s from port %d: %w", s.NQN, p.ID, err)
	}
	return nil
}

// Remove takes the subsystem down: its port links, the ports left without
// subsystems, its namespaces and itself. It keeps going past errors and
// returns the first.
func (s *NVMetSubsystem) Remove() error {
	var first error
	keep := func(err error) {
		if err != nil && !errors.Is(err, os.ErrNotExist) && first == nil {
			first = err
		}
	}
	for _, p := range s.Ports {
		link := nvmetDir("ports", fmt.Sprint(p.ID), "subsystems", s.NQN)
		if _, err := os.Lstat(link); err == nil {
			keep(os.Remove(link))
		}
		left, _ := os.ReadDir(nvmetDir("ports", fmt.Sprint(p.ID), "subsystems"))
		if len(left) == 0 {
			keep(os.Remove(nvmetDir("ports", fmt.Sprint(p.ID))))
		}
	}
	sub := nvmetDir("subsystems", s.NQN)
	if _, err := os.Stat(sub); err != nil {
		return first
	}
	for i := range s.Devices {
		ns := filepath.Join(sub, "namespaces", fmt.Sprint(i+1))
		if _, err := os.Stat(ns); err != nil {
			continue
		}
		_ = os.WriteFile(filepath.Join(ns, "enable"), []byte("0"), 0)
		keep(os.Remove(ns))
	}
	keep(os.Remove(sub))
	if first != nil {
		return fmt.Errorf("nvmet: remove %s: %w", s.NQN, first)
	}
	return nil
}
