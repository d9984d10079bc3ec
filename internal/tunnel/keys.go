package tunnel

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Fingerprint identifies a tunnel peer: the SHA-256 of its certificate's
// DER encoding. Peers pin each other's fingerprints; no CA is involved.
type Fingerprint [sha256.Size]byte

// FingerprintOf returns the fingerprint of a DER certificate.
func FingerprintOf(der []byte) Fingerprint { return sha256.Sum256(der) }

// String is the lower-case hex form that keygen prints and flags take.
func (f Fingerprint) String() string { return hex.EncodeToString(f[:]) }

// ParseFingerprint reads a fingerprint as 64 hex digits, upper or lower
// case, optionally prefixed "sha256:" and optionally colon-separated
// (the form `openssl x509 -fingerprint -sha256` prints).
func ParseFingerprint(s string) (Fingerprint, error) {
	var f Fingerprint
	t := strings.TrimSpace(s)
	if len(t) >= 7 && strings.EqualFold(t[:7], "sha256:") {
		t = t[7:]
	}
	if len(t) > 3*len(f) {
		return f, fmt.Errorf("fingerprint %.80q: want 64 hex digits (SHA-256 of the certificate)", s)
	}
	t = strings.ReplaceAll(t, ":", "")
	if len(t) != 2*len(f) {
		return f, fmt.Errorf("fingerprint %q: want 64 hex digits (SHA-256 of the certificate), got %d", s, len(t))
	}
	if _, err := hex.Decode(f[:], []byte(t)); err != nil {
		return f, fmt.Errorf("fingerprint %q: %w", s, err)
	}
	return f, nil
}

// Certificate and key file names in the directory keygen writes.
const (
	CertFile = "tunnel.crt"
	KeyFile  = "tunnel.key"
)

// certValidity is long because the certificate's validity is never
// checked: a pinned fingerprint is the identity, and rotating means
// pinning a new one.
const certValidity = 10 * 365 * 24 * time.Hour

// GenerateKeyPair makes an ECDSA P-256 key and a self-signed certificate
// for it, both PEM encoded (the key as PKCS #8).
func GenerateKeyPair(commonName string) (certPEM, keyPEM []byte, fp Fingerprint, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fp, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fp, fmt.Errorf("generate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fp, fmt.Errorf("create certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fp, fmt.Errorf("encode key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	return certPEM, keyPEM, FingerprintOf(der), nil
}

// WriteKeyPair generates a key pair into dir (created if needed) as
// CertFile (0644) and KeyFile (0600) and returns the certificate's
// fingerprint. Existing files are kept unless overwrite is set.
func WriteKeyPair(dir, commonName string, overwrite bool) (certPath, keyPath string, fp Fingerprint, err error) {
	certPath, keyPath = filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	if !overwrite {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Stat(p); err == nil {
				return "", "", fp, fmt.Errorf("%s exists: %w", p, os.ErrExist)
			}
		}
	}
	certPEM, keyPEM, fp, err := GenerateKeyPair(commonName)
	if err != nil {
		return "", "", fp, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fp, fmt.Errorf("create %s: %w", dir, err)
	}
	// The key first, and through a temporary file, so a crash never
	// leaves a certificate whose key is missing or half written.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return "", "", fp, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return "", "", fp, err
	}
	return certPath, keyPath, fp, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// LoadKeyPair reads a PEM certificate and key and returns them with the
// certificate's fingerprint (what the peer must pin).
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, Fingerprint, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, Fingerprint{}, fmt.Errorf("load key pair %s, %s: %w", certFile, keyFile, err)
	}
	return cert, FingerprintOf(cert.Certificate[0]), nil
}

// CertificateFingerprint reads a certificate (PEM or DER) and returns its
// fingerprint; with PEM, the first CERTIFICATE block counts.
func CertificateFingerprint(data []byte) (Fingerprint, error) {
	der := data
	if blk, _ := pem.Decode(data); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return Fingerprint{}, fmt.Errorf("PEM block %q is not a CERTIFICATE", blk.Type)
		}
		der = blk.Bytes
	}
	if _, err := x509.ParseCertificate(der); err != nil {
		return Fingerprint{}, fmt.Errorf("parse certificate: %w", err)
	}
	return FingerprintOf(der), nil
}

// pinned returns a tls.Config.VerifyConnection that accepts exactly the
// peers whose certificate fingerprint is in pins. It runs on every
// handshake, including resumed ones, after the peer proved it holds the
// certificate's key (TLS 1.3 CertificateVerify).
func pinned(pins []Fingerprint, peer string) func(tls.ConnectionState) error {
	pins = slices.Clone(pins)
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &pinError{peer: peer}
		}
		fp := FingerprintOf(cs.PeerCertificates[0].Raw)
		if slices.Contains(pins, fp) {
			return nil
		}
		return &pinError{peer: peer, fp: &fp}
	}
}

// pinError is this side's pin check refusing the peer in the handshake;
// crypto/tls and quic-go keep it in the error chain of a failed dial.
type pinError struct {
	peer string       // "server" or "client"
	fp   *Fingerprint // nil: the peer presented no certificate
}

func (e *pinError) Error() string {
	if e.fp == nil {
		return fmt.Sprintf("the %s presented no certificate", e.peer)
	}
	return fmt.Sprintf("the %s's certificate fingerprint %s is not pinned", e.peer, *e.fp)
}

// serverTLS is the tunnel server's TLS: mutual, pinned, TLS 1.3 only.
// Refused clients are logged to log: quic-go drops the failed handshake
// silently, and the operator of the server wants to know who knocked.
func serverTLS(cert tls.Certificate, pins []Fingerprint, log *slog.Logger) (*tls.Config, error) {
	if len(pins) == 0 {
		return nil, errors.New("no peer fingerprints pinned: every client would be refused")
	}
	if len(cert.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	check := pinned(pins, "client")
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		// Any certificate is requested; VerifyConnection decides. Chains
		// and CAs mean nothing between two pinned self-signed keys.
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			err := check(cs)
			if err != nil {
				log.Warn("refused a tunnel client in the TLS handshake", "err", err)
			}
			return err
		},
		NextProtos: []string{ALPN},
		MinVersion: tls.VersionTLS13,
		// Tickets would only save a round trip per reconnect; without them
		// every connection shows its certificate afresh.
		SessionTicketsDisabled: true,
	}, nil
}

// clientTLS is the local side's TLS: it presents cert and accepts only a
// server whose certificate is pinned.
func clientTLS(cert tls.Certificate, pins []Fingerprint, serverName string) (*tls.Config, error) {
	if len(pins) == 0 {
		return nil, errors.New("no server fingerprint pinned: the server could not be authenticated")
	}
	if len(cert.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		// The pin check in VerifyConnection replaces chain verification
		// (it still runs with InsecureSkipVerify).
		InsecureSkipVerify: true,
		VerifyConnection:   pinned(pins, "server"),
		NextProtos:         []string{ALPN},
		MinVersion:         tls.VersionTLS13,
		ServerName:         serverName,
	}, nil
}
