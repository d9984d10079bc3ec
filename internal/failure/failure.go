// Package failure names what happened to a connection, a probe or a piece of
// evidence. Every value is a contract string (shared/CONTRACT.md, "Failure
// modes"): dashboards and outside tests match on it, so a value never changes
// meaning. Each mode is decided in exactly one place in ccproxy; everything
// else passes a Mode along.
//
//	if m := failure.Mode("lb_closed_early"); m.Known() { ... }
package failure

// Mode is one value of the contract's failure-mode table.
type Mode string

// The contract's failure modes, in the contract's order.
const (
	OK                         Mode = "ok"
	ClientAborted              Mode = "client_aborted"
	ClientNotTLS               Mode = "client_not_tls"
	UpstreamDNSFailure         Mode = "upstream_dns_failure"
	UpstreamRefused            Mode = "upstream_refused"
	UpstreamDialTimeout        Mode = "upstream_dial_timeout"
	UpstreamUnreachable        Mode = "upstream_unreachable"
	LBClosedEarly              Mode = "lb_closed_early"
	IssuerTimeout              Mode = "issuer_timeout"
	IssuerError                Mode = "issuer_error"
	UpstreamNotTLS             Mode = "upstream_not_tls"
	UnexpectedCertificate      Mode = "unexpected_certificate"
	NoMatchingValidator        Mode = "no_matching_validator"
	EvidenceInvalid            Mode = "evidence_invalid"
	ReportDataMismatch         Mode = "report_data_mismatch"
	PolicyHashMismatch         Mode = "policy_hash_mismatch"
	MeasurementMismatch        Mode = "measurement_mismatch"
	TCBMismatch                Mode = "tcb_mismatch"
	ReferenceValueMismatch     Mode = "reference_value_mismatch"
	ClientRejectedCertificate  Mode = "client_rejected_certificate"
	UnsupportedATLSVersion     Mode = "unsupported_atls_version"
	ClockSkew                  Mode = "clock_skew"
	CoordinatorVersionMismatch Mode = "coordinator_version_mismatch"
	TLSAlert                   Mode = "tls_alert"
	UpstreamReset              Mode = "upstream_reset"
	CoordinatorRecoveryMode    Mode = "coordinator_recovery_mode"
	CoordinatorNoManifest      Mode = "coordinator_no_manifest"
	ManifestMismatch           Mode = "manifest_mismatch"
	CoordinatorAPIError        Mode = "coordinator_api_error"
	TunnelUnavailable          Mode = "tunnel_unavailable"
	RelayResourceExhausted     Mode = "relay_resource_exhausted"
	ManifestInvalid            Mode = "manifest_invalid"
)

// All lists every contract mode in the contract's order.
var All = []Mode{
	OK, ClientAborted, ClientNotTLS, UpstreamDNSFailure, UpstreamRefused,
	UpstreamDialTimeout, UpstreamUnreachable, LBClosedEarly, IssuerTimeout, IssuerError,
	UpstreamNotTLS, UnexpectedCertificate, NoMatchingValidator, EvidenceInvalid,
	ReportDataMismatch, PolicyHashMismatch, MeasurementMismatch, TCBMismatch,
	ReferenceValueMismatch, ClientRejectedCertificate, UnsupportedATLSVersion, ClockSkew,
	CoordinatorVersionMismatch, TLSAlert, UpstreamReset, CoordinatorRecoveryMode,
	CoordinatorNoManifest, ManifestMismatch, CoordinatorAPIError, TunnelUnavailable,
	RelayResourceExhausted, ManifestInvalid,
}

// Known reports whether m is a value of the contract's table.
func (m Mode) Known() bool {
	for _, k := range All {
		if k == m {
			return true
		}
	}
	return false
}

// IsEvidence reports whether m is decided by checking attestation evidence
// (package attest), as opposed to by watching bytes on the wire.
func (m Mode) IsEvidence() bool {
	switch m {
	case UnexpectedCertificate, NoMatchingValidator, EvidenceInvalid, ReportDataMismatch,
		PolicyHashMismatch, MeasurementMismatch, TCBMismatch, ReferenceValueMismatch:
		return true
	}
	return false
}

func (m Mode) String() string { return string(m) }
