package trace

import (
	"context"
	"math/rand/v2"

	oteltrace "go.opentelemetry.io/otel/trace"
)

// A reservation names a span before it exists. The relay writes a
// connection's spans when it closes (internal/watch), but the retries of
// a CLI run link to the run's first root span while that connection may
// still be open, and the tunnel hands a trace context on before its spans
// are written. Reserve fixes the span's ids at once; StartReserved later
// starts the span with exactly those ids, through the id generator of
// Setup's provider. With another provider the span gets ids of its own.

// Reserve returns the span context a span started later by StartReserved
// will have: a child of parent if parent is valid (same trace), else the
// root of a new trace. It is sampled, as Setup's provider samples all.
func Reserve(parent oteltrace.SpanContext) oteltrace.SpanContext {
	cfg := oteltrace.SpanContextConfig{TraceFlags: oteltrace.FlagsSampled}
	if parent.IsValid() {
		cfg.TraceID = parent.TraceID()
	} else {
		cfg.TraceID = newTraceID()
	}
	cfg.SpanID = newSpanID()
	return oteltrace.NewSpanContext(cfg)
}

type reservationKey struct{}

// StartReserved starts the span reserved as sc (Reserve) with tr; opts
// must make it a root (oteltrace.WithNewRoot) exactly when sc was reserved
// without a parent. The returned context is ctx with the span, not the
// reservation: spans started from it get ids of their own.
func StartReserved(ctx context.Context, tr oteltrace.Tracer, sc oteltrace.SpanContext, name string, opts ...oteltrace.SpanStartOption) (context.Context, oteltrace.Span) {
	_, span := tr.Start(context.WithValue(ctx, reservationKey{}, sc), name, opts...)
	return oteltrace.ContextWithSpan(ctx, span), span
}

// idGenerator is the provider's sdktrace.IDGenerator: a reservation's ids
// when the context carries one for this trace, random ones otherwise.
type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (oteltrace.TraceID, oteltrace.SpanID) {
	if sc, ok := ctx.Value(reservationKey{}).(oteltrace.SpanContext); ok && sc.IsValid() {
		return sc.TraceID(), sc.SpanID()
	}
	return newTraceID(), newSpanID()
}

func (idGenerator) NewSpanID(ctx context.Context, traceID oteltrace.TraceID) oteltrace.SpanID {
	if sc, ok := ctx.Value(reservationKey{}).(oteltrace.SpanContext); ok && sc.IsValid() && sc.TraceID() == traceID {
		return sc.SpanID()
	}
	return newSpanID()
}

// Ids from the runtime's ChaCha8 generator (math/rand/v2's top-level
// functions): unpredictable, safe for concurrent use, never zero.
func newTraceID() oteltrace.TraceID {
	var id oteltrace.TraceID
	for !id.IsValid() {
		hi, lo := rand.Uint64(), rand.Uint64()
		for i := range 8 {
			id[i], id[8+i] = byte(hi>>(56-8*i)), byte(lo>>(56-8*i))
		}
	}
	return id
}

func newSpanID() oteltrace.SpanID {
	var id oteltrace.SpanID
	for !id.IsValid() {
		v := rand.Uint64()
		for i := range 8 {
			id[i] = byte(v >> (56 - 8*i))
		}
	}
	return id
}
