package live

import (
	"context"
	"sync"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/ccproxy-dev/ccproxy/trace"
)

// Default ring sizes: enough for the latest few minutes of a storm's
// written attempts (folding writes few of them) and for the waterfall of
// each of those connections, small enough to state in SECURITY.md.
const (
	DefaultConnections = 256  // trace.SpanConnection spans
	DefaultChildren    = 2048 // their phases (upstream.dial, tls.handshake, ...): about eight per connection
	DefaultRuns        = 256  // trace.SpanRun summaries
)

// Limits are the ring sizes of a Recorder; zero fields take the defaults.
type Limits struct {
	Connections int
	Children    int
	Runs        int
}

func (l Limits) withDefaults() Limits {
	if l.Connections <= 0 {
		l.Connections = DefaultConnections
	}
	if l.Children <= 0 {
		l.Children = DefaultChildren
	}
	if l.Runs <= 0 {
		l.Runs = DefaultRuns
	}
	return l
}

// Recorder is an OpenTelemetry span processor (trace.Config.Processors)
// that keeps the latest ended spans the page shows, each kind in a ring of
// its own so that a flood of one cannot push out the others: connection
// spans, their children (for the waterfall) and run summaries. It also
// counts ended connection spans per failure mode and open ones per
// listener: counters, not per-connection state, for when the relay keeps no
// metrics of its own (tunnel connect).
//
// OnEnd runs on the goroutine that ends the span and only takes a short
// lock; the spans are converted for the page when it asks (Spans), not
// here.
type Recorder struct {
	mu       sync.Mutex
	conns    *ring[sdktrace.ReadOnlySpan]
	children *ring[sdktrace.ReadOnlySpan]
	runs     *ring[sdktrace.ReadOnlySpan]
	ended    map[string]int64 // connection spans ended, per failure mode
	open     map[string]int64 // connection spans open, per listener named at their start
	openAll  int64            // connection spans open
}

// NewRecorder returns a Recorder with rings of the given sizes.
func NewRecorder(l Limits) *Recorder {
	l = l.withDefaults()
	return &Recorder{
		conns:    newRing[sdktrace.ReadOnlySpan](l.Connections),
		children: newRing[sdktrace.ReadOnlySpan](l.Children),
		runs:     newRing[sdktrace.ReadOnlySpan](l.Runs),
		ended:    map[string]int64{},
		open:     map[string]int64{},
	}
}

// OnStart counts an open connection span. Its listener is counted only
// when the span names it at its start (the tunnel's local end does; the
// relay sets it at the close and is counted by its metrics instead).
func (r *Recorder) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) {
	if s.Name() != trace.SpanConnection {
		return
	}
	listen := listenOf(s)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.openAll++
	if listen != "" {
		r.open[listen]++
	}
}

// OnEnd keeps s in its ring.
func (r *Recorder) OnEnd(s sdktrace.ReadOnlySpan) {
	name := s.Name()
	var mode, listen string
	if name == trace.SpanConnection {
		mode, listen = modeOf(s), listenOf(s)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case name == trace.SpanConnection:
		r.conns.push(s)
		r.ended[mode]++
		r.openAll--
		// Only what OnStart counted: a listener set later was not.
		if r.open[listen] > 0 {
			r.open[listen]--
		}
	case name == trace.SpanRun:
		r.runs.push(s)
	case s.Parent().IsValid():
		r.children.push(s)
	}
}

// Shutdown and ForceFlush have nothing to do: nothing is exported.
func (r *Recorder) Shutdown(context.Context) error   { return nil }
func (r *Recorder) ForceFlush(context.Context) error { return nil }

// Spans returns copies of the rings' contents, oldest first.
func (r *Recorder) Spans() (conns, children, runs []sdktrace.ReadOnlySpan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns.all(), r.children.all(), r.runs.all()
}

// Held is how many spans each ring holds now, and its size.
func (r *Recorder) Held() RingStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RingStats{
		Connections: r.conns.len(), ConnectionsCap: r.conns.cap(),
		Children: r.children.len(), ChildrenCap: r.children.cap(),
		Runs: r.runs.len(), RunsCap: r.runs.cap(),
	}
}

// RingStats says how full the rings are (part of the page's state).
type RingStats struct {
	Connections    int `json:"connections"`
	ConnectionsCap int `json:"connections_cap"`
	Children       int `json:"children"`
	ChildrenCap    int `json:"children_cap"`
	Runs           int `json:"runs"`
	RunsCap        int `json:"runs_cap"`
}

// ModeTotals implements Counters from the connection spans that ended
// (attempts folded by internal/runs are not spans, so not counted here).
func (r *Recorder) ModeTotals() (map[string]int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int64, len(r.ended))
	for k, v := range r.ended {
		out[k] = v
	}
	return out, nil
}

// OpenByListener is how many connection spans are open per listener that
// named itself at their start, and in all.
func (r *Recorder) OpenByListener() (map[string]int64, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int64, len(r.open))
	for k, v := range r.open {
		out[k] = v
	}
	return out, r.openAll
}

func modeOf(s sdktrace.ReadOnlySpan) string {
	for _, kv := range s.Attributes() {
		if kv.Key == trace.FailureMode {
			return kv.Value.AsString()
		}
	}
	return "(none)"
}

func listenOf(s sdktrace.ReadOnlySpan) string {
	for _, kv := range s.Attributes() {
		if kv.Key == trace.ListenAddress {
			return kv.Value.AsString()
		}
	}
	return ""
}
