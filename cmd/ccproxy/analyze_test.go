package main

import (
	"encoding/json"
	"fmt"
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

// tunnelEndFiles writes the trace files of both tunnel ends for n
// connections, one trace each: the local end's (`tunnel connect`) parentless
// connection span with its tunnel.stream child, and the in-cluster end's
// (`tunnel serve`) connection span, a child of that tunnel.stream span, so
// its parent is not in its own file.
func tunnelEndFiles(t *testing.T, n int) (local, remote string) {
	t.Helper()
	t0 := time.Date(2025, 5, 6, 10, 0, 0, 0, time.UTC)
	lt, rt := ptrace.NewTraces(), ptrace.NewTraces()
	ls := lt.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	rs := rt.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	add := func(spans ptrace.SpanSlice, tid pcommon.TraceID, id, parent byte, name string, start time.Time, d time.Duration, mode string) {
		s := spans.AppendEmpty()
		s.SetTraceID(tid)
		s.SetSpanID(pcommon.SpanID{id})
		if parent != 0 {
			s.SetParentSpanID(pcommon.SpanID{parent})
		}
		s.SetName(name)
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(d)))
		if mode != "" {
			s.Attributes().PutStr(string(trace.FailureMode), mode)
			s.Attributes().PutStr(string(trace.UpstreamAddress), "coordinator:1313")
			s.Attributes().PutInt(string(trace.BytesClientToUp), 1589)
		}
	}
	for i := range n {
		tid := pcommon.TraceID{0xee, 15: byte(i + 1)}
		start := t0.Add(time.Duration(i) * time.Second)
		add(ls, tid, 3, 1, "tunnel.stream", start, 30*time.Millisecond, "")
		add(ls, tid, 1, 0, trace.SpanConnection, start, 40*time.Millisecond, "lb_closed_early")
		add(rs, tid, 0x11, 3, trace.SpanConnection, start.Add(5*time.Millisecond), 20*time.Millisecond, "lb_closed_early")
	}
	dir := t.TempDir()
	write := func(name string, td ptrace.Traces) string {
		b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return write("local.jsonl", lt), write("remote.jsonl", rt)
}

// TestAnalyzeTunnelEnds: `analyze` on the in-cluster tunnel end's file alone
// shows its connections; given both ends' files (in either order) it counts
// each connection once.
func TestAnalyzeTunnelEnds(t *testing.T) {
	local, remote := tunnelEndFiles(t, 3)
	for _, files := range [][]string{{remote}, {local}, {local, remote}, {remote, local}} {
		args := append([]string{"analyze", "--output", "json"}, files...)
		out, stderr, code := run(t, nil, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", files, code, stderr)
		}
		var rep struct {
			Connections int `json:"connections"`
			Modes       []struct {
				Mode  string `json:"mode"`
				Count int    `json:"count"`
			} `json:"modes"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v: %v\n%s", files, err, out)
		}
		if rep.Connections != 3 || len(rep.Modes) != 1 || rep.Modes[0].Mode != "lb_closed_early" || rep.Modes[0].Count != 3 {
			t.Errorf("%v: %d connections, modes %+v; want 3 lb_closed_early", files, rep.Connections, rep.Modes)
		}
	}

	page, stderr, code := run(t, nil, "analyze", "--output", "html", local, remote)
	if code != 0 {
		t.Fatalf("html: exit %d: %s", code, stderr)
	}
	if n := strings.Count(page, `class="trace-head"`); n != 3 {
		t.Errorf("the page draws %d connections, want 3", n)
	}
}

// TestAnalyzeSentNothing: connections without a byte from the client are a
// line of their own in the text report, not the top failure.
func TestAnalyzeSentNothing(t *testing.T) {
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	t0 := time.Date(2025, 5, 6, 10, 0, 0, 0, time.UTC)
	for i, c := range []struct {
		mode  string
		bytes int64
	}{{"client_aborted", 0}, {"client_aborted", 0}, {"client_aborted", 0}, {"ok", 2426}, {"tls_alert", 139}} {
		s := spans.AppendEmpty()
		s.SetTraceID(pcommon.TraceID{0xdd, 15: byte(i + 1)})
		s.SetSpanID(pcommon.SpanID{1})
		s.SetName(trace.SpanConnection)
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(t0.Add(time.Duration(i) * time.Second)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(t0.Add(time.Duration(i)*time.Second + time.Millisecond)))
		s.Attributes().PutStr(string(trace.FailureMode), c.mode)
		s.Attributes().PutInt(string(trace.BytesClientToUp), c.bytes)
	}
	b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "t.jsonl")
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := run(t, nil, "analyze", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "3 connections sent nothing (health checks, port scans, abandoned retries)") {
		t.Errorf("no sent-nothing line:\n%s", out)
	}
	modes := out[strings.Index(out, "By failure mode"):strings.Index(out, "Sent nothing")]
	if strings.Contains(modes, "client_aborted") {
		t.Errorf("the failure table lists client_aborted:\n%s", modes)
	}
}

// TestAnalyzeJaegerFolded: `analyze --jaeger` counts a run's folded
// attempts from its summary, which a second query fetches; without the
// summary it counts the written attempts and says that some are missing.
func TestAnalyzeJaegerFolded(t *testing.T) {
	t0 := time.Date(2025, 5, 6, 10, 0, 0, 0, time.UTC)
	const first = "00000000000000000000000000000001"
	conn := func(n int) map[string]any {
		tid := fmt.Sprintf("%032x", n)
		refs := []map[string]string{}
		if n > 1 {
			refs = append(refs, map[string]string{"refType": "FOLLOWS_FROM", "traceID": first, "spanID": "0000000000000001"})
		}
		return map[string]any{"traceID": tid, "spans": []map[string]any{{
			"traceID": tid, "spanID": fmt.Sprintf("%016x", n), "operationName": trace.SpanConnection, "references": refs,
			"startTime": t0.Add(time.Duration(n) * time.Millisecond).UnixMicro(), "duration": 500,
			"tags": []map[string]any{
				{"key": string(trace.FailureMode), "type": "string", "value": "lb_closed_early"},
				{"key": string(trace.UpstreamAddress), "type": "string", "value": "coordinator:1313"},
				{"key": string(trace.ClientAddress), "type": "string", "value": "10.0.0.5"},
				{"key": string(trace.RunAttempt), "type": "int64", "value": n},
			}}}}
	}
	// As Jaeger v1.76.0 shows a summary: its link a FOLLOWS_FROM
	// reference, its arrays JSON in string tags.
	summary := map[string]any{"traceID": "dd", "spans": []map[string]any{{
		"traceID": "dd", "spanID": "dd", "operationName": trace.SpanRun,
		"references": []map[string]string{{"refType": "FOLLOWS_FROM", "traceID": first, "spanID": "0000000000000001"}},
		"startTime":  t0.UnixMicro(), "duration": 20000,
		"tags": []map[string]any{
			{"key": string(trace.RunAttempts), "type": "int64", "value": 20},
			{"key": string(trace.RunFinal), "type": "bool", "value": true},
			{"key": string(trace.RunModes), "type": "string", "value": `["lb_closed_early"]`},
			{"key": string(trace.RunModeCounts), "type": "string", "value": `[20]`},
			{"key": string(trace.UpstreamAddress), "type": "string", "value": "coordinator:1313"},
		}}}}
	serve := func(sums []any) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			data := []any{conn(1), conn(2), conn(16)}
			if r.URL.Query().Get("operation") == trace.SpanRun {
				data = sums
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}

	out, errText, code := run(t, nil, "analyze", "--output", "json", "--jaeger", serve([]any{summary}))
	var a analyzeJSON
	if code != 0 || json.Unmarshal([]byte(out), &a) != nil {
		t.Fatalf("analyze --jaeger: exit %d, %s\n%s", code, errText, out)
	}
	if a.Connections != 20 || a.Read.Folded != 17 || len(a.Runs.List) != 1 || a.Runs.List[0].Attempts != 20 || a.Runs.List[0].Folded != 17 {
		t.Errorf("analyze --jaeger: %d connections, %d folded, runs %+v; want 20, 17 folded, one run of 20", a.Connections, a.Read.Folded, a.Runs)
	}

	out, errText, code = run(t, nil, "analyze", "--limit", "7", "--jaeger", serve(nil))
	if code != 0 || !strings.Contains(out, "3 connections") ||
		!strings.Contains(errText, "runs with attempts missing and no ccproxy.run summary from Jaeger to count them: 1 (beyond --limit 7?") {
		t.Errorf("analyze --jaeger without the summary: exit %d, stderr %q\n%s", code, errText, out)
	}
}
