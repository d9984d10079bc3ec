package verdict

import (
	"testing"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

func f(m failure.Mode, d string) *Finding { return &Finding{Mode: m, Detail: d} }

// TestDecidePrecedence is docs/verdict.md's precedence table: each row is
// what was observed and the one mode that names it.
func TestDecidePrecedence(t *testing.T) {
	rejected := Finding{Mode: failure.ClientRejectedCertificate, Detail: "the client aborted after the certificate"}
	issuerErr := Finding{Mode: failure.IssuerError, Detail: "internal_error alert"}
	ok := Finding{Mode: failure.OK, Detail: "handshake finished"}
	tests := []struct {
		name string
		o    Observed
		want failure.Mode
	}{
		// 1. The tunnel.
		{"tunnel: the in-cluster relay's verdict", Observed{Tunnel: &Tunnel{Remote: f(failure.LBClosedEarly, "closed")}, Wire: ok}, failure.LBClosedEarly},
		{"tunnel: no verdict came", Observed{Tunnel: &Tunnel{Failure: TunnelNoVerdict, Detail: "no verdict"}}, failure.TunnelUnavailable},
		{"tunnel: down, even when the local wire looks refused", Observed{Tunnel: &Tunnel{Failure: TunnelDown}, Wire: Finding{Mode: failure.UpstreamRefused}}, failure.TunnelUnavailable},
		{"tunnel: server busy is not upstream_refused", Observed{Tunnel: &Tunnel{Failure: TunnelBusy}}, failure.TunnelUnavailable},
		{"tunnel: an empty remote verdict is none", Observed{Tunnel: &Tunnel{Remote: &Finding{}, Failure: TunnelLost}}, failure.TunnelUnavailable},

		// 2. ccproxy's own handshake (probe).
		{"probe: evidence before the wire", Observed{OwnHandshake: true, Wire: Finding{Mode: failure.TLSAlert}, Evidence: f(failure.PolicyHashMismatch, "hash")}, failure.PolicyHashMismatch},
		{"probe: clock skew as attest orders it", Observed{OwnHandshake: true, Wire: rejected, Evidence: f(failure.ClockSkew, "3h")}, failure.ClockSkew},
		{"probe: the wire when evidence passed", Observed{OwnHandshake: true, Wire: Finding{Mode: failure.UpstreamReset}, Evidence: f(failure.OK, "")}, failure.UpstreamReset},
		{"probe: the wire when there was no evidence", Observed{OwnHandshake: true, Wire: Finding{Mode: failure.LBClosedEarly}}, failure.LBClosedEarly},
		{"probe: the state after a good handshake", Observed{OwnHandshake: true, Wire: ok, Evidence: f(failure.OK, ""), State: f(failure.CoordinatorRecoveryMode, "recover")}, failure.CoordinatorRecoveryMode},
		{"probe: the wire explains an API error", Observed{OwnHandshake: true, Wire: Finding{Mode: failure.UpstreamReset}, State: f(failure.CoordinatorAPIError, "unavailable")}, failure.UpstreamReset},
		{"probe: an API error on an intact wire", Observed{OwnHandshake: true, Wire: ok, Evidence: f(failure.OK, ""), State: f(failure.CoordinatorAPIError, "Internal")}, failure.CoordinatorAPIError},
		{"probe: an answered state before a wire that broke after it", Observed{OwnHandshake: true, Wire: Finding{Mode: failure.UpstreamReset}, State: f(failure.CoordinatorRecoveryMode, "recover")}, failure.CoordinatorRecoveryMode},
		{"probe: an answered manifest before a wire that broke after it", Observed{OwnHandshake: true, Wire: Finding{Mode: failure.UpstreamReset}, State: f(failure.ManifestMismatch, "differs")}, failure.ManifestMismatch},
		{"probe: evidence before an answered state", Observed{OwnHandshake: true, Wire: ok, Evidence: f(failure.TCBMismatch, ""), State: f(failure.OK, "")}, failure.TCBMismatch},
		{"probe: all well", Observed{OwnHandshake: true, Wire: ok, Evidence: f(failure.OK, ""), State: f(failure.OK, "manifest equal")}, failure.OK},

		// 3. A client that completed the handshake.
		{"relay: ok stays ok though ccproxy's references differ", Observed{Wire: ok, Evidence: f(failure.MeasurementMismatch, "m")}, failure.OK},
		{"relay: ok is not refined by a probe", Observed{Wire: ok, Probe: f(failure.CoordinatorRecoveryMode, "")}, failure.OK},

		// 4. The evidence explains the client's rejection.
		{"relay: evidence explains the rejection", Observed{Wire: rejected, Evidence: f(failure.ReferenceValueMismatch, "ID key")}, failure.ReferenceValueMismatch},
		{"relay: evidence explains a client alert", Observed{Wire: Finding{Mode: failure.TLSAlert}, Evidence: f(failure.ClockSkew, "")}, failure.ClockSkew},
		{"relay: evidence does not explain a reset", Observed{Wire: Finding{Mode: failure.UpstreamReset}, Evidence: f(failure.TCBMismatch, "")}, failure.UpstreamReset},
		{"relay: evidence that passed leaves the rejection", Observed{Wire: rejected, Evidence: f(failure.OK, "")}, failure.ClientRejectedCertificate},
		{"relay: seen evidence is not overridden by a probe", Observed{Wire: rejected, Evidence: f(failure.OK, ""), Probe: f(failure.MeasurementMismatch, "")}, failure.ClientRejectedCertificate},

		// 5. The probe refines what the relay could not see.
		{"relay: probe names the rejection (TLS 1.3)", Observed{Wire: rejected, Probe: f(failure.PolicyHashMismatch, "")}, failure.PolicyHashMismatch},
		{"relay: probe names an issuer error", Observed{Wire: issuerErr, Probe: f(failure.CoordinatorVersionMismatch, "")}, failure.CoordinatorVersionMismatch},
		{"relay: a probe that said nothing", Observed{Wire: issuerErr, Probe: &Finding{}}, failure.IssuerError},
		{"relay: no probe for other wire modes", Observed{Wire: Finding{Mode: failure.LBClosedEarly}, Probe: f(failure.OK, "")}, failure.LBClosedEarly},

		// 6. The wire.
		{"relay: the wire", Observed{Wire: Finding{Mode: failure.IssuerTimeout}}, failure.IssuerTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Decide(tt.o); got.Mode != tt.want {
				t.Fatalf("Decide = %s (%q), want %s", got.Mode, got.Detail, tt.want)
			}
		})
	}
}

func TestDecideDetail(t *testing.T) {
	got := Decide(Observed{Wire: Finding{Mode: failure.ClientRejectedCertificate}, Evidence: f(failure.ReferenceValueMismatch, "ID_KEY_DIGEST is 00")})
	if got.Detail != "ID_KEY_DIGEST is 00" {
		t.Errorf("detail %q", got.Detail)
	}
	got = Decide(Observed{Wire: Finding{Mode: failure.IssuerTimeout, Detail: "the upstream stayed silent"}})
	if got.Detail != "The upstream stayed silent" {
		t.Errorf("detail %q is not a sentence", got.Detail)
	}
	got = Decide(Observed{Tunnel: &Tunnel{Failure: TunnelPinRefused}})
	if got.Detail != "The tunnel could not carry the connection (peer pin refused)" {
		t.Errorf("default tunnel detail %q", got.Detail)
	}
	for _, m := range []failure.Mode{failure.ClientRejectedCertificate, failure.IssuerError} {
		if !NeedsProbe(m) {
			t.Errorf("NeedsProbe(%s) = false", m)
		}
	}
	if NeedsProbe(failure.LBClosedEarly) || NeedsProbe(failure.OK) {
		t.Error("NeedsProbe of a mode the probe cannot refine")
	}
}
