package attest_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// certWith makes a Coordinator-like self-signed certificate carrying exts.
func certWith(t *testing.T, h handshake, exts ...pkix.Extension) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:    big.NewInt(7),
		Subject:         pkix.Name{CommonName: "Contrast"},
		NotBefore:       now.Add(-attest.CertificateMargin),
		NotAfter:        now.Add(attest.CertificateMargin),
		ExtraExtensions: exts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &h.key.PublicKey, h.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestEveryExtensionTried: like Contrast's verifyEmbeddedReport, every
// attestation extension is tried with every validator for its OID; one that
// passes makes the certificate pass, and otherwise the first failure a
// validator printed names it.
func TestEveryExtensionTried(t *testing.T) {
	a := testAuthority(t)
	h := newHandshake(t)
	_, good := evidenceFor(t, a, attest.PlatformSNP, attesttest.Evidence{ReportData: h.rd})
	_, wrongMeasurement := evidenceFor(t, a, attest.PlatformSNP, attesttest.Evidence{ReportData: h.rd, Measurement: [48]byte{9}})
	_, tdxDoc := evidenceFor(t, a, attest.PlatformTDX, attesttest.Evidence{ReportData: h.rd})
	_, tdxWrongMRSEAM := evidenceFor(t, a, attest.PlatformTDX, attesttest.Evidence{ReportData: h.rd, WrongMRSEAM: true})
	// Go's x509 refuses two extensions with one OID, in the CLI as here:
	// several documents are of different platforms.
	snp := func(doc []byte) pkix.Extension { return pkix.Extension{Id: attest.OIDSNP, Value: doc} }
	tdx := func(doc []byte) pkix.Extension { return pkix.Extension{Id: attest.OIDTDX, Value: doc} }
	insecure := pkix.Extension{Id: attest.OIDInsecure, Value: attesttest.Insecure(attesttest.Evidence{ReportData: h.rd})}
	opts := func(platforms ...string) attest.Options {
		return attest.Options{Offline: true, SNPRoots: a.SNPRootsPEM(), TDXRoots: a.TDXRootsPEM(),
			Reference: mustManifest(t, a.ManifestJSON(platforms...)), Nonce: h.nonce, Now: clock}
	}
	cases := []struct {
		name string
		exts []pkix.Extension
		opts attest.Options
		want failure.Mode
	}{
		{"a failing TDX document, then a good SNP one", []pkix.Extension{tdx(tdxWrongMRSEAM), snp(good)}, opts(), failure.OK},
		{"TDX without validators, then a good SNP document", []pkix.Extension{tdx(tdxDoc), snp(good)}, opts(attest.PlatformSNP), failure.OK},
		{"TDX without validators, then a failing SNP document", []pkix.Extension{tdx(tdxDoc), snp(wrongMeasurement)}, opts(attest.PlatformSNP), failure.MeasurementMismatch},
		{"insecure without validators, then a failing SNP document", []pkix.Extension{insecure, snp(wrongMeasurement)}, opts(attest.PlatformSNP), failure.MeasurementMismatch},
		{"only TDX, no validator for it", []pkix.Extension{tdx(tdxDoc)}, opts(attest.PlatformSNP), failure.NoMatchingValidator},
		{"two failing documents: the first printed names it", []pkix.Extension{tdx(tdxWrongMRSEAM), snp(wrongMeasurement)}, opts(), failure.ReferenceValueMismatch},
		{"two failing documents, other order", []pkix.Extension{snp(wrongMeasurement), tdx(tdxWrongMRSEAM)}, opts(), failure.MeasurementMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := attest.CheckCertificate(context.Background(), certWith(t, h, tc.exts...), tc.opts)
			if res.Mode != tc.want {
				t.Errorf("mode %s (%s), want %s", res.Mode, res.Detail, tc.want)
			}
		})
	}
}

// TestSelfSignedCheckFirst: the CLI's processCertificate runs the x509
// check before it looks for an attestation extension, so a certificate that
// fails it is evidence_invalid even without one (not
// unexpected_certificate).
func TestSelfSignedCheckFirst(t *testing.T) {
	h := newHandshake(t)
	// An unknown critical extension makes x509 verification fail
	// ("unhandled critical extension").
	critical := pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}
	cert := certWith(t, h, critical)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now}); err == nil {
		t.Fatal("test certificate verifies; it must not")
	}
	res := attest.CheckCertificate(context.Background(), cert, attest.Options{Offline: true, Now: clock})
	if res.Mode != failure.EvidenceInvalid {
		t.Errorf("mode %s (%s), want evidence_invalid", res.Mode, res.Detail)
	}
	if res := attest.CheckCertificate(context.Background(), certWith(t, h), attest.Options{Offline: true, Now: clock}); res.Mode != failure.UnexpectedCertificate {
		t.Errorf("no extension, self-signed: mode %s, want unexpected_certificate", res.Mode)
	}
}
