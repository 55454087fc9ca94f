package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/seedb8fa28ef/gonvme/hack/qemu/internal/guest"
)

// bootOutcome is the raw result of one QEMU run.
type bootOutcome struct {
	Lines    []string
	ExitCode int
	TimedOut bool
	Elapsed  time.Duration
	Stderr   string
}

// boot runs QEMU, streams the guest console to out line by line, relays the
// guest's monitor channel, and kills QEMU (by its PID) after timeout.
func boot(m *machine, timeout time.Duration, out io.Writer) (*bootOutcome, error) {
	cmd := exec.Command(m.QEMU, m.args()...)
	cmd.Stdin = nil // /dev/null
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	var timedOut bool
	var mu sync.Mutex
	timer := time.AfterFunc(timeout, func() {
		mu.Lock()
		timedOut = true
		mu.Unlock()
		_ = cmd.Process.Kill()
	})
	defer timer.Stop()

	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		if err := relayMonitor(m.MonitorSock, m.QMPSock, 10*time.Second); err != nil {
			fmt.Fprintf(out, "hack/qemu: monitor relay: %v\n", err)
		}
	}()

	o := &bootOutcome{}
	r := bufio.NewReaderSize(stdout, 64<<10)
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			line = strings.TrimRight(line, "\r\n")
			o.Lines = append(o.Lines, line)
			if !strings.HasPrefix(line, guest.KmsgPrefix) {
				// The kernel log is judged, and printed only when
				// the boot fails (bootProfile).
				fmt.Fprintln(out, line)
			}
		}
		if err != nil {
			break
		}
	}
	err = cmd.Wait()
	o.Elapsed = time.Since(start)
	mu.Lock()
	o.TimedOut = timedOut
	mu.Unlock()
	o.Stderr = stderr.String()
	if o.Stderr != "" {
		fmt.Fprint(out, o.Stderr)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		o.ExitCode = ee.ExitCode()
	default:
		return nil, fmt.Errorf("qemu: %w", err)
	}
	select {
	case <-relayDone:
	case <-time.After(2 * time.Second):
	}
	return o, nil
}

// dialRetry connects to a unix socket QEMU creates shortly after start.
func dialRetry(path string, wait time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(wait)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// relayMonitor serves the guest's monitor channel: each line the guest
// writes on its second serial port is an HMP command, run through QMP's
// human-monitor-command; the answer goes back as "GONVME-MON <n>\n" and n
// bytes (guest.Monitor reads it). It returns when QEMU closes the sockets.
func relayMonitor(guestSock, qmpSock string, wait time.Duration) error {
	g, err := dialRetry(guestSock, wait)
	if err != nil {
		return err
	}
	defer g.Close()
	q, err := dialRetry(qmpSock, wait)
	if err != nil {
		return err
	}
	defer q.Close()
	qmp := &qmpClient{enc: json.NewEncoder(q), dec: json.NewDecoder(q)}
	if _, err := qmp.call("qmp_capabilities", nil); err != nil {
		return err
	}
	r := bufio.NewReader(g)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil // QEMU went away
		}
		cmd := strings.TrimSpace(line)
		if cmd == "" {
			continue
		}
		res, err := qmp.call("human-monitor-command", map[string]any{"command-line": cmd})
		var reply string
		if err != nil {
			reply = fmt.Sprintf("%s%d\n%s", guest.MonitorError, len(err.Error()), err.Error())
		} else {
			var text string
			_ = json.Unmarshal(res, &text)
			reply = fmt.Sprintf("%s%d\n%s", guest.MonitorReply, len(text), text)
		}
		if _, err := io.WriteString(g, reply); err != nil {
			return nil
		}
	}
}

// qmpClient speaks QMP: one command at a time, events skipped.
type qmpClient struct {
	enc *json.Encoder
	dec *json.Decoder
}

func (c *qmpClient) call(cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	if err := c.enc.Encode(req); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	for {
		var msg struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			QMP   json.RawMessage `json:"QMP"`
			Event string          `json:"event"`
		}
		if err := c.dec.Decode(&msg); err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, err)
		}
		switch {
		case msg.Error != nil:
			return nil, fmt.Errorf("qmp %s: %s: %s", cmd, msg.Error.Class, msg.Error.Desc)
		case msg.Return != nil:
			return msg.Return, nil
		}
		// greeting or event: keep reading
	}
}

// bootDir makes the per-boot directory and the machine's sockets.
func newMachine(a *Assets, dir string) *machine {
	return &machine{
		QEMU: a.QEMU, Firmware: a.Firmware, Kernel: a.Vmlinux,
		DiskDir: dir, Initrd: dir + "/initramfs.cpio",
		MonitorSock: dir + "/guestmon.sock", QMPSock: dir + "/qmp.sock",
	}
}

var _ = os.Stdout
