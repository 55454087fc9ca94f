package main

import "testing"

func TestNVMfAddr(t *testing.T) {
	for _, c := range []struct{ in, host, port string }{
		{"tcp://", "127.0.0.1", "4420"},
		{"tcp://0.0.0.0:4421", "0.0.0.0", "4421"},
		{"tcp://[::1]:5000", "::1", "5000"},
		{"tcp://10.0.0.2", "10.0.0.2", "4420"},
	} {
		h, p, err := nvmfAddr(c.in)
		if err != nil || h != c.host || p != c.port {
			t.Errorf("%s: %s %s %v, want %s %s", c.in, h, p, err, c.host, c.port)
		}
	}
	for _, bad := range []string{"rdma://1.2.3.4:4420", "1.2.3.4:4420", "tcp://h:1/x"} {
		if _, _, err := nvmfAddr(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
