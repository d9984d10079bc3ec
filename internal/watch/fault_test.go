package watch_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/bench/soak"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// Fault tests of the whole observation path: the relay, the watcher, the
// classifier and the trace. Each names what the trace must say when a peer
// dies, vanishes or floods the relay, or when the trace's own sink fails.

// lockedBuffer collects log output written from many goroutines.
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

// faultRelay is a relay with a watcher, tracing and a verdict per
// connection, for the fault tests.
type faultRelay struct {
	addr     string
	tp       *trace.Provider
	file     string
	log      *lockedBuffer
	verdicts chan inspect.Verdict
}

type faultOptions struct {
	trace func(*trace.Config) // adjusts the trace configuration
	proxy func(*proxy.Proxy)  // adjusts the relay
}

func startFaultRelay(t *testing.T, upstream string, opts faultOptions) *faultRelay {
	t.Helper()
	r := &faultRelay{log: &lockedBuffer{}, verdicts: make(chan inspect.Verdict, 4096)}
	log := slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tc := trace.Config{File: filepath.Join(t.TempDir(), "traces.jsonl"), ServiceVersion: "test", Logger: log}
	if opts.trace != nil {
		opts.trace(&tc)
	}
	r.file = tc.File
	tp, err := trace.Setup(context.Background(), tc)
	if err != nil {
		t.Fatal(err)
	}
	r.tp = tp
	w := watch.New(watch.Config{
		Tracer:         tp.Tracer(),
		IssuerDeadline: 2 * time.Second,
		Logger:         log,
		OnVerdict:      func(_ proxy.ConnInfo, v inspect.Verdict) { r.verdicts <- v },
	})
	p := &proxy.Proxy{
		Routes:      []proxy.Route{{Listen: "127.0.0.1:0", Upstream: upstream, Inspect: true}},
		Logger:      log,
		NewObserver: w.Observe,
	}
	if opts.proxy != nil {
		opts.proxy(p)
	}
	ready := make(chan []net.Addr, 1)
	p.Ready = func(a []net.Addr) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		tp.Shutdown(sctx)
	})
	select {
	case a := <-ready:
		r.addr = a[0].String()
	case err := <-done:
		t.Fatalf("relay: %v", err)
	}
	return r
}

func (r *faultRelay) verdict(t *testing.T) inspect.Verdict {
	t.Helper()
	select {
	case v := <-r.verdicts:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no verdict")
	}
	return inspect.Verdict{}
}

// connectionSpan flushes and returns the attributes of the only connection
// span in the trace file.
func (r *faultRelay) connectionSpan(t *testing.T) map[string]string {
	t.Helper()
	if err := r.tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, s := range readSpans(t, r.file) {
		if s.Name() != trace.SpanConnection {
			continue
		}
		m := map[string]string{}
		for k, v := range s.Attributes().All() {
			m[k] = v.AsString()
		}
		out = append(out, m)
	}
	if len(out) != 1 {
		t.Fatalf("%d connection spans, want 1", len(out))
	}
	return out[0]
}

// relayGoroutines counts goroutines in the relay's or the watcher's code.
func relayGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "ccproxy/proxy.(*relay)") || strings.Contains(g, "ccproxy/proxy.(*server).handle") {
			n++
		}
	}
	return n
}

func waitNoRelays(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for relayGoroutines() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d relay goroutines still running after their connections ended", relayGoroutines())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// helperEnv selects the role of a re-executed test binary.
const helperEnv = "CCPROXY_WATCH_FAULT_HELPER"

// TestFaultHelperProcess is not a test: run as a child process with
// helperEnv=tls-echo, it is a TLS 1.3 echo server that prints its address
// and serves until it is killed.
func TestFaultHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "tls-echo" {
		t.Skip("helper process for TestFaultUpstreamKilledMidStream")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}}
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			tc := tls.Server(c, cfg)
			if tc.Handshake() == nil {
				io.Copy(tc, tc)
			}
		}()
	}
}

// TestFaultUpstreamKilledMidStream runs the upstream as its own process,
// streams through the relay after a finished handshake, and kills the
// upstream with SIGKILL. The relay must close the client's side too (its
// reads and writes fail, neither hangs), and the trace must name
// upstream_reset.
func TestFaultUpstreamKilledMidStream(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestFaultHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"=tls-echo")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper process: %v", err)
	}
	upstream := strings.TrimSpace(line)
	if _, _, err := net.SplitHostPort(upstream); err != nil {
		t.Fatalf("helper process said %q", line)
	}

	r := startFaultRelay(t, upstream, faultOptions{})
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, clientConfig(tls.VersionTLS13, false))
	tc.SetDeadline(time.Now().Add(15 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake through the relay: %v", err)
	}
	werr := make(chan error, 1)
	go func() {
		chunk := bytes.Repeat([]byte("x"), 8<<10)
		for {
			if _, err := tc.Write(chunk); err != nil {
				werr <- err
				return
			}
		}
	}()
	const killAfter = 2 << 20
	var echoed int64
	buf := make([]byte, 32<<10)
	var rerr error
	for rerr == nil {
		var n int
		n, rerr = tc.Read(buf)
		echoed += int64(n)
		if echoed >= killAfter && cmd.ProcessState == nil {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			killed := time.Now()
			t.Cleanup(func() { t.Logf("client told %v after the kill", time.Since(killed).Round(time.Millisecond)) })
			tc.SetDeadline(time.Now().Add(5 * time.Second))
		}
	}
	if cmd.ProcessState == nil {
		t.Fatalf("the stream ended before the kill: %v", rerr)
	}
	if errors.Is(rerr, os.ErrDeadlineExceeded) {
		t.Fatal("the client's reads hung after the upstream was killed")
	}
	select {
	case err := <-werr:
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the client's writes hung after the upstream was killed")
		}
	case <-time.After(6 * time.Second):
		t.Fatal("the client's writes still succeed after the upstream was killed")
	}

	v := r.verdict(t)
	if v.Mode != failure.UpstreamReset {
		t.Errorf("verdict %s (%s), want %s", v.Mode, v.Detail, failure.UpstreamReset)
	}
	span := r.connectionSpan(t)
	if span[string(trace.FailureMode)] != string(failure.UpstreamReset) {
		t.Errorf("span names %q (%s), want %s", span[string(trace.FailureMode)], span[string(trace.FailureDetail)], failure.UpstreamReset)
	}
	if span[string(trace.TLSProtocolVersion)] != "1.3" {
		t.Errorf("span tls.protocol.version = %q", span[string(trace.TLSProtocolVersion)])
	}
	for _, k := range []string{string(trace.BytesClientToUp), string(trace.BytesUpToClient)} {
		if n, _ := strconv.ParseInt(span[k], 10, 64); n < killAfter {
			t.Errorf("span %s = %q, want the megabytes that flowed", k, span[k])
		}
	}
	waitNoRelays(t)
}

// TestFaultClientVanishesMidHandshake: the client resets at each point of
// the handshake. The upstream's connection must be closed at once, and the
// verdict must not blame the upstream.
func TestFaultClientVanishesMidHandshake(t *testing.T) {
	hello, err := soak.ClientHello()
	if err != nil {
		t.Fatal(err)
	}
	type upstreamResult struct {
		err  error
		took time.Duration
	}
	cases := []struct {
		name string
		// upstream serves one connection and reports how it ended.
		upstream func(c net.Conn)
		// client does its part, then the test resets the connection.
		client func(t *testing.T, c net.Conn)
		modes  []failure.Mode
	}{
		{
			name:     "mid-ClientHello",
			upstream: func(c net.Conn) { readHello(c) },
			client: func(t *testing.T, c net.Conn) {
				c.Write(hello[:len(hello)/2])
				time.Sleep(50 * time.Millisecond)
			},
			modes: []failure.Mode{failure.ClientAborted},
		},
		{
			name: "after the ClientHello, while the issuer works",
			upstream: func(c net.Conn) {
				readHello(c)
				io.Copy(io.Discard, c) // never answers
			},
			client: func(t *testing.T, c net.Conn) {
				c.Write(hello)
				time.Sleep(100 * time.Millisecond)
			},
			// The contract: silence after the ClientHello until the client
			// gives up is issuer_timeout.
			modes: []failure.Mode{failure.IssuerTimeout},
		},
		{
			name: "after the server's TLS 1.3 flight, without answering",
			upstream: func(c net.Conn) {
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2"}})
				tc.Handshake()
			},
			client: func(t *testing.T, c net.Conn) {
				c.Write(hello)
				// Read the server's flight (ServerHello ... Finished).
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				b := make([]byte, 64<<10)
				got := 0
				for got < 200 {
					n, err := c.Read(b)
					got += n
					if err != nil {
						t.Fatalf("server flight: %v", err)
					}
				}
				time.Sleep(50 * time.Millisecond)
			},
			modes: []failure.Mode{failure.ClientRejectedCertificate},
		},
		{
			name:     "after a finished handshake, mid-stream",
			upstream: func(c net.Conn) { tlsEcho(t, c) },
			client: func(t *testing.T, c net.Conn) {
				tc := tls.Client(c, clientConfig(tls.VersionTLS13, false))
				tc.SetDeadline(time.Now().Add(5 * time.Second))
				if err := tc.Handshake(); err != nil {
					t.Fatalf("handshake: %v", err)
				}
				for i := 0; i < 20; i++ {
					tc.Write(bytes.Repeat([]byte("y"), 4096))
					io.ReadFull(tc, make([]byte, 4096))
				}
			},
			// Application data flowed both ways after a finished handshake:
			// whatever the client did next, nothing failed on the path.
			modes: []failure.Mode{failure.OK},
		},
		{
			// The relay's write to the vanished client takes the reset, so
			// the upstream direction ends with a write error first: that is
			// the client's doing, not the upstream's.
			name: "after a finished handshake, while the upstream streams to it",
			upstream: func(c net.Conn) {
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2"}})
				if tc.Handshake() != nil {
					return
				}
				tc.Read(make([]byte, 4))
				chunk := bytes.Repeat([]byte("z"), 16<<10)
				for {
					if _, err := tc.Write(chunk); err != nil {
						return
					}
				}
			},
			client: func(t *testing.T, c net.Conn) {
				tc := tls.Client(c, clientConfig(tls.VersionTLS13, false))
				tc.SetDeadline(time.Now().Add(5 * time.Second))
				if err := tc.Handshake(); err != nil {
					t.Fatalf("handshake: %v", err)
				}
				tc.Write([]byte("ping"))
				io.ReadFull(tc, make([]byte, 1<<20))
			},
			modes: []failure.Mode{failure.OK},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := make(chan upstreamResult, 1)
			var resetAt atomic.Int64
			up := server(t, func(c net.Conn) {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				tc.upstream(c)
				// Then wait for the relay to end the connection.
				_, err := io.Copy(io.Discard, c)
				res <- upstreamResult{err, time.Since(time.Unix(0, resetAt.Load()))}
			})
			r := startFaultRelay(t, up, faultOptions{})
			c, err := net.Dial("tcp", r.addr)
			if err != nil {
				t.Fatal(err)
			}
			tc.client(t, c)
			resetAt.Store(time.Now().UnixNano())
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			select {
			case u := <-res:
				if errors.Is(u.err, os.ErrDeadlineExceeded) {
					t.Fatal("the relay kept the upstream connection open")
				}
				if u.took > 2*time.Second {
					t.Errorf("upstream connection closed %v after the client vanished, want at once", u.took)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the upstream never saw its connection end")
			}
			v := r.verdict(t)
			if !containsMode(tc.modes, v.Mode) {
				t.Errorf("verdict %s (%s), want one of %v", v.Mode, v.Detail, tc.modes)
			}
			if v.Mode == failure.UpstreamReset || v.Mode == failure.LBClosedEarly {
				t.Errorf("the vanished client was blamed on the upstream: %s (%s)", v.Mode, v.Detail)
			}
			waitNoRelays(t)
		})
	}
}

func containsMode(ms []failure.Mode, m failure.Mode) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

// tlsEcho serves one TLS 1.3 connection: handshake, then echo.
func tlsEcho(t *testing.T, c net.Conn) {
	tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2"}})
	if tc.Handshake() == nil {
		io.Copy(tc, tc)
	}
}

// raceEnabled reports a -race build: the detector slows every goroutine
// several times, so the timing bounds below widen by raceSlack.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// TestFaultSlowClientHellos: 1,000 clients each send a ClientHello one byte
// a second, then stall. While they trickle the idle timeout must not cut
// them (they are not idle); once they stall it must, between one and two
// idle periods after their last byte; and clients arriving while the 1,000
// are held must be served as fast as ever.
func TestFaultSlowClientHellos(t *testing.T) {
	const (
		slow    = 1000
		trickle = 3 // bytes, one a second
		idle    = 1500 * time.Millisecond
		normal  = 25
	)
	// Bounds that depend on this machine's speed, not on the relay's
	// logic, widen under the race detector; the ordering checks do not.
	lateSlack, normalBound, outliers := 500*time.Millisecond, time.Second, 0
	if raceEnabled() {
		// A starved relay goroutine may see a 1 s gap as a 1.5 s one: allow
		// 1% such timing outliers, never a connection left open.
		lateSlack, normalBound, outliers = 5*time.Second, 10*time.Second, slow/100
	}
	hello, err := soak.ClientHello()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := soak.RaiseFileLimit(8 * slow); err != nil {
		t.Fatal(err)
	}
	var upstreamAccepted, upstreamEnded atomic.Int32
	upCfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2"}}
	up := server(t, func(c net.Conn) {
		upstreamAccepted.Add(1)
		tc := tls.Server(c, upCfg)
		if tc.Handshake() != nil {
			upstreamEnded.Add(1)
			return
		}
		echo(tc)
	})
	r := startFaultRelay(t, up, faultOptions{proxy: func(p *proxy.Proxy) { p.IdleTimeout = idle }})

	type slowResult struct {
		dialErr  error
		writeErr error         // a write the relay refused while the client still trickled
		maxGap   time.Duration // longest pause between two of its bytes, as this client saw it
		lastByte time.Time
		readErr  error // how the stall ended
		closed   time.Time
	}
	results := make(chan slowResult, slow)
	var wg sync.WaitGroup
	for range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res slowResult
			c, err := net.DialTimeout("tcp", r.addr, 10*time.Second)
			if err != nil {
				res.dialErr = err
				results <- res
				return
			}
			defer c.Close()
			for i := 0; i < trickle; i++ {
				if i > 0 {
					time.Sleep(time.Second)
				}
				if _, err := c.Write(hello[i : i+1]); err != nil {
					res.writeErr = err
					break
				}
				now := time.Now()
				if !res.lastByte.IsZero() {
					res.maxGap = max(res.maxGap, now.Sub(res.lastByte))
				}
				res.lastByte = now
			}
			// Stall: the relay should end it after the idle timeout.
			c.SetReadDeadline(time.Now().Add(2*idle + lateSlack + 3*time.Second))
			_, res.readErr = c.Read(make([]byte, 1))
			res.closed = time.Now()
			results <- res
		}()
	}

	// Once the relay holds all 1,000 (each dialed upstream), normal clients
	// come one after another.
	for deadline := time.Now().Add(30 * time.Second); upstreamAccepted.Load() < slow; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d slow connections reached the upstream", upstreamAccepted.Load(), slow)
		}
	}
	var worst time.Duration
	for i := 0; i < normal; i++ {
		start := time.Now()
		if err := normalClient(r.addr, 2*normalBound); err != nil {
			t.Errorf("normal client %d while %d slow ones are held: %v", i, slow, err)
		}
		worst = max(worst, time.Since(start))
		time.Sleep(40 * time.Millisecond)
	}
	wg.Wait()
	close(results)

	var cutTrickling, early, late, hung, dialFailed int
	var maxAfter time.Duration
	for res := range results {
		switch {
		case res.dialErr != nil:
			dialFailed++
		case res.writeErr != nil:
			// Cut while it still sent: a fault of the relay unless this
			// client itself paused for an idle period (a starved test
			// goroutine).
			if res.maxGap < idle-200*time.Millisecond && time.Since(res.lastByte) > 0 {
				cutTrickling++
			}
		case errors.Is(res.readErr, os.ErrDeadlineExceeded):
			hung++
		default:
			after := res.closed.Sub(res.lastByte)
			maxAfter = max(maxAfter, after)
			if after < idle-250*time.Millisecond {
				early++
			}
			if after > 2*idle+lateSlack {
				late++
			}
		}
	}
	t.Logf("%d slow clients: %d failed to connect, %d cut while trickling, %d cut early, %d late, %d never; latest cut %v after the last byte; slowest of %d normal clients meanwhile %v",
		slow, dialFailed, cutTrickling, early, late, hung, maxAfter.Round(time.Millisecond), normal, worst.Round(time.Millisecond))
	if dialFailed > 0 || hung > 0 || cutTrickling+early+late > outliers {
		t.Errorf("slow clients: %d failed to connect, %d cut while still trickling, %d before the idle timeout, %d after two idle periods, %d never",
			dialFailed, cutTrickling, early, late, hung)
	}
	if worst > normalBound {
		t.Errorf("a normal client took %v while the slow ones were held", worst)
	}

	modes := map[failure.Mode]int{}
	idleDetail := 0
	var other []string
	for i := 0; i < slow+normal; i++ {
		v := r.verdict(t)
		modes[v.Mode]++
		if v.Mode == failure.ClientAborted && strings.Contains(v.Detail, "idle timeout") {
			idleDetail++
		} else if v.Mode != failure.OK && len(other) < 5 {
			other = append(other, string(v.Mode)+": "+v.Detail)
		}
	}
	if modes[failure.ClientAborted] != slow || idleDetail != slow || modes[failure.OK] != normal {
		t.Errorf("verdicts %v (%d client_aborted naming the idle timeout), want %d client_aborted and %d ok; others: %s",
			modes, idleDetail, slow, normal, strings.Join(other, " | "))
	}
	deadline := time.Now().Add(5 * time.Second)
	for upstreamEnded.Load() < slow && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := upstreamEnded.Load(); n != slow {
		t.Errorf("the upstream saw %d of %d slow connections end", n, slow)
	}
	waitNoRelays(t)
}

// normalClient does what a Contrast CLI does through the relay: a TLS 1.3
// handshake with the atls ALPN entry, a round trip, a close.
func normalClient(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	tc := tls.Client(c, clientConfig(tls.VersionTLS13, false))
	tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if _, err := tc.Write([]byte("ping")); err != nil {
		return err
	}
	if _, err := io.ReadFull(tc, make([]byte, 4)); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	return tc.Close()
}

// TestFaultTraceSinkDown: the trace's destination fails (a full disk, an
// OTLP endpoint that refuses or one that accepts and never answers).
// Forwarding must go on at full speed, every verdict is still reached, the
// lost spans are counted, and the loss is logged once, not per span.
func TestFaultTraceSinkDown(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full here")
	}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusing := closed.Addr().String()
	closed.Close()
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
			go io.Copy(io.Discard, c)
		}
	}()
	// The OTLP exporters' own timeout (10 s by default) bounds how long an
	// export to a silent collector may take; keep it short here.
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "500")

	cases := []struct {
		name  string
		trace func(*trace.Config)
		// stuck: exports hang rather than fail. Each one then holds the
		// export loop for up to 10 s (the queue's export timeout, within
		// which the exporter retries), so what is lost is what overflows
		// the queue meanwhile: the test makes the queue small, gets the
		// loop stuck first, and does not wait for the export to give up.
		stuck bool
	}{
		{"trace file on a full disk", func(c *trace.Config) { c.File = "/dev/full" }, false},
		{"OTLP/HTTP endpoint refuses", func(c *trace.Config) { c.File, c.Endpoint = "", "http://"+refusing }, false},
		{"OTLP/gRPC endpoint refuses", func(c *trace.Config) { c.File, c.Endpoint = "", "grpc://"+refusing }, false},
		{"OTLP/HTTP endpoint never answers", func(c *trace.Config) {
			c.File, c.Endpoint, c.QueueSize = "", "http://"+hang.Addr().String(), 4
		}, true},
	}
	const conns = 20
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := tlsServer(t, tls.VersionTLS13, echo)
			r := startFaultRelay(t, up, faultOptions{trace: tc.trace})
			if tc.stuck {
				// One connection's spans, exported on the next tick: the
				// export loop is then stuck on the silent collector.
				if err := dialTLS(t, r.addr, clientConfig(tls.VersionTLS13, false)); err != nil {
					t.Fatal(err)
				}
				r.verdict(t)
				time.Sleep(1500 * time.Millisecond)
			}
			var worst time.Duration
			for i := 0; i < conns; i++ {
				start := time.Now()
				if err := dialTLS(t, r.addr, clientConfig(tls.VersionTLS13, false)); err != nil {
					t.Fatalf("connection %d with the trace sink down: %v", i, err)
				}
				worst = max(worst, time.Since(start))
				if v := r.verdict(t); v.Mode != failure.OK {
					t.Errorf("connection %d: %s (%s)", i, v.Mode, v.Detail)
				}
			}
			if worst > time.Second {
				t.Errorf("a connection took %v with the trace sink down", worst)
			}
			if !tc.stuck {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				r.tp.ForceFlush(ctx)
			}
			if n := r.tp.Dropped(); n < conns {
				t.Errorf("%d spans counted as dropped, want at least the %d connection spans", n, conns)
			}
			logs := r.log.String()
			if n := strings.Count(logs, "dropping spans"); n != 1 {
				t.Errorf("the drop was logged %d times, want once:\n%s", n, logs)
			}
			if n := strings.Count(logs, "span export failed"); n > 1 {
				t.Errorf("the export failure was logged %d times, want at most once:\n%s", n, logs)
			}
			t.Logf("%d spans dropped; slowest connection %v; log:\n%s", r.tp.Dropped(), worst.Round(time.Millisecond), logs)
		})
	}
}

// TestFaultMemoryPerHeldConnection measures what a held connection costs
// the relay (and its watcher) in Go memory, for the resource bounds in
// SECURITY.md, and checks it stays bounded: connections that sent nothing,
// and connections that stalled inside a ClientHello claiming the largest
// handshake message the parser buffers (64 KiB), which is the most a
// client can make the relay hold.
func TestFaultMemoryPerHeldConnection(t *testing.T) {
	const held = 300
	// An upstream that accepts and holds, with no goroutine or buffer per
	// connection, so the measurement is the relay's.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var upMu sync.Mutex
	var upConns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			upMu.Lock()
			upConns = append(upConns, c)
			upMu.Unlock()
		}
	}()
	defer func() {
		upMu.Lock()
		defer upMu.Unlock()
		for _, c := range upConns {
			c.Close()
		}
	}()
	if _, _, err := soak.RaiseFileLimit(8 * held); err != nil {
		t.Fatal(err)
	}
	r := startFaultRelay(t, ln.Addr().String(), faultOptions{proxy: func(p *proxy.Proxy) { p.IdleTimeout = time.Minute }})
	// A handshake message header claiming 64 KiB - 1, then records that
	// fill it up to a few bytes short.
	const claimed = 64<<10 - 1
	var big []byte
	msg := append([]byte{1, 0, claimed >> 8, claimed & 0xff}, make([]byte, claimed-16)...)
	for len(msg) > 0 {
		n := min(len(msg), 16<<10)
		big = append(big, 22, 3, 1, byte(n>>8), byte(n))
		big = append(big, msg[:n]...)
		msg = msg[n:]
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse + m.StackInuse
	}
	for _, tc := range []struct {
		name  string
		send  []byte
		bound uint64 // bytes per connection
	}{
		{"idle after connect", nil, 64 << 10},
		{"stalled in a 64 KiB ClientHello", big, 64<<10 + 96<<10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := heap()
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for i := 0; i < held; i++ {
				c, err := net.Dial("tcp", r.addr)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
				if tc.send != nil {
					if _, err := c.Write(tc.send); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Every connection relayed (its upstream dialed and its bytes
			// passed) before measuring.
			deadline := time.Now().Add(10 * time.Second)
			for {
				upMu.Lock()
				n := len(upConns)
				upMu.Unlock()
				if n >= held {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("only %d of %d connections reached the upstream", n, held)
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			after := heap()
			per := uint64(0)
			if after > before {
				per = (after - before) / held
			}
			t.Logf("%d connections %s: %d KiB of Go heap and stacks each (%d goroutines in the process)", held, tc.name, per>>10, runtime.NumGoroutine())
			if per > tc.bound {
				t.Errorf("%d KiB per held connection, want at most %d KiB", per>>10, tc.bound>>10)
			}
			upMu.Lock()
			for _, c := range upConns {
				c.Close()
			}
			upConns = nil
			upMu.Unlock()
		})
	}
	for i := 0; i < 2*held; i++ {
		r.verdict(t)
	}
	waitNoRelays(t)
}
