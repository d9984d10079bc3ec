package explain

import (
	"strings"
	"testing"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// TestNewestCLITexts: texts the newest Contrast CLI prints (and the
// libraries it links) that name the mode the relay names for the same
// connection. Sources: internal/manifest (manifest.go, referencevalues.go,
// validators.go), internal/attestation/tdx/validator.go,
// internal/attestation/insecure, go-sev-guest validate, go-tdx-guest
// validate.
func TestNewestCLITexts(t *testing.T) {
	const (
		nonce = "with AtlsConnectionNonce 5a6b7c8d5a6b7c8d5a6b7c8d5a6b7c8d5a6b7c8d5a6b7c8d5a6b7c8d5a6b7c8d: "
		hs    = `Error: setting manifest: rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: `
	)
	h := func(cause string) string { return hs + nonce + cause + `"` }
	cases := []struct {
		name, text string
		want       failure.Mode
	}{
		{"manifest history is empty", "Error: getting manifests: rpc error: code = FailedPrecondition desc = manifest history is empty", failure.CoordinatorNoManifest},
		{"TDX TEE TCB SVN, decimal slices", h(`validator tdx-0 failed: validating report data: TEE TCB security-version number [3 0 5 0 0 0 0 0 0 0 0 0 0 0 0 0] is less than the required minimum [3 0 6 0 0 0 0 0 0 0 0 0 0 0 0 0]`), failure.TCBMismatch},
		{"bare verifying report", h(`verifying report: report signature verification error: x509: ECDSA verification failure`), failure.EvidenceInvalid},
		{"bare verifying report signature", h(`verifying report signature: unable to verify message digest using quote's signature and ecdsa attestation key`), failure.EvidenceInvalid},
		{"bare unmarshaling attestation", h(`unmarshaling attestation: proto: cannot parse invalid wire-format data`), failure.EvidenceInvalid},
		{"memory alias", h(`validator snp-0-GENOA failed: validating report claims: required memory alias check hasn't been completed`), failure.ReferenceValueMismatch},
		{"ciphertext hiding", h(`validator snp-0-GENOA failed: validating report claims: required ciphertext hiding in DRAM not enforced`), failure.ReferenceValueMismatch},
		{"SEV-TIO", h(`validator snp-0-GENOA failed: validating report claims: unauthorized feature SEV-TIO enabled`), failure.ReferenceValueMismatch},
		{"memory encryption mode", h(`validator snp-0-GENOA failed: validating report claims: found unauthorized memory encryption mode`), failure.ReferenceValueMismatch},
		{"policy ABI version", h(`validator snp-0-GENOA failed: validating report claims: required policy ABI version (1.55) is greater than the report's ABI version (1.51)`), failure.ReferenceValueMismatch},
		{"CHIP_ID is not the VCEK's HWID", h(`validator snp-0-GENOA failed: validating report claims: report field CHIP_ID ` + strings.Repeat("ab", 64) + ` is not the same as the VCEK certificate's HWID ` + strings.Repeat("cd", 64)), failure.EvidenceInvalid},
		{"reading PIID", h(`validator tdx-0 failed: reading PIID from quote: extracting PCK certificate: no PCK certificate found`), failure.ReferenceValueMismatch},
		{"RTMR not trusted", h(`validator tdx-0 failed: generating validation options: RTMR[0] ` + strings.Repeat("0f", 48) + ` is not trusted`), failure.MeasurementMismatch},
		{"insecure reportData", h(`validator insecure failed: reportData mismatch: expected ` + strings.Repeat("11", 64) + `, got ` + strings.Repeat("22", 64)), failure.ReportDataMismatch},
		{"validator did not produce a report", h(`validator did not produce a report`), failure.ClientRejectedCertificate},
		{"QE vendor ID", h(`validator tdx-0 failed: validating report data: quote field QE_VENDOR_ID is 00000000000000000000000000000000. Expect 939a7233f79c4ca9940a0db3957f0607`), failure.EvidenceInvalid},
		{"manifest: exactly one coordinator", "Error: validating manifest: expected exactly 1 policy with role 'coordinator', got 2", failure.ManifestInvalid},
		{"manifest: at least one coordinator", "Error: validating manifest: expected at least 1 policy with role 'coordinator'", failure.ManifestInvalid},
		{"manifest: guest policy", "Error: validating manifest: ReferenceValues.snp[0].GuestPolicy.Debug: modifying this field is not permitted\nReferenceValues.snp[0].GuestPolicy.MigrateMA: modifying this field is not permitted", failure.ManifestInvalid},
		{"manifest: product", "Error: validating manifest: ReferenceValues.snp[0].ProductName: unknown product name: Turin", failure.ManifestInvalid},
		{"manifest: fill in", "Error: validating manifest: ReferenceValues: Please fill in all reference values for tdx[0]", failure.ManifestInvalid},
		{"manifest: mixed platforms", "ReferenceValues: manifest must not mix secure and insecure platforms", failure.ManifestInvalid},
		{"manifest: oldest", "Error: validating manifest: validating reference values: field BootloaderVersion in manifest cannot be empty", failure.ManifestInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := Explain(tc.text)
			if len(fs) == 0 {
				t.Fatalf("Explain recognises nothing in %q", tc.text)
			}
			if fs[0].Mode != string(tc.want) {
				var got []string
				for _, f := range fs {
					got = append(got, f.Mode+": "+f.Summary)
				}
				t.Errorf("Explain names %v, want %s first", got, tc.want)
			}
		})
	}
}
