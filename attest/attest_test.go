package attest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// now is the clock every test pins: the fake certificates are valid
// 2000-2099, the real samples' certificates 2022-2029.
var now = time.Date(2025, time.March, 1, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

var (
	authorityOnce sync.Once
	authority     *attesttest.Authority
	authorityErr  error
)

// testAuthority shares one authority between the tests of this package:
// each costs a few RSA-4096 signatures.
func testAuthority(t testing.TB) *attesttest.Authority {
	t.Helper()
	authorityOnce.Do(func() { authority, authorityErr = attesttest.NewAuthority() })
	if authorityErr != nil {
		t.Fatal(authorityErr)
	}
	return authority
}

func mustManifest(t testing.TB, data []byte) *attest.Manifest {
	t.Helper()
	m, err := attest.ParseManifest(data)
	if err != nil {
		t.Fatalf("ParseManifest: %v", err)
	}
	return m
}

// handshake is one simulated aTLS handshake: the Coordinator's key, the
// client's nonce, and the report data that binds them.
type handshake struct {
	key   *ecdsa.PrivateKey
	nonce []byte
	rd    [64]byte
}

func newHandshake(t testing.TB) handshake {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	return handshake{key: key, nonce: nonce, rd: attest.ReportData(spki, nonce)}
}

// evidenceFor signs e for platform with the test authority.
func evidenceFor(t testing.TB, a *attesttest.Authority, platform string, e attesttest.Evidence) (asn1.ObjectIdentifier, []byte) {
	t.Helper()
	var (
		doc []byte
		err error
		oid asn1.ObjectIdentifier
	)
	switch platform {
	case attest.PlatformSNP:
		oid = attest.OIDSNP
		doc, err = a.SNP(e)
	case attest.PlatformTDX:
		oid = attest.OIDTDX
		doc, err = a.TDX(e)
	case attest.PlatformInsecure:
		oid = attest.OIDInsecure
		doc = attesttest.Insecure(e)
	}
	if err != nil {
		t.Fatalf("signing %s evidence: %v", platform, err)
	}
	return oid, doc
}

func certFor(t testing.TB, h handshake, oid asn1.ObjectIdentifier, doc []byte, issued time.Time) *x509.Certificate {
	t.Helper()
	cert, err := attesttest.Certificate(h.key, oid, doc, issued)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

// modeCase is one row of TestCheckCertificateModes: evidence with one field
// off, options changed, and the mode, verdict and detail that names it.
type modeCase struct {
	name       string
	evidence   func(h handshake) attesttest.Evidence
	opts       func(o *attest.Options)
	wantMode   failure.Mode
	wantV      attest.Verdict
	wantDetail []string
}

// TestCheckCertificateModes signs evidence with one field off at a time and
// checks the mode, the verdict and the detail, for both platforms and both
// manifest spellings.
func TestCheckCertificateModes(t *testing.T) {
	a := testAuthority(t)
	defaultPolicy, defaultMeasurement := attesttest.DefaultPolicyHash(), attesttest.DefaultMeasurement()
	otherPolicy := [32]byte{0x3a, 0x01}
	otherMeasurement := [48]byte{0x9f, 0x02}
	spellings := []struct {
		name     string
		manifest func(...string) []byte
	}{
		{"newest", a.ManifestJSON},
		{"legacy", a.LegacyManifestJSON},
	}
	for _, platform := range []string{attest.PlatformSNP, attest.PlatformTDX} {
		policyField, measurementField := "HOST_DATA", "MEASUREMENT"
		if platform == attest.PlatformTDX {
			policyField, measurementField = "MR_CONFIG_ID", "MR_TD"
		}
		for _, sp := range spellings {
			m := mustManifest(t, sp.manifest(platform))
			// Offline, ccproxy cannot fetch Intel's collateral and check
			// revocation as the CLI does: healthy TDX evidence is unverified.
			// SNP evidence carries its ARK-signed CRL, as Contrast's does.
			healthyV := attest.Verified
			if platform == attest.PlatformTDX {
				healthyV = attest.Unverified
			}
			tcbLowMode, tcbLowVerdict := failure.TCBMismatch, attest.Rejected
			tcbLowDetail := "below the minimum"
			if platform == attest.PlatformTDX {
				tcbLowDetail = "TEE_TCB_SVN is 02010300000000000000000000000000; expected at least 03010200000000000000000000000000"
				if sp.name == "newest" {
					// The newest TDX reference values carry no TCB minimum
					// that can be checked offline.
					tcbLowMode, tcbLowVerdict, tcbLowDetail = failure.OK, healthyV, ""
				}
			}
			cases := []modeCase{
				{
					name:     "untouched",
					evidence: func(h handshake) attesttest.Evidence { return attesttest.Evidence{ReportData: h.rd} },
					wantMode: failure.OK, wantV: healthyV,
				},
				{
					name: "bad signature",
					evidence: func(h handshake) attesttest.Evidence {
						return attesttest.Evidence{ReportData: h.rd, BadSignature: true}
					},
					wantMode: failure.EvidenceInvalid, wantV: attest.Rejected,
					wantDetail: []string{"signature does not verify"},
				},
				{
					name:     "untrusted roots",
					evidence: func(h handshake) attesttest.Evidence { return attesttest.Evidence{ReportData: h.rd} },
					opts:     func(o *attest.Options) { o.SNPRoots, o.TDXRoots = nil, nil },
					wantMode: failure.EvidenceInvalid, wantV: attest.Rejected,
					wantDetail: []string{"built-in"},
				},
				{
					name: "report data of another handshake",
					evidence: func(h handshake) attesttest.Evidence {
						return attesttest.Evidence{ReportData: sha512.Sum512([]byte("another handshake"))}
					},
					wantMode: failure.ReportDataMismatch, wantV: attest.Rejected,
					wantDetail: []string{"REPORT_DATA is ", "expected ", "SHA-512(certificate public key || nonce"},
				},
				{
					name: "policy hash",
					evidence: func(h handshake) attesttest.Evidence {
						return attesttest.Evidence{ReportData: h.rd, PolicyHash: otherPolicy}
					},
					wantMode: failure.PolicyHashMismatch, wantV: attest.Rejected,
					wantDetail: []string{fmt.Sprintf("%s (policy hash) is %s; expected %s (from manifest coordinator policy)",
						policyField, hexOf(otherPolicy[:]), hexOf(defaultPolicy[:]))},
				},
				{
					name: "measurement",
					evidence: func(h handshake) attesttest.Evidence {
						return attesttest.Evidence{ReportData: h.rd, Measurement: otherMeasurement}
					},
					wantMode: failure.MeasurementMismatch, wantV: attest.Rejected,
					wantDetail: []string{fmt.Sprintf("%s is %s; expected %s (from manifest %s[0]",
						measurementField, hexOf(otherMeasurement[:]), hexOf(defaultMeasurement[:]), platform)},
				},
				{
					name:     "TCB below minimum",
					evidence: func(h handshake) attesttest.Evidence { return attesttest.Evidence{ReportData: h.rd, TCBLow: true} },
					wantMode: tcbLowMode, wantV: tcbLowVerdict,
					wantDetail: []string{tcbLowDetail},
				},
				{
					name:     "no nonce: report data unchecked",
					evidence: func(h handshake) attesttest.Evidence { return attesttest.Evidence{} },
					opts:     func(o *attest.Options) { o.Nonce = nil },
					wantMode: failure.OK, wantV: healthyV,
				},
				{
					name: "no reference values",
					evidence: func(h handshake) attesttest.Evidence {
						return attesttest.Evidence{ReportData: h.rd, Measurement: otherMeasurement}
					},
					opts:     func(o *attest.Options) { o.Reference = nil },
					wantMode: failure.OK, wantV: attest.Unverified,
				},
				{
					name: "no reference values, bad signature",
					evidence: func(h handshake) attesttest.Evidence {
						return attesttest.Evidence{ReportData: h.rd, BadSignature: true}
					},
					opts:     func(o *attest.Options) { o.Reference = nil },
					wantMode: failure.EvidenceInvalid, wantV: attest.Rejected,
				},
				{
					name: "explicit policy hash overrides the manifest",
					evidence: func(h handshake) attesttest.Evidence {
						return attesttest.Evidence{ReportData: h.rd, PolicyHash: otherPolicy}
					},
					opts:     func(o *attest.Options) { o.PolicyHashes = [][]byte{otherPolicy[:]} },
					wantMode: failure.OK, wantV: healthyV,
				},
				{
					name:     "explicit policy hash mismatch",
					evidence: func(h handshake) attesttest.Evidence { return attesttest.Evidence{ReportData: h.rd} },
					opts:     func(o *attest.Options) { o.PolicyHashes = [][]byte{otherPolicy[:]} },
					wantMode: failure.PolicyHashMismatch, wantV: attest.Rejected,
					wantDetail: []string{"expected " + hexOf(otherPolicy[:]) + " (from configured Coordinator policy hash)"},
				},
			}
			if platform == attest.PlatformSNP {
				chipMode, chipV, chipDetail := failure.ReferenceValueMismatch, attest.Rejected, "not in allowed chip IDs"
				if sp.name == "legacy" {
					// The older layout allows every chip.
					chipMode, chipV, chipDetail = failure.OK, attest.Verified, ""
				}
				cases = append(cases, []modeCase{
					{
						name: "ID key not trusted",
						evidence: func(h handshake) attesttest.Evidence {
							return attesttest.Evidence{ReportData: h.rd, UntrustedIDKey: true}
						},
						wantMode: failure.ReferenceValueMismatch, wantV: attest.Rejected,
						wantDetail: []string{"ID_KEY_DIGEST is ", "the SHA-384 of the ID key Contrast derives from measurement", "guest policy ABI 0.0, SMT", `(CLI: "report ID key not trusted: `},
					},
					{
						name: "no ID block",
						evidence: func(h handshake) attesttest.Evidence {
							return attesttest.Evidence{ReportData: h.rd, NoIDBlock: true}
						},
						wantMode: failure.ReferenceValueMismatch, wantV: attest.Rejected,
						wantDetail: []string{"ID_KEY_DIGEST is " + strings.Repeat("0", 96), "no ID block", "report ID key not trusted: " + strings.Repeat("0", 96)},
					},
					{
						name: "chip not allowed",
						evidence: func(h handshake) attesttest.Evidence {
							return attesttest.Evidence{ReportData: h.rd, OtherChip: true}
						},
						wantMode: chipMode, wantV: chipV, wantDetail: []string{chipDetail},
					},
					{
						name: "vCPU count against an exact measurement",
						evidence: func(h handshake) attesttest.Evidence {
							return attesttest.Evidence{ReportData: h.rd, VCPUs: 4}
						},
						wantMode: failure.MeasurementMismatch, wantV: attest.Rejected,
						wantDetail: []string{"MEASUREMENT is ", "expected " + hexOf(defaultMeasurement[:])},
					},
				}...)
			} else {
				cases = append(cases, []modeCase{
					{
						name: "MRSEAM",
						evidence: func(h handshake) attesttest.Evidence {
							return attesttest.Evidence{ReportData: h.rd, WrongMRSEAM: true}
						},
						wantMode: failure.ReferenceValueMismatch, wantV: attest.Rejected,
						wantDetail: []string{"MR_SEAM is ", "(MrSeam from manifest tdx[0])"},
					},
					{
						name: "XFAM",
						evidence: func(h handshake) attesttest.Evidence {
							return attesttest.Evidence{ReportData: h.rd, WrongXFAM: true}
						},
						wantMode: failure.ReferenceValueMismatch, wantV: attest.Rejected,
						wantDetail: []string{"XFAM is 071a060000000000; expected e71a060000000000", "(Xfam from manifest tdx[0])"},
					},
				}...)
				// XFAM differing only in the CET bits (11, 12): the newest
				// CLI ignores them, older ones compare all 8 bytes.
				cet := modeCase{
					name: "XFAM CET bits only",
					evidence: func(h handshake) attesttest.Evidence {
						return attesttest.Evidence{ReportData: h.rd, XFAMCETOnly: true}
					},
					wantMode: failure.OK, wantV: attest.Unverified, // TDX offline: Intel's collateral is not fetched
				}
				if sp.name != "newest" {
					cet.wantMode, cet.wantV = failure.ReferenceValueMismatch, attest.Rejected
					cet.wantDetail = []string{"XFAM is ", "(Xfam from manifest tdx[0])"}
				}
				cases = append(cases, cet)
			}

			for _, tc := range cases {
				t.Run(platform+"/"+sp.name+"/"+tc.name, func(t *testing.T) {
					h := newHandshake(t)
					oid, doc := evidenceFor(t, a, platform, tc.evidence(h))
					cert := certFor(t, h, oid, doc, now)
					opts := attest.Options{
						Offline:   true,
						SNPRoots:  a.SNPRootsPEM(),
						TDXRoots:  a.TDXRootsPEM(),
						Reference: m,
						Nonce:     h.nonce,
						Now:       clock,
					}
					if tc.opts != nil {
						tc.opts(&opts)
					}
					res := attest.CheckCertificate(context.Background(), cert, opts)
					if res.Mode != tc.wantMode || res.Verdict != tc.wantV {
						t.Fatalf("got %s/%s (%s), want %s/%s", res.Verdict, res.Mode, res.Detail, tc.wantV, tc.wantMode)
					}
					if tc.wantMode == failure.OK && res.Detail != "" {
						t.Errorf("detail %q for ok", res.Detail)
					}
					for _, want := range tc.wantDetail {
						if !strings.Contains(res.Detail, want) {
							t.Errorf("detail %q does not contain %q", res.Detail, want)
						}
					}
					if res.Platform != platform {
						t.Errorf("platform %q, want %q", res.Platform, platform)
					}
					if res.ClockOffset == nil || *res.ClockOffset != 0 {
						t.Errorf("clock offset %v, want 0", res.ClockOffset)
					}
				})
			}
		}
	}
}

func TestCheckCertificatePolicyHashFields(t *testing.T) {
	a := testAuthority(t)
	h := newHandshake(t)
	other := [32]byte{1, 2, 3}
	oid, doc := evidenceFor(t, a, attest.PlatformSNP, attesttest.Evidence{ReportData: h.rd, PolicyHash: other})
	res := attest.CheckCertificate(context.Background(), certFor(t, h, oid, doc, now), attest.Options{
		Offline: true, SNPRoots: a.SNPRootsPEM(), Reference: mustManifest(t, a.ManifestJSON()), Nonce: h.nonce, Now: clock,
	})
	want := attesttest.DefaultPolicyHash()
	if res.PolicyHash != hexOf(other[:]) || res.ExpectedPolicyHash != hexOf(want[:]) {
		t.Errorf("policy hash %s expected %s; want %x and %x", res.PolicyHash, res.ExpectedPolicyHash, other, want)
	}
	if res.Product != "Milan-B1" {
		t.Errorf("product %q, want Milan-B1", res.Product)
	}
}

func TestClockSkew(t *testing.T) {
	a := testAuthority(t)
	cases := []struct {
		name     string
		issued   time.Duration // the Coordinator's clock minus ours
		wantMode failure.Mode
		detail   string
	}{
		{"in sync", 0, failure.OK, ""},
		{"1h59m ahead", time.Hour + 59*time.Minute, failure.OK, ""},
		{"1h59m behind", -(time.Hour + 59*time.Minute), failure.OK, ""},
		{"3h02m ahead", 3*time.Hour + 2*time.Minute, failure.ClockSkew, "Coordinator clock is 3h02m ahead of this host; clients reject its certificate beyond 2h"},
		{"5h behind", -5 * time.Hour, failure.ClockSkew, "Coordinator clock is 5h behind this host; clients reject its certificate beyond 2h"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandshake(t)
			oid, doc := evidenceFor(t, a, attest.PlatformSNP, attesttest.Evidence{ReportData: h.rd})
			cert := certFor(t, h, oid, doc, now.Add(tc.issued))
			res := attest.CheckCertificate(context.Background(), cert, attest.Options{
				Offline: true, SNPRoots: a.SNPRootsPEM(), Reference: mustManifest(t, a.ManifestJSON()), Nonce: h.nonce, Now: clock,
			})
			if res.Mode != tc.wantMode || res.Detail != tc.detail {
				t.Errorf("got %s %q, want %s %q", res.Mode, res.Detail, tc.wantMode, tc.detail)
			}
			if res.ClockOffset == nil || *res.ClockOffset != tc.issued {
				t.Errorf("clock offset %v, want %v", res.ClockOffset, tc.issued)
			}
		})
	}

	// Clock skew hides what the evidence would have said.
	h := newHandshake(t)
	oid, doc := evidenceFor(t, a, attest.PlatformSNP, attesttest.Evidence{ReportData: h.rd, BadSignature: true})
	res := attest.CheckCertificate(context.Background(), certFor(t, h, oid, doc, now.Add(-3*time.Hour)), attest.Options{
		Offline: true, SNPRoots: a.SNPRootsPEM(), Nonce: h.nonce, Now: clock,
	})
	if res.Mode != failure.ClockSkew || res.Verdict != attest.Rejected {
		t.Fatalf("got %s/%s, want rejected/clock_skew", res.Verdict, res.Mode)
	}
	last := res.Fields[len(res.Fields)-1]
	if !strings.Contains(last.Value, string(failure.EvidenceInvalid)) {
		t.Errorf("hidden evidence result %q does not name %s", last.Value, failure.EvidenceInvalid)
	}
}

func TestUnexpectedCertificate(t *testing.T) {
	a := testAuthority(t)
	h := newHandshake(t)
	_, doc := evidenceFor(t, a, attest.PlatformSNP, attesttest.Evidence{ReportData: h.rd})
	for _, tc := range []struct {
		name string
		oid  asn1.ObjectIdentifier
	}{
		{"no extension", nil},
		{"unknown Contrast OID", asn1.ObjectIdentifier{1, 3, 9901, 2, 9}},
		{"workload secret OID", asn1.ObjectIdentifier{1, 3, 9901, 3, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := certFor(t, h, tc.oid, doc, now)
			res := attest.CheckCertificate(context.Background(), cert, attest.Options{Offline: true, Now: clock})
			if res.Mode != failure.UnexpectedCertificate || res.Verdict != attest.Rejected {
				t.Fatalf("got %s/%s (%s)", res.Verdict, res.Mode, res.Detail)
			}
			if !strings.Contains(res.Detail, "no attestation-document extension") {
				t.Errorf("detail %q", res.Detail)
			}
			if tc.oid != nil && !strings.Contains(res.Detail, tc.oid.String()) {
				t.Errorf("detail %q does not name %s", res.Detail, tc.oid)
			}
		})
	}
	if res := attest.CheckCertificate(context.Background(), nil, attest.Options{}); res.Mode != failure.UnexpectedCertificate {
		t.Errorf("nil certificate: %s", res.Mode)
	}
}

func TestNoMatchingValidator(t *testing.T) {
	a := testAuthority(t)
	cases := []struct {
		evidence, manifest string
	}{
		{attest.PlatformTDX, attest.PlatformSNP},
		{attest.PlatformSNP, attest.PlatformTDX},
		{attest.PlatformInsecure, attest.PlatformSNP},
	}
	for _, tc := range cases {
		t.Run(tc.evidence+" against "+tc.manifest, func(t *testing.T) {
			h := newHandshake(t)
			oid, doc := evidenceFor(t, a, tc.evidence, attesttest.Evidence{ReportData: h.rd})
			res := attest.CheckCertificate(context.Background(), certFor(t, h, oid, doc, now), attest.Options{
				Offline: true, SNPRoots: a.SNPRootsPEM(), TDXRoots: a.TDXRootsPEM(),
				Reference: mustManifest(t, a.ManifestJSON(tc.manifest)), Nonce: h.nonce, Now: clock,
			})
			if res.Mode != failure.NoMatchingValidator || res.Verdict != attest.Rejected {
				t.Fatalf("got %s/%s (%s)", res.Verdict, res.Mode, res.Detail)
			}
			if !strings.Contains(res.Detail, "no matching validator") {
				t.Errorf("detail %q", res.Detail)
			}
		})
	}
}

func TestInsecurePlatform(t *testing.T) {
	h := newHandshake(t)
	for _, tc := range []struct {
		name     string
		e        attesttest.Evidence
		opts     attest.Options
		wantMode failure.Mode
	}{
		{"bound", attesttest.Evidence{ReportData: h.rd}, attest.Options{Nonce: h.nonce}, failure.OK},
		{"not bound", attesttest.Evidence{}, attest.Options{Nonce: h.nonce}, failure.ReportDataMismatch},
		{"policy hash", attesttest.Evidence{ReportData: h.rd, PolicyHash: [32]byte{7}},
			attest.Options{Nonce: h.nonce, PolicyHashes: [][]byte{make([]byte, 32)}}, failure.PolicyHashMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := certFor(t, h, attest.OIDInsecure, attesttest.Insecure(tc.e), now)
			tc.opts.Now = clock
			res := attest.CheckCertificate(context.Background(), cert, tc.opts)
			if res.Mode != tc.wantMode {
				t.Fatalf("got %s (%s), want %s", res.Mode, res.Detail, tc.wantMode)
			}
			// Nothing is signed: never verified.
			if res.Verdict == attest.Verified {
				t.Errorf("insecure evidence verified")
			}
		})
	}
}

func TestEvidenceInvalidEncodings(t *testing.T) {
	a := testAuthority(t)
	h := newHandshake(t)
	_, snp := evidenceFor(t, a, attest.PlatformSNP, attesttest.Evidence{ReportData: h.rd})
	_, tdx := evidenceFor(t, a, attest.PlatformTDX, attesttest.Evidence{ReportData: h.rd})
	cases := []struct {
		name   string
		oid    asn1.ObjectIdentifier
		value  []byte
		detail string
	}{
		{"SNP truncated", attest.OIDSNP, snp[:len(snp)/2], "SNP attestation document"},
		{"SNP garbage", attest.OIDSNP, []byte("not a report"), "SNP attestation document"},
		{"SNP empty", attest.OIDSNP, nil, "SNP attestation document"},
		{"TDX truncated", attest.OIDTDX, tdx[:len(tdx)-10], "TDX attestation document"},
		{"TDX garbage", attest.OIDTDX, []byte{0xff, 0xff, 0xff}, "TDX attestation document"},
		{"insecure garbage", attest.OIDInsecure, []byte("{not json"), "insecure-platform document"},
		{"oversized", attest.OIDSNP, make([]byte, attest.MaxEvidenceSize+1), "limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := attest.CheckCertificate(context.Background(), certFor(t, h, tc.oid, tc.value, now), attest.Options{
				Offline: true, SNPRoots: a.SNPRootsPEM(), TDXRoots: a.TDXRootsPEM(), Now: clock,
			})
			if res.Mode != failure.EvidenceInvalid || res.Verdict != attest.Rejected {
				t.Fatalf("got %s/%s (%s)", res.Verdict, res.Mode, res.Detail)
			}
			if !strings.Contains(res.Detail, tc.detail) {
				t.Errorf("detail %q does not contain %q", res.Detail, tc.detail)
			}
		})
	}
}

func TestSeveralReferenceEntries(t *testing.T) {
	a := testAuthority(t)
	h := newHandshake(t)
	dm := attesttest.DefaultMeasurement()
	entry := func(product, measurement string) string {
		return fmt.Sprintf(`{"ProductName": %q, "TrustedMeasurement": %q,
			"MinimumTCB": {"BootloaderVersion": 0, "TEEVersion": 0, "SNPVersion": 0, "MicrocodeVersion": 0},
			"GuestPolicy": {"SMT": true}}`, product, measurement)
	}
	wrong := strings.Repeat("ab", 48)
	manifest := func(entries ...string) *attest.Manifest {
		p := attesttest.DefaultPolicyHash()
		return mustManifest(t, []byte(fmt.Sprintf(`{"Policies": {%q: {"Role": "coordinator"}},
			"ReferenceValues": {"snp": [%s]}}`, hexOf(p[:]), strings.Join(entries, ","))))
	}
	oid, doc := evidenceFor(t, a, attest.PlatformSNP, attesttest.Evidence{ReportData: h.rd})
	cert := certFor(t, h, oid, doc, now)
	for _, tc := range []struct {
		name     string
		m        *attest.Manifest
		wantMode failure.Mode
		detail   string
	}{
		{"second entry matches", manifest(entry("Milan", wrong), entry("Milan", hexOf(dm[:]))), failure.OK, ""},
		{"closest failure wins", manifest(entry("Genoa", hexOf(dm[:])), entry("Milan", wrong)), failure.MeasurementMismatch, "manifest snp[1]"},
		{"only product mismatch", manifest(entry("Genoa", hexOf(dm[:]))), failure.EvidenceInvalid, "AMD Milan CPU, but manifest snp[0] is for Genoa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := attest.CheckCertificate(context.Background(), cert, attest.Options{
				Offline: true, SNPRoots: a.SNPRootsPEM(), Reference: tc.m, Nonce: h.nonce, Now: clock,
			})
			if res.Mode != tc.wantMode || !strings.Contains(res.Detail, tc.detail) {
				t.Errorf("got %s %q, want %s containing %q", res.Mode, res.Detail, tc.wantMode, tc.detail)
			}
		})
	}
}

// TestOldestManifest checks the first manifest layout Contrast shipped:
// policies as lists of names (no role, so the hash is given explicitly), one
// SNP object with the measurement beside it.
func TestOldestManifest(t *testing.T) {
	a := testAuthority(t)
	h := newHandshake(t)
	dm, p := attesttest.DefaultMeasurement(), attesttest.DefaultPolicyHash()
	m := mustManifest(t, []byte(fmt.Sprintf(`{
		"Policies": {%q: ["coordinator"]},
		"ReferenceValues": {
			"SNP": {"MinimumTCB": {"BootloaderVersion": 3, "TEEVersion": 0, "SNPVersion": 8, "MicrocodeVersion": 115}},
			"TrustedMeasurement": %q
		},
		"WorkloadOwnerKeyDigests": []}`, hexOf(p[:]), hexOf(dm[:]))))
	if got := m.CoordinatorPolicyHashes(); len(got) != 0 {
		t.Fatalf("oldest layout names no coordinator, got %x", got)
	}
	for _, tc := range []struct {
		name     string
		e        attesttest.Evidence
		hashes   [][]byte
		wantMode failure.Mode
		wantV    attest.Verdict
	}{
		{"no policy hash given", attesttest.Evidence{ReportData: h.rd}, nil, failure.OK, attest.Unverified},
		{"policy hash given", attesttest.Evidence{ReportData: h.rd}, [][]byte{p[:]}, failure.OK, attest.Verified},
		{"TCB low", attesttest.Evidence{ReportData: h.rd, TCBLow: true}, [][]byte{p[:]}, failure.TCBMismatch, attest.Rejected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oid, doc := evidenceFor(t, a, attest.PlatformSNP, tc.e)
			res := attest.CheckCertificate(context.Background(), certFor(t, h, oid, doc, now), attest.Options{
				Offline: true, SNPRoots: a.SNPRootsPEM(), Reference: m, PolicyHashes: tc.hashes, Nonce: h.nonce, Now: clock,
			})
			if res.Mode != tc.wantMode || res.Verdict != tc.wantV {
				t.Errorf("got %s/%s (%s), want %s/%s", res.Verdict, res.Mode, res.Detail, tc.wantV, tc.wantMode)
			}
		})
	}
}

func TestCheckFileFormats(t *testing.T) {
	a := testAuthority(t)
	h := newHandshake(t)
	e := attesttest.Evidence{ReportData: h.rd}
	snp, _ := a.SNP(e)
	tdx, _ := a.TDX(e)
	rawQuote, err := a.TDXQuote(e)
	if err != nil {
		t.Fatal(err)
	}
	rawReport, err := a.SNPReport(e)
	if err != nil {
		t.Fatal(err)
	}
	cert := certFor(t, h, attest.OIDSNP, snp, now)
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	opts := attest.Options{
		Offline: true, SNPRoots: a.SNPRootsPEM(), TDXRoots: a.TDXRootsPEM(),
		Reference: mustManifest(t, a.ManifestJSON()), Nonce: h.nonce, Now: clock,
	}
	cases := []struct {
		name     string
		data     []byte
		platform string
		format   string
		wantMode failure.Mode
		wantV    attest.Verdict
	}{
		{"DER certificate", cert.Raw, attest.PlatformSNP, "sevsnp.Attestation protobuf", failure.OK, attest.Verified},
		{"PEM certificate", pemCert, attest.PlatformSNP, "sevsnp.Attestation protobuf", failure.OK, attest.Verified},
		// Raw evidence has no certificate key: the report data stays unchecked.
		{"SNP attestation", snp, attest.PlatformSNP, "sevsnp.Attestation protobuf", failure.OK, attest.Unverified},
		{"TDX QuoteV4", tdx, attest.PlatformTDX, "tdx.QuoteV4 protobuf", failure.OK, attest.Unverified},
		{"raw TDX quote", rawQuote, attest.PlatformTDX, "raw Intel TDX quote (v4)", failure.OK, attest.Unverified},
		// The oldest SNP format carries no VCEK: offline it cannot be verified.
		{"raw SNP report", rawReport, attest.PlatformSNP, "raw 1184-byte SNP report", failure.EvidenceInvalid, attest.Unverified},
		{"insecure JSON", attesttest.Insecure(e), attest.PlatformInsecure, "insecure-platform JSON document", failure.NoMatchingValidator, attest.Rejected},
		{"garbage", []byte("hello"), "", "", failure.EvidenceInvalid, attest.Rejected},
		{"PEM key", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "", "", failure.EvidenceInvalid, attest.Rejected},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := attest.CheckFile(context.Background(), tc.data, opts)
			if res.Mode != tc.wantMode || res.Verdict != tc.wantV || res.Platform != tc.platform {
				t.Fatalf("got %s %s/%s (%s), want %s %s/%s", res.Platform, res.Verdict, res.Mode, res.Detail, tc.platform, tc.wantV, tc.wantMode)
			}
			if tc.format != "" && fieldValue(res, "Evidence format") != tc.format {
				t.Errorf("format %q, want %q", fieldValue(res, "Evidence format"), tc.format)
			}
		})
	}

	// With the key given, raw evidence gets its report data checked too.
	spki, _ := x509.MarshalPKIXPublicKey(h.key.Public())
	o := opts
	o.SPKI = spki
	// Bound now, it is as checked as TDX evidence can be offline: only the
	// collateral keeps it unverified.
	if res := attest.CheckFile(context.Background(), tdx, o); res.Mode != failure.OK || res.Verdict != attest.Unverified ||
		fieldValue(res, "Unverified: not checked") != "Intel's collateral (TCB info, QE identity) and revocation (offline)" {
		t.Errorf("raw TDX with SPKI: %s/%s (%s), not checked: %q", res.Verdict, res.Mode, res.Detail, fieldValue(res, "Unverified: not checked"))
	}
	o.SPKI = []byte("another key")
	if res := attest.CheckFile(context.Background(), tdx, o); res.Mode != failure.ReportDataMismatch {
		t.Errorf("raw TDX with another SPKI: %s (%s)", res.Mode, res.Detail)
	}
}

func fieldValue(r attest.Result, name string) string {
	for _, f := range r.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

func TestReportData(t *testing.T) {
	spki, nonce := []byte("spki"), []byte("nonce")
	want := sha512.Sum512([]byte("spkinonce"))
	if got := attest.ReportData(spki, nonce); got != want {
		t.Errorf("ReportData = %x, want %x", got, want)
	}
}

func TestFindExtension(t *testing.T) {
	h := newHandshake(t)
	for _, oid := range []asn1.ObjectIdentifier{attest.OIDSNP, attest.OIDTDX, attest.OIDInsecure} {
		cert := certFor(t, h, oid, []byte("doc"), now)
		got, value, ok := attest.FindExtension(cert)
		if !ok || !got.Equal(oid) || string(value) != "doc" {
			t.Errorf("FindExtension(%s) = %v %q %v", oid, got, value, ok)
		}
	}
	if _, _, ok := attest.FindExtension(certFor(t, h, nil, nil, now)); ok {
		t.Error("found an extension in a certificate without one")
	}
	if _, _, ok := attest.FindExtension(nil); ok {
		t.Error("found an extension in nil")
	}
}

func TestOptionsValidate(t *testing.T) {
	a := testAuthority(t)
	for _, tc := range []struct {
		name    string
		opts    attest.Options
		wantErr string
	}{
		{"zero", attest.Options{}, ""},
		{"test roots", attest.Options{SNPRoots: a.SNPRootsPEM(), TDXRoots: a.TDXRootsPEM()}, ""},
		{"SNP roots not PEM", attest.Options{SNPRoots: []byte("x")}, "SNP trusted roots"},
		{"SNP roots without ARK", attest.Options{SNPRoots: a.TDXRootsPEM()}, "SNP trusted roots"},
		{"TDX roots empty", attest.Options{TDXRoots: []byte{}}, "TDX trusted roots"},
		{"short policy hash", attest.Options{PolicyHashes: [][]byte{{1}}}, "policy hash 0 is 1 bytes"},
		{"short nonce", attest.Options{Nonce: []byte{1}}, "nonce is 1 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestSNPRootsARKOnly trusts only the ARK: the ASK then comes from the
// evidence, and chain verification checks the ARK signed it.
func TestSNPRootsARKOnly(t *testing.T) {
	a := testAuthority(t)
	_, rest := pem.Decode(a.SNPRootsPEM()) // drop the ASK, keep the ARK
	h := newHandshake(t)
	oid, doc := evidenceFor(t, a, attest.PlatformSNP, attesttest.Evidence{ReportData: h.rd})
	res := attest.CheckCertificate(context.Background(), certFor(t, h, oid, doc, now), attest.Options{
		Offline: true, SNPRoots: rest, Reference: mustManifest(t, a.ManifestJSON()), Nonce: h.nonce, Now: clock,
	})
	if res.Mode != failure.OK || res.Verdict != attest.Verified {
		t.Errorf("ARK-only roots: %s/%s (%s)", res.Verdict, res.Mode, res.Detail)
	}
}

// TestOldestSNPExtension: the first Contrast releases put the raw report,
// base64-encoded, in the extension; it carries no VCEK, so offline it
// cannot be verified, but it decodes.
func TestOldestSNPExtension(t *testing.T) {
	a := testAuthority(t)
	h := newHandshake(t)
	raw, err := a.SNPReport(attesttest.Evidence{ReportData: h.rd})
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string][]byte{
		"raw":    raw,
		"base64": []byte(base64.StdEncoding.EncodeToString(raw)),
	} {
		t.Run(name, func(t *testing.T) {
			res := attest.CheckCertificate(context.Background(), certFor(t, h, attest.OIDSNP, value, now), attest.Options{
				Offline: true, SNPRoots: a.SNPRootsPEM(), Nonce: h.nonce, Now: clock,
			})
			if res.Mode != failure.EvidenceInvalid || res.Verdict != attest.Unverified || !strings.Contains(res.Detail, "offline") {
				t.Errorf("got %s/%s (%s)", res.Verdict, res.Mode, res.Detail)
			}
			if got := fieldValue(res, "Report data"); got != hexOf(h.rd[:]) {
				t.Errorf("report data %s not decoded", got)
			}
		})
	}
}

// TestVCPUSeedManifest checks the newest SNP layout: TrustedMeasurement is a
// 1-vCPU seed and APEIP is set, so the CLI tries every vCPU count from 1 to
// 220 and derives the ID key for the one that matches.
func TestVCPUSeedManifest(t *testing.T) {
	a := testAuthority(t)
	seedManifest := mustManifest(t, a.SeedManifestJSON(attest.PlatformSNP))
	if ref := seedManifest.SNP[0]; ref.APEIP == nil || ref.CPUSignature != 0xa00f11 {
		t.Fatalf("seed manifest parsed as APEIP %x, CPU signature %#x", ref.APEIP, ref.CPUSignature)
	}
	otherSeed := [48]byte{0x5e, 0xed}
	tests := []struct {
		name       string
		evidence   attesttest.Evidence
		wantMode   failure.Mode
		wantV      attest.Verdict
		wantDetail string
		wantField  string
	}{
		{name: "1 vCPU (the seed itself)", evidence: attesttest.Evidence{VCPUs: 1},
			wantMode: failure.OK, wantV: attest.Verified, wantField: "extended to 1 vCPUs"},
		{name: "4 vCPUs", evidence: attesttest.Evidence{VCPUs: 4},
			wantMode: failure.OK, wantV: attest.Verified, wantField: "extended to 4 vCPUs (APEIP 0080b004, CPU signature 0xa00f11)"},
		{name: "220 vCPUs", evidence: attesttest.Evidence{VCPUs: 220},
			wantMode: failure.OK, wantV: attest.Verified, wantField: "extended to 220 vCPUs"},
		{name: "221 vCPUs is beyond what the CLI tries", evidence: attesttest.Evidence{VCPUs: 221},
			wantMode: failure.MeasurementMismatch, wantV: attest.Rejected, wantDetail: "measurement does not match any vCPU count from 1 to 220"},
		{name: "another image", evidence: attesttest.Evidence{VCPUs: 2, Measurement: otherSeed},
			wantMode: failure.MeasurementMismatch, wantV: attest.Rejected, wantDetail: "MEASUREMENT is "},
		{name: "ID key for the seed, not for 8 vCPUs", evidence: attesttest.Evidence{VCPUs: 8, UntrustedIDKey: true},
			wantMode: failure.ReferenceValueMismatch, wantV: attest.Rejected, wantDetail: "report ID key not trusted: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHandshake(t)
			tt.evidence.ReportData = h.rd
			oid, doc := evidenceFor(t, a, attest.PlatformSNP, tt.evidence)
			res := attest.CheckCertificate(context.Background(), certFor(t, h, oid, doc, now), attest.Options{
				Offline: true, SNPRoots: a.SNPRootsPEM(), Reference: seedManifest, Nonce: h.nonce, Now: clock,
			})
			if res.Mode != tt.wantMode || res.Verdict != tt.wantV || !strings.Contains(res.Detail, tt.wantDetail) {
				t.Fatalf("got %s/%s %q, want %s/%s containing %q", res.Verdict, res.Mode, res.Detail, tt.wantV, tt.wantMode, tt.wantDetail)
			}
			if tt.wantField != "" && !strings.Contains(fieldValue(res, "Measurement match"), tt.wantField) {
				t.Errorf("Measurement field %q does not contain %q", fieldValue(res, "Measurement match"), tt.wantField)
			}
		})
	}

	// An APEIP with a product the CLI has no CPU signature for is refused
	// with the manifest, as the CLI refuses it.
	bad := strings.Replace(string(a.SeedManifestJSON(attest.PlatformSNP)), `"ProductName": "Milan"`, `"ProductName": ""`, 1)
	if _, err := attest.ParseManifest([]byte(bad)); err == nil || !strings.Contains(err.Error(), "APEIP") {
		t.Fatalf("APEIP without a product: %v", err)
	}
}

// TestCheckCertificateSelfSignature pins that ccproxy judges the
// certificate itself exactly as the CLI does: x509 verification with the
// certificate as its only root. Go trusts a leaf found in the root pool
// without checking its signature, so the CLI accepts a certificate that is
// not signed by its own key (the TLS handshake's CertificateVerify is what
// proves the key), and so must ccproxy: stricter would name a failure the
// CLI never saw.
func TestCheckCertificateSelfSignature(t *testing.T) {
	a := testAuthority(t)
	h := newHandshake(t)
	oid, doc := evidenceFor(t, a, attest.PlatformSNP, attesttest.Evidence{ReportData: h.rd})
	good := certFor(t, h, oid, doc, now)
	opts := attest.Options{Offline: true, SNPRoots: a.SNPRootsPEM(), Reference: mustManifest(t, a.ManifestJSON()), Nonce: h.nonce, Now: clock}
	if res := attest.CheckCertificate(context.Background(), good, opts); res.Mode != failure.OK || res.Verdict != attest.Verified {
		t.Fatalf("self-signed certificate: %s/%s (%s)", res.Verdict, res.Mode, res.Detail)
	}

	// The same template and key, signed by another key.
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, parent := *good, *good
	tmpl.ExtraExtensions = good.Extensions
	parent.PublicKey = &other.PublicKey
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &parent, &h.key.PublicKey, other)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if foreign.CheckSignatureFrom(foreign) == nil {
		t.Fatal("test certificate is self-signed after all")
	}
	roots := x509.NewCertPool()
	roots.AddCert(foreign)
	_, cliErr := foreign.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now})
	res := attest.CheckCertificate(context.Background(), foreign, opts)
	if (cliErr == nil) != (res.Mode == failure.OK) {
		t.Fatalf("the CLI's check says %v, ccproxy %s/%s (%s)", cliErr, res.Verdict, res.Mode, res.Detail)
	}
}
