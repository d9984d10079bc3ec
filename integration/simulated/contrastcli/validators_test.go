package contrastcli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/internal/atls"
)

var authority = sync.OnceValues(attesttest.NewAuthority)

// fakeValidator accepts a document equal to the report data, else fails with err.
type fakeValidator struct {
	oid  asn1.ObjectIdentifier
	name string
	err  error
}

func (f fakeValidator) OID() asn1.ObjectIdentifier { return f.oid }
func (f fakeValidator) String() string             { return f.name }
func (f fakeValidator) Validate(_ context.Context, doc, rd []byte) error {
	if bytes.Equal(doc, rd) {
		return nil
	}
	return f.err
}

// certWith returns a self-signed certificate with the given extensions and
// the report data a client with nonce expects.
func certWith(t *testing.T, nonce []byte, exts func(rd [64]byte) []pkix.Extension) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:    big.NewInt(1),
		NotBefore:       time.Now().Add(-time.Hour),
		NotAfter:        time.Now().Add(time.Hour),
		ExtraExtensions: exts(atls.ReportData(spki, nonce)),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestVerifyEmbeddedReport(t *testing.T) {
	nonce := bytes.Repeat([]byte{0xab}, atls.NonceSize)
	nonceHex := hex.EncodeToString(nonce)
	snpA := fakeValidator{oid: atls.OIDSNP(), name: "snp-0-MILAN", err: errors.New("bad a")}
	snpB := fakeValidator{oid: atls.OIDSNP(), name: "snp-1-GENOA", err: errors.New("bad b")}
	tdx := fakeValidator{oid: atls.OIDTDX(), name: "tdx-0", err: errors.New("bad tdx")}
	good := func(rd [64]byte) []pkix.Extension { return []pkix.Extension{{Id: atls.OIDSNP(), Value: rd[:]}} }
	wrong := func([64]byte) []pkix.Extension { return []pkix.Extension{{Id: atls.OIDSNP(), Value: []byte("x")}} }
	tests := []struct {
		name       string
		exts       func([64]byte) []pkix.Extension
		validators []validator
		want       string // "" = success
	}{
		{name: "accepted", exts: good, validators: []validator{tdx, snpA}},
		{name: "no extension", exts: func([64]byte) []pkix.Extension { return nil }, validators: []validator{snpA}, want: "no valid attestation document certificate extensions found"},
		{
			name: "other extensions only", validators: []validator{snpA},
			exts: func([64]byte) []pkix.Extension {
				return []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 9901, 3, 1}, Value: []byte{1}}}
			},
			want: "no valid attestation document certificate extensions found",
		},
		{name: "no validator for platform", exts: good, validators: []validator{tdx}, want: "no matching validators found"},
		{name: "no validators at all", exts: good, validators: nil, want: "no matching validators found"},
		{
			name: "all fail", exts: wrong, validators: []validator{snpA, tdx, snpB},
			want: "with AtlsConnectionNonce " + nonceHex + ":  validator snp-0-MILAN failed: bad a\n validator snp-1-GENOA failed: bad b",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert := certWith(t, nonce, tc.exts)
			err := verifyEmbeddedReport(t.Context(), tc.validators, cert, nonce, nil)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %q, want %q", err, tc.want)
			}
		})
	}
}

func TestParseManifest(t *testing.T) {
	a, err := authority()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		data     []byte
		wantErr  string
		wantHash string // hex; "" skips
		wantSNP  int
		wantTDX  int
	}{
		{name: "current layout", data: a.ManifestJSON(), wantSNP: 1, wantTDX: 1, wantHash: hexOf32(attesttest.DefaultPolicyHash())},
		{name: "legacy layout", data: a.LegacyManifestJSON("tdx"), wantTDX: 1, wantHash: hexOf32(attesttest.DefaultPolicyHash())},
		{name: "not json", data: []byte("{"), wantErr: "unmarshalling manifest"},
		{name: "no reference values", data: []byte(`{"Policies":{}}`), wantErr: "reference values in manifest cannot be empty"},
		{
			name: "no coordinator", data: []byte(`{"ReferenceValues":{"snp":[{}]},"Policies":{"aa":{"Role":""}}}`),
			wantSNP: 1, wantErr: "expected exactly 1 policy with role 'coordinator', got 0",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseManifest(tc.data)
			if err == nil {
				var h []byte
				h, err = m.coordinatorPolicyHash()
				if err == nil && tc.wantHash != "" && hex.EncodeToString(h) != tc.wantHash {
					t.Errorf("policy hash %x, want %s", h, tc.wantHash)
				}
				if len(m.ReferenceValues.SNP) != tc.wantSNP || len(m.ReferenceValues.TDX) != tc.wantTDX {
					t.Errorf("%d SNP, %d TDX reference values", len(m.ReferenceValues.SNP), len(m.ReferenceValues.TDX))
				}
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func hexOf32(b [32]byte) string { return hex.EncodeToString(b[:]) }

// setRef rewrites the first reference value of platform in a manifest.
func setRef(t *testing.T, m []byte, platform, key string, value any) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(m, &doc); err != nil {
		t.Fatal(err)
	}
	refs := doc["ReferenceValues"].(map[string]any)[platform].([]any)
	refs[0].(map[string]any)[key] = value
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The validators built from attesttest's manifest accept its evidence and say
// why they reject evidence that is off in one field.
func TestValidatorsOnSignedEvidence(t *testing.T) {
	a, err := authority()
	if err != nil {
		t.Fatal(err)
	}
	rd := atls.ReportData([]byte("spki"), []byte("nonce"))
	otherPIID := strings.Repeat("11", 16)
	otherChip := strings.Repeat("22", 64)
	tests := []struct {
		name     string
		platform string
		manifest []byte
		ev       attesttest.Evidence
		wantName string
		wantErr  string // "" = accepted
	}{
		{name: "snp ok", platform: "snp", manifest: a.ManifestJSON("snp"), ev: attesttest.Evidence{ReportData: rd}, wantName: "snp-0-MILAN"},
		{name: "tdx ok", platform: "tdx", manifest: a.ManifestJSON("tdx"), ev: attesttest.Evidence{ReportData: rd}, wantName: "tdx-0"},
		{name: "snp legacy ok", platform: "snp", manifest: a.LegacyManifestJSON("snp"), ev: attesttest.Evidence{ReportData: rd}, wantName: "snp-0-MILAN"},
		{name: "tdx legacy ok", platform: "tdx", manifest: a.LegacyManifestJSON("tdx"), ev: attesttest.Evidence{ReportData: rd}, wantName: "tdx-0"},
		{
			name: "snp chip not allowed", platform: "snp", manifest: setRef(t, a.ManifestJSON("snp"), "snp", "AllowedChipIDs", []string{otherChip}),
			ev: attesttest.Evidence{ReportData: rd}, wantName: "snp-0-MILAN", wantErr: "not in allowed chip IDs",
		},
		{
			name: "tdx piid not allowed", platform: "tdx", manifest: setRef(t, a.ManifestJSON("tdx"), "tdx", "AllowedPIIDs", []string{otherPIID}),
			ev: attesttest.Evidence{ReportData: rd}, wantName: "tdx-0", wantErr: "not in allowed PIIDs",
		},
		{
			name: "snp report data", platform: "snp", manifest: a.ManifestJSON("snp"),
			ev: attesttest.Evidence{}, wantName: "snp-0-MILAN", wantErr: "validating report claims: report field REPORT_DATA is",
		},
		{
			name: "tdx signature", platform: "tdx", manifest: a.ManifestJSON("tdx"),
			ev: attesttest.Evidence{ReportData: rd, BadSignature: true}, wantName: "tdx-0", wantErr: "verifying report signature: ",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseManifest(tc.manifest)
			if err != nil {
				t.Fatal(err)
			}
			hash, err := m.coordinatorPolicyHash()
			if err != nil {
				t.Fatal(err)
			}
			vs, err := validatorsFromManifest(m, hash, Options{SNPRootsPEM: a.SNPRootsPEM(), TDXRootsPEM: a.TDXRootsPEM()})
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) != 1 || vs[0].String() != tc.wantName {
				t.Fatalf("validators %v, want one named %s", vs, tc.wantName)
			}
			var doc []byte
			if tc.platform == "snp" {
				doc, err = a.SNP(tc.ev)
			} else {
				doc, err = a.TDX(tc.ev)
			}
			if err != nil {
				t.Fatal(err)
			}
			err = vs[0].Validate(t.Context(), doc, rd[:])
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// Without the authority's roots the evidence must not verify: the embedded
// vendor roots are used, never the evidence's own chain.
func TestValidatorsNeedTrustedRoots(t *testing.T) {
	a, err := authority()
	if err != nil {
		t.Fatal(err)
	}
	rd := atls.ReportData([]byte("spki"), []byte("nonce"))
	for _, platform := range []string{"snp", "tdx"} {
		t.Run(platform, func(t *testing.T) {
			m, err := parseManifest(a.ManifestJSON(platform))
			if err != nil {
				t.Fatal(err)
			}
			hash, _ := m.coordinatorPolicyHash()
			vs, err := validatorsFromManifest(m, hash, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var doc []byte
			if platform == "snp" {
				doc, err = a.SNP(attesttest.Evidence{ReportData: rd})
			} else {
				doc, err = a.TDX(attesttest.Evidence{ReportData: rd})
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := vs[0].Validate(t.Context(), doc, rd[:]); err == nil {
				t.Fatal("fake evidence verified against the vendors' roots")
			}
		})
	}
}

func TestDialRejectsBadOptions(t *testing.T) {
	a, err := authority()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "no manifest", opts: Options{}, want: "unmarshalling manifest"},
		{name: "bad roots", opts: Options{Manifest: a.ManifestJSON("snp"), SNPRootsPEM: []byte("nope")}, want: "no PEM certificate found in trusted roots"},
		{
			name: "bad measurement", opts: Options{Manifest: setRef(t, a.ManifestJSON("snp"), "snp", "TrustedMeasurement", "abcd")},
			want: "TrustedMeasurement: invalid length: 4 (expected 96)",
		},
		{
			name: "unknown product", opts: Options{Manifest: setRef(t, a.ManifestJSON("snp"), "snp", "ProductName", "Bergamo-ish")},
			want: "SNP reference values",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Dial(t.Context(), "127.0.0.1:1", tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
