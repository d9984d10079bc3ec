package tunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/verdict"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// syncBuffer is a log sink the client's handlers may write concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// holdOpen connects to addr and checks one echo, leaving the connection
// open (an echo upstream behind the tunnel).
func holdOpen(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("echo through the tunnel: %v", err)
	}
	c.SetDeadline(time.Time{})
	return c
}

// TestTunnelUnavailableEndToEnd drives each way the tunnel itself can fail
// a connection and checks that the local side names it tunnel_unavailable
// (never upstream_*), with a detail that says which, on its root span and
// in its log line.
func TestTunnelUnavailableEndToEnd(t *testing.T) {
	echo := func(c *net.TCPConn) { io.Copy(c, c) }
	tests := []struct {
		name string
		// run makes the connection that fails and returns the tunnel
		// server's address as the client has it.
		run     func(t *testing.T, e *env, log io.Writer) string
		want    verdict.TunnelFailure
		details []string
	}{
		{
			name: "tunnel server down",
			run: func(t *testing.T, e *env, log io.Writer) string {
				pc, err := net.ListenPacket("udp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				server := pc.LocalAddr().String()
				pc.Close() // nothing answers there
				addrs, _ := e.startClient(server, []LocalRoute{{}}, func(c *Client) {
					c.DialTimeout = 500 * time.Millisecond
					c.Logger = slog.New(slog.NewTextHandler(log, nil))
				})
				if err := exchange(t, addrs[0], []byte("hello"), 0); err == nil {
					t.Error("an exchange without a tunnel server succeeded")
				}
				return server
			},
			want:    verdict.TunnelDown,
			details: []string{"no connection to the tunnel server"},
		},
		{
			name: "server at its per-client stream limit",
			run: func(t *testing.T, e *env, log io.Writer) string {
				upstream, _ := listenTCP(t, echo)
				server, _ := e.startServer("", []Route{{Name: "echo", Upstream: upstream}}, func(s *Server) { s.MaxStreams = 1 })
				addrs, _ := e.startClient(server, []LocalRoute{{}}, func(c *Client) {
					c.DialTimeout = 500 * time.Millisecond
					c.Logger = slog.New(slog.NewTextHandler(log, nil))
				})
				first := holdOpen(t, addrs[0])
				if err := exchange(t, addrs[0], []byte("hello"), 0); err == nil {
					t.Error("an exchange beyond the stream limit succeeded")
				}
				res := e.result() // the second connection's, while the first is open
				first.Close()
				if r := e.result(); !r.Remote {
					t.Errorf("the connection within the limit: %s from remote=%v (%s)", r.Verdict.Mode, r.Remote, r.Verdict.Detail)
				}
				e.results <- res
				return server
			},
			want:    verdict.TunnelBusy,
			details: []string{"stream limit", "--max-streams"},
		},
		{
			name: "server at its connection limit",
			run: func(t *testing.T, e *env, log io.Writer) string {
				upstream, _ := listenTCP(t, echo)
				server, _ := e.startServer("", []Route{{Name: "echo", Upstream: upstream}}, func(s *Server) { s.MaxConns = 1 })
				addrs, _ := e.startClient(server, []LocalRoute{{}}, func(c *Client) {
					c.Logger = slog.New(slog.NewTextHandler(log, nil))
				})
				first := holdOpen(t, addrs[0])
				if err := exchange(t, addrs[0], []byte("hello"), 0); err == nil {
					t.Error("an exchange beyond the connection limit succeeded")
				}
				res := e.result()
				first.Close()
				e.result()
				e.results <- res
				return server
			},
			want:    verdict.TunnelBusy,
			details: []string{"connection limit", "--max-connections"},
		},
		{
			name: "verdict never came",
			run: func(t *testing.T, e *env, log io.Writer) string {
				server, _ := e.startServer("", []Route{{Name: "x", Upstream: "127.0.0.1:1"}}, func(s *Server) {
					// A relayer whose verdict names no mode: the server
					// cannot send it.
					s.Relay = func(_ context.Context, req Request) Verdict {
						req.Conn.Close()
						return Verdict{}
					}
				})
				addrs, _ := e.startClient(server, []LocalRoute{{}}, func(c *Client) {
					c.VerdictTimeout = 300 * time.Millisecond
					c.Logger = slog.New(slog.NewTextHandler(log, nil))
				})
				exchange(t, addrs[0], []byte("hello"), 0)
				return server
			},
			want:    verdict.TunnelNoVerdict,
			details: []string{"sent no verdict within 300ms"},
		},
		{
			name: "tunnel lost before the verdict",
			run: func(t *testing.T, e *env, log io.Writer) string {
				relayed := make(chan struct{})
				server, stop := e.startServer("", []Route{{Name: "x", Upstream: "127.0.0.1:1"}}, func(s *Server) {
					s.DrainTimeout = 200 * time.Millisecond
					// The connection ends at once; the verdict would come
					// only after the server has closed the tunnel.
					s.Relay = func(ctx context.Context, req Request) Verdict {
						req.Conn.Close()
						close(relayed)
						<-ctx.Done()
						return Verdict{Mode: "ok"}
					}
				})
				addrs, _ := e.startClient(server, []LocalRoute{{}}, func(c *Client) {
					c.Logger = slog.New(slog.NewTextHandler(log, nil))
				})
				exchange(t, addrs[0], []byte("hello"), 0)
				<-relayed
				go stop()
				return server
			},
			want:    verdict.TunnelLost,
			details: []string{"ended (", "before the in-cluster relay's verdict"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			var log syncBuffer
			server := tt.run(t, e, &log)
			res := e.result()
			t.Logf("detail: %s", res.Verdict.Detail)
			wantUnavailable(t, res, tt.want, append(tt.details, server)...)
			e.local.Shutdown(t.Context())

			// The root span.
			root := findSpan(t, readSpans(t, e.localFile), func(s ptrace.Span) bool {
				return s.Name() == trace.SpanConnection && s.TraceID() == [16]byte(res.TraceID)
			})
			if got := attr(root, string(trace.FailureMode)); got != string(failure.TunnelUnavailable) {
				t.Errorf("local span failure mode %q, want tunnel_unavailable", got)
			}
			if got := attr(root, string(trace.FailureDetail)); got != res.Verdict.Detail {
				t.Errorf("local span detail %q, want %q", got, res.Verdict.Detail)
			}
			if got := attr(root, string(trace.TunnelVerdictSource)); got != "local" {
				t.Errorf("local span verdict source %q, want local", got)
			}
			if got := attr(root, string(trace.TunnelFailure)); got != string(tt.want) {
				t.Errorf("local span %s %q, want %q", trace.TunnelFailure, got, tt.want)
			}
			if root.Status().Code() != ptrace.StatusCodeError {
				t.Errorf("local span status %s, want Error", root.Status().Code())
			}

			// The log line.
			var line string
			for l := range strings.Lines(log.String()) {
				if strings.Contains(l, "msg=connection ") && strings.Contains(l, res.TraceID.String()) {
					line = l
				}
			}
			for _, want := range []string{"failure_mode=tunnel_unavailable", "verdict_source=local", fmt.Sprintf("tunnel_failure=%q", tt.want)} {
				if !strings.Contains(line, want) {
					t.Errorf("log line %q does not say %s", line, want)
				}
			}
		})
	}
}

// TestTunnelFailureNames checks the reasons no end-to-end test reaches
// reliably (races with a draining server, this process stopping) and how
// a failed open is told apart.
func TestTunnelFailureNames(t *testing.T) {
	cs := &clientState{c: &Client{Server: "tunnel.example:4433"}}
	for code, want := range map[quic.StreamErrorCode]verdict.TunnelFailure{
		codeUnknownRoute: verdict.TunnelUnknownRoute,
		codeBusy:         verdict.TunnelBusy,
		codeShutdown:     verdict.TunnelShutdown,
		codeBadHeader:    verdict.TunnelBadHeader,
	} {
		o, ok := cs.refusal(code, LocalRoute{Route: "mesh"})
		if !ok || o.failure != want || !strings.HasPrefix(o.detail, string(want)+": the tunnel server tunnel.example:4433 ") {
			t.Errorf("stream reset %d: %q %q, want %q", code, o.failure, o.detail, want)
		}
	}
	for _, code := range []quic.StreamErrorCode{0, codeReset} {
		if o, ok := cs.refusal(code, LocalRoute{}); ok {
			t.Errorf("stream reset %d is no refusal, got %q", code, o.failure)
		}
	}

	stopped, cancel := context.WithCancel(t.Context())
	cancel()
	waited := 3 * time.Second
	cases := []struct {
		name string
		ctx  context.Context
		err  error
		want verdict.TunnelFailure
		says string
	}{
		{"this process stops", stopped, &noTunnelError{waited: waited}, verdict.TunnelLocalStop, "shut down"},
		{"first attempt still running", t.Context(), &noTunnelError{waited: waited}, verdict.TunnelDown, "no answer to the first connection attempt yet"},
		{"handshake timeout", t.Context(), &noTunnelError{last: &quic.IdleTimeoutError{}, waited: waited}, verdict.TunnelDown, "timeout"},
		{"server's certificate not pinned here", t.Context(),
			&noTunnelError{last: fmt.Errorf("connect: %w", &pinError{peer: "server", fp: &Fingerprint{1}}), waited: waited},
			verdict.TunnelPinRefused, "is not pinned"},
		{"server refused this certificate", t.Context(),
			&noTunnelError{last: &quic.TransportError{Remote: true, ErrorCode: 0x100 + alertBadCertificate}, waited: waited},
			verdict.TunnelPinRefused, "bad_certificate"},
		{"another TLS alert from the server", t.Context(),
			&noTunnelError{last: &quic.TransportError{Remote: true, ErrorCode: 0x100 + 120}, waited: waited},
			verdict.TunnelDown, "tls: no application protocol"},
		{"stream limit", t.Context(), &noTunnelError{last: context.DeadlineExceeded, waited: waited, streamLimit: true}, verdict.TunnelBusy, "stream limit"},
		{"another error", t.Context(), errors.New("boom"), verdict.TunnelDown, "boom"},
	}
	for _, c := range cases {
		o := cs.openFailure(c.ctx, c.err)
		if o.failure != c.want || !strings.HasPrefix(o.detail, string(c.want)+": ") || !strings.Contains(o.detail, c.says) {
			t.Errorf("%s: %q %q, want %q saying %q", c.name, o.failure, o.detail, c.want, c.says)
		}
	}
}
