package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/internal/atls"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// RefinerConfig configures the relay's active probes.
type RefinerConfig struct {
	// Probe is the base configuration: evidence options, timeout, dialer.
	// NonceIn, ServerName, MaxVersion and HandshakeOnly are set per probe
	// from the client's ClientHello.
	Probe Config
	// CacheTTL is how long an upstream's probe result is reused, so that a
	// storm of failing clients makes one probe. 0 or less reuses nothing;
	// concurrent connections still share one probe in flight.
	CacheTTL time.Duration
	// HostName names this relay's host in clock_skew details; "" means
	// os.Hostname.
	HostName string
}

// Refiner is the relay's active probe (a watch.Refiner through its Refine
// method). It is safe for concurrent use; the zero value is not usable, use
// NewRefiner.
type Refiner struct {
	cfg  RefinerConfig
	host string
	now  func() time.Time
	// ask runs one probe; tests replace it.
	ask func(ctx context.Context, q question) answer
	// joined, if set, is called when a connection starts waiting for a probe
	// in flight (tests synchronize on it).
	joined func()

	mu      sync.Mutex
	flights map[question]*flight
}

// NewRefiner returns a Refiner for cfg.
func NewRefiner(cfg RefinerConfig) *Refiner {
	host := cfg.HostName
	if host == "" {
		host, _ = os.Hostname()
	}
	r := &Refiner{cfg: cfg, host: host, now: time.Now, flights: map[question]*flight{}}
	r.ask = r.probe
	return r
}

// question is what one probe asks, and so the cache key: the upstream and
// the client's hello as far as the upstream's answer can depend on it.
type question struct {
	upstream string
	// trigger is the wire verdict the probe refines, as the classifier
	// named it: client_rejected_certificate (find the evidence reason) or
	// issuer_error from an ALPN-nonce hello (an older Coordinator?).
	trigger    failure.Mode
	style      atls.NonceStyle
	sni        string
	maxVersion uint16
}

// answer is what a probe found.
type answer struct {
	attempts []*Attempt
	// keepWire leaves the connection's verdict as the wire named it; note,
	// if set, is appended to its detail.
	keepWire bool
	note     string
	mode     failure.Mode
	detail   string
	evidence *attest.Result
	// err says why the probe learned nothing (it is recorded on the span).
	err        error
	start, end time.Time
}

type flight struct {
	done     chan struct{}
	ans      answer
	finished time.Time
}

// Refine is a watch.Refiner: it probes upstream when a connection's wire
// verdict is client_rejected_certificate (for the evidence reason, with the
// client's nonce placement and TLS version) or issuer_error from a client
// that sent its nonce in ALPN and an SNI an older Coordinator cannot read
// (to tell coordinator_version_mismatch, which needs the SNI-nonce retry's
// evidence to bind its nonce; evidence bound to no nonce of the probe's is
// report_data_mismatch). Other verdicts are left alone.
// The probe opens its own connection; what was forwarded is untouched.
func (r *Refiner) Refine(ctx context.Context, upstream string, wire inspect.Verdict, hello *inspect.ClientHello) (watch.Refinement, bool) {
	q, ok := makeQuestion(upstream, wire, hello)
	if !ok {
		return watch.Refinement{}, false
	}
	asked := r.now()
	ans, reused, age := r.answer(ctx, q)
	return r.refinement(q, wire, ans, reused, age, asked), true
}

func makeQuestion(upstream string, wire inspect.Verdict, hello *inspect.ClientHello) (question, bool) {
	if hello == nil {
		return question{}, false
	}
	q := question{upstream: upstream, style: atls.NonceALPN, sni: hello.ServerName, maxVersion: tls.VersionTLS12}
	if hello.MaxVersion() >= tls.VersionTLS13 {
		q.maxVersion = tls.VersionTLS13
	}
	_, source, err := atls.NonceFromHello(hello.ServerName, hello.ALPN)
	switch wire.Mode {
	case failure.ClientRejectedCertificate:
		q.trigger = wire.Mode
		if source == atls.SourceSNI {
			// The SNI was the client's nonce; the probe sends its own.
			q.style, q.sni = atls.NonceSNI, ""
		}
	case failure.IssuerError:
		if source != atls.SourceALPN || err != nil || isSNINonce(hello.ServerName) {
			return question{}, false
		}
		q.trigger = wire.Mode
	default:
		return question{}, false
	}
	return q, true
}

// answer returns the probe result for q: a cached one while it is fresh,
// the one in flight if another connection is already asking, else a new
// probe's. reused says the result came from another connection's probe;
// age is how long ago that probe finished (0 if this connection waited for
// it).
func (r *Refiner) answer(ctx context.Context, q question) (ans answer, reused bool, age time.Duration) {
	r.mu.Lock()
	now := r.now()
	r.sweep(now)
	if f, ok := r.flights[q]; ok {
		r.mu.Unlock()
		select {
		case <-f.done:
			return f.ans, true, now.Sub(f.finished)
		default:
		}
		if r.joined != nil {
			r.joined()
		}
		select {
		case <-f.done:
			return f.ans, true, 0
		case <-ctx.Done():
			return answer{keepWire: true, err: fmt.Errorf("waiting for the probe in flight: %w", ctx.Err()), start: now, end: r.now()}, false, 0
		}
	}
	f := &flight{done: make(chan struct{})}
	r.flights[q] = f
	r.mu.Unlock()

	// The relay cancels a connection's context only when it gives up on
	// draining at shutdown; then the waiters are going away too. A probe
	// cut short that way is not a result to keep.
	f.ans = r.ask(ctx, q)
	r.mu.Lock()
	f.finished = r.now()
	if (r.cfg.CacheTTL <= 0 || ctx.Err() != nil) && r.flights[q] == f {
		delete(r.flights, q)
	}
	r.mu.Unlock()
	close(f.done)
	return f.ans, false, 0
}

// sweep drops expired results; r.mu is held.
func (r *Refiner) sweep(now time.Time) {
	for q, f := range r.flights {
		select {
		case <-f.done:
			if now.Sub(f.finished) >= r.cfg.CacheTTL {
				delete(r.flights, q)
			}
		default:
		}
	}
}

// probe runs the probe q asks for.
func (r *Refiner) probe(ctx context.Context, q question) (ans answer) {
	ans.start = time.Now()
	defer func() { ans.end = time.Now() }()
	host, port, err := splitAddr(q.upstream)
	if err != nil {
		ans.keepWire, ans.err = true, err
		return ans
	}
	cfg := r.cfg.Probe
	cfg.MaxVersion, cfg.HandshakeOnly = q.maxVersion, true
	p := &prober{cfg: cfg, host: host, port: port}
	first, err := p.attempt(ctx, q.style, q.sni)
	if err != nil {
		ans.keepWire, ans.err = true, err
		return ans
	}
	ans.attempts = []*Attempt{first}
	ans.evidence = first.Evidence
	second, v, ok, err := p.versionCheck(ctx, first)
	if err != nil {
		ans.keepWire, ans.err = true, err
		return ans
	}
	if second != nil {
		ans.attempts = append(ans.attempts, second)
	}
	switch {
	case ok:
		// coordinator_version_mismatch, or report_data_mismatch for a
		// Coordinator that only looks old (see versionCheck).
		ans.mode, ans.detail, ans.evidence = v.Mode, v.Detail, second.Evidence
	case q.trigger == failure.IssuerError:
		// Still the Coordinator's internal_error, or something else now.
		ans.keepWire = true
		switch {
		case second != nil:
			ans.note = v.Detail
		case first.Mode == failure.OK:
			ans.note = "An active probe right after it succeeded: the issuer fails intermittently."
		default:
			ans.err = fmt.Errorf("the probe found %s: %s", first.Mode, first.Detail)
		}
	case first.Evidence != nil && first.Mode != failure.OK:
		ans.mode, ans.detail = first.Mode, first.Detail
		if first.Mode == failure.ClockSkew {
			ans.detail = sentence(ans.detail) + r.clockSentence()
		}
	case first.Mode == failure.OK:
		ans.keepWire = true
		ans.note = acceptedNote(first.Evidence)
	default:
		ans.keepWire = true
		ans.err = fmt.Errorf("the probe found %s: %s", first.Mode, first.Detail)
	}
	return ans
}

// clockSentence says which clocks a relay's clock_skew compared.
func (r *Refiner) clockSentence() string {
	host := r.host
	if host == "" {
		host = "this host"
	} else {
		host = fmt.Sprintf("host %q", host)
	}
	return fmt.Sprintf(" Compared: the Coordinator's clock when it issued the certificate (NotBefore + 2 h) with the clock of ccproxy's %s. "+
		"That is the client's view only when ccproxy runs on the client's machine; a relay in the cluster compares the Coordinator with the cluster's clock, and the client's own clock may differ from both.", host)
}

// acceptedNote explains a client rejection whose evidence ccproxy accepts.
func acceptedNote(ev *attest.Result) string {
	if ev == nil {
		return "An active probe got through the handshake: the client rejected the certificate for a reason outside its evidence."
	}
	if ev.Verdict != attest.Verified {
		return fmt.Sprintf("An active probe found the %s evidence %s: ccproxy has fewer reference values than the client (set --manifest and --coordinator-policy-hash like the client's) to name what the client rejected.",
			platformName(ev.Platform), ev.Verdict)
	}
	return fmt.Sprintf("An active probe verified the %s evidence against ccproxy's reference values: the client checks against other values (its manifest.json or --coordinator-policy-hash differ from ccproxy's).",
		platformName(ev.Platform))
}

// refinement turns an answer into what the relay records. asked is when
// this connection asked: a probe in flight that it joined started earlier,
// for another connection, and is part of this connection's time line only
// from then on.
func (r *Refiner) refinement(q question, wire inspect.Verdict, ans answer, reused bool, age time.Duration, asked time.Time) watch.Refinement {
	ref := watch.Refinement{Start: ans.start, End: ans.end, Err: ans.err}
	switch {
	case ref.Start.IsZero() || age > 0:
		// A result from before this connection: its probe is not part of
		// this connection's time line.
		now := r.now()
		ref.Start, ref.End = now, now
	case reused && ref.Start.Before(asked):
		ref.Start = asked
	}
	if ans.keepWire {
		ref.Mode, ref.Detail = wire.Mode, wire.Detail
		if ans.note != "" {
			ref.Detail = sentence(ref.Detail) + " " + ans.note
		}
	} else {
		ref.Mode, ref.Detail = ans.mode, ans.detail
	}
	if ans.evidence != nil {
		ev := toWatchEvidence(*ans.evidence)
		ref.Evidence = &ev
	}
	ref.Attrs = []attribute.KeyValue{
		trace.ProbeTrigger.String(string(q.trigger)),
		trace.ProbeAttempts.Int(len(ans.attempts)),
		trace.ProbeCached.Bool(reused),
	}
	if reused {
		ref.Attrs = append(ref.Attrs, trace.ProbeCacheAgeMS.Float64(ms(age)))
	}
	if len(ans.attempts) > 0 {
		a := ans.attempts[0]
		ref.Attrs = append(ref.Attrs,
			trace.ProbeResult.String(string(a.Mode)),
			trace.ProbeResultDetail.String(a.Detail),
			trace.ATLSNonceSource.String(a.NonceStyle),
			trace.ATLSClientNonce.String(a.Nonce),
			trace.TLSServerName.String(a.ServerName),
		)
		if a.Address != "" {
			ref.Attrs = append(ref.Attrs, trace.NetworkPeerAddress.String(a.Address))
		}
		if a.TLSVersion != "" {
			ref.Attrs = append(ref.Attrs, trace.TLSProtocolVersion.String(a.TLSVersion))
		}
		if a.Timings.Connect > 0 {
			ref.Attrs = append(ref.Attrs, trace.DialDurationMS.Float64(ms(a.Timings.Connect)))
		}
		if a.Timings.FirstByte > 0 {
			ref.Attrs = append(ref.Attrs, trace.UpstreamFirstByteMS.Float64(ms(a.Timings.FirstByte)))
		}
		if a.Timings.Handshake > 0 {
			ref.Attrs = append(ref.Attrs, trace.HandshakeMS.Float64(ms(a.Timings.Handshake)))
		}
		if len(ans.attempts) > 1 {
			ref.Attrs = append(ref.Attrs, trace.ProbeSNIResult.String(string(ans.attempts[1].Mode)))
		}
	}
	return ref
}

func toWatchEvidence(r attest.Result) watch.Evidence {
	return watch.Evidence{
		Platform:           r.Platform,
		Verdict:            string(r.Verdict),
		Mode:               r.Mode,
		Detail:             r.Detail,
		PolicyHash:         r.PolicyHash,
		ExpectedPolicyHash: r.ExpectedPolicyHash,
		ClockOffset:        r.ClockOffset,
	}
}
