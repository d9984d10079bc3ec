package trace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Config selects where spans go. With neither File nor Endpoint set (and no
// OTEL_EXPORTER_OTLP_*ENDPOINT in the environment) tracing is off.
type Config struct {
	File           string // OTLP/JSON lines file; "-" is standard output
	FileRotation   Rotation
	Endpoint       string // grpc://host:port, host:port (gRPC), http(s)://host:port[/v1/traces] (HTTP)
	ServiceVersion string
	QueueSize      int // spans waiting for export; beyond it new spans are dropped (default 8192)
	Logger         *slog.Logger
	// Getenv reads the environment (for the OTEL_* and Kubernetes downward
	// API variables); nil means os.Getenv.
	Getenv func(string) string
	// Processors see every span besides the exporters (the relay's live
	// page keeps recent ones in memory). With Processors and no exporter,
	// spans are recorded for them alone, and Enabled reports true.
	Processors []sdktrace.SpanProcessor
}

// Provider owns the tracer provider and its exporters.
type Provider struct {
	tp      *sdktrace.TracerProvider
	tracer  oteltrace.Tracer
	queue   *queueProcessor
	enabled bool
}

// Setup builds the tracer provider for cfg.
func Setup(ctx context.Context, cfg Config) (*Provider, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var exporters []sdktrace.SpanExporter
	if cfg.File != "" {
		fe, err := NewRotatingFileExporter(cfg.File, cfg.FileRotation)
		if err != nil {
			return nil, err
		}
		exporters = append(exporters, fe)
	}
	endpoint := cfg.Endpoint
	if endpoint == "" && (getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") {
		endpoint = "env"
	}
	if endpoint != "" {
		oe, err := newOTLPExporter(ctx, endpoint, getenv)
		if err != nil {
			return nil, err
		}
		exporters = append(exporters, oe)
	}
	if len(exporters) == 0 && len(cfg.Processors) == 0 {
		return &Provider{tracer: noop.NewTracerProvider().Tracer(InstrumentationID)}, nil
	}

	// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME add to the resource;
	// ccproxy's own attributes (service.name=ccproxy, which dashboards
	// filter on) take precedence.
	res, err := resource.Merge(resource.Environment(), resource.NewWithAttributes("", resourceAttrs(cfg.ServiceVersion, getenv)...))
	if err != nil {
		res = resource.NewWithAttributes("", resourceAttrs(cfg.ServiceVersion, getenv)...)
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithIDGenerator(idGenerator{}), // honours reservations (reserve.go)
	}
	var q *queueProcessor
	if len(exporters) > 0 {
		q = newQueueProcessor(multiExporter(exporters), cfg.QueueSize, log)
		opts = append(opts, sdktrace.WithSpanProcessor(q))
	}
	for _, sp := range cfg.Processors {
		opts = append(opts, sdktrace.WithSpanProcessor(sp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	return &Provider{tp: tp, tracer: tp.Tracer(InstrumentationID), queue: q, enabled: true}, nil
}

// Tracer returns the tracer for ccproxy's spans (a no-op one when tracing is off).
func (p *Provider) Tracer() oteltrace.Tracer { return p.tracer }

// Enabled reports whether spans go anywhere.
func (p *Provider) Enabled() bool { return p.enabled }

// Dropped is the number of spans dropped because the export queue was full
// or an export failed.
func (p *Provider) Dropped() int64 {
	if p.queue == nil {
		return 0
	}
	return p.queue.dropped.Load()
}

// OnDrop registers f to be called with the number of spans dropped each
// time spans are dropped (for metrics).
func (p *Provider) OnDrop(f func(n int64)) {
	if p.queue != nil {
		p.queue.onDrop.Store(&f)
	}
}

// Shutdown exports what is queued and closes the exporters.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p.tp == nil {
		return nil
	}
	return p.tp.Shutdown(ctx)
}

// ForceFlush exports what is queued now.
func (p *Provider) ForceFlush(ctx context.Context) error {
	if p.tp == nil {
		return nil
	}
	return p.tp.ForceFlush(ctx)
}

func resourceAttrs(version string, getenv func(string) string) []attribute.KeyValue {
	if version == "" {
		version = "(devel)"
	}
	attrs := []attribute.KeyValue{
		attribute.String("service.name", "ccproxy"),
		attribute.String("service.version", version),
	}
	if h, err := os.Hostname(); err == nil {
		attrs = append(attrs, attribute.String("host.name", h))
	}
	// The Kubernetes downward API, as deploy/socat-replacement.yaml sets it.
	for env, key := range map[string]string{
		"POD_NAME": "k8s.pod.name", "POD_NAMESPACE": "k8s.namespace.name", "NODE_NAME": "k8s.node.name",
	} {
		if v := getenv(env); v != "" {
			attrs = append(attrs, attribute.String(key, v))
		}
	}
	return attrs
}

// newOTLPExporter picks gRPC or HTTP from the endpoint's scheme. "env" means
// configure entirely from the standard OTEL_EXPORTER_OTLP_* variables
// (protocol from OTEL_EXPORTER_OTLP_PROTOCOL, gRPC by default).
func newOTLPExporter(ctx context.Context, endpoint string, getenv func(string) string) (sdktrace.SpanExporter, error) {
	if endpoint == "env" {
		proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
		if proto == "" {
			proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
		}
		if strings.HasPrefix(proto, "http") {
			return otlptracehttp.New(ctx)
		}
		return otlptracegrpc.New(ctx)
	}
	scheme, rest, ok := strings.Cut(endpoint, "://")
	if !ok {
		scheme, rest = "grpc", endpoint
	}
	switch scheme {
	case "grpc":
		if rest == "" {
			return nil, fmt.Errorf("otlp endpoint %q: missing host:port", endpoint)
		}
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(rest), otlptracegrpc.WithInsecure())
	case "grpcs":
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(rest))
	case "http", "https":
		u, err := url.Parse(endpoint)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("otlp endpoint %q: not a URL with a host", endpoint)
		}
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(endpoint)}
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/traces"
			opts = []otlptracehttp.Option{otlptracehttp.WithEndpointURL(u.String())}
		}
		return otlptracehttp.New(ctx, opts...)
	}
	return nil, fmt.Errorf("otlp endpoint %q: scheme %q is not grpc, grpcs, http or https", endpoint, scheme)
}

// ValidateEndpoint checks an --otlp-endpoint value without connecting.
func ValidateEndpoint(endpoint string) error {
	scheme, rest, ok := strings.Cut(endpoint, "://")
	if !ok {
		scheme, rest = "grpc", endpoint
	}
	switch scheme {
	case "grpc", "grpcs":
		if !strings.Contains(rest, ":") {
			return fmt.Errorf("want host:port, got %q", rest)
		}
	case "http", "https":
		if u, err := url.Parse(endpoint); err != nil || u.Host == "" {
			return fmt.Errorf("want a URL with a host, got %q", endpoint)
		}
	default:
		return fmt.Errorf("scheme %q is not grpc, grpcs, http or https", scheme)
	}
	return nil
}

type multiExporter []sdktrace.SpanExporter

func (m multiExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	var errs []error
	for _, e := range m {
		if err := e.ExportSpans(ctx, spans); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m multiExporter) Shutdown(ctx context.Context) error {
	var errs []error
	for _, e := range m {
		errs = append(errs, e.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// queueProcessor is a batch span processor that never blocks the caller:
// a full queue drops the span and counts it, so a slow or dead exporter
// cannot hold up forwarding. Export errors are logged once (then every
// hundredth), not per span.
type queueProcessor struct {
	exp     sdktrace.SpanExporter
	ch      chan sdktrace.ReadOnlySpan
	flushCh chan chan struct{}
	log     *slog.Logger
	dropped atomic.Int64
	onDrop  atomic.Pointer[func(int64)]
	failed  atomic.Int64
	done    chan struct{}
	stop    sync.Once
	closed  atomic.Bool
	chMu    sync.RWMutex // OnEnd's send vs Shutdown's close of ch
}

const (
	defaultQueue  = 8192
	batchSize     = 512
	batchInterval = time.Second
	exportTimeout = 10 * time.Second
)

func newQueueProcessor(exp sdktrace.SpanExporter, size int, log *slog.Logger) *queueProcessor {
	if size <= 0 {
		size = defaultQueue
	}
	q := &queueProcessor{
		exp:     exp,
		ch:      make(chan sdktrace.ReadOnlySpan, size),
		flushCh: make(chan chan struct{}),
		log:     log,
		done:    make(chan struct{}),
	}
	go q.loop()
	return q
}

func (q *queueProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (q *queueProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	q.chMu.RLock()
	defer q.chMu.RUnlock()
	if q.closed.Load() {
		return
	}
	select {
	case q.ch <- s:
	default:
		q.drop(1, errors.New("export queue full"))
	}
}

func (q *queueProcessor) drop(n int64, why error) {
	if q.dropped.Add(n) == n {
		q.log.Warn("dropping spans; forwarding continues (further drops are only counted)", "reason", why.Error())
	}
	if f := q.onDrop.Load(); f != nil {
		(*f)(n)
	}
}

func (q *queueProcessor) loop() {
	defer close(q.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, batchSize)
	tick := time.NewTicker(batchInterval)
	defer tick.Stop()
	export := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), exportTimeout)
		err := q.exp.ExportSpans(ctx, batch)
		cancel()
		if err != nil {
			q.drop(int64(len(batch)), err)
			if n := q.failed.Add(1); n == 1 || n%100 == 0 {
				q.log.Warn("span export failed", "err", err, "failures", n)
			}
		}
		clear(batch)
		batch = batch[:0]
	}
	for {
		select {
		case s, ok := <-q.ch:
			if !ok {
				export()
				return
			}
			batch = append(batch, s)
			if len(batch) == batchSize {
				export()
			}
		case <-tick.C:
			export()
		case ack := <-q.flushCh:
			for drained := false; !drained; {
				select {
				case s := <-q.ch:
					batch = append(batch, s)
					if len(batch) == batchSize {
						export()
					}
				default:
					drained = true
				}
			}
			export()
			close(ack)
		}
	}
}

func (q *queueProcessor) ForceFlush(ctx context.Context) error {
	if q.closed.Load() {
		return nil
	}
	ack := make(chan struct{})
	select {
	case q.flushCh <- ack:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *queueProcessor) Shutdown(ctx context.Context) error {
	var err error
	q.stop.Do(func() {
		q.chMu.Lock()
		q.closed.Store(true)
		close(q.ch)
		q.chMu.Unlock()
		select {
		case <-q.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if serr := q.exp.Shutdown(ctx); serr != nil {
			err = errors.Join(err, serr)
		}
	})
	return err
}
