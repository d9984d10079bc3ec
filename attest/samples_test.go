package attest_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	tdxabi "github.com/google/go-tdx-guest/abi"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
	"google.golang.org/protobuf/proto"
)

// The real samples' certificates are valid from late 2022 to late 2029.
var (
	sampleTime = func() time.Time { return time.Date(2023, time.July, 1, 0, 0, 0, 0, time.UTC) }
	afterTime  = func() time.Time { return time.Date(2031, time.January, 1, 0, 0, 0, 0, time.UTC) }
	zeroPolicy = make([]byte, 32) // neither sample sets HOST_DATA / MR_CONFIG_ID
)

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// snpSample returns the Milan sample as a sevsnp.Attestation protobuf and as
// a raw report followed by the certificate table the firmware returns.
func snpSample(t testing.TB) (attestation, reportWithTable []byte, report *spb.Report) {
	t.Helper()
	raw, vcek := readSample(t, "snp_milan_report.bin"), readSample(t, "snp_milan_vcek.der")
	report, err := abi.ReportToProto(raw)
	if err != nil {
		t.Fatal(err)
	}
	chain := &spb.CertificateChain{VcekCert: vcek}
	attestation, err = proto.Marshal(&spb.Attestation{Report: report, CertificateChain: chain})
	if err != nil {
		t.Fatal(err)
	}
	return attestation, append(append([]byte{}, raw...), abi.CertsFromProto(chain).Marshal()...), report
}

func TestRealSNPSample(t *testing.T) {
	attestation, withTable, r := snpSample(t)
	matching := mustManifest(t, []byte(fmt.Sprintf(`{"ReferenceValues": {"snp": [{
		"ProductName": "Milan", "TrustedMeasurement": %q,
		"MinimumTCB": {"BootloaderVersion": 2, "TEEVersion": 0, "SNPVersion": 5, "MicrocodeVersion": 68},
		"GuestPolicy": {"SMT": true, "Debug": true}, "PlatformInfo": {"SMTEnabled": true},
		"AllowedChipIDs": [%q]}]}}`, hexOf(r.GetMeasurement()), hexOf(r.GetChipId()))))
	strict := mustManifest(t, []byte(fmt.Sprintf(`{"ReferenceValues": {"snp": [{
		"ProductName": "Milan", "TrustedMeasurement": %q,
		"MinimumTCB": {"BootloaderVersion": 2, "TEEVersion": 0, "SNPVersion": 5, "MicrocodeVersion": 68},
		"GuestPolicy": {"SMT": true}}]}}`, hexOf(r.GetMeasurement()))))
	cases := []struct {
		name     string
		data     []byte
		opts     attest.Options
		wantMode failure.Mode
		wantV    attest.Verdict
		detail   string
	}{
		{"attestation protobuf", attestation, attest.Options{}, failure.OK, attest.Unverified, ""},
		{"report with certificate table", withTable, attest.Options{}, failure.OK, attest.Unverified, ""},
		// The sample VM was not launched by Contrast: every field matches
		// these reference values but it has no ID block, which every CLI
		// that reads a GuestPolicy from the manifest requires.
		{"reference values match but no ID block", attestation, attest.Options{Reference: matching, PolicyHashes: [][]byte{zeroPolicy}}, failure.ReferenceValueMismatch, attest.Rejected,
			"ID_KEY_DIGEST is " + strings.Repeat("0", 96) + " (the report has no ID block"},
		// The sample VM ran with debugging allowed; Contrast never allows it.
		{"debug policy rejected", attestation, attest.Options{Reference: strict, PolicyHashes: [][]byte{zeroPolicy}}, failure.ReferenceValueMismatch, attest.Rejected, "found unauthorized debug capability"},
		{"VCEK expired", attestation, attest.Options{Now: afterTime}, failure.EvidenceInvalid, attest.Rejected, "certificate has expired"},
		{"custom roots do not include AMD's", attestation, attest.Options{SNPRoots: testAuthority(t).SNPRootsPEM()}, failure.EvidenceInvalid, attest.Rejected, "configured SNP roots"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Offline = true
			if tc.opts.Now == nil {
				tc.opts.Now = sampleTime
			}
			res := attest.CheckFile(context.Background(), tc.data, tc.opts)
			if res.Mode != tc.wantMode || res.Verdict != tc.wantV || !strings.Contains(res.Detail, tc.detail) {
				t.Fatalf("got %s/%s %q, want %s/%s containing %q", res.Verdict, res.Mode, res.Detail, tc.wantV, tc.wantMode, tc.detail)
			}
			if res.Product != "Milan-B0" {
				t.Errorf("product %q, want Milan-B0", res.Product)
			}
		})
	}
}

func tdxSample(t testing.TB) ([]byte, *tpb.QuoteV4) {
	t.Helper()
	raw := readSample(t, "tdx_quote_spr_e4.dat")
	q, err := tdxabi.QuoteToProto(raw)
	if err != nil {
		t.Fatal(err)
	}
	return raw, q.(*tpb.QuoteV4)
}

func TestRealTDXSample(t *testing.T) {
	raw, q := tdxSample(t)
	quoteProto, err := proto.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	b := q.GetTdQuoteBody()
	rtmrs := fmt.Sprintf(`[%q, %q, %q, %q]`, hexOf(b.Rtmrs[0]), hexOf(b.Rtmrs[1]), hexOf(b.Rtmrs[2]), hexOf(b.Rtmrs[3]))
	common := fmt.Sprintf(`"MrTd": %q, "MrSeam": %q, "Xfam": %q`, hexOf(b.MrTd), hexOf(b.MrSeam), hexOf(b.Xfam))
	// Older layout: TdAttributes from the manifest, Rtrms.
	legacy := mustManifest(t, []byte(fmt.Sprintf(`{"ReferenceValues": {"tdx": [{%s, "Rtrms": %s, "TdAttributes": %q,
		"MinimumQeSvn": 0, "MinimumPceSvn": 0, "MinimumTeeTcbSvn": %q}]}}`, common, rtmrs, hexOf(b.TdAttributes), hexOf(b.TeeTcbSvn))))
	// Newest layout: Contrast requires TD attributes with only
	// SEPT_VE_DISABLE set; the sample TD has PKS (bit 30) instead.
	newest := mustManifest(t, []byte(fmt.Sprintf(`{"ReferenceValues": {"tdx": [{%s, "Rtmrs": %s, "AllowedPIIDs": ["8c314d17d205dfafcbecbb00fc87eff7"]}]}}`, common, rtmrs)))
	otherPIID := mustManifest(t, []byte(fmt.Sprintf(`{"ReferenceValues": {"tdx": [{%s, "Rtmrs": %s, "TdAttributes": %q, "AllowedPIIDs": [%q]}]}}`,
		common, rtmrs, hexOf(b.TdAttributes), strings.Repeat("00", 16))))
	staticPlatform := mustManifest(t, []byte(fmt.Sprintf(`{"ReferenceValues": {"tdx": [{%s, "Rtmrs": %s, "TdAttributes": %q, "StaticPlatform": true}]}}`,
		common, rtmrs, hexOf(b.TdAttributes))))
	septVE := binary.LittleEndian.AppendUint64(nil, 1<<28)
	cases := []struct {
		name     string
		data     []byte
		opts     attest.Options
		wantMode failure.Mode
		wantV    attest.Verdict
		detail   string
	}{
		{"raw quote", raw, attest.Options{}, failure.OK, attest.Unverified, ""},
		{"QuoteV4 protobuf", quoteProto, attest.Options{}, failure.OK, attest.Unverified, ""},
		// Offline, Intel's collateral and revocation are not checked as the
		// CLI checks them: everything else matches, the verdict says so.
		{"legacy reference values match", raw, attest.Options{Reference: legacy, PolicyHashes: [][]byte{zeroPolicy}}, failure.OK, attest.Unverified, ""},
		{"newest TD attributes rule", raw, attest.Options{Reference: newest, PolicyHashes: [][]byte{zeroPolicy}}, failure.ReferenceValueMismatch, attest.Rejected,
			fmt.Sprintf("TD_ATTRIBUTES is %s; expected %s", hexOf(b.TdAttributes), hexOf(septVE))},
		{"PIID not allowed", raw, attest.Options{Reference: otherPIID, PolicyHashes: [][]byte{zeroPolicy}}, failure.ReferenceValueMismatch, attest.Rejected,
			"PIID 8c314d17d205dfafcbecbb00fc87eff7 not in allowed PIIDs"},
		{"dynamic platform", raw, attest.Options{Reference: staticPlatform, PolicyHashes: [][]byte{zeroPolicy}}, failure.ReferenceValueMismatch, attest.Rejected,
			"dynamic platform is true; expected false"},
		{"policy hash", raw, attest.Options{Reference: legacy, PolicyHashes: [][]byte{make([]byte, 31)}}, failure.PolicyHashMismatch, attest.Rejected, "MR_CONFIG_ID (policy hash) is 0000"},
		{"PCK certificate expired", raw, attest.Options{Now: afterTime}, failure.EvidenceInvalid, attest.Rejected, "PCK"},
		{"custom roots do not include Intel's", raw, attest.Options{TDXRoots: testAuthority(t).TDXRootsPEM()}, failure.EvidenceInvalid, attest.Rejected, "configured TDX roots"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Offline = true
			if tc.opts.Now == nil {
				tc.opts.Now = sampleTime
			}
			res := attest.CheckFile(context.Background(), tc.data, tc.opts)
			if res.Mode != tc.wantMode || res.Verdict != tc.wantV || !strings.Contains(res.Detail, tc.detail) {
				t.Fatalf("got %s/%s %q, want %s/%s containing %q", res.Verdict, res.Mode, res.Detail, tc.wantV, tc.wantMode, tc.detail)
			}
		})
	}
}
