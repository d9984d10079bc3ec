package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/bench/soak"
)

// Fault tests of the binary: hostile configuration, SIGTERM under load, the
// connection limit and a failing trace sink, each seen from outside the
// process as an operator would (exit code, stderr, /metrics).

// TestFaultHostileConfiguration: malformed configuration in every place it
// can come from exits 2 before anything listens, with a message naming the
// key, and never panics. (main_test.go covers the first cases; these are
// the ones it lacks.)
func TestFaultHostileConfiguration(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notPEM := write("roots.pem", "these are not certificates\n")
	cases := []struct {
		name string
		env  []string
		args []string
		want []string // every one must be in stderr
	}{
		{"YAML syntax error", nil, []string{"--config", write("syntax.yaml", "upstream: [unclosed\n")}, []string{"--config"}},
		{"YAML list instead of a map", nil, []string{"--config", write("list.yaml", "- upstream\n- c:1313\n")}, []string{"--config"}},
		{"binary garbage as config", nil, []string{"--config", write("garbage.yaml", "\x00\xff\xfe\x01\x02{{{\x7f")}, []string{"--config"}},
		{"directory as config", nil, []string{"--config", dir}, []string{"--config"}},
		{"nested unknown key", nil, []string{"--config", write("nested.yaml", "proxy:\n  upstream: c:1313\n")}, []string{`"proxy.upstream"`}},
		// A value of the wrong shape must not read as empty and fall back
		// to a default (or, for idle-timeout, to "disabled").
		{"list for a number", nil, []string{"--config", write("numlist.yaml", "upstream: c:1313\nmax-connections: [1, 2]\n")}, []string{"max-connections"}},
		{"list for a duration", nil, []string{"--config", write("durlist.yaml", "upstream: c:1313\ndrain-timeout: [1s]\n")}, []string{"drain-timeout"}},
		{"map for a duration", nil, []string{"--config", write("durmap.yaml", "upstream: c:1313\nidle-timeout: {a: 1}\n")}, []string{"idle-timeout"}},
		{"map for a bool", nil, []string{"--config", write("boolmap.yaml", "upstream: c:1313\noffline: {a: b}\n")}, []string{"offline"}},
		{"map for a list", nil, []string{"--config", write("listmap.yaml", "upstream: c:1313\nforward: {a: b}\n")}, []string{"forward"}},
		{"map for an address", nil, []string{"--config", write("addrmap.yaml", "upstream: c:1313\nlisten: {x: 1}\n")}, []string{"listen"}},
		{"zero max-connections", nil, []string{"--upstream", "c:1313", "--max-connections", "0"}, []string{"--max-connections"}},
		{"negative max-connections", nil, []string{"--upstream", "c:1313", "--max-connections", "-1"}, []string{"max-connections"}},
		{"huge max-connections", []string{"CCPROXY_MAX_CONNECTIONS=99999999999999999999999"}, []string{"--upstream", "c:1313"}, []string{"max-connections"}},
		{"negative duration", nil, []string{"--upstream", "c:1313", "--idle-timeout", "-5s"}, []string{"--idle-timeout"}},
		{"duration without unit", nil, []string{"--upstream", "c:1313", "--issuer-deadline", "5"}, []string{"--issuer-deadline"}},
		{"duration from env", []string{"CCPROXY_DRAIN_TIMEOUT=forever"}, []string{"--upstream", "c:1313"}, []string{"drain-timeout"}},
		{"bool from env", []string{"CCPROXY_OFFLINE=perhaps"}, []string{"--upstream", "c:1313"}, []string{"offline"}},
		{"bad plain port", nil, []string{"--upstream", "c:1313", "--plain-ports", "1314,http"}, []string{"--plain-ports"}},
		{"upstream port out of range", nil, []string{"--forward", ":1313=c:70000"}, []string{"--forward"}},
		{"forward without upstream", nil, []string{"--forward", ":1313="}, []string{"--forward"}},
		{"listen port out of range", nil, []string{"--upstream", "c:1313", "--listen", "127.0.0.1:99999"}, []string{"listen"}},
		{"bad admin address", nil, []string{"--upstream", "c:1313", "--admin-listen", "everywhere"}, []string{"--admin-listen"}},
		{"bad log level", nil, []string{"--upstream", "c:1313", "--log-level", "loud"}, []string{"--log-level"}},
		{"bad probe bool", nil, []string{"--upstream", "c:1313", "--probe=maybe"}, []string{"probe"}},
		{"socat env with a bad port", []string{"FORWARD_HOST=coordinator", "LISTEN_PORTS=1313 http"}, nil, []string{"LISTEN_PORTS"}},
		{"trace file in a missing directory", nil, []string{"--upstream", "c:1313", "--listen", "127.0.0.1:0", "--trace-file", filepath.Join(dir, "no", "such", "t.jsonl")}, []string{"trace file"}},
		{"missing trusted roots", nil, []string{"--upstream", "c:1313", "--snp-trusted-roots", filepath.Join(dir, "none.pem")}, []string{"--snp-trusted-roots"}},
		{"trusted roots that are not PEM", nil, []string{"--upstream", "c:1313", "--tdx-trusted-roots", notPEM}, []string{"TDX trusted roots"}},
		{"argument to the relay", nil, []string{"--upstream", "c:1313", "extra"}, []string{"extra"}},
		{"explain --output xml", nil, []string{"explain", "--output", "xml", "EOF"}, []string{"--output"}},
		{"analyze --output xml", nil, []string{"analyze", "--output", "xml", notPEM}, []string{"--output"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A configuration taken for valid would relay until killed:
			// give up after a few seconds instead of run's twenty.
			stderr, code := runBriefly(t, 5*time.Second, c.env, c.args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2; stderr: %s", code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not name %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "panic:") || strings.Contains(stderr, "goroutine ") {
				t.Errorf("panicked:\n%s", stderr)
			}
		})
	}
}

// runBriefly runs the binary for at most timeout; code is -1 if it was
// still running then.
func runBriefly(t *testing.T, timeout time.Duration, env []string, args ...string) (stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), env...)
	var e bytes.Buffer
	cmd.Stderr = &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return e.String(), 0
}

// TestFaultHostileManifest: a manifest that is not JSON, or lacks reference
// values, or has malformed ones, is a clear error naming --manifest, in
// relay mode and for attest.
func TestFaultHostileManifest(t *testing.T) {
	coordinatorPolicy := `"` + strings.Repeat("00", 32) + `": {"Role": "coordinator"}`
	dir := t.TempDir()
	evidence := filepath.Join(dir, "evidence.bin")
	os.WriteFile(evidence, bytes.Repeat([]byte{0}, 64), 0o644)
	cases := []struct {
		name, content, why string
	}{
		{"empty file", "", "JSON"},
		{"not JSON", "Policies: yes\n", "JSON"},
		{"truncated JSON", `{"ReferenceValues": {"snp": [{"TrustedMeasurement": "ab`, "JSON"},
		{"JSON array", `[1, 2, 3]`, "JSON"},
		// The Contrast CLI's own validation comes first and stops at a
		// wrong Coordinator policy count, so these name one.
		{"no coordinator policy", `{"Policies": {}}`, "expected exactly 1 policy with role 'coordinator', got 0"},
		{"no reference values", `{"Policies": {` + coordinatorPolicy + `}}`, "reference values"},
		{"empty reference values", `{"Policies": {` + coordinatorPolicy + `}, "ReferenceValues": {"snp": [], "tdx": []}}`, "reference values"},
		{"measurement not hex", `{"Policies": {` + coordinatorPolicy + `}, "ReferenceValues": {"snp": [{"TrustedMeasurement": "zz", "MinimumTCB": {}}]}}`, "TrustedMeasurement"},
		{"policy hash not hex", `{"Policies": {"xyz": {"Role": "coordinator"}}, "ReferenceValues": {"snp": [{"TrustedMeasurement": "` + strings.Repeat("00", 48) + `"}]}}`, "xyz"},
		{"deep nesting", strings.Repeat("[", 100000) + strings.Repeat("]", 100000), "JSON"},
	}
	for _, c := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".json")
		if err := os.WriteFile(path, []byte(c.content), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"--upstream", "c:1313", "--listen", "127.0.0.1:0", "--manifest", path},
			{"attest", "--manifest", path, evidence},
		} {
			t.Run(c.name+"/"+args[0], func(t *testing.T) {
				_, stderr, code := run(t, nil, args...)
				if code != 2 {
					t.Errorf("exit code %d, want 2; stderr: %s", code, stderr)
				}
				if !strings.Contains(stderr, "--manifest") || !strings.Contains(stderr, c.why) {
					t.Errorf("stderr does not name --manifest and %q:\n%s", c.why, stderr)
				}
				if strings.Contains(stderr, "panic:") {
					t.Errorf("panicked:\n%s", stderr)
				}
			})
		}
	}
}

// relayProcess is a running ccproxy binary in relay mode.
type relayProcess struct {
	cmd    *exec.Cmd
	addr   string // relay listen address
	admin  string // admin listen address
	stderr *lockedBuffer
	done   chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startRelay runs the binary relaying to upstream with an admin endpoint,
// and waits until /readyz answers and the relay port accepts.
func startRelay(t *testing.T, upstream string, args ...string) *relayProcess {
	t.Helper()
	p := &relayProcess{
		addr:   "127.0.0.1:" + freePort(t),
		admin:  "127.0.0.1:" + freePort(t),
		stderr: &lockedBuffer{},
		done:   make(chan error, 1),
	}
	all := append([]string{"--listen", p.addr, "--upstream", upstream, "--admin-listen", p.admin, "--probe=false"}, args...)
	p.cmd = exec.Command(binary, all...)
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
	// The relay binds its listeners before the admin endpoint starts, so
	// a healthy admin endpoint means the relay port accepts; no test
	// connection through the relay is needed (it would be relayed too).
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + p.admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case err := <-p.done:
			t.Fatalf("ccproxy exited before listening: %v\n%s", err, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ccproxy never listened:\n%s", p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// metric sums the samples of one Prometheus metric, optionally only those
// whose labels contain label.
func (p *relayProcess) metric(t *testing.T, name, label string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatalf("scraping /metrics: %v", err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		if label != "" && !strings.Contains(line, label) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// waitExit waits for the process to end and returns its exit code.
func (p *relayProcess) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("ccproxy did not exit within %v:\n%s", within, p.stderr)
	}
	return -1
}

// stop ends the relay with SIGTERM and requires a clean exit: it drains
// the connections still open, writes what its CLI runs still hold (last
// attempts, final summaries) and flushes every span.
func (p *relayProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("relay exit %d:\n%s", code, p.stderr)
	}
}

// TestFaultSIGTERMUnderLoad runs the binary with 40 connections streaming
// both ways with half-closes, sends SIGTERM while all are mid-stream, and
// checks: no new connection is accepted, every stream completes byte for
// byte (SHA-256 per direction), the process exits 0 after the last one, and
// every connection's span reached the trace file before the exit.
func TestFaultSIGTERMUnderLoad(t *testing.T) {
	const conns = 40
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &soak.Upstream{Timeout: time.Minute}
	go up.Serve(upLn)
	defer upLn.Close()
	traceFile := filepath.Join(t.TempDir(), "traces.jsonl")
	p := startRelay(t, upLn.Addr().String(), "--drain-timeout", "30s", "--trace-file", traceFile)
	hello, err := soak.ClientHello()
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, conns)
	var lastDone atomic.Int64 // when the last exchange finished, unix nanos
	// Every client connects, then waits for the others: a stream takes
	// only some 100 ms, so without the barrier the first ones may be done
	// before the last one is accepted, and SIGTERM would find no load.
	start := make(chan struct{})
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			<-start
			s := soak.Spec{Mode: soak.Mode(i % 3), Seed: uint64(i), Up: 512<<10 + int64(i)*8192, Down: 1<<20 + int64(i)*8192, Slow: true}
			if i%2 == 0 {
				s.Hello = hello
			}
			if err := soak.Exchange(c, s); err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
			}
			for now := time.Now().UnixNano(); ; {
				if old := lastDone.Load(); old >= now || lastDone.CompareAndSwap(old, now) {
					break
				}
			}
		}()
	}
	// SIGTERM once the relay holds every connection (the kernel resets
	// connections still in the accept queue when the listener closes, as
	// for any server).
	deadline := time.Now().Add(20 * time.Second)
	for p.metric(t, "ccproxy_connections_active", "") < conns {
		if time.Now().After(deadline) {
			close(start)
			t.Fatalf("only %.0f of %d connections active; relay log:\n%s", p.metric(t, "ccproxy_connections_active", ""), conns, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(start)
	time.Sleep(10 * time.Millisecond) // the streams are under way
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	// The listener closes at once; connections in flight go on. A dial
	// that still got in before the close is relayed (and closed at once,
	// so the upstream sees it end before its header).
	refused, probes := false, 0
	for time.Since(signalled) < 5*time.Second {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			refused = true
			break
		}
		probes++
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	if !refused {
		t.Error("the relay still accepts connections 5 s after SIGTERM")
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("stream cut by SIGTERM: %v", err)
	}
	if code := p.waitExit(t, 20*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0:\n%s", code, p.stderr)
	}
	upLn.Close()
	up.Wait()
	if r := up.Report(); r.Connections != conns || r.Lost() != r.Losses["header"] || r.Lost() > int64(probes) {
		t.Errorf("upstream verified %d of %d connections, losses %s %v (%d probe connections)", r.Connections, conns, soak.FormatLosses(r.Losses), r.Samples, probes)
	}
	logs := p.stderr.String()
	for _, want := range []string{"draining", "drained"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in the log:\n%s", want, logs)
		}
	}
	b, err := os.ReadFile(traceFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte(`"name":"ccproxy.connection"`)); n < conns || n > conns+probes {
		t.Errorf("%d connection spans in the trace file after exit, want %d (and up to %d probe connections)", n, conns, probes)
	}
	inFlight := time.Unix(0, lastDone.Load()).Sub(signalled)
	if inFlight <= 0 {
		t.Errorf("every stream had finished before SIGTERM: the test did not drain anything")
	}
	t.Logf("streams still ran %v after SIGTERM; the process exited after them", inFlight.Round(time.Millisecond))
}

// TestFaultMaxConnectionsCounted: beyond --max-connections, connections are
// closed at once and counted in ccproxy_connections_refused_total; the
// ones held keep working.
func TestFaultMaxConnectionsCounted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	p := startRelay(t, ln.Addr().String(), "--max-connections", "3")
	// startRelay's own probe connection may still be held for a moment.
	time.Sleep(100 * time.Millisecond)
	base := p.metric(t, "ccproxy_connections_refused_total", "")
	roundTrip := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			return err
		}
		_, err := io.ReadFull(c, make([]byte, 1))
		return err
	}
	var held []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := roundTrip(c); err != nil {
			t.Fatalf("connection %d under the limit: %v", i, err)
		}
		held = append(held, c)
	}
	const extra = 5
	for i := 0; i < extra; i++ {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			continue // reset before connect returned
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if err == nil || os.IsTimeout(err) {
			t.Fatalf("connection %d over the limit: read = %v, want it closed at once", i, err)
		}
	}
	if got := p.metric(t, "ccproxy_connections_refused_total", `listen="`+p.addr+`"`) - base; got != extra {
		t.Errorf("ccproxy_connections_refused_total went up by %.0f, want %d", got, extra)
	}
	for i, c := range held {
		if err := roundTrip(c); err != nil {
			t.Errorf("held connection %d broke while others were refused: %v", i, err)
		}
	}
	if n := strings.Count(p.stderr.String(), "max connections reached"); n == 0 {
		t.Errorf("refusals not logged:\n%s", p.stderr)
	}
}

// TestFaultTraceSinkDownBinary: with the trace file on a full disk, or the
// OTLP collector down, the binary forwards as usual, counts the lost spans
// in ccproxy_spans_dropped_total, logs the loss once, and still exits 0.
func TestFaultTraceSinkDownBinary(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full here")
	}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := closed.Addr().String()
	closed.Close()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"trace file on a full disk", []string{"--trace-file", "/dev/full"}},
		{"OTLP collector down", []string{"--otlp-endpoint", "http://" + down}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			upLn, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer upLn.Close()
			up := &soak.Upstream{Timeout: 30 * time.Second}
			go up.Serve(upLn)
			p := startRelay(t, upLn.Addr().String(), tc.args...)
			const conns = 10
			for i := range conns {
				c, err := net.Dial("tcp", p.addr)
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				err = soak.Exchange(c, soak.Spec{Mode: soak.Concurrent, Seed: uint64(i), Up: 64 << 10, Down: 64 << 10})
				c.Close()
				if err != nil {
					t.Fatalf("connection %d with the trace sink down: %v", i, err)
				}
			}
			// Spans are exported once a second.
			deadline := time.Now().Add(10 * time.Second)
			for p.metric(t, "ccproxy_spans_dropped_total", "") < conns {
				if time.Now().After(deadline) {
					t.Fatalf("ccproxy_spans_dropped_total = %.0f, want at least %d (one per connection)\n%s", p.metric(t, "ccproxy_spans_dropped_total", ""), conns, p.stderr)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if got := p.metric(t, "ccproxy_connections_total", ""); got < conns {
				t.Errorf("ccproxy_connections_total = %.0f, want %d", got, conns)
			}
			p.cmd.Process.Signal(syscall.SIGTERM)
			if code := p.waitExit(t, 20*time.Second); code != 0 {
				t.Errorf("exit code %d, want 0:\n%s", code, p.stderr)
			}
			logs := p.stderr.String()
			if n := strings.Count(logs, "dropping spans"); n != 1 {
				t.Errorf("the loss was logged %d times, want once:\n%s", n, logs)
			}
			if !strings.Contains(logs, "spans dropped") {
				t.Errorf("the exit does not report the spans dropped:\n%s", logs)
			}
		})
	}
}
