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
		{"manifest: does not unmarshal", "Error: failed to unmarshal manifest: value out of range for uint8", failure.ManifestInvalid},
		{"manifest: getting validators", "Error: getting validators: creating coordinator validator: getting coordinator policy hash: expected at least 1 policy with role 'coordinator'", failure.ManifestInvalid},
		// internal/atls: processCertificate, verifyEmbeddedReport.
		{"certificate does not parse", hs + `process certificate: parse certificate: x509: malformed certificate"`, failure.EvidenceInvalid},
		{"no certificate", hs + `process certificate: rawCerts is empty"`, failure.EvidenceInvalid},
		{"certificate fails its own x509 check", hs + `process certificate: verify certificate: x509: unhandled critical extension"`, failure.EvidenceInvalid},
		{"certificate outside its validity", hs + `process certificate: verify certificate: x509: certificate has expired or is not yet valid: current time 2026-01-01T00:00:00Z is before 2026-01-01T03:00:00Z"`, failure.ClockSkew},
		{"no extension", hs + `no valid attestation document certificate extensions found"`, failure.UnexpectedCertificate},
		{"no validator", hs + `no matching validators found"`, failure.NoMatchingValidator},
		{"unsupported atls version (Coordinator log)", `decoding nonce from SupportedProtos: proto refers to an unsupported atls version: "atls:v2:nonce:ab"`, failure.UnsupportedATLSVersion},
		{"no nonce (Coordinator log)", `level=ERROR msg=handshake error="no nonce in supported protocols or SNI"`, failure.IssuerError},
		// internal/attestation/snp: Validator, IterativeValidator.
		{"attestation missing report", h(`validator snp-0-MILAN failed: attestation missing report`), failure.EvidenceInvalid},
		{"measurement per vCPU count", h(`validator snp-0-MILAN failed: measurement does not match any vCPU count from 1 to 220`), failure.MeasurementMismatch},
		{"chip ID", h(`validator snp-0-MILAN failed: chip ID ` + strings.Repeat("ab", 64) + ` not in allowed chip IDs`), failure.ReferenceValueMismatch},
		// internal/attestation/tdx: Validator.
		{"PIID", h(`validator tdx-0 failed: PIID ` + strings.Repeat("ab", 16) + ` not in allowed PIIDs`), failure.ReferenceValueMismatch},
		// internal/manifest/validators.go: coordinatorValidator.
		{"wrong policy hash, several", h(`wrong policy hash for Coordinator: got ` + strings.Repeat("11", 32) + `, want [` + strings.Repeat("22", 32) + ` ` + strings.Repeat("33", 32) + `]`), failure.PolicyHashMismatch},
		// User API (cli/cmd/verify.go, the Coordinator's userapi).
		{"no manifest configured", "Error: getting manifests: rpc error: code = FailedPrecondition desc = no manifest configured", failure.CoordinatorNoManifest},
		{"recovery mode", "Error: getting manifests: rpc error: code = FailedPrecondition desc = coordinator is in recovery mode", failure.CoordinatorRecoveryMode},
		{"manifest differs", "Error: active manifest does not match expected manifest", failure.ManifestMismatch},
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
