package attest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	spb "github.com/google/go-sev-guest/proto/sevsnp"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
	"google.golang.org/protobuf/proto"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// Hostile evidence: a Coordinator (or anyone in front of it) controls every
// byte of the attestation document. Valid signed evidence is decoded, one
// field is truncated, overgrown or replaced, and the result is checked as
// the relay and the probe check it. Whatever the field, the check must not
// panic and must not say verified; where the field is part of the signed
// report or its chain, it must say evidence_invalid. (FuzzDecodeExtension
// explores random bytes; this table pins the field-level cases.)

func cut(b []byte) []byte  { return b[:len(b)/2] }
func grow(b []byte) []byte { return append(bytes.Clone(b), make([]byte, len(b)+1)...) }

func TestHostileEvidenceFields(t *testing.T) {
	a := testAuthority(t)
	h := newHandshake(t)
	good := attesttest.Evidence{ReportData: h.rd}

	snpBytes, err := a.SNP(good)
	if err != nil {
		t.Fatal(err)
	}
	tdxBytes, err := a.TDX(good)
	if err != nil {
		t.Fatal(err)
	}
	snp := func(mutate func(*spb.Attestation)) []byte {
		var att spb.Attestation
		if err := proto.Unmarshal(snpBytes, &att); err != nil {
			t.Fatal(err)
		}
		mutate(&att)
		b, err := proto.Marshal(&att)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tdx := func(mutate func(*tpb.QuoteV4)) []byte {
		var q tpb.QuoteV4
		if err := proto.Unmarshal(tdxBytes, &q); err != nil {
			t.Fatal(err)
		}
		mutate(&q)
		b, err := proto.Marshal(&q)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	big := bytes.Repeat([]byte{0x30}, 512<<10) // large, still under MaxEvidenceSize

	// ignored marks fields outside the signed report and the chain to the
	// trusted roots: go-sev-guest and go-tdx-guest (and so the Contrast
	// CLI) do not use them, so tampering with them must not change the
	// verdict either way.
	const ignored = true
	cases := []struct {
		name    string
		oid     string // "snp" or "tdx"
		value   []byte
		ignored bool
	}{
		// SNP report fields (fixed sizes in the ABI) and the chain.
		{"SNP REPORT_DATA truncated", "snp", snp(func(a *spb.Attestation) { a.Report.ReportData = cut(a.Report.ReportData) }), false},
		{"SNP REPORT_DATA oversized", "snp", snp(func(a *spb.Attestation) { a.Report.ReportData = grow(a.Report.ReportData) }), false},
		{"SNP MEASUREMENT truncated", "snp", snp(func(a *spb.Attestation) { a.Report.Measurement = cut(a.Report.Measurement) }), false},
		{"SNP HOST_DATA oversized", "snp", snp(func(a *spb.Attestation) { a.Report.HostData = grow(a.Report.HostData) }), false},
		{"SNP HOST_DATA empty", "snp", snp(func(a *spb.Attestation) { a.Report.HostData = nil }), false},
		{"SNP CHIP_ID truncated", "snp", snp(func(a *spb.Attestation) { a.Report.ChipId = cut(a.Report.ChipId) }), false},
		{"SNP signature truncated", "snp", snp(func(a *spb.Attestation) { a.Report.Signature = cut(a.Report.Signature) }), false},
		{"SNP signature oversized", "snp", snp(func(a *spb.Attestation) { a.Report.Signature = grow(a.Report.Signature) }), false},
		{"SNP signature empty", "snp", snp(func(a *spb.Attestation) { a.Report.Signature = nil }), false},
		{"SNP report version 0", "snp", snp(func(a *spb.Attestation) { a.Report.Version = 0 }), false},
		{"SNP report version huge", "snp", snp(func(a *spb.Attestation) { a.Report.Version = 1 << 31 }), false},
		{"SNP no report", "snp", snp(func(a *spb.Attestation) { a.Report = nil }), false},
		{"SNP VCEK truncated", "snp", snp(func(a *spb.Attestation) { a.CertificateChain.VcekCert = cut(a.CertificateChain.VcekCert) }), false},
		{"SNP VCEK oversized garbage", "snp", snp(func(a *spb.Attestation) { a.CertificateChain.VcekCert = big }), false},
		{"SNP VCEK missing", "snp", snp(func(a *spb.Attestation) { a.CertificateChain.VcekCert = nil }), false},
		{"SNP ASK truncated", "snp", snp(func(a *spb.Attestation) { a.CertificateChain.AskCert = cut(a.CertificateChain.AskCert) }), ignored},
		{"SNP ARK garbage", "snp", snp(func(a *spb.Attestation) { a.CertificateChain.ArkCert = []byte("not a certificate") }), ignored},
		{"SNP CRL extra oversized garbage", "snp", snp(func(a *spb.Attestation) {
			if a.CertificateChain.Extras == nil {
				a.CertificateChain.Extras = map[string][]byte{}
			}
			a.CertificateChain.Extras["00569ee4-e480-4fba-bbf4-45b629901180"] = big
		}), ignored},
		{"SNP product name garbage", "snp", snp(func(a *spb.Attestation) {
			a.Product = &spb.SevProduct{Name: spb.SevProduct_SevProductName(9999)}
		}), ignored},

		// TDX quote fields (fixed sizes in the ABI) and the signed data.
		{"TDX REPORTDATA truncated", "tdx", tdx(func(q *tpb.QuoteV4) { q.TdQuoteBody.ReportData = cut(q.TdQuoteBody.ReportData) }), false},
		{"TDX REPORTDATA oversized", "tdx", tdx(func(q *tpb.QuoteV4) { q.TdQuoteBody.ReportData = grow(q.TdQuoteBody.ReportData) }), false},
		{"TDX MRTD truncated", "tdx", tdx(func(q *tpb.QuoteV4) { q.TdQuoteBody.MrTd = cut(q.TdQuoteBody.MrTd) }), false},
		{"TDX MR_CONFIG_ID oversized", "tdx", tdx(func(q *tpb.QuoteV4) { q.TdQuoteBody.MrConfigId = grow(q.TdQuoteBody.MrConfigId) }), false},
		{"TDX RTMRs missing one", "tdx", tdx(func(q *tpb.QuoteV4) { q.TdQuoteBody.Rtmrs = q.TdQuoteBody.Rtmrs[:3] }), false},
		{"TDX RTMRs one too many", "tdx", tdx(func(q *tpb.QuoteV4) {
			q.TdQuoteBody.Rtmrs = append(q.TdQuoteBody.Rtmrs, make([]byte, 48))
		}), false},
		{"TDX no body", "tdx", tdx(func(q *tpb.QuoteV4) { q.TdQuoteBody = nil }), false},
		{"TDX header version", "tdx", tdx(func(q *tpb.QuoteV4) { q.Header.Version = 3 }), false},
		{"TDX QE vendor ID truncated", "tdx", tdx(func(q *tpb.QuoteV4) { q.Header.QeVendorId = cut(q.Header.QeVendorId) }), false},
		{"TDX signature truncated", "tdx", tdx(func(q *tpb.QuoteV4) { q.SignedData.Signature = cut(q.SignedData.Signature) }), false},
		{"TDX attestation key oversized", "tdx", tdx(func(q *tpb.QuoteV4) {
			q.SignedData.EcdsaAttestationKey = grow(q.SignedData.EcdsaAttestationKey)
		}), false},
		{"TDX signed data size wrong", "tdx", tdx(func(q *tpb.QuoteV4) { q.SignedDataSize += 7 }), ignored},
		{"TDX QE report signature truncated", "tdx", tdx(func(q *tpb.QuoteV4) {
			d := q.SignedData.CertificationData.QeReportCertificationData
			d.QeReportSignature = cut(d.QeReportSignature)
		}), false},
		{"TDX QE report data oversized", "tdx", tdx(func(q *tpb.QuoteV4) {
			r := q.SignedData.CertificationData.QeReportCertificationData.QeReport
			r.ReportData = grow(r.ReportData)
		}), false},
		{"TDX PCK chain truncated", "tdx", tdx(func(q *tpb.QuoteV4) {
			c := q.SignedData.CertificationData.QeReportCertificationData.PckCertificateChainData
			c.PckCertChain = cut(c.PckCertChain)
			c.Size = uint32(len(c.PckCertChain))
		}), false},
		{"TDX PCK chain oversized garbage", "tdx", tdx(func(q *tpb.QuoteV4) {
			c := q.SignedData.CertificationData.QeReportCertificationData.PckCertificateChainData
			c.PckCertChain = big
			c.Size = uint32(len(big))
		}), false},
		{"TDX QE auth data oversized", "tdx", tdx(func(q *tpb.QuoteV4) {
			d := q.SignedData.CertificationData.QeReportCertificationData.QeAuthData
			d.Data = grow(d.Data)
		}), false},
	}
	opts := attest.Options{
		Offline:   true,
		SNPRoots:  a.SNPRootsPEM(),
		TDXRoots:  a.TDXRootsPEM(),
		Reference: mustManifest(t, a.ManifestJSON()),
		Nonce:     h.nonce,
		Now:       clock,
	}

	// The untouched evidence passes: what breaks below is the mutation.
	// (Offline, TDX evidence is unverified: Intel's collateral is not
	// fetched.)
	untouched := map[string]attest.Verdict{"snp": attest.Verified, "tdx": attest.Unverified}
	for name, value := range map[string][]byte{"snp": snpBytes, "tdx": tdxBytes} {
		oid := attest.OIDSNP
		if name == "tdx" {
			oid = attest.OIDTDX
		}
		if res := attest.CheckCertificate(context.Background(), certFor(t, h, oid, value, now), opts); res.Verdict != untouched[name] || res.Mode != failure.OK {
			t.Fatalf("untouched %s evidence: %s %s (%s)", name, res.Verdict, res.Mode, res.Detail)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oid := attest.OIDSNP
			if tc.oid == "tdx" {
				oid = attest.OIDTDX
			}
			res := attest.CheckCertificate(context.Background(), certFor(t, h, oid, tc.value, now), opts)
			if tc.ignored {
				want := untouched[tc.oid]
				// An unreadable CRL is not used, like an absent one, so the
				// mode stays ok; but offline nothing checks revocation then,
				// so the evidence is unverified (the CLI would fetch the CRL).
				if strings.Contains(tc.name, "CRL") {
					want = attest.Unverified
				}
				if res.Verdict != want || res.Mode != failure.OK {
					t.Errorf("a field no verifier uses changed the verdict: %s/%s (%s)", res.Verdict, res.Mode, res.Detail)
				}
				return
			}
			if res.Verdict == attest.Verified {
				t.Fatalf("tampered evidence verified (%s)", res.Detail)
			}
			if res.Mode != failure.EvidenceInvalid {
				t.Errorf("got %s/%s (%s), want %s", res.Verdict, res.Mode, res.Detail, failure.EvidenceInvalid)
			}
			// Only evidence without a VCEK is merely unverifiable offline;
			// anything present but broken is rejected.
			if want := attest.Rejected; !strings.HasSuffix(tc.name, "VCEK missing") && res.Verdict != want {
				t.Errorf("got verdict %s (%s), want %s", res.Verdict, res.Detail, want)
			}
			if res.Detail == "" {
				t.Error("no detail")
			}
		})
	}
}

// TestHostileInsecureDocument: the insecure platform's document is JSON
// that anyone can write. Fields of the wrong size or encoding are
// evidence_invalid or a mismatch, and the platform is never verified.
func TestHostileInsecureDocument(t *testing.T) {
	h := newHandshake(t)
	doc := func(rd, hd []byte) []byte {
		b, err := json.Marshal(map[string]string{
			"ReportData": base64.StdEncoding.EncodeToString(rd),
			"HostData":   base64.StdEncoding.EncodeToString(hd),
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	policy := attesttest.DefaultPolicyHash()
	cases := []struct {
		name  string
		value []byte
		modes []failure.Mode
	}{
		{"report data truncated", doc(h.rd[:63], policy[:]), []failure.Mode{failure.EvidenceInvalid, failure.ReportDataMismatch}},
		{"report data oversized", doc(append(h.rd[:], 0), policy[:]), []failure.Mode{failure.EvidenceInvalid, failure.ReportDataMismatch}},
		{"host data truncated", doc(h.rd[:], policy[:31]), []failure.Mode{failure.EvidenceInvalid, failure.PolicyHashMismatch}},
		{"host data oversized", doc(h.rd[:], bytes.Repeat([]byte{1}, 1<<16)), []failure.Mode{failure.EvidenceInvalid, failure.PolicyHashMismatch}},
		{"not base64", []byte(`{"ReportData": "!!!", "HostData": "???"}`), []failure.Mode{failure.EvidenceInvalid}},
		{"wrong JSON types", []byte(`{"ReportData": 42, "HostData": ["x"]}`), []failure.Mode{failure.EvidenceInvalid}},
		{"deeply nested", append(bytes.Repeat([]byte(`{"a":`), 10000), bytes.Repeat([]byte(`}`), 10000)...), []failure.Mode{failure.EvidenceInvalid, failure.ReportDataMismatch}},
	}
	opts := attest.Options{Nonce: h.nonce, PolicyHashes: [][]byte{policy[:]}, Now: clock}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := attest.CheckCertificate(context.Background(), certFor(t, h, attest.OIDInsecure, tc.value, now), opts)
			if res.Verdict == attest.Verified {
				t.Fatalf("the insecure platform was verified (%s)", res.Detail)
			}
			if !containsMode(tc.modes, res.Mode) {
				t.Errorf("got %s (%s), want one of %v", res.Mode, res.Detail, tc.modes)
			}
		})
	}
}

func containsMode(ms []failure.Mode, m failure.Mode) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}
