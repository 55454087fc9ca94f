package tcp_test

import (
	"errors"
	"testing"

	"github.com/seedb8fa28ef/gonvme/nvme/tcp"
)

func TestParseAddress(t *testing.T) {
	const nqn = "nqn.2014-08.org.nvmexpress:uuid:0f8fad5b-d9cb-469f-a165-70867728950e"
	for _, c := range []struct {
		in   string
		disc bool
		want tcp.Address
		bad  bool
	}{
		{in: "tcp://192.0.2.7:4421/" + nqn, want: tcp.Address{Host: "192.0.2.7", Port: 4421, NQN: nqn}},
		{in: "tcp://192.0.2.7/" + nqn, want: tcp.Address{Host: "192.0.2.7", Port: 4420, NQN: nqn}},
		{in: "tcp://[2001:db8::1]:4422/" + nqn, want: tcp.Address{Host: "2001:db8::1", Port: 4422, NQN: nqn}},
		{in: "tcp://[2001:db8::1]/" + nqn, want: tcp.Address{Host: "2001:db8::1", Port: 4420, NQN: nqn}},
		{in: "tcp://storage.example/" + nqn, want: tcp.Address{Host: "storage.example", Port: 4420, NQN: nqn}},
		{in: "tcp://192.0.2.7", disc: true, want: tcp.Address{Host: "192.0.2.7", Port: 8009}},
		{in: "tcp://[::1]:8010", disc: true, want: tcp.Address{Host: "::1", Port: 8010}},
		{in: "tcp://192.0.2.7:4420/", disc: true, want: tcp.Address{Host: "192.0.2.7", Port: 4420}},
		{in: "tcp://192.0.2.7", bad: true},              // no NQN
		{in: "192.0.2.7/" + nqn, bad: true},             // no scheme
		{in: "rdma://192.0.2.7/" + nqn, bad: true},      // not tcp
		{in: "tcp://2001:db8::1/" + nqn, bad: true},     // IPv6 without brackets
		{in: "tcp://[2001:db8::1/" + nqn, bad: true},    // unclosed bracket
		{in: "tcp://[192.0.2.7]/" + nqn, bad: true},     // IPv4 in brackets
		{in: "tcp://192.0.2.7:0/" + nqn, bad: true},     // port 0
		{in: "tcp://192.0.2.7:65536/" + nqn, bad: true}, // port too large
		{in: "tcp://192.0.2.7:/" + nqn, bad: true},      // empty port
		{in: "tcp://:4420/" + nqn, bad: true},           // no host
		{in: "tcp://192.0.2.7/not-an-nqn", bad: true},   // bad NQN
		{in: "tcp://[::1]x/" + nqn, bad: true},          // junk after the bracket
		{in: "tcp://192.0.2.7:44x/" + nqn, bad: true},   // port not a number
	} {
		got, err := tcp.ParseAddress(c.in, c.disc)
		switch {
		case c.bad && err == nil:
			t.Errorf("%q: %+v, want an error", c.in, got)
		case c.bad && !errors.Is(err, tcp.ErrAddress):
			t.Errorf("%q: %v, want ErrAddress", c.in, err)
		case !c.bad && err != nil:
			t.Errorf("%q: %v", c.in, err)
		case !c.bad && got != c.want:
			t.Errorf("%q: %+v, want %+v", c.in, got, c.want)
		}
		if !c.bad && err == nil {
			back, err := tcp.ParseAddress(got.String(), c.disc)
			if err != nil || back != got {
				t.Errorf("%q: String %q parses to %+v, %v", c.in, got.String(), back, err)
			}
		}
	}
}
