package analyze

// This file reads spans that never were a file: the relay's live page
// (internal/live) keeps recent spans in memory, converts them with
// trace.ToPdata and hands them to a Reader here, and turns internal/runs'
// live view of a run (a trace.RunSummary) into the Run shape the text, JSON
// and HTML reports use.

import (
	"net"
	"sort"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ccproxy-dev/ccproxy/internal/explain"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// ReadTraces reads spans held in memory as ReadOTLPJSON reads a file's
// lines, and reports the connections whose turn it is; call Flush after
// the last input as usual.
func (r *Reader) ReadTraces(td ptrace.Traces) ReadStats {
	var st ReadStats
	rss := td.ResourceSpans()
	for i := range rss.Len() {
		sss := rss.At(i).ScopeSpans()
		for j := range sss.Len() {
			spans := sss.At(j).Spans()
			for k := range spans.Len() {
				st.Spans++
				st.Connections += r.span(spans.At(k))
			}
		}
	}
	return st
}

// RunOfSummary describes a run from its summary, in the shape the reports
// list runs in: exact counts even when most attempts were folded (never
// written as connection spans). Steps are the counts per mode in the order
// each mode first appeared, since a summary keeps no streaks; attempts
// still in flight are not counted until they end.
func RunOfSummary(s trace.RunSummary) Run {
	run := Run{
		Start:        s.Start,
		End:          s.End,
		Client:       s.Client,
		Upstream:     s.Upstream,
		Attempts:     s.Attempts,
		Folded:       s.Folded,
		FirstAttempt: 1,
		LastAttempt:  s.Attempts,
		Outcome:      s.Outcome,
		Marked:       true,
	}
	if run.End.Before(run.Start) {
		run.End = run.Start
	}
	for i, m := range s.Modes {
		if i < len(s.Counts) && s.Counts[i] > 0 {
			run.Steps = append(run.Steps, RunStep{Mode: m, Count: int(s.Counts[i])})
		}
	}
	if len(run.Steps) == 0 {
		run.Steps = []RunStep{{Mode: unknownMode, Count: max(s.Attempts, 1)}}
	}
	if run.Outcome == "" {
		run.Outcome = run.Steps[len(run.Steps)-1].Mode
	}
	run.CLIText = explain.CLIText(failure.Mode(run.Outcome))
	if ip := net.ParseIP(run.Client); ip != nil && ip.IsLoopback() {
		run.SharedAddress = true
	}
	run.Summary = run.sentence()
	return run
}

// RunsOf groups conns into runs as the reports do and returns every run
// that holds a connection (not only the ones that retried or failed), the
// latest first: the live page lists what the relay saw last, whatever it
// was. Limit bounds the list (0: no bound).
func RunsOf(conns []Connection, limit int) []Run {
	rc := NewRunCollector()
	for _, c := range conns {
		rc.Add(c)
	}
	all := make([]*runAcc, 0, len(rc.runs)+len(rc.solo))
	for _, r := range rc.runs {
		all = append(all, r)
	}
	all = append(all, rc.solo...)
	out := make([]Run, 0, len(all))
	for _, r := range all {
		out = append(out, runOf(r.marked, r.ordered()))
	}
	byLatestActivity(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// byLatestActivity sorts runs by their latest activity, newest first.
func byLatestActivity(rs []Run) {
	key := func(r Run) time.Time {
		if r.End.After(r.Start) {
			return r.End
		}
		return r.Start
	}
	sort.SliceStable(rs, func(i, j int) bool { return key(rs[i]).After(key(rs[j])) })
}

// TraceID is the hex id of the connection's trace ("" when it has none):
// what GET /trace/{id} of the live page and `analyze --trace` take.
func (c Connection) TraceID() string { return traceIDText(c.trace) }
