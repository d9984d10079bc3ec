package live

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/analyze"
	"github.com/ccproxy-dev/ccproxy/internal/runs"
	"github.com/ccproxy-dev/ccproxy/trace"
)

//go:embed assets
var assets embed.FS

// Route is a listener and where it relays to (a route name, for the
// tunnel's local end).
type Route struct {
	Listen   string
	Upstream string
}

// Config is what a Server shows. Recorder is required.
type Config struct {
	Recorder *Recorder
	// Mode names the command for the page's title: "relay", "tunnel
	// serve" or "tunnel connect".
	Mode   string
	Routes []Route
	// Metrics is the relay's admin metrics handler (admin.Metrics.Handler):
	// open connections per upstream and exact counts per mode. Nil: both
	// come from the Recorder's spans.
	Metrics http.Handler
	// Runs is the run tracker's live view (runs.Tracker.Snapshot): runs in
	// progress with their attempt counts as they rise. Nil: runs come from
	// the ring only.
	Runs func() []runs.Summary
	// Bucket and Buckets shape the chart (DefaultBucket, DefaultBuckets).
	Bucket  time.Duration
	Buckets int
	Logger  *slog.Logger
	// Now is the clock (time.Now when nil); tests inject one.
	Now func() time.Time
}

// Server serves the page and its data.
type Server struct {
	cfg    Config
	counts Counters
	chart  *chart
	adv    advice
	mux    *http.ServeMux
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Recorder == nil {
		return nil, errors.New("live page: no span recorder")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, chart: newChart(cfg.Bucket, cfg.Buckets), counts: cfg.Recorder}
	if cfg.Metrics != nil {
		s.counts = MetricsCounters{Handler: cfg.Metrics}
	}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, fmt.Errorf("live page assets: %w", err)
	}
	s.mux = http.NewServeMux()
	s.mux.Handle("GET /", http.FileServerFS(static))
	s.mux.HandleFunc("GET /api/v1/state", s.serveState)
	s.mux.HandleFunc("GET /trace/{id}", s.serveTrace)
	s.sample()
	return s, nil
}

// ServeHTTP serves GET / (the page), /api/v1/state (its data as JSON) and
// /trace/{id} (one connection drawn by analyze's HTML renderer).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Everything is this server's own: no external asset, no framing by
	// another origin, no guessing of content types.
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

// Run samples the counts for the chart at each bucket boundary until ctx
// ends.
func (s *Server) Run(ctx context.Context) {
	tick := time.NewTicker(s.chart.width / 5)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.sample()
		}
	}
}

func (s *Server) sample() {
	totals, err := s.counts.ModeTotals()
	if err != nil {
		s.cfg.Logger.Warn("live page: counting connections", "err", err)
		return
	}
	s.chart.sample(s.cfg.Now(), totals)
}

// Serve serves on ln until ctx ends, then shuts down (waiting up to 5 s
// for requests in progress).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	go s.Run(ctx)
	select {
	case err := <-errc:
		return fmt.Errorf("live page on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("live page on %s: shutting down: %w", ln.Addr(), err)
	}
	return nil
}

// State builds the page's data now.
func (s *Server) State() State {
	now := s.cfg.Now()
	st := State{Now: now, Mode: s.cfg.Mode, Ring: s.cfg.Recorder.Held()}
	connSpans, _, runSpans := s.cfg.Recorder.Spans()
	conns := fromRing(connSpans, runSpans)
	var live []runs.Summary
	if s.cfg.Runs != nil {
		live = s.cfg.Runs()
	}
	st.Runs = mergeRuns(now, live, conns, &s.adv)
	st.Connections = connectionsOf(conns)
	st.Recent = analyze.Summarize(conns, analyze.Options{})
	st.Recent.Runs = analyze.RunReport{Runs: len(st.Runs), Listed: []analyze.Run{}}
	st.Recent.Read = analyze.ReadStats{Spans: len(connSpans), Connections: len(conns)}

	st.Chart = Chart{BucketMS: s.chart.width.Milliseconds(), Slots: s.chart.marks.cap(), Source: "spans"}
	if s.cfg.Metrics != nil {
		st.Chart.Source = "metrics"
	}
	if totals, err := s.counts.ModeTotals(); err != nil {
		st.Problems = append(st.Problems, err.Error())
	} else {
		s.chart.sample(now, totals)
		st.Chart.Buckets = s.chart.buckets(totals)
		st.Chart.Modes = modesOf(st.Chart.Buckets)
	}

	var err error
	if st.Listeners, err = s.listeners(); err != nil {
		st.Problems = append(st.Problems, err.Error())
	}
	return st
}

// listeners counts the open connections per route: from the metrics per
// upstream, else from the open connection spans per listener.
func (s *Server) listeners() ([]Listener, error) {
	out := make([]Listener, 0, len(s.cfg.Routes))
	if s.cfg.Metrics != nil {
		open, err := MetricsCounters{Handler: s.cfg.Metrics}.Open()
		for _, r := range s.cfg.Routes {
			out = append(out, Listener{Listen: r.Listen, Upstream: r.Upstream, Open: open[r.Upstream], Counted: "upstream"})
		}
		return out, err
	}
	open, _ := s.cfg.Recorder.OpenByListener()
	for _, r := range s.cfg.Routes {
		out = append(out, Listener{Listen: r.Listen, Upstream: r.Upstream, Open: open[r.Listen], Counted: "listener"})
	}
	return out, nil
}

func (s *Server) serveState(w http.ResponseWriter, _ *http.Request) {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(s.State()); err != nil {
		http.Error(w, "encoding state: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b.Bytes())
}

// serveTrace draws one connection of the ring with `ccproxy analyze
// --output html`'s renderer, as `analyze --output html --trace ID` would
// from a trace file holding the same spans.
func (s *Server) serveTrace(w http.ResponseWriter, r *http.Request) {
	id, err := analyze.ParseTraceID(r.PathValue("id"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	connSpans, children, _ := s.cfg.Recorder.Spans()
	rd := analyze.NewReader(nil)
	tc := analyze.NewTraceCollector(analyze.TraceSelection{TraceID: id, Max: 1})
	rd.Collect(tc)
	// Children first: the collector holds a trace's spans until its
	// connection span decides it, as in a file.
	st := rd.ReadTraces(trace.ToPdata(children))
	st.Add(rd.ReadTraces(trace.ToPdata(connSpans)))
	st.Add(rd.Flush())
	traces := tc.Traces()
	if len(traces) == 0 {
		http.Error(w, "trace "+id.String()+" is not in the ring (any more): only the latest connections are kept", http.StatusNotFound)
		return
	}
	// The summary of this connection alone: the page around it has the rest.
	sum := analyze.Summarize([]analyze.Connection{traces[0].Conn}, analyze.Options{})
	sum.Read = st
	page := analyze.HTMLPage{Summary: sum, Traces: traces, Matched: tc.Matched(), TraceID: id.String()}
	var b bytes.Buffer
	if err := page.Write(&b); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}
