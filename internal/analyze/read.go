// Package analyze summarises ccproxy's connection traces: how many
// connections ended in each failure mode and per upstream, how that changed
// over time, how fast the upstream (the Coordinator's issuer) answered, which
// failure details were most frequent, and when each mode was first and last
// seen. Connections whose client sent not a byte (health checks, port scans)
// are counted apart from the failures. It reads the OTLP/JSON lines that
// `ccproxy --trace-file` and the OpenTelemetry Collector's file exporter
// write, or the same spans from Jaeger's query API; span and attribute names
// come from package trace only.
//
//	var conns []analyze.Connection
//	stats, err := analyze.ReadOTLPJSON(f, "traces.jsonl", func(c analyze.Connection) { conns = append(conns, c) })
//	sum := analyze.Summarize(conns, analyze.Options{Mode: "lb_closed_early"})
//	sum.WriteText(os.Stdout)
//
// Several files that belong together (both ends of a tunnel) are read with
// one Reader, so that each connection is counted once:
//
//	r := analyze.NewReader(func(c analyze.Connection) { conns = append(conns, c) })
//	st, err := r.ReadOTLPJSON(local, "local.jsonl")
//	st2, err := r.ReadOTLPJSON(cluster, "cluster.jsonl")
//	st.Add(st2)
//	st.Add(r.Flush())
package analyze

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/trace"
)

const (
	unknownMode      = "(none)"
	unknownUpstream  = "(none)"
	maxLineBytes     = 64 << 20
	maxProblemsKept  = 20
	problemLineLimit = 200
)

// Connection is one connection span (trace.SpanConnection), reduced to what
// the summary needs.
type Connection struct {
	Start    time.Time
	Duration time.Duration
	Mode     string
	Detail   string
	Upstream string
	// FirstByteMS is the time from the forwarded ClientHello to the
	// upstream's first byte; valid only when HasFirstByte.
	FirstByteMS  float64
	HasFirstByte bool
	// ClientBytes is trace.BytesClientToUp, what the client sent; valid
	// only when HasClientBytes.
	ClientBytes    int64
	HasClientBytes bool
	// Client is the client's address (client.address), "" if unknown.
	Client string
	// Attempt is the connection's place in its CLI run
	// (trace.RunAttempt): 1 for the first, n for the n-th; 0 when the span
	// carries none (written before ccproxy marked runs): then the
	// connection is a run of its own.
	Attempt int
	// Folded is true for an attempt the relay counted in its run's summary
	// (trace.SpanRun) instead of writing its spans (see fold.go): its
	// start is placed among the run's written attempts, its detail is that
	// of a written attempt of its mode, and it has no trace of its own.
	Folded bool

	trace pcommon.TraceID // for the TraceCollector and runs
	span  pcommon.SpanID  // the connection span's own id
	// runFirst is the span a retry (Attempt > 1) links to: its run's
	// first connection span.
	runFirst spanRef
}

// spanRef names one span.
type spanRef struct {
	trace pcommon.TraceID
	span  pcommon.SpanID
}

// SentNothing reports whether the client closed without sending a single
// byte: a port scan, a TCP health check, a client that gave up on this
// connection to retry. The summary sets these apart from the failures.
func (c Connection) SentNothing() bool {
	return c.Mode == string(failure.ClientAborted) && c.HasClientBytes && c.ClientBytes == 0
}

// ReadStats says what a read saw, for the report's header and for telling
// the user about malformed input.
type ReadStats struct {
	Lines       int `json:"lines,omitempty"`  // lines of OTLP/JSON files
	Traces      int `json:"traces,omitempty"` // traces fetched from Jaeger
	Spans       int `json:"spans"`
	Connections int `json:"connections"`
	Skipped     int `json:"skipped_lines"`
	// Folded counts the connections that are in Connections only as
	// counts of their runs' summaries (Connection.Folded).
	Folded int `json:"folded_connections,omitempty"`
	// RunSummaries counts the trace.SpanRun spans read.
	RunSummaries int `json:"run_summaries,omitempty"`
	// UnsummarizedRuns counts the runs whose connection spans read skip
	// attempt numbers (attempts folded, or written where the reader did
	// not look) and whose summary was not read: the missing attempts are
	// not counted. From Jaeger, the summary query's limit may have left
	// the summary out; from files, it may be in a file not read, or not
	// written yet.
	UnsummarizedRuns int      `json:"runs_without_summary,omitempty"`
	Problems         []string `json:"problems,omitempty"` // "file:line: error", the first few
}

// Add merges o into s.
func (s *ReadStats) Add(o ReadStats) {
	s.Lines += o.Lines
	s.Traces += o.Traces
	s.Spans += o.Spans
	s.Connections += o.Connections
	s.Skipped += o.Skipped
	s.Folded += o.Folded
	s.RunSummaries += o.RunSummaries
	s.UnsummarizedRuns += o.UnsummarizedRuns
	for _, p := range o.Problems {
		if len(s.Problems) < maxProblemsKept {
			s.Problems = append(s.Problems, p)
		}
	}
}

// Which connection spans count. ccproxy starts a new trace for every client
// connection it accepts, so a trace is one connection, with one
// trace.SpanConnection span at its root. The tunnel is the exception: the
// in-cluster end (`ccproxy tunnel serve`) starts its own connection span as a
// child of the local end's tunnel.stream span, propagated over the tunnel, so
// the two ends' spans share one trace and the in-cluster one has a parent
// that is in another process's file. The rule, one connection per trace:
//
//   - every connection span without a parent counts (the relay's, the local
//     tunnel end's);
//   - a connection span with a parent (the in-cluster tunnel end's) counts
//     only when its trace holds no parentless connection span: when the
//     in-cluster end's file is read alone, its spans are the connections;
//     read together with the local end's file, the local end's span (the
//     outermost, which carries the verdict the client saw) is the one
//     counted and the in-cluster span is not counted again. Among several
//     such spans of one trace the earliest counts.
//
// Parentless spans are reported as they are read; the others wait until
// Flush, since the local end's file may come after the in-cluster one.

// Reader reads connection spans from OTLP/JSON lines, from one or several
// inputs, and reports each connection once (see the rule above). Call
// ReadOTLPJSON for each input, then Flush.
type Reader struct {
	fn      func(Connection)
	each    func(ptrace.Span)
	onConn  func(Connection) // the TraceCollector's, before fn
	maxLine int
	// roots holds the traces that have a parentless connection span: a
	// trace id per connection, since an in-cluster end's span of the same
	// trace may come in a later file.
	roots map[pcommon.TraceID]struct{}
	// nested holds, per trace without a parentless connection span so far,
	// its earliest connection span with a parent.
	nested map[pcommon.TraceID]Connection
	// sums holds each run's latest summary, written its written
	// attempts, both by the run's first connection span (fold.go).
	sums      map[spanRef]runSummary
	written   map[spanRef][]written
	nsums     int
	maxFolded int // per run (maxFoldedPerRun)
}

// NewReader returns a Reader that calls fn for each connection.
func NewReader(fn func(Connection)) *Reader {
	if fn == nil {
		fn = func(Connection) {}
	}
	return &Reader{
		fn:        fn,
		maxLine:   maxLineBytes,
		roots:     map[pcommon.TraceID]struct{}{},
		nested:    map[pcommon.TraceID]Connection{},
		sums:      map[spanRef]runSummary{},
		written:   map[spanRef][]written{},
		maxFolded: maxFoldedPerRun,
	}
}

// Collect makes r hand every span it reads, and every connection it
// reports, to tc too, so that tc keeps the traces of its selection.
func (r *Reader) Collect(tc *TraceCollector) {
	r.each = tc.add
	r.onConn = tc.connection
}

// ReadOTLPJSON reads one ExportTraceServiceRequest JSON object per line from
// in and reports the connections whose turn it is. Blank lines are ignored;
// a malformed line is recorded as "name:line: error" in the stats, counted
// and skipped. The error is only for failing to read in.
func (r *Reader) ReadOTLPJSON(in io.Reader, name string) (ReadStats, error) {
	var st ReadStats
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, min(64<<10, r.maxLine)), r.maxLine)
	var u ptrace.JSONUnmarshaler
	for sc.Scan() {
		st.Lines++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		td, err := u.UnmarshalTraces(line)
		if err != nil {
			st.skip(name, st.Lines, err)
			continue
		}
		st.Add(r.ReadTraces(td))
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			// The scanner cannot go on after an overlong line.
			st.skip(name, st.Lines+1, fmt.Errorf("line longer than %d bytes", r.maxLine))
			return st, nil
		}
		return st, fmt.Errorf("reading %s: %w", name, err)
	}
	return st, nil
}

// span takes one span and returns how many connections it reported.
func (r *Reader) span(sp ptrace.Span) int {
	if r.each != nil {
		r.each(sp)
	}
	if sum, ok := summaryFromSpan(sp); ok {
		r.nsums++
		if prev, ok := r.sums[sum.first]; !ok || sum.newer(prev) {
			r.sums[sum.first] = sum
		}
		return 0
	}
	c, ok := connectionFromSpan(sp)
	if !ok {
		return 0
	}
	if k, ok := c.runKey(); ok {
		r.written[k] = append(r.written[k], c.written())
	}
	if sp.ParentSpanID().IsEmpty() {
		r.roots[c.trace] = struct{}{}
		delete(r.nested, c.trace)
		r.report(c)
		return 1
	}
	if _, ok := r.roots[c.trace]; ok {
		return 0
	}
	if prev, ok := r.nested[c.trace]; !ok || c.Start.Before(prev.Start) {
		r.nested[c.trace] = c
	}
	return 0
}

func (r *Reader) report(c Connection) {
	if r.onConn != nil {
		r.onConn(c)
	}
	r.fn(c)
}

// Flush reports the connections that waited for the end of the input: the
// in-cluster tunnel end's connection spans whose trace had no parentless
// connection span. Their count is in the returned stats.
func (r *Reader) Flush() ReadStats {
	held := make([]Connection, 0, len(r.nested))
	for _, c := range r.nested {
		held = append(held, c)
	}
	clear(r.nested)
	sort.Slice(held, func(i, j int) bool {
		if !held[i].Start.Equal(held[j].Start) {
			return held[i].Start.Before(held[j].Start)
		}
		return bytes.Compare(held[i].trace[:], held[j].trace[:]) < 0
	})
	for _, c := range held {
		r.report(c)
	}
	st := ReadStats{Connections: len(held), RunSummaries: r.nsums}
	// The runs' folded attempts. They have no trace for a TraceCollector
	// to keep.
	n := emitFolded(r.sums, r.written, r.maxFolded, r.fn)
	st.Connections += n
	st.Folded += n
	st.UnsummarizedRuns = unsummarized(r.written, r.sums)
	clear(r.sums)
	clear(r.written)
	r.nsums = 0
	return st
}

// written is what a run keeps of its connection span c (fold.go).
func (c Connection) written() written {
	return written{n: c.Attempt, start: c.Start, end: c.Start.Add(c.Duration), mode: c.Mode, detail: c.Detail}
}

// runKey is the run a marked connection belongs to: its run's first
// connection span.
func (c Connection) runKey() (spanRef, bool) {
	switch {
	case c.Attempt == 1:
		return spanRef{c.trace, c.span}, !c.span.IsEmpty()
	case c.Attempt > 1:
		return c.runFirst, !c.runFirst.span.IsEmpty()
	}
	return spanRef{}, false
}

// ReadOTLPJSON reads one whole input with a new Reader (see Reader.ReadOTLPJSON)
// and calls fn for each connection in it, flushed at the end.
func ReadOTLPJSON(r io.Reader, name string, fn func(Connection)) (ReadStats, error) {
	return readOTLPJSON(r, name, fn, maxLineBytes, nil)
}

// readOTLPJSON is ReadOTLPJSON with a line limit; each, if not nil, also
// sees every span read.
func readOTLPJSON(in io.Reader, name string, fn func(Connection), maxLine int, each func(ptrace.Span)) (ReadStats, error) {
	r := NewReader(fn)
	r.maxLine, r.each = maxLine, each
	st, err := r.ReadOTLPJSON(in, name)
	st.Add(r.Flush())
	return st, err
}

func (st *ReadStats) skip(name string, line int, err error) {
	st.Skipped++
	if len(st.Problems) < maxProblemsKept {
		msg := err.Error()
		if len(msg) > problemLineLimit {
			msg = msg[:problemLineLimit] + "…"
		}
		st.Problems = append(st.Problems, fmt.Sprintf("%s:%d: %s", name, line, msg))
	}
}

// connectionFromSpan reduces a connection span, with or without a parent;
// other spans (the phases) are not connections.
func connectionFromSpan(s ptrace.Span) (Connection, bool) {
	if s.Name() != trace.SpanConnection {
		return Connection{}, false
	}
	attrs := s.Attributes()
	str := func(k attribute.Key) string {
		if v, ok := attrs.Get(string(k)); ok {
			return v.AsString()
		}
		return ""
	}
	c := Connection{
		Start:    s.StartTimestamp().AsTime(),
		Mode:     str(trace.FailureMode),
		Detail:   str(trace.FailureDetail),
		Upstream: str(trace.UpstreamAddress),
		Client:   str(trace.ClientAddress),
		trace:    s.TraceID(),
		span:     s.SpanID(),
	}
	if v, ok := attrs.Get(string(trace.RunAttempt)); ok {
		if f, ok := numeric(v); ok && f >= 1 && f < 1<<31 {
			c.Attempt = int(f)
		}
	}
	if c.Attempt > 1 {
		c.runFirst = runLink(s.Links())
	}
	if end := s.EndTimestamp(); end >= s.StartTimestamp() {
		c.Duration = end.AsTime().Sub(c.Start)
	}
	if v, ok := attrs.Get(string(trace.UpstreamFirstByteMS)); ok {
		c.FirstByteMS, c.HasFirstByte = numeric(v)
	}
	if v, ok := attrs.Get(string(trace.BytesClientToUp)); ok {
		if f, ok := numeric(v); ok && f >= 0 && f < 1<<62 {
			c.ClientBytes, c.HasClientBytes = int64(f), true
		}
	}
	return c, true
}

// runLink is the target of a retry's link to its run's first connection
// span: the link that says it points at attempt 1, else the first link.
func runLink(links ptrace.SpanLinkSlice) spanRef {
	for i := range links.Len() {
		l := links.At(i)
		if v, ok := l.Attributes().Get(string(trace.RunAttempt)); ok {
			if f, ok := numeric(v); ok && f == 1 {
				return spanRef{l.TraceID(), l.SpanID()}
			}
		}
	}
	if links.Len() > 0 {
		return spanRef{links.At(0).TraceID(), links.At(0).SpanID()}
	}
	return spanRef{}
}

// numeric reads an int, double or numeric string attribute.
func numeric(v pcommon.Value) (float64, bool) {
	switch v.Type() {
	case pcommon.ValueTypeInt:
		return float64(v.Int()), true
	case pcommon.ValueTypeDouble:
		return v.Double(), true
	case pcommon.ValueTypeStr:
		f, err := strconv.ParseFloat(v.Str(), 64)
		return f, err == nil
	}
	return 0, false
}
