// Package analyze summarises ccproxy's connection traces: how many
// connections ended in each failure mode and per upstream, how that changed
// over time, how fast the upstream (the Coordinator's issuer) answered, which
// failure details were most frequent, and when each mode was first and last
// seen. It reads the OTLP/JSON lines that `ccproxy --trace-file` and the
// OpenTelemetry Collector's file exporter write, or the same spans from
// Jaeger's query API.
//
//	var conns []analyze.Connection
//	stats, err := analyze.ReadOTLPJSON(f, "traces.jsonl", func(c analyze.Connection) { conns = append(conns, c) })
//	sum := analyze.Summarize(conns, analyze.Options{Mode: "lb_closed_early"})
//	sum.WriteText(os.Stdout)
package analyze

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Span and attribute names of the contract (shared/CONTRACT.md, "Traces").
const (
	SpanConnection   = "ccproxy.connection"
	AttrFailureMode  = "ccproxy.failure_mode"
	AttrDetail       = "ccproxy.failure_detail"
	AttrUpstream     = "ccproxy.upstream.address"
	AttrFirstByteMS  = "ccproxy.upstream.first_byte_ms"
	unknownMode      = "(none)"
	unknownUpstream  = "(none)"
	maxLineBytes     = 64 << 20
	maxProblemsKept  = 20
	problemLineLimit = 200
)

// Connection is one ccproxy.connection root span, reduced to what the
// summary needs.
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
}

// ReadStats says what a read saw, for the report's header and for telling
// the user about malformed input.
type ReadStats struct {
	Lines       int      `json:"lines,omitempty"`  // lines of OTLP/JSON files
	Traces      int      `json:"traces,omitempty"` // traces fetched from Jaeger
	Spans       int      `json:"spans"`
	Connections int      `json:"connections"`
	Skipped     int      `json:"skipped_lines"`
	Problems    []string `json:"problems,omitempty"` // "file:line: error", the first few
}

// Add merges o into s.
func (s *ReadStats) Add(o ReadStats) {
	s.Lines += o.Lines
	s.Traces += o.Traces
	s.Spans += o.Spans
	s.Connections += o.Connections
	s.Skipped += o.Skipped
	for _, p := range o.Problems {
		if len(s.Problems) < maxProblemsKept {
			s.Problems = append(s.Problems, p)
		}
	}
}

// ReadOTLPJSON reads one ExportTraceServiceRequest JSON object per line from
// r and calls fn for each ccproxy.connection root span. Blank lines are
// ignored; a malformed line is recorded as "name:line: error" in the stats,
// counted and skipped. The error is only for failing to read r.
func ReadOTLPJSON(r io.Reader, name string, fn func(Connection)) (ReadStats, error) {
	return readOTLPJSON(r, name, fn, maxLineBytes, nil)
}

// readOTLPJSON is ReadOTLPJSON with a line limit; each, if not nil, also
// sees every span read (connection spans after fn).
func readOTLPJSON(r io.Reader, name string, fn func(Connection), maxLine int, each func(ptrace.Span)) (ReadStats, error) {
	var st ReadStats
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(64<<10, maxLine)), maxLine)
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
		rss := td.ResourceSpans()
		for i := range rss.Len() {
			sss := rss.At(i).ScopeSpans()
			for j := range sss.Len() {
				spans := sss.At(j).Spans()
				for k := range spans.Len() {
					sp := spans.At(k)
					st.Spans++
					if c, ok := connectionFromSpan(sp); ok {
						st.Connections++
						fn(c)
					}
					if each != nil {
						each(sp)
					}
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			// The scanner cannot go on after an overlong line.
			st.skip(name, st.Lines+1, fmt.Errorf("line longer than %d bytes", maxLine))
			return st, nil
		}
		return st, fmt.Errorf("reading %s: %w", name, err)
	}
	return st, nil
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

// connectionFromSpan reduces a root ccproxy.connection span; other spans
// (the phases, which are children) are not connections.
func connectionFromSpan(s ptrace.Span) (Connection, bool) {
	if s.Name() != SpanConnection || !s.ParentSpanID().IsEmpty() {
		return Connection{}, false
	}
	attrs := s.Attributes()
	str := func(k string) string {
		if v, ok := attrs.Get(k); ok {
			return v.AsString()
		}
		return ""
	}
	c := Connection{
		Start:    s.StartTimestamp().AsTime(),
		Mode:     str(AttrFailureMode),
		Detail:   str(AttrDetail),
		Upstream: str(AttrUpstream),
	}
	if end := s.EndTimestamp(); end >= s.StartTimestamp() {
		c.Duration = end.AsTime().Sub(c.Start)
	}
	if v, ok := attrs.Get(AttrFirstByteMS); ok {
		c.FirstByteMS, c.HasFirstByte = numeric(v)
	}
	return c, true
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
