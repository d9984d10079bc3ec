package probe_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/internal/atls"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/probe"
)

// TestRunNamesCoordinatorStates drives the simulated Coordinator's knobs
// through probe.Run and checks the mode and the facts the report names.
func TestRunNamesCoordinatorStates(t *testing.T) {
	otherPolicy := "" // filled from the report: the fault's hash is the Coordinator's business
	tests := []struct {
		name     string
		cfg      coordinator.Config
		localhst bool // dial "localhost:port": the ALPN hello carries SNI localhost
		mod      func(*probe.Config)
		want     failure.Mode
		check    func(t *testing.T, rep *probe.Report)
	}{
		{
			name: "healthy snp", want: failure.OK,
			check: func(t *testing.T, rep *probe.Report) {
				if rep.Evidence == nil || rep.Evidence.Verdict != attest.Verified {
					t.Errorf("evidence %+v, want verified", rep.Evidence)
				}
				if rep.State == nil || rep.State.Manifests != 1 || !rep.State.Compared || len(rep.State.Differences) != 0 {
					t.Errorf("state %+v, want one manifest equal to the local one", rep.State)
				}
				if rep.TLSVersion != "1.3" || rep.NonceStyle != "alpn" || len(rep.Attempts) != 1 {
					t.Errorf("TLS %q nonce %q attempts %d", rep.TLSVersion, rep.NonceStyle, len(rep.Attempts))
				}
				tm := rep.Timings
				if tm.Connect <= 0 || tm.FirstByte <= 0 || tm.Handshake < tm.FirstByte || tm.UserAPI <= 0 || tm.DNS != 0 {
					t.Errorf("timings %+v: want connect, first byte <= handshake, user API, no DNS for an IP", tm)
				}
				if rep.ClockOffset == nil || rep.ClockOffset.Abs() > time.Minute {
					t.Errorf("clock offset %v, want about 0", rep.ClockOffset)
				}
			},
		},
		{name: "healthy tdx", cfg: coordinator.Config{Platform: coordinator.PlatformTDX}, want: failure.OK},
		{
			name: "tls 1.2", want: failure.OK, mod: func(c *probe.Config) { c.MaxVersion = tls.VersionTLS12 },
			check: func(t *testing.T, rep *probe.Report) {
				if rep.TLSVersion != "1.2" {
					t.Errorf("TLS %q", rep.TLSVersion)
				}
			},
		},
		{
			name: "hostname resolves", localhst: true, want: failure.OK,
			check: func(t *testing.T, rep *probe.Report) {
				if rep.Timings.DNS <= 0 || rep.Attempts[0].ServerName != "localhost" {
					t.Errorf("DNS %v, SNI %q", rep.Timings.DNS, rep.Attempts[0].ServerName)
				}
			},
		},
		{
			name: "recovery mode", cfg: coordinator.Config{Fault: coordinator.FaultRecoveryMode}, want: failure.CoordinatorRecoveryMode,
			check: func(t *testing.T, rep *probe.Report) {
				if rep.State == nil || rep.State.Code != "Internal" || !strings.Contains(rep.Detail, "contrast recover") {
					t.Errorf("state %+v detail %q", rep.State, rep.Detail)
				}
			},
		},
		{
			name: "no manifest", cfg: coordinator.Config{Fault: coordinator.FaultNoManifest}, want: failure.CoordinatorNoManifest,
			check: func(t *testing.T, rep *probe.Report) {
				if !strings.Contains(rep.Detail, `"no manifest configured"`) || !strings.Contains(rep.Detail, "contrast set") {
					t.Errorf("detail %q", rep.Detail)
				}
			},
		},
		{
			name: "manifest differs", cfg: coordinator.Config{Fault: coordinator.FaultManifestDiffers}, want: failure.ManifestMismatch,
			check: func(t *testing.T, rep *probe.Report) {
				if rep.State == nil || len(rep.State.Differences) != 1 || !strings.HasPrefix(rep.State.Differences[0], "policies only in the Coordinator's manifest: ") {
					t.Errorf("differences %q", rep.State.Differences)
				}
				if !strings.Contains(rep.Detail, "policies only in the Coordinator's manifest") {
					t.Errorf("detail %q", rep.Detail)
				}
			},
		},
		{
			name: "wrong policy hash", cfg: coordinator.Config{Fault: coordinator.FaultWrongPolicyHash}, want: failure.PolicyHashMismatch,
			check: func(t *testing.T, rep *probe.Report) {
				want := hex.EncodeToString(sliceOf(attesttest.DefaultPolicyHash()))
				if rep.Evidence == nil || rep.Evidence.ExpectedPolicyHash != want || rep.Evidence.PolicyHash == want {
					t.Fatalf("evidence %+v", rep.Evidence)
				}
				otherPolicy = rep.Evidence.PolicyHash
				if !strings.Contains(rep.Detail, want) || !strings.Contains(rep.Detail, otherPolicy) {
					t.Errorf("detail %q names not both hashes", rep.Detail)
				}
				if rep.State != nil {
					t.Error("user API called after failed evidence")
				}
			},
		},
		{
			// The newest manifest layout: a 1-vCPU seed and APEIP; the VM has 6.
			name: "healthy snp, 6 vCPUs, seed manifest", cfg: coordinator.Config{VCPUs: 6}, want: failure.OK,
			check: func(t *testing.T, rep *probe.Report) {
				if rep.Evidence == nil || rep.Evidence.Verdict != attest.Verified {
					t.Fatalf("evidence %+v, want verified", rep.Evidence)
				}
				if !hasField(rep.Evidence, "Measurement match", "extended to 6 vCPUs") || !hasField(rep.Evidence, "ID key", "trusted") {
					t.Errorf("fields %+v", rep.Evidence.Fields)
				}
			},
		},
		{
			name: "another image, seed manifest", cfg: coordinator.Config{VCPUs: 6, Fault: coordinator.FaultWrongMeasurement}, want: failure.MeasurementMismatch,
			check: wantDetail("MEASUREMENT is ", "APEIP 0080b004", "measurement does not match any vCPU count from 1 to 220"),
		},
		{
			name: "untrusted ID key", cfg: coordinator.Config{Fault: coordinator.FaultUntrustedIDKey}, want: failure.ReferenceValueMismatch,
			check: wantDetail("ID_KEY_DIGEST is ", "report ID key not trusted: "),
		},
		{
			name: "untrusted ID key, seed manifest", cfg: coordinator.Config{VCPUs: 6, Fault: coordinator.FaultUntrustedIDKey}, want: failure.ReferenceValueMismatch,
			check: wantDetail("report ID key not trusted: "),
		},
		{
			name: "chip not allowed", cfg: coordinator.Config{Fault: coordinator.FaultChipNotAllowed}, want: failure.ReferenceValueMismatch,
			check: wantDetail("not in allowed chip IDs", "AllowedChipIDs of manifest snp[0] ("+chipIDHex(t)+")"),
		},
		{
			name: "wrong MRSEAM", cfg: coordinator.Config{Platform: coordinator.PlatformTDX, Fault: coordinator.FaultWrongMRSEAM}, want: failure.ReferenceValueMismatch,
			check: wantDetail("MR_SEAM is ", "(MrSeam from manifest tdx[0])"),
		},
		{
			name: "wrong XFAM", cfg: coordinator.Config{Platform: coordinator.PlatformTDX, Fault: coordinator.FaultWrongXFAM}, want: failure.ReferenceValueMismatch,
			check: wantDetail("XFAM is 071a060000000000; expected e71a060000000000, ignoring the CET bits 11 and 12 as the newest CLI does (Xfam from manifest tdx[0])"),
		},
		// Issue 24: several checks failing, per era of the manifest.
		{
			name: "policy hash and measurement wrong", cfg: coordinator.Config{Fault: coordinator.FaultPolicyAndMeasurement}, want: failure.MeasurementMismatch,
			check: wantDetail("MEASUREMENT is "),
		},
		{
			name: "policy hash and measurement wrong, tdx", cfg: coordinator.Config{Platform: coordinator.PlatformTDX, Fault: coordinator.FaultPolicyAndMeasurement}, want: failure.MeasurementMismatch,
			check: wantDetail("MR_TD is "),
		},
		{
			name: "policy hash and measurement wrong, older manifest",
			cfg:  coordinator.Config{Fault: coordinator.FaultPolicyAndMeasurement, Manifest: legacyManifest(t, coordinator.PlatformSNP)}, want: failure.PolicyHashMismatch,
			check: wantDetail("HOST_DATA (policy hash) is "),
		},
		{
			name: "MR_CONFIG_ID tail not zero", cfg: coordinator.Config{Platform: coordinator.PlatformTDX, Fault: coordinator.FaultMRConfigIDTail}, want: failure.OK,
		},
		{
			name: "MR_CONFIG_ID tail not zero, older manifest",
			cfg:  coordinator.Config{Platform: coordinator.PlatformTDX, Fault: coordinator.FaultMRConfigIDTail, Manifest: legacyManifest(t, coordinator.PlatformTDX)}, want: failure.PolicyHashMismatch,
			check: wantDetail("its last 16 bytes are "),
		},
		{
			name: "XFAM differs only in CET bits", cfg: coordinator.Config{Platform: coordinator.PlatformTDX, Fault: coordinator.FaultXFAMCETOnly}, want: failure.OK,
		},
		{
			name:  "XFAM differs only in CET bits, older manifest",
			cfg:   coordinator.Config{Platform: coordinator.PlatformTDX, Fault: coordinator.FaultXFAMCETOnly, Manifest: legacyManifest(t, coordinator.PlatformTDX)},
			want:  failure.ReferenceValueMismatch,
			check: wantDetail("XFAM is e702060000000000; expected e71a060000000000 (Xfam from manifest tdx[0])"),
		},
		{
			name: "clock 3h ahead", cfg: coordinator.Config{Fault: coordinator.FaultClockSkew}, want: failure.ClockSkew,
			check: func(t *testing.T, rep *probe.Report) {
				if rep.ClockOffset == nil || (*rep.ClockOffset-3*time.Hour).Abs() > time.Minute {
					t.Errorf("offset %v, want 3h", rep.ClockOffset)
				}
				if !strings.Contains(rep.Detail, "ahead of this host") || !strings.Contains(rep.Detail, "this machine's clock") {
					t.Errorf("detail %q", rep.Detail)
				}
				if !strings.Contains(rep.Attempts[0].Error, "certificate has expired or is not yet valid") {
					t.Errorf("client error %q", rep.Attempts[0].Error)
				}
			},
		},
		{
			name: "clock 1h ahead is tolerated", cfg: coordinator.Config{ClockSkew: time.Hour}, want: failure.OK,
			check: func(t *testing.T, rep *probe.Report) {
				if rep.ClockOffset == nil || (*rep.ClockOffset-time.Hour).Abs() > time.Minute || rep.ClockOffsetMS == nil {
					t.Errorf("offset %v, want 1h recorded", rep.ClockOffset)
				}
			},
		},
		{
			name: "recovery mode, state guard", cfg: coordinator.Config{Fault: coordinator.FaultRecoveryModeGuard}, want: failure.CoordinatorRecoveryMode,
			check: func(t *testing.T, rep *probe.Report) {
				if rep.State == nil || rep.State.Code != "FailedPrecondition" || rep.State.Message != "coordinator is in recovery mode" ||
					!strings.Contains(rep.Detail, "contrast recover") {
					t.Errorf("state %+v detail %q", rep.State, rep.Detail)
				}
			},
		},
		{
			name: "user API error", cfg: coordinator.Config{Fault: coordinator.FaultAPIError}, want: failure.CoordinatorAPIError,
			check: func(t *testing.T, rep *probe.Report) {
				if rep.State == nil || rep.State.Code != "Internal" || !strings.HasPrefix(rep.State.Message, "getting history: ") {
					t.Errorf("state %+v", rep.State)
				}
				if !strings.Contains(rep.Detail, "gRPC code Internal") || !strings.Contains(rep.Detail, "getting history: ") || !strings.Contains(rep.Detail, "is forbidden") {
					t.Errorf("detail %q does not carry the gRPC code and message", rep.Detail)
				}
				if rep.Evidence == nil || rep.Evidence.Verdict != attest.Verified {
					t.Errorf("evidence %+v, want verified: the handshake was fine", rep.Evidence)
				}
			},
		},
		{
			name: "old coordinator, current CLI", cfg: coordinator.Config{Fault: coordinator.FaultOldCoordinator}, localhst: true,
			want: failure.CoordinatorVersionMismatch,
			check: func(t *testing.T, rep *probe.Report) {
				if len(rep.Attempts) != 2 || rep.Attempts[0].Mode != failure.IssuerError || rep.Attempts[1].Mode != failure.OK {
					t.Fatalf("attempts %s", attemptModes(rep))
				}
				if rep.NonceStyle != "sni" || rep.State == nil || rep.State.Manifests != 1 {
					t.Errorf("deciding attempt: nonce %q state %+v", rep.NonceStyle, rep.State)
				}
				if !strings.Contains(rep.Detail, `SNI "localhost"`) || !strings.Contains(rep.Detail, "predates this CLI") {
					t.Errorf("detail %q", rep.Detail)
				}
			},
		},
		{
			// No SNI at all: the old Coordinator decodes it to an empty
			// nonce and binds its evidence to that.
			name: "old coordinator, current CLI by IP", cfg: coordinator.Config{Fault: coordinator.FaultOldCoordinator},
			want: failure.CoordinatorVersionMismatch,
			check: func(t *testing.T, rep *probe.Report) {
				if len(rep.Attempts) != 2 || rep.Attempts[0].Mode != failure.ReportDataMismatch {
					t.Fatalf("attempts %s", attemptModes(rep))
				}
			},
		},
		{
			// The evidence is judged at the Coordinator's clock for the
			// binding: a skewed clock does not hide an older Coordinator.
			name: "old coordinator 3h ahead, current CLI", cfg: coordinator.Config{Fault: coordinator.FaultOldCoordinator, ClockSkew: 3 * time.Hour}, localhst: true,
			want: failure.CoordinatorVersionMismatch,
			check: func(t *testing.T, rep *probe.Report) {
				if len(rep.Attempts) != 2 || rep.Attempts[1].Mode != failure.ClockSkew || !strings.Contains(rep.Detail, "then found clock_skew") {
					t.Errorf("attempts %s, detail %q", attemptModes(rep), rep.Detail)
				}
			},
		},
		{
			// Fails the ALPN nonce like an old Coordinator, but its evidence
			// binds neither nonce: never told apart as "old".
			name: "replayed evidence, current CLI", cfg: coordinator.Config{Fault: coordinator.FaultReplayedEvidence}, localhst: true,
			want: failure.ReportDataMismatch,
			check: func(t *testing.T, rep *probe.Report) {
				if len(rep.Attempts) != 2 || rep.Attempts[0].Mode != failure.IssuerError || rep.Attempts[1].Mode != failure.ReportDataMismatch {
					t.Fatalf("attempts %s", attemptModes(rep))
				}
				if rep.NonceStyle != "sni" || rep.Evidence == nil || rep.Evidence.Mode != failure.ReportDataMismatch || rep.State != nil {
					t.Errorf("deciding attempt: nonce %q evidence %+v state %+v", rep.NonceStyle, rep.Evidence, rep.State)
				}
				if !strings.Contains(rep.Detail, "not merely older") || !strings.Contains(rep.Detail, "REPORT_DATA is") ||
					!strings.Contains(rep.Detail, rep.Attempts[1].Nonce) || strings.Contains(rep.Detail, "predates") {
					t.Errorf("detail %q", rep.Detail)
				}
			},
		},
		{
			name: "replayed evidence, current CLI by IP", cfg: coordinator.Config{Fault: coordinator.FaultReplayedEvidence},
			want: failure.ReportDataMismatch,
			check: func(t *testing.T, rep *probe.Report) {
				if len(rep.Attempts) != 2 || rep.Attempts[0].Mode != failure.ReportDataMismatch || rep.Attempts[1].Mode != failure.ReportDataMismatch {
					t.Fatalf("attempts %s", attemptModes(rep))
				}
			},
		},
		{
			name: "replayed evidence 3h ahead, current CLI", cfg: coordinator.Config{Fault: coordinator.FaultReplayedEvidence, ClockSkew: 3 * time.Hour}, localhst: true,
			want: failure.ReportDataMismatch,
			check: func(t *testing.T, rep *probe.Report) {
				if len(rep.Attempts) != 2 || rep.Attempts[1].Mode != failure.ClockSkew {
					t.Errorf("attempts %s", attemptModes(rep))
				}
			},
		},
		{
			name: "replayed evidence, old CLI", cfg: coordinator.Config{Fault: coordinator.FaultReplayedEvidence},
			mod: func(c *probe.Config) { c.NonceIn = probe.NonceSNI }, want: failure.ReportDataMismatch,
		},
		{
			// A current Coordinator whose evidence is unbound, dialled by IP
			// (no SNI): the first attempt looks like an old Coordinator's, the
			// SNI-nonce retry's evidence is unbound too.
			name: "report data unbound, current CLI by IP", cfg: coordinator.Config{Fault: coordinator.FaultReportDataUnbound},
			want: failure.ReportDataMismatch,
			check: func(t *testing.T, rep *probe.Report) {
				if len(rep.Attempts) != 2 || rep.Attempts[1].Mode != failure.ReportDataMismatch {
					t.Fatalf("attempts %s", attemptModes(rep))
				}
			},
		},
		{
			name: "old coordinator, old CLI", cfg: coordinator.Config{Fault: coordinator.FaultOldCoordinator},
			mod: func(c *probe.Config) { c.NonceIn = probe.NonceSNI }, want: failure.OK,
		},
		{
			name: "old coordinator, forced ALPN", cfg: coordinator.Config{Fault: coordinator.FaultOldCoordinator}, localhst: true,
			mod: func(c *probe.Config) { c.NonceIn = probe.NonceALPN }, want: failure.IssuerError,
		},
		{
			name: "issuer error is not a version mismatch", cfg: coordinator.Config{Fault: coordinator.FaultIssuerError}, localhst: true,
			want: failure.IssuerError,
			check: func(t *testing.T, rep *probe.Report) {
				if len(rep.Attempts) != 2 || rep.Attempts[1].Mode != failure.IssuerError || !strings.Contains(rep.Detail, "failed too") {
					t.Errorf("attempts %s, detail %q", attemptModes(rep), rep.Detail)
				}
			},
		},
		{name: "load balancer closes", cfg: coordinator.Config{Fault: coordinator.FaultLBClose}, want: failure.LBClosedEarly},
		{name: "load balancer resets", cfg: coordinator.Config{Fault: coordinator.FaultLBReset}, want: failure.LBClosedEarly},
		{name: "not TLS", cfg: coordinator.Config{Fault: coordinator.FaultNotTLS}, want: failure.UpstreamNotTLS},
		{name: "reset after handshake", cfg: coordinator.Config{Fault: coordinator.FaultResetAfterHandshake}, want: failure.UpstreamReset},
		{
			name: "issuer too slow", cfg: coordinator.Config{Fault: coordinator.FaultIssuerSlow, IssuerDelay: 10 * time.Second},
			mod: func(c *probe.Config) { c.Timeout = 300 * time.Millisecond }, want: failure.IssuerTimeout,
		},
		{name: "no extension", cfg: coordinator.Config{Fault: coordinator.FaultNoExtension}, want: failure.UnexpectedCertificate},
		{name: "bad signature", cfg: coordinator.Config{Fault: coordinator.FaultBadSignature}, want: failure.EvidenceInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, addr := startCoordinator(t, tc.cfg)
			cfg := probe.Config{Attest: attestOptions(t, c), Timeout: 10 * time.Second}
			if tc.mod != nil {
				tc.mod(&cfg)
			}
			if tc.localhst {
				_, port, _ := net.SplitHostPort(addr)
				addr = net.JoinHostPort("localhost", port)
			}
			rep, err := probe.Run(t.Context(), addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Mode != tc.want {
				t.Fatalf("mode %s, want %s; detail: %s; attempts %s", rep.Mode, tc.want, rep.Detail, attemptModes(rep))
			}
			if rep.Detail == "" {
				t.Error("empty detail")
			}
			if tc.check != nil {
				tc.check(t, rep)
			}
			// Both renderings work and the JSON carries the mode.
			var text, js bytes.Buffer
			if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), string(tc.want)) {
				t.Errorf("text report (%v):\n%s", err, text.String())
			}
			if err := rep.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			var back struct {
				Mode failure.Mode `json:"failure_mode"`
			}
			if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Mode != tc.want {
				t.Errorf("JSON report (%v): %s", err, js.String())
			}
		})
	}
}

func attemptModes(rep *probe.Report) string {
	var s []string
	for _, a := range rep.Attempts {
		s = append(s, a.NonceStyle+"="+string(a.Mode))
	}
	return "[" + strings.Join(s, " ") + "]"
}

func sliceOf(b [32]byte) []byte { return b[:] }

// TestRunDialFailures: the dial's errors are named by the relay's
// classifier, so DNS, refused and timeout read the same everywhere.
func TestRunDialFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	noDNS := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS server in tests")
	}}
	tests := []struct {
		name string
		addr string
		cfg  probe.Config
		want failure.Mode
	}{
		{name: "refused", addr: closed, want: failure.UpstreamRefused},
		{name: "name does not resolve", addr: "coordinator.invalid:1313", cfg: probe.Config{Resolver: noDNS}, want: failure.UpstreamDNSFailure},
		// No route cannot be had on loopback: the dialer's socket hook fails
		// the connect the way the kernel does.
		{name: "no route to host", addr: closed, cfg: probe.Config{Dialer: failingDialer(syscall.EHOSTUNREACH)}, want: failure.UpstreamUnreachable},
		{name: "network unreachable", addr: "[2001:db8::1]:1313", cfg: probe.Config{Dialer: failingDialer(syscall.ENETUNREACH)}, want: failure.UpstreamUnreachable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := probe.Run(t.Context(), tc.addr, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Mode != tc.want || rep.Attempts[0].Error == "" {
				t.Fatalf("mode %s (%s), want %s", rep.Mode, rep.Detail, tc.want)
			}
			if rep.Evidence != nil || rep.State != nil || rep.ClockOffset != nil {
				t.Error("facts reported without a connection")
			}
		})
	}
}

// failingDialer's connects fail with errno, as net.Dialer reports a
// connect(2) that failed.
func failingDialer(errno syscall.Errno) *net.Dialer {
	return &net.Dialer{Control: func(string, string, syscall.RawConn) error {
		return os.NewSyscallError("connect", errno)
	}}
}

// An old Coordinator's SNI-nonce evidence that ccproxy cannot verify (here:
// ccproxy trusts AMD's real roots, not the simulation's) does not show
// whether it binds the nonce, so the Coordinator is not called old: the
// first connection's verdict stays.
func TestRunVersionCheckNeedsTrustedEvidence(t *testing.T) {
	c, addr := startCoordinator(t, coordinator.Config{Fault: coordinator.FaultOldCoordinator})
	opts := attestOptions(t, c)
	opts.SNPRoots = nil
	_, port, _ := net.SplitHostPort(addr)
	rep, err := probe.Run(t.Context(), net.JoinHostPort("localhost", port), probe.Config{Attest: opts, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mode != failure.IssuerError || len(rep.Attempts) != 2 || rep.Attempts[1].Mode != failure.EvidenceInvalid {
		t.Fatalf("mode %s (%s), attempts %s; want issuer_error after an evidence_invalid retry", rep.Mode, rep.Detail, attemptModes(rep))
	}
	if !strings.Contains(rep.Detail, "cannot tell an older Coordinator from one that replays evidence") {
		t.Errorf("detail %q", rep.Detail)
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		addr string
		cfg  probe.Config
	}{
		{addr: "coordinator"},
		{addr: ":1313"},
		{addr: "coordinator:0"},
		{addr: "coordinator:http"},
		{addr: "c:1313", cfg: probe.Config{MaxVersion: tls.VersionTLS11}},
		{addr: "c:1313", cfg: probe.Config{NonceIn: probe.NonceMode(7)}},
		{addr: "c:1313", cfg: probe.Config{Attest: attest.Options{PolicyHashes: [][]byte{{1, 2}}}}},
	} {
		if _, err := probe.Run(t.Context(), tc.addr, tc.cfg); err == nil {
			t.Errorf("Run(%q, %+v) accepted", tc.addr, tc.cfg)
		}
	}
}

func TestParseNonceMode(t *testing.T) {
	for _, m := range []probe.NonceMode{probe.NonceAuto, probe.NonceALPN, probe.NonceSNI} {
		got, err := probe.ParseNonceMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseNonceMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := probe.ParseNonceMode("both"); err == nil {
		t.Error("ParseNonceMode(both) accepted")
	}
}

// TestRunUserAPIConnectionEnds: a Coordinator whose attested handshake
// succeeds but whose connection then ends under GetManifests (a FIN before
// any answer) or stays silent is named from the connection, not as an answer
// of the user API.
func TestRunUserAPIConnectionEnds(t *testing.T) {
	a, err := authority()
	if err != nil {
		t.Fatal(err)
	}
	m, err := attest.ParseManifest(a.ManifestJSON(coordinator.PlatformSNP))
	if err != nil {
		t.Fatal(err)
	}
	opts := attest.Options{Offline: true, SNPRoots: a.SNPRootsPEM(), Reference: m}
	iss := atls.IssuerFunc(func(_ context.Context, rd [64]byte) (asn1.ObjectIdentifier, []byte, error) {
		doc, err := a.SNP(attesttest.Evidence{ReportData: rd})
		return atls.OIDSNP(), doc, err
	})
	srvCfg, err := atls.ServerConfig(iss, atls.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		after  func(c net.Conn) // what the server does after the handshake
		want   failure.Mode
		detail string
	}{
		{
			name: "FIN before the answer",
			after: func(c net.Conn) {
				_, _ = c.Read(make([]byte, 1)) // the client's HTTP/2 preface
				_ = c.(*tls.Conn).CloseWrite()
				time.Sleep(time.Second) // still reading: no reset
			},
			want: failure.UpstreamReset, detail: "ended the connection (FIN) during GetManifests",
		},
		{
			name:  "no answer",
			after: func(net.Conn) { time.Sleep(2 * time.Second) },
			want:  failure.CoordinatorAPIError, detail: "did not answer GetManifests before the probe's deadline",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				raw, err := ln.Accept()
				if err != nil {
					return
				}
				defer raw.Close()
				c := tls.Server(raw, srvCfg)
				if c.Handshake() == nil {
					tc.after(c)
				}
			}()
			rep, err := probe.Run(t.Context(), ln.Addr().String(), probe.Config{Attest: opts, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Mode != tc.want || !strings.Contains(rep.Detail, tc.detail) {
				t.Fatalf("mode %s (%s), want %s with %q", rep.Mode, rep.Detail, tc.want, tc.detail)
			}
			if rep.Evidence == nil || rep.Evidence.Verdict != attest.Verified {
				t.Errorf("evidence %+v, want verified", rep.Evidence)
			}
		})
	}
}

// wantDetail checks that the report's detail names each of parts.
func wantDetail(parts ...string) func(t *testing.T, rep *probe.Report) {
	return func(t *testing.T, rep *probe.Report) {
		t.Helper()
		for _, p := range parts {
			if !strings.Contains(rep.Detail, p) {
				t.Errorf("detail %q does not contain %q", rep.Detail, p)
			}
		}
		if rep.State != nil {
			t.Error("user API called after failed evidence")
		}
	}
}

func hasField(r *attest.Result, name, part string) bool {
	for _, f := range r.Fields {
		if f.Name == name && strings.Contains(f.Value, part) {
			return true
		}
	}
	return false
}

func mustAuthority(t *testing.T) *attesttest.Authority {
	t.Helper()
	a, err := authority()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func chipIDHex(t *testing.T) string {
	id := mustAuthority(t).ChipID()
	return hex.EncodeToString(id[:])
}

// legacyManifest is the shared authority's manifest in the older layout,
// whose CLI passes the policy hash to the libraries with the other fields.
func legacyManifest(t *testing.T, platform string) []byte {
	t.Helper()
	a, err := authority()
	if err != nil {
		t.Fatal(err)
	}
	return a.LegacyManifestJSON(platform)
}
