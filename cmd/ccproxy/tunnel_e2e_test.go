package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// tunnelProcess is one `ccproxy tunnel serve|connect` run as a process,
// logging JSON.
type tunnelProcess struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan error
}

func startTunnelProcess(t *testing.T, args ...string) *tunnelProcess {
	t.Helper()
	p := &tunnelProcess{stderr: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(binary, append([]string{"tunnel"}, append(args, "--log-format", "json")...)...)
	p.cmd.Dir = t.TempDir()
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// logLine waits for a JSON log line that match accepts.
func (p *tunnelProcess) logLine(t *testing.T, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for l := range strings.Lines(p.stderr.String()) {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && match(m) {
				return m
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("ccproxy exited (%v) before logging %s:\n%s", err, what, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line for %s within 20s:\n%s", what, p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connection waits for the log line of a finished connection with the
// given mode.
func (p *tunnelProcess) connection(t *testing.T, mode failure.Mode) map[string]any {
	t.Helper()
	return p.logLine(t, "a "+string(mode)+" connection", func(m map[string]any) bool {
		return m["msg"] == "connection" && m["failure_mode"] == string(mode)
	})
}

// stop sends SIGTERM and wants exit 0 (so the spans are flushed).
func (p *tunnelProcess) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no exit within 60s of SIGTERM:\n%s", p.stderr)
	}
}

// tunnelKeys makes a key pair with the binary and returns the flags that
// load it and its fingerprint.
func tunnelKeys(t *testing.T, name string) (flags []string, fingerprint string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	out, stderr, code := run(t, nil, "tunnel", "keygen", "--out", dir, "--name", name, "--output", "json")
	if code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	var k struct{ Cert, Key, Fingerprint string }
	if err := json.Unmarshal([]byte(out), &k); err != nil {
		t.Fatalf("keygen output %q: %v", out, err)
	}
	return []string{"--cert", k.Cert, "--key", k.Key}, k.Fingerprint
}

// analyzeModes runs `ccproxy analyze --output json` on a trace file and
// returns its connections per failure mode.
func analyzeModes(t *testing.T, file string) map[string]int {
	t.Helper()
	out, stderr, code := run(t, nil, "analyze", "--output", "json", file)
	if code != 0 {
		t.Fatalf("analyze %s: exit %d: %s", file, code, stderr)
	}
	var rep struct {
		Modes []struct {
			Mode  string
			Count int
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("analyze output: %v\n%s", err, out)
	}
	modes := map[string]int{}
	for _, m := range rep.Modes {
		modes[m.Mode] = m.Count
	}
	return modes
}

func freeUDPAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

// failedExchange makes one connection to addr that the tunnel cannot carry
// (or whose upstream refuses): a TLS handshake that must fail.
func failedExchange(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		// Reset at once (a refused upstream), before Dial's own check of
		// the socket.
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err := tc.HandshakeContext(ctx); err == nil {
		t.Errorf("a handshake through %s succeeded", addr)
	}
}

// TestTunnelServerDownIsTunnelUnavailable: `tunnel connect` with no server
// names its connections tunnel_unavailable ("tunnel down"), never an
// upstream_* mode, in its log and on its span, and `ccproxy analyze` of its
// trace file counts them so.
func TestTunnelServerDownIsTunnelUnavailable(t *testing.T) {
	laptop, _ := tunnelKeys(t, "laptop")
	_, clusterFP := tunnelKeys(t, "cluster")
	server := freeUDPAddr(t) // nothing answers there
	listen := "127.0.0.1:" + freePort(t)
	traceFile := filepath.Join(t.TempDir(), "local.jsonl")
	p := startTunnelProcess(t, append(laptop, "connect", "--server", server, "--listen", listen,
		"--peer-fingerprint", clusterFP, "--dial-timeout", "1s", "--trace-file", traceFile)...)
	p.logLine(t, "the listener", func(m map[string]any) bool { return m["msg"] == "tunnelling" })

	failedExchange(t, listen)
	line := p.connection(t, failure.TunnelUnavailable)
	if line["tunnel_failure"] != "tunnel down" || line["verdict_source"] != "local" {
		t.Errorf("log line %v: want tunnel_failure \"tunnel down\" from the local side", line)
	}
	if d, _ := line["detail"].(string); !strings.HasPrefix(d, "Tunnel down: no connection to the tunnel server "+server) {
		t.Errorf("detail %q does not say the tunnel is down", d)
	}
	p.stop(t)

	modes := analyzeModes(t, traceFile)
	if modes[string(failure.TunnelUnavailable)] != 1 || len(modes) != 1 {
		t.Errorf("analyze: %v, want one tunnel_unavailable connection and nothing else", modes)
	}
}

// TestTunnelServeConnectFailureModes runs both ends as processes: a server
// at its stream limit is tunnel_unavailable ("stream limit") on the local
// side, while a real upstream failure behind the working tunnel keeps the
// in-cluster relay's mode (upstream_refused), on both sides; `ccproxy
// analyze` counts each side's file so.
func TestTunnelServeConnectFailureModes(t *testing.T) {
	laptop, laptopFP := tunnelKeys(t, "laptop")
	cluster, clusterFP := tunnelKeys(t, "cluster")
	dir := t.TempDir()
	localTrace, remoteTrace := filepath.Join(dir, "local.jsonl"), filepath.Join(dir, "remote.jsonl")

	echoLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echoLn.Close()
	go func() {
		for {
			c, err := echoLn.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	_, echoPort, _ := net.SplitHostPort(echoLn.Addr().String())
	refused := "127.0.0.1:" + freePort(t) // closed

	quicAddr := freeUDPAddr(t)
	serve := startTunnelProcess(t, append(cluster, "serve", "--quic-listen", quicAddr,
		"--upstream", refused, "--route", "echo="+echoLn.Addr().String(), "--plain-ports", echoPort,
		"--max-streams", "1", "--probe=false", "--peer-fingerprint", laptopFP, "--trace-file", remoteTrace)...)
	serve.logLine(t, "serving", func(m map[string]any) bool { return m["msg"] == "tunnel serving" })

	userAPI, echo := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
	connect := startTunnelProcess(t, append(laptop, "connect", "--server", quicAddr,
		"--forward", userAPI+"=default", "--forward", echo+"=echo", "--dial-timeout", "2s",
		"--peer-fingerprint", clusterFP, "--trace-file", localTrace)...)
	connect.logLine(t, "the tunnel", func(m map[string]any) bool { return m["msg"] == "tunnel up" })

	// One connection holds the server's only stream for this client...
	held, err := net.Dial("tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	held.SetDeadline(time.Now().Add(20 * time.Second))
	held.Write([]byte("ping"))
	if _, err := io.ReadFull(held, make([]byte, 4)); err != nil {
		t.Fatalf("echo through the tunnel: %v\n%s\n%s", err, connect.stderr, serve.stderr)
	}
	// ... so the next one gets none.
	failedExchange(t, userAPI)
	line := connect.connection(t, failure.TunnelUnavailable)
	if d, _ := line["detail"].(string); line["tunnel_failure"] != "server at its stream or connection limit" || !strings.Contains(d, "stream limit") {
		t.Errorf("log line %v: want the server's stream limit named", line)
	}
	held.Close()
	connect.logLine(t, "the held connection", func(m map[string]any) bool {
		return m["msg"] == "connection" && m["route"] == "echo" && m["verdict_source"] == "remote"
	})

	// A real upstream failure behind the working tunnel: the in-cluster
	// relay's mode, not the tunnel's.
	failedExchange(t, userAPI)
	line = connect.connection(t, failure.UpstreamRefused)
	if line["verdict_source"] != "remote" || line["upstream"] != refused || line["tunnel_failure"] != nil {
		t.Errorf("log line %v: want the server's verdict on %s", line, refused)
	}
	connect.stop(t)
	serve.stop(t)

	local := analyzeModes(t, localTrace)
	if local[string(failure.TunnelUnavailable)] != 1 || local[string(failure.UpstreamRefused)] != 1 {
		t.Errorf("analyze of the local side: %v, want one tunnel_unavailable and one upstream_refused", local)
	}
	remote := analyzeModes(t, remoteTrace)
	if remote[string(failure.UpstreamRefused)] != 1 || remote[string(failure.TunnelUnavailable)] != 0 {
		t.Errorf("analyze of the in-cluster side: %v, want one upstream_refused and no tunnel_unavailable", remote)
	}
}

// TestTunnelServeMetricsFromFirstScrape: the in-cluster end's /metrics has
// every route's connection series at zero before any connection, as relay
// mode's has, so deploy/monitoring's panels and alerts read 0, not "no data".
func TestTunnelServeMetricsFromFirstScrape(t *testing.T) {
	cluster, _ := tunnelKeys(t, "cluster")
	_, laptopFP := tunnelKeys(t, "laptop")
	admin := "127.0.0.1:" + freePort(t)
	up := "127.0.0.1:" + freePort(t)
	serve := startTunnelProcess(t, append(cluster, "serve", "--quic-listen", freeUDPAddr(t),
		"--upstream", up, "--probe=false", "--peer-fingerprint", laptopFP, "--admin-listen", admin)...)
	serve.logLine(t, "serving", func(m map[string]any) bool { return m["msg"] == "tunnel serving" })
	serve.logLine(t, "the admin endpoint", func(m map[string]any) bool { return m["msg"] == "admin endpoint" })
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range failure.All {
		want := fmt.Sprintf(`ccproxy_connections_total{failure_mode=%q,upstream=%q} 0`, mode, up)
		if !strings.Contains(string(body), want) {
			t.Fatalf("no %s in the first scrape:\n%s", want, body)
		}
	}
	for _, want := range []string{"ccproxy_probes_total{", "ccproxy_connections_active{", "ccproxy_spans_dropped_total"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("no %s series in the first scrape", want)
		}
	}
}
