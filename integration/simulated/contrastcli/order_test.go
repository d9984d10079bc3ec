package contrastcli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/internal/atls"
	"github.com/ccproxy-dev/ccproxy/internal/explain"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// fault is one field of the evidence set wrong.
type fault func(e *attesttest.Evidence)

var (
	wrongPolicy = func(e *attesttest.Evidence) {
		e.PolicyHash = sha256.Sum256([]byte("another release's coordinator policy"))
	}
	wrongMeasurement = func(e *attesttest.Evidence) {
		e.Measurement = sha512.Sum384([]byte("another release's launch measurement"))
	}
	wrongReportData = func(e *attesttest.Evidence) { e.ReportData = sha512.Sum512([]byte("another handshake")) }
	lowTCB          = func(e *attesttest.Evidence) { e.TCBLow = true }
	wrongMRSEAM     = func(e *attesttest.Evidence) { e.WrongMRSEAM = true }
	wrongXFAM       = func(e *attesttest.Evidence) { e.WrongXFAM = true }
	cetOnlyXFAM     = func(e *attesttest.Evidence) { e.XFAMCETOnly = true }
	mrConfigIDTail  = func(e *attesttest.Evidence) { e.MRConfigIDTail = true }
	otherChip       = func(e *attesttest.Evidence) { e.OtherChip = true }
)

// TestCheckOrderAgreesWithCLI pairs combinations of failed fields with the
// mode the CLI's printed error gets from `ccproxy explain`, per manifest
// era, and requires ccproxy's own check of the same certificate to name that
// mode: when several checks fail, ccproxy names the failure the CLI printed
// first. The CLI here is the simulated one, built on the same go-sev-guest
// and go-tdx-guest calls and check order as Contrast's validators
// (internal/attestation/snp, internal/attestation/tdx,
// internal/manifest/validators.go).
func TestCheckOrderAgreesWithCLI(t *testing.T) {
	a, err := authority()
	if err != nil {
		t.Fatal(err)
	}
	manifests := map[string]func(platform string) []byte{
		"newest": func(p string) []byte { return a.ManifestJSON(p) },
		"seed":   func(p string) []byte { return a.SeedManifestJSON(p) },
		"older":  func(p string) []byte { return a.LegacyManifestJSON(p) },
	}
	cases := []struct {
		era, platform string
		faults        []fault
		want          failure.Mode
	}{
		// SNP, newest: one go-sev-guest call (REPORT_DATA, MEASUREMENT, TCB,
		// ...), the policy hash after the validator passed.
		{"newest", "snp", []fault{wrongPolicy, wrongMeasurement}, failure.MeasurementMismatch},
		{"newest", "snp", []fault{wrongPolicy, lowTCB}, failure.TCBMismatch},
		{"newest", "snp", []fault{wrongPolicy, otherChip}, failure.ReferenceValueMismatch},
		{"newest", "snp", []fault{wrongPolicy, wrongReportData}, failure.ReportDataMismatch},
		{"newest", "snp", []fault{wrongReportData, wrongMeasurement}, failure.ReportDataMismatch},
		{"newest", "snp", []fault{wrongMeasurement, lowTCB}, failure.MeasurementMismatch},
		{"newest", "snp", []fault{wrongPolicy}, failure.PolicyHashMismatch},
		// SNP with APEIP: the vCPU loop runs before anything else.
		{"seed", "snp", []fault{wrongPolicy, wrongMeasurement}, failure.MeasurementMismatch},
		{"seed", "snp", []fault{wrongReportData, wrongMeasurement}, failure.MeasurementMismatch},
		{"seed", "snp", []fault{wrongReportData, wrongPolicy}, failure.ReportDataMismatch},
		// SNP, older: HOST_DATA is one of go-sev-guest's fields, after
		// REPORT_DATA and before MEASUREMENT.
		{"older", "snp", []fault{wrongPolicy, wrongMeasurement}, failure.PolicyHashMismatch},
		{"older", "snp", []fault{wrongReportData, wrongPolicy}, failure.ReportDataMismatch},
		{"older", "snp", []fault{wrongPolicy, lowTCB}, failure.PolicyHashMismatch},
		{"older", "snp", []fault{wrongMeasurement, lowTCB}, failure.MeasurementMismatch},
		// TDX, newest: XFAM first, compared ignoring the CET bits (Contrast's
		// validateXfamIgnoringCET), then go-tdx-guest's order MR_SEAM,
		// TD_ATTRIBUTES, MR_TD, RTMRs, REPORT_DATA; the policy hash
		// (MR_CONFIG_ID[:32]) after the validator passed.
		{"newest", "tdx", []fault{wrongPolicy, wrongMeasurement}, failure.MeasurementMismatch},
		{"newest", "tdx", []fault{wrongReportData, wrongMeasurement}, failure.MeasurementMismatch},
		{"newest", "tdx", []fault{wrongPolicy, wrongReportData}, failure.ReportDataMismatch},
		{"newest", "tdx", []fault{wrongMRSEAM, wrongMeasurement}, failure.ReferenceValueMismatch},
		{"newest", "tdx", []fault{wrongXFAM, wrongPolicy}, failure.ReferenceValueMismatch},
		{"newest", "tdx", []fault{mrConfigIDTail}, failure.OK},
		{"newest", "tdx", []fault{cetOnlyXFAM}, failure.OK},
		{"newest", "tdx", []fault{wrongXFAM, wrongMRSEAM}, failure.ReferenceValueMismatch},
		{"newest", "tdx", []fault{wrongXFAM, wrongMeasurement}, failure.ReferenceValueMismatch},
		{"older", "tdx", []fault{cetOnlyXFAM}, failure.ReferenceValueMismatch},
		// TDX, older: MR_CONFIG_ID (hash and 16 zero bytes) between MR_TD
		// and the RTMRs; SVN minimums after the fields.
		{"older", "tdx", []fault{wrongPolicy, wrongMeasurement}, failure.MeasurementMismatch},
		{"older", "tdx", []fault{wrongPolicy, wrongReportData}, failure.PolicyHashMismatch},
		{"older", "tdx", []fault{wrongPolicy, lowTCB}, failure.PolicyHashMismatch},
		{"older", "tdx", []fault{wrongMRSEAM, wrongPolicy}, failure.ReferenceValueMismatch},
		{"older", "tdx", []fault{mrConfigIDTail}, failure.PolicyHashMismatch},
	}
	for _, tc := range cases {
		name := tc.era + "/" + tc.platform + "/" + string(tc.want)
		t.Run(name, func(t *testing.T) {
			manifestJSON := manifests[tc.era](tc.platform)
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			nonce, err := atls.NewNonce()
			if err != nil {
				t.Fatal(err)
			}
			spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			ev := attesttest.Evidence{ReportData: atls.ReportData(spki, nonce)}
			if tc.era == "seed" {
				ev.VCPUs = 4
			}
			for _, f := range tc.faults {
				f(&ev)
			}
			var (
				oid asn1.ObjectIdentifier
				doc []byte
			)
			if tc.platform == "tdx" {
				oid, doc = atls.OIDTDX(), must(a.TDX(ev))
			} else {
				oid, doc = atls.OIDSNP(), must(a.SNP(ev))
			}
			cert, err := attesttest.Certificate(key, oid, doc, time.Now())
			if err != nil {
				t.Fatal(err)
			}

			// The CLI.
			m, err := parseManifest(manifestJSON)
			if err != nil {
				t.Fatal(err)
			}
			validators, hashes, err := validatorsFor(m, Options{SNPRootsPEM: a.SNPRootsPEM(), TDXRootsPEM: a.TDXRootsPEM()})
			if err != nil {
				t.Fatal(err)
			}
			cliErr := verifyEmbeddedReport(context.Background(), validators, cert, nonce, hashes)
			cliMode := failure.OK
			if cliErr != nil {
				fs := explain.Explain(cliErr.Error())
				if len(fs) == 0 {
					t.Fatalf("explain recognises nothing in the CLI's %q", cliErr)
				}
				cliMode = failure.Mode(fs[0].Mode)
			}

			// ccproxy.
			ref, err := attest.ParseManifest(manifestJSON)
			if err != nil {
				t.Fatal(err)
			}
			res := attest.CheckCertificate(context.Background(), cert, attest.Options{
				Offline: true, SNPRoots: a.SNPRootsPEM(), TDXRoots: a.TDXRootsPEM(), Reference: ref, Nonce: nonce,
			})

			if cliMode != tc.want {
				t.Errorf("the CLI's error explains as %s, want %s:\n%v", cliMode, tc.want, cliErr)
			}
			if res.Mode != cliMode {
				t.Errorf("ccproxy names %s (%s), the CLI's error %s:\n%v", res.Mode, res.Detail, cliMode, cliErr)
			}
		})
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
