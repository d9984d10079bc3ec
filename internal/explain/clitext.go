package explain

import "github.com/ccproxy-dev/ccproxy/internal/failure"

// cliText is, per contract mode, the error text the Contrast CLI prints for
// it (shared/CONTRACT.md, "Contrast CLI symptom it explains"), as Explain
// recognises it. Values that differ per case are <placeholders>: <hex>,
// <host>, <port>, <time>, <cause>, <tcb>, <alert>. TestCLITextRoundTrip
// keeps every entry recognised as its mode.
var cliText = map[failure.Mode]string{
	failure.UpstreamDNSFailure:         "dial tcp: lookup <host>: no such host",
	failure.UpstreamRefused:            "dial tcp <host>:<port>: connect: connection refused",
	failure.UpstreamDialTimeout:        "dial tcp <host>:<port>: i/o timeout",
	failure.UpstreamUnreachable:        "dial tcp <host>:<port>: connect: no route to host",
	failure.LBClosedEarly:              "transport: authentication handshake failed: EOF",
	failure.IssuerTimeout:              "received context error while waiting for new LB policy update: context deadline exceeded",
	failure.IssuerError:                "remote error: tls: internal error",
	failure.UpstreamNotTLS:             "tls: first record does not look like a TLS handshake",
	failure.UnexpectedCertificate:      "no valid attestation document certificate extensions found",
	failure.NoMatchingValidator:        "no matching validators found",
	failure.EvidenceInvalid:            "validator snp-0 failed: verifying report: <cause>",
	failure.ReportDataMismatch:         "validating report data: report field REPORT_DATA is <hex>. Expect <hex>",
	failure.PolicyHashMismatch:         "wrong policy hash for Coordinator: got <hex>, want <hex>",
	failure.MeasurementMismatch:        "report field MEASUREMENT is <hex>. Expect <hex>",
	failure.TCBMismatch:                "the report's REPORTED_TCB {<tcb>} is lower than the policy minimum TCB {<tcb>}",
	failure.ReferenceValueMismatch:     "report ID key not trusted: <hex>",
	failure.UnsupportedATLSVersion:     "proto refers to an unsupported atls version",
	failure.ClockSkew:                  "x509: certificate has expired or is not yet valid: current time <time> is before <time>",
	failure.CoordinatorVersionMismatch: "remote error: tls: internal error",
	failure.TLSAlert:                   "remote error: tls: <alert>",
	failure.CoordinatorRecoveryMode:    "coordinator is in recovery mode",
	failure.CoordinatorNoManifest:      "no manifest configured",
	failure.ManifestMismatch:           "active manifest does not match expected manifest",
	failure.ManifestInvalid:            "validating manifest: expected exactly 1 policy with role 'coordinator', got 2",
}

// CLIText returns the error text the Contrast CLI prints for mode, the one
// Explain maps to it, with <placeholders> for the values that differ per
// case; "" for ok and for modes with no text of their own (the client gave
// up or another side failed: client_aborted, upstream_reset, ...).
func CLIText(mode failure.Mode) string { return cliText[mode] }
