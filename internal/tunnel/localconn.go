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
	sctx, span := cs.tracer.Start(context.Background(), trace.SpanConnection,
		oteltrace.WithNewRoot(),
		oteltrace.WithTimestamp(res.Accepted),
		oteltrace.WithSpanKind(oteltrace.SpanKindServer),
		oteltrace.WithAttributes(
			trace.ListenAddress.String(r.Listen),
			AttrTunnelServer.String(cs.c.Server),
			AttrRoute.String(r.Route),
		))
	if a, ok := tcp.RemoteAddr().(*net.TCPAddr); ok {
		span.SetAttributes(trace.ClientAddress.String(a.IP.String()), trace.ClientPort.Int(a.Port))
	}
	res.TraceID = span.SpanContext().TraceID()

	octx, cancel := context.WithTimeout(ctx, cs.c.dialTimeout())
	_, openSpan := cs.tracer.Start(sctx, SpanTunnelOpen, oteltrace.WithSpanKind(oteltrace.SpanKindClient))
	sess, st, err := cs.open(octx)
	cancel()
	if err != nil {
		openSpan.RecordError(err)
		openSpan.SetStatus(codes.Error, err.Error())
		openSpan.End()
		resetConn(tcp)
		res.Verdict = cs.noTunnelVerdict(err)
		res.Ended = time.Now()
		cs.finish(span, res)
		return
	}
	openSpan.SetAttributes(AttrStreamID.Int64(int64(st.StreamID())))
	openSpan.End()
	span.SetAttributes(AttrStreamID.Int64(int64(st.StreamID())))

	defer sess.release()
	vch := sess.register(st.StreamID())
	defer sess.unregister(st.StreamID())
	stctx, streamSpan := cs.tracer.Start(sctx, SpanTunnelStream,
		oteltrace.WithSpanKind(oteltrace.SpanKindClient),
		oteltrace.WithAttributes(AttrStreamID.Int64(int64(st.StreamID())), AttrTunnelServer.String(cs.c.Server)))
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
	res.Sent, res.Received = p.sent.Load(), p.recv.Load()
	streamSpan.SetAttributes(trace.BytesClientToUp.Int64(res.Sent), trace.BytesUpToClient.Int64(res.Received))
	streamSpan.End(oteltrace.WithTimestamp(res.Ended))

	res.Verdict, res.Remote = cs.await(ctx, sess, vch, p, r, res.TraceID)
	cs.finish(span, res)
}

// await returns the server's verdict for the connection p carried, or
// names what the local side saw when none can come.
func (cs *clientState) await(ctx context.Context, s *session, vch chan Verdict, p *pump, r LocalRoute, traceID oteltrace.TraceID) (Verdict, bool) {
	if v, ok := refusal(p.remoteCode(), r); ok {
		return v, false
	}
	timeout := orDefault(cs.c.VerdictTimeout, DefaultVerdictTimeout)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case v := <-vch:
		return v, true
	case <-s.qc.Context().Done():
		select {
		case v := <-vch:
			return v, true
		default:
		}
		cause := context.Cause(s.qc.Context())
		return Verdict{Mode: failure.UpstreamReset, Detail: fmt.Sprintf(
			"The tunnel connection to %s was lost (%s) before the in-cluster relay's verdict for this connection arrived.",
			cs.c.Server, closeReason(cause))}, false
	case <-timer.C:
		return Verdict{Mode: failure.UpstreamReset, Detail: fmt.Sprintf(
			"The tunnel server %s sent no verdict within %s after the connection ended; its trace %s has the relay's view.",
			cs.c.Server, timeout, traceID)}, false
	case <-ctx.Done():
		return Verdict{Mode: failure.UpstreamReset, Detail: fmt.Sprintf(
			"ccproxy shut down before the tunnel server's verdict arrived; trace %s on the server has the relay's view.", traceID)}, false
	}
}

// refusal names a stream the server refused before relaying it.
func refusal(code quic.StreamErrorCode, r LocalRoute) (Verdict, bool) {
	var d string
	switch code {
	case codeUnknownRoute:
		d = fmt.Sprintf("The tunnel server has no route %q: it relays only to the routes it is configured with.", r.Route)
	case codeBusy:
		d = "The tunnel server is at its connection limit and refused this connection."
	case codeShutdown:
		d = "The tunnel server is shutting down and refused this connection."
	case codeBadHeader:
		d = "The tunnel server refused this connection's stream header (see the server's log)."
	default:
		return Verdict{}, false
	}
	return Verdict{Mode: failure.UpstreamRefused, Detail: d}, true
}

func (cs *clientState) noTunnelVerdict(err error) Verdict {
	var nt *noTunnelError
	if errors.As(err, &nt) && nt.last != nil && !isTimeout(nt.last) {
		return Verdict{Mode: failure.UpstreamRefused, Detail: fmt.Sprintf(
			"No tunnel to %s: %v.", cs.c.Server, nt.last)}
	}
	return Verdict{Mode: failure.UpstreamDialTimeout, Detail: fmt.Sprintf(
		"No tunnel to %s within the dial timeout %s (%v).", cs.c.Server, cs.c.dialTimeout(), err)}
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

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func (cs *clientState) finish(span oteltrace.Span, res Result) {
	v := res.Verdict
	source := "local"
	if res.Remote {
		source = "remote"
	}
	span.SetAttributes(
		trace.FailureMode.String(string(v.Mode)),
		trace.FailureDetail.String(v.Detail),
		trace.BytesClientToUp.Int64(res.Sent),
		trace.BytesUpToClient.Int64(res.Received),
		AttrVerdictFrom.String(source),
	)
	if v.Upstream != "" {
		span.SetAttributes(trace.UpstreamAddress.String(v.Upstream))
		if host, port, err := net.SplitHostPort(v.Upstream); err == nil {
			p, _ := strconv.Atoi(port)
			span.SetAttributes(trace.ServerAddress.String(host), trace.ServerPort.Int(p))
		}
	}
	if v.Mode != failure.OK {
		span.SetStatus(codes.Error, string(v.Mode))
	}
	span.End(oteltrace.WithTimestamp(res.Ended))
	cs.log.Info("connection",
		"client", addrString(res.Client), "route", displayRoute(res.Route.Route), "server", cs.c.Server, "upstream", v.Upstream,
		"failure_mode", string(v.Mode), "detail", v.Detail, "verdict_source", source,
		"bytes_in", res.Sent, "bytes_out", res.Received,
		"duration", res.Ended.Sub(res.Accepted).Round(time.Millisecond).String(),
		"trace_id", res.TraceID.String())
	if cs.c.OnResult != nil {
		cs.c.OnResult(res)
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
