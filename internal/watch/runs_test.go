package watch_test

import (
	"context"
	"io"
	"net"
	"sort"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/contrastcli"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinatortest"
	"github.com/ccproxy-dev/ccproxy/internal/demo"
	"github.com/ccproxy-dev/ccproxy/internal/runs"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// simCoordinator runs a healthy simulated Coordinator for the test.
func simCoordinator(t *testing.T) (*coordinator.Coordinator, string) {
	t.Helper()
	auth, err := attesttest.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	return coordinatortest.Start(t, coordinator.Config{Authority: auth})
}

func cliOf(c *coordinator.Coordinator) contrastcli.Options {
	return contrastcli.Options{Manifest: c.Manifest(), SNPRootsPEM: c.Authority().SNPRootsPEM(), Authority: "localhost"}
}

// connectionSpans waits for n verdicts, flushes and returns the connection
// spans in start order.
func (h *harness) connectionSpans(n int) []ptrace.Span {
	h.t.Helper()
	for range n {
		select {
		case <-h.verdicts:
		case <-time.After(10 * time.Second):
			h.t.Fatal("a verdict did not come")
		}
	}
	if err := h.tp.ForceFlush(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	var roots []ptrace.Span
	for _, s := range readSpans(h.t, h.file) {
		if s.Name() == trace.SpanConnection {
			roots = append(roots, s)
		}
	}
	sort.Slice(roots, func(i, j int) bool { return roots[i].StartTimestamp() < roots[j].StartTimestamp() })
	return roots
}

// TestRunMarksRetries: a CLI whose first two attempts the load balancer
// drops, retrying as `contrast set` does, is one run: ccproxy.run.attempt
// 1, 2, 3, and the retries link to the first root span (the link itself
// says it points at attempt 1).
func TestRunMarksRetries(t *testing.T) {
	c, addr := simCoordinator(t)
	c.SetFaultSequence(coordinator.FaultLBClose, coordinator.FaultLBClose)
	h := newHarness(t, addr, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := demo.SetLoop(ctx, h.addr, cliOf(c)); err != nil {
		t.Fatalf("the retrying CLI failed: %v", err)
	}
	spans := h.connectionSpans(3)
	if len(spans) != 3 {
		t.Fatalf("%d connection spans, want 3", len(spans))
	}
	for i, s := range spans {
		if got := attr(s.Attributes(), string(trace.RunAttempt)); got != itoa(i+1) {
			t.Errorf("connection %d: %s = %q", i+1, trace.RunAttempt, got)
		}
		links := s.Links()
		if i == 0 {
			if links.Len() != 0 {
				t.Errorf("the first attempt has %d links", links.Len())
			}
			continue
		}
		if links.Len() != 1 || links.At(0).TraceID() != spans[0].TraceID() || links.At(0).SpanID() != spans[0].SpanID() {
			t.Errorf("attempt %d does not link to the first root span", i+1)
			continue
		}
		if got := attr(links.At(0).Attributes(), string(trace.RunAttempt)); got != "1" {
			t.Errorf("attempt %d's link: %s = %q, want 1", i+1, trace.RunAttempt, got)
		}
	}
}

func itoa(i int) string { return string(rune('0' + i)) }

// TestHealthyConnectionsDoNotWait: a second client behind the same address
// is not held up by a first one past its handshake, on an inspected route
// (Established once the client sent application data) and on a plain one.
// The tracker waits 5 s for an attempt still in its handshake, so any wait
// shows.
func TestHealthyConnectionsDoNotWait(t *testing.T) {
	slow := func(_ *proxy.Proxy, wc *watch.Config) { wc.Runs = runs.New(runs.Config{Settle: 5 * time.Second}) }

	c, addr := simCoordinator(t)
	h := newHarness(t, addr, slow)
	first, err := contrastcli.Dial(t.Context(), h.addr, cliOf(c))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := first.GetManifests(t.Context()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := contrastcli.Verify(t.Context(), h.addr, cliOf(c)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a second CLI next to an established connection took %v", took)
	}

	up := server(t, func(c net.Conn) { io.Copy(c, c) })
	h = newHarness(t, up, func(p *proxy.Proxy, wc *watch.Config) { p.Routes[0].Inspect = false; slow(p, wc) })
	held, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	time.Sleep(50 * time.Millisecond) // the relay has accepted it
	start = time.Now()
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a plain-route connection next to another took %v", took)
	}
}
