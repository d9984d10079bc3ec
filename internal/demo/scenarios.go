// Package demo drives every failure mode ccproxy names through a real relay
// in front of a simulated Coordinator, on loopback, in one process: the
// `ccproxy demo` command and the end-to-end tests share its scenario table.
//
//	rep, err := demo.Run(ctx, demo.Config{Out: os.Stdout, TraceFile: "demo-traces.jsonl", Evidence: ev})
//	if rep.Failed() > 0 { ... } // a scenario was misnamed
package demo

import (
	"time"

	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/internal/atls"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// Client is how a scenario's client behaves.
type Client string

const (
	// ClientCLI is a Contrast CLI: attested handshake, then GetManifests,
	// then the manifest comparison of `contrast verify`.
	ClientCLI Client = "contrast-cli"
	// ClientHTTP sends an HTTP request to the aTLS port.
	ClientHTTP Client = "http"
	// ClientHangUp connects and closes without a byte.
	ClientHangUp Client = "hang-up"
	// ClientTLS10 offers only TLS 1.0, which the Coordinator refuses.
	ClientTLS10 Client = "tls1.0"
	// ClientATLSv2 offers an `atls:v2:` ALPN entry no Coordinator speaks.
	ClientATLSv2 Client = "atls-v2"
)

// Upstream names where a scenario's relay forwards.
type Upstream string

const (
	UpstreamCoordinator Upstream = ""             // the simulated Coordinator
	UpstreamClosedPort  Upstream = "closed-port"  // a loopback port nobody listens on
	UpstreamNoSuchName  Upstream = "unresolvable" // a name under .invalid
)

// Scenario is one field failure, reproduced.
type Scenario struct {
	Name     string
	Fault    coordinator.Fault
	Platform string // coordinator.PlatformSNP (default) or PlatformTDX
	Client   Client // ClientCLI by default
	Style    atls.NonceStyle
	TLS12    bool
	Upstream Upstream
	// ClockSkew shifts the Coordinator's clock without a fault (tolerated skews).
	ClockSkew time.Duration
	// SeedManifest runs the scenario against an SNP Coordinator with 4 vCPUs
	// and a manifest in the newest layout (1-vCPU seed and APEIP).
	SeedManifest bool
	// ClientPolicyHash makes the CLI expect another Coordinator policy than
	// the one the Coordinator runs with (and ccproxy expects).
	ClientPolicyHash bool
	// Legacy runs the scenario with the older manifest layout
	// (attesttest LegacyManifestJSON) for Coordinator, CLI and relay: that
	// CLI passes the policy hash to go-sev-guest / go-tdx-guest with the
	// other fields, where the newest checks it after a validator passed.
	Legacy bool
	// ExplainSays is the mode `ccproxy explain` names for the CLI's error
	// when it differs from Want, and why; by default the CLI's printed error
	// must explain as the mode the relay named for the same connection.
	ExplainSays failure.Mode
	ExplainWhy  string
	// Want is the failure mode ccproxy must name.
	Want failure.Mode
	// ByProbe: the mode is the Coordinator's state, which only `ccproxy
	// probe` can see (the relay sees a healthy connection).
	ByProbe bool
	// ClientSees is a regular expression for the client's error (the
	// symptom users report); empty means the client must succeed.
	ClientSees string
	// FirstFaults are the faults of the scenario's first connections, one
	// each, before Fault applies (coordinator.SetFaultSequence): a failure
	// that changes between a retrying client's attempts.
	FirstFaults []coordinator.Fault
	// Retries makes the client retry as `contrast set` does (SetLoop)
	// until its timeout.
	Retries bool
	// WantRun, when set, is the run the relay must mark: all of the
	// scenario's connections one run, their modes in order with repeats
	// collapsed ("lb_closed_early ×3, then issuer_timeout"). Want is then
	// the run's outcome, the mode that names what the client printed.
	WantRun string
}

// Scenarios is every scenario the demo drives, in the order it prints them.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "healthy SNP Coordinator", Want: failure.OK},
		{Name: "healthy TDX Coordinator", Platform: coordinator.PlatformTDX, Want: failure.OK},
		{Name: "older CLI (nonce in SNI)", Style: atls.NonceSNI, Want: failure.OK},
		{Name: "healthy, TLS 1.2 client", TLS12: true, Want: failure.OK},
		{Name: "Coordinator clock 1h ahead (tolerated)", ClockSkew: time.Hour, Want: failure.OK},
		{Name: "load balancer closes after ClientHello", Fault: coordinator.FaultLBClose, Want: failure.LBClosedEarly,
			ClientSees: `authentication handshake failed: EOF`},
		{Name: "load balancer resets after ClientHello", Fault: coordinator.FaultLBReset, Want: failure.LBClosedEarly,
			ClientSees: `authentication handshake failed: .*(reset by peer|EOF)`},
		{Name: "issuer stuck (slow collateral fetch)", Fault: coordinator.FaultIssuerSlow, Want: failure.IssuerTimeout,
			ClientSees: `context deadline exceeded`},
		{Name: "LB drops 3 attempts, then slow issuer (CLI retries)", Fault: coordinator.FaultIssuerSlow,
			FirstFaults: []coordinator.Fault{coordinator.FaultLBClose, coordinator.FaultLBClose, coordinator.FaultLBClose},
			Retries:     true, Want: failure.IssuerTimeout, WantRun: "lb_closed_early ×3, then issuer_timeout",
			ClientSees: `context deadline exceeded`},
		{Name: "issuer fails", Fault: coordinator.FaultIssuerError, Want: failure.IssuerError,
			ClientSees: `remote error: tls: internal error`},
		{Name: "CLI newer than Coordinator", Fault: coordinator.FaultOldCoordinator, Want: failure.CoordinatorVersionMismatch,
			ClientSees: `remote error: tls: internal error`},
		{Name: "older CLI, older Coordinator", Fault: coordinator.FaultOldCoordinator, Style: atls.NonceSNI, Want: failure.OK},
		{Name: "looks older, but replays evidence", Fault: coordinator.FaultReplayedEvidence, Want: failure.ReportDataMismatch,
			ClientSees: `remote error: tls: internal error`, ExplainSays: failure.IssuerError,
			ExplainWhy: "the CLI sees only the internal_error alert; the relay's own handshake with the nonce in the SNI finds the evidence bound to no nonce it sent"},
		{Name: "wrong service on the port (HTTP)", Fault: coordinator.FaultNotTLS, Want: failure.UpstreamNotTLS,
			ClientSees: `first record does not look like a TLS handshake`},
		{Name: "upstream port closed", Upstream: UpstreamClosedPort, Want: failure.UpstreamRefused,
			ClientSees: `(reset by peer|EOF|refused)`},
		{Name: "upstream name does not resolve", Upstream: UpstreamNoSuchName, Want: failure.UpstreamDNSFailure,
			ClientSees: `(reset by peer|EOF|refused)`},
		{Name: "certificate without attestation", Fault: coordinator.FaultNoExtension, Want: failure.UnexpectedCertificate,
			ClientSees: `no valid attestation document certificate extensions found`},
		{Name: "evidence for the other platform", Fault: coordinator.FaultWrongPlatform, Want: failure.NoMatchingValidator,
			ClientSees: `no matching validators found`},
		{Name: "wrong policy hash (SNP HOST_DATA)", Fault: coordinator.FaultWrongPolicyHash, Want: failure.PolicyHashMismatch,
			ClientSees: `wrong policy hash for Coordinator: got [0-9a-f]+, want \[[0-9a-f]+\]`},
		{Name: "wrong policy hash (TDX MR_CONFIG_ID)", Fault: coordinator.FaultWrongPolicyHash, Platform: coordinator.PlatformTDX,
			Want: failure.PolicyHashMismatch, ClientSees: `wrong policy hash for Coordinator: got [0-9a-f]+, want \[[0-9a-f]+\]`},
		{Name: "wrong policy hash, TLS 1.2 (seen passively)", Fault: coordinator.FaultWrongPolicyHash, TLS12: true,
			Want: failure.PolicyHashMismatch, ClientSees: `wrong policy hash for Coordinator`},
		{Name: "wrong policy hash, older CLI (SNP HOST_DATA)", Fault: coordinator.FaultWrongPolicyHash, Legacy: true, Want: failure.PolicyHashMismatch,
			ClientSees: `HOST_DATA is [0-9a-f]+\. Expect [0-9a-f]+`},
		{Name: "wrong policy hash, older CLI (TDX MR_CONFIG_ID)", Fault: coordinator.FaultWrongPolicyHash, Platform: coordinator.PlatformTDX, Legacy: true,
			Want: failure.PolicyHashMismatch, ClientSees: `MR_CONFIG_ID is [0-9a-f]+\. Expect [0-9a-f]+`},
		// Another release's Coordinator: policy hash and measurement both
		// differ. The newest CLI prints the measurement (its policy check
		// runs only after a validator passed); an older SNP CLI prints
		// HOST_DATA first, an older TDX CLI MR_TD first (go-tdx-guest's
		// field order).
		{Name: "policy hash and measurement wrong (SNP)", Fault: coordinator.FaultPolicyAndMeasurement, Want: failure.MeasurementMismatch,
			ClientSees: `report field MEASUREMENT is`},
		{Name: "policy hash and measurement wrong (SNP), TLS 1.2", Fault: coordinator.FaultPolicyAndMeasurement, TLS12: true,
			Want: failure.MeasurementMismatch, ClientSees: `report field MEASUREMENT is`},
		{Name: "policy hash and measurement wrong (SNP, newest manifest)", Fault: coordinator.FaultPolicyAndMeasurement, SeedManifest: true,
			Want: failure.MeasurementMismatch, ClientSees: `measurement does not match any vCPU count from 1 to 220`},
		{Name: "policy hash and measurement wrong (TDX)", Fault: coordinator.FaultPolicyAndMeasurement, Platform: coordinator.PlatformTDX,
			Want: failure.MeasurementMismatch, ClientSees: `quote field MR_TD is`},
		{Name: "policy hash and measurement wrong (TDX), TLS 1.2", Fault: coordinator.FaultPolicyAndMeasurement, Platform: coordinator.PlatformTDX, TLS12: true,
			Want: failure.MeasurementMismatch, ClientSees: `quote field MR_TD is`},
		{Name: "policy hash and measurement wrong, older CLI (SNP)", Fault: coordinator.FaultPolicyAndMeasurement, Legacy: true,
			Want: failure.PolicyHashMismatch, ClientSees: `HOST_DATA is [0-9a-f]+\. Expect [0-9a-f]+; report field MEASUREMENT`},
		{Name: "policy hash and measurement wrong, older CLI (SNP), TLS 1.2", Fault: coordinator.FaultPolicyAndMeasurement, Legacy: true, TLS12: true,
			Want: failure.PolicyHashMismatch, ClientSees: `HOST_DATA is [0-9a-f]+\. Expect [0-9a-f]+; report field MEASUREMENT`},
		{Name: "policy hash and measurement wrong, older CLI (TDX)", Fault: coordinator.FaultPolicyAndMeasurement, Platform: coordinator.PlatformTDX, Legacy: true,
			Want: failure.MeasurementMismatch, ClientSees: `quote field MR_TD is [0-9a-f]+\. Expect [0-9a-f]+; quote field MR_CONFIG_ID`},
		// MR_CONFIG_ID with the right hash and a non-zero tail: the newest
		// CLI reads only the first 32 bytes; older ones compare all 48.
		{Name: "MR_CONFIG_ID tail not zero (TDX)", Fault: coordinator.FaultMRConfigIDTail, Platform: coordinator.PlatformTDX, Want: failure.OK},
		{Name: "MR_CONFIG_ID tail not zero (TDX), TLS 1.2", Fault: coordinator.FaultMRConfigIDTail, Platform: coordinator.PlatformTDX, TLS12: true, Want: failure.OK},
		{Name: "MR_CONFIG_ID tail not zero, older CLI (TDX)", Fault: coordinator.FaultMRConfigIDTail, Platform: coordinator.PlatformTDX, Legacy: true,
			Want: failure.PolicyHashMismatch, ClientSees: `quote field MR_CONFIG_ID is [0-9a-f]+\. Expect [0-9a-f]{64}0{32}`},
		// XFAM differing only in the CET bits (QEMU sets them where the host
		// CPU has CET): the newest CLI compares XFAM ignoring them
		// (internal/attestation/tdx validateXfamIgnoringCET); older ones
		// pass XFAM to go-tdx-guest, which compares all 8 bytes.
		{Name: "XFAM differs only in CET bits (TDX)", Fault: coordinator.FaultXFAMCETOnly, Platform: coordinator.PlatformTDX, Want: failure.OK},
		{Name: "XFAM differs only in CET bits (TDX), TLS 1.2", Fault: coordinator.FaultXFAMCETOnly, Platform: coordinator.PlatformTDX, TLS12: true, Want: failure.OK},
		{Name: "XFAM differs only in CET bits, older CLI (TDX)", Fault: coordinator.FaultXFAMCETOnly, Platform: coordinator.PlatformTDX, Legacy: true,
			Want: failure.ReferenceValueMismatch, ClientSees: `quote field XFAM is`},
		{Name: "wrong launch measurement", Fault: coordinator.FaultWrongMeasurement, Want: failure.MeasurementMismatch,
			ClientSees: `MEASUREMENT`},
		{Name: "wrong MRTD (TDX)", Fault: coordinator.FaultWrongMeasurement, Platform: coordinator.PlatformTDX,
			Want: failure.MeasurementMismatch, ClientSees: `MR_TD`},
		{Name: "TCB below minimum", Fault: coordinator.FaultTCBLow, Want: failure.TCBMismatch,
			ClientSees: `TCB`},
		{Name: "healthy SNP, newest manifest (4 vCPUs)", SeedManifest: true, Want: failure.OK},
		{Name: "another image, newest manifest", Fault: coordinator.FaultWrongMeasurement, SeedManifest: true,
			Want: failure.MeasurementMismatch, ClientSees: `measurement does not match any vCPU count from 1 to 220`},
		{Name: "ID block signed by another key", Fault: coordinator.FaultUntrustedIDKey, Want: failure.ReferenceValueMismatch,
			ClientSees: `report ID key not trusted: [0-9a-f]{96}`},
		{Name: "ID block not trusted, TLS 1.2 (seen passively)", Fault: coordinator.FaultUntrustedIDKey, TLS12: true,
			Want: failure.ReferenceValueMismatch, ClientSees: `report ID key not trusted`},
		{Name: "chip not in AllowedChipIDs", Fault: coordinator.FaultChipNotAllowed, Want: failure.ReferenceValueMismatch,
			ClientSees: `chip ID [0-9a-f]+ not in allowed chip IDs`},
		{Name: "TDX module (MRSEAM) not in the manifest", Fault: coordinator.FaultWrongMRSEAM, Platform: coordinator.PlatformTDX,
			Want: failure.ReferenceValueMismatch, ClientSees: `MR_SEAM`},
		{Name: "TD XFAM differs from the manifest", Fault: coordinator.FaultWrongXFAM, Platform: coordinator.PlatformTDX,
			Want: failure.ReferenceValueMismatch, ClientSees: `XFAM`},
		{Name: "bad report signature", Fault: coordinator.FaultBadSignature, Want: failure.EvidenceInvalid,
			ClientSees: `verif`},
		{Name: "report not bound to the nonce", Fault: coordinator.FaultReportDataUnbound, Want: failure.ReportDataMismatch,
			ClientSees: `REPORT_DATA`},
		// The certificate may reach the relay's watcher before the client's
		// hello with its nonce (internal/watch): named the same every time.
		{Name: "TDX report not bound, TLS 1.2 (seen passively)", Fault: coordinator.FaultReportDataUnbound, Platform: coordinator.PlatformTDX,
			TLS12: true, Want: failure.ReportDataMismatch, ClientSees: `REPORT_DATA`},
		{Name: "Coordinator clock 3h ahead", Fault: coordinator.FaultClockSkew, Want: failure.ClockSkew,
			ClientSees: `certificate has expired or is not yet valid`},
		{Name: "CLI expects another policy", ClientPolicyHash: true, Want: failure.ClientRejectedCertificate,
			ClientSees: `wrong policy hash for Coordinator`, ExplainSays: failure.PolicyHashMismatch,
			ExplainWhy: "the relay's own reference values accept the evidence; only the client expects another policy"},
		{Name: "reset after the handshake", Fault: coordinator.FaultResetAfterHandshake, Want: failure.UpstreamReset,
			ClientSees: `reset by peer|broken pipe|EOF`},
		{Name: "Coordinator in recovery mode", Fault: coordinator.FaultRecoveryMode, Want: failure.CoordinatorRecoveryMode, ByProbe: true,
			ClientSees: `recovery mode`},
		{Name: "no manifest set yet", Fault: coordinator.FaultNoManifest, Want: failure.CoordinatorNoManifest, ByProbe: true,
			ClientSees: `no manifest configured`},
		{Name: "recovery mode (newer, state guard)", Fault: coordinator.FaultRecoveryModeGuard, Want: failure.CoordinatorRecoveryMode, ByProbe: true,
			ClientSees: `code = FailedPrecondition desc = coordinator is in recovery mode`},
		{Name: "user API error (history store forbidden)", Fault: coordinator.FaultAPIError, Want: failure.CoordinatorAPIError, ByProbe: true,
			ClientSees: `code = Internal desc = getting history: .* is forbidden`},
		{Name: "Coordinator runs another manifest", Fault: coordinator.FaultManifestDiffers, Want: failure.ManifestMismatch, ByProbe: true,
			ClientSees: `active manifest does not match expected manifest`},
		{Name: "client speaks HTTP to 1313", Client: ClientHTTP, Want: failure.ClientNotTLS, ClientSees: `.`},
		{Name: "client hangs up at once", Client: ClientHangUp, Want: failure.ClientAborted, ClientSees: `.`},
		{Name: "client offers only TLS 1.0", Client: ClientTLS10, Want: failure.TLSAlert, ClientSees: `protocol version`},
		{Name: "client speaks atls v2", Client: ClientATLSv2, Want: failure.UnsupportedATLSVersion, ClientSees: `internal error`},
	}
}
