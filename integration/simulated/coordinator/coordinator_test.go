package coordinator_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/contrastcli"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinatortest"
	"github.com/ccproxy-dev/ccproxy/internal/atls"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// authority is shared by all tests: building one costs tens of milliseconds.
var authority = sync.OnceValues(attesttest.NewAuthority)

// start runs a Coordinator on a loopback port for the duration of the test
// and returns it with its address.
func start(t *testing.T, cfg coordinator.Config) (*coordinator.Coordinator, string) {
	t.Helper()
	a, err := authority()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Authority == nil {
		cfg.Authority = a
	}
	c, addr := coordinatortest.Start(t, cfg)
	for c.Addr() == "" {
		time.Sleep(time.Millisecond)
	}
	if c.Addr() != addr {
		t.Fatalf("Addr() = %q, want %q", c.Addr(), addr)
	}
	return c, addr
}

// cliOptions are the options of a CLI that trusts c's authority and holds
// c's manifest.
func cliOptions(c *coordinator.Coordinator) contrastcli.Options {
	return contrastcli.Options{
		Manifest:    c.Manifest(),
		SNPRootsPEM: c.Authority().SNPRootsPEM(),
		TDXRootsPEM: c.Authority().TDXRootsPEM(),
		Timeout:     10 * time.Second,
	}
}

const handshakePrefix = `rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: `

func TestHealthy(t *testing.T) {
	for _, platform := range []string{coordinator.PlatformSNP, coordinator.PlatformTDX} {
		for _, style := range []atls.NonceStyle{atls.NonceALPN, atls.NonceSNI} {
			for _, tls12 := range []bool{false, true} {
				name := platform + "/" + style.String()
				if tls12 {
					name += "/tls1.2"
				}
				t.Run(name, func(t *testing.T) {
					c, addr := start(t, coordinator.Config{Platform: platform})
					opts := cliOptions(c)
					opts.NonceStyle = style
					opts.MaxTLS12 = tls12
					res, err := contrastcli.Verify(t.Context(), addr, opts)
					if err != nil {
						t.Fatalf("Verify: %v", err)
					}
					if len(res.Manifests) != 1 || len(res.RootCA) == 0 || len(res.MeshCA) == 0 {
						t.Fatalf("GetManifests answer: %d manifests, root %d bytes, mesh %d bytes", len(res.Manifests), len(res.RootCA), len(res.MeshCA))
					}
					if len(res.Attempts) != 1 {
						t.Fatalf("%d handshakes, want 1", len(res.Attempts))
					}
					want := uint16(0x0304)
					if tls12 {
						want = 0x0303
					}
					if v := res.Attempts[0].TLSVersion; v != want {
						t.Errorf("TLS version %#x, want %#x", v, want)
					}
				})
			}
		}
	}
}

// TestHealthyVCPUSeed: a Coordinator VM with several vCPUs against the
// newest manifest layout (1-vCPU seed and APEIP): the CLI finds the vCPU
// count, derives the ID key for it and accepts; ccproxy verifies the same
// evidence.
func TestHealthyVCPUSeed(t *testing.T) {
	for _, vcpus := range []int{1, 3, 64} {
		t.Run(fmt.Sprintf("%d-vcpus", vcpus), func(t *testing.T) {
			c, addr := start(t, coordinator.Config{VCPUs: vcpus})
			if !strings.Contains(string(c.Manifest()), `"APEIP"`) {
				t.Fatal("a Coordinator with VCPUs must default to the seed manifest")
			}
			res, err := contrastcli.Verify(t.Context(), addr, cliOptions(c))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			m, err := attest.ParseManifest(c.Manifest())
			if err != nil {
				t.Fatal(err)
			}
			cert := res.Attempts[0].Certificate
			r := attest.CheckCertificate(t.Context(), cert, attest.Options{
				Offline: true, SNPRoots: c.Authority().SNPRootsPEM(), Reference: m, Nonce: res.Attempts[0].Nonce,
			})
			if r.Mode != failure.OK || r.Verdict != attest.Verified {
				t.Fatalf("ccproxy: %s/%s (%s)", r.Verdict, r.Mode, r.Detail)
			}
		})
	}
	if _, err := coordinator.New(coordinator.Config{Platform: coordinator.PlatformTDX, VCPUs: 2}); err == nil {
		t.Error("VCPUs on a TDX Coordinator must be refused")
	}
}

func TestLegacyServiceName(t *testing.T) {
	c, addr := start(t, coordinator.Config{})
	opts := cliOptions(c)
	opts.Legacy = true
	if _, err := contrastcli.Verify(t.Context(), addr, opts); err != nil {
		t.Fatal(err)
	}
}

// TestFaults drives every knob against the CLI and checks the text a user
// would read. Patterns are regular expressions; <NONCE> stands for the
// client nonce of the handshake.
func TestFaults(t *testing.T) {
	tests := []struct {
		fault    coordinator.Fault
		platform string
		legacy   bool // client uses attesttest's older manifest layout
		style    atls.NonceStyle
		auth     string
		timeout  time.Duration
		vcpus    int // the newest manifest layout: a seed measurement and APEIP
		want     string
		code     codes.Code // gRPC status code of the error, when there is one
	}{
		{fault: coordinator.FaultLBClose, want: `^getting manifests: ` + regexp.QuoteMeta(handshakePrefix+`EOF"`) + `$`, code: codes.Unavailable},
		{fault: coordinator.FaultLBReset, want: regexp.QuoteMeta(handshakePrefix) + `read tcp .*: connection reset by peer"$`, code: codes.Unavailable},
		{fault: coordinator.FaultIssuerSlow, timeout: time.Second, want: `context deadline exceeded`, code: codes.DeadlineExceeded},
		{fault: coordinator.FaultIssuerError, want: regexp.QuoteMeta(handshakePrefix + `remote error: tls: internal error"`), code: codes.Unavailable},
		{fault: coordinator.FaultNoExtension, want: regexp.QuoteMeta(handshakePrefix + `no valid attestation document certificate extensions found"`), code: codes.Unavailable},
		{fault: coordinator.FaultWrongPlatform, want: regexp.QuoteMeta(handshakePrefix + `no matching validators found"`), code: codes.Unavailable},
		{fault: coordinator.FaultWrongPlatform, platform: coordinator.PlatformTDX, want: regexp.QuoteMeta(handshakePrefix + `no matching validators found"`), code: codes.Unavailable},
		{
			// The newest CLI (its manifest layout) checks the policy hash
			// after a validator passed.
			fault: coordinator.FaultWrongPolicyHash,
			want:  regexp.QuoteMeta(handshakePrefix+`with AtlsConnectionNonce <NONCE>: wrong policy hash for Coordinator: got `) + `[0-9a-f]{64}, want \[[0-9a-f]{64}\]"$`,
			code:  codes.Unavailable,
		},
		{
			fault: coordinator.FaultWrongPolicyHash, platform: coordinator.PlatformTDX,
			want: regexp.QuoteMeta(handshakePrefix+`with AtlsConnectionNonce <NONCE>: wrong policy hash for Coordinator: got `) + `[0-9a-f]{64}, want \[[0-9a-f]{64}\]"$`,
			code: codes.Unavailable,
		},
		{
			// Older CLIs pass it to the library with the other fields.
			fault: coordinator.FaultWrongPolicyHash, legacy: true,
			want: regexp.QuoteMeta(handshakePrefix+`with AtlsConnectionNonce <NONCE>:  validator snp-0-MILAN failed: validating report claims: report field HOST_DATA is `) + `[0-9a-f]{64}\. Expect [0-9a-f]{64}`,
			code: codes.Unavailable,
		},
		{
			fault: coordinator.FaultWrongPolicyHash, platform: coordinator.PlatformTDX, legacy: true,
			want: regexp.QuoteMeta(handshakePrefix+`with AtlsConnectionNonce <NONCE>:  validator tdx-0 failed: validating report data: quote field MR_CONFIG_ID is `) + `[0-9a-f]{96}\. Expect [0-9a-f]{64}0{32}`,
			code: codes.Unavailable,
		},
		// Policy hash and measurement both wrong: the newest CLI prints the
		// measurement (the policy check never runs); older SNP CLIs print
		// both, HOST_DATA first; older TDX CLIs MR_TD first.
		{fault: coordinator.FaultPolicyAndMeasurement, want: `validator snp-0-MILAN failed: validating report claims: report field MEASUREMENT is [0-9a-f]{96}\. Expect [0-9a-f]{96}; report ID key not trusted`, code: codes.Unavailable},
		{fault: coordinator.FaultPolicyAndMeasurement, vcpus: 6, want: `validator snp-0-MILAN failed: measurement does not match any vCPU count from 1 to 220"$`, code: codes.Unavailable},
		{fault: coordinator.FaultPolicyAndMeasurement, platform: coordinator.PlatformTDX, want: `validator tdx-0 failed: validating report data: quote field MR_TD is [0-9a-f]{96}\. Expect [0-9a-f]{96}"$`, code: codes.Unavailable},
		{fault: coordinator.FaultPolicyAndMeasurement, legacy: true, want: `validating report claims: report field HOST_DATA is [0-9a-f]{64}\. Expect [0-9a-f]{64}; report field MEASUREMENT is`, code: codes.Unavailable},
		{fault: coordinator.FaultPolicyAndMeasurement, platform: coordinator.PlatformTDX, legacy: true, want: `validating report data: quote field MR_TD is [0-9a-f]{96}\. Expect [0-9a-f]{96}; quote field MR_CONFIG_ID is`, code: codes.Unavailable},
		// MR_CONFIG_ID's tail: only older CLIs compare it.
		{fault: coordinator.FaultMRConfigIDTail, platform: coordinator.PlatformTDX, legacy: true, want: `quote field MR_CONFIG_ID is [0-9a-f]{96}\. Expect [0-9a-f]{64}0{32}`, code: codes.Unavailable},
		// XFAM differing only in the CET bits: the newest CLI ignores them
		// (see TestXFAMCETOnlyPassesTheNewestCLI); older CLIs pass XFAM to
		// go-tdx-guest, which compares all 8 bytes.
		{fault: coordinator.FaultXFAMCETOnly, platform: coordinator.PlatformTDX, legacy: true, want: `validator tdx-0 failed: validating report data: quote field XFAM is [0-9a-f]{16}\. Expect [0-9a-f]{16}`, code: codes.Unavailable},
		{fault: coordinator.FaultWrongMeasurement, want: `validator snp-0-MILAN failed: validating report claims: report field MEASUREMENT is [0-9a-f]{96}\. Expect`, code: codes.Unavailable},
		{fault: coordinator.FaultWrongMeasurement, platform: coordinator.PlatformTDX, want: `validator tdx-0 failed: validating report data: quote field MR_TD is [0-9a-f]{96}\. Expect`, code: codes.Unavailable},
		{fault: coordinator.FaultTCBLow, want: `validator snp-0-MILAN failed: validating report claims: .*is lower than the policy minimum`, code: codes.Unavailable},
		{fault: coordinator.FaultTCBLow, platform: coordinator.PlatformTDX, legacy: true, want: `validator tdx-0 failed: validating report data: TEE TCB security-version number \[[0-9 ]+\] is less than the required minimum \[[0-9 ]+\]`, code: codes.Unavailable},
		{fault: coordinator.FaultBadSignature, want: `validator snp-0-MILAN failed: verifying report: `, code: codes.Unavailable},
		{fault: coordinator.FaultBadSignature, platform: coordinator.PlatformTDX, want: `validator tdx-0 failed: verifying report signature: `, code: codes.Unavailable},
		{fault: coordinator.FaultReportDataUnbound, want: `validator snp-0-MILAN failed: validating report claims: report field REPORT_DATA is [0-9a-f]{128}\. Expect`, code: codes.Unavailable},
		{fault: coordinator.FaultReportDataUnbound, platform: coordinator.PlatformTDX, want: `validator tdx-0 failed: validating report data: quote field REPORT_DATA is [0-9a-f]{128}\. Expect`, code: codes.Unavailable},
		{fault: coordinator.FaultNotTLS, want: regexp.QuoteMeta(handshakePrefix + `tls: first record does not look like a TLS handshake"`), code: codes.Unavailable},
		{fault: coordinator.FaultResetAfterHandshake, want: `^getting manifests: rpc error: code = Unavailable desc = connection error: desc = "(transport: failed to write client preface|error reading server preface): .*(connection reset by peer|broken pipe|EOF)"$`, code: codes.Unavailable},
		{fault: coordinator.FaultRecoveryMode, want: `^getting manifests: rpc error: code = Internal desc = syncing internal state: coordinator is in recovery mode$`, code: codes.Internal},
		{fault: coordinator.FaultNoManifest, want: `^getting manifests: rpc error: code = FailedPrecondition desc = no manifest configured$`, code: codes.FailedPrecondition},
		{fault: coordinator.FaultManifestDiffers, want: `^active manifest does not match expected manifest$`},
		{
			fault: coordinator.FaultClockSkew,
			want:  regexp.QuoteMeta(handshakePrefix+`process certificate: verify certificate: x509: certificate has expired or is not yet valid: current time `) + `\S+ is before \S+"$`,
			code:  codes.Unavailable,
		},
		{
			fault: coordinator.FaultOldCoordinator, auth: "localhost",
			want: regexp.QuoteMeta(handshakePrefix + `remote error: tls: internal error"`), code: codes.Unavailable,
		},
		{fault: coordinator.FaultRecoveryModeGuard, want: `^getting manifests: rpc error: code = FailedPrecondition desc = coordinator is in recovery mode$`, code: codes.FailedPrecondition},
		{
			fault: coordinator.FaultAPIError,
			want:  `^getting manifests: rpc error: code = Internal desc = getting history: getting latest transition: configmaps "[a-z-]+" is forbidden: User "system:serviceaccount:[a-z]+:coordinator" cannot get resource "configmaps"`,
			code:  codes.Internal,
		},
		{
			// To a newer CLI it looks like an old Coordinator ...
			fault: coordinator.FaultReplayedEvidence, auth: "localhost",
			want: regexp.QuoteMeta(handshakePrefix + `remote error: tls: internal error"`), code: codes.Unavailable,
		},
		{
			// ... but an older CLI finds its evidence bound to another nonce.
			fault: coordinator.FaultReplayedEvidence, style: atls.NonceSNI,
			want: `validator snp-0-MILAN failed: validating report claims: report field REPORT_DATA is [0-9a-f]{128}\. Expect`, code: codes.Unavailable,
		},
		{fault: coordinator.FaultUntrustedIDKey, want: `validator snp-0-MILAN failed: validating report claims: report ID key not trusted: [0-9a-f]{96}"$`, code: codes.Unavailable},
		{fault: coordinator.FaultUntrustedIDKey, vcpus: 6, want: `validator snp-0-MILAN failed: validating report claims: report ID key not trusted: [0-9a-f]{96}"$`, code: codes.Unavailable},
		{fault: coordinator.FaultChipNotAllowed, want: `validator snp-0-MILAN failed: chip ID [0-9a-f]{128} not in allowed chip IDs"$`, code: codes.Unavailable},
		{fault: coordinator.FaultWrongMeasurement, vcpus: 6, want: `validator snp-0-MILAN failed: measurement does not match any vCPU count from 1 to 220"$`, code: codes.Unavailable},
		{fault: coordinator.FaultWrongMRSEAM, platform: coordinator.PlatformTDX, want: `validator tdx-0 failed: validating report data: quote field MR_SEAM is [0-9a-f]{96}\. Expect [0-9a-f]{96}`, code: codes.Unavailable},
		{fault: coordinator.FaultWrongXFAM, platform: coordinator.PlatformTDX, want: `validator tdx-0 failed: validating xfam: XFAM mismatch: got [0-9a-f]{16}, want [0-9a-f]{16} \(ignoring CET bits\)`, code: codes.Unavailable},
		{fault: coordinator.FaultWrongXFAM, platform: coordinator.PlatformTDX, legacy: true, want: `validator tdx-0 failed: validating report data: quote field XFAM is [0-9a-f]{16}\. Expect [0-9a-f]{16}`, code: codes.Unavailable},
	}
	for _, tc := range tests {
		platform := tc.platform
		if platform == "" {
			platform = coordinator.PlatformSNP
		}
		name := string(tc.fault) + "/" + platform + "/" + tc.style.String()
		if tc.vcpus != 0 {
			name += fmt.Sprintf("/%d-vcpus", tc.vcpus)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, addr := start(t, coordinator.Config{Platform: platform, Fault: tc.fault, IssuerDelay: 5 * time.Second, VCPUs: tc.vcpus})
			opts := cliOptions(c)
			if tc.legacy {
				opts.Manifest = c.Authority().LegacyManifestJSON(platform)
			}
			opts.NonceStyle = tc.style
			opts.Authority = tc.auth
			if tc.timeout != 0 {
				opts.Timeout = tc.timeout
			}
			begin := time.Now()
			res, err := contrastcli.Verify(t.Context(), addr, opts)
			if err == nil {
				t.Fatal("Verify succeeded")
			}
			want := tc.want
			if strings.Contains(want, "<NONCE>") {
				// gRPC may have made more than one attempt by the time the call
				// fails; the error must name one of the nonces actually sent.
				want = strings.ReplaceAll(want, "<NONCE>", "([0-9a-f]{64})")
				m := regexp.MustCompile(want).FindStringSubmatch(err.Error())
				if m == nil {
					t.Fatalf("error:\n  %v\nwant match:\n  %s", err, want)
				}
				if !slices.ContainsFunc(res.Attempts, func(a contrastcli.Attempt) bool { return hex.EncodeToString(a.Nonce) == m[1] }) {
					t.Fatalf("error names nonce %s, which no recorded handshake sent", m[1])
				}
			}
			if !regexp.MustCompile(want).MatchString(err.Error()) {
				t.Fatalf("error:\n  %v\nwant match:\n  %s", err, want)
			}
			if got := status.Code(errors.Unwrap(err)); tc.code != codes.OK && got != tc.code {
				t.Errorf("gRPC code %v, want %v", got, tc.code)
			}
			t.Logf("%s after %v: %v", tc.fault, time.Since(begin).Round(time.Millisecond), err)
		})
	}
}

// A Coordinator clock 1 h ahead is within the certificate's margin.
func TestClockSkewTolerated(t *testing.T) {
	c, addr := start(t, coordinator.Config{ClockSkew: time.Hour})
	if _, err := contrastcli.Verify(t.Context(), addr, cliOptions(c)); err != nil {
		t.Fatal(err)
	}
	c.SetClockSkew(-90 * time.Minute)
	if _, err := contrastcli.Verify(t.Context(), addr, cliOptions(c)); err != nil {
		t.Fatal(err)
	}
	c.SetClockSkew(-150 * time.Minute)
	_, err := contrastcli.Verify(t.Context(), addr, cliOptions(c))
	if err == nil || !strings.Contains(err.Error(), "x509: certificate has expired or is not yet valid: current time") || !strings.Contains(err.Error(), "is after") {
		t.Fatalf("clock 2.5 h behind: %v", err)
	}
}

// TestXFAMCETOnlyPassesTheNewestCLI: a TD whose XFAM differs from the
// manifest's only in the CET bits (QEMU enables CET where the host CPU has
// it) passes the newest CLI, which compares XFAM ignoring them.
func TestXFAMCETOnlyPassesTheNewestCLI(t *testing.T) {
	c, addr := start(t, coordinator.Config{Platform: coordinator.PlatformTDX, Fault: coordinator.FaultXFAMCETOnly})
	if _, err := contrastcli.Verify(t.Context(), addr, cliOptions(c)); err != nil {
		t.Fatal(err)
	}
}

// The old Coordinator serves old clients; the ALPN client with an IP target
// sends no SNI, which the old Coordinator decodes to an empty nonce, so the
// evidence is bound to the wrong nonce.
func TestOldCoordinator(t *testing.T) {
	c, addr := start(t, coordinator.Config{Fault: coordinator.FaultOldCoordinator})
	opts := cliOptions(c)
	opts.NonceStyle = atls.NonceSNI
	if _, err := contrastcli.Verify(t.Context(), addr, opts); err != nil {
		t.Fatalf("old client: %v", err)
	}
	opts.NonceStyle = atls.NonceALPN
	_, err := contrastcli.Verify(t.Context(), addr, opts)
	if err == nil || !strings.Contains(err.Error(), "report field REPORT_DATA is") {
		t.Fatalf("new client without SNI: %v", err)
	}
}

// Faults change at runtime and the state faults end the way they end in the
// field: `contrast recover` and `contrast set`.
func TestRuntimeChangesAndStateTransitions(t *testing.T) {
	c, addr := start(t, coordinator.Config{})
	ctx := t.Context()
	opts := cliOptions(c)
	if _, err := contrastcli.Verify(ctx, addr, opts); err != nil {
		t.Fatal(err)
	}
	c.SetFault(coordinator.FaultIssuerError)
	if _, err := contrastcli.Verify(ctx, addr, opts); err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Fatalf("after SetFault(issuer_error): %v", err)
	}

	// Recovery mode ends with Recover.
	c.SetFault(coordinator.FaultRecoveryMode)
	cl, err := contrastcli.Dial(ctx, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.GetManifests(ctx); status.Code(errors.Unwrap(err)) != codes.Internal {
		t.Fatalf("recovery mode: %v", err)
	}
	if err := cl.Recover(ctx); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if c.Fault() != coordinator.FaultNone {
		t.Fatalf("fault after Recover: %v", c.Fault())
	}
	if err := cl.Recover(ctx); status.Code(errors.Unwrap(err)) != codes.FailedPrecondition || !strings.Contains(err.Error(), "coordinator is already recovered") {
		t.Fatalf("second Recover: %v", err)
	}

	// No manifest ends with SetManifest; a second SetManifest needs a
	// workload owner key, which the default manifest does not list.
	c.SetFault(coordinator.FaultNoManifest)
	if err := cl.SetManifest(ctx, c.Manifest()); err != nil {
		t.Fatalf("SetManifest: %v", err)
	}
	if _, err := contrastcli.Verify(ctx, addr, opts); err != nil {
		t.Fatalf("after SetManifest: %v", err)
	}
	err = cl.SetManifest(ctx, c.Manifest())
	if status.Code(errors.Unwrap(err)) != codes.PermissionDenied || !strings.Contains(err.Error(), "validating peer: setting manifest is disabled") {
		t.Fatalf("second SetManifest: %v", err)
	}
}

// The newer, state-guard form of recovery mode also ends with Recover, and
// SetManifest is refused meanwhile.
func TestRecoveryModeGuard(t *testing.T) {
	c, addr := start(t, coordinator.Config{Fault: coordinator.FaultRecoveryModeGuard})
	ctx := t.Context()
	cl, err := contrastcli.Dial(ctx, addr, cliOptions(c))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.GetManifests(ctx); status.Code(errors.Unwrap(err)) != codes.FailedPrecondition {
		t.Fatalf("GetManifests in recovery mode: %v", err)
	}
	if err := cl.SetManifest(ctx, c.Manifest()); status.Code(errors.Unwrap(err)) != codes.FailedPrecondition || !strings.Contains(err.Error(), "coordinator is in recovery mode") {
		t.Fatalf("SetManifest in recovery mode: %v", err)
	}
	if err := cl.Recover(ctx); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if _, err := contrastcli.Verify(ctx, addr, cliOptions(c)); err != nil {
		t.Fatalf("after Recover: %v", err)
	}
}

// FaultReplayedEvidence binds every handshake's evidence to one fixed nonce,
// under the Coordinator's key: the same REPORT_DATA each time, bound to
// neither handshake's nonce.
func TestReplayedEvidence(t *testing.T) {
	c, addr := start(t, coordinator.Config{Fault: coordinator.FaultReplayedEvidence})
	var seen []string
	for range 2 {
		nonce, err := atls.NewNonce()
		if err != nil {
			t.Fatal(err)
		}
		var cert *x509.Certificate
		cfg := atls.ClientConfig(nonce, atls.NonceSNI, "", func(x *x509.Certificate) error { cert = x; return nil })
		conn, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatalf("SNI-nonce handshake: %v", err)
		}
		conn.Close()
		res := attest.CheckCertificate(t.Context(), cert, attest.Options{Offline: true, SNPRoots: c.Authority().SNPRootsPEM(), Nonce: nonce})
		if res.Mode != failure.ReportDataMismatch {
			t.Fatalf("evidence for nonce %x: %s (%s), want %s", nonce, res.Mode, res.Detail, failure.ReportDataMismatch)
		}
		for _, f := range res.Fields {
			if f.Name == "Report data" {
				seen = append(seen, f.Value)
			}
		}
	}
	if len(seen) != 2 || seen[0] != seen[1] {
		t.Fatalf("report data of two handshakes: %q, want the same replayed value twice", seen)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	a, err := authority()
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []coordinator.Config{
		{Authority: a, Platform: "sgx"},
		{Authority: a, Fault: "melted"},
	} {
		if _, err := coordinator.New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestParseFault(t *testing.T) {
	for _, f := range coordinator.Faults() {
		got, err := coordinator.ParseFault(string(f))
		if err != nil || got != f {
			t.Errorf("ParseFault(%q) = %q, %v", f, got, err)
		}
	}
	if f, err := coordinator.ParseFault("none"); err != nil || f != coordinator.FaultNone {
		t.Errorf("ParseFault(none) = %q, %v", f, err)
	}
	if _, err := coordinator.ParseFault("melted"); err == nil || !strings.Contains(err.Error(), "lb_close") {
		t.Errorf("ParseFault(melted) = %v", err)
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	a, err := authority()
	if err != nil {
		t.Fatal(err)
	}
	c, err := coordinator.New(coordinator.Config{Authority: a, Fault: coordinator.FaultIssuerSlow, IssuerDelay: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln) }()
	// A handshake stuck in the slow issuer must not keep Serve alive.
	go func() {
		opts := cliOptions(c)
		opts.Timeout = 30 * time.Second
		_, _ = contrastcli.Verify(context.Background(), ln.Addr().String(), opts)
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// TestNewestCLIAcceptsMRConfigIDTail: the newest CLI takes the TDX policy
// hash from MR_CONFIG_ID's first 32 bytes only (internal/attestation/tdx
// Report.HostData), so bytes after it do not matter to it.
func TestNewestCLIAcceptsMRConfigIDTail(t *testing.T) {
	c, addr := start(t, coordinator.Config{Platform: coordinator.PlatformTDX, Fault: coordinator.FaultMRConfigIDTail})
	if _, err := contrastcli.Verify(t.Context(), addr, cliOptions(c)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}
