package atls

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"math/big"
	"time"
)

// CertificateMargin is how far before and after its issue time the aTLS
// certificate is valid. A client whose clock differs from the server's by more
// than this rejects the certificate.
const CertificateMargin = 2 * time.Hour

// CommonName is the subject CN of every aTLS certificate.
const CommonName = "Contrast"

// Issuer produces the attestation document for one handshake. reportData is
// ReportData(SPKI of the certificate key, client nonce); the issuer must bind
// it into the evidence. The returned oid names the certificate extension that
// carries value. A nil oid with a nil error means "no attestation": the
// certificate then carries no extension at all, like Contrast's NoIssuer.
// An error aborts the handshake with an internal_error alert.
type Issuer interface {
	Issue(ctx context.Context, reportData [64]byte) (oid asn1.ObjectIdentifier, value []byte, err error)
}

// IssuerFunc adapts a function to Issuer.
type IssuerFunc func(ctx context.Context, reportData [64]byte) (asn1.ObjectIdentifier, []byte, error)

// Issue calls f.
func (f IssuerFunc) Issue(ctx context.Context, reportData [64]byte) (asn1.ObjectIdentifier, []byte, error) {
	return f(ctx, reportData)
}

// ServerOptions tune ServerConfig. The zero value is a current Coordinator.
type ServerOptions struct {
	// SNIOnly makes the server read the client nonce only from the SNI, as
	// Coordinators did before the ALPN nonce existed (see NonceFromSNI).
	SNIOnly bool
	// Now is the server's clock for the certificate validity; nil means
	// time.Now. Simulations shift it to reproduce clock skew.
	Now func() time.Time
	// Key is the server's certificate key; nil means a fresh P-256 key. One
	// key serves all connections, as in Contrast.
	Key *ecdsa.PrivateKey
}

// ServerConfig returns the TLS configuration of an aTLS server (Contrast's
// CreateAttestationServerTLSConfig without mutual attestation). For every
// connection it
//   - reads the client nonce from the ClientHello (NonceFromHello, or
//     NonceFromSNI with SNIOnly),
//   - asks issuer for evidence over ReportData(SPKI, nonce) and self-signs a
//     certificate (CN "Contrast", random serial, valid now±CertificateMargin)
//     with that evidence as its only, non-critical extension,
//   - requests (but does not require) a client certificate, naming as the only
//     acceptable CA a subject whose CN is base64 of a fresh server nonce,
//   - offers h2 as ALPN.
//
// Nonce and issuer errors are returned from GetCertificate, so Go's TLS server
// answers the ClientHello with a plaintext internal_error alert, exactly as the
// Coordinator does.
func ServerConfig(issuer Issuer, opts ServerOptions) (*tls.Config, error) {
	if issuer == nil {
		return nil, fmt.Errorf("atls server: issuer must not be nil")
	}
	key := opts.Key
	if key == nil {
		var err error
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, fmt.Errorf("atls server: generating key: %w", err)
		}
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("atls server: marshaling public key: %w", err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	s := &server{issuer: issuer, key: key, spki: spki, now: now, sniOnly: opts.SNIOnly}
	return &tls.Config{GetConfigForClient: s.configForClient}, nil
}

type server struct {
	issuer  Issuer
	key     *ecdsa.PrivateKey
	spki    []byte
	now     func() time.Time
	sniOnly bool
}

// configForClient runs once per connection, so every connection gets its own
// server nonce.
func (s *server) configForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	serverNonce, err := NewNonce()
	if err != nil {
		return nil, err
	}
	pool, err := nonceCertPool(serverNonce, s.key)
	if err != nil {
		return nil, fmt.Errorf("encode nonce: %w", err)
	}
	return &tls.Config{
		GetCertificate: s.certificate,
		MinVersion:     tls.VersionTLS12,
		ClientAuth:     tls.RequestClientCert,
		ClientCAs:      pool,
		NextProtos:     []string{"h2"},
	}, nil
}

func (s *server) certificate(chi *tls.ClientHelloInfo) (*tls.Certificate, error) {
	var nonce []byte
	var err error
	if s.sniOnly {
		nonce, err = NonceFromSNI(chi.ServerName)
	} else {
		nonce, _, err = NonceFromHello(chi.ServerName, chi.SupportedProtos)
	}
	if err != nil {
		return nil, err
	}
	oid, value, err := s.issuer.Issue(chi.Context(), ReportData(s.spki, nonce))
	if err != nil {
		return nil, err
	}
	var exts []pkix.Extension
	if oid != nil {
		exts = []pkix.Extension{{Id: oid, Value: value}}
	}
	return selfSigned(s.key, s.now(), exts)
}

// selfSigned builds the aTLS certificate for key, issued at now.
func selfSigned(key crypto.Signer, now time.Time, exts []pkix.Extension) (*tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: CommonName},
		NotBefore:       now.Add(-CertificateMargin),
		NotAfter:        now.Add(CertificateMargin),
		ExtraExtensions: exts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// nonceCertPool returns a pool holding one certificate whose subject CN is the
// base64 nonce: Go's TLS server lists the pool's subjects as the acceptable CAs
// of its CertificateRequest, which is how Contrast transmits the server nonce.
func nonceCertPool(nonce []byte, key *ecdsa.PrivateKey) (*x509.CertPool, error) {
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int),
		Subject:      pkix.Name{CommonName: base64.StdEncoding.EncodeToString(nonce)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool, nil
}
