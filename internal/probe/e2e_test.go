package probe_test

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/contrastcli"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/internal/atls"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/probe"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// cli are the options of a Contrast CLI that trusts c's authority and holds
// c's manifest, dialing with the authority "localhost" (so its ALPN-style
// hello carries SNI localhost, as `contrast verify -c localhost:1313` does).
func cli(c *coordinator.Coordinator, style atls.NonceStyle) contrastcli.Options {
	return contrastcli.Options{
		Manifest:    c.Manifest(),
		SNPRootsPEM: c.Authority().SNPRootsPEM(),
		TDXRootsPEM: c.Authority().TDXRootsPEM(),
		NonceStyle:  style,
		Authority:   "localhost",
		Timeout:     10 * time.Second,
	}
}

// TestRelayRefinesWithProbe runs a TLS 1.3 CLI through a real relay in
// front of the simulated Coordinator for every evidence fault (and the
// version cases): the client's own view is only client_rejected_certificate
// or issuer_error, the trace names the exact mode, with a probe child span.
func TestRelayRefinesWithProbe(t *testing.T) {
	defaultHash := hex.EncodeToString(sliceOf(attesttest.DefaultPolicyHash()))
	tests := []struct {
		fault    coordinator.Fault
		platform string
		style    atls.NonceStyle
		noSNI    bool         // dial by IP: the ALPN-style hello has no SNI
		vcpus    int          // an SNP Coordinator with a seed manifest (newest layout)
		wire     failure.Mode // what the relay sees on the wire
		want     failure.Mode // what the trace names
		noProbe  bool
		check    func(t *testing.T, ct connectionTrace)
	}{
		{fault: coordinator.FaultNoExtension, wire: failure.ClientRejectedCertificate, want: failure.UnexpectedCertificate},
		{fault: coordinator.FaultWrongPlatform, wire: failure.ClientRejectedCertificate, want: failure.NoMatchingValidator},
		{
			fault: coordinator.FaultWrongPolicyHash, wire: failure.ClientRejectedCertificate, want: failure.PolicyHashMismatch,
			check: func(t *testing.T, ct connectionTrace) {
				a := ct.root.Attributes()
				got, expected := attr(a, string(trace.AttestPolicyHash)), attr(a, string(trace.AttestExpectedHash))
				if expected != defaultHash || got == "" || got == defaultHash {
					t.Errorf("attest.policy_hash %q, attest.expected_policy_hash %q (want %q)", got, expected, defaultHash)
				}
				d := attr(a, string(trace.FailureDetail))
				if !strings.Contains(d, got) || !strings.Contains(d, defaultHash) {
					t.Errorf("failure detail %q does not name both hashes", d)
				}
			},
		},
		{fault: coordinator.FaultWrongMeasurement, wire: failure.ClientRejectedCertificate, want: failure.MeasurementMismatch},
		{fault: coordinator.FaultWrongMeasurement, platform: coordinator.PlatformTDX, wire: failure.ClientRejectedCertificate, want: failure.MeasurementMismatch},
		{fault: coordinator.FaultTCBLow, wire: failure.ClientRejectedCertificate, want: failure.TCBMismatch},
		{fault: coordinator.FaultBadSignature, wire: failure.ClientRejectedCertificate, want: failure.EvidenceInvalid},
		{fault: coordinator.FaultReportDataUnbound, wire: failure.ClientRejectedCertificate, want: failure.ReportDataMismatch},
		{fault: coordinator.FaultReportDataUnbound, style: atls.NonceSNI, wire: failure.ClientRejectedCertificate, want: failure.ReportDataMismatch},
		{
			fault: coordinator.FaultClockSkew, wire: failure.ClientRejectedCertificate, want: failure.ClockSkew,
			check: func(t *testing.T, ct connectionTrace) {
				a := ct.root.Attributes()
				d := attr(a, string(trace.FailureDetail))
				if !strings.Contains(d, `clock of ccproxy's host "relay-test-host"`) || !strings.Contains(d, "client's machine") {
					t.Errorf("detail does not say which clocks were compared: %q", d)
				}
				off, ok := a.Get(string(trace.ClockOffsetMS))
				if !ok || (time.Duration(off.Int())*time.Millisecond-coordinator.ClockSkewAhead).Abs() > time.Minute {
					t.Errorf("clock offset %v, want about %v", off.AsString(), coordinator.ClockSkewAhead)
				}
			},
		},
		{
			fault: coordinator.FaultOldCoordinator, wire: failure.IssuerError, want: failure.CoordinatorVersionMismatch,
			check: func(t *testing.T, ct connectionTrace) {
				p := ct.probes[0].Attributes()
				if attr(p, string(trace.ProbeAttempts)) != "2" || attr(p, string(trace.ProbeResult)) != string(failure.IssuerError) ||
					attr(p, string(trace.ProbeSNIResult)) != string(failure.OK) {
					t.Errorf("probe span: attempts %s, SNI result %s", attr(p, string(trace.ProbeAttempts)), attr(p, string(trace.ProbeSNIResult)))
				}
			},
		},
		{
			// Without an SNI the old Coordinator binds its evidence to an
			// empty nonce: the client rejects the certificate.
			fault: coordinator.FaultOldCoordinator, noSNI: true, wire: failure.ClientRejectedCertificate, want: failure.CoordinatorVersionMismatch,
			check: func(t *testing.T, ct connectionTrace) {
				p := ct.probes[0].Attributes()
				if attr(p, string(trace.ProbeResult)) != string(failure.ReportDataMismatch) || attr(p, string(trace.ProbeSNIResult)) != string(failure.OK) {
					t.Errorf("probe span: %v", p.AsRaw())
				}
			},
		},
		{
			// Fails the ALPN nonce like an old Coordinator, but the SNI-nonce
			// retry's evidence binds neither nonce: not told apart as old.
			fault: coordinator.FaultReplayedEvidence, wire: failure.IssuerError, want: failure.ReportDataMismatch,
			check: func(t *testing.T, ct connectionTrace) {
				p := ct.probes[0].Attributes()
				if attr(p, string(trace.ProbeAttempts)) != "2" || attr(p, string(trace.ProbeResult)) != string(failure.IssuerError) ||
					attr(p, string(trace.ProbeSNIResult)) != string(failure.ReportDataMismatch) {
					t.Errorf("probe span: %v", p.AsRaw())
				}
				if d := attr(ct.root.Attributes(), string(trace.FailureDetail)); !strings.Contains(d, "not merely older") || strings.Contains(d, "predates") {
					t.Errorf("detail %q", d)
				}
			},
		},
		{
			fault: coordinator.FaultReplayedEvidence, noSNI: true, wire: failure.ClientRejectedCertificate, want: failure.ReportDataMismatch,
			check: func(t *testing.T, ct connectionTrace) {
				p := ct.probes[0].Attributes()
				if attr(p, string(trace.ProbeResult)) != string(failure.ReportDataMismatch) || attr(p, string(trace.ProbeSNIResult)) != string(failure.ReportDataMismatch) {
					t.Errorf("probe span: %v", p.AsRaw())
				}
			},
		},
		{
			// A current Coordinator with unbound evidence, dialled by IP: the
			// SNI-nonce retry is unbound too, so no version mismatch.
			fault: coordinator.FaultReportDataUnbound, noSNI: true, wire: failure.ClientRejectedCertificate, want: failure.ReportDataMismatch,
			check: func(t *testing.T, ct connectionTrace) {
				if attr(ct.probes[0].Attributes(), string(trace.ProbeSNIResult)) != string(failure.ReportDataMismatch) {
					t.Errorf("probe span: %v", ct.probes[0].Attributes().AsRaw())
				}
			},
		},
		{
			// A failing issuer fails either way: not a version mismatch.
			fault: coordinator.FaultIssuerError, wire: failure.IssuerError, want: failure.IssuerError,
			check: func(t *testing.T, ct connectionTrace) {
				if d := attr(ct.root.Attributes(), string(trace.FailureDetail)); !strings.Contains(d, "failed too") {
					t.Errorf("detail %q", d)
				}
			},
		},
		// The checks the CLI makes beyond measurement and TCB (issue 17).
		{fault: coordinator.FaultUntrustedIDKey, wire: failure.ClientRejectedCertificate, want: failure.ReferenceValueMismatch,
			check: detailHas("ID_KEY_DIGEST is ", "report ID key not trusted: ")},
		{fault: coordinator.FaultChipNotAllowed, wire: failure.ClientRejectedCertificate, want: failure.ReferenceValueMismatch,
			check: detailHas("not in allowed chip IDs")},
		{fault: coordinator.FaultWrongMRSEAM, platform: coordinator.PlatformTDX, wire: failure.ClientRejectedCertificate, want: failure.ReferenceValueMismatch,
			check: detailHas("MR_SEAM is ", "expected ")},
		{fault: coordinator.FaultWrongXFAM, platform: coordinator.PlatformTDX, wire: failure.ClientRejectedCertificate, want: failure.ReferenceValueMismatch,
			check: detailHas("XFAM is 071a060000000000; expected e71a060000000000")},
		{fault: coordinator.FaultWrongMeasurement, vcpus: 6, wire: failure.ClientRejectedCertificate, want: failure.MeasurementMismatch,
			check: detailHas("measurement does not match any vCPU count from 1 to 220")},
		// Issue 24: another release's Coordinator (policy hash and
		// measurement both wrong) is named by the measurement, as the
		// newest CLI prints it; only MR_CONFIG_ID's first 32 bytes count;
		// XFAM differing in its CET bits only passes the newest CLI.
		{fault: coordinator.FaultPolicyAndMeasurement, wire: failure.ClientRejectedCertificate, want: failure.MeasurementMismatch,
			check: detailHas("MEASUREMENT is ")},
		{fault: coordinator.FaultPolicyAndMeasurement, platform: coordinator.PlatformTDX, wire: failure.ClientRejectedCertificate, want: failure.MeasurementMismatch,
			check: detailHas("MR_TD is ")},
		{fault: coordinator.FaultPolicyAndMeasurement, vcpus: 6, wire: failure.ClientRejectedCertificate, want: failure.MeasurementMismatch,
			check: detailHas("measurement does not match any vCPU count from 1 to 220")},
		{fault: coordinator.FaultXFAMCETOnly, platform: coordinator.PlatformTDX, wire: failure.OK, want: failure.OK, noProbe: true},
		{fault: coordinator.FaultMRConfigIDTail, platform: coordinator.PlatformTDX, wire: failure.OK, want: failure.OK, noProbe: true},
		{fault: coordinator.FaultNone, vcpus: 6, wire: failure.OK, want: failure.OK, noProbe: true},
		{fault: coordinator.FaultOldCoordinator, style: atls.NonceSNI, wire: failure.OK, want: failure.OK, noProbe: true},
		{fault: coordinator.FaultNone, wire: failure.OK, want: failure.OK, noProbe: true},
	}
	for _, tc := range tests {
		name := tc.fault.String() + "/" + tc.style.String()
		if tc.platform != "" {
			name += "/" + tc.platform
		}
		if tc.noSNI {
			name += "/no-sni"
		}
		if tc.vcpus != 0 {
			name += fmt.Sprintf("/%d-vcpus", tc.vcpus)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, addr := startCoordinator(t, coordinator.Config{Fault: tc.fault, Platform: tc.platform, VCPUs: tc.vcpus})
			ref := probe.NewRefiner(probe.RefinerConfig{
				Probe:    probe.Config{Attest: attestOptions(t, c), Timeout: 10 * time.Second},
				CacheTTL: time.Minute,
				HostName: "relay-test-host",
			})
			r := startRelay(t, addr, ref)
			opts := cli(c, tc.style)
			if tc.noSNI {
				opts.Authority = ""
			}
			res, err := contrastcli.Verify(t.Context(), r.addr, opts)
			if (err == nil) != (tc.want == failure.OK) {
				t.Fatalf("CLI: %v", err)
			}
			if len(res.Attempts) > 0 && res.Attempts[0].TLSVersion != 0 && res.Attempts[0].TLSVersion != 0x0304 {
				t.Fatalf("client negotiated %#x, want TLS 1.3", res.Attempts[0].TLSVersion)
			}
			r.waitFor(tc.want)
			ct := r.probedConnection(tc.want, !tc.noProbe)
			if ct == nil {
				t.Fatalf("no connection span with mode %s", tc.want)
			}
			if tc.noProbe {
				if len(ct.probes) != 0 {
					t.Fatalf("%d probe spans on a connection that needed none", len(ct.probes))
				}
				return
			}
			if len(ct.probes) != 1 {
				t.Fatalf("%d probe spans, want 1", len(ct.probes))
			}
			ps := ct.probes[0]
			if ps.EndTimestamp() <= ps.StartTimestamp() || ps.StartTimestamp() < ct.root.StartTimestamp() || ps.EndTimestamp() > ct.root.EndTimestamp() {
				t.Errorf("probe span %v..%v in connection %v..%v", ps.StartTimestamp(), ps.EndTimestamp(), ct.root.StartTimestamp(), ct.root.EndTimestamp())
			}
			// The probe runs after the connection closed; the root span
			// still encloses it and every other child.
			ct.checkNested(t)
			p := ps.Attributes()
			if got := attr(p, string(trace.ProbeTrigger)); got != string(tc.wire) {
				t.Errorf("probe trigger %q, want %q", got, tc.wire)
			}
			if got := attr(p, string(trace.FailureMode)); got != string(tc.want) {
				t.Errorf("probe span mode %q, want %q", got, tc.want)
			}
			if got := attr(p, string(trace.ATLSNonceSource)); got != tc.style.String() {
				t.Errorf("probe nonce source %q, want the client's %q", got, tc.style)
			}
			if attr(p, string(trace.ProbeCached)) != "false" || attr(p, string(trace.UpstreamFirstByteMS)) == "" {
				t.Errorf("probe span attributes: %v", p.AsRaw())
			}
			if tc.wire == failure.ClientRejectedCertificate && attr(p, string(trace.TLSProtocolVersion)) != "1.3" {
				t.Errorf("probe TLS version %q, want the client's 1.3", attr(p, string(trace.TLSProtocolVersion)))
			}
			if d := attr(ct.root.Attributes(), string(trace.FailureDetail)); d == "" {
				t.Error("empty failure detail")
			}
			if tc.check != nil {
				tc.check(t, *ct)
			}
		})
	}
}

// TestRelayProbeCache: a storm of failing clients makes one probe; the
// other connections' probe spans say the result was reused.
func TestRelayProbeCache(t *testing.T) {
	c, addr := startCoordinator(t, coordinator.Config{Fault: coordinator.FaultWrongMeasurement})
	ref := probe.NewRefiner(probe.RefinerConfig{
		Probe:    probe.Config{Attest: attestOptions(t, c), Timeout: 10 * time.Second},
		CacheTTL: time.Minute,
	})
	r := startRelay(t, addr, ref)
	const clients = 3
	for range clients {
		if _, err := contrastcli.Verify(t.Context(), r.addr, cli(c, atls.NonceALPN)); err == nil {
			t.Fatal("CLI accepted a wrong measurement")
		}
		r.waitFor(failure.MeasurementMismatch)
	}
	var fresh, cached int
	for _, ct := range r.traces() {
		if attr(ct.root.Attributes(), string(trace.FailureMode)) != string(failure.MeasurementMismatch) {
			continue // a reconnect the client abandoned
		}
		if len(ct.probes) != 1 {
			t.Fatalf("%d probe spans", len(ct.probes))
		}
		switch attr(ct.probes[0].Attributes(), string(trace.ProbeCached)) {
		case "true":
			cached++
		default:
			fresh++
		}
	}
	// A client's reconnect may add a connection, which reuses the result too.
	if fresh != 1 || cached < clients-1 {
		t.Fatalf("%d fresh and %d cached probes, want 1 and at least %d", fresh, cached, clients-1)
	}
}

// detailHas checks that the connection's failure detail names each part.
func detailHas(parts ...string) func(t *testing.T, ct connectionTrace) {
	return func(t *testing.T, ct connectionTrace) {
		t.Helper()
		d := attr(ct.root.Attributes(), string(trace.FailureDetail))
		for _, p := range parts {
			if !strings.Contains(d, p) {
				t.Errorf("detail %q does not contain %q", d, p)
			}
		}
	}
}

// TestRelayTLS12Passive: with TLS 1.2 the Coordinator's certificate crosses
// the relay in the clear, and the relay names each of the CLI's checks from
// it alone, with no probe.
func TestRelayTLS12Passive(t *testing.T) {
	tests := []struct {
		fault    coordinator.Fault
		platform string
		vcpus    int
		want     failure.Mode
		detail   string
	}{
		{fault: coordinator.FaultUntrustedIDKey, want: failure.ReferenceValueMismatch, detail: "report ID key not trusted: "},
		{fault: coordinator.FaultChipNotAllowed, want: failure.ReferenceValueMismatch, detail: "not in allowed chip IDs"},
		{fault: coordinator.FaultWrongMRSEAM, platform: coordinator.PlatformTDX, want: failure.ReferenceValueMismatch, detail: "MR_SEAM is "},
		{fault: coordinator.FaultWrongXFAM, platform: coordinator.PlatformTDX, want: failure.ReferenceValueMismatch, detail: "XFAM is "},
		{fault: coordinator.FaultWrongMeasurement, vcpus: 6, want: failure.MeasurementMismatch, detail: "measurement does not match any vCPU count from 1 to 220"},
		{fault: coordinator.FaultNone, vcpus: 6, want: failure.OK},
	}
	for _, tc := range tests {
		name := tc.fault.String()
		if tc.platform != "" {
			name += "/" + tc.platform
		}
		if tc.vcpus != 0 {
			name += fmt.Sprintf("/%d-vcpus", tc.vcpus)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, addr := startCoordinator(t, coordinator.Config{Fault: tc.fault, Platform: tc.platform, VCPUs: tc.vcpus})
			r := startRelayWith(t, addr, nil, watch.AttestChecker(attestOptions(t, c)))
			opts := cli(c, atls.NonceALPN)
			opts.MaxTLS12 = true
			_, err := contrastcli.Verify(t.Context(), r.addr, opts)
			if (err == nil) != (tc.want == failure.OK) {
				t.Fatalf("CLI: %v", err)
			}
			v := r.waitFor(tc.want)
			if !strings.Contains(v.Detail, tc.detail) {
				t.Errorf("detail %q does not contain %q", v.Detail, tc.detail)
			}
			for _, x := range r.traces() {
				if len(x.probes) != 0 {
					t.Fatalf("a probe ran, but TLS 1.2 shows the certificate")
				}
				x.checkNested(t)
				if attr(x.root.Attributes(), string(trace.FailureMode)) == string(tc.want) &&
					attr(x.root.Attributes(), string(trace.TLSProtocolVersion)) != "1.2" {
					t.Errorf("TLS version %q, want 1.2", attr(x.root.Attributes(), string(trace.TLSProtocolVersion)))
				}
			}
		})
	}
}
