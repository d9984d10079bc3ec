package atls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// NonceStyle says how a client sends its nonce in the ClientHello.
type NonceStyle int

const (
	// NonceALPN is the newer CLI: an `atls:v1:nonce:<hex>` ALPN entry before h2;
	// the SNI is the dial authority.
	NonceALPN NonceStyle = iota
	// NonceSNI is the older CLI: the SNI is the base64 nonce; ALPN is only h2.
	NonceSNI
)

func (s NonceStyle) String() string {
	switch s {
	case NonceALPN:
		return SourceALPN
	case NonceSNI:
		return SourceSNI
	}
	return fmt.Sprintf("NonceStyle(%d)", int(s))
}

// ClientConfig returns the TLS configuration of one aTLS client connection, as
// the Contrast CLI builds it (CreateAttestationClientTLSConfig without an
// issuer). It must be used for one connection only: nonce belongs to it.
//
// The server certificate is checked by the client itself (InsecureSkipVerify):
// it must parse and be a valid self-signed certificate at this host's time —
// a Coordinator clock more than CertificateMargin off fails here with
// "x509: certificate has expired or is not yet valid" — and then verify, if
// not nil, judges its attestation extensions. Errors are wrapped as Contrast
// wraps them ("process certificate: verify certificate: ...").
//
// For NonceALPN, serverName becomes the SNI (empty lets a gRPC transport set
// it from the dial authority); for NonceSNI the SNI is the base64 nonce and
// serverName is ignored. The client answers the CertificateRequest with a
// fresh self-signed certificate without evidence, as the CLI does; it fails
// the handshake if the request does not carry exactly one acceptable CA with a
// base64 nonce CN. MinVersion is TLS 1.2; callers may lower MaxVersion.
func ClientConfig(nonce []byte, style NonceStyle, serverName string, verify func(cert *x509.Certificate) error) *tls.Config {
	cfg := &tls.Config{
		InsecureSkipVerify: true, // replaced by verifyPeer below, as in Contrast
		MinVersion:         tls.VersionTLS12,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			cert, err := processCertificate(rawCerts)
			if err != nil {
				return fmt.Errorf("process certificate: %w", err)
			}
			if verify == nil {
				return nil
			}
			return verify(cert)
		},
		GetClientCertificate: clientCertificate,
	}
	switch style {
	case NonceSNI:
		cfg.ServerName = SNIEntry(nonce)
		cfg.NextProtos = []string{"h2"}
	default:
		cfg.ServerName = serverName
		cfg.NextProtos = []string{ALPNEntry(nonce), "h2"}
	}
	return cfg
}

// processCertificate parses the leaf and checks it is a valid self-signed
// certificate at this host's time (Contrast's processCertificate).
func processCertificate(rawCerts [][]byte) (*x509.Certificate, error) {
	if len(rawCerts) == 0 {
		return nil, errors.New("rawCerts is empty")
	}
	cert, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots}); err != nil {
		return nil, fmt.Errorf("verify certificate: %w", err)
	}
	return cert, nil
}

// clientCertificate answers the server's CertificateRequest like the CLI: a
// fresh P-256 key in a self-signed certificate without evidence. Decoding the
// server nonce first is what Contrast does; without one the handshake fails.
func clientCertificate(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if _, err := ServerNonceFromAcceptableCAs(cri.AcceptableCAs); err != nil {
		return nil, fmt.Errorf("decode nonce: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating client key: %w", err)
	}
	return selfSigned(key, time.Now(), nil)
}

// ServerNonceFromAcceptableCAs decodes the server nonce from the acceptable CAs
// of a CertificateRequest: exactly one DER distinguished name whose CN is the
// base64 nonce (Contrast's decodeNonceFromAcceptableCAs, same error texts).
func ServerNonceFromAcceptableCAs(acceptableCAs [][]byte) ([]byte, error) {
	if len(acceptableCAs) != 1 {
		return nil, errors.New("unexpected acceptableCAs length")
	}
	var rdnSeq pkix.RDNSequence
	if _, err := asn1.Unmarshal(acceptableCAs[0], &rdnSeq); err != nil {
		return nil, fmt.Errorf("unmarshal acceptableCAs: %w", err)
	}
	oidCommonName := asn1.ObjectIdentifier{2, 5, 4, 3}
	for _, rdnSet := range rdnSeq {
		for _, rdn := range rdnSet {
			if !rdn.Type.Equal(oidCommonName) {
				continue
			}
			s, ok := rdn.Value.(string)
			if !ok {
				return nil, errors.New("unexpected RDN type")
			}
			nonce, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, fmt.Errorf("decode nonce: %w", err)
			}
			return nonce, nil
		}
	}
	return nil, errors.New("CN not found")
}
