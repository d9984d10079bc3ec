// Package trace sets up ccproxy's OpenTelemetry tracing: the tracer
// provider with ccproxy's resource, the exporters (an OTLP/JSON lines file,
// OTLP gRPC or HTTP), a bounded non-blocking span queue that counts what it
// drops, and the attribute names of the contract (shared/CONTRACT.md,
// "Traces").
//
//	p, err := trace.Setup(ctx, trace.Config{File: "traces.jsonl"})
//	defer p.Shutdown(ctx)
//	ctx, span := p.Tracer().Start(ctx, trace.SpanConnection)
package trace

import "go.opentelemetry.io/otel/attribute"

// Span names.
const (
	SpanConnection   = "ccproxy.connection"
	SpanUpstreamDial = "upstream.dial"
	SpanTLSHandshake = "tls.handshake"
	SpanAttestVerify = "attest.verify"
	SpanRelayStream  = "relay.stream"
	SpanProbe        = "probe"
	// SpanRun summarizes a CLI run (internal/runs): its own trace, linked
	// to the run's first root span, written while the run goes on and
	// once when it is over (RunSummary).
	SpanRun           = "ccproxy.run"
	InstrumentationID = "github.com/ccproxy-dev/ccproxy"
)

// Attribute keys of the contract. Dashboards query these names.
const (
	FailureMode         = attribute.Key("ccproxy.failure_mode")
	FailureDetail       = attribute.Key("ccproxy.failure_detail")
	UpstreamAddress     = attribute.Key("ccproxy.upstream.address")
	ClientAddress       = attribute.Key("client.address")
	ClientPort          = attribute.Key("client.port")
	ServerAddress       = attribute.Key("server.address")
	ServerPort          = attribute.Key("server.port")
	TLSServerName       = attribute.Key("tls.client.server_name")
	ATLSClientNonce     = attribute.Key("atls.client_nonce")
	ATLSNonceSource     = attribute.Key("atls.nonce_source")
	TLSProtocolVersion  = attribute.Key("tls.protocol.version")
	TLSAlertDescription = attribute.Key("tls.alert.description")
	UpstreamFirstByteMS = attribute.Key("ccproxy.upstream.first_byte_ms")
	BytesClientToUp     = attribute.Key("ccproxy.bytes.client_to_upstream")
	BytesUpToClient     = attribute.Key("ccproxy.bytes.upstream_to_client")
	AttestPlatform      = attribute.Key("attest.platform")
	AttestVerdict       = attribute.Key("attest.verdict")
	AttestPolicyHash    = attribute.Key("attest.policy_hash")
	AttestExpectedHash  = attribute.Key("attest.expected_policy_hash")
	ClockOffsetMS       = attribute.Key("ccproxy.coordinator.clock_offset_ms")
	// RunAttempt is the connection's place in its CLI run (internal/runs):
	// 1 for the first, n for the n-th; a retry's root span also links to
	// the run's first root span.
	RunAttempt = attribute.Key("ccproxy.run.attempt")
)

// Attributes of a run's summary span (SpanRun). Each summary is cumulative:
// the run's latest summary (RunFinal true once it is over) has its counts.
const (
	// RunAttempts is how many of the run's attempts have ended (each
	// counted in RunModeCounts), written or folded.
	RunAttempts = attribute.Key("ccproxy.run.attempts")
	// RunFolded is how many of them were folded: counted here, with no
	// root span of their own.
	RunFolded = attribute.Key("ccproxy.run.folded")
	// RunModes lists each failure mode the run's attempts ended with, in
	// the order each first appeared; RunModeCounts, index by index, how
	// many attempts ended with it.
	RunModes      = attribute.Key("ccproxy.run.modes")
	RunModeCounts = attribute.Key("ccproxy.run.mode_counts")
	// RunOutcome is the mode of the attempt that ended last.
	RunOutcome = attribute.Key("ccproxy.run.outcome")
	// RunInFlight is how many attempts were still open at the summary.
	RunInFlight = attribute.Key("ccproxy.run.in_flight")
	// RunFinal is true on the summary of a run that is over, false on
	// one written while it went on.
	RunFinal = attribute.Key("ccproxy.run.final")
)

// Attributes beyond the contract's table; names are stable too.
const (
	ListenAddress     = attribute.Key("ccproxy.listen.address")
	TLSCipherSuite    = attribute.Key("tls.cipher")
	TLSALPN           = attribute.Key("tls.client.alpn")
	TLSCertOIDs       = attribute.Key("tls.server.certificate.extension_oids")
	DialDurationMS    = attribute.Key("ccproxy.upstream.dial_ms")
	HandshakeMS       = attribute.Key("ccproxy.handshake_ms")
	ServerFlightBytes = attribute.Key("ccproxy.tls.server_flight_bytes")
	EndedBy           = attribute.Key("ccproxy.ended_by")
	ErrorMessage      = attribute.Key("error.message")
	RecordType        = attribute.Key("tls.record.type")
	RecordLength      = attribute.Key("tls.record.length")
	StreamOffset      = attribute.Key("ccproxy.stream.offset")
	Direction         = attribute.Key("ccproxy.direction")
	HandshakeType     = attribute.Key("tls.handshake.type")
	TLSAlert          = attribute.Key("tls.alert") // on a tls.alert event: the alert as text, e.g. "fatal bad_certificate (42)"
)
