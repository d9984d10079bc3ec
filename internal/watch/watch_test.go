package watch_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// harness runs a relay with tracing to a file in front of upstream.
type harness struct {
	t        *testing.T
	addr     string
	file     string
	tp       *trace.Provider
	verdicts chan failure.Mode
}

func newHarness(t *testing.T, upstream string, mod func(*proxy.Proxy, *watch.Config)) *harness {
	t.Helper()
	file := filepath.Join(t.TempDir(), "traces.jsonl")
	tp, err := trace.Setup(context.Background(), trace.Config{File: file, ServiceVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, file: file, tp: tp, verdicts: make(chan failure.Mode, 16)}
	wc := watch.Config{
		Tracer:         tp.Tracer(),
		IssuerDeadline: 300 * time.Millisecond,
		OnVerdict:      func(_ proxy.ConnInfo, v inspect.Verdict) { h.verdicts <- v.Mode },
	}
	p := &proxy.Proxy{Routes: []proxy.Route{{Listen: "127.0.0.1:0", Upstream: upstream, Inspect: true}}}
	if mod != nil {
		mod(p, &wc)
	}
	p.NewObserver = watch.New(wc).Observe
	ready := make(chan []net.Addr, 1)
	p.Ready = func(a []net.Addr) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; tp.Shutdown(context.Background()) })
	h.addr = (<-ready)[0].String()
	return h
}

// span waits for the connection's verdict, flushes, and returns the one
// ccproxy.connection span from the trace file, decoded with the collector's
// OTLP/JSON decoder.
func (h *harness) span() (ptrace.Span, pcommon.Map) {
	h.t.Helper()
	select {
	case <-h.verdicts:
	case <-time.After(10 * time.Second):
		h.t.Fatal("no verdict")
	}
	if err := h.tp.ForceFlush(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	spans := readSpans(h.t, h.file)
	var roots []ptrace.Span
	for _, s := range spans {
		if s.Name() == trace.SpanConnection {
			roots = append(roots, s)
		}
	}
	if len(roots) != 1 {
		h.t.Fatalf("%d connection spans, want 1", len(roots))
	}
	return roots[0], roots[0].Attributes()
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
			t.Fatalf("trace file line is not OTLP/JSON: %v", err)
		}
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			if v, _ := rs.Resource().Attributes().Get("service.name"); v.Str() != "ccproxy" {
				t.Errorf("service.name = %q", v.Str())
			}
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				ss := rs.ScopeSpans().At(j)
				for k := 0; k < ss.Spans().Len(); k++ {
					out = append(out, ss.Spans().At(k))
				}
			}
		}
	}
	return out
}

func attr(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok {
		return ""
	}
	return v.AsString()
}

// server starts a loopback listener running handle per connection.
func server(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return ln.Addr().String()
}

var testCertOnce sync.Once
var testCert tls.Certificate

// selfSigned is a server certificate carrying an extension with Contrast's
// SNP OID, as the Coordinator's does.
func selfSigned(t *testing.T) tls.Certificate {
	testCertOnce.Do(func() {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "Contrast"},
			NotBefore:    time.Now().Add(-2 * time.Hour),
			NotAfter:     time.Now().Add(2 * time.Hour),
			ExtraExtensions: []pkix.Extension{
				{Id: asn1.ObjectIdentifier{1, 3, 9901, 2, 1}, Value: []byte("evidence")},
			},
		}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		testCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return testCert
}

func tlsServer(t *testing.T, maxVer uint16, after func(*tls.Conn)) string {
	cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MaxVersion: maxVer, NextProtos: []string{"h2"}}
	return server(t, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			return
		}
		after(tc)
	})
}

func echo(tc *tls.Conn) {
	buf := make([]byte, 1024)
	for {
		n, err := tc.Read(buf)
		if n > 0 {
			tc.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// nonce is the Contrast CLI's nonce for these tests, in hex and in ALPN.
const nonceHex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

func clientConfig(maxVer uint16, reject bool) *tls.Config {
	cfg := &tls.Config{
		InsecureSkipVerify: true,
		MaxVersion:         maxVer,
		ServerName:         "localhost",
		NextProtos:         []string{"atls:v1:nonce:" + nonceHex, "h2"},
	}
	if reject {
		cfg.VerifyPeerCertificate = func([][]byte, [][]*x509.Certificate) error {
			return errors.New("wrong policy hash for Coordinator")
		}
	}
	return cfg
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	tc := tls.Client(c, cfg)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		return err
	}
	if _, err := tc.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(tc, buf); err != nil {
		return err
	}
	return tc.Close()
}

type scenario struct {
	name     string
	upstream func(t *testing.T) string
	client   func(t *testing.T, addr string)
	mod      func(*proxy.Proxy, *watch.Config)
	mode     failure.Mode
	attrs    map[string]string
	detail   string // substring of the detail
}

func rawUpstream(f func(c net.Conn)) func(t *testing.T) string {
	return func(t *testing.T) string { return server(t, f) }
}

// readHello reads one TLS record (the ClientHello) from c.
func readHello(c net.Conn) []byte {
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	io.ReadFull(c, body)
	return append(hdr, body...)
}

func tlsClient(maxVer uint16, reject bool) func(t *testing.T, addr string) {
	return func(t *testing.T, addr string) { dialTLS(t, addr, clientConfig(maxVer, reject)) }
}

func TestScenarios(t *testing.T) {
	closedPort := func(t *testing.T) string {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		a := ln.Addr().String()
		ln.Close()
		return a
	}
	scenarios := []scenario{
		{
			name:     "ok TLS 1.3",
			upstream: func(t *testing.T) string { return tlsServer(t, tls.VersionTLS13, echo) },
			client: func(t *testing.T, addr string) {
				if err := dialTLS(t, addr, clientConfig(tls.VersionTLS13, false)); err != nil {
					t.Errorf("client: %v", err)
				}
			},
			mode: failure.OK,
			attrs: map[string]string{
				"tls.protocol.version": "1.3", "tls.client.server_name": "localhost",
				"atls.client_nonce": nonceHex, "atls.nonce_source": "alpn",
			},
		},
		{
			name:     "ok TLS 1.2",
			upstream: func(t *testing.T) string { return tlsServer(t, tls.VersionTLS12, echo) },
			client: func(t *testing.T, addr string) {
				if err := dialTLS(t, addr, clientConfig(tls.VersionTLS12, false)); err != nil {
					t.Errorf("client: %v", err)
				}
			},
			mode:  failure.OK,
			attrs: map[string]string{"tls.protocol.version": "1.2", "tls.server.certificate.extension_oids": `["1.3.9901.2.1"]`},
		},
		{
			name:     "client rejects certificate TLS 1.3",
			upstream: func(t *testing.T) string { return tlsServer(t, tls.VersionTLS13, echo) },
			client:   tlsClient(tls.VersionTLS13, true),
			mode:     failure.ClientRejectedCertificate,
			attrs:    map[string]string{"tls.protocol.version": "1.3"},
		},
		{
			name:     "client rejects certificate TLS 1.2",
			upstream: func(t *testing.T) string { return tlsServer(t, tls.VersionTLS12, echo) },
			client:   tlsClient(tls.VersionTLS12, true),
			mode:     failure.ClientRejectedCertificate,
			attrs:    map[string]string{"tls.alert.description": "42"},
		},
		{
			name:     "load balancer closes after the ClientHello",
			upstream: rawUpstream(func(c net.Conn) { readHello(c) }),
			client:   tlsClient(tls.VersionTLS13, false),
			mode:     failure.LBClosedEarly,
		},
		{
			name: "load balancer resets after the ClientHello",
			upstream: rawUpstream(func(c net.Conn) {
				readHello(c)
				c.(*net.TCPConn).SetLinger(0)
			}),
			client: tlsClient(tls.VersionTLS13, false),
			mode:   failure.LBClosedEarly,
			detail: "reset",
		},
		{
			name: "issuer error: plaintext internal_error alert",
			upstream: rawUpstream(func(c net.Conn) {
				readHello(c)
				c.Write([]byte{21, 3, 3, 0, 2, 2, 80})
			}),
			client: tlsClient(tls.VersionTLS13, false),
			mode:   failure.IssuerError,
			attrs:  map[string]string{"tls.alert.description": "80"},
		},
		{
			name: "other alert",
			upstream: rawUpstream(func(c net.Conn) {
				readHello(c)
				c.Write([]byte{21, 3, 3, 0, 2, 2, 40})
			}),
			client: tlsClient(tls.VersionTLS13, false),
			mode:   failure.TLSAlert,
			attrs:  map[string]string{"tls.alert.description": "40"},
		},
		{
			name: "unsupported atls version",
			upstream: rawUpstream(func(c net.Conn) {
				readHello(c)
				c.Write([]byte{21, 3, 3, 0, 2, 2, 80})
			}),
			client: func(t *testing.T, addr string) {
				cfg := clientConfig(tls.VersionTLS13, false)
				cfg.NextProtos = []string{"atls:v2:nonce:" + nonceHex, "h2"}
				dialTLS(t, addr, cfg)
			},
			mode: failure.UnsupportedATLSVersion,
		},
		{
			name: "upstream answers HTTP",
			upstream: rawUpstream(func(c net.Conn) {
				readHello(c)
				c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
			}),
			client: tlsClient(tls.VersionTLS13, false),
			mode:   failure.UpstreamNotTLS,
			detail: "HTTP",
		},
		{
			name:     "issuer silent until the client gives up",
			upstream: rawUpstream(func(c net.Conn) { readHello(c); time.Sleep(2 * time.Second) }),
			client: func(t *testing.T, addr string) {
				c, _ := net.Dial("tcp", addr)
				defer c.Close()
				tc := tls.Client(c, clientConfig(tls.VersionTLS13, false))
				tc.SetDeadline(time.Now().Add(600 * time.Millisecond))
				tc.Handshake()
			},
			mode:   failure.IssuerTimeout,
			detail: "issuer deadline",
		},
		{
			name:     "client speaks HTTP",
			upstream: rawUpstream(func(c net.Conn) { io.Copy(io.Discard, c) }),
			client: func(t *testing.T, addr string) {
				c, _ := net.Dial("tcp", addr)
				c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
				time.Sleep(50 * time.Millisecond)
				c.Close()
			},
			mode:   failure.ClientNotTLS,
			detail: "HTTP request",
		},
		{
			name:     "client hangs up at once",
			upstream: rawUpstream(func(c net.Conn) { io.Copy(io.Discard, c) }),
			client: func(t *testing.T, addr string) {
				c, _ := net.Dial("tcp", addr)
				c.Close()
			},
			mode: failure.ClientAborted,
		},
		{
			name:     "client hangs up mid-ClientHello",
			upstream: rawUpstream(func(c net.Conn) { io.Copy(io.Discard, c) }),
			client: func(t *testing.T, addr string) {
				c, _ := net.Dial("tcp", addr)
				c.Write([]byte{22, 3, 1, 1, 0, 1, 0, 0})
				time.Sleep(50 * time.Millisecond)
				c.Close()
			},
			mode: failure.ClientAborted,
		},
		{
			name:     "upstream port closed",
			upstream: closedPort,
			client:   tlsClient(tls.VersionTLS13, false),
			mode:     failure.UpstreamRefused,
		},
		{
			name:     "upstream name does not resolve",
			upstream: func(*testing.T) string { return "coordinator.ccproxy-test.invalid:1313" },
			client:   tlsClient(tls.VersionTLS13, false),
			mode:     failure.UpstreamDNSFailure,
			detail:   "coordinator.ccproxy-test.invalid",
		},
		{
			name:     "upstream dial timeout",
			upstream: func(t *testing.T) string { return tlsServer(t, tls.VersionTLS13, echo) },
			mod:      func(p *proxy.Proxy, _ *watch.Config) { p.DialTimeout = time.Nanosecond },
			client:   tlsClient(tls.VersionTLS13, false),
			mode:     failure.UpstreamDialTimeout,
		},
		{
			name: "upstream resets after the handshake",
			upstream: func(t *testing.T) string {
				return tlsServer(t, tls.VersionTLS13, func(tc *tls.Conn) {
					tc.Read(make([]byte, 4))
					tc.NetConn().(*net.TCPConn).SetLinger(0)
					tc.NetConn().Close()
				})
			},
			client: func(t *testing.T, addr string) {
				c, _ := net.Dial("tcp", addr)
				defer c.Close()
				tc := tls.Client(c, clientConfig(tls.VersionTLS13, false))
				tc.SetDeadline(time.Now().Add(3 * time.Second))
				if tc.Handshake() != nil {
					return
				}
				for i := 0; i < 50; i++ {
					if _, err := tc.Write(bytes.Repeat([]byte("x"), 100)); err != nil {
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			},
			mode: failure.UpstreamReset,
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, sc.upstream(t), sc.mod)
			sc.client(t, h.addr)
			span, attrs := h.span()
			if got := attr(attrs, "ccproxy.failure_mode"); got != string(sc.mode) {
				t.Errorf("failure_mode = %q, want %q (detail: %s)", got, sc.mode, attr(attrs, "ccproxy.failure_detail"))
			}
			detail := attr(attrs, "ccproxy.failure_detail")
			if detail == "" || !strings.Contains(detail, sc.detail) {
				t.Errorf("failure_detail = %q, want it to mention %q", detail, sc.detail)
			}
			for k, want := range sc.attrs {
				if got := attr(attrs, k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			for _, k := range []string{"ccproxy.upstream.address", "client.address", "client.port", "server.address", "server.port"} {
				if attr(attrs, k) == "" {
					t.Errorf("attribute %s missing", k)
				}
			}
			if span.EndTimestamp() < span.StartTimestamp() {
				t.Error("span ends before it starts")
			}
		})
	}
}

// TestPlainRoute: a route relayed without TLS inspection (the Coordinator's
// HTTP API) is ok when bytes flowed, though no ClientHello was seen.
func TestPlainRoute(t *testing.T) {
	up := server(t, func(c net.Conn) {
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
		_ = n
	})
	h := newHarness(t, up, func(p *proxy.Proxy, _ *watch.Config) { p.Routes[0].Inspect = false })
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET /manifest HTTP/1.1\r\nHost: coordinator\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(c)
	c.Close()
	_, attrs := h.span()
	if got := attr(attrs, "ccproxy.failure_mode"); got != string(failure.OK) {
		t.Errorf("plain route: failure_mode = %q (%s), want ok", got, attr(attrs, "ccproxy.failure_detail"))
	}
}
