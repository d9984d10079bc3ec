package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/spf13/pflag"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/ccproxy-dev/ccproxy/internal/admin"
	"github.com/ccproxy-dev/ccproxy/internal/runs"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// Defaults of the trace file's rotation: 64 MiB files, 3 kept besides the
// active one, at most 256 MiB on disk.
const (
	defaultTraceFileMaxSize  = 64
	defaultTraceFileMaxFiles = 3
)

// addTraceFlags defines where spans go: relay mode and both tunnel ends.
func addTraceFlags(f *pflag.FlagSet) {
	f.String("trace-file", "", "append spans as OTLP/JSON lines to this file (- for stdout)")
	f.Int("trace-file-max-size", defaultTraceFileMaxSize, "rotate --trace-file when it would grow past this many MiB (0: never); ccproxy analyze reads the rotated files too")
	f.Int("trace-file-max-files", defaultTraceFileMaxFiles, "rotated trace files kept beside --trace-file; the oldest is removed (0: keep all)")
	f.String("otlp-endpoint", "", "export spans over OTLP: grpc://host:port or host:port (gRPC), http(s)://host:port (HTTP)")
}

// addFoldFlags defines how a failing CLI run's repeated attempts are
// traced: relay mode and `tunnel serve`.
func addFoldFlags(f *pflag.FlagSet) {
	f.Bool("trace-every-attempt", false, "write every connection's spans and log line, also the repeats of a failing CLI run that are otherwise folded into the run's summary (docs/runs.md)")
	f.Int("trace-first-attempts", runs.DefaultFoldFirst, "a CLI run's first attempts always written in full before its repeats are folded")
}

// traceConfig is the validated form of addTraceFlags.
type traceConfig struct {
	file         string
	rotation     trace.Rotation
	otlpEndpoint string
}

func parseTraceConfig(s *settings) (traceConfig, error) {
	c := traceConfig{file: s.String("trace-file"), otlpEndpoint: s.String("otlp-endpoint")}
	if c.otlpEndpoint != "" {
		if err := trace.ValidateEndpoint(c.otlpEndpoint); err != nil {
			return c, usageErrorf("%s: %v", where("otlp-endpoint"), err)
		}
	}
	size, err := s.Int("trace-file-max-size")
	if err != nil {
		return c, err
	}
	if c.rotation.MaxFiles, err = s.Int("trace-file-max-files"); err != nil {
		return c, err
	}
	c.rotation.MaxBytes = int64(size) << 20
	return c, nil
}

// setup starts the tracer provider, with extra span processors besides the
// exporters (the live page's); the returned function flushes and closes it.
func (c traceConfig) setup(ctx context.Context, log *slog.Logger, extra ...sdktrace.SpanProcessor) (*trace.Provider, func(), error) {
	ver, _ := buildVersion()
	tp, err := trace.Setup(ctx, trace.Config{File: c.file, FileRotation: c.rotation, Endpoint: c.otlpEndpoint, ServiceVersion: ver, Logger: log,
		Processors: extra})
	if err != nil {
		return nil, nil, usageErrorf("--trace-file / --otlp-endpoint: %v", err)
	}
	if !tp.Enabled() {
		log.Info("tracing off: set --trace-file or --otlp-endpoint to record a span per connection")
	}
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("flushing spans at exit", "err", err)
		}
		if n := tp.Dropped(); n > 0 {
			log.Warn("spans dropped", "count", n)
		}
	}, nil
}

// foldConfig is the validated form of addFoldFlags.
type foldConfig struct {
	every bool
	first int
}

func parseFoldConfig(s *settings) (foldConfig, error) {
	var c foldConfig
	var err error
	if c.every, err = s.Bool("trace-every-attempt"); err != nil {
		return c, err
	}
	if c.first, err = s.Int("trace-first-attempts"); err != nil {
		return c, err
	}
	if c.first == 0 {
		return c, usageErrorf("%s: must be at least 1 (set --trace-every-attempt to fold nothing)", where("trace-first-attempts"))
	}
	return c, nil
}

// startRuns makes the run tracker the relay's connections share: it
// folds repeats (unless every attempt is to be written) and counts folded
// root spans; see startTracker.
func (c foldConfig) startRuns(tp *trace.Provider, log *slog.Logger, m *admin.Metrics) (*runs.Tracker, func()) {
	return startTracker(runs.Config{
		Fold:      !c.every,
		FoldFirst: c.first,
		OnFold:    func(k runs.Key) { m.RootSpanFolded(k.Upstream) },
	}, tp, log)
}

// startTracker makes a run tracker from cfg that writes each run's summary
// span and log line. It runs until the returned stop is called, which
// writes what the runs still hold (each one's last attempt and final
// summary): call it after the connections drained and before the tracer
// provider shuts down.
func startTracker(cfg runs.Config, tp *trace.Provider, log *slog.Logger) (*runs.Tracker, func()) {
	tracer := tp.Tracer()
	if !tp.Enabled() {
		tracer = nil
	}
	cfg.Summaries = runs.SummaryWriter(tracer, log)
	t := runs.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.Run(ctx)
	}()
	return t, func() {
		cancel()
		<-done
	}
}
