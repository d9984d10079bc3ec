package analyze

// This file is the collector half of the HTML view: it keeps the whole
// traces (every span, event and attribute) of the connections a
// TraceSelection picks, while the same OTLP/JSON lines are read for the
// summary, and hands them over as Trace values. The renderer (html.go,
// html_template.go) draws a page from those and the Summary alone; it never
// sees a ptrace span.
//
//	rd := analyze.NewReader(func(c analyze.Connection) { conns = append(conns, c) })
//	tc := analyze.NewTraceCollector(analyze.TraceSelection{Filter: analyze.Options{Mode: "lb_closed_early"}})
//	rd.Collect(tc)
//	st, err := rd.ReadOTLPJSON(f, "traces.jsonl") // for each file
//	st.Add(rd.Flush())
//	page := analyze.HTMLPage{Summary: analyze.Summarize(conns, opts), Traces: tc.Traces(), Matched: tc.Matched()}
//	err = page.Write(os.Stdout)

import (
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// DefaultMaxTraces is how many traces a page draws when TraceSelection.Max
// is zero: enough to compare a few failures, small enough to stay a page.
const DefaultMaxTraces = 20

// maxPendingTraces bounds the traces held while their connection span has
// not arrived yet. Children (upstream.dial first of all) are exported when
// they end, the connection span only when the connection ends, so a relay
// with many long-lived connections leaves many such partial traces; beyond
// this bound the oldest are dropped (their connection would be drawn
// without the early children).
const maxPendingTraces = 50000

// TraceSelection picks the traces an HTML page draws.
type TraceSelection struct {
	// Filter applies to each trace's connection, as in Summarize (Since
	// and Mode; Bucket and TopDetails are ignored). Connections whose
	// client sent nothing (Connection.SentNothing) are not drawn, as they
	// are not among the failures, unless TraceID selects one.
	Filter Options
	// TraceID, when not empty, keeps only this trace.
	TraceID pcommon.TraceID
	// Max is the most traces kept (DefaultMaxTraces when 0); the ones whose
	// connection started last win.
	Max int
}

func (s TraceSelection) max() int {
	if s.Max > 0 {
		return s.Max
	}
	return DefaultMaxTraces
}

// ParseTraceID reads a trace id as Jaeger and the OTLP/JSON files print it:
// up to 32 hex digits, leading zeros optional.
func ParseTraceID(s string) (pcommon.TraceID, error) {
	var id pcommon.TraceID
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || len(s) > 2*len(id) {
		return id, fmt.Errorf("trace id %q: want 1 to %d hex digits", s, 2*len(id))
	}
	b, err := hex.DecodeString(strings.Repeat("0", 2*len(id)-len(s)) + s)
	if err != nil {
		return id, fmt.Errorf("trace id %q is not hex", s)
	}
	copy(id[:], b)
	if id.IsEmpty() {
		return id, fmt.Errorf("trace id %q is all zeros (an invalid id)", s)
	}
	return id, nil
}

// Trace is one whole trace, as the page draws it: what the collector
// hands the renderer.
type Trace struct {
	ID string
	// Conn is the trace's connection as the summary counts it (see
	// Reader): the parentless connection span, or the in-cluster tunnel
	// end's when that end's file was read alone.
	Conn Connection
	// Spans in drawing order: depth first, siblings by start time. A span
	// whose parent is not in the trace is drawn at depth 0.
	Spans []Span
}

// Span is one span with everything the waterfall shows.
type Span struct {
	SpanID   string
	ParentID string
	Name     string
	Start    time.Time
	End      time.Time
	// Depth is the nesting level in Trace.Spans (0: a root).
	Depth         int
	Error         bool
	StatusMessage string
	Attrs         []Attr
	Events        []Event
}

// Attr is an attribute rendered as text (lists joined with ", ").
type Attr struct {
	Key   string
	Value string
}

// Event is a span event: a TLS record or handshake message, or the end of a
// relay direction.
type Event struct {
	Time  time.Time
	Name  string
	Attrs []Attr
}

// TraceCollector keeps the whole traces a TraceSelection picks while OTLP/JSON
// is read by a Reader (Reader.Collect). It may see several files; call
// Traces once, after Reader.Flush.
type TraceCollector struct {
	sel     TraceSelection
	pending map[pcommon.TraceID]*partialTrace
	order   []pcommon.TraceID // pending ids, oldest first (may hold decided ones)
	kept    map[pcommon.TraceID]*partialTrace
	matched int
}

type partialTrace struct {
	id    pcommon.TraceID
	spans []Span
	conn  Connection
}

// NewTraceCollector returns a collector for sel.
func NewTraceCollector(sel TraceSelection) *TraceCollector {
	return &TraceCollector{
		sel:     sel,
		pending: map[pcommon.TraceID]*partialTrace{},
		kept:    map[pcommon.TraceID]*partialTrace{},
	}
}

// ReadOTLPJSON reads one whole input like the package's ReadOTLPJSON (fn,
// if not nil, sees every connection, unfiltered) and keeps the spans of the
// selected traces. For several files that belong together (both tunnel
// ends), read them with one Reader and Reader.Collect instead.
func (tc *TraceCollector) ReadOTLPJSON(r io.Reader, name string, fn func(Connection)) (ReadStats, error) {
	return tc.read(r, name, fn, maxLineBytes)
}

func (tc *TraceCollector) read(in io.Reader, name string, fn func(Connection), maxLine int) (ReadStats, error) {
	r := NewReader(fn)
	r.maxLine = maxLine
	r.Collect(tc)
	st, err := r.ReadOTLPJSON(in, name)
	st.Add(r.Flush())
	return st, err
}

// add keeps span s with its trace, until the trace's connection decides it
// (connection) or the end drops it.
func (tc *TraceCollector) add(s ptrace.Span) {
	id := s.TraceID()
	if !tc.sel.TraceID.IsEmpty() && id != tc.sel.TraceID {
		return
	}
	if kt := tc.kept[id]; kt != nil {
		kt.spans = append(kt.spans, spanFrom(s))
		return
	}
	pt := tc.pending[id]
	if pt == nil {
		pt = &partialTrace{id: id}
		tc.pending[id] = pt
		tc.order = append(tc.order, id)
		tc.evict()
	}
	pt.spans = append(pt.spans, spanFrom(s))
}

// connection is the Reader's report of a connection: it decides the trace
// the connection belongs to. The trace's spans read so far are pending (add
// saw the connection span itself first); a trace already decided (a second
// connection span in it, or the same line read twice) stays as it is.
func (tc *TraceCollector) connection(c Connection) {
	if pt := tc.pending[c.trace]; pt != nil {
		tc.decide(pt, c)
	}
}

// evict drops the oldest pending traces beyond maxPendingTraces.
func (tc *TraceCollector) evict() {
	for len(tc.pending) > maxPendingTraces && len(tc.order) > 0 {
		id := tc.order[0]
		tc.order = tc.order[1:]
		delete(tc.pending, id)
	}
	// Decided ids stay in order; compact now and then so it stays near
	// the size of pending.
	if len(tc.order) > 2*len(tc.pending)+1024 {
		live := tc.order[:0]
		for _, id := range tc.order {
			if tc.pending[id] != nil {
				live = append(live, id)
			}
		}
		tc.order = live
	}
}

// decide takes pt out of pending and keeps it if its connection passes the
// filter and is among the latest Max.
func (tc *TraceCollector) decide(pt *partialTrace, c Connection) {
	delete(tc.pending, pt.id)
	if !tc.sel.Filter.Keep(c) || (c.SentNothing() && tc.sel.TraceID.IsEmpty()) {
		return
	}
	tc.matched++
	pt.conn = c
	if len(tc.kept) >= tc.sel.max() {
		var oldest *partialTrace
		for _, k := range tc.kept {
			if oldest == nil || k.conn.Start.Before(oldest.conn.Start) {
				oldest = k
			}
		}
		if !c.Start.After(oldest.conn.Start) {
			return
		}
		delete(tc.kept, oldest.id)
	}
	tc.kept[pt.id] = pt
}

// Matched is how many traces passed the selection; Traces returns at most
// TraceSelection.Max of them. Call it after Traces.
func (tc *TraceCollector) Matched() int { return tc.matched }

// Traces drops the traces that never got a connection (their connection
// span was lost, or the connection was still open) and returns the kept
// traces, the latest connection first.
func (tc *TraceCollector) Traces() []Trace {
	clear(tc.pending)
	tc.order = nil

	out := make([]Trace, 0, len(tc.kept))
	for _, pt := range tc.kept {
		out = append(out, Trace{ID: hex.EncodeToString(pt.id[:]), Conn: pt.conn, Spans: treeOrder(pt.spans)})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Conn.Start.Equal(out[j].Conn.Start) {
			return out[i].Conn.Start.After(out[j].Conn.Start)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// treeOrder orders spans depth first, siblings by start time, and sets
// Depth. A span listed twice (the same line read twice) is drawn once.
func treeOrder(spans []Span) []Span {
	byID := map[string]bool{}
	uniq := spans[:0:0]
	for _, s := range spans {
		if !byID[s.SpanID] {
			byID[s.SpanID] = true
			uniq = append(uniq, s)
		}
	}
	sort.SliceStable(uniq, func(i, j int) bool { return uniq[i].Start.Before(uniq[j].Start) })
	children := map[string][]int{}
	var roots []int
	for i, s := range uniq {
		if s.ParentID == "" || s.ParentID == s.SpanID || !byID[s.ParentID] {
			roots = append(roots, i)
		} else {
			children[s.ParentID] = append(children[s.ParentID], i)
		}
	}
	out := make([]Span, 0, len(uniq))
	seen := make([]bool, len(uniq))
	var walk func(i, depth int)
	walk = func(i, depth int) {
		if seen[i] {
			return
		}
		seen[i] = true
		s := uniq[i]
		s.Depth = depth
		out = append(out, s)
		for _, c := range children[s.SpanID] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	// Spans in a parent cycle (malformed input) are reachable from no root:
	// draw them flat rather than lose them.
	for i := range uniq {
		if !seen[i] {
			walk(i, 0)
		}
	}
	return out
}

func spanFrom(s ptrace.Span) Span {
	sp := Span{
		SpanID: s.SpanID().String(),
		Name:   s.Name(),
		Start:  s.StartTimestamp().AsTime(),
		End:    s.EndTimestamp().AsTime(),
		Attrs:  attrsFrom(s.Attributes()),
	}
	if !s.ParentSpanID().IsEmpty() {
		sp.ParentID = s.ParentSpanID().String()
	}
	if sp.End.Before(sp.Start) {
		sp.End = sp.Start
	}
	if s.Status().Code() == ptrace.StatusCodeError {
		sp.Error = true
		sp.StatusMessage = s.Status().Message()
	}
	evs := s.Events()
	for i := range evs.Len() {
		e := evs.At(i)
		sp.Events = append(sp.Events, Event{Time: e.Timestamp().AsTime(), Name: e.Name(), Attrs: attrsFrom(e.Attributes())})
	}
	return sp
}

func attrsFrom(m pcommon.Map) []Attr {
	out := make([]Attr, 0, m.Len())
	for k, v := range m.All() {
		out = append(out, Attr{Key: k, Value: valueText(v)})
	}
	return out
}

// valueText renders a value for a person: lists joined, not as JSON.
func valueText(v pcommon.Value) string {
	if v.Type() == pcommon.ValueTypeSlice {
		s := v.Slice()
		parts := make([]string, s.Len())
		for i := range s.Len() {
			parts[i] = s.At(i).AsString()
		}
		return strings.Join(parts, ", ")
	}
	return v.AsString()
}
