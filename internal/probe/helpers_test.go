package probe_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinatortest"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/probe"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// authority is shared by all tests: building one costs tens of milliseconds.
var authority = sync.OnceValues(attesttest.NewAuthority)

// startCoordinator runs a simulated Coordinator on loopback for the test.
func startCoordinator(t *testing.T, cfg coordinator.Config) (*coordinator.Coordinator, string) {
	t.Helper()
	a, err := authority()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Authority == nil {
		cfg.Authority = a
	}
	return coordinatortest.Start(t, cfg)
}

// attestOptions are the evidence options of a ccproxy configured like a
// CLI that trusts c's authority and holds c's manifest, never fetching.
func attestOptions(t *testing.T, c *coordinator.Coordinator) attest.Options {
	t.Helper()
	m, err := attest.ParseManifest(c.Manifest())
	if err != nil {
		t.Fatal(err)
	}
	return attest.Options{
		Offline:   true,
		SNPRoots:  c.Authority().SNPRootsPEM(),
		TDXRoots:  c.Authority().TDXRootsPEM(),
		Reference: m,
	}
}

// relay runs a relay with the refiner in front of upstream, writing spans
// as OTLP/JSON to a file.
type relay struct {
	t        *testing.T
	addr     string
	file     string
	tp       *trace.Provider
	verdicts chan inspect.Verdict
}

func startRelay(t *testing.T, upstream string, ref *probe.Refiner) *relay {
	t.Helper()
	return startRelayWith(t, upstream, ref, nil)
}

// startRelayWith also checks TLS 1.2 certificates as they pass (nil: only
// recorded).
func startRelayWith(t *testing.T, upstream string, ref *probe.Refiner, check watch.CertChecker) *relay {
	t.Helper()
	file := filepath.Join(t.TempDir(), "traces.jsonl")
	tp, err := trace.Setup(context.Background(), trace.Config{File: file, ServiceVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, file: file, tp: tp, verdicts: make(chan inspect.Verdict, 64)}
	wc := watch.Config{
		Tracer:         tp.Tracer(),
		IssuerDeadline: 5 * time.Second,
		CheckCert:      check,
		OnVerdict:      func(_ proxy.ConnInfo, v inspect.Verdict) { r.verdicts <- v },
	}
	if ref != nil {
		wc.Refine = ref.Refine
	}
	w := watch.New(wc)
	p := &proxy.Proxy{
		Routes:      []proxy.Route{{Listen: "127.0.0.1:0", Upstream: upstream, Inspect: true}},
		NewObserver: w.Observe,
	}
	ready := make(chan []net.Addr, 1)
	p.Ready = func(a []net.Addr) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		tp.Shutdown(context.Background())
	})
	r.addr = (<-ready)[0].String()
	return r
}

// waitFor waits for a connection whose final verdict is want. A gRPC client
// may open more connections than the one that failed (a reconnect it
// abandons when it is closed); their verdicts are skipped, and since a
// probe holds up its connection's verdict they may come first.
func (r *relay) waitFor(want failure.Mode) inspect.Verdict {
	r.t.Helper()
	var seen []string
	timeout := time.After(30 * time.Second)
	for {
		select {
		case v := <-r.verdicts:
			if v.Mode == want {
				return v
			}
			seen = append(seen, fmt.Sprintf("%s (%s)", v.Mode, v.Detail))
		case <-timeout:
			r.t.Fatalf("no connection with verdict %s; saw %q", want, seen)
			return inspect.Verdict{}
		}
	}
}

// spans flushes and reads back every span in the trace file with the
// collector's OTLP/JSON decoder.
func (r *relay) spans() []ptrace.Span {
	r.t.Helper()
	if err := r.tp.ForceFlush(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	f, err := os.Open(r.file)
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	var out []ptrace.Span
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(sc.Bytes())
		if err != nil {
			r.t.Fatalf("trace file line is not OTLP/JSON: %v", err)
		}
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				ss := rs.ScopeSpans().At(j)
				for k := 0; k < ss.Spans().Len(); k++ {
					out = append(out, ss.Spans().At(k))
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// connectionTrace is one connection's root span and its child spans.
type connectionTrace struct {
	root     ptrace.Span
	probes   []ptrace.Span
	children []ptrace.Span // all of them, the probes included
}

// traces groups the spans by connection, in the order the roots ended.
func (r *relay) traces() []connectionTrace {
	r.t.Helper()
	spans := r.spans()
	var out []connectionTrace
	for _, s := range spans {
		if s.Name() != trace.SpanConnection {
			continue
		}
		ct := connectionTrace{root: s}
		for _, c := range spans {
			if c.TraceID() != s.TraceID() || c.ParentSpanID() != s.SpanID() {
				continue
			}
			ct.children = append(ct.children, c)
			if c.Name() == trace.SpanProbe {
				ct.probes = append(ct.probes, c)
			}
		}
		out = append(out, ct)
	}
	return out
}

// probedConnection is a connection named want, preferring the one whose
// probe ran rather than reused another's result (a client's reconnect
// waits for the probe in flight, and both are named when it ends, in
// either order): with probed set it waits, up to 10 s, for that one's
// spans. Nil if no connection was named want.
func (r *relay) probedConnection(want failure.Mode, probed bool) *connectionTrace {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ct *connectionTrace
		for _, x := range r.traces() {
			if attr(x.root.Attributes(), string(trace.FailureMode)) != string(want) {
				continue
			}
			if len(x.probes) > 0 && attr(x.probes[0].Attributes(), string(trace.ProbeCached)) == "false" {
				return &x
			}
			if ct == nil {
				ct = &x
			}
		}
		if !probed || time.Now().After(deadline) {
			return ct
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkNested fails t unless the root span encloses every child span, as
// a waterfall (Jaeger, the HTML view) draws it.
func (ct connectionTrace) checkNested(t *testing.T) {
	t.Helper()
	for _, c := range ct.children {
		if c.StartTimestamp() < ct.root.StartTimestamp() || c.EndTimestamp() > ct.root.EndTimestamp() {
			t.Errorf("%s span %v..%v is not inside its connection %v..%v", c.Name(), c.StartTimestamp(), c.EndTimestamp(), ct.root.StartTimestamp(), ct.root.EndTimestamp())
		}
	}
}

func attr(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok {
		return ""
	}
	return v.AsString()
}
