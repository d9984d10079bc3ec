package trace

import (
	"context"
	"path/filepath"
	"testing"

	oteltrace "go.opentelemetry.io/otel/trace"
)

// TestStartReserved: a span started from a reservation has exactly the
// reserved ids, as a new root and as a child of a remote parent; spans
// started from the returned context are its children with ids of their
// own.
func TestStartReserved(t *testing.T) {
	p, err := Setup(context.Background(), Config{File: filepath.Join(t.TempDir(), "t.jsonl")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	tr := p.Tracer()

	sc := Reserve(oteltrace.SpanContext{})
	ctx, root := StartReserved(context.Background(), tr, sc, SpanConnection, oteltrace.WithNewRoot())
	if got := root.SpanContext(); got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() {
		t.Fatalf("root %v, reserved %v", got, sc)
	}
	_, child := tr.Start(ctx, SpanUpstreamDial)
	if c := child.SpanContext(); c.TraceID() != sc.TraceID() || c.SpanID() == sc.SpanID() {
		t.Errorf("child %v of reserved %v: want the same trace, another span id", c, sc)
	}
	child.End()
	root.End()

	parent := oteltrace.NewSpanContext(oteltrace.SpanContextConfig{TraceID: newTraceID(), SpanID: newSpanID(), TraceFlags: oteltrace.FlagsSampled, Remote: true})
	sc2 := Reserve(parent)
	if sc2.TraceID() != parent.TraceID() {
		t.Fatalf("reserved under a parent: trace %v, want %v", sc2.TraceID(), parent.TraceID())
	}
	_, joined := StartReserved(oteltrace.ContextWithRemoteSpanContext(context.Background(), parent), tr, sc2, SpanConnection)
	if got := joined.SpanContext(); got.TraceID() != sc2.TraceID() || got.SpanID() != sc2.SpanID() {
		t.Errorf("joined %v, reserved %v", got, sc2)
	}
	joined.End()

	// Without a reservation, ids are fresh each time.
	_, a := tr.Start(context.Background(), "a")
	_, b := tr.Start(context.Background(), "b")
	if a.SpanContext().TraceID() == b.SpanContext().TraceID() || !a.SpanContext().IsValid() {
		t.Errorf("two new roots: %v, %v", a.SpanContext(), b.SpanContext())
	}
}
