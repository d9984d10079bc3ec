// Package watch connects the relay to everything that looks at a
// connection: it feeds each direction's bytes to the TLS parsers, the
// events to the classifier, a TLS 1.2 certificate to package attest, asks
// the prober to refine a verdict the wire alone cannot decide, has
// internal/verdict name the connection from what they found, and writes
// the connection's trace: one root span `ccproxy.connection` with the
// contract's attributes (through trace.EndConnection) and a child span per
// phase. watch names no failure mode itself.
//
//	w := watch.New(watch.Config{Tracer: tp.Tracer(), IssuerDeadline: 10 * time.Second})
//	p := &proxy.Proxy{Routes: routes, NewObserver: w.Observe}
package watch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	oteltrace "go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/ccproxy-dev/ccproxy/internal/atls"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/runs"
	"github.com/ccproxy-dev/ccproxy/internal/verdict"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// DefaultIssuerDeadline is the silence after the ClientHello beyond which a
// connection is issuer_timeout. Contrast's issuer may fetch collateral for
// up to 20 s and its server gives a handshake 25 s; 10 s of silence is
// already far outside a healthy Coordinator's answer (tens of ms).
const DefaultIssuerDeadline = 10 * time.Second

// Evidence is what checking a certificate's attestation evidence found.
type Evidence struct {
	Platform           string
	Verdict            string // verified, rejected, unverified
	Mode               failure.Mode
	Detail             string
	PolicyHash         string
	ExpectedPolicyHash string
	ClockOffset        *time.Duration
}

// CertChecker checks the evidence in a server certificate seen in the
// clear (TLS 1.2), DER as it came on the wire, bound to the client's nonce.
// It names the evidence's mode, also for bytes that are no certificate:
// watch names none (AttestChecker leaves it to package attest).
type CertChecker func(ctx context.Context, der, nonce []byte) Evidence

// Refinement is what an active probe of the upstream found.
type Refinement struct {
	Mode     failure.Mode
	Detail   string
	Evidence *Evidence
	// Attrs go on the probe span.
	Attrs []attribute.KeyValue
	Start time.Time
	End   time.Time
	Err   error
}

// Refiner probes the upstream when the wire verdict is not the whole story
// (client_rejected_certificate under TLS 1.3, internal_error from a possibly
// older Coordinator). ok false means keep the wire verdict.
type Refiner func(ctx context.Context, upstream string, wire inspect.Verdict, hello *inspect.ClientHello) (r Refinement, ok bool)

// Metrics receives per-connection counts; admin.Metrics implements it.
type Metrics interface {
	ConnOpened(upstream string)
	ConnClosed(upstream string, mode failure.Mode, c2u, u2c int64)
	ObserveIssuer(d time.Duration)
	ObserveHandshake(d time.Duration)
}

// Config configures the watcher of every connection.
type Config struct {
	Tracer         oteltrace.Tracer
	IssuerDeadline time.Duration
	CheckCert      CertChecker // nil: TLS 1.2 certificates are recorded, not checked
	Refine         Refiner     // nil: no active probes
	Metrics        Metrics     // nil: none
	Logger         *slog.Logger
	// OnVerdict, if set, is called once per connection with its final mode
	// and detail (the demo and tests use it).
	OnVerdict func(info proxy.ConnInfo, v inspect.Verdict)
	// Runs places each connection in its client's CLI run (the root span's
	// trace.RunAttempt and link); nil: a tracker of this Watcher's own.
	Runs *runs.Tracker
}

// Watcher makes one Observer per connection.
type Watcher struct{ cfg Config }

// New returns a Watcher for cfg.
func New(cfg Config) *Watcher {
	if cfg.IssuerDeadline <= 0 {
		cfg.IssuerDeadline = DefaultIssuerDeadline
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Runs == nil {
		cfg.Runs = runs.New(runs.Config{})
	}
	return &Watcher{cfg: cfg}
}

// Observe is a proxy.Proxy NewObserver function.
//
// The connection's spans are made when it closes, from what was recorded
// while it lived (see conn.write), and only if its run does not fold it
// (internal/runs): an idle connection holds no open span, and a folded
// attempt of a failing run costs no span at all.
func (w *Watcher) Observe(ctx context.Context, info proxy.ConnInfo) proxy.Observer {
	run := w.cfg.Runs.Begin(runs.KeyOf(info.Client, info.Route.Upstream), info.Accepted)
	o := &conn{w: w, ctx: ctx, info: info, run: run}
	// A connection is its own trace, unless it arrived with a propagated
	// parent (a tunnel stream carrying the local side's traceparent): then
	// the local end's trace holds it, and it is never folded.
	parent := oteltrace.SpanContextFromContext(ctx)
	if parent.IsValid() && parent.IsRemote() {
		o.joined = true
	} else {
		parent = oteltrace.SpanContext{}
	}
	if run.Number() <= 1 {
		// The run's later attempts link to this root span, possibly while
		// this connection is still open: its ids are fixed now, the span
		// is made at the close like every other.
		run.Started(trace.Reserve(parent))
	}
	if !info.Route.Inspect {
		run.Established() // no handshake to wait for (see internal/runs)
	}
	o.cls.IssuerDeadline = w.cfg.IssuerDeadline
	if info.Route.Inspect {
		o.c2s, o.s2c = inspect.NewConn(o.onEvent)
	}
	if w.cfg.Metrics != nil {
		w.cfg.Metrics.ConnOpened(info.Route.Upstream)
	}
	return o
}

// root starts the connection's root span (dated at its accept), once, with
// the ids reserved for it if it is its run's first; o.ctx becomes its
// context, the parent of the child spans.
func (o *conn) root() oteltrace.Span {
	if o.span != nil {
		return o.span
	}
	opts := []oteltrace.SpanStartOption{
		oteltrace.WithTimestamp(o.info.Accepted),
		oteltrace.WithSpanKind(oteltrace.SpanKindServer),
	}
	if !o.joined {
		opts = append(opts, oteltrace.WithNewRoot())
	}
	opts = append(opts, o.run.StartOptions()...) // links are given at the start
	if own := o.run.Own(); own.IsValid() {
		o.ctx, o.span = trace.StartReserved(o.ctx, o.w.tracer(), own, trace.SpanConnection, opts...)
	} else {
		o.ctx, o.span = o.w.tracer().Start(o.ctx, trace.SpanConnection, opts...)
	}
	return o.span
}

func (w *Watcher) tracer() oteltrace.Tracer {
	if w.cfg.Tracer != nil {
		return w.cfg.Tracer
	}
	return noop.NewTracerProvider().Tracer("")
}

// conn observes one connection. mu serializes the two copy goroutines'
// calls; the parsers are fed outside the lock (each has its own goroutine)
// and their events take it.
type conn struct {
	w    *Watcher
	ctx  context.Context
	span oteltrace.Span // nil until root(), at write
	info proxy.ConnInfo
	run  *runs.Attempt

	c2s, s2c *inspect.Parser

	mu      sync.Mutex
	cls     inspect.Classifier
	dialAt  int64 // unix nanoseconds the dial ended, succeeded or not (dialed)
	hsStart int64 // unix nanoseconds, 0 until a ClientHello
	// tl holds the root span's events until the close (see timeline); the
	// handshake and stream child spans are made then too, from hsStart and
	// dialAt, so an idle connection holds no open span but its root.
	tl        timeline
	certCheck chan checked // TLS 1.2: the running evidence check
	// helloWait, made when a certificate comes before the relay has
	// observed the ClientHello, is closed once it has, or once the client
	// direction ended without one (see startCertCheck).
	helloWait chan struct{}
	// The root span's attributes known before the close are kept here
	// (or in info and the classifier's facts) and set at the close
	// (openAttrs): the SDK span would hold each as a 64-byte key-value
	// in a grown slice for as long as the connection stays open.
	hello    *inspect.ClientHello // the first one seen: its attributes
	dialTook time.Duration
	dialPeer string
	certOIDs []string // TLS 1.2: the seen certificate's extensions

	// Flags together: each alone would take a word. (An open connection
	// holds this struct for as long as it lives; 640 bytes is a size class.)
	joined    bool  // a child of a propagated remote parent
	dialed    bool  // the dial ended, succeeded or not
	issuerObs bool  // the issuer's first byte went to the metrics
	inspected uint8 // directions past their inspection

	// chunkAt[dir] is when the chunk being parsed in dir passed the relay:
	// its events happened then, not when the parser got to them.
	chunkAt [2]atomic.Int64
}

func (o *conn) Dialed(up net.Conn, err error, took time.Duration) {
	end := time.Now()
	var peer string
	if up != nil {
		peer = up.RemoteAddr().String()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cls.Dialed(err)
	o.dialed, o.dialTook, o.dialPeer = true, took, peer // the error is the classifier's
	o.dialAt = end.UnixNano()
}

func (o *conn) Data(dir proxy.Direction, p []byte, at time.Time) {
	o.chunkAt[inspectDir(dir)].Store(at.UnixNano())
	o.mu.Lock()
	o.cls.Data(inspectDir(dir), len(p), at)
	o.mu.Unlock()
	if dir == proxy.ClientToUpstream {
		if o.c2s != nil {
			o.c2s.Write(p)
		}
	} else if o.s2c != nil {
		o.s2c.Write(p)
	}
}

// Inspecting keeps a direction in user space while the classifier still
// learns from it. The parser's own Done (first protected record) is too
// early: the client's answer to the server's flight comes after it.
//
// Once it says no, the relay never feeds that direction again: its parser
// (and what it buffered) is let go here, by the direction's own goroutine,
// the only one that uses it.
func (o *conn) Inspecting(dir proxy.Direction) bool {
	if !o.info.Route.Inspect {
		return false
	}
	o.mu.Lock()
	more := o.cls.WantsMore(inspectDir(dir))
	if !more && dir == proxy.ClientToUpstream && o.hello != nil {
		// The client is past its handshake: keep what the root span and
		// a probe need of its hello, not the whole of it.
		o.hello = o.cls.CompactHello()
	}
	if !more && dir == proxy.UpstreamToClient {
		o.cls.CompactServerHello()
	}
	if !more {
		o.inspected++
		if o.inspected == 2 {
			o.tl.trim() // no more events: what the connection keeps while it idles
		}
	}
	o.mu.Unlock()
	if !more {
		if dir == proxy.ClientToUpstream {
			o.c2s.Release()
			o.c2s = nil
			o.run.Established() // past its handshake: no retry follows it
		} else {
			o.s2c.Release()
			o.s2c = nil
		}
	}
	return more
}

// HelloDone makes conn a proxy.HelloObserver: the relay holds the client
// to its ClientHello timeout until the classifier has seen a complete
// ClientHello.
func (o *conn) HelloDone() bool {
	if !o.info.Route.Inspect {
		return true
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cls.HelloDone()
}

// onEvent is the parsers' sink; both parsers call it, each from its own
// direction's goroutine.
func (o *conn) onEvent(ev inspect.Event) {
	now := time.Unix(0, o.chunkAt[ev.Dir].Load())
	o.mu.Lock()
	defer o.mu.Unlock()
	hadHello := o.cls.HelloDone()
	o.cls.Observe(ev, now)
	o.event(ev, now)
	switch ev.Kind {
	case inspect.KindClientHello:
		if !hadHello {
			o.hsStart, o.hello = now.UnixNano(), ev.ClientHello
			o.helloSeen()
		}
	case inspect.KindCertificate:
		if ev.Dir == inspect.ServerToClient && o.certCheck == nil && len(ev.Certificates) > 0 {
			o.startCertCheck(ev.Certificates)
		}
	}
	if !o.issuerObs && ev.Dir == inspect.ServerToClient && o.cls.HelloDone() {
		if f := o.cls.Facts(); f.FirstByteSeen {
			o.issuerObs = true
			if o.w.cfg.Metrics != nil {
				o.w.cfg.Metrics.ObserveIssuer(f.FirstByte)
			}
		}
	}
}

// event records one parser event for the root span: the handshake as a
// timeline, with record sizes and stream offsets (see timeline).
func (o *conn) event(ev inspect.Event, at time.Time) {
	o.tl.parserEvent(ev, at)
}

// openAttrs sets the root span's attributes of what was known before the
// close, in the order it became known: the route and addresses, the
// dial's duration, the first ClientHello's, the upstream's first byte.
func (o *conn) openAttrs(span oteltrace.Span, firstByte time.Duration) {
	info := o.info
	span.SetAttributes(
		trace.UpstreamAddress.String(info.Route.Upstream),
		trace.ListenAddress.String(info.Route.Listen),
	)
	if host, port, ok := splitAddr(info.Client); ok {
		span.SetAttributes(trace.ClientAddress.String(host), trace.ClientPort.Int(port))
	}
	if host, port, err := net.SplitHostPort(info.Route.Upstream); err == nil {
		p, _ := strconv.Atoi(port)
		span.SetAttributes(trace.ServerAddress.String(host), trace.ServerPort.Int(p))
	}
	if o.dialed {
		span.SetAttributes(trace.DialDurationMS.Float64(ms(o.dialTook)))
	}
	if o.hello != nil {
		helloAttrs(span, o.hello)
	}
	if o.certOIDs != nil {
		span.SetAttributes(trace.TLSCertOIDs.StringSlice(o.certOIDs))
	}
	if o.issuerObs {
		// The classifier's FirstByte does not change once seen.
		span.SetAttributes(trace.UpstreamFirstByteMS.Float64(ms(firstByte)))
	}
}

func helloAttrs(span oteltrace.Span, h *inspect.ClientHello) {
	span.SetAttributes(trace.TLSServerName.String(h.ServerName))
	if len(h.ALPN) > 0 {
		span.SetAttributes(trace.TLSALPN.StringSlice(h.ALPN))
	}
	nonce, source, err := atls.NonceFromHello(h.ServerName, h.ALPN)
	if source != "" {
		span.SetAttributes(trace.ATLSNonceSource.String(source))
	}
	if err == nil {
		span.SetAttributes(trace.ATLSClientNonce.String(hex.EncodeToString(nonce)))
	}
}

// startCertCheck checks a TLS 1.2 certificate in the background: evidence
// verification takes milliseconds, and forwarding must not wait for it. The
// checker (package attest) judges the bytes as they came, a certificate
// that does not parse included; without one the evidence stays unverified.
//
// The check needs the client's nonce, and the relay observes each chunk
// after forwarding it: the upstream's certificate can reach this parser
// before the client's goroutine has handed its ClientHello to the other
// one. Then the check waits until it has, or until the client direction
// ended without one; it never checks without a nonce it is about to get.
func (o *conn) startCertCheck(ders [][]byte) {
	o.certCheck = make(chan checked, 1)
	o.certOIDs = []string{}
	if cert, err := x509.ParseCertificate(ders[0]); err == nil {
		for _, e := range cert.Extensions {
			o.certOIDs = append(o.certOIDs, e.Id.String())
		}
	}
	var wait chan struct{}
	if o.hello == nil {
		o.helloWait = make(chan struct{})
		wait = o.helloWait
	}
	check := o.w.cfg.CheckCert
	ctx := o.ctx
	der := ders[0]
	go func() {
		if wait != nil {
			<-wait
		}
		c := checked{start: time.Now(), ev: Evidence{Verdict: "unverified"}}
		o.mu.Lock()
		h := o.hello
		o.mu.Unlock()
		var nonce []byte
		if h != nil {
			nonce, _, _ = atls.NonceFromHello(h.ServerName, h.ALPN)
		}
		if check != nil {
			c.ev = check(ctx, der, nonce)
		}
		c.end = time.Now()
		o.certCheck <- c
	}()
}

// helloSeen releases a certificate check waiting for the ClientHello
// (startCertCheck); o.mu is held.
func (o *conn) helloSeen() {
	if o.helloWait != nil {
		close(o.helloWait)
		o.helloWait = nil
	}
}

// checked is a finished evidence check: what it found and when it ran
// (its attest.verify span is made with the others, at the close).
type checked struct {
	ev         Evidence
	start, end time.Time
}

func (o *conn) Ended(dir proxy.Direction, err error, at time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cls.Ended(inspectDir(dir), err, at)
	if dir == proxy.ClientToUpstream {
		o.helloSeen() // every ClientHello the client sent was observed by now
	}
	o.run.Over(at) // the client may retry from now on
	o.tl.ended(dir, err, at)
}

func (o *conn) Closed(s proxy.Stats) {
	// Both directions ended: no parser is written again.
	for _, p := range []*inspect.Parser{o.c2s, o.s2c} {
		if p != nil {
			p.Release()
		}
	}
	o.c2s, o.s2c = nil, nil
	o.mu.Lock()
	wire := o.cls.Verdict()
	if !o.info.Route.Inspect {
		wire = o.cls.PlainVerdict(s.ClientToUpstream, s.UpstreamToClient)
	}
	facts := o.cls.Facts()
	certCheck := o.certCheck
	o.mu.Unlock()

	// The connection is over: the evidence check and any probe may now take
	// their time without holding up a byte. Each says what it found;
	// verdict.Decide alone says which finding names the connection.
	st := story{stats: s, facts: facts, end: s.Closed}
	obs := verdict.Observed{Wire: verdict.Finding{Mode: wire.Mode, Detail: wire.Detail}}
	if certCheck != nil {
		c := <-certCheck
		st.cert = &c
		st.ev = &c.ev
		obs.Evidence = &verdict.Finding{Mode: c.ev.Mode, Detail: c.ev.Detail}
	}
	if o.w.cfg.Refine != nil && certCheck == nil && verdict.NeedsProbe(wire.Mode) {
		if r, ok := o.w.cfg.Refine(o.ctx, o.info.Route.Upstream, wire, facts.Hello); ok {
			if r.End.IsZero() {
				r.End = time.Now()
			}
			st.probe = &r
			obs.Probe = &verdict.Finding{Mode: r.Mode, Detail: r.Detail}
			st.ev = r.Evidence
		}
	}
	st.v = verdict.Decide(obs)
	if st.v.Mode == failure.OK && o.hsStart != 0 && o.w.cfg.Metrics != nil {
		o.w.cfg.Metrics.ObserveHandshake(s.Closed.Sub(time.Unix(0, o.hsStart)))
	}
	if o.w.cfg.Metrics != nil {
		o.w.cfg.Metrics.ConnClosed(o.info.Route.Upstream, st.v.Mode, s.ClientToUpstream, s.UpstreamToClient)
	}
	// The run decides whether this attempt's trace and log line are
	// written (now, or later as the run's last) or folded into its count.
	write := func() { o.write(st) }
	if o.joined {
		o.run.End(s.Closed, st.v.Mode, nil)
		write()
	} else {
		o.run.End(s.Closed, st.v.Mode, write)
	}
	if o.w.cfg.OnVerdict != nil {
		o.w.cfg.OnVerdict(o.info, inspect.Verdict{Mode: st.v.Mode, Detail: st.v.Detail})
	}
}

// story is what a closed connection's trace is written from.
type story struct {
	stats proxy.Stats
	facts inspect.Facts
	v     verdict.Finding
	cert  *checked    // TLS 1.2: the evidence check of the seen certificate
	probe *Refinement // the relay's probe, when one ran
	ev    *Evidence   // what goes on the root span's attest.* attributes
	end   time.Time
}

// write writes the connection's trace — its root span with the contract's
// attributes and events, a child span per phase — and its log line.
//
// The root span ends when the connection's story does: at the close, or
// later, when an evidence check or a probe that ran on after it ended, so
// it encloses its children in every waterfall.
func (o *conn) write(st story) {
	span := o.root()
	s, facts, v := st.stats, st.facts, st.v
	end := st.end
	if !span.IsRecording() {
		// Tracing off (the default): no child span, attribute or event
		// is made only to be dropped; the log line stays.
		o.tl = timeline{}
		trace.EndConnection(span, trace.Outcome{Mode: string(v.Mode), End: end})
		o.logLine(v, s)
		return
	}
	if o.dialed {
		o.dialSpan()
	}
	if c := st.cert; c != nil {
		_, as := o.w.tracer().Start(o.ctx, trace.SpanAttestVerify, oteltrace.WithTimestamp(c.start))
		evidenceAttrs(as, c.ev)
		as.End(oteltrace.WithTimestamp(c.end))
		if c.end.After(end) {
			end = c.end
		}
	}
	if st.probe != nil {
		if probeEnd := o.probeSpan(*st.probe); probeEnd.After(end) {
			end = probeEnd
		}
	}
	o.openAttrs(span, facts.FirstByte)
	if st.ev != nil {
		evidenceAttrs(span, *st.ev)
	}
	if facts.Version != 0 {
		span.SetAttributes(trace.TLSProtocolVersion.String(inspect.VersionName(facts.Version)))
	}
	if facts.ServerHello != nil {
		span.SetAttributes(trace.TLSCipherSuite.String(cipherSuiteName(facts.ServerHello.CipherSuite)))
	}
	if facts.Alert != nil {
		span.SetAttributes(trace.TLSAlertDescription.Int(int(facts.Alert.Description)))
	}
	if o.hsStart != 0 {
		_, hs := o.w.tracer().Start(o.ctx, trace.SpanTLSHandshake, oteltrace.WithTimestamp(time.Unix(0, o.hsStart)))
		hs.SetAttributes(trace.FailureMode.String(string(v.Mode)))
		hs.End(oteltrace.WithTimestamp(s.Closed))
	}
	if o.dialed && o.cls.DialErr() == nil {
		_, stream := o.w.tracer().Start(o.ctx, trace.SpanRelayStream, oteltrace.WithTimestamp(time.Unix(0, o.dialAt)))
		stream.SetAttributes(trace.BytesClientToUp.Int64(s.ClientToUpstream), trace.BytesUpToClient.Int64(s.UpstreamToClient))
		stream.End(oteltrace.WithTimestamp(s.Closed))
	}
	o.tl.flush(span)
	trace.EndConnection(span, trace.Outcome{
		Mode:             string(v.Mode),
		Detail:           v.Detail,
		ClientToUpstream: s.ClientToUpstream,
		UpstreamToClient: s.UpstreamToClient,
		End:              end,
	})
	o.logLine(v, s)
}

// logLine is the connection's log line.
func (o *conn) logLine(v verdict.Finding, s proxy.Stats) {
	o.w.cfg.Logger.Info("connection",
		"client", addrString(o.info.Client), "upstream", o.info.Route.Upstream,
		"failure_mode", string(v.Mode), "detail", v.Detail, "attempt", o.run.Number(),
		"bytes_in", s.ClientToUpstream, "bytes_out", s.UpstreamToClient,
		"duration", s.Closed.Sub(o.info.Accepted).Round(time.Millisecond).String())
}

// dialSpan records the upstream dial as a child span, from what Dialed kept.
func (o *conn) dialSpan() {
	end := time.Unix(0, o.dialAt)
	_, dial := o.w.tracer().Start(o.ctx, trace.SpanUpstreamDial, oteltrace.WithTimestamp(end.Add(-o.dialTook)), oteltrace.WithSpanKind(oteltrace.SpanKindClient))
	dial.SetAttributes(trace.UpstreamAddress.String(o.info.Route.Upstream))
	if o.dialPeer != "" {
		dial.SetAttributes(trace.NetworkPeerAddress.String(o.dialPeer))
	}
	if err := o.cls.DialErr(); err != nil {
		dial.RecordError(err)
		dial.SetStatus(codes.Error, err.Error())
	}
	dial.End(oteltrace.WithTimestamp(end))
}

// probeSpan records the relay's probe as a child span and returns when it
// ended.
func (o *conn) probeSpan(r Refinement) time.Time {
	end := r.End
	_, span := o.w.tracer().Start(o.ctx, trace.SpanProbe, oteltrace.WithTimestamp(r.Start), oteltrace.WithSpanKind(oteltrace.SpanKindClient))
	span.SetAttributes(r.Attrs...)
	if r.Mode != "" {
		span.SetAttributes(trace.FailureMode.String(string(r.Mode)), trace.FailureDetail.String(r.Detail))
	}
	if r.Evidence != nil {
		evidenceAttrs(span, *r.Evidence)
	}
	if r.Err != nil {
		span.RecordError(r.Err)
		span.SetStatus(codes.Error, r.Err.Error())
	}
	span.End(oteltrace.WithTimestamp(end))
	return end
}

func evidenceAttrs(span oteltrace.Span, ev Evidence) {
	if ev.Platform != "" {
		span.SetAttributes(trace.AttestPlatform.String(ev.Platform))
	}
	if ev.Verdict != "" {
		span.SetAttributes(trace.AttestVerdict.String(ev.Verdict))
	}
	if ev.PolicyHash != "" {
		span.SetAttributes(trace.AttestPolicyHash.String(ev.PolicyHash))
	}
	if ev.ExpectedPolicyHash != "" {
		span.SetAttributes(trace.AttestExpectedHash.String(ev.ExpectedPolicyHash))
	}
	if ev.ClockOffset != nil {
		span.SetAttributes(trace.ClockOffsetMS.Int64(ev.ClockOffset.Milliseconds()))
	}
}

func inspectDir(d proxy.Direction) inspect.Direction {
	if d == proxy.ClientToUpstream {
		return inspect.ClientToServer
	}
	return inspect.ServerToClient
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func splitAddr(a net.Addr) (string, int, bool) {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String(), tcp.Port, true
	}
	return "", 0, false
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// cipherSuiteName is tls.CipherSuiteName without its cost: that builds
// the list of every suite on each call, once per traced connection.
func cipherSuiteName(id uint16) string {
	if name, ok := cipherSuiteNames()[id]; ok {
		return name
	}
	return tls.CipherSuiteName(id) // its 0x%04X form
}

var cipherSuiteNames = sync.OnceValue(func() map[uint16]string {
	m := map[uint16]string{}
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		m[cs.ID] = cs.Name
	}
	return m
})
