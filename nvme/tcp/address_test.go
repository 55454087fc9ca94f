package tcp_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/tcp"
)

func TestParseAddress(t *testing.T) {
	const nqn = "nqn.2024-01.io.gonvme:nvmet"
	good := []struct {
		in        string
		discovery bool
		want      tcp.Address
	}{
		{"tcp://127.0.0.1:4420/" + nqn, false, tcp.Address{Host: "127.0.0.1", Port: 4420, NQN: nqn}},
		{"tcp://192.0.2.7/" + nqn, false, tcp.Address{Host: "192.0.2.7", Port: tcp.DefaultPort, NQN: nqn}},
		{"TCP://192.0.2.7:1/" + nqn, false, tcp.Address{Host: "192.0.2.7", Port: 1, NQN: nqn}},
		{"tcp://[::1]:4421/" + nqn, false, tcp.Address{Host: "::1", Port: 4421, NQN: nqn}},
		{"tcp://[2001:DB8::7]/" + nqn, false, tcp.Address{Host: "2001:db8::7", Port: tcp.DefaultPort, NQN: nqn}},
		{"tcp://[fe80::1%eth0]:4420/" + nqn, false, tcp.Address{Host: "fe80::1%eth0", Port: 4420, NQN: nqn}},
		{"tcp://[::ffff:192.0.2.7]:4420/" + nqn, false, tcp.Address{Host: "::ffff:192.0.2.7", Port: 4420, NQN: nqn}},
		{"tcp://storage-1.Example.com:65535/" + nqn, false, tcp.Address{Host: "storage-1.example.com", Port: 65535, NQN: nqn}},
		{"tcp://localhost/" + nqn, false, tcp.Address{Host: "localhost", Port: tcp.DefaultPort, NQN: nqn}},
		// The NQN is everything after the host, taken as written.
		{"tcp://h1/nqn.2014-08.org.nvmexpress:uuid:a/b%20c", false, tcp.Address{Host: "h1", Port: tcp.DefaultPort, NQN: "nqn.2014-08.org.nvmexpress:uuid:a/b%20c"}},
		// Discovery: its own default port, the NQN optional.
		{"tcp://127.0.0.1", true, tcp.Address{Host: "127.0.0.1", Port: tcp.DefaultDiscoveryPort}},
		{"tcp://127.0.0.1/", true, tcp.Address{Host: "127.0.0.1", Port: tcp.DefaultDiscoveryPort}},
		{"tcp://[::1]", true, tcp.Address{Host: "::1", Port: tcp.DefaultDiscoveryPort}},
		{"tcp://nvmet.example:4420", true, tcp.Address{Host: "nvmet.example", Port: 4420}},
		{"tcp://127.0.0.1/nqn.2014-08.org.nvmexpress.discovery", true, tcp.Address{Host: "127.0.0.1", Port: tcp.DefaultDiscoveryPort, NQN: "nqn.2014-08.org.nvmexpress.discovery"}},
	}
	for _, c := range good {
		got, err := tcp.ParseAddress(c.in, c.discovery)
		if err != nil || got != c.want {
			t.Errorf("ParseAddress(%q, %v) = %+v, %v; want %+v", c.in, c.discovery, got, err, c.want)
			continue
		}
		// Address.String gives back what ParseAddress reads as the same.
		if back, err := tcp.ParseAddress(got.String(), c.discovery); err != nil || back != got {
			t.Errorf("%q: String %q parses to %+v, %v", c.in, got.String(), back, err)
		}
	}
	bad := []struct {
		in        string
		discovery bool
		why       string // in the error
	}{
		{"", false, "no tcp://"},
		{"127.0.0.1:4420/" + nqn, false, "no tcp://"},
		{"0000:00:04.0", false, "no tcp://"},
		{"rdma://127.0.0.1/" + nqn, false, `transport "rdma" is not supported`},
		{"tcp://127.0.0.1:4420", false, "no subsystem NQN"},
		{"tcp://127.0.0.1:4420/", false, "no subsystem NQN"},
		{"tcp:///" + nqn, false, "no host"},
		{"tcp://:4420/" + nqn, false, "no host"},
		{"tcp://127.0.0.1:/" + nqn, false, "empty port"},
		{"tcp://127.0.0.1:0/" + nqn, false, `port "0"`},
		{"tcp://127.0.0.1:65536/" + nqn, false, `port "65536"`},
		{"tcp://127.0.0.1:44x/" + nqn, false, `port "44x"`},
		{"tcp://127.0.0.1:+44/" + nqn, false, `port "+44"`},
		{"tcp://::1/" + nqn, false, "IPv6 address goes in brackets"},
		{"tcp://::1:4420/" + nqn, false, "IPv6 address goes in brackets"},
		{"tcp://[::1/" + nqn, false, "no ]"},
		{"tcp://[127.0.0.1]/" + nqn, false, "not an IPv6 address"},
		{"tcp://[nvmet]/" + nqn, false, "not an IPv6 address"},
		{"tcp://[::1]4420/" + nqn, false, "after the IPv6 address"},
		{"tcp://[::1]:/" + nqn, false, "empty port"},
		{"tcp://256.1.1.1/" + nqn, false, "not an IPv4 address"},
		{"tcp://10.1.1/" + nqn, false, "not an IPv4 address"},
		{"tcp://bad_host/" + nqn, false, `'_' is not allowed`},
		{"tcp://-a.example/" + nqn, false, "hyphen"},
		{"tcp://a..example/" + nqn, false, "labels of 1 to 63"},
		{"tcp://" + strings.Repeat("a", 64) + "/" + nqn, false, "labels of 1 to 63"},
		{"tcp://user@127.0.0.1/" + nqn, false, "user names"},
		{"tcp://127.0.0.1?x=1/" + nqn, false, "queries"},
		{"tcp://127.0.0.1/not-an-nqn", false, `does not start with "nqn."`},
		{"tcp://127.0.0.1/nqn." + strings.Repeat("x", 300), false, "at most 223"},
		{"tcp://127.0.0.1/nqn.x\x00y", true, "NUL"},
	}
	for _, c := range bad {
		a, err := tcp.ParseAddress(c.in, c.discovery)
		if err == nil {
			t.Errorf("ParseAddress(%q, %v) = %+v, want an error saying %q", c.in, c.discovery, a, c.why)
			continue
		}
		if !errors.Is(err, tcp.ErrAddress) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("ParseAddress(%q, %v): %v; want ErrAddress saying %q", c.in, c.discovery, err, c.why)
		}
	}
}
