package inspect

import (
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
	"sync"
	"testing"
	"time"
)

// This file records real crypto/tls handshakes on loopback, so the parser is
// tested against the bytes Go's TLS stack (the Contrast CLI's and
// Coordinator's) actually sends.

// chunk is one read or write of the client, in the order the client saw them.
type chunk struct {
	dir Direction
	b   []byte
}

// capture is a recorded connection.
type capture struct {
	chunks    []chunk
	state     tls.ConnectionState // the client's view, when its handshake succeeded
	clientErr error               // the client's handshake error, if any
}

// stream returns all bytes of one direction.
func (c *capture) stream(dir Direction) []byte {
	var out []byte
	for _, ch := range c.chunks {
		if ch.dir == dir {
			out = append(out, ch.b...)
		}
	}
	return out
}

// recordingConn records what the client writes (client→server) and reads
// (server→client). Recording at the client gives the causal order: the
// client's answer always comes after the server bytes it answers.
type recordingConn struct {
	net.Conn
	mu     *sync.Mutex
	chunks *[]chunk
}

func (c recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.add(ServerToClient, b[:n])
	return n, err
}

func (c recordingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.add(ClientToServer, b[:n])
	return n, err
}

func (c recordingConn) add(dir Direction, b []byte) {
	if len(b) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	*c.chunks = append(*c.chunks, chunk{dir: dir, b: append([]byte(nil), b...)})
}

// runHandshake runs one TLS connection on loopback: handshake, then on
// success the client sends "ping" and the server answers "pong".
func runHandshake(t *testing.T, serverCfg, clientCfg *tls.Config) *capture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverDone := make(chan struct{})
	go func() {
		defer close(serverDone)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		srv := tls.Server(conn, serverCfg)
		if err := srv.HandshakeContext(ctx); err != nil {
			return
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(srv, buf); err != nil {
			return
		}
		_, _ = srv.Write([]byte("pong"))
		// Wait for the client to close so that its last bytes are recorded
		// before the server's FIN.
		_, _ = io.Copy(io.Discard, srv)
	}()

	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	var mu sync.Mutex
	c := &capture{}
	cli := tls.Client(recordingConn{Conn: raw, mu: &mu, chunks: &c.chunks}, clientCfg)
	if err := cli.HandshakeContext(ctx); err != nil {
		c.clientErr = err
	} else {
		c.state = cli.ConnectionState()
		if _, err := cli.Write([]byte("ping")); err != nil {
			t.Fatalf("client write: %v", err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(cli, buf); err != nil {
			t.Fatalf("client read: %v", err)
		}
	}
	_ = cli.Close()
	<-serverDone
	mu.Lock()
	defer mu.Unlock()
	return c
}

// oidSNPAttestation is Contrast's SNP attestation-document extension.
var oidSNPAttestation = asn1.ObjectIdentifier{1, 3, 9901, 2, 1}

// testCert makes a self-signed ECDSA P-256 certificate like the Coordinator's
// (CN Contrast, one non-critical attestation extension), or a plain one when
// ext is nil.
func testCert(t *testing.T, cn string, ext []byte) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     time.Now().Add(2 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:         true,
		// BasicConstraintsValid makes IsCA count, so the cert can name a CA.
		BasicConstraintsValid: true,
	}
	if ext != nil {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidSNPAttestation, Value: ext}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// errIssuer stands for a Coordinator whose issuer cannot produce evidence.
var errIssuer = errors.New("issuer: no attestation document")
