package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/verdict"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// env is one test's pair of peers: keys, trace files and counters.
type env struct {
	t                      *testing.T
	serverCert, clientCert tls.Certificate
	serverFP, clientFP     Fingerprint
	local, remote          *trace.Provider
	localFile, remoteFile  string
	relayed                atomic.Int64 // streams that reached the relayer
	results                chan Result
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, results: make(chan Result, 64)}
	e.serverCert, e.clientCert = testCert(t, "cluster"), testCert(t, "laptop")
	e.serverFP, e.clientFP = FingerprintOf(e.serverCert.Certificate[0]), FingerprintOf(e.clientCert.Certificate[0])
	dir := t.TempDir()
	e.localFile, e.remoteFile = filepath.Join(dir, "local.jsonl"), filepath.Join(dir, "remote.jsonl")
	var err error
	if e.local, err = trace.Setup(context.Background(), trace.Config{File: e.localFile}); err != nil {
		t.Fatal(err)
	}
	if e.remote, err = trace.Setup(context.Background(), trace.Config{File: e.remoteFile}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.local.Shutdown(context.Background())
		e.remote.Shutdown(context.Background())
	})
	return e
}

// startServer serves routes on addr ("" for any loopback port) until the
// returned stop is called (or the test ends).
func (e *env) startServer(addr string, routes []Route, mutate func(*Server)) (string, func()) {
	e.t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	relay := WatchRelayer(&proxy.Proxy{DialTimeout: 2 * time.Second}, watch.Config{Tracer: e.remote.Tracer(), IssuerDeadline: 2 * time.Second})
	s := &Server{
		Listen: addr,
		Routes: routes,
		Cert:   e.serverCert,
		Peers:  []Fingerprint{e.clientFP},
		Relay: func(ctx context.Context, req Request) Verdict {
			e.relayed.Add(1)
			return relay(ctx, req)
		},
		DrainTimeout: 5 * time.Second,
	}
	if mutate != nil {
		mutate(s)
	}
	pc, err := s.Bind(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("server: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return pc.LocalAddr().String(), stop
}

// startClient carries routes to server until stop; it returns the bound
// local addresses.
func (e *env) startClient(server string, routes []LocalRoute, mutate func(*Client)) ([]string, func()) {
	e.t.Helper()
	for i := range routes {
		if routes[i].Listen == "" {
			routes[i].Listen = "127.0.0.1:0"
		}
	}
	c := &Client{
		Server:       server,
		Routes:       routes,
		Cert:         e.clientCert,
		Peers:        []Fingerprint{e.serverFP},
		Tracer:       e.local.Tracer(),
		DialTimeout:  3 * time.Second,
		MinBackoff:   20 * time.Millisecond,
		MaxBackoff:   200 * time.Millisecond,
		DrainTimeout: 2 * time.Second,
		OnResult:     func(r Result) { e.results <- r },
	}
	if mutate != nil {
		mutate(c)
	}
	lns, err := c.Listen(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	addrs := make([]string, len(lns))
	for i, ln := range lns {
		addrs[i] = ln.Addr().String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, lns) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("client: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return addrs, stop
}

func (e *env) result() Result {
	e.t.Helper()
	select {
	case r := <-e.results:
		return r
	case <-time.After(15 * time.Second):
		e.t.Fatal("no connection result within 15s")
		return Result{}
	}
}

// listenTCP serves each accepted connection with handle.
func listenTCP(t *testing.T, handle func(c *net.TCPConn)) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().String(), &accepted
}

// hashUpstream reads a connection to its end, then answers with the
// SHA-256 of what it read and, when the payload starts with a length M (8
// bytes, big endian), M bytes drawn from a generator seeded with that hash.
// It answers only after the client's FIN, so every exchange exercises
// half-close.
func hashUpstream(c *net.TCPConn) {
	h := sha256.New()
	var head [8]byte
	n, _ := io.ReadFull(c, head[:])
	h.Write(head[:n])
	if _, err := io.Copy(h, c); err != nil {
		return
	}
	sum := [32]byte(h.Sum(nil))
	c.Write(sum[:])
	if n == 8 {
		m := int64(0)
		for _, b := range head {
			m = m<<8 | int64(b)
		}
		io.Copy(c, io.LimitReader(rand.NewChaCha8(sum), m))
	}
	c.CloseWrite()
}

// exchange sends payload (whose first 8 bytes ask for m reply bytes),
// half-closes, and checks the reply byte for byte.
func exchange(t *testing.T, addr string, payload []byte, m int64) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, rerr := io.ReadAll(c)
	if err := <-errc; err != nil {
		return err
	}
	if rerr != nil {
		return rerr
	}
	sum := sha256.Sum256(payload)
	if len(got) < 32 || !bytes.Equal(got[:32], sum[:]) {
		return errors.New("the upstream did not receive the payload byte for byte")
	}
	want := make([]byte, m)
	if len(payload) >= 8 {
		rand.NewChaCha8(sum).Read(want)
	}
	if !bytes.Equal(got[32:], want) {
		return errors.New("the reply did not arrive byte for byte")
	}
	return nil
}

func payload(r *rand.Rand, n int, m int64) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	if n >= 8 {
		for i := range 8 {
			p[i] = byte(m >> (56 - 8*i))
		}
	}
	return p
}

func TestTunnelByteExactWithHalfClose(t *testing.T) {
	e := newEnv(t)
	upstream, _ := listenTCP(t, hashUpstream)
	server, _ := e.startServer("", []Route{{Name: "plain", Upstream: upstream}}, nil)
	addrs, _ := e.startClient(server, []LocalRoute{{}}, nil)

	const maxSize = 8 << 20
	r := rand.New(rand.NewPCG(1, 2))
	type size struct {
		n int
		m int64
	}
	sizes := []size{{0, 0}, {1, 0}, {8, 0}, {maxSize, maxSize}}
	for range 2 {
		sizes = append(sizes, size{8 + r.IntN(maxSize-8), r.Int64N(maxSize)})
	}
	var wg sync.WaitGroup
	for _, s := range sizes {
		p := payload(r, s.n, s.m)
		m := s.m
		if s.n < 8 {
			m = 0
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := exchange(t, addrs[0], p, m); err != nil {
				t.Errorf("%d bytes up, %d down: %v", len(p), m, err)
			}
		}()
	}
	wg.Wait()
	for range sizes {
		res := e.result()
		if !res.Remote || res.Verdict.Upstream != upstream {
			t.Errorf("result %+v: want the server's verdict for %s", res, upstream)
		}
	}
}

// closeAfterHello reads one TLS record (the ClientHello) and closes, as a
// load balancer with no healthy backend does.
func closeAfterHello(c *net.TCPConn) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	io.CopyN(io.Discard, c, int64(hdr[3])<<8|int64(hdr[4]))
}

func TestTunnelFailureModeReachesLocalSpan(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := closed.Addr().String()
	closed.Close()

	tests := []struct {
		name     string
		upstream func(t *testing.T) string
		want     failure.Mode
	}{
		{"lb closed early", func(t *testing.T) string { a, _ := listenTCP(t, closeAfterHello); return a }, failure.LBClosedEarly},
		{"upstream refused", func(*testing.T) string { return refusedAddr }, failure.UpstreamRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			upstream := tt.upstream(t)
			server, _ := e.startServer("", []Route{{Name: "userapi", Upstream: upstream, Inspect: true}}, nil)
			addrs, _ := e.startClient(server, []LocalRoute{{Route: "userapi"}}, nil)

			// The relay resets the client as soon as the upstream dial
			// fails, which can beat connect's own check of the socket.
			if c, err := net.Dial("tcp", addrs[0]); err == nil {
				tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: []string{"h2"}})
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				if err := tc.HandshakeContext(ctx); err == nil {
					t.Error("handshake succeeded")
				}
				cancel()
				c.Close()
			} else if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatal(err)
			}

			res := e.result()
			if res.Verdict.Mode != tt.want || !res.Remote || res.Failure != "" {
				t.Fatalf("local result: %s from remote=%v (%s, tunnel failure %q), want %s from the server", res.Verdict.Mode, res.Remote, res.Verdict.Detail, res.Failure, tt.want)
			}
			e.local.Shutdown(t.Context())
			e.remote.Shutdown(t.Context())

			local := readSpans(t, e.localFile)
			root := findSpan(t, local, func(s ptrace.Span) bool {
				return s.Name() == trace.SpanConnection && s.ParentSpanID().IsEmpty()
			})
			if got := attr(root, string(trace.FailureMode)); got != string(tt.want) {
				t.Errorf("local span failure mode %q, want %q", got, tt.want)
			}
			if got := attr(root, string(trace.FailureDetail)); got == "" || got != res.Verdict.Detail {
				t.Errorf("local span detail %q, want the verdict's %q", got, res.Verdict.Detail)
			}
			if got := attr(root, string(trace.UpstreamAddress)); got != upstream {
				t.Errorf("local span upstream %q, want %q", got, upstream)
			}
			if got := attr(root, string(trace.TunnelVerdictSource)); got != "remote" {
				t.Errorf("local span verdict source %q, want remote", got)
			}
			if _, ok := root.Attributes().Get(string(trace.TunnelFailure)); ok {
				t.Errorf("local span has %s with the server's verdict", trace.TunnelFailure)
			}
			stream := findSpan(t, local, func(s ptrace.Span) bool {
				return s.Name() == trace.SpanTunnelStream && s.TraceID() == root.TraceID()
			})

			remote := readSpans(t, e.remoteFile)
			rs := findSpan(t, remote, func(s ptrace.Span) bool { return s.Name() == trace.SpanConnection })
			if rs.TraceID() != root.TraceID() {
				t.Errorf("remote trace id %s, local %s: want one trace", rs.TraceID(), root.TraceID())
			}
			if rs.ParentSpanID() != stream.SpanID() {
				t.Errorf("remote span's parent %s, want the local stream span %s", rs.ParentSpanID(), stream.SpanID())
			}
			if got := attr(rs, string(trace.FailureMode)); got != string(tt.want) {
				t.Errorf("remote span failure mode %q, want %q", got, tt.want)
			}
			if got := attr(rs, string(trace.TunnelPeerFingerprint)); got != e.clientFP.String() {
				t.Errorf("remote span peer fingerprint %q, want %s", got, e.clientFP)
			}
		})
	}
}

func TestTunnelRefusesUnpinnedPeers(t *testing.T) {
	t.Run("client not pinned by the server", func(t *testing.T) {
		e := newEnv(t)
		upstream, accepted := listenTCP(t, hashUpstream)
		server, _ := e.startServer("", []Route{{Name: "plain", Upstream: upstream}}, nil)
		mallory := testCert(t, "mallory")
		addrs, _ := e.startClient(server, []LocalRoute{{}}, func(c *Client) {
			c.Cert = mallory
			c.DialTimeout = time.Second
		})
		if err := exchange(t, addrs[0], payload(rand.New(rand.NewPCG(3, 4)), 100, 0), 0); err == nil {
			t.Error("an exchange through an unauthenticated tunnel succeeded")
		}
		res := e.result()
		wantUnavailable(t, res, verdict.TunnelPinRefused, "refused this client's ("+FingerprintOf(mallory.Certificate[0]).String()+") certificate", "bad_certificate")

		// The refusal is the TLS handshake's: a bare QUIC client with the
		// wrong key gets the connection closed with a TLS alert before the
		// server's hello, and no stream it opens is ever read.
		conf, _ := clientTLS(mallory, []Fingerprint{e.serverFP}, "localhost")
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		qc, err := quic.DialAddr(ctx, server, conf, nil)
		if err == nil {
			if st, err := qc.OpenStream(); err == nil {
				b, _ := Header{Route: "plain"}.Marshal()
				st.Write(append(b, "data"...))
			}
			_, err = qc.AcceptUniStream(ctx)
		}
		var te *quic.TransportError
		if !errors.As(err, &te) || !te.ErrorCode.IsCryptoError() || !te.Remote {
			t.Errorf("bare client with the wrong key: err = %v, want a TLS alert from the server", err)
		}
		if n := e.relayed.Load(); n != 0 {
			t.Errorf("%d streams reached the relay", n)
		}
		if n := accepted.Load(); n != 0 {
			t.Errorf("the upstream accepted %d connections", n)
		}
	})
	t.Run("server not pinned by the client", func(t *testing.T) {
		e := newEnv(t)
		upstream, accepted := listenTCP(t, hashUpstream)
		server, _ := e.startServer("", []Route{{Name: "plain", Upstream: upstream}}, nil)
		addrs, _ := e.startClient(server, []LocalRoute{{}}, func(c *Client) {
			c.Peers = []Fingerprint{FingerprintOf(testCert(t, "other").Certificate[0])}
			c.DialTimeout = time.Second
		})
		if err := exchange(t, addrs[0], nil, 0); err == nil {
			t.Error("an exchange with an unpinned server succeeded")
		}
		res := e.result()
		wantUnavailable(t, res, verdict.TunnelPinRefused, "the server's certificate fingerprint "+e.serverFP.String()+" is not pinned")
		if n := e.relayed.Load() + accepted.Load(); n != 0 {
			t.Errorf("%d streams or upstream connections, want none", n)
		}
	})
}

// TestTunnelDialsOnlyConfiguredRoutes: the header has no address field, a
// route name cannot be an address, and an unknown name is refused without
// a dial.
func TestTunnelDialsOnlyConfiguredRoutes(t *testing.T) {
	e := newEnv(t)
	upstream, _ := listenTCP(t, hashUpstream)
	secret, secretAccepted := listenTCP(t, hashUpstream)
	server, _ := e.startServer("", []Route{{Name: "plain", Upstream: upstream}}, nil)

	// Through the client: an unknown name.
	addrs, _ := e.startClient(server, []LocalRoute{{Route: "secret"}}, nil)
	if err := exchange(t, addrs[0], nil, 0); err == nil {
		t.Error("exchange over an unknown route succeeded")
	}
	wantUnavailable(t, e.result(), verdict.TunnelUnknownRoute, `has no route "secret"`)

	// A client cannot even be configured with an address as its route.
	c := &Client{Server: server, Routes: []LocalRoute{{Listen: "127.0.0.1:0", Route: secret}}, Cert: e.clientCert, Peers: []Fingerprint{e.serverFP}}
	lns, err := c.Listen(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Serve(t.Context(), lns); err == nil || !strings.Contains(err.Error(), "route name") {
		t.Errorf("client with an address as route: Serve = %v, want a route name error", err)
	}

	// A hand-made header with an address, or a valid unknown name, on a
	// properly authenticated connection.
	conf, _ := clientTLS(e.clientCert, []Fingerprint{e.serverFP}, "localhost")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, server, conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	for _, tc := range []struct {
		header []byte
		want   quic.StreamErrorCode
	}{
		{rawHeader(1, secret, "", ""), codeBadHeader},
		{rawHeader(1, "secret", "", ""), codeUnknownRoute},
		{rawHeader(7, "plain", "", ""), codeBadHeader},
	} {
		st, err := qc.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st.Write(append(tc.header, "GET / HTTP/1.0\r\n\r\n"...))
		_, err = io.ReadAll(st)
		var se *quic.StreamError
		if !errors.As(err, &se) || se.ErrorCode != tc.want {
			t.Errorf("header %q: read err = %v, want stream error %d", tc.header, err, tc.want)
		}
	}
	if n := e.relayed.Load(); n != 0 {
		t.Errorf("%d streams reached the relay", n)
	}
	if n := secretAccepted.Load(); n != 0 {
		t.Errorf("the unconfigured target accepted %d connections", n)
	}
}

func TestTunnelResetPropagates(t *testing.T) {
	e := newEnv(t)
	gotReset := make(chan error, 1)
	upstream, _ := listenTCP(t, func(c *net.TCPConn) {
		var b [5]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return
		}
		if string(b[:]) == "reset" {
			c.SetLinger(0) // the upstream resets
			return
		}
		// "hello": the client will reset; report what the upstream reads.
		_, err := io.Copy(io.Discard, c)
		gotReset <- err
	})
	server, _ := e.startServer("", []Route{{Name: "plain", Upstream: upstream}}, nil)
	addrs, _ := e.startClient(server, []LocalRoute{{}}, nil)

	// Upstream reset reaches the local client as a reset.
	c, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("reset"))
	_, err = io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("local client read after an upstream reset: %v, want ECONNRESET", err)
	}
	c.Close()
	e.result()

	// Local client reset reaches the upstream as a reset.
	c, err = net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello"))
	time.Sleep(100 * time.Millisecond) // let the bytes reach the upstream first
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	select {
	case err := <-gotReset:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("upstream read after the local client's reset: %v, want ECONNRESET", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream never learned of the reset")
	}
	e.result()
}

func TestTunnelReconnects(t *testing.T) {
	e := newEnv(t)
	upstream, _ := listenTCP(t, hashUpstream)
	routes := []Route{{Name: "plain", Upstream: upstream}}
	server, stop := e.startServer("", routes, nil)
	addrs, _ := e.startClient(server, []LocalRoute{{}}, nil)
	r := rand.New(rand.NewPCG(5, 6))

	if err := exchange(t, addrs[0], payload(r, 1000, 1000), 1000); err != nil {
		t.Fatalf("before the restart: %v", err)
	}
	e.result()
	stop()
	// The same address, a new process as far as the client can tell.
	e.startServer(server, routes, nil)
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := exchange(t, addrs[0], payload(r, 1000, 1000), 1000)
		res := e.result()
		if err == nil {
			if !res.Remote {
				t.Errorf("after reconnecting: verdict from remote=%v", res.Remote)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no exchange after the server came back: %v (last: %s)", err, res.Verdict.Detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTunnelServerDrainsOpenStreams(t *testing.T) {
	e := newEnv(t)
	started := make(chan struct{}, 1)
	upstream, _ := listenTCP(t, func(c *net.TCPConn) {
		started <- struct{}{}
		time.Sleep(300 * time.Millisecond) // still working when the server is told to stop
		hashUpstream(c)
	})
	server, stop := e.startServer("", []Route{{Name: "plain", Upstream: upstream}}, nil)
	addrs, _ := e.startClient(server, []LocalRoute{{}}, func(c *Client) { c.DialTimeout = 500 * time.Millisecond })

	p := payload(rand.New(rand.NewPCG(7, 8)), 64<<10, 64<<10)
	errc := make(chan error, 1)
	go func() { errc <- exchange(t, addrs[0], p, 64<<10) }()
	<-started
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	if err := <-errc; err != nil {
		t.Errorf("connection open during the drain: %v", err)
	}
	if res := e.result(); !res.Remote {
		t.Errorf("drained connection: verdict from remote=%v (%s)", res.Remote, res.Verdict.Detail)
	}
	<-stopped

	// With the server gone, a new connection gets a local verdict.
	if err := exchange(t, addrs[0], nil, 0); err == nil {
		t.Error("exchange without a server succeeded")
	}
	wantUnavailable(t, e.result(), verdict.TunnelDown, "no connection to the tunnel server "+server)
}

func TestTunnelClientDrainTimeoutResetsStragglers(t *testing.T) {
	e := newEnv(t)
	upstream, _ := listenTCP(t, func(c *net.TCPConn) { io.Copy(c, c) })
	server, _ := e.startServer("", []Route{{Name: "echo", Upstream: upstream}}, nil)
	addrs, stop := e.startClient(server, []LocalRoute{{}}, func(c *Client) { c.DrainTimeout = 200 * time.Millisecond })

	c, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b [4]byte
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("echo before the shutdown: %v", err)
	}
	start := time.Now()
	stop() // the connection stays open past the drain timeout
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("client Serve took %s to return after a 200ms drain timeout", took)
	}
	if _, err := c.Read(b[:]); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("straggler read after the drain timeout: %v, want ECONNRESET", err)
	}
}

// wantUnavailable checks a local verdict for a connection the tunnel could
// not carry: tunnel_unavailable, named by the local side for the reason
// want, with a detail that opens with the reason and says each of details.
func wantUnavailable(t *testing.T, res Result, want verdict.TunnelFailure, details ...string) {
	t.Helper()
	if res.Verdict.Mode != failure.TunnelUnavailable || res.Remote || res.Failure != want {
		t.Errorf("result %s remote=%v tunnel failure %q (%s), want a local tunnel_unavailable for %q",
			res.Verdict.Mode, res.Remote, res.Failure, res.Verdict.Detail, want)
	}
	if !strings.HasPrefix(res.Verdict.Detail, verdict.Sentence(string(want))+": ") {
		t.Errorf("detail %q does not open with %q", res.Verdict.Detail, want)
	}
	for _, d := range details {
		if !strings.Contains(res.Verdict.Detail, d) {
			t.Errorf("detail %q does not say %q", res.Verdict.Detail, d)
		}
	}
}

func readSpans(t *testing.T, file string) []ptrace.Span {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []ptrace.Span
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(sc.Bytes())
		if err != nil {
			t.Fatalf("%s: line is not OTLP/JSON: %v", file, err)
		}
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				ss := rs.ScopeSpans().At(j)
				for k := 0; k < ss.Spans().Len(); k++ {
					out = append(out, ss.Spans().At(k))
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func findSpan(t *testing.T, spans []ptrace.Span, match func(ptrace.Span) bool) ptrace.Span {
	t.Helper()
	var found []ptrace.Span
	for _, s := range spans {
		if match(s) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		names := make([]string, len(spans))
		for i, s := range spans {
			names[i] = s.Name()
		}
		t.Fatalf("%d matching spans among %v, want 1", len(found), names)
	}
	return found[0]
}

func attr(s ptrace.Span, key string) string {
	v, ok := s.Attributes().Get(key)
	if !ok {
		return ""
	}
	return v.AsString()
}

// TestTunnelRetriesAreOneRun: a client that retries through the tunnel is
// one CLI run on both ends: attempts 1, 2, 3 on the local root spans (the
// retries linked to the first) and on the in-cluster ones, whose streams
// all come from one tunnel peer.
func TestTunnelRetriesAreOneRun(t *testing.T) {
	e := newEnv(t)
	upstream, _ := listenTCP(t, closeAfterHello)
	server, _ := e.startServer("", []Route{{Name: "userapi", Upstream: upstream, Inspect: true}}, nil)
	addrs, _ := e.startClient(server, []LocalRoute{{Route: "userapi"}}, nil)
	const attempts = 3
	for range attempts {
		c, err := net.Dial("tcp", addrs[0])
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		if err := tc.HandshakeContext(ctx); err == nil {
			t.Fatal("handshake succeeded")
		}
		cancel()
		c.Close()
		if res := e.result(); res.Verdict.Mode != failure.LBClosedEarly {
			t.Fatalf("attempt: %s (%s)", res.Verdict.Mode, res.Verdict.Detail)
		}
	}
	e.local.Shutdown(t.Context())
	e.remote.Shutdown(t.Context())

	for name, file := range map[string]string{"local": e.localFile, "in-cluster": e.remoteFile} {
		var roots []ptrace.Span
		for _, s := range readSpans(t, file) {
			if s.Name() == trace.SpanConnection {
				roots = append(roots, s)
			}
		}
		if len(roots) != attempts {
			t.Fatalf("%s: %d connection spans, want %d", name, len(roots), attempts)
		}
		slices.SortFunc(roots, func(a, b ptrace.Span) int { return int(a.StartTimestamp()) - int(b.StartTimestamp()) })
		for i, s := range roots {
			n, ok := s.Attributes().Get(string(trace.RunAttempt))
			if !ok || n.Int() != int64(i+1) {
				t.Errorf("%s: connection %d has %s %v, want %d", name, i+1, trace.RunAttempt, n.AsRaw(), i+1)
			}
			if i == 0 {
				continue
			}
			if s.Links().Len() != 1 || s.Links().At(0).SpanID() != roots[0].SpanID() {
				t.Errorf("%s: attempt %d is not linked to the first attempt's span", name, i+1)
			}
		}
	}
}
