package analyze

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ccproxy-dev/ccproxy/trace"
)

// attemptSpan is one connection span of the run tests.
type attemptSpan struct {
	id       byte          // trace and span id
	at, dur  time.Duration // after base
	mode     string
	client   string
	upstream string
	attempt  int  // 0: no attribute (an older ccproxy)
	linkTo   byte // the run's first span's id; 0: no link
	sentNone bool // client sent not a byte
}

func traceIDOf(id byte) pcommon.TraceID { return pcommon.TraceID{0xaa, id, 15: id} }
func spanIDOf(id byte) pcommon.SpanID   { return pcommon.SpanID{0xbb, id, 7: id} }

// runLines writes each span as its own line (the relay exports connections
// as they end, so a run's attempts may come in any order).
func runLines(t *testing.T, spans ...attemptSpan) []byte {
	t.Helper()
	var out bytes.Buffer
	for _, s := range spans {
		td := ptrace.NewTraces()
		ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
		sp := ss.Spans().AppendEmpty()
		sp.SetName(trace.SpanConnection)
		sp.SetTraceID(traceIDOf(s.id))
		sp.SetSpanID(spanIDOf(s.id))
		start := base.Add(s.at)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(s.dur)))
		a := sp.Attributes()
		a.PutStr(string(trace.FailureMode), s.mode)
		a.PutStr(string(trace.UpstreamAddress), s.upstream)
		if s.client != "" {
			a.PutStr(string(trace.ClientAddress), s.client)
		}
		bytesIn := int64(517)
		if s.sentNone {
			bytesIn = 0
		}
		a.PutInt(string(trace.BytesClientToUp), bytesIn)
		if s.attempt > 0 {
			a.PutInt(string(trace.RunAttempt), int64(s.attempt))
		}
		if s.linkTo != 0 {
			l := sp.Links().AppendEmpty()
			l.SetTraceID(traceIDOf(s.linkTo))
			l.SetSpanID(spanIDOf(s.linkTo))
			l.Attributes().PutInt(string(trace.RunAttempt), 1)
		}
		b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(b)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

const up = "coordinator:1313"

// fixture is a file with:
//   - the issue's run: 10.0.0.5, lb_closed_early ×3, then issuer_timeout,
//     over 31 s, its lines out of order;
//   - a healthy connection from 10.0.0.6 (a run of one, not listed);
//   - a CLI from 127.0.0.1 that failed with a straggler that sent nothing;
//   - the last two attempts of a run whose first is not in the file;
//   - a connection from an older ccproxy (no attribute);
//   - a health check that sent nothing (never listed).
func fixture(t *testing.T) []byte {
	return runLines(t,
		attemptSpan{id: 2, at: 1 * time.Millisecond, dur: time.Millisecond, mode: "lb_closed_early", client: "10.0.0.5", upstream: up, attempt: 2, linkTo: 1},
		attemptSpan{id: 1, at: 0, dur: time.Millisecond, mode: "lb_closed_early", client: "10.0.0.5", upstream: up, attempt: 1},
		attemptSpan{id: 4, at: 3 * time.Millisecond, dur: 31 * time.Second, mode: "issuer_timeout", client: "10.0.0.5", upstream: up, attempt: 4, linkTo: 1},
		attemptSpan{id: 3, at: 2 * time.Millisecond, dur: time.Millisecond, mode: "lb_closed_early", client: "10.0.0.5", upstream: up, attempt: 3, linkTo: 1},
		attemptSpan{id: 10, at: time.Minute, dur: 40 * time.Millisecond, mode: "ok", client: "10.0.0.6", upstream: up, attempt: 1},
		attemptSpan{id: 20, at: 2 * time.Minute, dur: 30 * time.Millisecond, mode: "policy_hash_mismatch", client: "127.0.0.1", upstream: up, attempt: 1},
		attemptSpan{id: 21, at: 2*time.Minute + 31*time.Millisecond, dur: time.Millisecond, mode: "client_aborted", client: "127.0.0.1", upstream: up, attempt: 2, linkTo: 20, sentNone: true},
		attemptSpan{id: 32, at: 3 * time.Minute, dur: time.Millisecond, mode: "lb_closed_early", client: "10.0.0.7", upstream: up, attempt: 5, linkTo: 30},
		attemptSpan{id: 33, at: 3*time.Minute + 2*time.Millisecond, dur: time.Millisecond, mode: "ok", client: "10.0.0.7", upstream: up, attempt: 6, linkTo: 30},
		attemptSpan{id: 40, at: 4 * time.Minute, dur: time.Millisecond, mode: "issuer_error", client: "10.0.0.8", upstream: up},
		attemptSpan{id: 50, at: 5 * time.Minute, dur: time.Millisecond, mode: "client_aborted", client: "10.0.0.9", upstream: up, attempt: 1, sentNone: true},
	)
}

func readRuns(t *testing.T, file []byte, opts Options, listed int) (RunReport, Summary) {
	t.Helper()
	rc := NewRunCollector()
	var conns []Connection
	if _, err := ReadOTLPJSON(bytes.NewReader(file), "runs.jsonl", func(c Connection) {
		rc.Add(c)
		if opts.Keep(c) {
			conns = append(conns, c)
		}
	}); err != nil {
		t.Fatal(err)
	}
	sum := Summarize(conns, opts)
	sum.Runs = rc.Report(opts, listed)
	return sum.Runs, sum
}

const issueRun = "run at 2025-05-06 10:00:00 from 10.0.0.5 to coordinator:1313, 4 attempts over 31 s: lb_closed_early ×3, then issuer_timeout" +
	" — the CLI printed: received context error while waiting for new LB policy update: context deadline exceeded"

func TestRunReport(t *testing.T) {
	rep, _ := readRuns(t, fixture(t), Options{}, 0)
	if rep.Runs != 6 || rep.Retried != 2 || rep.Failed != 4 || rep.Unmarked != 1 || rep.More != 0 {
		t.Errorf("counts: %d runs, %d retried, %d failed, %d unmarked, %d more; want 6, 2, 4, 1, 0", rep.Runs, rep.Retried, rep.Failed, rep.Unmarked, rep.More)
	}
	want := []string{
		issueRun,
		"run at 2025-05-06 10:02:00 from 127.0.0.1 to coordinator:1313, 2 attempts over 32 ms: policy_hash_mismatch (+1 that sent nothing) — the CLI printed: wrong policy hash for Coordinator: got <hex>, want <hex>",
		"run at 2025-05-06 10:03:00 from 10.0.0.7 to coordinator:1313, 2 attempts (of 6: 4 not in the input) over 3 ms: lb_closed_early, then ok — the CLI succeeded",
		"run at 2025-05-06 10:04:00 from 10.0.0.8 to coordinator:1313, 1 attempt: issuer_error — the CLI printed: remote error: tls: internal error",
	}
	var got []string
	for _, r := range rep.Listed {
		got = append(got, r.Summary)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("listed runs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	r := rep.Listed[0]
	if r.Attempts != 4 || r.FirstAttempt != 1 || r.LastAttempt != 4 || r.Outcome != "issuer_timeout" || !r.Marked ||
		len(r.Steps) != 2 || r.Steps[0] != (RunStep{"lb_closed_early", 3}) || r.Steps[1] != (RunStep{"issuer_timeout", 1}) {
		t.Errorf("the issue's run: %+v", r)
	}
	if len(r.Drawn) != 4 || r.Drawn[3].Attempt != 4 || r.Drawn[3].TraceID != hex.EncodeToString(func() []byte { id := traceIDOf(4); return id[:] }()) {
		t.Errorf("drawn attempts: %+v", r.Drawn)
	}
	if !rep.Listed[1].SharedAddress || rep.Listed[0].SharedAddress {
		t.Errorf("shared address: loopback %v, 10.0.0.5 %v", rep.Listed[1].SharedAddress, rep.Listed[0].SharedAddress)
	}
	if len(rep.Notes) != 2 || !strings.Contains(rep.Notes[0], "kubectl port-forward") || !strings.Contains(rep.Notes[1], "1 connection carries no ccproxy.run.attempt") {
		t.Errorf("notes: %q", rep.Notes)
	}
}

// TestRunReportFilters: a run is listed whole when one of its attempts is
// selected; the listed count keeps the latest retried runs first.
func TestRunReportFilters(t *testing.T) {
	rep, sum := readRuns(t, fixture(t), Options{Mode: "issuer_timeout"}, 0)
	if rep.Runs != 1 || len(rep.Listed) != 1 || rep.Listed[0].Summary != issueRun {
		t.Errorf("--mode issuer_timeout: %d runs, listed %+v", rep.Runs, rep.Listed)
	}
	if sum.Connections != 1 {
		t.Errorf("--mode issuer_timeout: %d connections counted, want 1 (runs do not change the summary)", sum.Connections)
	}
	rep, _ = readRuns(t, fixture(t), Options{Since: base.Add(90 * time.Second)}, 0)
	if rep.Runs != 4 || len(rep.Listed) != 3 {
		t.Errorf("--since: %d runs, %d listed; want 4 and 3", rep.Runs, len(rep.Listed))
	}
	rep, _ = readRuns(t, fixture(t), Options{}, 2)
	if len(rep.Listed) != 2 || rep.More != 2 || rep.Listed[0].Summary != issueRun || rep.Listed[1].Attempts != 2 {
		t.Errorf("--runs 2: listed %d (%d more), want the two runs that retried", len(rep.Listed), rep.More)
	}
}

func TestRunReportDuplicatesAndUnlinked(t *testing.T) {
	f := fixture(t)
	// The same file twice: every span once.
	rep, _ := readRuns(t, append(append([]byte{}, f...), f...), Options{}, 0)
	if rep.Listed[0].Summary != issueRun {
		t.Errorf("file read twice: %s", rep.Listed[0].Summary)
	}
	// A retry whose link is missing is a run of its own that says so.
	rep, _ = readRuns(t, runLines(t, attemptSpan{id: 7, mode: "lb_closed_early", client: "10.0.0.5", upstream: up, attempt: 3}), Options{}, 0)
	if len(rep.Listed) != 1 || !strings.Contains(rep.Listed[0].Summary, "1 attempt (of 3: 2 not in the input)") {
		t.Errorf("unlinked retry: %+v", rep.Listed)
	}
}

func TestRunTextAndJSON(t *testing.T) {
	_, sum := readRuns(t, fixture(t), Options{}, 0)
	var b bytes.Buffer
	if err := sum.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	runsAt, modesAt := strings.Index(out, "\nRuns ("), strings.Index(out, "\nBy failure mode")
	if runsAt < 0 || modesAt < runsAt {
		t.Fatalf("the runs come before the connections:\n%s", out)
	}
	for _, want := range []string{"6 runs, 2 retried, 4 failed; listed: those that retried or failed:", "  " + issueRun + "\n", "note: A loopback client address"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}

	b.Reset()
	if err := sum.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var js struct {
		Runs struct {
			Runs int `json:"runs"`
			List []struct {
				Summary  string    `json:"summary"`
				Attempts int       `json:"attempts"`
				Steps    []RunStep `json:"steps"`
				Outcome  string    `json:"outcome"`
				CLI      string    `json:"cli_printed"`
			} `json:"list"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(b.Bytes(), &js); err != nil {
		t.Fatal(err)
	}
	if js.Runs.Runs != 6 || len(js.Runs.List) != 4 || js.Runs.List[0].Summary != issueRun || js.Runs.List[0].Attempts != 4 ||
		len(js.Runs.List[0].Steps) != 2 || js.Runs.List[0].Outcome != "issuer_timeout" || !strings.HasPrefix(js.Runs.List[0].CLI, "received context error") {
		t.Errorf("JSON runs: %+v", js.Runs)
	}
	// No runs collected: an empty list, not null.
	b.Reset()
	if err := Summarize(nil, Options{}).WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"list": []`) {
		t.Errorf("empty runs JSON: %s", b.String())
	}
}

// TestRunHTML: the page draws the runs first, each attempt a row on the
// run's time axis, linked to its trace when that is drawn below.
func TestRunHTML(t *testing.T) {
	f := fixture(t)
	rc := NewRunCollector()
	var conns []Connection
	rd := NewReader(func(c Connection) { rc.Add(c); conns = append(conns, c) })
	tc := NewTraceCollector(TraceSelection{})
	rd.Collect(tc)
	if _, err := rd.ReadOTLPJSON(bytes.NewReader(f), "runs.jsonl"); err != nil {
		t.Fatal(err)
	}
	rd.Flush()
	sum := Summarize(conns, Options{})
	sum.Runs = rc.Report(Options{}, 0)
	var b bytes.Buffer
	if err := (HTMLPage{Summary: sum, Traces: tc.Traces(), Matched: tc.Matched()}).Write(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	runsAt, modesAt := strings.Index(page, "<h2>Runs</h2>"), strings.Index(page, "Connections by failure mode")
	if runsAt < 0 || modesAt < runsAt {
		t.Fatal("the runs card does not come before the connections")
	}
	card := page[runsAt:modesAt]
	for _, want := range []string{
		"run at 2025-05-06 10:00:00 from 10.0.0.5 to coordinator:1313, 4 attempts over 31 s",
		`<span class="badge m-fail">lb_closed_early ×3</span><span class="then">→</span><span class="badge m-fail">issuer_timeout</span>`,
		"the CLI printed: received context error while waiting for new LB policy update: context deadline exceeded",
		`<a href="#t-` + traceIDOf(4).String() + `">attempt 4</a>`,
		"the CLI succeeded",
		"sent nothing",
	} {
		if !strings.Contains(card, want) {
			t.Errorf("runs card lacks %q", want)
		}
	}
	if n := strings.Count(card, `class="run"`); n != 4 {
		t.Errorf("%d runs drawn, want 4", n)
	}
	if !strings.Contains(page, `id="t-`+traceIDOf(4).String()+`"`) {
		t.Error("the attempt's trace has no anchor")
	}
	// Attempt 4 of the issue's run is drawn on the run's axis: from 3 ms
	// after its start to its end, 31 s, nearly the whole width.
	i := strings.Index(card, "attempt 4</a>")
	if i < 0 || !strings.Contains(card[i:], `style="left:0.010%;width:99.990%"`) {
		t.Errorf("attempt 4's bar is not placed on the run's axis:\n%s", card[max(0, i):min(len(card), i+900)])
	}
}

func TestManyAttemptsAndSteps(t *testing.T) {
	var spans []attemptSpan
	modes := []string{"lb_closed_early", "issuer_timeout"}
	for i := range 40 {
		s := attemptSpan{id: byte(i + 1), at: time.Duration(i) * time.Second, dur: 500 * time.Millisecond,
			mode: modes[i%2], client: "10.1.1.1", upstream: up, attempt: i + 1}
		if i > 0 {
			s.linkTo = 1
		}
		spans = append(spans, s)
	}
	rep, _ := readRuns(t, runLines(t, spans...), Options{}, 0)
	r := rep.Listed[0]
	if r.Attempts != 40 || len(r.Steps) != 40 {
		t.Fatalf("%d attempts, %d steps", r.Attempts, len(r.Steps))
	}
	if !strings.Contains(r.Summary, "40 attempts over 39.5 s: lb_closed_early, issuer_timeout, lb_closed_early, … 34 attempts …, issuer_timeout, lb_closed_early, then issuer_timeout") {
		t.Errorf("summary: %s", r.Summary)
	}
	if len(r.Drawn) != maxRunAttempts || r.NotDrawn != 40-maxRunAttempts || r.Drawn[maxRunAttempts-1].Attempt != 40 {
		t.Errorf("drawn %d, not drawn %d", len(r.Drawn), r.NotDrawn)
	}
	v := runViewOf(r, nil)
	gaps := 0
	for _, a := range v.Attempts {
		if a.Gap {
			gaps++
			if a.Name != "… 10 attempts not drawn" {
				t.Errorf("gap row %q", a.Name)
			}
		}
	}
	if gaps != 1 || len(v.Attempts) != maxRunAttempts+1 {
		t.Errorf("%d rows with %d gap rows", len(v.Attempts), gaps)
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		500 * time.Microsecond: "<1 ms", 35 * time.Millisecond: "35 ms", 31 * time.Second: "31 s",
		2500 * time.Millisecond: "2.5 s", 190 * time.Second: "3m10s",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestRunsFromJaeger: Jaeger shows the attribute as a tag and the link as a
// FOLLOWS_FROM reference.
func TestRunsFromJaeger(t *testing.T) {
	var data []jTrace
	for i, mode := range []string{"lb_closed_early", "lb_closed_early", "ok"} {
		id := byte(i + 1)
		tid, sid := traceIDOf(id).String(), spanIDOf(id).String()
		s := jSpan{TraceID: tid, SpanID: sid, OperationName: trace.SpanConnection,
			StartTime: base.Add(time.Duration(i) * time.Millisecond).UnixMicro(), Duration: 500,
			Tags: []jTag{
				{string(trace.FailureMode), "string", mode},
				{string(trace.UpstreamAddress), "string", up},
				{string(trace.ClientAddress), "string", "10.0.0.5"},
				{string(trace.RunAttempt), "int64", i + 1},
			}}
		if i > 0 {
			s.References = []jRef{{"FOLLOWS_FROM", traceIDOf(1).String(), spanIDOf(1).String()}}
		}
		data = append(data, jTrace{TraceID: tid, Spans: []jSpan{s}})
	}
	body, err := json.Marshal(map[string]any{"data": data})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
	defer srv.Close()
	rc := NewRunCollector()
	if _, err := FetchJaeger(context.Background(), JaegerQuery{BaseURL: srv.URL}, rc.Add); err != nil {
		t.Fatal(err)
	}
	rep := rc.Report(Options{}, 0)
	if rep.Runs != 1 || len(rep.Listed) != 1 || !strings.Contains(rep.Listed[0].Summary, "3 attempts over 2 ms: lb_closed_early ×2, then ok — the CLI succeeded") {
		t.Errorf("runs from jaeger: %d, %+v", rep.Runs, rep.Listed)
	}
	if id := jaegerSpanID("1"); id != (pcommon.SpanID{7: 1}) {
		t.Errorf("jaegerSpanID(1) = %v", id)
	}
	if id := jaegerSpanID(strings.Repeat("f", 17)); !id.IsEmpty() {
		t.Errorf("an overlong span id read as %v", id)
	}
}
