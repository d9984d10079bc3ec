package attesttest_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	sevvalidate "github.com/google/go-sev-guest/validate"
	sevverify "github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
	tdxabi "github.com/google/go-tdx-guest/abi"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxverify "github.com/google/go-tdx-guest/verify"
	"google.golang.org/protobuf/proto"
)

var now = time.Date(2025, time.March, 1, 0, 0, 0, 0, time.UTC)

var (
	once sync.Once
	auth *attesttest.Authority
	err0 error
)

func authority(t testing.TB) *attesttest.Authority {
	t.Helper()
	once.Do(func() { auth, err0 = attesttest.NewAuthority() })
	if err0 != nil {
		t.Fatal(err0)
	}
	return auth
}

// TestNewAuthorityIsCheap guards the budget other packages' tests rely on
// (the brief is 200 ms; the bound leaves room for a loaded machine).
func TestNewAuthorityIsCheap(t *testing.T) {
	start := time.Now()
	if _, err := attesttest.NewAuthority(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("NewAuthority took %v", d)
	}
}

// The evidence must verify with the vendor libraries themselves, not only
// through package attest.

func snpRoots(t *testing.T, a *attesttest.Authority) map[string][]*trust.AMDRootCerts {
	t.Helper()
	r := trust.AMDRootCertsProduct("Milan")
	if err := r.FromKDSCertBytes(a.SNPRootsPEM()); err != nil {
		t.Fatalf("SNPRootsPEM is not in KDS cert_chain format: %v", err)
	}
	return map[string][]*trust.AMDRootCerts{"Milan": {r}}
}

func TestSNPVerifiesWithGoSevGuest(t *testing.T) {
	a := authority(t)
	for _, tc := range []struct {
		name      string
		e         attesttest.Evidence
		verifyErr string
		tcbErr    string
	}{
		{"default", attesttest.Evidence{}, "", ""},
		{"bad signature", attesttest.Evidence{BadSignature: true}, "ECDSA verification failure", ""},
		{"low TCB", attesttest.Evidence{TCBLow: true}, "", "is lower than the policy minimum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := a.SNP(tc.e)
			if err != nil {
				t.Fatal(err)
			}
			att := &spb.Attestation{}
			if err := proto.Unmarshal(doc, att); err != nil {
				t.Fatal(err)
			}
			err = sevverify.SnpAttestation(att, &sevverify.Options{DisableCertFetching: true, Now: now, TrustedRoots: snpRoots(t, a)})
			if !matches(err, tc.verifyErr) {
				t.Fatalf("verify: %v, want %q", err, tc.verifyErr)
			}
			if err != nil {
				return
			}
			m, p := attesttest.DefaultMeasurement(), attesttest.DefaultPolicyHash()
			policy, err := abi.ParseSnpPolicy(att.Report.GetPolicy())
			if err != nil {
				t.Fatal(err)
			}
			zero := 0
			min := kds.TCBParts{BlSpl: 3, SnpSpl: 8, UcodeSpl: 115}
			err = sevvalidate.SnpAttestation(att, &sevvalidate.Options{
				Measurement: m[:], HostData: p[:], VMPL: &zero, GuestPolicy: policy,
				MinimumTCB: min, MinimumLaunchTCB: min, PermitProvisionalFirmware: true,
			})
			if !matches(err, tc.tcbErr) {
				t.Errorf("validate: %v, want %q", err, tc.tcbErr)
			}
		})
	}
}

func matches(err error, want string) bool {
	if want == "" {
		return err == nil
	}
	return err != nil && strings.Contains(err.Error(), want)
}

func TestTDXVerifiesWithGoTdxGuest(t *testing.T) {
	a := authority(t)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(a.TDXRootsPEM()) {
		t.Fatal("TDXRootsPEM holds no certificate")
	}
	for _, tc := range []struct {
		name string
		e    attesttest.Evidence
		err  string
	}{
		{"default", attesttest.Evidence{}, ""},
		{"bad signature", attesttest.Evidence{BadSignature: true}, "unable to verify message digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := a.TDX(tc.e)
			if err != nil {
				t.Fatal(err)
			}
			q := &tpb.QuoteV4{}
			if err := proto.Unmarshal(doc, q); err != nil {
				t.Fatal(err)
			}
			err = tdxverify.TdxQuote(q, &tdxverify.Options{Now: &tdxverify.TimeSet{PckCertChain: now, TcbInfo: now, QeIdentity: now, PckCrl: now, RootCaCrl: now}, TrustedRoots: pool})
			if !matches(err, tc.err) {
				t.Fatalf("verify: %v, want %q", err, tc.err)
			}
			// The raw form is the same quote.
			raw, err := a.TDXQuote(tc.e)
			if err != nil {
				t.Fatal(err)
			}
			fromRaw, err := tdxabi.QuoteToProto(raw)
			if err != nil {
				t.Fatalf("raw quote does not parse: %v", err)
			}
			rq := fromRaw.(*tpb.QuoteV4)
			if !bytes.Equal(rq.GetTdQuoteBody().GetMrTd(), q.GetTdQuoteBody().GetMrTd()) || rq.GetSignedDataSize() != q.GetSignedDataSize() {
				t.Error("raw and protobuf quotes differ")
			}
		})
	}
}

func TestEvidenceFields(t *testing.T) {
	a := authority(t)
	rd := [64]byte{1, 2, 3}
	ph := [32]byte{4, 5}
	ms := [48]byte{6}
	doc, err := a.SNP(attesttest.Evidence{ReportData: rd, PolicyHash: ph, Measurement: ms})
	if err != nil {
		t.Fatal(err)
	}
	att := &spb.Attestation{}
	if err := proto.Unmarshal(doc, att); err != nil {
		t.Fatal(err)
	}
	r := att.GetReport()
	chip := a.ChipID()
	if !bytes.Equal(r.ReportData, rd[:]) || !bytes.Equal(r.HostData, ph[:]) || !bytes.Equal(r.Measurement, ms[:]) || !bytes.Equal(r.ChipId, chip[:]) {
		t.Errorf("SNP report fields not as asked")
	}
	raw, err := a.SNPReport(attesttest.Evidence{})
	if err != nil || len(raw) != 1184 {
		t.Errorf("SNPReport: %d bytes, %v", len(raw), err)
	}

	qdoc, err := a.TDX(attesttest.Evidence{ReportData: rd, PolicyHash: ph, Measurement: ms})
	if err != nil {
		t.Fatal(err)
	}
	q := &tpb.QuoteV4{}
	if err := proto.Unmarshal(qdoc, q); err != nil {
		t.Fatal(err)
	}
	b := q.GetTdQuoteBody()
	wantConfig := append(ph[:], make([]byte, 16)...)
	if !bytes.Equal(b.ReportData, rd[:]) || !bytes.Equal(b.MrConfigId, wantConfig) || !bytes.Equal(b.MrTd, ms[:]) {
		t.Errorf("TDX quote fields not as asked")
	}

	var ins struct{ ReportData, HostData string }
	if err := json.Unmarshal(attesttest.Insecure(attesttest.Evidence{ReportData: rd}), &ins); err != nil {
		t.Fatal(err)
	}
	dp := attesttest.DefaultPolicyHash()
	if ins.ReportData != base64.StdEncoding.EncodeToString(rd[:]) || ins.HostData != base64.StdEncoding.EncodeToString(dp[:]) {
		t.Errorf("insecure document %+v", ins)
	}
}

func TestManifestJSON(t *testing.T) {
	a := authority(t)
	for _, tc := range []struct {
		name      string
		data      []byte
		want      []string
		wantNot   []string
		platforms []string
	}{
		{"newest", a.ManifestJSON(), []string{`"Rtmrs"`, `"Role": "coordinator"`, `"AllowedChipIDs"`, `"WorkloadOwnerPubKeys"`}, []string{`"Rtrms"`}, nil},
		{"legacy", a.LegacyManifestJSON(), []string{`"Rtrms"`, `"MinimumTeeTcbSvn"`, `"WorkloadOwnerKeyDigests"`}, []string{`"Rtmrs"`, `"PlatformInfo"`}, nil},
		{"snp only", a.ManifestJSON("snp"), []string{`"snp"`}, []string{`"tdx"`}, nil},
		{"tdx only", a.LegacyManifestJSON("tdx"), []string{`"tdx"`}, []string{`"snp"`}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !json.Valid(tc.data) {
				t.Fatal("not JSON")
			}
			for _, w := range tc.want {
				if !bytes.Contains(tc.data, []byte(w)) {
					t.Errorf("missing %s", w)
				}
			}
			for _, w := range tc.wantNot {
				if bytes.Contains(tc.data, []byte(w)) {
					t.Errorf("unexpected %s", w)
				}
			}
		})
	}
}

func TestCertificate(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	oid := asn1.ObjectIdentifier{1, 3, 9901, 2, 1}
	c, err := attesttest.Certificate(key, oid, []byte("doc"), now)
	if err != nil {
		t.Fatal(err)
	}
	if !c.NotBefore.Equal(now.Add(-2*time.Hour)) || !c.NotAfter.Equal(now.Add(2*time.Hour)) || c.Subject.CommonName != "Contrast" {
		t.Errorf("validity %v-%v subject %v", c.NotBefore, c.NotAfter, c.Subject)
	}
	found := false
	for _, e := range c.Extensions {
		found = found || (e.Id.Equal(oid) && string(e.Value) == "doc")
	}
	if !found {
		t.Error("attestation extension missing")
	}
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	// What Contrast's client checks.
	roots := x509.NewCertPool()
	roots.AddCert(c)
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now}); err != nil {
		t.Errorf("Contrast's client would reject it: %v", err)
	}
}

func TestRootsPEM(t *testing.T) {
	a := authority(t)
	var names []string
	rest := a.SNPRootsPEM()
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, c.Subject.CommonName)
	}
	if strings.Join(names, ",") != "SEV-Milan,ARK-Milan" {
		t.Errorf("SNP roots %v, want ASK then ARK", names)
	}
}

func BenchmarkNewAuthority(b *testing.B) {
	for b.Loop() {
		if _, err := attesttest.NewAuthority(); err != nil {
			b.Fatal(err)
		}
	}
}
