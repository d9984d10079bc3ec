package trace

import (
	"time"

	"go.opentelemetry.io/otel/codes"
	oteltrace "go.opentelemetry.io/otel/trace"
)

// Outcome is what a connection's root span (SpanConnection) ends with: the
// one verdict (internal/verdict decides it; Detail is its sentence) and the
// bytes forwarded each way.
type Outcome struct {
	Mode             string
	Detail           string
	ClientToUpstream int64
	UpstreamToClient int64
	// End is when the connection's story ended: its close, or later, when a
	// child span (a probe run after the close) ended later, so the root
	// encloses its children in every waterfall.
	End time.Time
}

// EndConnection writes the outcome on a connection's root span and ends it.
// The relay and both tunnel ends write their root spans through it, so the
// contract's attributes are set in one place.
func EndConnection(span oteltrace.Span, o Outcome) {
	span.SetAttributes(
		FailureMode.String(o.Mode),
		FailureDetail.String(o.Detail),
		BytesClientToUp.Int64(o.ClientToUpstream),
		BytesUpToClient.Int64(o.UpstreamToClient),
	)
	if o.Mode != "ok" {
		span.SetStatus(codes.Error, o.Mode)
	}
	span.End(oteltrace.WithTimestamp(o.End))
}
