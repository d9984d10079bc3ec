package analyze

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/runs"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// jaegerConfig runs Jaeger v2 with in-memory storage, an OTLP/HTTP receiver
// and the query API, each on its own loopback port and nothing else (the
// all-in-one default opens a dozen fixed ports, which collide with other
// tests on the same machine).
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// jaegerBinary finds the Jaeger binary that scripts/jaeger.sh builds. In CI
// its absence is an error, so that the test cannot silently stop running.
func jaegerBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("CCPROXY_JAEGER_BIN")
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CCPROXY_JAEGER_BIN is not set: build Jaeger with scripts/jaeger.sh and export CCPROXY_JAEGER_BIN=$(scripts/jaeger.sh)")
		}
		t.Skip("CCPROXY_JAEGER_BIN not set; run: CCPROXY_JAEGER_BIN=$(scripts/jaeger.sh) go test ./analyze/ -run Jaeger")
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		t.Fatalf("CCPROXY_JAEGER_BIN=%s is not a file: %v", bin, err)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects Jaeger's output for the failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startJaeger runs Jaeger until the test ends and returns the query API's
// and the OTLP/HTTP receiver's base URLs.
func startJaeger(t *testing.T, bin string) (queryURL, otlpURL string) {
	t.Helper()
	queryPort, grpcPort, otlpPort := freePort(t), freePort(t), freePort(t)
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, queryPort, grpcPort, otlpPort), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config", cfg)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("jaeger did not exit")
		}
	})

	queryURL = fmt.Sprintf("http://127.0.0.1:%d", queryPort)
	otlpURL = fmt.Sprintf("http://127.0.0.1:%d", otlpPort)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("jaeger exited early (%v):\n%s", err, out.String())
		default:
		}
		if ok(queryURL+"/api/services") && reachable(otlpURL) {
			return queryURL, otlpURL
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger not ready after 60s:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func ok(u string) bool {
	resp, err := http.Get(u)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func reachable(u string) bool {
	resp, err := http.Get(u + "/v1/traces")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

func TestJaegerIntegration(t *testing.T) {
	bin := jaegerBinary(t)
	queryURL, otlpURL := startJaeger(t, bin)

	first, second := testSpans()
	for _, batch := range [][]span{first, second} {
		resp, err := http.Post(otlpURL+"/v1/traces", "application/json", bytes.NewReader(exportLine(t, batch)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("posting OTLP/JSON: %s: %s", resp.Status, body)
		}
	}

	// A storm folded as the relay folds it, exported as it exports it, two
	// hours later: the queries above end before it.
	stormStart := base.Add(2 * time.Hour)
	storm := exportFoldedRun(t, otlpURL, stormStart)
	before := func() time.Time { return base.Add(time.Hour) }

	// Spans reach storage asynchronously; poll until all are queryable.
	fetch := func(mode string) []Connection {
		t.Helper()
		var conns []Connection
		q := JaegerQuery{BaseURL: queryURL, Mode: mode, Limit: 100, Now: before}
		if _, err := FetchJaeger(context.Background(), q, func(c Connection) { conns = append(conns, c) }); err != nil {
			t.Fatal(err)
		}
		return conns
	}
	deadline := time.Now().Add(30 * time.Second)
	var all []Connection
	for {
		all = fetch("")
		if len(all) >= 9 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(all) != 9 {
		t.Fatalf("jaeger returned %d connections, want 9", len(all))
	}

	lb := fetch("lb_closed_early")
	if len(lb) != 3 {
		t.Fatalf("filtered by mode: %d connections, want 3", len(lb))
	}
	for _, c := range lb {
		if c.Mode != "lb_closed_early" || c.Upstream != "lb.example:1313" {
			t.Errorf("filtered connection %+v", c)
		}
	}

	s := Summarize(all, Options{})
	if s.Modes[0].Mode != "ok" || s.Modes[0].Count != 4 || !s.From.Equal(base) {
		t.Errorf("modes %+v from %v", s.Modes, s.From)
	}
	wantFB := Percentiles{Count: 6, P50: 30.5, P90: 1000, P99: 1000, Max: 1000}
	if s.FirstByte != wantFB {
		t.Errorf("first byte through jaeger %+v, want %+v", s.FirstByte, wantFB)
	}

	testFoldedRunFromJaeger(t, queryURL, stormStart, storm)
}

// foldedStorm is what exportFoldedRun wrote.
type foldedStorm struct {
	attempts, written, summaries int
	modes                        map[string]int
}

// exportFoldedRun makes a run of 100 attempts, 60 lb_closed_early then 40
// issuer_timeout, 200 ms apart, with the relay's own parts: the run
// tracker (internal/runs) folds with its defaults and writes the summaries
// (every 10 s and at the end), the tracer provider (package trace) sends
// the spans over OTLP/HTTP to Jaeger.
func exportFoldedRun(t *testing.T, otlpURL string, start time.Time) foldedStorm {
	t.Helper()
	ctx := context.Background()
	tp, err := trace.Setup(ctx, trace.Config{Endpoint: otlpURL, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	st := foldedStorm{attempts: 100, modes: map[string]int{}}
	write := runs.SummaryWriter(tp.Tracer(), nil)
	tracker := runs.New(runs.Config{Fold: true, Summaries: func(s runs.Summary) {
		st.summaries++
		write(s)
	}})
	key := runs.Key{Client: "10.9.8.7", Upstream: "lb.example:1313"}
	for n := 1; n <= st.attempts; n++ {
		mode := failure.LBClosedEarly
		if n > 60 {
			mode = failure.IssuerTimeout
		}
		st.modes[string(mode)]++
		at := start.Add(time.Duration(n-1) * 200 * time.Millisecond)
		a := tracker.Begin(key, at)
		opts := append(a.StartOptions(), oteltrace.WithNewRoot(), oteltrace.WithTimestamp(at))
		_, span := tp.Tracer().Start(ctx, trace.SpanConnection, opts...)
		a.Started(span.SpanContext())
		span.SetAttributes(trace.FailureMode.String(string(mode)), trace.UpstreamAddress.String(key.Upstream), trace.ClientAddress.String(key.Client))
		end := at.Add(5 * time.Millisecond)
		a.End(end, mode, func() {
			st.written++
			span.End(oteltrace.WithTimestamp(end))
		})
		tracker.Sweep(end)
	}
	tracker.Flush()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if st.written >= st.attempts/2 || st.summaries < 2 {
		t.Fatalf("%d of %d attempts written, %d summaries: want most folded and a summary in progress besides the final one", st.written, st.attempts, st.summaries)
	}
	return st
}

// testFoldedRunFromJaeger: the folded run counts whole through Jaeger —
// its attempts per mode and in its run — and Jaeger shows the summary's
// arrays as FetchJaeger reads them (tagArray).
func testFoldedRunFromJaeger(t *testing.T, queryURL string, since time.Time, storm foldedStorm) {
	t.Helper()
	fetch := func(mode string) ([]Connection, ReadStats) {
		t.Helper()
		var conns []Connection
		q := JaegerQuery{BaseURL: queryURL, Mode: mode, Limit: 100, Since: since}
		st, err := FetchJaeger(context.Background(), q, func(c Connection) { conns = append(conns, c) })
		if err != nil {
			t.Fatal(err)
		}
		return conns, st
	}
	deadline := time.Now().Add(30 * time.Second)
	var conns []Connection
	var st ReadStats
	for {
		conns, st = fetch("")
		if (st.Connections-st.Folded >= storm.written && st.RunSummaries >= storm.summaries) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("a run of %d attempts, %d written, %d summaries: from jaeger %+v", storm.attempts, storm.written, storm.summaries, st)
	if st.Connections != storm.attempts || st.Folded != storm.attempts-storm.written || st.RunSummaries != storm.summaries || st.Skipped != 0 || st.UnsummarizedRuns != 0 {
		t.Fatalf("the folded run from jaeger: stats %+v; want %d connections of which %d folded, %d summaries", st, storm.attempts, storm.attempts-storm.written, storm.summaries)
	}
	s := Summarize(conns, Options{})
	got := map[string]int{}
	for _, m := range s.Modes {
		got[m.Mode] = m.Count
	}
	if fmt.Sprint(got) != fmt.Sprint(storm.modes) || len(s.Upstreams) != 1 || s.Upstreams[0].Count != storm.attempts {
		t.Errorf("modes %v (want %v), upstreams %+v", got, storm.modes, s.Upstreams)
	}
	rc := NewRunCollector()
	for _, c := range conns {
		rc.Add(c)
	}
	rep := rc.Report(Options{}, 0)
	if rep.Runs != 1 || len(rep.Listed) != 1 || rep.Listed[0].Attempts != storm.attempts || rep.Listed[0].Folded != storm.attempts-storm.written ||
		!strings.Contains(rep.Listed[0].Summary, "lb_closed_early ×60, then issuer_timeout ×40") {
		t.Errorf("runs from jaeger: %+v", rep)
	}
	for mode, want := range storm.modes {
		conns, st := fetch(mode)
		if len(conns) != want || st.Connections != want {
			t.Errorf("--mode %s: %d connections (stats %+v), want %d", mode, len(conns), st, want)
		}
	}

	// How Jaeger renders the summary's arrays: string tags holding JSON.
	u, err := JaegerQuery{BaseURL: queryURL, Since: since}.summaryURL()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jr jaegerResponse
	if err := json.NewDecoder(resp.Body).Decode(&jr); err != nil || len(jr.Data) == 0 {
		t.Fatalf("summaries from jaeger: %v, %d traces", err, len(jr.Data))
	}
	tags := map[string]jaegerTag{}
	for _, tag := range jr.Data[0].Spans[0].Tags {
		tags[tag.Key] = tag
	}
	modes, counts := tags[string(trace.RunModes)], tags[string(trace.RunModeCounts)]
	var ms string
	if modes.Type != "string" || counts.Type != "string" || json.Unmarshal(modes.Value, &ms) != nil || !strings.HasPrefix(ms, `["lb_closed_early"`) {
		t.Errorf("jaeger shows the arrays as %s %s and %s %s: not JSON in string tags", modes.Type, modes.Value, counts.Type, counts.Value)
	}
}
