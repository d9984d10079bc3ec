package tunnel

import (
	"context"
	"net"

	"go.opentelemetry.io/otel/attribute"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/ccproxy-dev/ccproxy/internal/runs"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// Route is one upstream the server relays to. The first route of a
// Server is its default.
type Route struct {
	Name     string // what a stream header asks for
	Upstream string // host:port, resolved on every dial
	Inspect  bool   // parse the bytes as TLS (see proxy.Route.Inspect)
}

// Request is one accepted relay stream, for a Relayer.
type Request struct {
	Route           Route
	Listen          string   // the server's QUIC address, as the route's "listen" side
	Conn            net.Conn // the stream; CloseWrite half-closes, Close resets
	Peer            net.Addr // the client's UDP address
	PeerFingerprint Fingerprint
	StreamID        int64
}

// Relayer relays one stream to its route's upstream and returns the
// verdict. ctx carries the client's propagated trace context, if any.
type Relayer func(ctx context.Context, req Request) Verdict

// WatchRelayer relays with p (its routes and NewObserver are ignored) and
// inspects with a watcher made from cfg, exactly as relay mode does: the
// connection's span is a child of the propagated trace context and names
// the failure mode, which becomes the verdict. cfg.OnVerdict, if set, is
// still called.
func WatchRelayer(p *proxy.Proxy, cfg watch.Config) Relayer {
	// One run tracker for every stream: each stream gets its own watcher,
	// but a CLI's retries come as separate streams of one tunnel peer.
	if cfg.Runs == nil {
		cfg.Runs = runs.New(runs.Config{})
	}
	return func(ctx context.Context, req Request) Verdict {
		// One watcher per stream: OnVerdict has no handle on the connection
		// it reports, so the closure is what ties a verdict to its stream.
		// watch.New only copies cfg, and RelayConn calls OnVerdict on this
		// goroutine before it returns.
		var got *inspect.Verdict
		c := cfg
		c.OnVerdict = func(info proxy.ConnInfo, v inspect.Verdict) {
			got = &v
			if cfg.OnVerdict != nil {
				cfg.OnVerdict(info, v)
			}
		}
		if cfg.Tracer != nil {
			c.Tracer = connAttrTracer{Tracer: cfg.Tracer, attrs: req.spanAttrs()}
		}
		w := watch.New(c)
		relay := *p
		relay.NewObserver = w.Observe
		relay.RelayConn(ctx, proxy.Route{Listen: req.Listen, Upstream: req.Route.Upstream, Inspect: req.Route.Inspect}, req.Conn)
		v := Verdict{Upstream: req.Route.Upstream}
		if got != nil {
			v.Mode, v.Detail = got.Mode, got.Detail
		}
		return v
	}
}

func (r Request) spanAttrs() []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		trace.TunnelRoute.String(r.Route.Name),
		trace.TunnelStreamID.Int64(r.StreamID),
		trace.TunnelPeerFingerprint.String(r.PeerFingerprint.String()),
	}
	if r.Peer != nil {
		attrs = append(attrs, trace.TunnelPeer.String(r.Peer.String()))
		// watch names client.address only for TCP peers; the tunnel's
		// client is the QUIC peer.
		if u, ok := r.Peer.(*net.UDPAddr); ok {
			attrs = append(attrs, trace.ClientAddress.String(u.IP.String()), trace.ClientPort.Int(u.Port))
		}
	}
	return attrs
}

// connAttrTracer adds the tunnel's attributes to the connection span that
// package watch starts, the one span it does not hand out.
type connAttrTracer struct {
	oteltrace.Tracer
	attrs []attribute.KeyValue
}

func (t connAttrTracer) Start(ctx context.Context, name string, opts ...oteltrace.SpanStartOption) (context.Context, oteltrace.Span) {
	if name == trace.SpanConnection {
		opts = append(opts, oteltrace.WithAttributes(t.attrs...))
	}
	return t.Tracer.Start(ctx, name, opts...)
}
