package watch_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
)

// recordingConn keeps what was written through it.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	out bytes.Buffer
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.out.Write(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *recordingConn) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

// rejectedTLS12 runs a TLS 1.2 handshake whose client rejects the server's
// certificate and returns what each side sent: the client's hello (and
// alert), the server's flight.
func rejectedTLS12(t *testing.T) (client, server []byte) {
	t.Helper()
	a, b := net.Pipe()
	cc, sc := &recordingConn{Conn: a}, &recordingConn{Conn: b}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MaxVersion: tls.VersionTLS12})
		s.Handshake()
		io.Copy(io.Discard, s)
	}()
	c := tls.Client(cc, clientConfig(tls.VersionTLS12, true))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if c.Handshake() == nil {
		t.Fatal("the client accepted the certificate")
	}
	cc.Close()
	<-done
	return cc.bytes(), sc.bytes()
}

// TestCertificateCheckWaitsForTheHello: the relay observes each chunk after
// forwarding it, so the server's certificate can reach the watcher before
// the client's goroutine has observed the ClientHello that carries the
// nonce. The evidence check must wait for that nonce, not check without
// it: the connection is named by the evidence (bound to the nonce), never
// by how the goroutines happened to run.
func TestCertificateCheckWaitsForTheHello(t *testing.T) {
	clientBytes, serverBytes := rejectedTLS12(t)
	var mu sync.Mutex
	var nonces []string
	check := func(_ context.Context, _, nonce []byte) watch.Evidence {
		mu.Lock()
		nonces = append(nonces, hex.EncodeToString(nonce))
		mu.Unlock()
		if hex.EncodeToString(nonce) != nonceHex {
			return watch.Evidence{Verdict: "unverified"} // as attest does without a nonce
		}
		return watch.Evidence{Verdict: "rejected", Mode: failure.ReportDataMismatch, Detail: "REPORT_DATA is not bound to the nonce"}
	}
	for _, order := range []string{"hello first", "certificate first"} {
		t.Run(order, func(t *testing.T) {
			var got inspect.Verdict
			w := watch.New(watch.Config{CheckCert: check, OnVerdict: func(_ proxy.ConnInfo, v inspect.Verdict) { got = v }})
			info := proxy.ConnInfo{
				Route:    proxy.Route{Listen: "127.0.0.1:1313", Upstream: "coordinator:1313", Inspect: true},
				Client:   &net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 40000},
				Accepted: time.Now(),
			}
			o := w.Observe(context.Background(), info)
			o.Dialed(nil, nil, time.Millisecond)
			now := time.Now()
			hello := func() { o.Data(proxy.ClientToUpstream, clientBytes, now) }
			flight := func() { o.Data(proxy.UpstreamToClient, serverBytes, now) }
			if order == "hello first" {
				hello()
				flight()
			} else {
				flight()
				// The client's goroutine gets to its hello only now.
				time.Sleep(20 * time.Millisecond)
				hello()
			}
			o.Ended(proxy.ClientToUpstream, io.EOF, time.Now())
			o.Ended(proxy.UpstreamToClient, io.EOF, time.Now())
			o.Closed(proxy.Stats{ClientToUpstream: int64(len(clientBytes)), UpstreamToClient: int64(len(serverBytes)), Closed: time.Now()})
			if got.Mode != failure.ReportDataMismatch {
				t.Errorf("named %s (%s), want report_data_mismatch", got.Mode, got.Detail)
			}
		})
	}
	for _, n := range nonces {
		if n != nonceHex {
			t.Errorf("the evidence was checked with nonce %q, want the client's %s", n, nonceHex)
		}
	}
}
