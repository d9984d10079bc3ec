package analyze

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/trace"
)

var htmlT0 = time.Date(2025, 5, 6, 10, 0, 0, 0, time.UTC)

// spanSpec describes one span of a test trace; times are offsets from htmlT0.
type spanSpec struct {
	id, parent byte
	name       string
	start, end time.Duration
	attrs      map[string]any
	events     []eventSpec
	err        string
}

type eventSpec struct {
	at    time.Duration
	name  string
	attrs map[string]any
}

func traceID(b byte) pcommon.TraceID {
	var id pcommon.TraceID
	id[0], id[15] = 0xab, b
	return id
}

func spanID(b byte) pcommon.SpanID {
	if b == 0 {
		return pcommon.NewSpanIDEmpty()
	}
	return pcommon.SpanID{0xcd, 0, 0, 0, 0, 0, 0, b}
}

func putAttrs(m pcommon.Map, attrs map[string]any) {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		switch v := attrs[k].(type) {
		case string:
			m.PutStr(k, v)
		case int:
			m.PutInt(k, int64(v))
		case float64:
			m.PutDouble(k, v)
		case []string:
			s := m.PutEmptySlice(k)
			for _, x := range v {
				s.AppendEmpty().SetStr(x)
			}
		default:
			panic(fmt.Sprintf("attr %s: type %T", k, v))
		}
	}
}

// otlpLine marshals spans of trace tid as one OTLP/JSON line, the way the
// file exporter writes a batch.
func otlpLine(t testing.TB, tid byte, specs ...spanSpec) string {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "ccproxy")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("github.com/ccproxy-dev/ccproxy")
	for _, sp := range specs {
		s := ss.Spans().AppendEmpty()
		s.SetTraceID(traceID(tid))
		s.SetSpanID(spanID(sp.id))
		s.SetParentSpanID(spanID(sp.parent))
		s.SetName(sp.name)
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(htmlT0.Add(sp.start)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(htmlT0.Add(sp.end)))
		putAttrs(s.Attributes(), sp.attrs)
		for _, e := range sp.events {
			ev := s.Events().AppendEmpty()
			ev.SetName(e.name)
			ev.SetTimestamp(pcommon.NewTimestampFromTime(htmlT0.Add(e.at)))
			putAttrs(ev.Attributes(), e.attrs)
		}
		if sp.err != "" {
			s.Status().SetCode(ptrace.StatusCodeError)
			s.Status().SetMessage(sp.err)
		}
	}
	var m ptrace.JSONMarshaler
	b, err := m.MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

const (
	gotHash  = "07173084ed9c775739c3ac65e2e493ee1602ed217a14ea7a360112b9346dc526"
	wantHash = "ced5af631b62f9605a6350ffa9b1905025fea87585691780be5ad9394a096e52"
	nonceHex = "0197513aedf68484712bd42b1873e501999cef77d5850c7beb000500d1ec24be"
)

var phmDetail = "HOST_DATA (policy hash) is " + gotHash + "; expected " + wantHash + " (from manifest coordinator policy)"

// failedTrace is a policy_hash_mismatch connection as the relay records it:
// the children in one batch, the connection span (with the TLS records as
// events) in a later one, since it ends last.
func failedTrace(t testing.TB, tid byte, start time.Duration) (children, root string) {
	children = otlpLine(t, tid,
		spanSpec{id: 2, parent: 1, name: "upstream.dial", start: start + 50*time.Microsecond, end: start + 110*time.Microsecond,
			attrs: map[string]any{string(trace.UpstreamAddress): "coordinator:1313"}},
		spanSpec{id: 3, parent: 1, name: "tls.handshake", start: start + 600*time.Microsecond, end: start + 8*time.Millisecond,
			attrs: map[string]any{string(trace.FailureMode): string(failure.PolicyHashMismatch)}},
		spanSpec{id: 4, parent: 1, name: "attest.verify", start: start + 2700*time.Microsecond, end: start + 5800*time.Microsecond,
			attrs: map[string]any{"attest.platform": "snp", "attest.verdict": "rejected", "attest.policy_hash": gotHash, "attest.expected_policy_hash": wantHash}},
		spanSpec{id: 5, parent: 1, name: "probe", start: start + 8200*time.Microsecond, end: start + 9*time.Millisecond,
			attrs: map[string]any{string(trace.FailureMode): string(failure.PolicyHashMismatch)}},
		spanSpec{id: 6, parent: 1, name: "relay.stream", start: start + 110*time.Microsecond, end: start + 8300*time.Microsecond,
			attrs: map[string]any{"ccproxy.bytes.client_to_upstream": 320, "ccproxy.bytes.upstream_to_client": 6225}},
	)
	root = otlpLine(t, tid, spanSpec{
		id: 1, name: trace.SpanConnection, start: start, end: start + 9*time.Millisecond, err: string(failure.PolicyHashMismatch),
		attrs: map[string]any{
			string(trace.FailureMode): string(failure.PolicyHashMismatch), string(trace.FailureDetail): phmDetail, string(trace.UpstreamAddress): "coordinator:1313",
			"attest.policy_hash": gotHash, "attest.expected_policy_hash": wantHash, "attest.verdict": "rejected",
			"atls.client_nonce": nonceHex, "atls.nonce_source": "alpn", "tls.protocol.version": "1.2",
			string(trace.UpstreamFirstByteMS): 1.804, "tls.client.alpn": []string{"atls:v1:nonce:" + nonceHex, "h2"},
		},
		events: []eventSpec{
			{at: start + 600*time.Microsecond, name: "tls.client_hello", attrs: map[string]any{"ccproxy.direction": "client_to_server", "ccproxy.stream.offset": 0, "tls.record.type": 22, "tls.record.length": 308, "tls.handshake.type": "client_hello"}},
			{at: start + 2500*time.Microsecond, name: "tls.server_hello", attrs: map[string]any{"ccproxy.direction": "server_to_client", "ccproxy.stream.offset": 0, "tls.record.type": 22, "tls.record.length": 72, "tls.handshake.type": "server_hello"}},
			{at: start + 2660*time.Microsecond, name: "tls.certificate", attrs: map[string]any{"ccproxy.direction": "server_to_client", "ccproxy.stream.offset": 77, "tls.record.type": 22, "tls.record.length": 5920, "tls.handshake.type": "certificate"}},
			{at: start + 8100*time.Microsecond, name: "tls.alert", attrs: map[string]any{"ccproxy.direction": "client_to_server", "ccproxy.stream.offset": 313, "tls.record.type": 21, "tls.record.length": 2, "tls.alert": "fatal bad_certificate (42)"}},
			{at: start + 8250*time.Microsecond, name: "relay.ended", attrs: map[string]any{"ccproxy.direction": "client_to_upstream"}},
		},
	})
	return children, root
}

func okTrace(t testing.TB, tid byte, start time.Duration) string {
	return otlpLine(t, tid,
		spanSpec{id: 2, parent: 1, name: "upstream.dial", start: start, end: start + time.Millisecond},
		spanSpec{id: 1, name: trace.SpanConnection, start: start, end: start + 20*time.Millisecond,
			attrs: map[string]any{string(trace.FailureMode): "ok", string(trace.FailureDetail): "handshake finished, 2 KiB relayed", string(trace.UpstreamAddress): "coordinator:1313"}},
	)
}

// checkWellFormed tokenizes page and requires every non-void element to be
// closed in order, a doctype, and no script element.
func checkWellFormed(t testing.TB, page []byte) {
	t.Helper()
	if err := wellFormed(page); err != nil {
		t.Fatal(err)
	}
}

func wellFormed(page []byte) error {
	void := map[atom.Atom]bool{atom.Meta: true, atom.Br: true, atom.Img: true, atom.Hr: true, atom.Link: true, atom.Input: true, atom.Wbr: true}
	z := html.NewTokenizer(bytes.NewReader(page))
	var stack []string
	doctype := false
	for {
		switch z.Next() {
		case html.ErrorToken:
			if !errors.Is(z.Err(), io.EOF) {
				return z.Err()
			}
			if !doctype {
				return errors.New("no doctype")
			}
			if len(stack) > 0 {
				return fmt.Errorf("unclosed elements %v", stack)
			}
			return nil
		case html.DoctypeToken:
			doctype = true
		case html.StartTagToken:
			tok := z.Token()
			if tok.DataAtom == atom.Script {
				return errors.New("page has a script element")
			}
			if !void[tok.DataAtom] {
				stack = append(stack, tok.Data)
			}
		case html.EndTagToken:
			tok := z.Token()
			if len(stack) == 0 || stack[len(stack)-1] != tok.Data {
				return fmt.Errorf("</%s> closes %v", tok.Data, stack)
			}
			stack = stack[:len(stack)-1]
		case html.SelfClosingTagToken:
			// fine: <meta ... />
		}
	}
}

// textsWithClass returns the text content of the elements with class cls
// inside the elements with class within ("": anywhere).
func textsWithClass(t testing.TB, page []byte, within, cls string) []string {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	roots := []*html.Node{doc}
	if within != "" {
		roots = withClass(doc, within)
	}
	var out []string
	for _, r := range roots {
		for _, n := range withClass(r, cls) {
			var b strings.Builder
			for c := range n.Descendants() {
				if c.Type == html.TextNode {
					b.WriteString(c.Data)
				}
			}
			out = append(out, strings.TrimSpace(b.String()))
		}
	}
	return out
}

func withClass(root *html.Node, cls string) []*html.Node {
	var out []*html.Node
	for n := range root.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		for _, a := range n.Attr {
			if a.Key == "class" && slices.Contains(strings.Fields(a.Val), cls) {
				out = append(out, n)
			}
		}
	}
	return out
}

func renderPage(t testing.TB, input string, sel TraceSelection) ([]byte, []Trace) {
	t.Helper()
	tc := NewTraceCollector(sel)
	var conns []Connection
	st, err := tc.ReadOTLPJSON(strings.NewReader(input), "traces.jsonl", func(c Connection) { conns = append(conns, c) })
	if err != nil {
		t.Fatal(err)
	}
	sum := Summarize(conns, sel.Filter)
	sum.Read = st
	traces := tc.Traces()
	var buf bytes.Buffer
	if err := (HTMLPage{Summary: sum, Traces: traces, Matched: tc.Matched()}).Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), traces
}

func TestHTMLPageFailedConnection(t *testing.T) {
	children, root := failedTrace(t, 1, 0)
	input := okTrace(t, 2, -time.Second) + children + "\n" + okTrace(t, 3, time.Second) + root
	page, traces := renderPage(t, input, TraceSelection{Filter: Options{Mode: string(failure.PolicyHashMismatch)}})
	checkWellFormed(t, page)

	if len(traces) != 1 || traces[0].Conn.Mode != string(failure.PolicyHashMismatch) {
		t.Fatalf("traces = %+v, want the one policy_hash_mismatch connection", traces)
	}
	if len(traces[0].Spans) != 6 {
		t.Errorf("trace has %d spans, want the connection and its 5 children", len(traces[0].Spans))
	}
	s := string(page)
	for _, want := range []string{string(failure.PolicyHashMismatch), phmDetail, gotHash, wantHash, nonceHex, "fatal bad_certificate (42)", "1.804"} {
		if !strings.Contains(s, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(s, "handshake finished, 2 KiB relayed") {
		t.Error("the page shows an ok connection that --mode excluded")
	}

	// The waterfall draws one row per span, the connection first and its
	// children by start time.
	rows := textsWithClass(t, page, "wf", "op")
	wantRows := []string{trace.SpanConnection, "upstream.dial", "relay.stream", "tls.handshake", "attest.verify", "probe"}
	if !slices.Equal(rows, wantRows) {
		t.Errorf("waterfall rows = %v, want %v", rows, wantRows)
	}
	if got := len(textsWithClass(t, page, "", "tick")); got != 5 {
		t.Errorf("%d event ticks, want 5", got)
	}
	if got := len(textsWithClass(t, page, "", "bar")); got != 6 {
		t.Errorf("%d bars, want 6", got)
	}
	// The failure mode row is highlighted; the differing hashes are marked.
	hl := textsWithClass(t, page, "conn-attrs", "hl")
	if len(hl) != 1 || !strings.Contains(hl[0], string(failure.PolicyHashMismatch)) {
		t.Errorf("highlighted rows = %q", hl)
	}
	if d := textsWithClass(t, page, "conn-attrs", "differs"); len(d) != 2 {
		t.Errorf("rows marked as differing = %q, want the two policy hashes", d)
	}
	// Events are listed in time order with their direction.
	evs := textsWithClass(t, page, "", "what")
	if len(evs) != 5 || evs[0] != "client_hello" || evs[3] != "fatal bad_certificate (42)" {
		t.Errorf("event messages = %q", evs)
	}
	if !strings.Contains(s, "client → upstream") || !strings.Contains(s, "upstream → client") {
		t.Error("event directions missing")
	}
}

func TestHTMLPageEscapesInput(t *testing.T) {
	evil := `<script>alert("x")</script><img src=x onerror=alert(1)>`
	input := otlpLine(t, 9, spanSpec{id: 1, name: trace.SpanConnection, end: time.Millisecond,
		attrs:  map[string]any{string(trace.FailureMode): evil, string(trace.FailureDetail): evil, "x": evil},
		events: []eventSpec{{name: evil, attrs: map[string]any{"ccproxy.direction": evil}}},
	}, spanSpec{id: 2, parent: 1, name: evil, end: time.Millisecond, err: evil})
	page, _ := renderPage(t, input, TraceSelection{})
	checkWellFormed(t, page)
	if bytes.Contains(page, []byte("<img")) || bytes.Contains(page, []byte("<script")) {
		t.Error("input markup reached the page unescaped")
	}
	if !bytes.Contains(page, []byte("&lt;script&gt;")) {
		t.Error("escaped input text missing")
	}
	if !bytes.Contains(page, []byte(`class="dot s-other"`)) {
		t.Error("an unknown span name must get the neutral colour, not a class from the input")
	}
}

func TestHTMLPageEmpty(t *testing.T) {
	page, traces := renderPage(t, "", TraceSelection{})
	checkWellFormed(t, page)
	if len(traces) != 0 || !bytes.Contains(page, []byte("No connection trace matched")) {
		t.Errorf("empty input: %d traces, page %q", len(traces), page)
	}
}

func TestTraceCollectorSelection(t *testing.T) {
	ch1, root1 := failedTrace(t, 1, 0)
	ch4, root4 := failedTrace(t, 4, 2*time.Second)
	ok2 := okTrace(t, 2, time.Second)
	// A tunnel's far side: the connection span's parent is in another
	// process, so no local root ever arrives.
	remote := otlpLine(t, 5,
		spanSpec{id: 2, parent: 1, name: "upstream.dial", start: 3 * time.Second, end: 3*time.Second + time.Millisecond},
		spanSpec{id: 1, parent: 0x77, name: trace.SpanConnection, start: 3 * time.Second, end: 3*time.Second + 5*time.Millisecond,
			attrs: map[string]any{string(trace.FailureMode): string(failure.LBClosedEarly)}},
	)
	// Children whose connection span was never written (dropped): not drawn.
	orphan := otlpLine(t, 6, spanSpec{id: 2, parent: 1, name: "upstream.dial", start: 4 * time.Second, end: 4*time.Second + time.Millisecond})
	// A child that arrives after its connection was decided joins it.
	late := otlpLine(t, 1, spanSpec{id: 9, parent: 1, name: "probe", start: 8 * time.Millisecond, end: 10 * time.Millisecond})
	all := ch1 + root1 + ok2 + ch4 + root4 + remote + orphan + late

	tests := []struct {
		name     string
		input    string
		sel      TraceSelection
		want     []byte // trace id's last byte, in drawing order
		matched  int
		spansOf1 int
	}{
		{name: "all, latest first", input: all, want: []byte{5, 4, 2, 1}, matched: 4, spansOf1: 7},
		{name: "by mode", input: all, sel: TraceSelection{Filter: Options{Mode: string(failure.PolicyHashMismatch)}}, want: []byte{4, 1}, matched: 2, spansOf1: 7},
		{name: "max keeps the latest", input: all, sel: TraceSelection{Max: 2}, want: []byte{5, 4}, matched: 4},
		{name: "since", input: all, sel: TraceSelection{Filter: Options{Since: htmlT0.Add(1500 * time.Millisecond)}}, want: []byte{5, 4}, matched: 2},
		{name: "by trace id", input: all, sel: TraceSelection{TraceID: traceID(1)}, want: []byte{1}, matched: 1, spansOf1: 7},
		{name: "root before children", input: root1 + ch1, want: []byte{1}, matched: 1, spansOf1: 6},
		{name: "same lines twice", input: ch1 + root1 + ch1 + root1, want: []byte{1}, matched: 1, spansOf1: 6},
		{name: "remote parent only", input: remote, want: []byte{5}, matched: 1},
		{name: "orphans only", input: orphan, want: nil, matched: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := NewTraceCollector(tt.sel)
			if _, err := tc.ReadOTLPJSON(strings.NewReader(tt.input), "t", nil); err != nil {
				t.Fatal(err)
			}
			traces := tc.Traces()
			var got []byte
			for _, tr := range traces {
				id, err := hex.DecodeString(tr.ID)
				if err != nil || len(id) != 16 {
					t.Fatalf("trace id %q", tr.ID)
				}
				got = append(got, id[15])
				if id[15] == 1 && tt.spansOf1 != 0 && len(tr.Spans) != tt.spansOf1 {
					t.Errorf("trace 1 has %d spans, want %d", len(tr.Spans), tt.spansOf1)
				}
				for i, s := range tr.Spans {
					if wantDepth := min(i, 1); s.Depth != wantDepth {
						t.Errorf("trace %x span %d (%s) depth %d, want %d", id[15], i, s.Name, s.Depth, wantDepth)
					}
				}
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("traces %v, want %v", got, tt.want)
			}
			if tc.Matched() != tt.matched {
				t.Errorf("matched %d, want %d", tc.Matched(), tt.matched)
			}
		})
	}
}

func TestTraceCollectorReadProblems(t *testing.T) {
	children, root := failedTrace(t, 1, 0)
	input := "{not json\n\n" + children + root + strings.Repeat("x", 5000) + "\n"
	tc := NewTraceCollector(TraceSelection{})
	n := 0
	st, err := tc.read(strings.NewReader(input), "f.jsonl", func(Connection) { n++ }, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || st.Connections != 1 || st.Spans != 6 {
		t.Errorf("connections %d/%d, spans %d; want 1, 6", n, st.Connections, st.Spans)
	}
	if st.Skipped != 2 || len(st.Problems) != 2 || !strings.HasPrefix(st.Problems[0], "f.jsonl:1:") || !strings.Contains(st.Problems[1], "longer than 4096") {
		t.Errorf("skipped %d, problems %q", st.Skipped, st.Problems)
	}
	if got := tc.Traces(); len(got) != 1 {
		t.Errorf("%d traces, want 1", len(got))
	}
}

func TestTraceCollectorBoundsPending(t *testing.T) {
	// Children of connections still open: the oldest partial traces go
	// beyond the bound, so memory stays bounded.
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	for i := range maxPendingTraces + 10 {
		s := spans.AppendEmpty()
		var id pcommon.TraceID
		id[0], id[1], id[2] = byte(i>>16), byte(i>>8), byte(i)
		id[15] = 1
		s.SetTraceID(id)
		s.SetSpanID(spanID(2))
		s.SetParentSpanID(spanID(1))
		s.SetName("upstream.dial")
	}
	tc := NewTraceCollector(TraceSelection{})
	for i := range spans.Len() {
		tc.add(spans.At(i))
	}
	if len(tc.pending) != maxPendingTraces {
		t.Errorf("%d pending traces, want the bound %d", len(tc.pending), maxPendingTraces)
	}
	if len(tc.order) > 2*maxPendingTraces+1024 {
		t.Errorf("order holds %d ids", len(tc.order))
	}
	if got := tc.Traces(); len(got) != 0 {
		t.Errorf("%d traces drawn from children without a connection", len(got))
	}
}

func TestParseTraceID(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "881c5d2a716823d3c8325605917808c0", want: "881c5d2a716823d3c8325605917808c0"},
		{in: " 881C5D2A716823D3C8325605917808C0 ", want: "881c5d2a716823d3c8325605917808c0"},
		{in: "abc", want: "00000000000000000000000000000abc"},
		{in: "", wantErr: true},
		{in: "0", wantErr: true},
		{in: "xyz", wantErr: true},
		{in: strings.Repeat("a", 33), wantErr: true},
	}
	for _, tt := range tests {
		id, err := ParseTraceID(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseTraceID(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && hex.EncodeToString(id[:]) != tt.want {
			t.Errorf("ParseTraceID(%q) = %x, want %s", tt.in, id, tt.want)
		}
	}
}

func TestFmtDur(t *testing.T) {
	tests := map[time.Duration]string{
		54 * time.Microsecond:    "54 µs",
		8310 * time.Microsecond:  "8.31 ms",
		1500 * time.Millisecond:  "1.500 s",
		90 * time.Second:         "1m30s",
		-2 * time.Millisecond:    "negative",
		math.MaxInt64:            "2562047h47m16s",
		0:                        "0 µs",
		999999 * time.Nanosecond: "999 µs",
	}
	for d, want := range tests {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
}

func FuzzTraceCollector(f *testing.F) {
	// Small seeds: the fuzzer minimizes every input that finds new
	// coverage, and minimizing a whole failedTrace (6 KB) takes the engine
	// most of a short run.
	f.Add(otlpLine(f, 1,
		spanSpec{id: 2, parent: 1, name: "attest.verify", start: time.Millisecond, end: 2 * time.Millisecond, attrs: map[string]any{"attest.policy_hash": "0a"}},
		spanSpec{id: 1, name: trace.SpanConnection, end: 3 * time.Millisecond, err: "x",
			attrs:  map[string]any{string(trace.FailureMode): "tls_alert", "attest.expected_policy_hash": "0b"},
			events: []eventSpec{{at: time.Millisecond, name: "tls.alert", attrs: map[string]any{"ccproxy.direction": "server_to_client", "tls.record.type": 21}}}},
	))
	f.Add(okTrace(f, 2, 0))
	f.Add(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102","spanId":"0a","parentSpanId":"0a","name":"ccproxy.connection"}]}]}]}`)
	f.Add("{}\n[]\nnull")
	f.Fuzz(func(t *testing.T, in string) {
		tc := NewTraceCollector(TraceSelection{Max: 3})
		var conns []Connection
		st, err := tc.read(strings.NewReader(in), "fuzz", func(c Connection) { conns = append(conns, c) }, 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		traces := tc.Traces()
		if len(traces) > 3 {
			t.Fatalf("%d traces, Max 3", len(traces))
		}
		sum := Summarize(conns, Options{})
		sum.Read = st
		var buf bytes.Buffer
		if err := (HTMLPage{Summary: sum, Traces: traces, Matched: tc.Matched()}).Write(&buf); err != nil {
			t.Fatal(err)
		}
		if err := wellFormed(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestWaterfallAxisCoversChildren: the time axis of a connection spans its
// root and all its children, whether the root ends after its children (as
// the relay will) or a child, the probe, ends after the root (as it may
// today): no bar runs past the axis, and the latest end is its right edge.
func TestWaterfallAxisCoversChildren(t *testing.T) {
	root := func(end time.Duration) spanSpec {
		return spanSpec{id: 1, name: trace.SpanConnection, end: end,
			attrs: map[string]any{string(trace.FailureMode): string(failure.PolicyHashMismatch)}}
	}
	dial := spanSpec{id: 2, parent: 1, name: trace.SpanUpstreamDial, start: time.Millisecond, end: 2 * time.Millisecond}
	probe := func(start, end time.Duration) spanSpec {
		return spanSpec{id: 3, parent: 1, name: trace.SpanProbe, start: start, end: end}
	}
	tests := []struct {
		name string
		// lines in file order: a child that ends after the root is
		// exported after it.
		lines     []string
		total     string  // the last axis label
		rootWidth float64 // percent of the axis
		probeEnd  float64 // right edge of the probe's bar, percent
	}{
		{name: "root ends last", lines: []string{otlpLine(t, 1, dial, probe(8*time.Millisecond, 9*time.Millisecond)), otlpLine(t, 1, root(10*time.Millisecond))},
			total: "10.00 ms", rootWidth: 100, probeEnd: 90},
		{name: "probe ends after the root", lines: []string{otlpLine(t, 1, dial), otlpLine(t, 1, root(10*time.Millisecond)), otlpLine(t, 1, probe(8*time.Millisecond, 16*time.Millisecond))},
			total: "16.00 ms", rootWidth: 62.5, probeEnd: 100},
		{name: "probe ends after the root, one batch", lines: []string{otlpLine(t, 1, dial, root(10*time.Millisecond), probe(9*time.Millisecond, 20*time.Millisecond))},
			total: "20.00 ms", rootWidth: 50, probeEnd: 100},
	}
	parse := func(s string) float64 {
		f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil {
			t.Fatalf("position %q: %v", s, err)
		}
		return f
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, traces := renderPage(t, strings.Join(tt.lines, ""), TraceSelection{})
			if len(traces) != 1 || len(traces[0].Spans) != 3 {
				t.Fatalf("traces %+v", traces)
			}
			tv := traceViewOf(traces[0])
			if last := tv.Axis[len(tv.Axis)-1].Label; last != tt.total {
				t.Errorf("axis ends at %s, want %s", last, tt.total)
			}
			rows := map[string]rowView{}
			for _, r := range tv.Rows {
				rows[r.Name] = r
				if end := parse(r.Left) + parse(r.Width); end > 100.001 {
					t.Errorf("%s bar ends at %.3f%%, past the axis", r.Name, end)
				}
			}
			if w := parse(rows[trace.SpanConnection].Width); math.Abs(w-tt.rootWidth) > 0.01 || parse(rows[trace.SpanConnection].Left) != 0 {
				t.Errorf("root bar at %s width %s, want 0%% width %.1f%%", rows[trace.SpanConnection].Left, rows[trace.SpanConnection].Width, tt.rootWidth)
			}
			if end := parse(rows[trace.SpanProbe].Left) + parse(rows[trace.SpanProbe].Width); math.Abs(end-tt.probeEnd) > 0.01 {
				t.Errorf("probe bar ends at %.3f%%, want %.1f%%", end, tt.probeEnd)
			}
			if tv.Rows[0].Name != trace.SpanConnection || tv.Rows[0].Indent >= rows[trace.SpanProbe].Indent {
				t.Errorf("the probe is not drawn nested under the connection: %+v", tv.Rows)
			}
		})
	}
}
