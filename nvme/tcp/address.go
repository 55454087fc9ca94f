package tcp

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/seedb8fa28ef/gonvme/nvme/fabrics"
)

// ErrAddress is what ParseAddress wraps for every string it refuses.
var ErrAddress = errors.New("bad NVMe/TCP address")

// addressForm is the form ParseAddress accepts, for its errors.
const addressForm = "want tcp://HOST[:PORT]/NQN, HOST an IPv4 address, a name or an IPv6 address in brackets"

// ParseAddress parses tcp://HOST[:PORT]/NQN (IPv6 in brackets:
// tcp://[fe80::1%eth0]:4420/NQN). discovery selects the default port
// (DefaultDiscoveryPort instead of DefaultPort) and allows the NQN to be
// empty (tcp://HOST[:PORT] or tcp://HOST[:PORT]/). Everything after the
// first "/" that follows the host is the NQN, taken as written (no
// percent-decoding), and must pass fabrics.CheckNQN. Errors wrap
// ErrAddress and name what is wrong. Any goroutine may call it.
func ParseAddress(s string, discovery bool) (Address, error) {
	bad := func(format string, args ...any) (Address, error) {
		return Address{}, fmt.Errorf("%q: %s (%s): %w", s, fmt.Sprintf(format, args...), addressForm, ErrAddress)
	}
	scheme, rest, ok := strings.Cut(s, "://")
	switch {
	case !ok:
		return bad("no tcp:// in front")
	case strings.ToLower(scheme) != "tcp":
		return bad("transport %q is not supported, only tcp", scheme)
	}
	hostport, nqn, _ := strings.Cut(rest, "/")
	if strings.ContainsAny(hostport, "@?#") {
		return bad("user names, queries and fragments have no meaning here")
	}
	a := Address{Port: DefaultPort}
	if discovery {
		a.Port = DefaultDiscoveryPort
	}
	var port string
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return bad("no ] after the IPv6 address")
		}
		ip, err := netip.ParseAddr(hostport[1:end])
		if err != nil || !ip.Is6() {
			return bad("%q in brackets is not an IPv6 address", hostport[1:end])
		}
		a.Host = ip.String()
		after := hostport[end+1:]
		switch {
		case after == "":
		case strings.HasPrefix(after, ":"):
			port = after[1:]
			if port == "" {
				return bad("empty port after the colon")
			}
		default:
			return bad("%q after the IPv6 address: want :PORT or nothing", after)
		}
	} else {
		host := hostport
		if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
			if strings.Count(hostport, ":") > 1 {
				return bad("an IPv6 address goes in brackets, like tcp://[::1]:4420/NQN")
			}
			host, port = hostport[:i], hostport[i+1:]
			if port == "" {
				return bad("empty port after the colon")
			}
		}
		if host == "" {
			return bad("no host")
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			a.Host = ip.String()
		} else if why := checkHostName(host); why != "" {
			return bad("host %q: %s", host, why)
		} else {
			a.Host = strings.ToLower(host)
		}
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 || port[0] == '+' {
			return bad("port %q: want a number from 1 to 65535", port)
		}
		a.Port = int(n)
	}
	if nqn == "" {
		if !discovery {
			return bad("no subsystem NQN after the host (nvmectl discover lists them)")
		}
		return a, nil
	}
	if err := fabrics.CheckNQN(nqn); err != nil {
		return bad("subsystem NQN: %v", err)
	}
	a.NQN = nqn
	return a, nil
}

// checkHostName says what is wrong with a DNS name (RFC 1123 labels:
// letters, digits and hyphens, not at either end, 1 to 63 bytes each, 253
// in all), or "" when nothing is. A name of digits and dots only is an
// IPv4 address gone wrong, not a name.
func checkHostName(h string) string {
	if len(h) > 253 {
		return fmt.Sprintf("%d bytes, a name has at most 253", len(h))
	}
	digits := true
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return "want labels of 1 to 63 characters between dots"
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Sprintf("label %q starts or ends with a hyphen", label)
		}
		for _, c := range label {
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
				digits = false
			default:
				return fmt.Sprintf("%q is not allowed in a host name", c)
			}
		}
	}
	if digits {
		return "not an IPv4 address (want four numbers 0 to 255, like 192.0.2.7)"
	}
	return ""
}
