// Package wire is the benchmark's protocol between the load generator and
// the upstream server, and the TLS configurations both sides use.
//
// A benchmark connection starts as a Contrast CLI connection does: a TLS 1.3
// handshake whose ClientHello carries a fresh nonce in an `atls:v1:nonce:`
// ALPN entry, so a relay in the middle inspects a real handshake. Then the
// client sends fixed-size messages over TLS and the server answers each with
// the wall-clock time the connection's first byte reached it. A message with
// OpRaw ends the TLS phase: both sides continue on the plain TCP connection
// underneath, so bulk transfers measure the relay and not AES-GCM.
//
//	srvCfg, _ := wire.ServerTLSConfig()
//	tc := tls.Client(conn, wire.ClientTLSConfig(nonce))
//	wire.Write(tc, wire.Msg{Op: wire.OpTLS})
//	reply, _ := wire.Read(tc)
package wire

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"time"
)

// MsgSize is the size of every protocol message, in the TLS phase and as a
// raw-phase header.
const MsgSize = 16

// Op says what a message asks of the server.
type Op byte

const (
	// OpTLS (TLS phase): answer with the first-byte arrival time.
	OpTLS Op = 'T'
	// OpRaw (TLS phase): answer, then continue on raw TCP.
	OpRaw Op = 'R'
	// OpUpload (raw): Arg bytes follow; the server reads them all and
	// answers with an OpUpload message whose Arg is the count it read.
	OpUpload Op = 'U'
	// OpDownload (raw): the server sends Arg bytes.
	OpDownload Op = 'D'
	// OpEcho (raw): the server echoes every byte until EOF.
	OpEcho Op = 'E'
	// OpHold (raw): the server answers with one byte and waits for EOF.
	OpHold Op = 'H'
)

// Msg is one protocol message: an operation and its argument (a byte
// count, or a Unix time in nanoseconds in the server's TLS-phase answers).
type Msg struct {
	Op  Op
	Arg int64
}

// Marshal encodes m as op, seven zero bytes, Arg big-endian.
func (m Msg) Marshal() [MsgSize]byte {
	var b [MsgSize]byte
	b[0] = byte(m.Op)
	binary.BigEndian.PutUint64(b[8:], uint64(m.Arg))
	return b
}

// Parse decodes a message the peer sent. It rejects unknown operations,
// non-zero reserved bytes and negative arguments, so a stray byte stream is
// an error and not a huge transfer.
func Parse(b []byte) (Msg, error) {
	if len(b) != MsgSize {
		return Msg{}, fmt.Errorf("message is %d bytes, want %d", len(b), MsgSize)
	}
	m := Msg{Op: Op(b[0]), Arg: int64(binary.BigEndian.Uint64(b[8:]))}
	switch m.Op {
	case OpTLS, OpRaw, OpUpload, OpDownload, OpEcho, OpHold:
	default:
		return Msg{}, fmt.Errorf("unknown operation %q", b[0])
	}
	for i, c := range b[1:8] {
		if c != 0 {
			return Msg{}, fmt.Errorf("reserved byte %d is %#x, want 0", i+1, c)
		}
	}
	if m.Arg < 0 {
		return Msg{}, fmt.Errorf("argument %d is negative", m.Arg)
	}
	return m, nil
}

// Write sends m on w.
func Write(w io.Writer, m Msg) error {
	b := m.Marshal()
	_, err := w.Write(b[:])
	return err
}

// Read reads and parses one message from r.
func Read(r io.Reader) (Msg, error) {
	var b [MsgSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Msg{}, err
	}
	return Parse(b[:])
}

// ServerTLSConfig returns a TLS 1.3-only server configuration with a fresh
// self-signed ECDSA P-256 certificate shaped like a Coordinator's (subject CN
// Contrast, valid now-2h … now+2h). Session tickets are off so the server
// sends nothing the client did not ask for: the switch to raw TCP must find
// no TLS record in flight.
func ServerTLSConfig() (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating server key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "Contrast"},
		NotBefore:    now.Add(-2 * time.Hour),
		NotAfter:     now.Add(2 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-signing server certificate: %w", err)
	}
	return &tls.Config{
		Certificates:           []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:             tls.VersionTLS13,
		NextProtos:             []string{"h2"},
		SessionTicketsDisabled: true,
	}, nil
}

// ClientTLSConfig returns the client configuration for one connection: the
// nonce goes in an `atls:v1:nonce:<hex>` ALPN entry before h2, as newer
// Contrast CLIs send it. The server certificate is not verified (the
// benchmark measures transport, not attestation).
func ClientTLSConfig(nonce []byte) *tls.Config {
	return &tls.Config{
		ServerName:         "localhost",
		InsecureSkipVerify: true, //nolint:gosec // benchmark peer with a throwaway certificate
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{"atls:v1:nonce:" + hex.EncodeToString(nonce), "h2"},
	}
}
