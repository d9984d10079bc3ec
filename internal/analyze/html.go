package analyze

// This file draws connections the way a tracing UI does: a self-contained
// HTML page (inline CSS, no script, no external assets) with the summary and,
// per selected connection, a waterfall of its spans, the TLS records as ticks
// and the attributes. The summary needs only root spans; the waterfall needs
// whole traces, so TraceCollector reads the same OTLP/JSON lines keeping
// every span, event and attribute of the traces it selects.
//
//	tc := analyze.NewTraceCollector(analyze.TraceSelection{Filter: analyze.Options{Mode: "lb_closed_early"}})
//	st, err := tc.ReadOTLPJSON(f, "traces.jsonl", func(c analyze.Connection) { conns = append(conns, c) })
//	page := analyze.HTMLPage{Summary: analyze.Summarize(conns, opts), Traces: tc.Traces(), Matched: tc.Matched()}
//	err = page.Write(os.Stdout)

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"html/template"
	"io"
	"slices"
	"sort"
	"strconv"
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
	// Filter applies to each trace's connection span, as in Summarize
	// (Since and Mode; Bucket and TopDetails are ignored).
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

// Trace is one whole trace, as the page draws it.
type Trace struct {
	ID string
	// Conn is the trace's connection span reduced as the summary sees it.
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
// is read. It may read several files; call Traces once at the end.
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
	// remote is set when the trace holds a connection span whose parent is
	// another process's span (a tunnel stream): it decides the trace at
	// the end if no local root arrives.
	remote bool
}

// NewTraceCollector returns a collector for sel.
func NewTraceCollector(sel TraceSelection) *TraceCollector {
	return &TraceCollector{
		sel:     sel,
		pending: map[pcommon.TraceID]*partialTrace{},
		kept:    map[pcommon.TraceID]*partialTrace{},
	}
}

// ReadOTLPJSON reads OTLP/JSON lines like the package's ReadOTLPJSON (fn, if
// not nil, sees every ccproxy.connection root span, unfiltered) and keeps
// the spans of the selected traces.
func (tc *TraceCollector) ReadOTLPJSON(r io.Reader, name string, fn func(Connection)) (ReadStats, error) {
	return tc.read(r, name, fn, maxLineBytes)
}

func (tc *TraceCollector) read(r io.Reader, name string, fn func(Connection), maxLine int) (ReadStats, error) {
	if fn == nil {
		fn = func(Connection) {}
	}
	return readOTLPJSON(r, name, fn, maxLine, tc.add)
}

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
	if s.Name() != SpanConnection {
		return
	}
	if c, ok := connectionFromSpan(s); ok {
		tc.decide(pt, c)
		return
	}
	// A connection span with a remote parent: remember the earliest as
	// the candidate in case no local root arrives.
	local := ptrace.NewSpan()
	s.CopyTo(local)
	local.SetParentSpanID(pcommon.NewSpanIDEmpty())
	if c, ok := connectionFromSpan(local); ok && (!pt.remote || c.Start.Before(pt.conn.Start)) {
		pt.conn, pt.remote = c, true
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
	if !tc.sel.Filter.Keep(c) {
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

// Traces decides the traces still waiting for a local connection span (a
// tunnel's far side: the earliest connection span stands in), drops those
// without any, and returns the kept traces, the latest connection first.
func (tc *TraceCollector) Traces() []Trace {
	for _, id := range tc.order {
		if pt := tc.pending[id]; pt != nil && pt.remote {
			tc.decide(pt, pt.conn)
		}
	}
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

// HTMLPage is what `ccproxy analyze --output html` writes.
type HTMLPage struct {
	Summary Summary
	// Traces are drawn in this order (TraceCollector.Traces: latest first).
	Traces []Trace
	// Matched is how many traces matched the selection; more than
	// len(Traces) when some were left out.
	Matched int
	// TraceID echoes a trace id selection, for the header.
	TraceID string
}

// Write writes the page.
func (p HTMLPage) Write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	if err := pageTemplate.Execute(bw, p.view()); err != nil {
		return fmt.Errorf("writing analyze html: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing analyze html: %w", err)
	}
	return nil
}

// The attributes shown first, in this order: what a person debugging a
// failed handshake reads before anything else.
var keyAttrs = []string{
	AttrFailureMode, AttrDetail,
	"attest.policy_hash", "attest.expected_policy_hash", "attest.verdict",
	"tls.protocol.version", "tls.alert.description", AttrFirstByteMS,
	"atls.client_nonce", "atls.nonce_source", "attest.platform", "tls.client.server_name",
	AttrUpstream, "ccproxy.coordinator.clock_offset_ms",
}

type pageView struct {
	Title      string
	Subtitle   string
	Summary    Summary
	Latency    string
	Problems   []string
	MoreProbs  int
	Shown      int
	Matched    int
	Selection  string
	Traces     []traceView
	ModeClass  func(string) string
	FormatTime func(time.Time) string
}

type traceView struct {
	ID        string
	Mode      string
	ModeClass string
	Detail    string
	Start     string
	Duration  string
	Upstream  string
	Axis      []axisTick
	Rows      []rowView
	Attrs     []attrView
	Events    []eventView
	Children  []childView
}

type axisTick struct {
	Left  string
	Label string
	Class string
}

type rowView struct {
	Name   string
	Indent int
	Class  string
	Left   string
	Width  string
	Dur    string
	// DurAt places the duration label: right of the bar (left:DurAt), or,
	// when the bar ends near the right edge, left of it (DurRight,
	// right:DurAt) or, if there is no room there either, inside its end
	// (DurInside too), unless ticks would hide it there: then it goes in
	// the name column (DurInName).
	DurRight  bool
	DurInside bool
	DurInName bool
	DurAt     string
	Error     bool
	Status    string
	Ticks     []tickView
	AttrsLine string
}

type tickView struct {
	Left  string
	Class string
	Title string
}

type attrView struct {
	Key   string
	Value string
	Class string
}

type eventView struct {
	At       string
	Name     string
	Dir      string
	DirClass string
	What     string
	Length   string
	Offset   string
}

type childView struct {
	Name  string
	Attrs []attrView
}

func (p HTMLPage) view() pageView {
	s := p.Summary
	v := pageView{
		Title:      "ccproxy connections",
		Summary:    s,
		Shown:      len(p.Traces),
		Matched:    max(p.Matched, len(p.Traces)),
		ModeClass:  modeClass,
		FormatTime: ts,
	}
	src := plural(s.Read.Lines, "line") + ", " + plural(s.Read.Spans, "span")
	if s.Read.Traces > 0 {
		src = plural(s.Read.Traces, "trace") + ", " + plural(s.Read.Spans, "span")
	}
	if s.Connections > 0 {
		v.Subtitle = fmt.Sprintf("%s from %s to %s UTC (%s)", plural(s.Connections, "connection"), ts(s.From), ts(s.To), src)
	} else {
		v.Subtitle = fmt.Sprintf("no ccproxy.connection spans (%s)", src)
	}
	var sel []string
	if s.Filter.Mode != "" {
		sel = append(sel, "mode "+s.Filter.Mode)
	}
	if !s.Filter.Since.IsZero() {
		sel = append(sel, "since "+s.Filter.Since.UTC().Format(time.RFC3339))
	}
	if p.TraceID != "" {
		sel = append(sel, "trace "+p.TraceID)
	}
	v.Selection = strings.Join(sel, ", ")
	if f := s.FirstByte; f.Count > 0 {
		v.Latency = fmt.Sprintf("%s: p50 %s ms, p90 %s ms, p99 %s ms, max %s ms", plural(f.Count, "connection"), num(f.P50), num(f.P90), num(f.P99), num(f.Max))
	}
	v.Problems = s.Read.Problems
	v.MoreProbs = s.Read.Skipped - len(s.Read.Problems)
	for _, t := range p.Traces {
		v.Traces = append(v.Traces, traceViewOf(t))
	}
	return v
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func modeClass(m string) string {
	switch m {
	case "ok":
		return "m-ok"
	case "", unknownMode:
		return "m-none"
	}
	return "m-fail"
}

func traceViewOf(t Trace) traceView {
	tv := traceView{
		ID:        t.ID,
		Mode:      t.Conn.Mode,
		Detail:    t.Conn.Detail,
		Upstream:  t.Conn.Upstream,
		Start:     t.Conn.Start.UTC().Format("2006-01-02 15:04:05.000"),
		Duration:  fmtDur(t.Conn.Duration),
		ModeClass: modeClass(t.Conn.Mode),
	}
	if tv.Mode == "" {
		tv.Mode = unknownMode
	}
	if len(t.Spans) == 0 {
		return tv
	}
	t0, t1 := t.Spans[0].Start, t.Spans[0].End
	for _, s := range t.Spans {
		if s.Start.Before(t0) {
			t0 = s.Start
		}
		if s.End.After(t1) {
			t1 = s.End
		}
		for _, e := range s.Events {
			if e.Time.Before(t0) {
				t0 = e.Time
			}
			if e.Time.After(t1) {
				t1 = e.Time
			}
		}
	}
	total := t1.Sub(t0)
	pos := func(at time.Time) float64 {
		if total <= 0 {
			return 0
		}
		return min(100, max(0, 100*float64(at.Sub(t0))/float64(total)))
	}
	const ticks = 5
	for i := 0; i <= ticks; i++ {
		class := ""
		switch i {
		case 0:
			class = "first"
		case ticks:
			class = "last"
		}
		tv.Axis = append(tv.Axis, axisTick{
			Left: pct(100 * float64(i) / ticks),
			// In float: total may be up to the saturated maximum of
			// time.Sub, and total*i would overflow.
			Label: fmtDur(time.Duration(float64(total) * float64(i) / ticks)),
			Class: class,
		})
	}

	var events []Event
	connIdx := -1
	for i, s := range t.Spans {
		if s.Name == SpanConnection && (connIdx < 0 || t.Spans[connIdx].Depth > s.Depth) {
			connIdx = i
		}
	}
	for i, s := range t.Spans {
		left := pos(s.Start)
		width := max(pos(s.End)-left, 0.3)
		r := rowView{
			Name:   s.Name,
			Indent: 10 + 18*min(s.Depth, 12),
			Class:  spanClass(s.Name),
			Left:   pct(left),
			Width:  pct(width),
			Dur:    fmtDur(s.End.Sub(s.Start)),
			Error:  s.Error,
			Status: s.StatusMessage,
		}
		switch {
		case left+width <= 80:
			r.DurAt = pct(left + width + 0.6)
		case left >= 12:
			r.DurRight, r.DurAt = true, pct(100-left+0.6)
		default:
			r.DurRight, r.DurInside, r.DurAt = true, true, pct(100-left-width+0.4)
		}
		r.DurInName = r.DurInside && len(s.Events) > 0
		for _, e := range s.Events {
			r.Ticks = append(r.Ticks, tickView{
				Left:  pct(pos(e.Time)),
				Class: dirClass(attrValue(e.Attrs, "ccproxy.direction")),
				Title: eventTitle(e),
			})
		}
		if i != connIdx && len(s.Attrs) > 0 {
			parts := make([]string, 0, len(s.Attrs))
			for _, a := range s.Attrs {
				parts = append(parts, a.Key+"="+a.Value)
			}
			r.AttrsLine = strings.Join(parts, "  ")
			tv.Children = append(tv.Children, childView{Name: s.Name, Attrs: attrViews(s.Attrs)})
		}
		tv.Rows = append(tv.Rows, r)
		events = append(events, s.Events...)
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].Time.Before(events[j].Time) })
	for _, e := range events {
		tv.Events = append(tv.Events, eventViewOf(e, t0))
	}
	if connIdx >= 0 {
		tv.Attrs = attrViews(t.Spans[connIdx].Attrs)
	}
	return tv
}

// attrViews orders attributes key ones first and marks what to highlight:
// the failure mode, and a policy hash that differs from the expected one.
func attrViews(attrs []Attr) []attrView {
	rank := func(k string) int {
		if i := slices.Index(keyAttrs, k); i >= 0 {
			return i
		}
		return len(keyAttrs)
	}
	sorted := slices.Clone(attrs)
	sort.SliceStable(sorted, func(i, j int) bool { return rank(sorted[i].Key) < rank(sorted[j].Key) })
	got, want := attrValue(attrs, "attest.policy_hash"), attrValue(attrs, "attest.expected_policy_hash")
	hashDiffers := got != "" && want != "" && !strings.EqualFold(got, want)
	out := make([]attrView, 0, len(sorted))
	for _, a := range sorted {
		av := attrView{Key: a.Key, Value: a.Value}
		switch {
		case a.Key == AttrFailureMode:
			av.Class = "hl " + modeClass(a.Value)
		case a.Key == AttrDetail:
			av.Class = "detail"
		case hashDiffers && (a.Key == "attest.policy_hash" || a.Key == "attest.expected_policy_hash"):
			av.Class = "differs"
		case rank(a.Key) < len(keyAttrs):
			av.Class = "key"
		}
		out = append(out, av)
	}
	return out
}

func attrValue(attrs []Attr, key string) string {
	for _, a := range attrs {
		if a.Key == key {
			return a.Value
		}
	}
	return ""
}

func eventViewOf(e Event, t0 time.Time) eventView {
	dir := attrValue(e.Attrs, "ccproxy.direction")
	ev := eventView{
		At:       fmt.Sprintf("%.3f", float64(e.Time.Sub(t0))/float64(time.Millisecond)),
		Name:     e.Name,
		Dir:      dirText(dir),
		DirClass: dirClass(dir),
		Length:   attrValue(e.Attrs, "tls.record.length"),
		Offset:   attrValue(e.Attrs, "ccproxy.stream.offset"),
	}
	var what []string
	for _, k := range []string{"tls.handshake.type", "tls.alert", "error.message"} {
		if v := attrValue(e.Attrs, k); v != "" {
			what = append(what, v)
		}
	}
	if len(what) == 0 {
		if v := attrValue(e.Attrs, "tls.record.type"); v != "" {
			what = append(what, recordTypeName(v))
		}
	}
	ev.What = strings.Join(what, "; ")
	return ev
}

// recordTypeName names the TLS record content types (RFC 8446, 5.1).
func recordTypeName(v string) string {
	switch v {
	case "20":
		return "change_cipher_spec"
	case "21":
		return "alert"
	case "22":
		return "handshake"
	case "23":
		return "application_data"
	}
	return "type " + v
}

func eventTitle(e Event) string {
	var b strings.Builder
	b.WriteString(e.Name)
	for _, a := range e.Attrs {
		b.WriteString("\n" + a.Key + " = " + a.Value)
	}
	return b.String()
}

// dirText names a direction from either the TLS parser ("client_to_server")
// or the relay ("client_to_upstream").
func dirText(d string) string {
	switch {
	case strings.HasPrefix(d, "client_to_"):
		return "client → upstream"
	case strings.HasSuffix(d, "_to_client"):
		return "upstream → client"
	}
	return d
}

func dirClass(d string) string {
	switch {
	case strings.HasPrefix(d, "client_to_"):
		return "d-c2s"
	case strings.HasSuffix(d, "_to_client"):
		return "d-s2c"
	}
	return "d-none"
}

// spanClass maps the contract's span names to their colours; the class is
// never taken from the input.
func spanClass(name string) string {
	switch name {
	case SpanConnection:
		return "s-conn"
	case "upstream.dial":
		return "s-dial"
	case "tls.handshake":
		return "s-tls"
	case "attest.verify":
		return "s-attest"
	case "probe":
		return "s-probe"
	case "relay.stream":
		return "s-relay"
	}
	return "s-other"
}

func pct(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) + "%" }

func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		// Durations here are never negative (ends are clamped to starts);
		// say so rather than negate, which overflows for the minimum.
		return "negative"
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + " s"
	}
	return d.Truncate(time.Second).String()
}

var pageTemplate = template.Must(template.New("page").Parse(pageHTML))

// pageHTML is the page. Styles are inline so that the file can be mailed
// or attached to an issue and still render; there is no script.
const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
:root { --fg:#1d2330; --muted:#5f6b7a; --line:#d9dee5; --bg:#f5f7fa; --ok:#1f8a4c; --fail:#c62828; }
* { box-sizing: border-box; }
body { margin:0; font:13px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; color:var(--fg); background:var(--bg); }
header { background:#1f2a3c; color:#fff; padding:10px 20px; display:flex; align-items:baseline; gap:16px; }
header h1 { font-size:17px; margin:0; font-weight:600; }
header .sub { color:#b8c4d6; }
header .sel { margin-left:auto; color:#ffd479; }
main { padding:12px 20px 30px; }
section.card { background:#fff; border:1px solid var(--line); border-radius:6px; margin:0 0 14px; padding:10px 14px; }
h2 { font-size:14px; margin:0 0 8px; }
table { border-collapse:collapse; }
th, td { text-align:left; padding:3px 10px 3px 0; vertical-align:top; }
th { color:var(--muted); font-weight:600; font-size:11px; text-transform:uppercase; letter-spacing:.03em; border-bottom:1px solid var(--line); }
td.n { text-align:right; font-variant-numeric:tabular-nums; }
.mono, td.v, .ev td { font-family:"DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:12px; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-weight:600; font-family:"DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:12px; }
.badge.m-ok { background:#e3f4e9; color:var(--ok); }
.badge.m-fail { background:#fde7e7; color:var(--fail); }
.badge.m-none { background:#eceff3; color:var(--muted); }
.summary { display:flex; column-gap:40px; row-gap:12px; flex-wrap:wrap; align-items:flex-start; }
.summary > table:nth-child(2) { flex:1 1 420px; }
.note { color:var(--muted); margin-top:6px; }
.warn { background:#fff6db; border:1px solid #f0d78c; padding:6px 10px; border-radius:4px; margin-bottom:12px; }
.trace-head { display:flex; align-items:baseline; gap:12px; flex-wrap:wrap; }
.trace-head h2 { margin:0; }
.trace-head .meta { color:var(--muted); }
.detail-box { margin:8px 0 10px; padding:7px 10px; border-left:4px solid var(--fail); background:#fff4f4; font-size:13.5px; word-break:break-word; }
.detail-box.m-ok { border-color:var(--ok); background:#f1faf4; }
.detail-box.m-none { border-color:#9aa5b1; background:#f4f6f8; }
.wf { border:1px solid var(--line); border-radius:4px; margin-bottom:12px; }
.wf-row { display:flex; min-height:30px; border-top:1px solid #eef1f4; }
.wf-row:first-child { border-top:0; }
.wf-name { flex:0 0 270px; padding:6px 8px; border-right:1px solid var(--line); white-space:nowrap; overflow:hidden; text-overflow:ellipsis; font-family:"DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:12px; }
.wf-name .svc { color:var(--muted); }
.wf-name .err { display:inline-block; width:15px; height:15px; border-radius:50%; background:var(--fail); color:#fff; font:700 11px/15px sans-serif; text-align:center; margin-left:4px; }
.wf-name .name-dur { float:right; color:var(--muted); font-size:11px; }
.wf-track { position:relative; flex:1; margin:0 70px 0 10px; }
.wf-head { background:#f0f3f7; min-height:24px; }
.wf-head .wf-name { color:var(--muted); font-family:inherit; font-size:11px; text-transform:uppercase; font-weight:600; padding-top:4px; }
.axis-label { position:absolute; top:4px; font-size:11px; color:var(--muted); transform:translateX(-50%); white-space:nowrap; }
.axis-label.first { transform:none; }
.axis-label.last { transform:translateX(-100%); }
.grid { position:absolute; top:0; bottom:0; width:1px; background:#eef1f4; }
.bar { position:absolute; top:8px; height:14px; border-radius:2px; min-width:2px; }
.bar.err { box-shadow: inset 0 0 0 2px var(--fail); }
.dur { position:absolute; top:7px; font-size:11px; color:var(--muted); white-space:nowrap; padding:0 4px; }
.dur.inside { color:#fff; font-weight:600; top:8px; line-height:14px; }
.tick { position:absolute; top:3px; height:24px; width:2px; margin-left:-1px; opacity:.95; }
.sub-attrs { display:block; color:var(--muted); font-size:10.5px; overflow:hidden; text-overflow:ellipsis; }
.s-conn { background:#7f9fc4; } .s-dial { background:#59a14f; } .s-tls { background:#b07aa1; }
.s-attest { background:#f28e2b; } .s-probe { background:#9c755f; } .s-relay { background:#76b7b2; } .s-other { background:#9aa5b1; }
.dot { display:inline-block; width:9px; height:9px; border-radius:2px; margin-right:6px; vertical-align:0; }
.d-c2s { background:#1f5fbf; } .d-s2c { background:#d9480f; } .d-none { background:#555; }
.legend { color:var(--muted); font-size:11.5px; margin:-6px 0 10px; }
.legend .dot { margin-left:10px; }
.cols { display:grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap:22px; }
table.attrs td.k { font-family:"DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:12px; color:#39465a; white-space:nowrap; padding-right:14px; }
table.attrs td.v { overflow-wrap:anywhere; }
table.attrs tr.key td.k { font-weight:600; }
table.attrs tr.hl td { background:#fde7e7; font-weight:700; }
table.attrs tr.hl.m-ok td { background:#e3f4e9; }
table.attrs tr.detail td { background:#fff4f4; }
table.attrs tr.differs td.v { color:var(--fail); font-weight:600; }
table.attrs tr.differs td.k::after { content:" ≠"; color:var(--fail); }
table.ev td { padding:2px 10px 2px 0; white-space:nowrap; }
table.ev td.what { white-space:normal; }
details { margin-top:8px; } summary { cursor:pointer; color:var(--muted); }
</style>
</head>
<body>
<header><h1>{{.Title}}</h1><span class="sub">{{.Subtitle}}</span>{{if .Selection}}<span class="sel">selected: {{.Selection}}</span>{{end}}</header>
<main>
{{if .Problems}}<div class="warn"><b>Skipped input</b>{{range .Problems}}<div class="mono">{{.}}</div>{{end}}{{if gt .MoreProbs 0}}<div>… and {{.MoreProbs}} more</div>{{end}}</div>{{end}}
<section class="card">
<h2>Connections by failure mode</h2>
<div class="summary">
<table>
<tr><th>mode</th><th>count</th><th>%</th><th>first (UTC)</th><th>last (UTC)</th></tr>
{{range .Summary.Modes}}<tr><td><span class="badge {{call $.ModeClass .Mode}}">{{.Mode}}</span></td><td class="n">{{.Count}}</td><td class="n">{{printf "%.1f" .Percent}}</td><td>{{call $.FormatTime .First}}</td><td>{{call $.FormatTime .Last}}</td></tr>
{{else}}<tr><td colspan="5">no connections</td></tr>
{{end}}</table>
{{if .Summary.Details}}<table>
<tr><th>count</th><th>mode</th><th>most frequent details</th></tr>
{{range .Summary.Details}}<tr><td class="n">{{.Count}}</td><td><span class="badge {{call $.ModeClass .Mode}}">{{.Mode}}</span></td><td>{{.Detail}}</td></tr>
{{end}}</table>{{end}}
</div>
{{if .Latency}}<div class="note">Issuer latency (ccproxy.upstream.first_byte_ms): {{.Latency}}</div>{{end}}
</section>
{{if .Traces}}{{if lt .Shown .Matched}}<p class="note">Showing the {{.Shown}} latest of {{.Matched}} matching connections.</p>{{end}}
{{else}}<p class="note">No connection trace matched the selection.</p>{{end}}
{{range .Traces}}
<section class="card trace">
<div class="trace-head"><h2>ccproxy.connection</h2><span class="badge {{.ModeClass}}">{{.Mode}}</span><span class="meta">trace <span class="mono">{{.ID}}</span> · {{.Start}} UTC · {{.Duration}}{{if .Upstream}} · upstream <span class="mono">{{.Upstream}}</span>{{end}}</span></div>
{{if .Detail}}<div class="detail-box {{.ModeClass}}">{{.Detail}}</div>{{end}}
<div class="wf">
<div class="wf-row wf-head"><div class="wf-name">span</div><div class="wf-track">{{range .Axis}}<span class="axis-label {{.Class}}" style="left:{{.Left}}">{{.Label}}</span>{{end}}</div></div>
{{$axis := .Axis}}{{range .Rows}}<div class="wf-row"><div class="wf-name" style="padding-left:{{.Indent}}px"><span class="dot {{.Class}}"></span><span class="svc">ccproxy</span> <span class="op">{{.Name}}</span>{{if .Error}} <span class="err" title="{{.Status}}">!</span>{{end}}{{if .DurInName}}<span class="name-dur">{{.Dur}}</span>{{end}}{{if .AttrsLine}}<span class="sub-attrs" title="{{.AttrsLine}}">{{.AttrsLine}}</span>{{end}}</div><div class="wf-track">{{range $axis}}<span class="grid" style="left:{{.Left}}"></span>{{end}}<div class="bar {{.Class}}{{if .Error}} err{{end}}" style="left:{{.Left}};width:{{.Width}}" title="{{.Name}} {{.Dur}}{{if .Status}} — {{.Status}}{{end}}"></div>{{if not .DurInName}}<span class="dur{{if .DurInside}} inside{{end}}" style="{{if .DurRight}}right{{else}}left{{end}}:{{.DurAt}}">{{.Dur}}</span>{{end}}{{range .Ticks}}<span class="tick {{.Class}}" style="left:{{.Left}}" title="{{.Title}}"></span>{{end}}</div></div>
{{end}}</div>
{{if .Events}}<div class="legend">span events (TLS records and relay ends) as ticks:<span class="dot d-c2s"></span>client → upstream<span class="dot d-s2c"></span>upstream → client</div>{{end}}
<div class="cols">
<div>
<h2>Attributes of ccproxy.connection</h2>
<table class="attrs conn-attrs">
{{range .Attrs}}<tr class="{{.Class}}"><td class="k">{{.Key}}</td><td class="v">{{.Value}}</td></tr>
{{end}}</table>
{{if .Children}}<details><summary>attributes of the child spans</summary>
{{range .Children}}<h2 class="mono">{{.Name}}</h2><table class="attrs">
{{range .Attrs}}<tr class="{{.Class}}"><td class="k">{{.Key}}</td><td class="v">{{.Value}}</td></tr>
{{end}}</table>
{{end}}</details>{{end}}
</div>
<div>
<h2>Span events</h2>
{{if .Events}}<table class="ev">
<tr><th>+ms</th><th>event</th><th>direction</th><th>message</th><th>bytes</th><th>offset</th></tr>
{{range .Events}}<tr><td class="n">{{.At}}</td><td>{{.Name}}</td><td><span class="dot {{.DirClass}}"></span>{{.Dir}}</td><td class="what">{{.What}}</td><td class="n">{{.Length}}</td><td class="n">{{.Offset}}</td></tr>
{{end}}</table>{{else}}<p class="note">none recorded</p>{{end}}
</div>
</div>
</section>
{{end}}
</main>
</body>
</html>
`
