package soak_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ccproxy-dev/ccproxy/bench/soak"
	"github.com/ccproxy-dev/ccproxy/internal/admin"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// fdsPerConn is what one relayed connection can cost in this process while
// both directions stream: the client's socket, the upstream's, the relay's
// two, and a splice(2) pipe (two descriptors) per direction while bytes move
// (the relay waits for data holding none). The relay alone needs up to six
// per connection, two when idle; sizing for the worst case keeps a run from
// failing on EMFILE, which would be the test's limit, not the relay's.
const fdsPerConn = 8

// reserveFDs covers listeners, the trace file, the runtime and the test
// binary's own descriptors.
const reserveFDs = 256

// config is one soak run.
type config struct {
	workers   int
	duration  time.Duration
	maxBytes  int64
	traceFile string // "" traces nothing (the watcher still classifies)
	// checkSpans reads traceFile back and matches its connection spans to
	// the load (the short run only: the file of a long one is large).
	checkSpans bool
}

// outcome is what a run did and measured; problems are what failed.
type outcome struct {
	cfg             config
	requested       int
	fdSoft, fdHard  uint64
	load            soak.Report
	up              soak.SideReport
	refused         int64
	spansDropped    int64
	spans           int64
	relayConns      float64
	relayBytes      [2]float64
	baseG, peakG    int
	endG            int
	baseFD, peakFD  int
	endFD           int
	settle          time.Duration
	warnings        string
	problems        []string
	started, finish time.Time
}

func (o *outcome) problem(format string, a ...any) {
	o.problems = append(o.problems, fmt.Sprintf(format, a...))
}

// syncBuffer collects the relay's warnings from many goroutines.
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

// runSoak relays cfg.workers concurrent connections through a relay wired
// as relay mode wires it (proxy, watcher with metrics and tracing), one
// inspecting route and one plain, to a checking upstream, for cfg.duration.
// Then it stops everything and waits for goroutines and descriptors to
// return to where they were.
func runSoak(t *testing.T, cfg config) *outcome {
	t.Helper()
	o := &outcome{cfg: cfg, requested: cfg.workers, started: time.Now()}

	// Raise the descriptor limit first; if the hard limit is too low for
	// the requested concurrency, run with what fits and say so.
	var err error
	o.fdSoft, o.fdHard, err = soak.RaiseFileLimit(uint64(cfg.workers*fdsPerConn + reserveFDs))
	if err != nil {
		t.Fatal(err)
	}
	if fit := (int(o.fdSoft) - reserveFDs) / fdsPerConn; fit < cfg.workers {
		t.Logf("RLIMIT_NOFILE is %d (hard %d): %d concurrent connections need about %d descriptors in one process (%d each); running %d. Raise the hard limit (ulimit -Hn, or run with CAP_SYS_RESOURCE) for the full figure.",
			o.fdSoft, o.fdHard, cfg.workers, cfg.workers*fdsPerConn+reserveFDs, fdsPerConn, fit)
		cfg.workers = max(fit, 1)
		o.cfg.workers = cfg.workers
	}
	hello, err := soak.ClientHello()
	if err != nil {
		t.Fatal(err)
	}

	// The relay's event loops live as long as the process; start them
	// before the baseline so they are not counted as a leak.
	if err := proxy.StartLoops(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	o.baseG = runtime.NumGoroutine()
	if o.baseFD, err = soak.OpenFDs(); err != nil {
		t.Skip(err) // not Linux
	}

	// The checking upstream.
	up, upAddr, stopUp := startUpstream(t)

	// The relay, wired like serveRelay in cmd/ccproxy.
	var warn syncBuffer
	log := slog.New(slog.NewTextHandler(&warn, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tp, err := trace.Setup(context.Background(), trace.Config{File: cfg.traceFile, ServiceVersion: "soak", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := admin.NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	tp.OnDrop(metrics.SpansDropped)
	var refused atomic.Int64
	w := watch.New(watch.Config{Tracer: tp.Tracer(), Metrics: metrics, Logger: log})
	p := &proxy.Proxy{
		Routes: []proxy.Route{
			{Listen: "127.0.0.1:0", Upstream: upAddr, Inspect: true},
			{Listen: "127.0.0.1:0", Upstream: upAddr},
		},
		// The relay holds a connection a moment after the client closed it;
		// headroom keeps that from refusing the worker's next one.
		MaxConns:     cfg.workers + cfg.workers/2 + 64,
		DrainTimeout: 30 * time.Second,
		Logger:       log,
		NewObserver:  w.Observe,
		OnRefused:    func(proxy.Route) { refused.Add(1) },
	}
	ready := make(chan []net.Addr, 1)
	p.Ready = func(a []net.Addr) { ready <- a }
	relayCtx, stopRelay := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- p.Run(relayCtx) }()
	var addrs []string
	select {
	case a := <-ready:
		for _, x := range a {
			addrs = append(addrs, x.String())
		}
	case err := <-relayDone:
		t.Fatalf("relay: %v", err)
	}

	// Sample descriptors and goroutines while the load runs.
	o.load = runSampled(newLoad(addrs, cfg.workers, cfg.duration, 2*time.Second, cfg.maxBytes, hello), func() {
		if n, err := soak.OpenFDs(); err == nil {
			o.peakFD = max(o.peakFD, n)
		}
		o.peakG = max(o.peakG, runtime.NumGoroutine())
	})

	// Stop the relay: every connection has ended, so the drain is instant.
	stopRelay()
	select {
	case err := <-relayDone:
		if err != nil {
			o.problem("relay Run: %v", err)
		}
	case <-time.After(time.Minute):
		o.problem("relay did not return within a minute of the load's end: connections still open")
	}
	stopUp()
	up.Wait()
	o.up = up.Report()
	o.refused = refused.Load()

	if err := tp.Shutdown(context.Background()); err != nil {
		o.problem("trace shutdown: %v", err)
	}
	o.spansDropped = tp.Dropped()
	o.relayConns, o.relayBytes = scrape(t, metrics)
	metrics.Shutdown(context.Background())
	if cfg.checkSpans && cfg.traceFile != "" {
		checkSpans(t, o)
	}
	o.warnings = warn.String()

	// Everything is stopped: goroutines and descriptors must come back.
	// Idle splice pipes live in a sync.Pool until two collections have run
	// and their cleanups have closed them, hence the GC in the loop.
	settle := time.Now()
	deadline := settle.Add(15 * time.Second)
	for {
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
		o.endG = runtime.NumGoroutine()
		o.endFD, _ = soak.OpenFDs()
		if (o.endG <= o.baseG+2 && o.endFD <= o.baseFD) || time.Now().After(deadline) {
			break
		}
	}
	o.settle = time.Since(settle)
	o.finish = time.Now()
	o.judge()
	return o
}

// judge records every way the run fell short.
func (o *outcome) judge() {
	exchangeChecks(o.problem, o.load, o.up, o.relayConns, o.relayBytes)
	if o.refused > 0 {
		o.problem("the relay refused %d connections below its connection limit", o.refused)
	}
	if o.endG > o.baseG+2 {
		o.problem("goroutines: %d before, %d after (peak %d)", o.baseG, o.endG, o.peakG)
	}
	if o.endFD > o.baseFD {
		o.problem("open descriptors: %d before, %d after (peak %d)", o.baseFD, o.endFD, o.peakFD)
	}
}

// startUpstream serves a checking upstream on a loopback port; stop closes
// its listener and waits for its accept loop (not for its connections:
// up.Wait does).
func startUpstream(t *testing.T) (up *soak.Upstream, addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up = &soak.Upstream{}
	done := make(chan struct{})
	go func() { up.Serve(ln); close(done) }()
	return up, ln.Addr().String(), func() {
		ln.Close()
		<-done
	}
}

// newLoad is a soak's load: workers connections at once on addrs for
// duration, started over ramp (at most a quarter of the duration), every
// other one opening with hello.
func newLoad(addrs []string, workers int, duration, ramp time.Duration, maxBytes int64, hello []byte) *soak.Load {
	return &soak.Load{
		Addrs:    addrs,
		Workers:  workers,
		Duration: duration,
		Ramp:     min(ramp, duration/4),
		MaxBytes: maxBytes,
		Seed:     uint64(time.Now().UnixNano()),
		Hello:    hello,
	}
}

// runSampled runs load, calling sample every 250 ms from another
// goroutine while it runs (and once before), and returns its report once
// the sampling has stopped.
func runSampled(load *soak.Load, sample func()) soak.Report {
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			sample()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	rep := load.Run(context.Background())
	close(stop)
	<-stopped
	return rep
}

// exchangeChecks are what every soak checks of what crossed the relay: no
// loss on either side, both sides agreeing, and the relay's own accounting
// equal to the bytes on the wire.
func exchangeChecks(problem func(string, ...any), load soak.Report, up soak.SideReport, relayConns float64, relayBytes [2]float64) {
	if load.Connections == 0 {
		problem("no connection completed")
	}
	if n := load.Lost(); n > 0 {
		problem("client side: %d connections lost %s; first: %s", n, soak.FormatLosses(load.Losses), strings.Join(load.Samples, " | "))
	}
	if n := up.Lost(); n > 0 {
		problem("upstream side: %d connections lost %s; first: %s", n, soak.FormatLosses(up.Losses), strings.Join(up.Samples, " | "))
	}
	if up.Connections != load.Connections {
		problem("upstream verified %d connections, the clients %d", up.Connections, load.Connections)
	}
	if up.BytesIn != load.BytesOut || up.BytesOut != load.BytesIn {
		problem("payload bytes: clients sent %d and received %d, upstream received %d and sent %d", load.BytesOut, load.BytesIn, up.BytesIn, up.BytesOut)
	}
	if int64(relayConns) != load.Connections {
		problem("ccproxy_connections_total = %.0f, clients completed %d", relayConns, load.Connections)
	}
	if int64(relayBytes[0]) != load.WireUp || int64(relayBytes[1]) != load.WireDown {
		problem("ccproxy_forwarded_bytes_total = %.0f up / %.0f down, clients sent %d / received %d", relayBytes[0], relayBytes[1], load.WireUp, load.WireDown)
	}
}

// writeExchange writes the lines every soak's summary opens with: what
// completed, what was verified, at what rate, what was lost (and what
// else, after the losses), and what the relay counted.
func writeExchange(b *strings.Builder, load soak.Report, up soak.SideReport, workers, requested int, set time.Duration, lossesMore string, relayConns float64, relayBytes [2]float64) {
	fmt.Fprintf(b, "connections: %d completed through the relay, %d concurrent workers (requested %d), peak %d open at once\n",
		load.Connections, workers, requested, load.PeakConcurrent)
	fmt.Fprintf(b, "bytes: %s client→upstream, %s upstream→client payload verified by SHA-256 (%d and %d bytes on the wire)\n",
		soak.IBytes(load.BytesOut), soak.IBytes(load.BytesIn), load.WireUp, load.WireDown)
	secs := load.Duration.Seconds()
	fmt.Fprintf(b, "duration: %s of load (%s set), %.0f connections/s, %s/s\n",
		load.Duration.Round(time.Millisecond), set, float64(load.Connections)/secs,
		soak.IBytes(int64(float64(load.BytesOut+load.BytesIn)/secs)))
	fmt.Fprintf(b, "losses: client %d %s, upstream %d %s; %s\n",
		load.Lost(), soak.FormatLosses(load.Losses), up.Lost(), soak.FormatLosses(up.Losses), lossesMore)
	fmt.Fprintf(b, "relay metrics: ccproxy_connections_total %.0f, ccproxy_forwarded_bytes_total %.0f up / %.0f down\n",
		relayConns, relayBytes[0], relayBytes[1])
}

// writeResult is a summary's last line, and each problem under it.
func writeResult(b *strings.Builder, problems []string) {
	if len(problems) == 0 {
		b.WriteString("result: PASS, zero loss\n")
		return
	}
	b.WriteString("result: FAIL\n")
	for _, p := range problems {
		fmt.Fprintf(b, "  - %s\n", p)
	}
}

// summary is the run in a few lines, for the test log and RESULTS.md.
func (o *outcome) summary() string {
	var b strings.Builder
	writeExchange(&b, o.load, o.up, o.cfg.workers, o.requested, o.cfg.duration,
		fmt.Sprintf("refused %d; spans dropped %d", o.refused, o.spansDropped), o.relayConns, o.relayBytes)
	perConn := 0.0
	if o.load.PeakConcurrent > 0 {
		perConn = float64(o.peakFD-o.baseFD) / float64(o.load.PeakConcurrent)
	}
	fmt.Fprintf(&b, "goroutines: %d before, peak %d, %d after; descriptors: %d before, peak %d (%.1f per open connection, all processes' ends), %d after %s (RLIMIT_NOFILE %d, hard %d)\n",
		o.baseG, o.peakG, o.endG, o.baseFD, o.peakFD, perConn, o.endFD, o.settle.Round(time.Millisecond), o.fdSoft, o.fdHard)
	writeResult(&b, o.problems)
	return b.String()
}

// report logs the summary and fails the test for every problem.
func (o *outcome) report(t *testing.T) {
	t.Helper()
	t.Log("\n" + o.summary())
	if o.warnings != "" {
		w := o.warnings
		if len(w) > 4000 {
			w = w[:4000] + "..."
		}
		t.Logf("relay warnings:\n%s", w)
	}
	for _, p := range o.problems {
		t.Error(p)
	}
}

// scrape reads the relay's Prometheus page: connections ended and bytes
// forwarded per direction, summed over labels.
func scrape(t *testing.T, m *admin.Metrics) (conns float64, bytes [2]float64) {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return scrapeText(rec.Body)
}

// scrapeText reads connections ended and bytes forwarded per direction
// from a Prometheus text page.
func scrapeText(page io.Reader) (conns float64, bytes [2]float64) {
	sc := bufio.NewScanner(page)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, "{")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(rest, ' ')
		v, err := strconv.ParseFloat(rest[i+1:], 64)
		if err != nil {
			continue
		}
		switch name {
		case "ccproxy_connections_total":
			conns += v
		case "ccproxy_forwarded_bytes_total":
			if strings.Contains(rest, `direction="`+admin.DirectionClientToUpstream+`"`) {
				bytes[0] += v
			} else if strings.Contains(rest, `direction="`+admin.DirectionUpstreamToClient+`"`) {
				bytes[1] += v
			}
		}
	}
	return conns, bytes
}

// checkSpans reads the trace file back: one ccproxy.connection span per
// relayed connection, each naming a failure mode, and the byte counts on
// the spans summing to what crossed the wire.
func checkSpans(t *testing.T, o *outcome) {
	t.Helper()
	f, err := os.Open(o.cfg.traceFile)
	if err != nil {
		o.problem("trace file: %v", err)
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	var up, down int64
	for sc.Scan() {
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(sc.Bytes())
		if err != nil {
			o.problem("trace file line is not OTLP/JSON: %v", err)
			return
		}
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			ss := td.ResourceSpans().At(i).ScopeSpans()
			for j := 0; j < ss.Len(); j++ {
				spans := ss.At(j).Spans()
				for k := 0; k < spans.Len(); k++ {
					s := spans.At(k)
					if s.Name() != trace.SpanConnection {
						continue
					}
					o.spans++
					a := s.Attributes()
					if v, ok := a.Get(string(trace.FailureMode)); !ok || v.Str() == "" {
						o.problem("connection span %s has no failure mode", s.SpanID())
					}
					if v, ok := a.Get(string(trace.BytesClientToUp)); ok {
						up += v.Int()
					}
					if v, ok := a.Get(string(trace.BytesUpToClient)); ok {
						down += v.Int()
					}
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		o.problem("reading trace file: %v", err)
	}
	if o.spans != o.load.Connections {
		o.problem("%d connection spans for %d connections (%d spans dropped)", o.spans, o.load.Connections, o.spansDropped)
	}
	if up != o.load.WireUp || down != o.load.WireDown {
		o.problem("span byte counts %d up / %d down, the wire carried %d / %d", up, down, o.load.WireUp, o.load.WireDown)
	}
}

// TestShortSoak is the soak in miniature, for the normal suite: a few
// hundred concurrent connections for a couple of seconds, every byte
// verified, the relay's metrics and spans matched to the wire, and
// goroutines and descriptors back to baseline.
func TestShortSoak(t *testing.T) {
	cfg := config{
		workers:    200,
		duration:   2 * time.Second,
		maxBytes:   256 << 10,
		traceFile:  filepath.Join(t.TempDir(), "traces.jsonl"),
		checkSpans: true,
	}
	if testing.Short() {
		cfg.workers, cfg.duration = 50, time.Second
	}
	o := runSoak(t, cfg)
	o.report(t)
}

// TestExchangeCatchesCorruption checks that the protocol notices what a
// broken relay would do: flip a byte, drop a byte, add a byte, cut the
// stream, or reset instead of a FIN. A checker that cannot fail proves
// nothing.
func TestExchangeCatchesCorruption(t *testing.T) {
	cases := []struct {
		name   string
		mangle func(b []byte) []byte // applied to the upstream's whole answer
		reset  bool                  // reset instead of FIN after writing
		kind   string
	}{
		{"intact", func(b []byte) []byte { return b }, false, ""},
		{"flipped byte", func(b []byte) []byte { b[len(b)/3] ^= 1; return b }, false, "checksum"},
		{"dropped byte", func(b []byte) []byte { return append(b[:10:10], b[11:]...) }, false, "truncated"},
		{"extra byte", func(b []byte) []byte { return append(b, 0) }, false, "trailing"},
		{"cut short", func(b []byte) []byte { return b[:len(b)/2] }, false, "truncated"},
		{"reset after all bytes", func(b []byte) []byte { return b }, true, "no_fin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := soak.Spec{Mode: soak.RequestResponse, Seed: 7, Up: 1000, Down: 5000}
			// A real upstream writes its answer into a buffer, which the
			// fake relay mangles before passing it on.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			answer := make(chan []byte, 1)
			go func() {
				// The honest upstream, reached over a loopback pair.
				upLn, _ := net.Listen("tcp", "127.0.0.1:0")
				defer upLn.Close()
				up := &soak.Upstream{Timeout: 5 * time.Second}
				go up.Serve(upLn)
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				u, err := net.Dial("tcp", upLn.Addr().String())
				if err != nil {
					return
				}
				defer u.Close()
				go func() {
					b := make([]byte, 64<<10)
					for {
						n, err := c.Read(b)
						u.Write(b[:n])
						if err != nil {
							u.(*net.TCPConn).CloseWrite()
							return
						}
					}
				}()
				u.SetReadDeadline(time.Now().Add(5 * time.Second))
				var all bytes.Buffer
				all.ReadFrom(u)
				answer <- all.Bytes()
				c.Write(tc.mangle(all.Bytes()))
				if tc.reset {
					// Let the bytes reach the client before the reset.
					time.Sleep(100 * time.Millisecond)
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
					return
				}
				c.(*net.TCPConn).CloseWrite()
				c.Read(make([]byte, 1))
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			err = soak.Exchange(c, spec)
			if got := <-answer; int64(len(got)) != spec.WireDown() {
				t.Fatalf("honest upstream answered %d bytes, want %d", len(got), spec.WireDown())
			}
			if tc.kind == "" {
				if err != nil {
					t.Fatalf("intact exchange: %v", err)
				}
				return
			}
			var loss *soak.Loss
			if !errors.As(err, &loss) || loss.Kind != tc.kind {
				t.Fatalf("got %v, want a %s loss", err, tc.kind)
			}
		})
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 100; i++ {
		s := soak.Spec{Mode: soak.Mode(r.IntN(3)), Seed: r.Uint64(), Up: r.Int64N(soak.MaxPayload), Down: r.Int64N(soak.MaxPayload)}
		got, err := soak.ParseHeader(s.AppendHeader(nil))
		if err != nil || got.Mode != s.Mode || got.Seed != s.Seed || got.Up != s.Up || got.Down != s.Down {
			t.Fatalf("round trip of %+v: %+v, %v", s, got, err)
		}
	}
	bad := map[string][]byte{
		"short":      []byte("CCPS"),
		"magic":      append([]byte("XXXX"), make([]byte, 28)...),
		"mode":       append([]byte("CCPS\x09"), make([]byte, 27)...),
		"reserved":   append([]byte("CCPS\x00\x01"), make([]byte, 26)...),
		"oversized":  soak.Spec{Up: soak.MaxPayload + 1}.AppendHeader(nil),
		"negative":   soak.Spec{Down: -1}.AppendHeader(nil),
		"too long":   append(soak.Spec{}.AppendHeader(nil), 0),
		"empty":      nil,
		"all ones":   bytes.Repeat([]byte{0xff}, soak.HeaderLen),
		"TLS record": append([]byte{22, 3, 1, 0, 5}, make([]byte, 27)...),
	}
	for name, h := range bad {
		if s, err := soak.ParseHeader(h); err == nil {
			t.Errorf("%s: parsed as %+v", name, s)
		}
	}
}

// FuzzParseHeader: the upstream parses headers off the network.
func FuzzParseHeader(f *testing.F) {
	f.Add(soak.Spec{Mode: soak.ServerFirst, Seed: 1, Up: 2, Down: 3}.AppendHeader(nil))
	f.Add([]byte("CCPS"))
	f.Add(bytes.Repeat([]byte{0xff}, soak.HeaderLen))
	f.Fuzz(func(t *testing.T, h []byte) {
		s, err := soak.ParseHeader(h)
		if err != nil {
			return
		}
		if s.Up < 0 || s.Down < 0 || s.Up > soak.MaxPayload || s.Down > soak.MaxPayload || s.Mode > soak.ServerFirst {
			t.Fatalf("accepted %+v", s)
		}
		if !bytes.Equal(s.AppendHeader(nil), h) {
			t.Fatalf("%+v does not re-encode to its header", s)
		}
	})
}
