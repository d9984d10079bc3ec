package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/contrastcli"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinatortest"
	"github.com/ccproxy-dev/ccproxy/internal/demo"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// rootSpan is a ccproxy.connection span as the trace file holds it.
type rootSpan struct {
	traceID, spanID string
	start           time.Time
	client, mode    string
	attempt         int64
	links           []string // "traceID/spanID"
}

func rootSpans(t *testing.T, path string) []rootSpan {
	t.Helper()
	var out []rootSpan
	eachSpan(t, path, func(s ptrace.Span) {
		if s.Name() != trace.SpanConnection {
			return
		}
		r := rootSpan{traceID: s.TraceID().String(), spanID: s.SpanID().String(), start: s.StartTimestamp().AsTime()}
		if v, ok := s.Attributes().Get(string(trace.ClientAddress)); ok {
			r.client = v.Str()
		}
		if v, ok := s.Attributes().Get(string(trace.FailureMode)); ok {
			r.mode = v.Str()
		}
		if v, ok := s.Attributes().Get(string(trace.RunAttempt)); ok {
			r.attempt = v.Int()
		} else {
			t.Errorf("connection span without %s", trace.RunAttempt)
		}
		for l := range s.Links().Len() {
			link := s.Links().At(l)
			r.links = append(r.links, link.TraceID().String()+"/"+link.SpanID().String())
		}
		out = append(out, r)
	})
	sort.Slice(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out
}

// eachSpan calls fn for every span of an OTLP/JSON lines file.
func eachSpan(t *testing.T, path string, fn func(ptrace.Span)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		for i := range td.ResourceSpans().Len() {
			ss := td.ResourceSpans().At(i).ScopeSpans()
			for j := range ss.Len() {
				for k := range ss.At(j).Spans().Len() {
					fn(ss.At(j).Spans().At(k))
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// runsFixture runs a simulated Coordinator and the ccproxy binary in front
// of it, writing traces to a file.
type runsFixture struct {
	coord  *coordinator.Coordinator
	relay  *relayProcess
	traces string
}

func newRunsFixture(t *testing.T) *runsFixture {
	t.Helper()
	auth, err := attesttest.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	c, addr := coordinatortest.Start(t, coordinator.Config{Authority: auth, IssuerDelay: 2 * time.Second})
	traces := filepath.Join(t.TempDir(), "traces.jsonl")
	p := startRelay(t, addr, "--trace-file", traces, "--issuer-deadline", "500ms")
	return &runsFixture{coord: c, relay: p, traces: traces}
}

// cli is a CLI on the fixture's Coordinator dialing from the local address
// from (127.0.0.x: a client machine of its own).
func (f *runsFixture) cli(from string) contrastcli.Options {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return contrastcli.Options{
		Manifest:    f.coord.Manifest(),
		SNPRootsPEM: f.coord.Authority().SNPRootsPEM(),
		Authority:   "localhost",
		Dialer:      func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
	}
}

// retry runs a retrying CLI (`contrast set`'s loop) for at most d.
func (f *runsFixture) retry(t *testing.T, from string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	return demo.SetLoop(ctx, f.relay.addr, f.cli(from))
}

// TestRunEndToEnd: a CLI that retries through the relay — a load balancer
// drops its first three attempts, then the issuer hangs until the CLI
// gives up — is one run: in the trace file (ccproxy.run.attempt 1..4, each
// retry linked to the first root span), in analyze's text and JSON, and on
// the HTML page.
func TestRunEndToEnd(t *testing.T) {
	f := newRunsFixture(t)
	f.coord.SetFault(coordinator.FaultIssuerSlow)
	f.coord.SetFaultSequence(coordinator.FaultLBClose, coordinator.FaultLBClose, coordinator.FaultLBClose)
	err := f.retry(t, "127.0.0.1", 1500*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "context deadline exceeded") {
		t.Fatalf("the CLI returned %v, want its deadline", err)
	}
	f.relay.stop(t)

	spans := rootSpans(t, f.traces)
	if len(spans) != 4 {
		t.Fatalf("%d connection spans, want 4: %+v", len(spans), spans)
	}
	first := spans[0].traceID + "/" + spans[0].spanID
	for i, s := range spans {
		want := "lb_closed_early"
		if i == 3 {
			want = "issuer_timeout"
		}
		if s.attempt != int64(i+1) || s.mode != want {
			t.Errorf("connection %d: attempt %d, %s; want attempt %d, %s", i+1, s.attempt, s.mode, i+1, want)
		}
		switch {
		case i == 0 && len(s.links) != 0:
			t.Errorf("the first attempt has links %v", s.links)
		case i > 0 && (len(s.links) != 1 || s.links[0] != first):
			t.Errorf("attempt %d links %v, want the first root span %s", i+1, s.links, first)
		}
	}

	out, stderr, code := run(t, nil, "analyze", f.traces)
	if code != 0 {
		t.Fatalf("analyze exit %d: %s", code, stderr)
	}
	wantRun := "from 127.0.0.1 to " + f.coord.Addr() + ", 4 attempts over "
	wantSteps := ": lb_closed_early ×3, then issuer_timeout — the CLI printed: received context error while waiting for new LB policy update: context deadline exceeded"
	if !strings.Contains(out, "1 run, 1 retried, 1 failed") || !strings.Contains(out, wantRun) || !strings.Contains(out, wantSteps) {
		t.Errorf("analyze text lacks the run:\n%s", out)
	}
	if strings.Index(out, "\nRuns (") > strings.Index(out, "\nBy failure mode") {
		t.Errorf("the runs come after the connections:\n%s", out)
	}

	rep := analyzeFiles(t, f.traces)
	if rep.Runs.Runs != 1 || len(rep.Runs.List) != 1 || rep.Runs.List[0].Attempts != 4 || rep.Runs.List[0].Outcome != "issuer_timeout" ||
		len(rep.Runs.List[0].Steps) != 2 || rep.Runs.List[0].Steps[0].Count != 3 {
		t.Errorf("analyze JSON runs: %+v", rep.Runs)
	}

	page, _, code := run(t, nil, "analyze", "--output", "html", f.traces)
	if code != 0 {
		t.Fatalf("analyze html exit %d", code)
	}
	runsAt, connsAt := strings.Index(page, "<h2>Runs</h2>"), strings.Index(page, "Connections by failure mode")
	if runsAt < 0 || connsAt < runsAt {
		t.Fatal("the HTML page has no runs card before the connections")
	}
	card := page[runsAt:connsAt]
	for i, s := range spans {
		if !strings.Contains(card, `<a href="#t-`+s.traceID+`">attempt `+itoa(i+1)+`</a>`) {
			t.Errorf("the runs card does not draw attempt %d linked to its trace", i+1)
		}
	}
	if !strings.Contains(card, "lb_closed_early ×3") || !strings.Contains(card, "issuer_timeout") {
		t.Error("the runs card lacks the run's steps")
	}
}

// TestRunsTwoClientsAtOnce: two CLIs retrying at the same time from two
// machines are two runs, each with its own attempts; two CLIs behind one
// address (a port-forward) whose attempts overlap are two runs as well.
func TestRunsTwoClientsAtOnce(t *testing.T) {
	f := newRunsFixture(t)
	// The two machines' CLIs share the load balancer's four drops (who
	// gets how many is up to the race), then the healthy Coordinator
	// answers both.
	const drops = 4
	f.coord.SetFaultSequence(coordinator.FaultLBClose, coordinator.FaultLBClose, coordinator.FaultLBClose, coordinator.FaultLBClose)
	var wg sync.WaitGroup
	for _, from := range []string{"127.0.0.2", "127.0.0.3"} {
		wg.Go(func() {
			if err := f.retry(t, from, 10*time.Second); err != nil {
				t.Errorf("CLI on %s: %v", from, err)
			}
		})
	}
	wg.Wait()

	// Behind a port-forward: both CLIs from 127.0.0.1 at once, both stuck
	// in the slow issuer until they give up.
	f.coord.SetFault(coordinator.FaultIssuerSlow)
	for range 2 {
		wg.Go(func() { _ = f.retry(t, "127.0.0.1", time.Second) })
	}
	wg.Wait()
	f.relay.stop(t)

	byClient := map[string][]rootSpan{}
	for _, s := range rootSpans(t, f.traces) {
		byClient[s.client] = append(byClient[s.client], s)
	}
	retried := 0
	if n := len(byClient["127.0.0.2"]) + len(byClient["127.0.0.3"]); n != drops+2 {
		t.Errorf("the two machines made %d connections, want %d drops and 2 successes", n, drops)
	}
	for _, from := range []string{"127.0.0.2", "127.0.0.3"} {
		spans := byClient[from]
		if len(spans) == 0 || spans[len(spans)-1].mode != "ok" {
			t.Errorf("%s: connections %+v; want (retries) ending ok", from, spans)
			continue
		}
		if len(spans) > 1 {
			retried++
		}
		first := spans[0].traceID + "/" + spans[0].spanID
		for i, s := range spans {
			if s.attempt != int64(i+1) {
				t.Errorf("%s: connection %d is attempt %d", from, i+1, s.attempt)
			}
			if i > 0 && (len(s.links) != 1 || s.links[0] != first) {
				t.Errorf("%s: attempt %d links %v, want its own first span %s", from, i+1, s.links, first)
			}
		}
	}
	if local := byClient["127.0.0.1"]; len(local) != 2 || local[0].attempt != 1 || local[1].attempt != 1 || len(local[1].links) != 0 {
		t.Errorf("two overlapping CLIs behind one address: %+v, want two first attempts", local)
	}

	js, _, code := run(t, nil, "analyze", "--output", "json", f.traces)
	if code != 0 {
		t.Fatalf("analyze exit %d", code)
	}
	var rep struct {
		Runs struct {
			Runs    int `json:"runs"`
			Retried int `json:"retried"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Runs.Runs != 4 || rep.Runs.Retried != retried || retried == 0 {
		t.Errorf("analyze: %d runs, %d retried; want 4 and %d (>0)", rep.Runs.Runs, rep.Runs.Retried, retried)
	}
}
