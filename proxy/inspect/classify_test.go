package inspect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/proxy"
)

// dialErr is a dial error as net.Dialer returns it for a failed connect(2).
func dialErr(errno syscall.Errno) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 1313},
		Err: os.NewSyscallError("connect", errno)}
}

// timeoutErr is a net.Error that says it timed out, as a dial with a
// Dialer.Timeout fails.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestDialVerdict: each dial error the relay and the probe can get is named
// by the classifier, from the error value (not its text).
func TestDialVerdict(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		want   failure.Mode
		detail string // a substring of the detail
	}{
		{name: "no route to host", err: dialErr(syscall.EHOSTUNREACH), want: failure.UpstreamUnreachable, detail: "no route to host"},
		{name: "network unreachable", err: dialErr(syscall.ENETUNREACH), want: failure.UpstreamUnreachable, detail: "network is unreachable"},
		{name: "host down", err: dialErr(syscall.EHOSTDOWN), want: failure.UpstreamUnreachable, detail: "host is down"},
		{name: "no route, wrapped again", err: fmt.Errorf("dialing upstream: %w", dialErr(syscall.EHOSTUNREACH)), want: failure.UpstreamUnreachable},
		{name: "refused", err: dialErr(syscall.ECONNREFUSED), want: failure.UpstreamRefused, detail: "nothing listens"},
		{name: "connect timed out", err: dialErr(syscall.ETIMEDOUT), want: failure.UpstreamDialTimeout},
		{name: "context deadline", err: &net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}, want: failure.UpstreamDialTimeout},
		{name: "dialer timeout", err: &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}, want: failure.UpstreamDialTimeout},
		{name: "name does not resolve", err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "c.invalid", IsNotFound: true}},
			want: failure.UpstreamDNSFailure, detail: `"c.invalid"`},
		{name: "resolver timed out", err: &net.DNSError{Err: "i/o timeout", Name: "c.example", IsTimeout: true}, want: failure.UpstreamDNSFailure, detail: "timed out"},
		{name: "another error", err: errors.New("socket: too many open files"), want: failure.UpstreamRefused},
		{name: "out of descriptors", err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)},
			want: failure.RelayResourceExhausted, detail: "too many open files"},
		{name: "host out of descriptors", err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.ENFILE)},
			want: failure.RelayResourceExhausted, detail: "nothing is known about the upstream"},
		{name: "out of local ports", err: dialErr(syscall.EADDRNOTAVAIL), want: failure.RelayResourceExhausted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Classifier
			c.Dialed(tc.err)
			v := c.Verdict()
			if v.Mode != tc.want {
				t.Fatalf("Verdict() = %s (%s), want %s", v.Mode, v.Detail, tc.want)
			}
			if !strings.Contains(v.Detail, tc.detail) {
				t.Errorf("detail %q lacks %q", v.Detail, tc.detail)
			}
			// A plain TCP route names the dial the same way.
			if pv := c.PlainVerdict(0, 0); pv.Mode != tc.want {
				t.Errorf("PlainVerdict() = %s, want %s", pv.Mode, tc.want)
			}
		})
	}
}

// TestUnansweredRequest: a connection the upstream ended under the client's
// request after a finished handshake is upstream_reset once the client (the
// probe, the only one who can tell) says its request went unanswered; the
// same bytes without that are an ordinary finished connection.
func TestUnansweredRequest(t *testing.T) {
	finished := func() *Classifier {
		c := &Classifier{}
		now := time.Now()
		c.Dialed(nil)
		c.Data(ClientToServer, 300, now)
		c.Observe(Event{Dir: ClientToServer, Kind: KindClientHello, ClientHello: &ClientHello{}}, now)
		c.Data(ServerToClient, 2000, now)
		c.Observe(Event{Dir: ServerToClient, Kind: KindServerHello, ServerHello: &ServerHello{Version: 0x0304}}, now)
		c.Observe(Event{Dir: ServerToClient, Kind: KindApplicationData, Record: RecordHeader{Type: 23, Length: 1500}}, now)
		// The client's Finished, then its request.
		c.Observe(Event{Dir: ClientToServer, Kind: KindApplicationData, Record: RecordHeader{Type: 23, Length: 53}}, now)
		c.Observe(Event{Dir: ClientToServer, Kind: KindApplicationData, Record: RecordHeader{Type: 23, Length: 120}}, now)
		c.Ended(ClientToServer, io.EOF, now.Add(time.Second))
		return c
	}
	if v := finished().Verdict(); v.Mode != failure.OK {
		t.Fatalf("without Unanswered: %s (%s), want ok", v.Mode, v.Detail)
	}
	for _, tc := range []struct {
		end    error
		detail string
	}{
		{io.EOF, "The upstream ended the connection (FIN) during GetManifests, before it answered."},
		{syscall.ECONNRESET, "The upstream ended the connection (connection reset by peer) during GetManifests, before it answered."},
	} {
		c := finished()
		c.Unanswered("GetManifests", tc.end)
		if v := c.Verdict(); v.Mode != failure.UpstreamReset || v.Detail != tc.detail {
			t.Errorf("Unanswered(%v): %s (%q), want %s (%q)", tc.end, v.Mode, v.Detail, failure.UpstreamReset, tc.detail)
		}
	}
	// Before the handshake finished, the handshake's own verdict stands.
	c := &Classifier{}
	c.Dialed(nil)
	c.Unanswered("GetManifests", io.EOF)
	if v := c.Verdict(); v.Mode == failure.UpstreamReset {
		t.Errorf("no handshake: %s", v.Mode)
	}
}

// TestHelloTimeout: a client the relay reset because no complete
// ClientHello came within the ClientHello timeout is client_aborted, and
// the detail says so, with the timeout and what the client did send.
func TestHelloTimeout(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sent   int
		detail string
	}{
		{"nothing sent", 0, "No ClientHello came in time: the client sent no byte within the ClientHello timeout (10s)"},
		{"part of a ClientHello", 9, "No ClientHello came in time: the client sent 9 bytes but no complete ClientHello within the ClientHello timeout (10s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Classifier{}
			now := time.Now()
			c.Dialed(nil)
			if tc.sent > 0 {
				c.Data(ClientToServer, tc.sent, now)
			}
			c.Ended(ClientToServer, &proxy.HelloTimeoutError{Timeout: 10 * time.Second}, now.Add(10*time.Second))
			// The relay's reset of the upstream ends the other direction.
			c.Ended(ServerToClient, net.ErrClosed, now.Add(10*time.Second))
			v := c.Verdict()
			if v.Mode != failure.ClientAborted || !strings.HasPrefix(v.Detail, tc.detail) {
				t.Errorf("Verdict() = %s (%q), want %s starting %q", v.Mode, v.Detail, failure.ClientAborted, tc.detail)
			}
		})
	}
}
