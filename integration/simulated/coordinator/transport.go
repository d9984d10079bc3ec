package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc/credentials"
)

// faultConn is an accepted connection tagged with the fault it was accepted
// under, so one connection sees one fault even if SetFault runs meanwhile.
type faultConn struct {
	net.Conn
	fault Fault
}

// connQueue is the listener gRPC serves: Serve's accept loop pushes the
// connections that reach TLS into it.
type connQueue struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{ch: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

func (q *connQueue) push(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// serverCreds are the Coordinator's gRPC transport credentials (Contrast's
// atlscredentials on the server side): an aTLS handshake bounded by the
// handshake timeout, with the connection's fault in the handshake context.
type serverCreds struct {
	c *Coordinator
	// ctx is Serve's context: stopping Serve aborts handshakes in flight
	// (gRPC's Stop waits for them).
	ctx context.Context
}

func (s *serverCreds) ServerHandshake(rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	f := FaultNone
	if fc, ok := rawConn.(*faultConn); ok {
		f = fc.fault
	}
	ctx, cancel := context.WithTimeout(withFault(s.ctx, f), s.c.handshakeTimeout)
	defer cancel()
	conn := tls.Server(rawConn, s.c.tlsConfig)
	if err := conn.HandshakeContext(ctx); err != nil {
		// Contrast logs this at debug: readiness probes cause EOFs all the time.
		s.c.log.Debug("handshake error", "fault", f.String(), "peer", rawConn.RemoteAddr().String(), "error", err)
		rawConn.Close()
		return nil, nil, fmt.Errorf("handshake error: %w", err)
	}
	if f == FaultResetAfterHandshake {
		resetConn(rawConn)
		return nil, nil, errors.New("handshake done, connection reset (fault reset_after_handshake)")
	}
	return conn, credentials.TLSInfo{
		State:          conn.ConnectionState(),
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}, nil
}

func (s *serverCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("coordinator: server credentials cannot dial")
}

func (s *serverCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (s *serverCreds) Clone() credentials.TransportCredentials {
	return &serverCreds{c: s.c, ctx: s.ctx}
}

func (s *serverCreds) OverrideServerName(string) error {
	return errors.New("cannot override server name")
}
