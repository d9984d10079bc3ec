package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// Instrument names. The Prometheus exporter turns them into the names
// dashboards see (dots become underscores, the unit and "_total" are
// appended), so they are part of what users rely on: keep them stable.
const (
	// ccproxy_connections_total{failure_mode, upstream}
	nameConnections = "ccproxy.connections"
	// ccproxy_connections_active{upstream}
	nameActive = "ccproxy.connections.active"
	// ccproxy_forwarded_bytes_total{direction, upstream}
	nameForwarded = "ccproxy.forwarded"
	// ccproxy_connections_refused_total{listen}
	nameRefused = "ccproxy.connections.refused"
	// ccproxy_spans_dropped_total
	nameSpansDropped = "ccproxy.spans.dropped"
	// ccproxy_handshake_duration_seconds (histogram)
	nameHandshake = "ccproxy.handshake.duration"
	// ccproxy_issuer_latency_seconds (histogram)
	nameIssuer = "ccproxy.issuer.latency"
	// ccproxy_probes_total{failure_mode, upstream}
	nameProbes = "ccproxy.probes"
	// ccproxy_resource_exhausted_total{op}
	nameExhausted = "ccproxy.resource.exhausted"
	// ccproxy_root_spans_folded_total{upstream}
	nameFolded = "ccproxy.root_spans.folded"
)

// The Prometheus names of the histograms, which a fresh /metrics serves at
// zero before their first observation (see zeroHistograms). A test checks
// they are what the exporter derives from the instrument names and units.
const (
	promHandshake = "ccproxy_handshake_duration_seconds"
	promIssuer    = "ccproxy_issuer_latency_seconds"
)

// Instrument descriptions, shared with the zero-valued families.
const (
	descHandshake = "Duration of the TLS handshake seen through the relay, from the ClientHello to the end of the handshake."
	descIssuer    = "Time from the forwarded ClientHello to the upstream's first byte (the Coordinator issuing its attestation document)."
)

// Attribute keys, exported as Prometheus labels.
const (
	keyFailureMode = attribute.Key("failure_mode")
	keyUpstream    = attribute.Key("upstream")
	keyDirection   = attribute.Key("direction")
	keyListen      = attribute.Key("listen")
	keyOp          = attribute.Key("op")
)

// Values of the direction label, named like the trace attributes
// ccproxy.bytes.client_to_upstream and ccproxy.bytes.upstream_to_client.
const (
	DirectionClientToUpstream = "client_to_upstream"
	DirectionUpstreamToClient = "upstream_to_client"
)

// latencyBuckets (seconds) cover a loopback handshake (a millisecond) up to
// the limits Contrast itself applies: the issuer's collateral fetches give up
// after 20 s and the Coordinator's server handshake after 25 s; 30 s is the
// CLI's connect timeout. The SDK's default buckets are meant for
// milliseconds and would put every handshake into the first two buckets.
var latencyBuckets = []float64{
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 20, 25, 30,
}

// maxCachedAttrs bounds the attribute-set cache. Upstreams, listen addresses
// and failure modes come from configuration and the contract, so a few dozen
// entries is normal; the bound only stops a caller that passes per-client
// values from growing the cache without limit (those calls still count,
// they just build their attribute set each time).
const maxCachedAttrs = 4096

// Metrics holds the relay's instruments. Its methods run once or twice per
// connection, so they reuse precomputed attribute sets instead of building
// them per call. A nil *Metrics is valid: every method is a no-op, so the
// relay can run without an admin endpoint.
type Metrics struct {
	conns     metric.Int64Counter
	active    metric.Int64UpDownCounter
	forwarded metric.Int64Counter
	refused   metric.Int64Counter
	exhausted metric.Int64Counter
	dropped   metric.Int64Counter
	folded    metric.Int64Counter
	handshake metric.Float64Histogram
	issuer    metric.Float64Histogram
	probes    metric.Int64Counter

	handler  http.Handler                    // serves /metrics; nil if the provider is not ours to read
	shutdown func(ctx context.Context) error // shuts down a provider NewMetrics created

	mu       sync.RWMutex
	upstream map[string]*upstreamOpts
	modes    map[connKey][]metric.AddOption
	listen   map[string][]metric.AddOption
}

// upstreamOpts are the measurement options for one upstream. Each is a
// one-element slice so that passing it as opts... does not allocate a new
// variadic slice per call.
type upstreamOpts struct {
	up  []metric.AddOption
	c2u []metric.AddOption
	u2c []metric.AddOption
}

type connKey struct {
	upstream string
	mode     failure.Mode
}

// PrometheusProvider is an OpenTelemetry SDK MeterProvider whose reader is a
// Prometheus exporter registered on a registry of its own (never the
// client_golang default registry), so several relays in one process, and
// tests, stay independent. Handler serves that registry.
type PrometheusProvider struct {
	*sdkmetric.MeterProvider
	handler http.Handler
	zero    *zeroHistograms
}

// NewPrometheusProvider builds a PrometheusProvider. The registry also
// carries the Go runtime and process collectors (heap size against the
// pod's memory limit is the first thing to look at when a relay is
// OOM-killed). Extra SDK options may add readers (e.g. an OTLP periodic
// reader) or replace the resource.
func NewPrometheusProvider(opts ...sdkmetric.Option) (*PrometheusProvider, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("registering Go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("registering process collector: %w", err)
	}
	// Scope labels (otel_scope_name, ...) would be added to every series;
	// there is only one scope here, so they carry no information.
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("creating Prometheus exporter: %w", err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", "ccproxy"))
	all := append([]sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(exp)}, opts...)
	zero := &zeroHistograms{g: reg}
	return &PrometheusProvider{
		MeterProvider: sdkmetric.NewMeterProvider(all...),
		zero:          zero,
		handler: promhttp.HandlerFor(zero, promhttp.HandlerOpts{
			// A failing collector should not blank the whole page.
			ErrorHandling: promhttp.ContinueOnError,
		}),
	}, nil
}

// Handler serves the provider's metrics in the Prometheus text format.
func (p *PrometheusProvider) Handler() http.Handler { return p.handler }

// NewMetrics creates the relay's instruments on provider. With a nil
// provider it creates and owns a PrometheusProvider (the usual case; call
// Shutdown when done). With a *PrometheusProvider, Handler serves it; with
// any other provider Handler returns nil and the metrics reach whatever
// readers that provider has.
func NewMetrics(provider metric.MeterProvider) (*Metrics, error) {
	m := &Metrics{
		upstream: make(map[string]*upstreamOpts),
		modes:    make(map[connKey][]metric.AddOption),
		listen:   make(map[string][]metric.AddOption),
	}
	if provider == nil {
		p, err := NewPrometheusProvider()
		if err != nil {
			return nil, err
		}
		provider, m.shutdown = p, p.Shutdown
	}
	if h, ok := provider.(interface{ Handler() http.Handler }); ok {
		m.handler = h.Handler()
	}

	meter := provider.Meter("github.com/ccproxy-dev/ccproxy/internal/admin")
	var err, e error
	m.conns, e = meter.Int64Counter(nameConnections,
		metric.WithUnit("{connection}"),
		metric.WithDescription("Client connections ended, by failure mode and upstream."))
	err = errors.Join(err, e)
	m.active, e = meter.Int64UpDownCounter(nameActive,
		metric.WithUnit("{connection}"),
		metric.WithDescription("Client connections being relayed now."))
	err = errors.Join(err, e)
	m.forwarded, e = meter.Int64Counter(nameForwarded,
		metric.WithUnit("By"),
		metric.WithDescription("Bytes forwarded, by direction and upstream."))
	err = errors.Join(err, e)
	m.refused, e = meter.Int64Counter(nameRefused,
		metric.WithUnit("{connection}"),
		metric.WithDescription("Client connections refused because the maximum number of connections was reached."))
	err = errors.Join(err, e)
	m.exhausted, e = meter.Int64Counter(nameExhausted,
		metric.WithUnit("{operation}"),
		metric.WithDescription("Accepts and upstream dials that failed because this process or host ran out of a resource (EMFILE, ENFILE, ENOBUFS, ENOMEM, EADDRNOTAVAIL), by op (accept or dial)."))
	err = errors.Join(err, e)
	for _, op := range []string{"accept", "dial"} {
		m.exhausted.Add(context.Background(), 0, metric.WithAttributes(keyOp.String(op)))
	}
	m.dropped, e = meter.Int64Counter(nameSpansDropped,
		metric.WithUnit("{span}"),
		metric.WithDescription("Spans dropped because the exporter could not keep up."))
	err = errors.Join(err, e)
	m.folded, e = meter.Int64Counter(nameFolded,
		metric.WithUnit("{span}"),
		metric.WithDescription("Connections whose root span was folded into their CLI run's summary (ccproxy.run) instead of written: counted in ccproxy_connections_total, not traced one by one."))
	err = errors.Join(err, e)
	m.handshake, e = meter.Float64Histogram(nameHandshake,
		metric.WithUnit("s"),
		metric.WithDescription(descHandshake),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	err = errors.Join(err, e)
	m.issuer, e = meter.Float64Histogram(nameIssuer,
		metric.WithUnit("s"),
		metric.WithDescription(descIssuer),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	err = errors.Join(err, e)
	m.probes, e = meter.Int64Counter(nameProbes,
		metric.WithUnit("{probe}"),
		metric.WithDescription("Connections whose verdict an active probe of the upstream refined, by upstream and the failure mode the probe named (a cached probe result counts once per connection it refined)."),
	)
	err = errors.Join(err, e)
	if err != nil {
		if m.shutdown != nil {
			_ = m.shutdown(context.Background())
		}
		return nil, fmt.Errorf("creating instruments: %w", err)
	}
	// The series without labels exist from the start: a counter at zero
	// through the SDK (so every reader sees it), the histograms, which
	// the SDK cannot create without an observation, on our own /metrics.
	m.dropped.Add(context.Background(), 0)
	if p, ok := provider.(*PrometheusProvider); ok {
		p.zero.add(zeroHistogram(promHandshake, descHandshake, latencyBuckets))
		p.zero.add(zeroHistogram(promIssuer, descIssuer, latencyBuckets))
	}
	return m, nil
}

// InitRoute puts every series of one relayed route on /metrics at zero:
// ccproxy_connections_total and ccproxy_probes_total for every failure
// mode of the contract (failure.All), ccproxy_connections_active and
// ccproxy_forwarded_bytes_total in both directions for upstream, and
// ccproxy_connections_refused_total for listen (skipped when listen is
// empty). Prometheus's instrumentation guidance asks for this: a series
// that appears only with its first event makes rate() and alerts read "no
// data" exactly while nothing has gone wrong, and hides the label values a
// dashboard can filter on. Call it once per configured route before
// serving; calling it again, or after traffic, adds nothing.
func (m *Metrics) InitRoute(listen, upstream string) {
	if m == nil {
		return
	}
	ctx := context.Background()
	o := m.upstreamOpts(upstream)
	m.active.Add(ctx, 0, o.up...)
	m.folded.Add(ctx, 0, o.up...)
	m.forwarded.Add(ctx, 0, o.c2u...)
	m.forwarded.Add(ctx, 0, o.u2c...)
	for _, mode := range failure.All {
		opts := m.modeOpts(upstream, mode)
		m.conns.Add(ctx, 0, opts...)
		m.probes.Add(ctx, 0, opts...)
	}
	if listen != "" {
		m.refused.Add(ctx, 0, m.listenOpts(listen)...)
	}
}

// Handler serves the metrics in the Prometheus text format, or is nil when
// the provider passed to NewMetrics is read by something else.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return nil
	}
	return m.handler
}

// Shutdown releases the provider NewMetrics created; it does nothing for a
// provider the caller passed in (the caller owns that one).
func (m *Metrics) Shutdown(ctx context.Context) error {
	if m == nil || m.shutdown == nil {
		return nil
	}
	if err := m.shutdown(ctx); err != nil {
		return fmt.Errorf("shutting down meter provider: %w", err)
	}
	return nil
}

// ConnOpened counts a client connection that the relay started to serve
// towards upstream (as configured).
func (m *Metrics) ConnOpened(upstream string) {
	if m == nil {
		return
	}
	m.active.Add(context.Background(), 1, m.upstreamOpts(upstream).up...)
}

// ConnClosed counts a finished connection under its failure mode and the
// bytes it forwarded in each direction. Call it once per ConnOpened.
func (m *Metrics) ConnClosed(upstream string, mode failure.Mode, c2u, u2c int64) {
	if m == nil {
		return
	}
	ctx := context.Background()
	o := m.upstreamOpts(upstream)
	m.active.Add(ctx, -1, o.up...)
	m.conns.Add(ctx, 1, m.modeOpts(upstream, mode)...)
	// Counters reject negative increments; a negative count is a caller bug,
	// not traffic.
	if c2u > 0 {
		m.forwarded.Add(ctx, c2u, o.c2u...)
	}
	if u2c > 0 {
		m.forwarded.Add(ctx, u2c, o.u2c...)
	}
}

// ConnRefused counts a client connection on listen that was turned away
// because the maximum number of connections was reached.
func (m *Metrics) ConnRefused(listen string) {
	if m == nil {
		return
	}
	m.refused.Add(context.Background(), 1, m.listenOpts(listen)...)
}

// ResourceExhausted counts an accept or upstream dial (op) that failed
// because this process or host ran out of descriptors, buffers or ports.
func (m *Metrics) ResourceExhausted(op string) {
	if m == nil {
		return
	}
	m.exhausted.Add(context.Background(), 1, metric.WithAttributes(keyOp.String(op)))
}

// ObserveIssuer records the time from the forwarded ClientHello to the
// upstream's first byte.
func (m *Metrics) ObserveIssuer(d time.Duration) {
	if m == nil {
		return
	}
	m.issuer.Record(context.Background(), d.Seconds())
}

// ObserveHandshake records how long a TLS handshake took.
func (m *Metrics) ObserveHandshake(d time.Duration) {
	if m == nil {
		return
	}
	m.handshake.Record(context.Background(), d.Seconds())
}

// ProbeResult counts a connection to upstream whose verdict an active probe
// refined, under the failure mode the probe named.
func (m *Metrics) ProbeResult(upstream string, mode failure.Mode) {
	if m == nil {
		return
	}
	m.probes.Add(context.Background(), 1, m.modeOpts(upstream, mode)...)
}

// RootSpanFolded counts a connection to upstream whose root span its run
// folded (internal/runs).
func (m *Metrics) RootSpanFolded(upstream string) {
	if m == nil {
		return
	}
	m.folded.Add(context.Background(), 1, m.upstreamOpts(upstream).up...)
}

// SpansDropped counts n spans that were dropped instead of exported.
func (m *Metrics) SpansDropped(n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.dropped.Add(context.Background(), n)
}

func addOpt(kv ...attribute.KeyValue) []metric.AddOption {
	return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(kv...))}
}

func (m *Metrics) cacheFull() bool {
	return len(m.upstream)+len(m.modes)+len(m.listen) >= maxCachedAttrs
}

func (m *Metrics) upstreamOpts(upstream string) *upstreamOpts {
	m.mu.RLock()
	o, ok := m.upstream[upstream]
	m.mu.RUnlock()
	if ok {
		return o
	}
	up := keyUpstream.String(upstream)
	o = &upstreamOpts{
		up:  addOpt(up),
		c2u: addOpt(up, keyDirection.String(DirectionClientToUpstream)),
		u2c: addOpt(up, keyDirection.String(DirectionUpstreamToClient)),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if prev, ok := m.upstream[upstream]; ok {
		return prev
	}
	if !m.cacheFull() {
		m.upstream[upstream] = o
	}
	return o
}

func (m *Metrics) modeOpts(upstream string, mode failure.Mode) []metric.AddOption {
	k := connKey{upstream, mode}
	m.mu.RLock()
	o, ok := m.modes[k]
	m.mu.RUnlock()
	if ok {
		return o
	}
	o = addOpt(keyUpstream.String(upstream), keyFailureMode.String(string(mode)))
	m.mu.Lock()
	defer m.mu.Unlock()
	if prev, ok := m.modes[k]; ok {
		return prev
	}
	if !m.cacheFull() {
		m.modes[k] = o
	}
	return o
}

func (m *Metrics) listenOpts(listen string) []metric.AddOption {
	m.mu.RLock()
	o, ok := m.listen[listen]
	m.mu.RUnlock()
	if ok {
		return o
	}
	o = addOpt(keyListen.String(listen))
	m.mu.Lock()
	defer m.mu.Unlock()
	if prev, ok := m.listen[listen]; ok {
		return prev
	}
	if !m.cacheFull() {
		m.listen[listen] = o
	}
	return o
}
