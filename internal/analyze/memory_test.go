package analyze

import (
	"context"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/ccproxy-dev/ccproxy/trace"
)

// TestReadTraces: spans held in memory read as their OTLP/JSON lines would.
func TestReadTraces(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tr := tp.Tracer("test")
	for _, mode := range []string{"ok", "lb_closed_early", "lb_closed_early"} {
		ctx, span := tr.Start(context.Background(), trace.SpanConnection, oteltrace.WithNewRoot())
		_, dial := tr.Start(ctx, trace.SpanUpstreamDial)
		dial.End()
		span.SetAttributes(trace.FailureMode.String(mode), trace.UpstreamAddress.String("coordinator:1313"))
		span.End()
	}
	var conns []Connection
	r := NewReader(func(c Connection) { conns = append(conns, c) })
	st := r.ReadTraces(trace.ToPdata(rec.Ended()))
	st.Add(r.Flush())
	if st.Spans != 6 || st.Connections != 3 || len(conns) != 3 {
		t.Fatalf("read %d spans, %d connections (%d reported); want 6 and 3", st.Spans, st.Connections, len(conns))
	}
	for _, c := range conns {
		if c.TraceID() == "" || len(c.TraceID()) != 32 {
			t.Errorf("connection without its trace id: %q", c.TraceID())
		}
	}
	if s := Summarize(conns, Options{}); s.Modes[0].Mode != "lb_closed_early" || s.Modes[0].Count != 2 {
		t.Errorf("summary of the spans read: %+v", s.Modes)
	}
}

func TestRunOfSummary(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 12, 1, 3, 0, time.UTC)
	cases := []struct {
		name string
		in   trace.RunSummary
		want []string // in the sentence
		out  string   // Outcome
	}{
		{
			name: "a storm folded into counts",
			in: trace.RunSummary{Client: "10.0.0.5", Upstream: "coordinator:1313", Start: t0, End: t0.Add(31 * time.Second),
				Attempts: 5413, Folded: 5380, Modes: []string{"lb_closed_early", "issuer_timeout"}, Counts: []int64{5412, 1}, Outcome: "issuer_timeout"},
			want: []string{"5413 attempts", "(5380 folded into the run's summary)", "over 31 s", "lb_closed_early ×5412, then issuer_timeout",
				"the CLI printed: received context error while waiting for new LB policy update"},
			out: "issuer_timeout",
		},
		{
			name: "ok ends it",
			in: trace.RunSummary{Client: "127.0.0.1", Upstream: "coordinator:1313", Start: t0, End: t0.Add(2 * time.Second),
				Attempts: 3, Modes: []string{"lb_closed_early", "ok"}, Counts: []int64{2, 1}, Outcome: "ok"},
			want: []string{"3 attempts", "lb_closed_early ×2, then ok", "the CLI succeeded"},
			out:  "ok",
		},
		{
			name: "no outcome: the last mode",
			in:   trace.RunSummary{Upstream: "c:1313", Start: t0, End: t0, Attempts: 2, Modes: []string{"issuer_error"}, Counts: []int64{2}},
			want: []string{"2 attempts", "issuer_error ×2"},
			out:  "issuer_error",
		},
		{
			name: "malformed counts: none left",
			in:   trace.RunSummary{Upstream: "c:1313", Start: t0, End: t0.Add(-time.Second), Attempts: 1, Modes: []string{"ok"}, Counts: nil},
			want: []string{"1 attempt", "(none)"},
			out:  "(none)",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := RunOfSummary(c.in)
			for _, w := range c.want {
				if !strings.Contains(r.Summary, w) {
					t.Errorf("%q lacks %q", r.Summary, w)
				}
			}
			if r.Outcome != c.out {
				t.Errorf("outcome %q, want %q", r.Outcome, c.out)
			}
			if r.End.Before(r.Start) {
				t.Errorf("ends before it starts: %v %v", r.Start, r.End)
			}
			if r.SharedAddress != (c.in.Client == "127.0.0.1") {
				t.Errorf("SharedAddress %v for client %q", r.SharedAddress, c.in.Client)
			}
		})
	}
}
