package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/quic-go/quic-go"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/runs"
	"github.com/ccproxy-dev/ccproxy/internal/verdict"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// acceptLoop accepts local connections on ln for route r until ln closes.
func (cs *clientState) acceptLoop(ctx context.Context, r LocalRoute, ln net.Listener) {
	proxy.Accept(ln, cs.log, cs.sem, &cs.wg, nil, func(c net.Conn, done func()) {
		defer done()
		cs.handle(ctx, r, c)
	})
}

// handle carries one local connection through the tunnel and records its
// outcome on a root span whose trace the server's span joins.
func (cs *clientState) handle(ctx context.Context, r LocalRoute, tcp net.Conn) {
	res := Result{Route: r, Client: tcp.RemoteAddr(), Accepted: time.Now()}
	// The connection's place in its client's CLI run (internal/runs); the
	// local end sees no handshake, so its tracker never waits (Settle off).
	run := cs.runs.Begin(runs.KeyOf(tcp.RemoteAddr(), r.Route), res.Accepted)
	opts := append([]oteltrace.SpanStartOption{
		oteltrace.WithNewRoot(),
		oteltrace.WithTimestamp(res.Accepted),
		oteltrace.WithSpanKind(oteltrace.SpanKindServer),
		oteltrace.WithAttributes(
			trace.ListenAddress.String(r.Listen),
			trace.TunnelServer.String(cs.c.Server),
			trace.TunnelRoute.String(r.Route),
		)}, run.StartOptions()...)
	sctx, span := cs.tracer.Start(context.Background(), trace.SpanConnection, opts...)
	run.Started(span.SpanContext())
	if a, ok := tcp.RemoteAddr().(*net.TCPAddr); ok {
		span.SetAttributes(trace.ClientAddress.String(a.IP.String()), trace.ClientPort.Int(a.Port))
	}
	res.TraceID = span.SpanContext().TraceID()

	octx, cancel := context.WithTimeout(ctx, cs.c.dialTimeout())
	_, openSpan := cs.tracer.Start(sctx, trace.SpanTunnelOpen, oteltrace.WithSpanKind(oteltrace.SpanKindClient))
	sess, st, err := cs.open(octx)
	cancel()
	if err != nil {
		openSpan.RecordError(err)
		openSpan.SetStatus(codes.Error, err.Error())
		openSpan.End()
		resetConn(tcp)
		res.Ended = time.Now()
		run.End(res.Ended, cs.finish(span, res, cs.openFailure(ctx, err)), nil) // written: the local end does not fold
		return
	}
	openSpan.SetAttributes(trace.TunnelStreamID.Int64(int64(st.StreamID())))
	openSpan.End()
	span.SetAttributes(trace.TunnelStreamID.Int64(int64(st.StreamID())))

	defer sess.release()
	vch := sess.register(st.StreamID())
	defer sess.unregister(st.StreamID())
	stctx, streamSpan := cs.tracer.Start(sctx, trace.SpanTunnelStream,
		oteltrace.WithSpanKind(oteltrace.SpanKindClient),
		oteltrace.WithAttributes(trace.TunnelStreamID.Int64(int64(st.StreamID())), trace.TunnelServer.String(cs.c.Server)))
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(stctx, carrier)
	header, err := Header{Route: r.Route, TraceParent: carrier.Get("traceparent"), TraceState: carrier.Get("tracestate")}.Marshal()
	if err != nil {
		// Serve validated the route name, and the propagator writes ASCII;
		// drop the trace context rather than the connection.
		header, _ = Header{Route: r.Route}.Marshal()
	}

	p := &pump{tcp: tcp, st: st}
	cs.mu.Lock()
	cs.active[p] = struct{}{}
	cs.mu.Unlock()
	p.run(header)
	cs.mu.Lock()
	delete(cs.active, p)
	cs.mu.Unlock()

	res.Ended = time.Now()
	run.Over(res.Ended) // the client may retry from now on
	res.Sent, res.Received = p.sent.Load(), p.recv.Load()
	streamSpan.SetAttributes(trace.BytesClientToUp.Int64(res.Sent), trace.BytesUpToClient.Int64(res.Received))
	streamSpan.End(oteltrace.WithTimestamp(res.Ended))

	run.End(res.Ended, cs.finish(span, res, cs.await(ctx, sess, vch, p, r, res.TraceID)), nil)
}

// await returns the server's verdict for the connection p carried, or
// says why none can come.
func (cs *clientState) await(ctx context.Context, s *session, vch chan Verdict, p *pump, r LocalRoute, traceID oteltrace.TraceID) outcome {
	if o, ok := cs.refusal(p.remoteCode(), r); ok {
		return o
	}
	timeout := orDefault(cs.c.VerdictTimeout, DefaultVerdictTimeout)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case v := <-vch:
		return cs.remote(v)
	case <-s.qc.Context().Done():
		select {
		case v := <-vch:
			return cs.remote(v)
		default:
		}
		cause := context.Cause(s.qc.Context())
		return tunnelFailure(verdict.TunnelLost,
			"the tunnel connection to %s ended (%s) before the in-cluster relay's verdict for this connection arrived",
			cs.c.Server, closeReason(cause))
	case <-timer.C:
		return tunnelFailure(verdict.TunnelNoVerdict,
			"the tunnel server %s sent no verdict within %s after the connection ended; its trace %s has the relay's view",
			cs.c.Server, timeout, traceID)
	case <-ctx.Done():
		return tunnelFailure(verdict.TunnelLocalStop,
			"ccproxy shut down before the tunnel server %s sent its verdict; trace %s on the server has the relay's view",
			cs.c.Server, traceID)
	}
}

// outcome is what the local side learned of one connection: the server's
// verdict, or why none came. finish hands it to verdict.Decide, which names
// the mode; the tunnel names none itself.
type outcome struct {
	remote  *Verdict // the in-cluster relay's verdict, when it came
	failure verdict.TunnelFailure
	detail  string
}

// remote is the outcome of a connection whose verdict the server sent.
func (cs *clientState) remote(v Verdict) outcome {
	// The failure only counts should the verdict name no mode, which the
	// wire format does not allow.
	o := tunnelFailure(verdict.TunnelNoVerdict, "the tunnel server %s sent a verdict without a failure mode", cs.c.Server)
	o.remote = &v
	return o
}

// tunnelFailure is a connection the tunnel could not carry (or whose
// outcome it could not learn): the detail opens with the failure's name,
// so it reads e.g. "Server at its stream or connection limit: the tunnel server ...".
func tunnelFailure(f verdict.TunnelFailure, format string, args ...any) outcome {
	return outcome{failure: f, detail: string(f) + ": " + fmt.Sprintf(format, args...) + "."}
}

// refusal names a stream the server refused before relaying it.
func (cs *clientState) refusal(code quic.StreamErrorCode, r LocalRoute) (outcome, bool) {
	switch code {
	case codeUnknownRoute:
		return tunnelFailure(verdict.TunnelUnknownRoute,
			"the tunnel server %s has no route %q: it relays only to its configured routes (its --upstream, named \"default\", and each --route)",
			cs.c.Server, r.Route), true
	case codeBusy:
		return tunnelFailure(verdict.TunnelBusy,
			"the tunnel server %s refused this connection's stream: its connection limit (its --max-connections) is reached",
			cs.c.Server), true
	case codeShutdown:
		return tunnelFailure(verdict.TunnelShutdown,
			"the tunnel server %s is shutting down and refused this connection", cs.c.Server), true
	case codeBadHeader:
		return tunnelFailure(verdict.TunnelBadHeader,
			"the tunnel server %s refused this connection's stream header (see the server's log)", cs.c.Server), true
	}
	return outcome{}, false
}

// openFailure says why no stream could be opened for a connection: the
// tunnel is down (and why: the last connection attempt's error), a
// certificate pin was refused in the handshake, the server grants no more
// streams, or this process is shutting down.
func (cs *clientState) openFailure(ctx context.Context, err error) outcome {
	if ctx.Err() != nil {
		return tunnelFailure(verdict.TunnelLocalStop,
			"ccproxy shut down before a tunnel stream to %s was open", cs.c.Server)
	}
	var nt *noTunnelError
	if !errors.As(err, &nt) {
		return tunnelFailure(verdict.TunnelDown, "no tunnel stream to %s: %v", cs.c.Server, err)
	}
	switch {
	case nt.streamLimit:
		return tunnelFailure(verdict.TunnelBusy,
			"the tunnel server %s granted no new stream within %s: its per-client stream limit (its --max-streams) is reached",
			cs.c.Server, nt.waited)
	case nt.last == nil:
		return tunnelFailure(verdict.TunnelDown,
			"no connection to the tunnel server %s within %s: no answer to the first connection attempt yet", cs.c.Server, nt.waited)
	}
	var pe *pinError
	if errors.As(nt.last, &pe) {
		return tunnelFailure(verdict.TunnelPinRefused,
			"%s; this side pins only its --peer-fingerprint (no tunnel to %s)", pe, cs.c.Server)
	}
	if alert, ok := refusedByPeer(nt.last); ok {
		own := "this client's"
		if len(cs.c.Cert.Certificate) > 0 {
			own = "this client's (" + FingerprintOf(cs.c.Cert.Certificate[0]).String() + ")"
		}
		return tunnelFailure(verdict.TunnelPinRefused,
			"the tunnel server %s refused %s certificate in the TLS handshake (%s): pin it on the server with --peer-fingerprint",
			cs.c.Server, own, alert)
	}
	return tunnelFailure(verdict.TunnelDown,
		"no connection to the tunnel server %s within %s; the last attempt failed: %v", cs.c.Server, nt.waited, nt.last)
}

// TLS alerts a pinning peer ends a handshake with when it refuses this
// side's certificate (crypto/tls: a VerifyConnection error, or no
// certificate where one is required).
const (
	alertBadCertificate      = 42
	alertCertificateRequired = 116
)

// refusedByPeer reports a handshake the peer ended with an alert that
// refuses this side's certificate, and names the alert. In TLS 1.3 the
// peer's reason does not travel, only the alert: bad_certificate is what
// a tunnel peer sends when its pin check fails (ccproxy's certificates
// always parse), certificate_required when none was sent.
func refusedByPeer(err error) (string, bool) {
	var te *quic.TransportError
	if !errors.As(err, &te) || !te.Remote || !te.ErrorCode.IsCryptoError() {
		return "", false
	}
	switch alert := uint8(te.ErrorCode - 0x100); alert {
	case alertBadCertificate:
		return "TLS alert bad_certificate", true
	case alertCertificateRequired:
		return "TLS alert certificate_required", true
	}
	return "", false
}

// connError reports the errors that mean the whole connection ended, as
// opposed to one stream.
func connError(err error) bool {
	var (
		ae *quic.ApplicationError
		te *quic.TransportError
		it *quic.IdleTimeoutError
		sr *quic.StatelessResetError
	)
	return errors.As(err, &ae) || errors.As(err, &te) || errors.As(err, &it) || errors.As(err, &sr)
}

// finish decides the connection's verdict from what the tunnel learned,
// writes the root span, logs the connection and reports it.
// finish writes the connection's verdict (span, log, OnResult) and
// returns its mode.
func (cs *clientState) finish(span oteltrace.Span, res Result, o outcome) failure.Mode {
	t := &verdict.Tunnel{Failure: o.failure, Detail: o.detail}
	if o.remote != nil {
		t.Remote = &verdict.Finding{Mode: o.remote.Mode, Detail: o.remote.Detail}
	}
	f := verdict.Decide(verdict.Observed{Tunnel: t})
	res.Verdict = Verdict{Mode: f.Mode, Detail: f.Detail}
	source := "local"
	if o.remote != nil && o.remote.Mode != "" {
		res.Remote = true
		res.Verdict.Upstream = o.remote.Upstream
		source = "remote"
	} else {
		res.Failure = o.failure
		span.SetAttributes(trace.TunnelFailure.String(string(o.failure)))
	}
	v := res.Verdict
	span.SetAttributes(trace.TunnelVerdictSource.String(source))
	if v.Upstream != "" {
		span.SetAttributes(trace.UpstreamAddress.String(v.Upstream))
		if host, port, err := net.SplitHostPort(v.Upstream); err == nil {
			p, _ := strconv.Atoi(port)
			span.SetAttributes(trace.ServerAddress.String(host), trace.ServerPort.Int(p))
		}
	}
	trace.EndConnection(span, trace.Outcome{
		Mode:             string(v.Mode),
		Detail:           v.Detail,
		ClientToUpstream: res.Sent,
		UpstreamToClient: res.Received,
		End:              res.Ended,
	})
	attrs := []any{
		"client", addrString(res.Client), "route", displayRoute(res.Route.Route), "server", cs.c.Server, "upstream", v.Upstream,
		"failure_mode", string(v.Mode), "detail", v.Detail, "verdict_source", source,
	}
	if res.Failure != "" {
		attrs = append(attrs, "tunnel_failure", string(res.Failure))
	}
	attrs = append(attrs,
		"bytes_in", res.Sent, "bytes_out", res.Received,
		"duration", res.Ended.Sub(res.Accepted).Round(time.Millisecond).String(),
		"trace_id", res.TraceID.String())
	cs.log.Info("connection", attrs...)
	if cs.c.OnResult != nil {
		cs.c.OnResult(res)
	}
	return v.Mode
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
