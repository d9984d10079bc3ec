package trace

import "go.opentelemetry.io/otel/attribute"

// Attributes of the relay's probe span (SpanProbe) beyond the contract's.
// Names are stable: dashboards and analyze read them.
const (
	// ProbeTrigger is the wire verdict that made the relay probe.
	ProbeTrigger = attribute.Key("ccproxy.probe.trigger")
	// ProbeResult is what the probe's first connection, which repeats the
	// client's nonce placement and TLS version, found, also when it does not
	// change the connection's verdict.
	ProbeResult = attribute.Key("ccproxy.probe.failure_mode")
	// ProbeResultDetail is the detail of ProbeResult.
	ProbeResultDetail = attribute.Key("ccproxy.probe.failure_detail")
	// ProbeAttempts counts the probe's connections (2 when the nonce was
	// also tried in the SNI).
	ProbeAttempts = attribute.Key("ccproxy.probe.attempts")
	// ProbeSNIResult is the mode of the SNI-nonce connection, when made.
	ProbeSNIResult = attribute.Key("ccproxy.probe.sni_nonce.failure_mode")
	// ProbeCached is true when the result came from another connection's
	// probe of the same upstream: a finished one or one in flight that this
	// connection waited for.
	ProbeCached = attribute.Key("ccproxy.probe.cached")
	// ProbeCacheAgeMS is the age of a reused result (0 when it was waited for).
	ProbeCacheAgeMS = attribute.Key("ccproxy.probe.cache_age_ms")
	// NetworkPeerAddress (OpenTelemetry semantic conventions) is the address
	// a span's connection went to: the probe's, the upstream dial's.
	NetworkPeerAddress = attribute.Key("network.peer.address")
)

// The tunnel's spans and attributes, on both ends.
const (
	SpanTunnelOpen   = "tunnel.open"   // local end: waiting for the tunnel and opening the stream
	SpanTunnelStream = "tunnel.stream" // local end: the stream; the in-cluster connection span is its child

	TunnelServer          = attribute.Key("ccproxy.tunnel.server")           // local end: the tunnel server as configured
	TunnelPeer            = attribute.Key("ccproxy.tunnel.peer")             // in-cluster end: the client's UDP address
	TunnelPeerFingerprint = attribute.Key("ccproxy.tunnel.peer_fingerprint") // in-cluster end: the client's pinned certificate
	TunnelRoute           = attribute.Key("ccproxy.tunnel.route")            // the route name asked for ("" is the default)
	TunnelStreamID        = attribute.Key("ccproxy.tunnel.stream_id")        // QUIC stream ID within the tunnel connection
	TunnelVerdictSource   = attribute.Key("ccproxy.tunnel.verdict_source")   // local end: "remote" or "local"
	// TunnelFailure is set on the local end when the verdict is "local"
	// (tunnel_unavailable): why the tunnel could not carry the connection,
	// one of internal/verdict's TunnelFailure values (e.g. "tunnel down").
	TunnelFailure = attribute.Key("ccproxy.tunnel.failure")
)
