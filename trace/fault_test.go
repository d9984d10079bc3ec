package trace

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Fault tests of the span pipeline: whatever the exporter does (fail, hang,
// hit a full disk), ending a span never blocks, every span is either
// exported or counted as dropped, and the loss is logged once.

// lockedBuffer collects log output from the export goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLogger() (*slog.Logger, *lockedBuffer) {
	var b lockedBuffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelWarn})), &b
}

// fakeExporter counts what it exported; fail decides each call's outcome
// (from the call number, starting at 1), release, if set, holds every call
// until it is closed or the export's context ends.
type fakeExporter struct {
	fail     func(call int32) error
	release  chan struct{}
	entered  chan struct{} // receives once per call, if set and not full
	calls    atomic.Int32
	exported atomic.Int64
}

func (f *fakeExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	n := f.calls.Add(1)
	if f.entered != nil {
		select {
		case f.entered <- struct{}{}:
		default:
		}
	}
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.fail != nil {
		if err := f.fail(n); err != nil {
			return err
		}
	}
	f.exported.Add(int64(len(spans)))
	return nil
}

func (f *fakeExporter) Shutdown(context.Context) error { return nil }

// endSpans ends n spans from each of g goroutines and returns how long the
// slowest End took: the relay's goroutines end spans, so End must never
// wait for the exporter.
func endSpans(tp *sdktrace.TracerProvider, g, n int) time.Duration {
	tracer := tp.Tracer("fault")
	var wg sync.WaitGroup
	var worst atomic.Int64
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				_, s := tracer.Start(context.Background(), SpanConnection)
				start := time.Now()
				s.End()
				if d := int64(time.Since(start)); d > worst.Load() {
					worst.Store(d)
				}
			}
		}()
	}
	wg.Wait()
	return time.Duration(worst.Load())
}

// TestFaultQueueAccountsForEverySpan ends spans from many goroutines while
// the exporter succeeds, fails, fails now and then, or hangs: every span is
// exported or counted as dropped, exactly once, the drop callback sees the
// same count, and the log says so once.
func TestFaultQueueAccountsForEverySpan(t *testing.T) {
	const (
		goroutines = 8
		perG       = 600
		total      = goroutines * perG
		queue      = 64
	)
	errDown := errors.New("collector down")
	cases := []struct {
		name     string
		exp      func() *fakeExporter
		minDrops int64
		maxDrops int64
	}{
		{"exporter works", func() *fakeExporter { return &fakeExporter{} }, 0, total},
		{"exporter always fails", func() *fakeExporter {
			return &fakeExporter{fail: func(int32) error { return errDown }}
		}, total, total},
		{"exporter fails every other batch", func() *fakeExporter {
			return &fakeExporter{fail: func(n int32) error {
				if n%2 == 0 {
					return errDown
				}
				return nil
			}}
		}, 1, total - 1},
		// A hung exporter holds one batch; the queue holds `queue` spans;
		// everything beyond is dropped at once, without waiting.
		{"exporter hangs until released", func() *fakeExporter {
			return &fakeExporter{release: make(chan struct{}), entered: make(chan struct{}, 1)}
		}, total - queue - batchSize, total - 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			exp := tc.exp()
			log, logs := testLogger()
			q := newQueueProcessor(exp, queue, log)
			var onDrop atomic.Int64
			f := func(n int64) { onDrop.Add(n) }
			q.onDrop.Store(&f)
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(q))
			if exp.release != nil {
				// Get the loop stuck in an export first.
				endSpans(tp, 1, 1)
				go q.ForceFlush(context.Background())
				select {
				case <-exp.entered:
				case <-time.After(5 * time.Second):
					t.Fatal("the exporter was never called")
				}
			}
			worst := endSpans(tp, goroutines, perG)
			if exp.release != nil {
				close(exp.release)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tp.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			ended := int64(total)
			if exp.release != nil {
				ended++
			}
			exported, dropped := exp.exported.Load(), q.dropped.Load()
			t.Logf("%d ended: %d exported, %d dropped in %d export calls; slowest End %v", ended, exported, dropped, exp.calls.Load(), worst)
			if exported+dropped != ended {
				t.Errorf("%d exported + %d dropped != %d ended", exported, dropped, ended)
			}
			if dropped < tc.minDrops || dropped > tc.maxDrops {
				t.Errorf("%d dropped, want %d to %d", dropped, tc.minDrops, tc.maxDrops)
			}
			if got := onDrop.Load(); got != dropped {
				t.Errorf("OnDrop saw %d, Dropped says %d", got, dropped)
			}
			// A hung exporter is held until every span has ended, so an End
			// that waited for it would never return; the bound only catches
			// an End that waits for a failing or slow export.
			if worst > 2*time.Second {
				t.Errorf("ending a span took %v: End waited for the exporter", worst)
			}
			wantLogs := 0
			if dropped > 0 {
				wantLogs = 1
			}
			if n := strings.Count(logs.String(), "dropping spans"); n != wantLogs {
				t.Errorf("drops logged %d times, want %d:\n%s", n, wantLogs, logs)
			}
			if fails := int(exp.calls.Load()); strings.Count(logs.String(), "span export failed") > 1+fails/100 {
				t.Errorf("export failures logged more than once per hundred:\n%s", logs)
			}
		})
	}
}

// TestFaultShutdownWithStuckExporter: at exit, a collector that never
// answers may delay shutdown only as long as the caller's context allows,
// and spans ended afterwards are neither exported nor a panic.
func TestFaultShutdownWithStuckExporter(t *testing.T) {
	exp := &fakeExporter{release: make(chan struct{}), entered: make(chan struct{}, 1)}
	defer close(exp.release)
	log, _ := testLogger()
	q := newQueueProcessor(exp, 16, log)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(q))
	endSpans(tp, 1, 5)
	go q.ForceFlush(context.Background())
	<-exp.entered
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := q.Shutdown(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v with a 200ms context", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the context's deadline", err)
	}
	// Spans ended after shutdown (a connection closing during exit).
	_, s := tp.Tracer("late").Start(context.Background(), SpanConnection)
	s.End()
	if err := q.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// TestFaultTraceFileDiskFull writes the trace to /dev/full: every span is
// counted as dropped, flushes return, and the loss is logged once however
// many batches fail.
func TestFaultTraceFileDiskFull(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full here")
	}
	log, logs := testLogger()
	p, err := Setup(context.Background(), Config{File: "/dev/full", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	var want int64
	for round := 1; round <= 3; round++ {
		for i := 0; i < 10*round; i++ {
			_, s := p.Tracer().Start(context.Background(), SpanConnection)
			s.End()
			want++
		}
		if err := p.ForceFlush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := p.Dropped(); got != want {
			t.Fatalf("round %d: %d spans counted as dropped, want %d", round, got, want)
		}
	}
	if n := strings.Count(logs.String(), "dropping spans"); n != 1 {
		t.Errorf("drops logged %d times, want once:\n%s", n, logs)
	}
	if n := strings.Count(logs.String(), "span export failed"); n != 1 {
		t.Errorf("export failures logged %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "no space left on device") {
		t.Errorf("the log does not say why:\n%s", logs)
	}
}

// TestFaultOTLPEndpointDown exports to a port nothing listens on, over
// HTTP, gRPC, and as configured only by the standard OTEL_* variables: the
// spans are counted as dropped within the exporter's timeout.
func TestFaultOTLPEndpointDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	// gRPC retries an unavailable collector until the export's deadline;
	// the exporters read their timeout from the environment.
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "300")
	cases := []struct {
		name string
		cfg  Config
		env  map[string]string
	}{
		{"http", Config{Endpoint: "http://" + closed}, nil},
		{"grpc", Config{Endpoint: "grpc://" + closed}, nil},
		{"bare host:port is gRPC", Config{Endpoint: closed}, nil},
		{"OTEL_EXPORTER_OTLP_ENDPOINT only", Config{}, map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + closed,
			"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			log, logs := testLogger()
			tc.cfg.Logger = log
			p, err := Setup(context.Background(), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Shutdown(context.Background())
			if !p.Enabled() {
				t.Fatal("tracing is off")
			}
			const n = 25
			for i := 0; i < n; i++ {
				_, s := p.Tracer().Start(context.Background(), SpanConnection)
				s.End()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			start := time.Now()
			p.ForceFlush(ctx)
			if got := p.Dropped(); got != n {
				t.Errorf("%d spans counted as dropped after %v, want %d", got, time.Since(start), n)
			}
			if c := strings.Count(logs.String(), "dropping spans"); c != 1 {
				t.Errorf("drops logged %d times, want once:\n%s", c, logs)
			}
		})
	}
}

// TestFaultTraceFileUnwritable: a trace file that cannot be opened is an
// error at setup (the command turns it into exit 2), not a relay that runs
// and silently records nothing.
func TestFaultTraceFileUnwritable(t *testing.T) {
	dir := t.TempDir()
	for name, path := range map[string]string{
		"missing directory": filepath.Join(dir, "no", "such", "dir", "traces.jsonl"),
		"a directory":       dir,
	} {
		if _, err := Setup(context.Background(), Config{File: path}); err == nil || !strings.Contains(err.Error(), "trace file") {
			t.Errorf("%s: Setup = %v, want an error naming the trace file", name, err)
		}
	}
}
