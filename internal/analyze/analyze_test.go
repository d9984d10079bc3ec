package analyze

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ccproxy-dev/ccproxy/trace"
)

// span describes one ccproxy.connection root span for the test files.
type span struct {
	at        time.Duration // after base
	mode      string
	upstream  string
	detail    string
	firstByte any // nil, int64 or float64
}

var base = time.Date(2025, 5, 6, 10, 0, 0, 0, time.UTC)

// exportLine marshals spans as one ExportTraceServiceRequest line, with one
// child span per connection that analyze must ignore.
func exportLine(t *testing.T, spans []span) []byte {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "ccproxy")
	ss := rs.ScopeSpans().AppendEmpty()
	for i, s := range spans {
		root := ss.Spans().AppendEmpty()
		root.SetName(trace.SpanConnection)
		// Unique per connection (each has its own trace, as ccproxy makes
		// them) and never the invalid all-zero ID.
		var tid [16]byte
		tid[0] = 0xcc
		binary.BigEndian.PutUint64(tid[8:], uint64(s.at))
		root.SetTraceID(pcommon.TraceID(tid))
		root.SetSpanID(pcommon.SpanID([8]byte{1, byte(i >> 8), byte(i)}))
		start := base.Add(s.at)
		root.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		root.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(20 * time.Millisecond)))
		a := root.Attributes()
		a.PutStr(string(trace.FailureMode), s.mode)
		a.PutStr(string(trace.UpstreamAddress), s.upstream)
		if s.detail != "" {
			a.PutStr(string(trace.FailureDetail), s.detail)
		}
		switch v := s.firstByte.(type) {
		case int64:
			a.PutInt(string(trace.UpstreamFirstByteMS), v)
		case float64:
			a.PutDouble(string(trace.UpstreamFirstByteMS), v)
		}
		child := ss.Spans().AppendEmpty()
		child.SetName("tls.handshake")
		child.SetTraceID(pcommon.TraceID(tid))
		child.SetSpanID(pcommon.SpanID([8]byte{2, byte(i >> 8), byte(i)}))
		child.SetParentSpanID(root.SpanID())
		child.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		child.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Millisecond)))
		child.Attributes().PutStr(string(trace.FailureMode), "should-not-count")
	}
	var m ptrace.JSONMarshaler
	b, err := m.MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testSpans() (first, second []span) {
	first = []span{
		{at: 0, mode: "ok", upstream: "coordinator:1313", firstByte: int64(10)},
		{at: 10 * time.Second, mode: "ok", upstream: "coordinator:1313", firstByte: int64(20)},
		{at: 20 * time.Second, mode: "ok", upstream: "coordinator:1313", firstByte: 30.5},
		{at: 30 * time.Second, mode: "lb_closed_early", upstream: "lb.example:1313", detail: "the upstream closed after the ClientHello"},
		{at: 40 * time.Second, mode: "lb_closed_early", upstream: "lb.example:1313", detail: "the upstream closed after the ClientHello"},
	}
	second = []span{
		{at: 2 * time.Minute, mode: "issuer_error", upstream: "coordinator:1313", detail: "internal_error alert", firstByte: int64(400)},
		{at: 3 * time.Minute, mode: "lb_closed_early", upstream: "lb.example:1313", detail: "reset by the upstream"},
		{at: 4 * time.Minute, mode: "ok", upstream: "coordinator:1313", firstByte: int64(40)},
		{at: 5*time.Minute + 30*time.Second, mode: "policy_hash_mismatch", upstream: "coordinator:1313", detail: "HOST_DATA is ab.., expected cd..", firstByte: int64(1000)},
	}
	return first, second
}

func writeTraceFile(t *testing.T) string {
	t.Helper()
	first, second := testSpans()
	var b bytes.Buffer
	b.Write(exportLine(t, first))
	b.WriteString("\n\n   \n") // blank lines are fine
	b.WriteString("{\"resourceSpans\": [ this is not json\n")
	b.Write(exportLine(t, second))
	b.WriteString("\n")
	path := filepath.Join(t.TempDir(), "traces.jsonl")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFile(t *testing.T, path string) ([]Connection, ReadStats) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var conns []Connection
	st, err := ReadOTLPJSON(f, path, func(c Connection) { conns = append(conns, c) })
	if err != nil {
		t.Fatal(err)
	}
	return conns, st
}

func TestReadAndSummarize(t *testing.T) {
	path := writeTraceFile(t)
	conns, st := readFile(t, path)
	if st.Connections != 9 || st.Spans != 18 || st.Skipped != 1 || len(conns) != 9 {
		t.Fatalf("stats %+v, %d connections", st, len(conns))
	}
	if want := path + ":4:"; len(st.Problems) != 1 || !strings.HasPrefix(st.Problems[0], want) {
		t.Fatalf("problems %q, want one starting %q", st.Problems, want)
	}

	s := Summarize(conns, Options{})
	s.Read = st
	if s.Connections != 9 || !s.From.Equal(base) || !s.To.Equal(base.Add(5*time.Minute+30*time.Second)) {
		t.Fatalf("connections %d from %v to %v", s.Connections, s.From, s.To)
	}
	wantModes := []struct {
		mode        string
		count       int
		first, last time.Duration
	}{
		{"ok", 4, 0, 4 * time.Minute},
		{"lb_closed_early", 3, 30 * time.Second, 3 * time.Minute},
		{"issuer_error", 1, 2 * time.Minute, 2 * time.Minute},
		{"policy_hash_mismatch", 1, 5*time.Minute + 30*time.Second, 5*time.Minute + 30*time.Second},
	}
	if len(s.Modes) != len(wantModes) {
		t.Fatalf("modes %+v", s.Modes)
	}
	for i, w := range wantModes {
		m := s.Modes[i]
		if m.Mode != w.mode || m.Count != w.count || !m.First.Equal(base.Add(w.first)) || !m.Last.Equal(base.Add(w.last)) {
			t.Errorf("mode %d = %+v, want %+v", i, m, w)
		}
	}
	if s.Modes[0].Percent != 44.4 {
		t.Errorf("ok percent %v, want 44.4", s.Modes[0].Percent)
	}

	if len(s.Upstreams) != 2 || s.Upstreams[0].Address != "coordinator:1313" || s.Upstreams[0].Count != 6 || s.Upstreams[0].OK != 4 ||
		s.Upstreams[1].Address != "lb.example:1313" || s.Upstreams[1].Modes["lb_closed_early"] != 3 {
		t.Fatalf("upstreams %+v", s.Upstreams)
	}
	// first bytes: 10 20 30.5 40 400 1000 (nearest rank)
	wantFB := Percentiles{Count: 6, P50: 30.5, P90: 1000, P99: 1000, Max: 1000}
	if s.FirstByte != wantFB {
		t.Errorf("first byte %+v, want %+v", s.FirstByte, wantFB)
	}
	if s.Upstreams[1].FirstByte.Count != 0 {
		t.Errorf("lb has no first byte: %+v", s.Upstreams[1].FirstByte)
	}

	// 5m30s span: auto bucket 30s (11 buckets < 24).
	if s.BucketMS != 30000 || len(s.Buckets) != 12 {
		t.Fatalf("bucket %d ms, %d buckets", s.BucketMS, len(s.Buckets))
	}
	if b := s.Buckets[0]; b.Total != 3 || b.Modes["ok"] != 3 {
		t.Errorf("bucket 0 = %+v", b)
	}
	if b := s.Buckets[1]; b.Total != 2 || b.Modes["lb_closed_early"] != 2 {
		t.Errorf("bucket 1 = %+v", b)
	}
	if b := s.Buckets[2]; b.Total != 0 {
		t.Errorf("empty bucket 2 = %+v", b)
	}

	if len(s.Details) != 4 || s.Details[0].Count != 2 || s.Details[0].Detail != "the upstream closed after the ClientHello" {
		t.Errorf("details %+v", s.Details)
	}

	var text bytes.Buffer
	if err := s.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"9 connections", "lb_closed_early", "1 malformed lines skipped", "p50 30.5 ms", "traces.jsonl:4:"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := s.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Summary
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Connections != 9 || back.FirstByte != wantFB {
		t.Fatalf("JSON round trip: %v %+v", err, back.FirstByte)
	}
}

func TestSummarizeFilters(t *testing.T) {
	conns, _ := readFile(t, writeTraceFile(t))
	tests := []struct {
		name  string
		opts  Options
		count int
		first string
	}{
		{"mode", Options{Mode: "lb_closed_early"}, 3, "lb_closed_early"},
		{"since", Options{Since: base.Add(2 * time.Minute)}, 4, "issuer_error"},
		{"both", Options{Since: base.Add(time.Minute), Mode: "ok"}, 1, "ok"},
		{"nothing", Options{Mode: "clock_skew"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Summarize(conns, tt.opts)
			if s.Connections != tt.count {
				t.Fatalf("count %d, want %d", s.Connections, tt.count)
			}
			if tt.count > 0 && s.Modes[0].Mode != tt.first {
				t.Errorf("top mode %s", s.Modes[0].Mode)
			}
		})
	}
}

func TestBuckets(t *testing.T) {
	conns, _ := readFile(t, writeTraceFile(t))
	s := Summarize(conns, Options{Bucket: time.Minute})
	if s.BucketMS != 60000 || len(s.Buckets) != 6 || s.Buckets[0].Total != 5 || s.Buckets[5].Total != 1 {
		t.Fatalf("bucket %d, %+v", s.BucketMS, s.Buckets)
	}
	// A tiny bucket over the span is replaced, not allocated.
	s = Summarize(conns, Options{Bucket: time.Microsecond})
	if s.BucketNote == "" || len(s.Buckets) > maxBuckets {
		t.Fatalf("tiny bucket: %d buckets, note %q", len(s.Buckets), s.BucketNote)
	}
	for _, tt := range []struct {
		span time.Duration
		want time.Duration
	}{
		{0, time.Second},
		{20 * time.Second, time.Second},
		{2 * time.Minute, 10 * time.Second},
		{90 * time.Minute, 5 * time.Minute},
		{3 * 24 * time.Hour, 6 * time.Hour},
	} {
		if got := AutoBucket(tt.span); got != tt.want {
			t.Errorf("AutoBucket(%v) = %v, want %v", tt.span, got, tt.want)
		}
	}
}

func TestPercentiles(t *testing.T) {
	v := make([]float64, 100)
	for i := range v {
		v[99-i] = float64(i + 1) // unsorted input
	}
	got := percentiles(v)
	want := Percentiles{Count: 100, P50: 50, P90: 90, P99: 99, Max: 100}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got := percentiles([]float64{7}); got != (Percentiles{Count: 1, P50: 7, P90: 7, P99: 7, Max: 7}) {
		t.Fatalf("one value: %+v", got)
	}
}

func TestReadOverlongLine(t *testing.T) {
	r := strings.NewReader(string(exportLine(t, []span{{mode: "ok"}})) + "\n" + strings.Repeat("x", 5000) + "\n")
	n := 0
	st, err := readOTLPJSON(r, "big.jsonl", func(Connection) { n++ }, 4096, nil)
	if err != nil || st.Skipped != 1 || n != 1 || !strings.HasPrefix(st.Problems[0], "big.jsonl:2: line longer than 4096 bytes") {
		t.Fatalf("err %v, stats %+v, %d connections", err, st, n)
	}
}

// jaegerJSON builds Jaeger's /api/traces response for spans.
func jaegerJSON(spans []span) []byte {
	type tag struct {
		Key   string `json:"key"`
		Type  string `json:"type"`
		Value any    `json:"value"`
	}
	var data []map[string]any
	for i, s := range spans {
		start := base.Add(s.at).UnixMicro()
		tags := []tag{
			{string(trace.FailureMode), "string", s.mode},
			{string(trace.UpstreamAddress), "string", s.upstream},
			{"otel.scope.name", "string", "github.com/ccproxy-dev/ccproxy"},
		}
		if s.detail != "" {
			tags = append(tags, tag{string(trace.FailureDetail), "string", s.detail})
		}
		switch v := s.firstByte.(type) {
		case int64:
			tags = append(tags, tag{string(trace.UpstreamFirstByteMS), "int64", v})
		case float64:
			tags = append(tags, tag{string(trace.UpstreamFirstByteMS), "float64", v})
		}
		traceID := strings.Repeat("0", 30) + string(rune('a'+i%6)) + string(rune('0'+i%10))
		data = append(data, map[string]any{
			"traceID": traceID,
			"spans": []map[string]any{
				{"traceID": traceID, "spanID": "00000000000000a1", "operationName": trace.SpanConnection, "references": []any{},
					"startTime": start, "duration": 20000, "tags": tags, "processID": "p1"},
				{"traceID": traceID, "spanID": "00000000000000b2", "operationName": trace.SpanConnection,
					"references": []map[string]string{{"refType": "CHILD_OF", "traceID": traceID, "spanID": "00000000000000a1"}},
					"startTime":  start, "duration": 1000, "tags": []tag{{string(trace.FailureMode), "string", "child"}}, "processID": "p1"},
			},
			"processes": map[string]any{"p1": map[string]any{"serviceName": "ccproxy", "tags": []any{}}},
		})
	}
	b, _ := json.Marshal(map[string]any{"data": data, "total": 0, "limit": 0, "offset": 0, "errors": nil})
	return b
}

func TestFetchJaeger(t *testing.T) {
	first, second := testSpans()
	all := append(first, second...)
	var gotQuery map[string]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/traces" {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("operation") == trace.SpanRun {
			// No run summaries: every connection is written.
			_, _ = w.Write([]byte(`{"data":[]}`))
			return
		}
		gotQuery = map[string]string{}
		for k := range r.URL.Query() {
			gotQuery[k] = r.URL.Query().Get(k)
		}
		spans := all
		if tags := r.URL.Query().Get("tags"); tags != "" {
			var want map[string]string
			if err := json.Unmarshal([]byte(tags), &want); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			spans = nil
			for _, s := range all {
				if s.mode == want[string(trace.FailureMode)] {
					spans = append(spans, s)
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jaegerJSON(spans))
	}))
	defer srv.Close()

	now := base.Add(time.Hour)
	q := JaegerQuery{BaseURL: srv.URL + "/", Limit: 500, Mode: "lb_closed_early", Since: base, Now: func() time.Time { return now }}
	var conns []Connection
	st, err := FetchJaeger(context.Background(), q, func(c Connection) { conns = append(conns, c) })
	if err != nil {
		t.Fatal(err)
	}
	if st.Connections != 3 || st.Spans != 6 || len(conns) != 3 {
		t.Fatalf("stats %+v", st)
	}
	for k, v := range map[string]string{
		"service": "ccproxy", "operation": trace.SpanConnection, "limit": "500",
		"start": "1746525600000000", "end": "1746529200000000", "tags": `{"ccproxy.failure_mode":"lb_closed_early"}`,
	} {
		if gotQuery[k] != v {
			t.Errorf("query %s = %q, want %q", k, gotQuery[k], v)
		}
	}

	q.Mode = ""
	conns = nil
	if _, err := FetchJaeger(context.Background(), q, func(c Connection) { conns = append(conns, c) }); err != nil {
		t.Fatal(err)
	}
	s := Summarize(conns, Options{})
	if s.Connections != 9 || s.Modes[0].Mode != "ok" || s.Modes[0].Count != 4 || s.FirstByte.P50 != 30.5 || s.FirstByte.Max != 1000 {
		t.Fatalf("summary from jaeger: %+v %+v", s.Modes, s.FirstByte)
	}
	if !s.From.Equal(base) {
		t.Errorf("from %v", s.From)
	}
}

func TestFetchJaegerErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("service") {
		case "broken":
			_, _ = w.Write([]byte(`{"data": [`))
		case "reported":
			_, _ = w.Write([]byte(`{"data": null, "errors": [{"code": 400, "msg": "bad tags"}]}`))
		default:
			http.Error(w, "no", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	for _, svc := range []string{"broken", "reported", "other"} {
		_, err := FetchJaeger(context.Background(), JaegerQuery{BaseURL: srv.URL, Service: svc}, func(Connection) {})
		if err == nil {
			t.Errorf("service %s: no error", svc)
		}
	}
	for _, u := range []string{"ftp://x", "not a url", "localhost:16686"} {
		if _, err := (JaegerQuery{BaseURL: u}).URL(); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
}

func FuzzReadOTLPJSON(f *testing.F) {
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"ccproxy.connection","traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","attributes":[{"key":"ccproxy.failure_mode","value":{"stringValue":"ok"}},{"key":"ccproxy.upstream.first_byte_ms","value":{"intValue":"12"}}]}]}]}]}` + "\n\n{"))
	f.Add([]byte("\n\n"))
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"ccproxy.connection","parentSpanId":"0102030405060708","startTimeUnixNano":"5","endTimeUnixNano":"1"}]}]}]}`))
	// A run's summary with a folded attempt between two written ones.
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[` +
		`{"name":"ccproxy.connection","traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","attributes":[{"key":"ccproxy.failure_mode","value":{"stringValue":"lb_closed_early"}},{"key":"ccproxy.run.attempt","value":{"intValue":"1"}}]},` +
		`{"name":"ccproxy.connection","traceId":"1102030405060708090a0b0c0d0e0f10","spanId":"1102030405060708","attributes":[{"key":"ccproxy.failure_mode","value":{"stringValue":"lb_closed_early"}},{"key":"ccproxy.run.attempt","value":{"intValue":"3"}}],"links":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708"}]},` +
		`{"name":"ccproxy.run","traceId":"2102030405060708090a0b0c0d0e0f10","spanId":"2102030405060708","attributes":[{"key":"ccproxy.run.attempts","value":{"intValue":"3"}},{"key":"ccproxy.run.modes","value":{"arrayValue":{"values":[{"stringValue":"lb_closed_early"}]}}},{"key":"ccproxy.run.mode_counts","value":{"arrayValue":{"values":[{"intValue":"3"}]}}}],"links":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708"}]}` +
		`]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var conns []Connection
		r := NewReader(func(c Connection) { conns = append(conns, c) })
		r.maxFolded = 1000 // a summary may claim any count: keep each input fast
		st, err := r.ReadOTLPJSON(bytes.NewReader(data), "fuzz")
		if err != nil {
			t.Fatal(err) // a bytes.Reader never fails
		}
		st.Add(r.Flush())
		if st.Connections != len(conns) || st.Connections-st.Folded > st.Spans || st.Folded > 1000*st.RunSummaries {
			t.Fatalf("stats %+v, %d connections", st, len(conns))
		}
		s := Summarize(conns, Options{})
		if err := s.WriteText(&bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzJaegerSpan(f *testing.F) {
	f.Add([]byte(jaegerJSON([]span{{mode: "ok", upstream: "a:1", firstByte: 3.5}})))
	f.Add([]byte(`{"data":[{"spans":[{"operationName":"ccproxy.connection","tags":[{"key":"ccproxy.upstream.first_byte_ms","type":"int64","value":"x"}]}]}]}`))
	// A run of 40 attempts, 12 written, with its summaries (the arrays as
	// Jaeger renders them) and a malformed one.
	r := jRun{id: 1, start: base, written: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 40},
		modeOf: func(n int) string { return map[bool]string{true: "lb_closed_early", false: "issuer_error"}[n < 30] }}
	data := append(r.connections(""), r.summary(1, 20, false), r.summary(2, 40, true),
		r.summaryWith(3, []jTag{{string(trace.RunModes), "string", `["x"`}, {string(trace.RunModeCounts), "string", `[1]`}}, 40))
	b, _ := json.Marshal(map[string]any{"data": data})
	f.Add(b)
	f.Add([]byte(`{"data":[{"spans":[{"operationName":"ccproxy.run","references":[{"refType":"FOLLOWS_FROM","traceID":"1","spanID":"1"}],` +
		`"tags":[{"key":"ccproxy.run.attempts","value":5},{"key":"ccproxy.run.modes","value":"[\"a\",1,null]"},{"key":"ccproxy.run.mode_counts","value":[1,"2",3e0]}]},` +
		`{"operationName":"ccproxy.connection","spanID":"2","references":[{"refType":"FOLLOWS_FROM","traceID":"1","spanID":"1"}],"tags":[{"key":"ccproxy.run.attempt","value":3}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var jr jaegerResponse
		if json.Unmarshal(data, &jr) != nil {
			return
		}
		var conns []Connection
		for _, tr := range jr.Data {
			for _, sp := range tr.Spans {
				if c, ok, _, err := connectionFromJaeger(sp); err == nil && ok {
					conns = append(conns, c)
				}
				if sum, ok, err := summaryFromJaeger(sp); ok != (err == nil && sp.OperationName == trace.SpanRun) || (ok && len(sum.modes) != len(sum.counts)) {
					t.Fatalf("summary %+v, ok %v, err %v", sum, ok, err)
				}
			}
		}
		_ = Summarize(conns, Options{Bucket: time.Minute})
		// The same traces as both queries' answer, folded attempts and all
		// (each run's bounded to keep every input fast).
		var all []Connection
		st := readJaeger(jr.Data, jr.Data, "", 1000, func(c Connection) { all = append(all, c) })
		if st.Connections != len(all) || st.Folded > 1000*st.RunSummaries || st.Connections-st.Folded > st.Spans {
			t.Fatalf("stats %+v, %d connections", st, len(all))
		}
		if err := Summarize(all, Options{}).WriteText(&bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
	})
}
