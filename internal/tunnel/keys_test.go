package tunnel

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFingerprint(t *testing.T) {
	want := Fingerprint{0xab, 0xcd}
	hexs := want.String()
	colons := strings.ToUpper(hexs[0:2])
	for i := 2; i < len(hexs); i += 2 {
		colons += ":" + strings.ToUpper(hexs[i:i+2])
	}
	for _, in := range []string{hexs, strings.ToUpper(hexs), "sha256:" + hexs, "SHA256:" + colons, "  " + hexs + "\n", colons} {
		got, err := ParseFingerprint(in)
		if err != nil {
			t.Errorf("ParseFingerprint(%q): %v", in, err)
			continue
		}
		if got != want {
			t.Errorf("ParseFingerprint(%q) = %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"", "abcd", hexs + "00", hexs[:63] + "g", "sha1:" + hexs, strings.Repeat(":", 200)} {
		if _, err := ParseFingerprint(bad); err == nil {
			t.Errorf("ParseFingerprint(%q) accepted", bad)
		}
	}
}

func TestWriteAndLoadKeyPair(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	certPath, keyPath, fp, err := WriteKeyPair(dir, "laptop", false)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(keyPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	cert, loaded, err := LoadKeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if loaded != fp {
		t.Errorf("LoadKeyPair fingerprint %s, WriteKeyPair said %s", loaded, fp)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if leaf.Subject.CommonName != "laptop" || leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) != nil {
		t.Errorf("certificate is not self-signed for CN laptop: %s", leaf.Subject)
	}
	pemBytes, _ := os.ReadFile(certPath)
	if got, err := CertificateFingerprint(pemBytes); err != nil || got != fp {
		t.Errorf("CertificateFingerprint(PEM) = %s, %v; want %s", got, err, fp)
	}
	if got, err := CertificateFingerprint(cert.Certificate[0]); err != nil || got != fp {
		t.Errorf("CertificateFingerprint(DER) = %s, %v; want %s", got, err, fp)
	}
	keyPEM, _ := os.ReadFile(keyPath)
	if _, err := CertificateFingerprint(keyPEM); err == nil {
		t.Error("CertificateFingerprint accepted a key")
	}

	// A second keygen into the same directory keeps the first pair.
	if _, _, _, err := WriteKeyPair(dir, "laptop", false); !errors.Is(err, os.ErrExist) {
		t.Errorf("second WriteKeyPair: err = %v, want ErrExist", err)
	}
	_, _, fp2, err := WriteKeyPair(dir, "laptop", true)
	if err != nil || fp2 == fp {
		t.Errorf("WriteKeyPair with overwrite: %v, same fingerprint %v", err, fp2 == fp)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestPinned(t *testing.T) {
	a, b := testCert(t, "a"), testCert(t, "b")
	leafA, _ := x509.ParseCertificate(a.Certificate[0])
	leafB, _ := x509.ParseCertificate(b.Certificate[0])
	check := pinned([]Fingerprint{FingerprintOf(a.Certificate[0])}, "client")
	if err := check(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leafA}}); err != nil {
		t.Errorf("pinned certificate refused: %v", err)
	}
	err := check(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leafB}})
	if err == nil || !strings.Contains(err.Error(), FingerprintOf(b.Certificate[0]).String()) {
		t.Errorf("unpinned certificate: err = %v, want one naming its fingerprint", err)
	}
	if err := check(tls.ConnectionState{}); err == nil {
		t.Error("no certificate accepted")
	}
	if _, err := serverTLS(a, nil, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("serverTLS without pins accepted")
	}
	if _, err := clientTLS(a, nil, "x"); err == nil {
		t.Error("clientTLS without pins accepted")
	}
}

// testCert makes an in-memory key pair.
func testCert(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, _, err := GenerateKeyPair(cn)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func FuzzParseFingerprint(f *testing.F) {
	f.Add(Fingerprint{1}.String())
	f.Add("sha256:AB:CD")
	f.Add(strings.Repeat(":", 100))
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := ParseFingerprint(s)
		if err != nil {
			return
		}
		again, err := ParseFingerprint(fp.String())
		if err != nil || again != fp {
			t.Fatalf("canonical form %s does not parse back: %v", fp, err)
		}
	})
}

func FuzzCertificateFingerprint(f *testing.F) {
	certPEM, _, _, err := GenerateKeyPair("seed")
	if err != nil {
		f.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	f.Add(certPEM)
	f.Add(blk.Bytes)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fp, err := CertificateFingerprint(b)
		if err != nil {
			return
		}
		if blk, _ := pem.Decode(b); blk == nil && fp != FingerprintOf(b) {
			t.Fatalf("DER fingerprint %s is not the SHA-256 of the input", fp)
		}
	})
}
