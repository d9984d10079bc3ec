package contrastcli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc/credentials"

	"github.com/ccproxy-dev/ccproxy/internal/atls"
)

// creds are the CLI's gRPC transport credentials (Contrast's atlscredentials
// on the client side): a fresh nonce and TLS configuration per connection,
// then the handshake the way grpc-go's TLS credentials did when Contrast
// shipped the SNI nonce — the SNI comes from the dial authority only when
// the configuration has none, which keeps the base64 nonce of NonceSNI.
type creds struct {
	style      atls.NonceStyle
	validators []validator
	// coordinatorHashes: the newest CLI's post-validation policy check.
	coordinatorHashes [][]byte
	maxTLS12          bool

	mu       sync.Mutex
	attempts []Attempt
}

// Attempt is what one handshake of the client saw.
type Attempt struct {
	// Nonce is the client nonce sent in the ClientHello.
	Nonce []byte
	// Certificate is the server certificate, if one arrived.
	Certificate *x509.Certificate
	// TLSVersion is the negotiated version, if the handshake finished.
	TLSVersion uint16
	// Err is the handshake error, nil on success.
	Err error
}

func (c *creds) ClientHandshake(ctx context.Context, authority string, rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nonce, err := atls.NewNonce()
	if err != nil {
		return nil, nil, err
	}
	serverName, _, err := net.SplitHostPort(authority)
	if err != nil {
		serverName = authority
	}
	attempt := Attempt{Nonce: nonce}
	cfg := atls.ClientConfig(nonce, c.style, serverName, func(cert *x509.Certificate) error {
		attempt.Certificate = cert
		if len(c.validators) == 0 {
			return nil
		}
		return verifyEmbeddedReport(ctx, c.validators, cert, nonce, c.coordinatorHashes)
	})
	if c.maxTLS12 {
		cfg.MaxVersion = tls.VersionTLS12
	}
	conn := tls.Client(rawConn, cfg)
	err = conn.HandshakeContext(ctx)
	if err == nil && conn.ConnectionState().NegotiatedProtocol == "" {
		err = errors.New("credentials: cannot check peer: missing selected ALPN property")
	}
	if err != nil {
		conn.Close()
		attempt.Err = err
		c.record(attempt)
		return nil, nil, err
	}
	state := conn.ConnectionState()
	attempt.TLSVersion = state.Version
	c.record(attempt)
	return conn, credentials.TLSInfo{
		State:          state,
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}, nil
}

func (c *creds) record(a Attempt) {
	c.mu.Lock()
	c.attempts = append(c.attempts, a)
	c.mu.Unlock()
}

// Attempts returns every handshake so far, oldest first.
func (c *creds) Attempts() []Attempt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Attempt(nil), c.attempts...)
}

func (c *creds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("contrastcli: client credentials cannot serve")
}

func (c *creds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

// Clone shares the attempt log on purpose: gRPC clones credentials per
// channel, and Verify wants every handshake of its channel.
func (c *creds) Clone() credentials.TransportCredentials { return c }

func (c *creds) OverrideServerName(string) error {
	return fmt.Errorf("cannot override server name")
}
