package watch_test

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/internal/runs"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// countingTracer counts the spans started, by name.
type countingTracer struct {
	oteltrace.Tracer
	mu      sync.Mutex
	started map[string]int
}

func (c *countingTracer) Start(ctx context.Context, name string, opts ...oteltrace.SpanStartOption) (context.Context, oteltrace.Span) {
	c.mu.Lock()
	c.started[name]++
	c.mu.Unlock()
	return c.Tracer.Start(ctx, name, opts...)
}

// TestFoldedAttemptsMakeNoSpans: through the relay with a folding run
// tracker, a storm's repeated attempts start no span at all (the work is
// not done and thrown away), every started span reaches the file, and
// the run's summary counts every attempt.
func TestFoldedAttemptsMakeNoSpans(t *testing.T) {
	const n = 40
	c, addr := simCoordinator(t)
	c.SetFault(coordinator.FaultLBClose)
	var sums []runs.Summary
	var sumMu sync.Mutex
	tracker := runs.New(runs.Config{Fold: true, FoldFirst: 3, Summaries: func(s runs.Summary) {
		sumMu.Lock()
		sums = append(sums, s)
		sumMu.Unlock()
	}})
	var ct *countingTracer
	h := newHarness(t, addr, func(_ *proxy.Proxy, wc *watch.Config) {
		ct = &countingTracer{Tracer: wc.Tracer, started: map[string]int{}}
		wc.Tracer, wc.Runs = ct, tracker
		wc.OnVerdict = nil
	})
	for i := range n {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(conn, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if tc.Handshake() == nil {
			t.Fatalf("attempt %d succeeded", i+1)
		}
		tc.Close()
	}
	// Every attempt ended: the run is over once its gap runs out.
	deadline := time.Now().Add(10 * time.Second)
	for {
		tracker.Sweep(time.Now().Add(runs.DefaultMaxGap + time.Second))
		sumMu.Lock()
		done := len(sums) > 0 && sums[len(sums)-1].Final
		sumMu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := h.tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Written: 1-3, 4, 8, 16, 32 and the last (40).
	const written = 8
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if got := ct.started[trace.SpanConnection]; got != written {
		t.Errorf("%d root spans started for %d attempts, want %d", got, n, written)
	}
	if got := ct.started[trace.SpanUpstreamDial]; got != written {
		t.Errorf("%d dial spans started, want %d: a folded attempt makes none", got, written)
	}
	inFile := map[string]int{}
	for _, s := range readSpans(t, h.file) {
		inFile[s.Name()]++
	}
	for name, n := range ct.started {
		if inFile[name] != n {
			t.Errorf("%s: %d started, %d in the file", name, n, inFile[name])
		}
	}
	sumMu.Lock()
	defer sumMu.Unlock()
	if len(sums) == 0 {
		t.Fatal("no run summary")
	}
	if f := sums[len(sums)-1]; !f.Final || f.Attempts != n || f.Folded != n-written {
		t.Errorf("final summary %+v: want %d attempts, %d folded", f, n, n-written)
	}
}
