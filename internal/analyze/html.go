package analyze

// This file is the renderer half of the HTML view: from a Summary and the
// Traces a TraceCollector kept (collect.go), it builds a view model with
// every position, label and class the page shows (pageView) and executes
// the template (html_template.go) on it: a self-contained page (inline CSS,
// no script, no external assets) with the summary and, per selected
// connection, a waterfall of its spans, the TLS records as ticks and the
// attributes, the way a tracing UI draws them.

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/ccproxy-dev/ccproxy/trace"
)

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
var keyAttrs = []attribute.Key{
	trace.FailureMode, trace.FailureDetail,
	trace.AttestPolicyHash, trace.AttestExpectedHash, trace.AttestVerdict,
	trace.TLSProtocolVersion, trace.TLSAlertDescription, trace.UpstreamFirstByteMS,
	trace.ATLSClientNonce, trace.ATLSNonceSource, trace.AttestPlatform, trace.TLSServerName,
	trace.UpstreamAddress, trace.ClockOffsetMS, trace.RunAttempt,
}

type pageView struct {
	Title    string
	Subtitle string
	Summary  Summary
	// SentNothing is the line for the connections set apart from the
	// failures ("" when there are none).
	SentNothing string
	Latency     string
	// ConnSpan and FirstByteAttr name the span and attribute in headings.
	ConnSpan      string
	FirstByteAttr string
	Problems      []string
	MoreProbs     int
	Shown         int
	Matched       int
	Selection     string
	Traces        []traceView
	// Runs, RunCounts and RunNotes are the runs card (before the
	// connections).
	Runs       []runView
	RunCounts  string
	RunNotes   []string
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

// runView is one listed run: its sentence's parts and its attempts on
// one time axis, a row each.
type runView struct {
	Head     string // "run at ... from ... to ..., 4 attempts over 31 s"
	Steps    []stepView
	Outcome  string
	CLIText  string
	Class    string // the outcome's mode class
	Axis     []axisTick
	Attempts []attemptView
}

type stepView struct {
	Text  string
	Class string
	Then  bool
}

type attemptView struct {
	Name  string // "attempt 3"
	Mode  string
	Class string
	Href  string // "#t-<trace id>" when that trace is drawn below
	Left  string
	Width string
	Dur   string
	Note  string // "sent nothing"
	Gap   bool   // a row standing for attempts not drawn
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

		ConnSpan:      trace.SpanConnection,
		FirstByteAttr: string(trace.UpstreamFirstByteMS),
	}
	src := plural(s.Read.Lines, "line") + ", " + plural(s.Read.Spans, "span")
	if s.Read.Traces > 0 {
		src = plural(s.Read.Traces, "trace") + ", " + plural(s.Read.Spans, "span")
	}
	if s.Connections > 0 {
		v.Subtitle = fmt.Sprintf("%s from %s to %s UTC (%s)", plural(s.Connections, "connection"), ts(s.From), ts(s.To), src)
	} else {
		v.Subtitle = fmt.Sprintf("no %s spans (%s)", trace.SpanConnection, src)
	}
	if sn := s.SentNothing; sn.Count > 0 {
		v.SentNothing = fmt.Sprintf("%s; first %s, last %s UTC. Not counted among the failures, and not drawn below.", sentNothingLine(sn.Count), ts(sn.First), ts(sn.Last))
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
	drawn := map[string]bool{}
	for _, t := range p.Traces {
		v.Traces = append(v.Traces, traceViewOf(t))
		drawn[t.ID] = true
	}
	if r := s.Runs; r.Runs > 0 {
		v.RunCounts = runCounts(r)
		v.RunNotes = r.Notes
		for _, run := range r.Listed {
			v.Runs = append(v.Runs, runViewOf(run, drawn))
		}
	}
	return v
}

// runViewOf draws a run: its attempts as bars on one axis from the first
// attempt's start to the last one's end.
func runViewOf(r Run, drawn map[string]bool) runView {
	rv := runView{Outcome: r.Outcome, CLIText: r.CLIText, Class: modeClass(r.Outcome)}
	head := r.Summary
	if i := strings.Index(head, ": "); i >= 0 {
		head = head[:i]
	}
	rv.Head = head
	for i, st := range r.Steps {
		text := st.Mode
		if st.Count > 1 {
			text += " ×" + strconv.Itoa(st.Count)
		}
		rv.Steps = append(rv.Steps, stepView{Text: text, Class: modeClass(st.Mode), Then: i > 0})
	}
	var pos func(time.Time) float64
	pos, rv.Axis = timeAxis(r.Start, r.End.Sub(r.Start), 4)
	for i, a := range r.Drawn {
		if r.NotDrawn > 0 && i == len(r.Drawn)/2 {
			rv.Attempts = append(rv.Attempts, attemptView{Name: "… " + plural(r.NotDrawn, "attempt") + " not drawn", Gap: true})
		}
		name := "attempt " + strconv.Itoa(a.Attempt)
		if a.Attempt == 0 {
			name = "connection"
		}
		left := pos(a.Start)
		av := attemptView{
			Name:  name,
			Mode:  a.Mode,
			Class: modeClass(a.Mode),
			Note:  pick(a.SentNothing, "sent nothing", ""),
			Left:  pct(left),
			Width: pct(max(pos(a.End)-left, 0.3)),
			Dur:   fmtDur(a.End.Sub(a.Start)),
		}
		if av.Mode == "" {
			av.Mode = unknownMode
		}
		if a.SentNothing {
			av.Class = "m-none"
		}
		if drawn[a.TraceID] {
			av.Href = "#t-" + a.TraceID
		}
		rv.Attempts = append(rv.Attempts, av)
	}
	return rv
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
	var pos func(time.Time) float64
	pos, tv.Axis = timeAxis(t0, t1.Sub(t0), 5)

	var events []Event
	connIdx := -1
	for i, s := range t.Spans {
		if s.Name == trace.SpanConnection && (connIdx < 0 || t.Spans[connIdx].Depth > s.Depth) {
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
				Class: dirClass(attrValue(e.Attrs, trace.Direction)),
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
		if i := slices.Index(keyAttrs, attribute.Key(k)); i >= 0 {
			return i
		}
		return len(keyAttrs)
	}
	sorted := slices.Clone(attrs)
	sort.SliceStable(sorted, func(i, j int) bool { return rank(sorted[i].Key) < rank(sorted[j].Key) })
	got, want := attrValue(attrs, trace.AttestPolicyHash), attrValue(attrs, trace.AttestExpectedHash)
	hashDiffers := got != "" && want != "" && !strings.EqualFold(got, want)
	out := make([]attrView, 0, len(sorted))
	for _, a := range sorted {
		av := attrView{Key: a.Key, Value: a.Value}
		switch k := attribute.Key(a.Key); {
		case k == trace.FailureMode:
			av.Class = "hl " + modeClass(a.Value)
		case k == trace.FailureDetail:
			av.Class = "detail"
		case hashDiffers && (k == trace.AttestPolicyHash || k == trace.AttestExpectedHash):
			av.Class = "differs"
		case rank(a.Key) < len(keyAttrs):
			av.Class = "key"
		}
		out = append(out, av)
	}
	return out
}

func attrValue(attrs []Attr, key attribute.Key) string {
	for _, a := range attrs {
		if a.Key == string(key) {
			return a.Value
		}
	}
	return ""
}

func eventViewOf(e Event, t0 time.Time) eventView {
	dir := attrValue(e.Attrs, trace.Direction)
	ev := eventView{
		At:       fmt.Sprintf("%.3f", float64(e.Time.Sub(t0))/float64(time.Millisecond)),
		Name:     e.Name,
		Dir:      dirText(dir),
		DirClass: dirClass(dir),
		Length:   attrValue(e.Attrs, trace.RecordLength),
		Offset:   attrValue(e.Attrs, trace.StreamOffset),
	}
	var what []string
	for _, k := range []attribute.Key{trace.HandshakeType, trace.TLSAlert, trace.ErrorMessage} {
		if v := attrValue(e.Attrs, k); v != "" {
			what = append(what, v)
		}
	}
	if len(what) == 0 {
		if v := attrValue(e.Attrs, trace.RecordType); v != "" {
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
	case trace.SpanConnection:
		return "s-conn"
	case trace.SpanUpstreamDial:
		return "s-dial"
	case trace.SpanTLSHandshake:
		return "s-tls"
	case trace.SpanAttestVerify:
		return "s-attest"
	case trace.SpanProbe:
		return "s-probe"
	case trace.SpanRelayStream:
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

// timeAxis lays out a time axis from t0 over total: pos places a time as a
// percentage of the axis (clamped to 0..100), and axis has ticks+1 labelled
// ticks.
func timeAxis(t0 time.Time, total time.Duration, ticks int) (pos func(time.Time) float64, axis []axisTick) {
	pos = func(at time.Time) float64 {
		if total <= 0 {
			return 0
		}
		return min(100, max(0, 100*float64(at.Sub(t0))/float64(total)))
	}
	for i := 0; i <= ticks; i++ {
		class := ""
		switch i {
		case 0:
			class = "first"
		case ticks:
			class = "last"
		}
		axis = append(axis, axisTick{
			Left: pct(100 * float64(i) / float64(ticks)),
			// In float: total may be up to the saturated maximum of
			// time.Sub, and total*i would overflow.
			Label: fmtDur(time.Duration(float64(total) * float64(i) / float64(ticks))),
			Class: class,
		})
	}
	return pos, axis
}
