package coordinator

import (
	"context"
	"fmt"
	"strings"
)

// Fault is one way a Coordinator (or what stands in front of it) fails in the
// field. The zero value FaultNone is a healthy Coordinator. The string values
// are stable: the demo and tests name faults by them.
type Fault string

// The faults, each reproducing one field failure.
const (
	FaultNone Fault = ""
	// FaultLBClose: a load balancer accepts, reads the ClientHello and closes
	// (FIN) before any server byte. CLI: "transport: authentication handshake failed: EOF".
	FaultLBClose Fault = "lb_close"
	// FaultLBReset: as FaultLBClose but with a TCP reset.
	FaultLBReset Fault = "lb_reset"
	// FaultIssuerSlow: the issuer takes IssuerDelay before answering (stuck
	// collateral fetch); the client's deadline usually expires first.
	FaultIssuerSlow Fault = "issuer_slow"
	// FaultIssuerError: the issuer fails; the ClientHello is answered with a
	// plaintext internal_error alert. CLI: "remote error: tls: internal error".
	FaultIssuerError Fault = "issuer_error"
	// FaultNoExtension: the certificate carries no attestation extension.
	// CLI: "no valid attestation document certificate extensions found".
	FaultNoExtension Fault = "no_extension"
	// FaultWrongPlatform: TDX evidence from an SNP Coordinator or vice versa.
	// CLI: "no matching validators found".
	FaultWrongPlatform Fault = "wrong_platform"
	// FaultWrongPolicyHash: HOST_DATA / MR_CONFIG_ID is another policy's hash.
	FaultWrongPolicyHash Fault = "wrong_policy_hash"
	// FaultWrongMeasurement: MEASUREMENT / MRTD differs from the reference.
	FaultWrongMeasurement Fault = "wrong_measurement"
	// FaultTCBLow: the reported TCB is below the reference minimum.
	FaultTCBLow Fault = "tcb_low"
	// FaultBadSignature: the report's signature does not verify.
	FaultBadSignature Fault = "bad_signature"
	// FaultReportDataUnbound: the report data is computed over another nonce.
	FaultReportDataUnbound Fault = "report_data_unbound"
	// FaultNotTLS: the port answers with HTTP/1.1 400. CLI: "tls: first record
	// does not look like a TLS handshake".
	FaultNotTLS Fault = "not_tls"
	// FaultResetAfterHandshake: the connection is reset right after a
	// successful handshake.
	FaultResetAfterHandshake Fault = "reset_after_handshake"
	// FaultRecoveryMode: GetManifests fails with Internal "syncing internal
	// state: coordinator is in recovery mode" until Recover is called.
	FaultRecoveryMode Fault = "recovery_mode"
	// FaultNoManifest: GetManifests fails with FailedPrecondition "no manifest
	// configured" until SetManifest is called.
	FaultNoManifest Fault = "no_manifest"
	// FaultManifestDiffers: GetManifests returns another manifest than the
	// one the Coordinator was created with.
	FaultManifestDiffers Fault = "manifest_differs"
	// FaultClockSkew: the Coordinator's clock runs ClockSkewAhead ahead, so its
	// certificate is not yet valid for the client.
	FaultClockSkew Fault = "clock_skew"
	// FaultOldCoordinator: the Coordinator reads the nonce only from the SNI,
	// like versions before the ALPN nonce; newer clients get internal_error.
	FaultOldCoordinator Fault = "old_coordinator"
	// FaultRecoveryModeGuard: as FaultRecoveryMode, in the form newer
	// Coordinators answer from their state guard: GetManifests fails with
	// FailedPrecondition "coordinator is in recovery mode" until Recover.
	FaultRecoveryModeGuard Fault = "recovery_mode_guard"
	// FaultAPIError: GetManifests fails with an error that is no Coordinator
	// state: Internal "getting history: ...", a Kubernetes RBAC denial from
	// the ConfigMap history store (see userapi.go).
	FaultAPIError Fault = "api_error"
	// FaultReplayedEvidence: the Coordinator reads the nonce only from the
	// SNI, as FaultOldCoordinator does (newer clients get internal_error), but
	// its evidence is bound to a fixed nonce of an earlier handshake instead
	// of the client's: evidence replayed from elsewhere, which must not pass
	// for an older Coordinator's.
	FaultReplayedEvidence Fault = "replayed_evidence"
	// FaultUntrustedIDKey: the SNP VM was launched with an ID block signed
	// by another key than the one Contrast derives from the measurement and
	// guest policy. CLI: "report ID key not trusted: <hex>".
	FaultUntrustedIDKey Fault = "untrusted_id_key"
	// FaultChipNotAllowed: the SNP report comes from a chip whose CHIP_ID
	// the manifest's AllowedChipIDs does not list. CLI: "chip ID <hex> not
	// in allowed chip IDs".
	FaultChipNotAllowed Fault = "chip_not_allowed"
	// FaultWrongMRSEAM: the TDX module's measurement (MRSEAM) is not the
	// manifest's (another TDX module version). CLI: "validating report
	// data: ... MR_SEAM ...".
	FaultWrongMRSEAM Fault = "wrong_mrseam"
	// FaultWrongXFAM: the TD's XFAM (enabled CPU extended features) is not
	// the manifest's.
	FaultWrongXFAM Fault = "wrong_xfam"
	// FaultPolicyAndMeasurement: a Coordinator from another release: both
	// the policy hash and the launch measurement (MEASUREMENT / MRTD)
	// differ. Which one the CLI prints depends on its era's check order.
	FaultPolicyAndMeasurement Fault = "policy_and_measurement"
	// FaultXFAMCETOnly: the TD's XFAM differs from the manifest's only in
	// the CET bits (11 and 12).
	FaultXFAMCETOnly Fault = "xfam_cet_only"
	// FaultMRConfigIDTail: MR_CONFIG_ID carries the right policy hash in its
	// first 32 bytes but non-zero bytes after it. The newest CLI compares
	// only the first 32 bytes; older ones all 48.
	FaultMRConfigIDTail Fault = "mr_config_id_tail"
)

// Faults lists every fault except FaultNone.
func Faults() []Fault {
	return []Fault{
		FaultLBClose, FaultLBReset, FaultIssuerSlow, FaultIssuerError, FaultNoExtension,
		FaultWrongPlatform, FaultWrongPolicyHash, FaultWrongMeasurement, FaultTCBLow,
		FaultBadSignature, FaultReportDataUnbound, FaultNotTLS, FaultResetAfterHandshake,
		FaultRecoveryMode, FaultNoManifest, FaultManifestDiffers, FaultClockSkew,
		FaultOldCoordinator,
		FaultRecoveryModeGuard, FaultAPIError, FaultReplayedEvidence,
		FaultUntrustedIDKey, FaultChipNotAllowed, FaultWrongMRSEAM, FaultWrongXFAM,
		FaultPolicyAndMeasurement, FaultXFAMCETOnly, FaultMRConfigIDTail,
	}
}

// ParseFault returns the fault named s ("" and "none" are FaultNone).
func ParseFault(s string) (Fault, error) {
	if s == "" || s == "none" {
		return FaultNone, nil
	}
	for _, f := range Faults() {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, 0, len(Faults()))
	for _, f := range Faults() {
		names = append(names, string(f))
	}
	return FaultNone, fmt.Errorf("unknown fault %q (known: %s)", s, strings.Join(names, ", "))
}

func (f Fault) String() string {
	if f == FaultNone {
		return "none"
	}
	return string(f)
}

// faultKey carries a connection's fault into the TLS handshake context, which
// Go hands to GetConfigForClient and GetCertificate.
type faultKey struct{}

func withFault(ctx context.Context, f Fault) context.Context {
	return context.WithValue(ctx, faultKey{}, f)
}

func faultFrom(ctx context.Context) Fault {
	f, _ := ctx.Value(faultKey{}).(Fault)
	return f
}
