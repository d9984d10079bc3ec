// Package verdict names the one failure mode of a connection (or of a probe)
// from everything that was observed of it. The sources each decide their own
// modes — the classifier what the bytes mean (proxy/inspect), attest what is
// wrong with the evidence, the probe the Coordinator's state, the tunnel why
// it could not carry a connection — and this package alone decides which of
// them is the answer. Relay, tunnel and probe call Decide; nothing else
// combines findings. docs/verdict.md is the precedence table, and
// TestDecidePrecedence is that table as a test.
//
//	f := verdict.Decide(verdict.Observed{
//		Wire:     verdict.Finding{Mode: failure.ClientRejectedCertificate, Detail: "..."},
//		Evidence: &verdict.Finding{Mode: failure.PolicyHashMismatch, Detail: "..."},
//	})
//	// f.Mode == failure.PolicyHashMismatch
package verdict

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// Finding is one source's answer: a mode and one sentence about it. The
// zero Finding means the source said nothing.
type Finding struct {
	Mode   failure.Mode
	Detail string
}

func (f *Finding) said() bool { return f != nil && f.Mode != "" }

func (f *Finding) failed() bool { return f.said() && f.Mode != failure.OK }

// Observed is what was seen of one connection.
type Observed struct {
	// Tunnel is set on the tunnel's local side: the connection went into
	// the tunnel instead of to an upstream.
	Tunnel *Tunnel
	// Wire is the classifier's verdict on the bytes.
	Wire Finding
	// Evidence is ccproxy's own check of the certificate the client was
	// shown (TLS 1.2, seen passing), or of the probe's own handshake.
	Evidence *Finding
	// OwnHandshake: ccproxy itself was the client (`ccproxy probe`), so its
	// evidence check decided the handshake, as the CLI's would have.
	OwnHandshake bool
	// Probe is an active probe's answer for a relayed connection whose
	// client rejected what it was shown or got an issuer error.
	Probe *Finding
	// State is the Coordinator's user-API state, when ccproxy asked
	// (OwnHandshake only): coordinator_api_error when it gave none.
	State *Finding
}

// Tunnel is the tunnel's side of a connection on the local end.
type Tunnel struct {
	// Remote is the in-cluster relay's verdict, when it came: that relay
	// decided it with this same function.
	Remote *Finding
	// Failure says why no remote verdict can come; Detail says it for
	// people, with the server's address and the cause.
	Failure TunnelFailure
	Detail  string
}

// TunnelFailure is why the local tunnel end could not carry a connection
// (or learn its outcome). Each is tunnel_unavailable, with its own detail.
type TunnelFailure string

// The ways a tunnel fails a connection.
const (
	TunnelDown         TunnelFailure = "tunnel down"                              // no QUIC connection to the server could be made
	TunnelPinRefused   TunnelFailure = "peer pin refused"                         // the TLS handshake failed on a certificate pin
	TunnelBusy         TunnelFailure = "server at its stream or connection limit" // too many streams for this client, or connections
	TunnelUnknownRoute TunnelFailure = "route unknown to the server"              // the server has no such route
	TunnelShutdown     TunnelFailure = "server shutting down"                     // the server refused the stream while draining
	TunnelBadHeader    TunnelFailure = "stream header refused"                    // the server could not read the stream header
	TunnelLost         TunnelFailure = "tunnel lost"                              // the QUIC connection ended before the verdict came
	TunnelNoVerdict    TunnelFailure = "verdict never came"                       // the server sent no verdict in time
	TunnelLocalStop    TunnelFailure = "local end stopped first"                  // this process shut down before the verdict came
)

// NeedsProbe reports the wire verdicts an active probe may refine: the
// client rejected the certificate it was shown (encrypted under TLS 1.3), or
// the Coordinator answered with internal_error (an issuer failure or an
// older Coordinator).
func NeedsProbe(wire failure.Mode) bool {
	return wire == failure.ClientRejectedCertificate || wire == failure.IssuerError
}

// evidenceExplains reports the wire verdicts a failed evidence check of the
// certificate the client saw explains: the client's own rejection is the
// fact, the evidence says why.
func evidenceExplains(wire failure.Mode) bool {
	return wire == failure.ClientRejectedCertificate || wire == failure.TLSAlert
}

// Decide returns the connection's one failure mode and its detail, as one
// sentence. The order, first match wins:
//
//  1. tunnel: the in-cluster relay's verdict, else tunnel_unavailable;
//  2. ccproxy's own handshake (probe): failed evidence, then a state the
//     Coordinator answered (recovery mode, no manifest, its manifest), then
//     the wire, then an API error;
//  3. a relayed connection the client completed stays ok, whatever
//     ccproxy's own reference values say (attest.verdict records that);
//  4. a client rejection explained by failed evidence: the evidence mode
//     (which attest orders: clock_skew first, then the evidence's own);
//  5. a rejection or issuer error the probe refined: the probe's mode;
//  6. the wire verdict.
func Decide(o Observed) Finding {
	f := decide(o)
	f.Detail = Sentence(f.Detail)
	return f
}

func decide(o Observed) Finding {
	if t := o.Tunnel; t != nil {
		if t.Remote.said() {
			return *t.Remote
		}
		d := t.Detail
		if d == "" {
			d = fmt.Sprintf("the tunnel could not carry the connection (%s)", t.Failure)
		}
		return Finding{Mode: failure.TunnelUnavailable, Detail: d}
	}
	if o.OwnHandshake {
		switch {
		case o.Evidence.failed():
			return *o.Evidence
		case o.State.said() && o.State.Mode != failure.CoordinatorAPIError:
			// The Coordinator answered with its state: that answer is what
			// the CLI prints, whatever the connection did after it.
			return *o.State
		case o.Wire.failed():
			// An API error may be only gRPC's word for a connection that
			// broke under the call: the wire says how.
			return o.Wire
		case o.State.said():
			return *o.State
		}
		return o.Wire
	}
	switch {
	case o.Wire.Mode == failure.OK:
		return o.Wire
	case evidenceExplains(o.Wire.Mode) && o.Evidence.failed():
		return *o.Evidence
	case NeedsProbe(o.Wire.Mode) && o.Evidence == nil && o.Probe.said():
		return *o.Probe
	}
	return o.Wire
}

// Sentence makes a detail from any source read as the contract's "one
// human sentence": capitalized.
func Sentence(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 || unicode.IsUpper(r) {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}
