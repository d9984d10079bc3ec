package live

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/ccproxy-dev/ccproxy/internal/admin"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/runs"
	"github.com/ccproxy-dev/ccproxy/trace"
)

func TestRing(t *testing.T) {
	cases := []struct {
		size, pushes int
		want         []int
	}{
		{3, 0, nil},
		{3, 2, []int{0, 1}},
		{3, 3, []int{0, 1, 2}},
		{3, 7, []int{4, 5, 6}},
		{1, 5, []int{4}},
		{0, 2, []int{1}}, // a size below 1 holds one
	}
	for _, c := range cases {
		r := newRing[int](c.size)
		for i := range c.pushes {
			r.push(i)
		}
		if got := r.all(); !slices.Equal(got, c.want) {
			t.Errorf("ring(%d) after %d pushes: %v, want %v", c.size, c.pushes, got, c.want)
		}
		if r.len() != len(c.want) {
			t.Errorf("ring(%d) after %d pushes: len %d, want %d", c.size, c.pushes, r.len(), len(c.want))
		}
		last, ok := r.last()
		if ok != (len(c.want) > 0) || (ok && last != c.want[len(c.want)-1]) {
			t.Errorf("ring(%d) after %d pushes: last %d %v", c.size, c.pushes, last, ok)
		}
	}
}

// relaySpans makes spans the way the relay does: a connection span with a
// dial child, ending with mode, listen named at the start when listen is
// set (the tunnel's local end).
type relaySpans struct {
	tp  *trace.Provider
	rec *Recorder
}

func newRelaySpans(t testing.TB, l Limits) *relaySpans {
	t.Helper()
	rec := NewRecorder(l)
	tp, err := trace.Setup(context.Background(), trace.Config{Processors: []sdktrace.SpanProcessor{rec}, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return &relaySpans{tp: tp, rec: rec}
}

// open starts a connection span; end it with the returned function.
func (r *relaySpans) open(listen string, opts ...oteltrace.SpanStartOption) (oteltrace.SpanContext, func(mode failure.Mode, attempt int)) {
	opts = append(opts, oteltrace.WithNewRoot())
	if listen != "" {
		opts = append(opts, oteltrace.WithAttributes(trace.ListenAddress.String(listen)))
	}
	ctx, span := r.tp.Tracer().Start(context.Background(), trace.SpanConnection, opts...)
	_, dial := r.tp.Tracer().Start(ctx, trace.SpanUpstreamDial)
	dial.End()
	return span.SpanContext(), func(mode failure.Mode, attempt int) {
		span.SetAttributes(
			trace.FailureMode.String(string(mode)),
			trace.FailureDetail.String("detail of "+string(mode)),
			trace.UpstreamAddress.String("coordinator:1313"),
			trace.ClientAddress.String("10.0.0.5"),
			trace.BytesClientToUp.Int64(517),
			trace.RunAttempt.Int(attempt),
		)
		span.End()
	}
}

func (r *relaySpans) conn(mode failure.Mode, attempt int, opts ...oteltrace.SpanStartOption) oteltrace.SpanContext {
	sc, end := r.open("", opts...)
	end(mode, attempt)
	return sc
}

func TestRecorderKeepsEachKindInItsRing(t *testing.T) {
	rs := newRelaySpans(t, Limits{Connections: 4, Children: 3, Runs: 2})
	for i := range 10 {
		rs.conn(failure.LBClosedEarly, i+1)
	}
	first := rs.conn(failure.IssuerTimeout, 11)
	for range 5 {
		trace.WriteRunSummary(rs.tp.Tracer(), trace.RunSummary{Client: "10.0.0.5", Upstream: "coordinator:1313", First: first,
			Start: time.Now(), End: time.Now(), Attempts: 11, Modes: []string{"lb_closed_early", "issuer_timeout"}, Counts: []int64{10, 1}, Outcome: "issuer_timeout"})
	}
	got := rs.rec.Held()
	want := RingStats{Connections: 4, ConnectionsCap: 4, Children: 3, ChildrenCap: 3, Runs: 2, RunsCap: 2}
	if got != want {
		t.Errorf("Held() = %+v, want %+v", got, want)
	}
	conns, _, _ := rs.rec.Spans()
	if last := conns[len(conns)-1]; last.SpanContext().SpanID() != first.SpanID() {
		t.Errorf("the newest connection span is not the last one pushed")
	}
	totals, _ := rs.rec.ModeTotals()
	if totals["lb_closed_early"] != 10 || totals["issuer_timeout"] != 1 {
		t.Errorf("ModeTotals() = %v: every ended connection span counts, not only those in the ring", totals)
	}
}

func TestRecorderOpenByListener(t *testing.T) {
	rs := newRelaySpans(t, Limits{})
	_, endA := rs.open("127.0.0.1:1313")
	_, endB := rs.open("127.0.0.1:1313")
	_, endC := rs.open("") // the relay names its listener at the close
	open, all := rs.rec.OpenByListener()
	if open["127.0.0.1:1313"] != 2 || all != 3 {
		t.Errorf("open = %v, all = %d; want 2 on 127.0.0.1:1313 and 3 in all", open, all)
	}
	endA(failure.OK, 1)
	endC(failure.OK, 1)
	open, all = rs.rec.OpenByListener()
	if open["127.0.0.1:1313"] != 1 || all != 1 {
		t.Errorf("after two ends: open = %v, all = %d; want 1 and 1", open, all)
	}
	endB(failure.OK, 1)
	if open, all = rs.rec.OpenByListener(); open["127.0.0.1:1313"] != 0 || all != 0 {
		t.Errorf("after every end: open = %v, all = %d", open, all)
	}
}

func TestChartBuckets(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	type sample struct {
		at     time.Duration
		totals map[string]int64
	}
	cases := []struct {
		name    string
		buckets int
		samples []sample
		now     map[string]int64
		want    []map[string]int // per bucket, oldest first
	}{
		{
			name: "differences between marks, the last in progress",
			samples: []sample{
				{0, map[string]int64{}},
				{10 * time.Second, map[string]int64{"lb_closed_early": 5}},
				{20 * time.Second, map[string]int64{"lb_closed_early": 5, "ok": 1}},
			},
			now:  map[string]int64{"lb_closed_early": 7, "ok": 1},
			want: []map[string]int{{"lb_closed_early": 5}, {"ok": 1}, {"lb_closed_early": 2}},
		},
		{
			name: "samples within one bucket keep its first mark",
			samples: []sample{
				{0, map[string]int64{"ok": 1}},
				{3 * time.Second, map[string]int64{"ok": 4}},
			},
			now:  map[string]int64{"ok": 6},
			want: []map[string]int{{"ok": 5}},
		},
		{
			name:    "only the last buckets are kept",
			buckets: 2,
			samples: []sample{
				{0, map[string]int64{"ok": 0}},
				{10 * time.Second, map[string]int64{"ok": 1}},
				{20 * time.Second, map[string]int64{"ok": 3}},
				{30 * time.Second, map[string]int64{"ok": 6}},
			},
			now:  map[string]int64{"ok": 10},
			want: []map[string]int{{"ok": 2}, {"ok": 3}, {"ok": 4}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch := newChart(10*time.Second, c.buckets)
			for _, s := range c.samples {
				ch.sample(t0.Add(s.at), s.totals)
			}
			got := ch.buckets(c.now)
			if len(got) != len(c.want) {
				t.Fatalf("%d buckets, want %d: %+v", len(got), len(c.want), got)
			}
			for i, b := range got {
				total := 0
				for _, n := range c.want[i] {
					total += n
				}
				if !mapsEqual(b.Modes, c.want[i]) || b.Total != total {
					t.Errorf("bucket %d: %v (total %d), want %v", i, b.Modes, b.Total, c.want[i])
				}
			}
		})
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestMergeRuns: the tracker's live view of a run wins over what the ring
// holds of it, and the ring adds the trace ids of its attempts there.
func TestMergeRuns(t *testing.T) {
	rs := newRelaySpans(t, Limits{})
	first := rs.conn(failure.LBClosedEarly, 1)
	link := oteltrace.WithLinks(oteltrace.Link{SpanContext: first, Attributes: []attribute.KeyValue{trace.RunAttempt.Int(1)}})
	second := rs.conn(failure.LBClosedEarly, 2, link)
	other := rs.conn(failure.OK, 1) // a run of its own, only in the ring
	connSpans, _, runSpans := rs.rec.Spans()
	conns := fromRing(connSpans, runSpans)
	now := time.Now()
	live := []runs.Summary{{
		Key: runs.Key{Client: "10.0.0.5", Upstream: "coordinator:1313"}, First: first,
		Start: now.Add(-time.Second), End: now.Add(-100 * time.Millisecond),
		Attempts: 5412, InFlight: 1, Folded: 5400,
		Modes: []runs.ModeCount{{Mode: failure.LBClosedEarly, Count: 5412}}, Last: failure.LBClosedEarly,
	}}
	var adv advice
	got := mergeRuns(now, live, conns, &adv)
	if len(got) != 2 {
		t.Fatalf("%d runs, want 2: %+v", len(got), got)
	}
	r := got[0]
	if r.Source != "live" || r.Attempts != 5412 || !r.InProgress || r.Outcome != "lb_closed_early" || r.Folded != 5400 {
		t.Errorf("live run: source %s, %d attempts, in progress %v, outcome %s, folded %d", r.Source, r.Attempts, r.InProgress, r.Outcome, r.Folded)
	}
	if !strings.Contains(r.Summary, "lb_closed_early ×5412") || !strings.Contains(r.CLIText, "handshake failed: EOF") {
		t.Errorf("live run reads %q (CLI %q)", r.Summary, r.CLIText)
	}
	if r.Meaning == "" || len(r.NextSteps) == 0 {
		t.Errorf("live run has no advice: %q %v", r.Meaning, r.NextSteps)
	}
	wantTraces := []string{first.TraceID().String(), second.TraceID().String()}
	if !slices.Equal(r.Traces, wantTraces) {
		t.Errorf("live run's traces %v, want %v", r.Traces, wantTraces)
	}
	o := got[1]
	if o.Source != "ring" || o.InProgress || o.Outcome != "ok" || !slices.Equal(o.Traces, []string{other.TraceID().String()}) || o.Meaning != "" {
		t.Errorf("ring run: %+v", o)
	}

	// Once the tracker's run is over (nothing in flight, the gap ran out)
	// it is no longer in progress.
	live[0].InFlight = 0
	if got := mergeRuns(now.Add(time.Minute), live, conns, &adv); got[0].InProgress {
		t.Errorf("a run idle for a minute is still in progress")
	}
}

func TestServer(t *testing.T) {
	rs := newRelaySpans(t, Limits{})
	m, err := admin.NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	m.InitRoute("127.0.0.1:1313", "coordinator:1313")
	for range 3 {
		m.ConnOpened("coordinator:1313")
	}
	m.ConnClosed("coordinator:1313", failure.LBClosedEarly, 517, 0)
	failed := rs.conn(failure.LBClosedEarly, 1)
	rs.conn(failure.OK, 1)

	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	srv, err := New(Config{Recorder: rs.rec, Mode: "relay", Routes: []Route{{Listen: "127.0.0.1:1313", Upstream: "coordinator:1313"}},
		Metrics: m.Handler(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()

	get := func(path string) (int, string, http.Header) {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}

	code, body, hdr := get("/api/v1/state")
	if code != http.StatusOK || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("state: %d %s", code, hdr.Get("Content-Type"))
	}
	var st State
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Listeners) != 1 || st.Listeners[0].Open != 2 || st.Listeners[0].Counted != "upstream" {
		t.Errorf("listeners %+v: want coordinator:1313 with 2 open (3 opened, 1 closed)", st.Listeners)
	}
	if st.Chart.Source != "metrics" || len(st.Chart.Buckets) == 0 || st.Chart.Buckets[len(st.Chart.Buckets)-1].Modes["lb_closed_early"] != 0 {
		// The first mark was taken at New, after the close: nothing new since.
		t.Errorf("chart %+v", st.Chart)
	}
	m.ConnClosed("coordinator:1313", failure.IssuerTimeout, 517, 0)
	_, body, _ = get("/api/v1/state")
	st = State{}
	_ = json.Unmarshal([]byte(body), &st)
	if last := st.Chart.Buckets[len(st.Chart.Buckets)-1]; last.Modes["issuer_timeout"] != 1 || last.Total != 1 {
		t.Errorf("the bucket in progress after one more close: %+v", last)
	}
	if len(st.Connections) != 2 || st.Connections[1].TraceID != failed.TraceID().String() || st.Connections[1].Mode != "lb_closed_early" {
		t.Errorf("connections %+v", st.Connections)
	}
	if st.Recent.Connections != 2 || st.Ring.Connections != 2 {
		t.Errorf("recent summary counts %d connections, ring %d; want 2", st.Recent.Connections, st.Ring.Connections)
	}

	// The waterfall is analyze's HTML page for that trace.
	code, body, _ = get("/trace/" + failed.TraceID().String())
	if code != http.StatusOK || !strings.Contains(body, `class="op">ccproxy.connection<`) || !strings.Contains(body, `class="op">upstream.dial<`) ||
		!strings.Contains(body, "detail of lb_closed_early") {
		t.Errorf("trace page: %d\n%.2000s", code, body)
	}
	if code, _, _ := get("/trace/0123456789abcdef0123456789abcdef"); code != http.StatusNotFound {
		t.Errorf("unknown trace: status %d, want 404", code)
	}
	if code, _, _ := get("/trace/xyz"); code != http.StatusBadRequest {
		t.Errorf("bad trace id: status %d, want 400", code)
	}

	// The page and its assets: served, nothing fetched from elsewhere.
	for _, p := range []string{"/", "/app.js", "/style.css"} {
		code, body, hdr := get(p)
		if code != http.StatusOK {
			t.Errorf("%s: status %d", p, code)
		}
		if !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s: CSP %q", p, hdr.Get("Content-Security-Policy"))
		}
		if u := externalURL.FindString(strings.ReplaceAll(body, svgNS, "")); u != "" {
			t.Errorf("%s refers to %s: the page must work offline", p, u)
		}
	}
}

// externalURL finds a URL the browser would fetch; svgNS is the SVG
// namespace app.js names, which is a name, not a fetch.
var externalURL = regexp.MustCompile(`(?:https?:)?//(?:[a-z0-9-]+\.)+[a-z]{2,}(?:/[^"' )]*)?`)

const svgNS = "http://www.w3.org/2000/svg"

// TestStateWhileSpansEnd: the page reads the rings while connections end
// (run with -race).
func TestStateWhileSpansEnd(t *testing.T) {
	rs := newRelaySpans(t, Limits{Connections: 16, Children: 16, Runs: 4})
	srv, err := New(Config{Recorder: rs.rec, Routes: []Route{{Listen: ":1313", Upstream: "coordinator:1313"}}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 500 {
			rs.conn(failure.LBClosedEarly, i+1)
		}
	}()
	for {
		st := srv.State()
		if len(st.Connections) > 16 {
			t.Fatalf("%d connections listed from a ring of 16", len(st.Connections))
		}
		select {
		case <-done:
			st := srv.State()
			if st.Ring.Connections != 16 || st.Chart.Source != "spans" {
				t.Errorf("ring %+v, chart from %s", st.Ring, st.Chart.Source)
			}
			return
		default:
		}
	}
}

// TestConnectionsKeepEveryMode: a storm of one mode does not push the one
// connection of another mode off the list.
func TestConnectionsKeepEveryMode(t *testing.T) {
	rs := newRelaySpans(t, Limits{})
	odd := rs.conn(failure.PolicyHashMismatch, 1)
	for i := range maxConnsListed + 20 {
		rs.conn(failure.LBClosedEarly, i+1)
	}
	connSpans, _, runSpans := rs.rec.Spans()
	got := connectionsOf(fromRing(connSpans, runSpans))
	if len(got) != maxConnsListed+1 {
		t.Fatalf("%d connections listed, want the newest %d and the newest of the other mode", len(got), maxConnsListed)
	}
	if last := got[len(got)-1]; last.TraceID != odd.TraceID().String() || last.Mode != "policy_hash_mismatch" {
		t.Errorf("the last listed is %+v, want the policy_hash_mismatch connection", last)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Start.After(got[i-1].Start) {
			t.Fatalf("not newest first at %d", i)
		}
	}
}
