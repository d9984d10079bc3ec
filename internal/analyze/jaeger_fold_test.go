package analyze

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/runs"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// Jaeger's JSON for the tests that serve it, shaped as Jaeger v1.76.0
// answers /api/traces (see TestJaegerIntegration).
type (
	jRef struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	}
	jTag struct {
		Key   string `json:"key"`
		Type  string `json:"type"`
		Value any    `json:"value"`
	}
	jSpan struct {
		TraceID       string `json:"traceID"`
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		References    []jRef `json:"references"`
		StartTime     int64  `json:"startTime"`
		Duration      int64  `json:"duration"`
		Tags          []jTag `json:"tags"`
		ProcessID     string `json:"processID"`
	}
	jTrace struct {
		TraceID string  `json:"traceID"`
		Spans   []jSpan `json:"spans"`
	}
)

// jRun is a run as the relay exports it: its written attempts' connection
// traces and its summary traces.
type jRun struct {
	id      byte // the run: its spans' ids are made from it
	start   time.Time
	modeOf  func(n int) string
	written []int
}

func (r jRun) traceID(n int) string {
	var b [16]byte
	b[0], b[1] = 0xcc, r.id
	binary.BigEndian.PutUint64(b[8:], uint64(n))
	return fmt.Sprintf("%x", b)
}

func (r jRun) spanID(n int) string { return fmt.Sprintf("%02x%014x", r.id, n) }

// at is when attempt n started: 1 ms apart, each lasting 500 µs.
func (r jRun) at(n int) time.Time { return r.start.Add(time.Duration(n-1) * time.Millisecond) }

// connections are the written attempts' traces, those of mode only when
// mode is set (as Jaeger's tag filter selects them).
func (r jRun) connections(mode string) []jTrace {
	var out []jTrace
	for _, n := range r.written {
		m := r.modeOf(n)
		if mode != "" && m != mode {
			continue
		}
		s := jSpan{TraceID: r.traceID(n), SpanID: r.spanID(n), OperationName: trace.SpanConnection,
			References: []jRef{}, StartTime: r.at(n).UnixMicro(), Duration: 500, ProcessID: "p1",
			Tags: []jTag{
				{string(trace.FailureMode), "string", m},
				{string(trace.FailureDetail), "string", m + " detail"},
				{string(trace.UpstreamAddress), "string", up},
				{string(trace.ClientAddress), "string", "10.0.0.5"},
				{string(trace.RunAttempt), "int64", n},
			}}
		if n > 1 {
			s.References = []jRef{{"FOLLOWS_FROM", r.traceID(1), r.spanID(1)}}
		}
		out = append(out, jTrace{TraceID: s.TraceID, Spans: []jSpan{s}})
	}
	return out
}

// summary is a summary trace of the run's first attempts attempts, its
// arrays as Jaeger renders them: string tags holding JSON.
func (r jRun) summary(seq byte, attempts int, final bool) jTrace {
	var modes []string
	var counts []int
	for n := 1; n <= attempts; n++ {
		m := r.modeOf(n)
		if len(modes) == 0 || modes[len(modes)-1] != m {
			modes, counts = append(modes, m), append(counts, 0)
		}
		counts[len(counts)-1]++
	}
	mj, _ := json.Marshal(modes)
	cj, _ := json.Marshal(counts)
	return r.summaryWith(seq, []jTag{
		{string(trace.RunAttempts), "int64", attempts},
		{string(trace.RunFinal), "bool", final},
		{string(trace.RunModes), "string", string(mj)},
		{string(trace.RunModeCounts), "string", string(cj)},
	}, attempts)
}

// summaryWith is a summary trace with the tags given (and the run's
// addresses).
func (r jRun) summaryWith(seq byte, tags []jTag, attempts int) jTrace {
	tid := fmt.Sprintf("dd%02x%02x%026x", r.id, seq, 0)
	s := jSpan{TraceID: tid, SpanID: fmt.Sprintf("dd%02x%02x%010x", r.id, seq, 1), OperationName: trace.SpanRun,
		References: []jRef{{"FOLLOWS_FROM", r.traceID(1), r.spanID(1)}},
		StartTime:  r.start.UnixMicro(), Duration: r.at(attempts).Sub(r.start).Microseconds() + 500, ProcessID: "p1",
		Tags: append([]jTag{
			{string(trace.UpstreamAddress), "string", up},
			{string(trace.ClientAddress), "string", "10.0.0.5"},
		}, tags...)}
	return jTrace{TraceID: tid, Spans: []jSpan{s}}
}

// jaegerServer answers the connection query with conns (filtered by the
// mode tag as Jaeger does) and the summary query with sums; queries
// records each request's parameters by operation.
func jaegerServer(t *testing.T, conns func(mode string) []jTrace, sums []jTrace) (*httptest.Server, func() map[string]map[string]string) {
	t.Helper()
	var mu sync.Mutex
	queries := map[string]map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		params := map[string]string{}
		for k := range q {
			params[k] = q.Get(k)
		}
		mu.Lock()
		queries[q.Get("operation")] = params
		mu.Unlock()
		var data []jTrace
		switch q.Get("operation") {
		case trace.SpanConnection:
			mode := ""
			if tags := q.Get("tags"); tags != "" {
				var want map[string]string
				if err := json.Unmarshal([]byte(tags), &want); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				mode = want[string(trace.FailureMode)]
			}
			data = conns(mode)
		case trace.SpanRun:
			if q.Get("tags") != "" {
				// Summaries carry no failure mode: a tag filter finds none.
				data = nil
			} else {
				data = sums
			}
		default:
			http.Error(w, "unknown operation", http.StatusBadRequest)
			return
		}
		b, err := json.Marshal(map[string]any{"data": data, "total": 0, "limit": 0, "offset": 0, "errors": nil})
		if err != nil {
			t.Error(err)
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, func() map[string]map[string]string {
		mu.Lock()
		defer mu.Unlock()
		return queries
	}
}

// TestFetchJaegerFolded: a run of 3,000 attempts of which 21 were written
// is counted whole from Jaeger, from its latest summary; a summary of a
// run none of whose spans were fetched adds nothing, malformed summaries
// are skipped and reported, and --mode keeps the folded attempts of its
// mode.
func TestFetchJaegerFolded(t *testing.T) {
	const n = 3000
	storm := jRun{id: 1, start: base, written: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 32, 64, 128, 256, 512, 1024, 2000, 2001, 2048, 3000},
		modeOf: func(i int) string {
			if i <= 2000 {
				return "lb_closed_early"
			}
			return "issuer_error"
		}}
	// A run whose connections were not fetched (the limit left them out).
	other := jRun{id: 2, start: base.Add(time.Minute), modeOf: func(int) string { return "lb_closed_early" }}
	sums := []jTrace{
		storm.summary(1, 1500, false),
		storm.summary(2, n, true),
		storm.summary(3, 2500, false), // older, though it comes later
		other.summary(1, 500, true),
		// Malformed: each would win over the final summary if it were
		// believed.
		storm.summaryWith(10, []jTag{{string(trace.RunAttempts), "int64", 9999},
			{string(trace.RunModes), "string", `["lb_closed_early"`}, {string(trace.RunModeCounts), "string", "[9999]"}}, n),
		storm.summaryWith(11, []jTag{{string(trace.RunAttempts), "int64", 9999},
			{string(trace.RunModes), "string", `["lb_closed_early","issuer_error"]`}, {string(trace.RunModeCounts), "string", "[9999]"}}, n),
		storm.summaryWith(12, []jTag{{string(trace.RunAttempts), "int64", 9999},
			{string(trace.RunModes), "string", `["lb_closed_early"]`}, {string(trace.RunModeCounts), "string", "[-5]"}}, n),
		storm.summaryWith(13, []jTag{{string(trace.RunAttempts), "string", "many"},
			{string(trace.RunModes), "string", `["lb_closed_early"]`}, {string(trace.RunModeCounts), "string", "[9999]"}}, n),
		storm.summaryWith(14, []jTag{{string(trace.RunAttempts), "int64", 9999},
			{string(trace.RunModes), "string", `["lb_closed_early"]`}, {string(trace.RunModeCounts), "string", `["x"]`}}, n),
		storm.summaryWith(15, []jTag{{string(trace.RunAttempts), "int64", 9999},
			{string(trace.RunModes), "string", `["lb_closed_early"]`}}, n),
	}
	noLink := storm.summary(16, 9999, true)
	noLink.Spans[0].References = nil
	sums = append(sums, noLink)
	const malformed = 7
	srv, queries := jaegerServer(t, storm.connections, sums)

	since := base.Add(-time.Minute)
	now := base.Add(time.Hour)
	fetch := func(mode string) ([]Connection, ReadStats) {
		t.Helper()
		var conns []Connection
		q := JaegerQuery{BaseURL: srv.URL, Limit: 500, Since: since, Mode: mode, Now: func() time.Time { return now }}
		st, err := FetchJaeger(context.Background(), q, func(c Connection) { conns = append(conns, c) })
		if err != nil {
			t.Fatal(err)
		}
		if st.Connections != len(conns) {
			t.Errorf("stats count %d connections, %d reported", st.Connections, len(conns))
		}
		return conns, st
	}

	conns, st := fetch("")
	written := len(storm.written)
	if st.Connections != n || st.Folded != n-written || st.RunSummaries != 4 || st.Skipped != malformed ||
		len(st.Problems) != malformed || st.Traces != written+len(sums) || st.UnsummarizedRuns != 0 {
		t.Fatalf("stats %+v: want %d connections, %d folded, 4 summaries, %d skipped", st, n, n-written, malformed)
	}
	for _, p := range st.Problems {
		if !strings.HasPrefix(p, "jaeger trace dd01") {
			t.Errorf("problem %q: not one of the malformed summaries", p)
		}
	}
	seen := map[int]bool{}
	for _, c := range conns {
		if seen[c.Attempt] || c.Attempt < 1 || c.Attempt > n {
			t.Fatalf("attempt %d reported twice or out of the run", c.Attempt)
		}
		seen[c.Attempt] = true
		if c.Mode != storm.modeOf(c.Attempt) || c.Upstream != up || c.Client != "10.0.0.5" || c.Detail != c.Mode+" detail" {
			t.Errorf("attempt %d (folded %v): %+v", c.Attempt, c.Folded, c)
		}
	}
	s := Summarize(conns, Options{})
	if s.Connections != n || len(s.Modes) != 2 || s.Modes[0].Mode != "lb_closed_early" || s.Modes[0].Count != 2000 ||
		s.Modes[1].Mode != "issuer_error" || s.Modes[1].Count != 1000 || len(s.Upstreams) != 1 || s.Upstreams[0].Count != n {
		t.Errorf("summary: %d connections, modes %+v, upstreams %+v", s.Connections, s.Modes, s.Upstreams)
	}
	rc := NewRunCollector()
	for _, c := range conns {
		rc.Add(c)
	}
	if rep := rc.Report(Options{}, 0); rep.Runs != 1 || len(rep.Listed) != 1 || rep.Listed[0].Attempts != n || rep.Listed[0].Folded != n-written {
		t.Errorf("runs %+v", rep)
	}

	q := queries()
	for k, want := range map[string]string{
		"service": "ccproxy", "limit": "500", "end": strconv.FormatInt(now.UnixMicro(), 10),
		"start": strconv.FormatInt(since.Add(-runs.DefaultMaxSpan).UnixMicro(), 10),
	} {
		if got := q[trace.SpanRun][k]; got != want {
			t.Errorf("summary query %s = %q, want %q", k, got, want)
		}
	}
	if got := q[trace.SpanConnection]["start"]; got != strconv.FormatInt(since.UnixMicro(), 10) {
		t.Errorf("connection query start %s", got)
	}

	// One mode: only that mode's traces are fetched, the summaries whole,
	// and only the folded attempts of the mode are reported.
	for mode, want := range map[string]int{"issuer_error": 1000, "lb_closed_early": 2000} {
		conns, st := fetch(mode)
		if tags, ok := queries()[trace.SpanRun]["tags"]; ok {
			t.Errorf("summary query with tags %s: summaries carry no failure mode", tags)
		}
		wrote := 0
		for _, w := range storm.written {
			if storm.modeOf(w) == mode {
				wrote++
			}
		}
		if len(conns) != want || st.Folded != want-wrote || st.UnsummarizedRuns != 0 {
			t.Errorf("--mode %s: %d connections (stats %+v), want %d, %d folded", mode, len(conns), st, want, want-wrote)
		}
		for _, c := range conns {
			if c.Mode != mode {
				t.Errorf("--mode %s: reported %+v", mode, c)
				break
			}
		}
	}
}

// TestFetchJaegerUnsummarized: a run whose fetched attempts skip numbers
// and whose summary was not fetched is counted as written and said to
// lack its summary; a run whose attempts are all there is not.
func TestFetchJaegerUnsummarized(t *testing.T) {
	lb := func(int) string { return "lb_closed_early" }
	gap := jRun{id: 1, start: base, modeOf: lb, written: []int{1, 2, 16}}
	whole := jRun{id: 2, start: base.Add(time.Minute), modeOf: lb, written: []int{1, 2}}
	srv, _ := jaegerServer(t, func(mode string) []jTrace { return append(gap.connections(mode), whole.connections(mode)...) }, nil)
	var conns []Connection
	st, err := FetchJaeger(context.Background(), JaegerQuery{BaseURL: srv.URL}, func(c Connection) { conns = append(conns, c) })
	if err != nil {
		t.Fatal(err)
	}
	if st.Connections != 5 || st.Folded != 0 || st.UnsummarizedRuns != 1 {
		t.Errorf("stats %+v: want 5 connections, 1 run without its summary", st)
	}
	var b strings.Builder
	s := Summarize(conns, Options{})
	s.Read = st
	if err := s.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "1 run with attempts missing and no summary span (ccproxy.run) to count them") {
		t.Errorf("the report does not say a run lacks its summary:\n%s", b.String())
	}
}

// TestSummaryFromJaeger: the arrays as Jaeger renders them (JSON in a
// string tag) and as a JSON array; what is not a summary or is malformed.
func TestSummaryFromJaeger(t *testing.T) {
	r := jRun{id: 1, start: base, modeOf: func(int) string { return "lb_closed_early" }}
	tags := func(modes, counts any) []jTag {
		return []jTag{{string(trace.RunAttempts), "int64", 7}, {string(trace.RunFinal), "bool", true},
			{string(trace.RunModes), "string", modes}, {string(trace.RunModeCounts), "string", counts}}
	}
	decode := func(tr jTrace) jaegerSpan {
		b, _ := json.Marshal(tr.Spans[0])
		var sp jaegerSpan
		if err := json.Unmarshal(b, &sp); err != nil {
			t.Fatal(err)
		}
		return sp
	}
	for name, tc := range map[string]struct {
		modes, counts any
		ok            bool
	}{
		"as jaeger renders them": {`["lb_closed_early","o\"k"]`, `[4,3]`, true},
		"json arrays":            {[]string{"lb_closed_early", `o"k`}, []any{4, "3"}, true},
		"empty":                  {`[]`, `[]`, true},
		"not json":               {`lb_closed_early`, `[7]`, false},
		"an object":              {`{"a":1}`, `[7]`, false},
		"counts short":           {`["a","b"]`, `[7]`, false},
		"a count too big":        {`["a"]`, `[1e40]`, false},
		"a count not a number":   {`["a"]`, `[true]`, false},
		"null":                   {nil, `[7]`, false},
	} {
		sum, ok, err := summaryFromJaeger(decode(r.summaryWith(1, tags(tc.modes, tc.counts), 7)))
		if ok != tc.ok || (err == nil) != tc.ok {
			t.Errorf("%s: ok %v, err %v; want ok %v", name, ok, err, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if sum.attempts != 7 || !sum.final || sum.upstream != up || sum.client != "10.0.0.5" ||
			sum.first != (spanRef{jaegerTraceID(r.traceID(1)), jaegerSpanID(r.spanID(1))}) || !sum.start.Equal(base) || !sum.end.After(base) {
			t.Errorf("%s: %+v", name, sum)
		}
		if name != "empty" && (strings.Join(sum.modes, "|") != `lb_closed_early|o"k` || len(sum.counts) != 2 || sum.counts[0] != 4 || sum.counts[1] != 3) {
			t.Errorf("%s: modes %q counts %v", name, sum.modes, sum.counts)
		}
	}
	conn := decode(r.summaryWith(1, nil, 1))
	conn.OperationName = trace.SpanConnection
	if _, ok, err := summaryFromJaeger(conn); ok || err != nil {
		t.Errorf("a connection span read as a summary: %v %v", ok, err)
	}
}
