package trace

import (
	"context"
	"net"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	oteltrace "go.opentelemetry.io/otel/trace"
)

// RunSummary is what a CLI run was, so far (internal/runs decides it).
type RunSummary struct {
	Client   string // the client's address (no port)
	Upstream string
	// First is the run's first root span: the summary links to it.
	First      oteltrace.SpanContext
	Start, End time.Time
	Attempts   int
	InFlight   int
	Folded     int
	Modes      []string
	Counts     []int64 // per Modes
	Outcome    string
	Final      bool
}

// WriteRunSummary writes s as a SpanRun span of its own trace, from the
// run's first attempt to its latest end, linked to the first root span.
func WriteRunSummary(tr oteltrace.Tracer, s RunSummary) {
	opts := []oteltrace.SpanStartOption{
		oteltrace.WithNewRoot(),
		oteltrace.WithTimestamp(s.Start),
		oteltrace.WithSpanKind(oteltrace.SpanKindInternal),
	}
	if s.First.IsValid() {
		opts = append(opts, oteltrace.WithLinks(oteltrace.Link{SpanContext: s.First, Attributes: []attribute.KeyValue{RunAttempt.Int(1)}}))
	}
	_, span := tr.Start(context.Background(), SpanRun, opts...)
	span.SetAttributes(
		UpstreamAddress.String(s.Upstream),
		RunAttempts.Int(s.Attempts),
		RunFolded.Int(s.Folded),
		RunModes.StringSlice(s.Modes),
		RunModeCounts.Int64Slice(s.Counts),
		RunOutcome.String(s.Outcome),
		RunInFlight.Int(s.InFlight),
		RunFinal.Bool(s.Final),
	)
	if s.Client != "" {
		span.SetAttributes(ClientAddress.String(s.Client))
	}
	if host, port, err := net.SplitHostPort(s.Upstream); err == nil {
		p, _ := strconv.Atoi(port)
		span.SetAttributes(ServerAddress.String(host), ServerPort.Int(p))
	}
	if s.Outcome != "" && s.Outcome != "ok" {
		span.SetStatus(codes.Error, s.Outcome)
	}
	end := s.End
	if end.Before(s.Start) {
		end = s.Start
	}
	span.End(oteltrace.WithTimestamp(end))
}
