package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// scrape fetches /metrics through the admin handler and parses it.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	New("", m, nil).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d, body %q", rec.Code, rec.Body.String())
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// series renders a sample as name{k="v",...} with sorted labels, the form
// the expectations below are written in.
func series(name string, mt *dto.Metric) string {
	var labels []string
	for _, l := range mt.GetLabel() {
		labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(labels)
	return name + "{" + strings.Join(labels, ",") + "}"
}

// values flattens the ccproxy_* families into series → value; histograms
// contribute _count and _sum.
func values(fams map[string]*dto.MetricFamily) map[string]float64 {
	out := make(map[string]float64)
	for name, fam := range fams {
		if !strings.HasPrefix(name, "ccproxy_") {
			continue
		}
		for _, mt := range fam.GetMetric() {
			switch fam.GetType() {
			case dto.MetricType_COUNTER:
				out[series(name, mt)] = mt.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[series(name, mt)] = mt.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[series(name+"_count", mt)] = float64(mt.GetHistogram().GetSampleCount())
				out[series(name+"_sum", mt)] = mt.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

func TestMetricValues(t *testing.T) {
	const up = "coordinator:1313"
	tests := []struct {
		name  string
		calls func(m *Metrics)
		want  map[string]float64
	}{
		{
			name:  "open counts as active",
			calls: func(m *Metrics) { m.ConnOpened(up); m.ConnOpened(up) },
			want:  map[string]float64{`ccproxy_connections_active{upstream="coordinator:1313"}`: 2},
		},
		{
			name: "close counts mode and bytes per direction",
			calls: func(m *Metrics) {
				m.ConnOpened(up)
				m.ConnOpened(up)
				m.ConnClosed(up, failure.OK, 517, 4096)
				m.ConnClosed(up, failure.LBClosedEarly, 300, 0)
			},
			want: map[string]float64{
				`ccproxy_connections_active{upstream="coordinator:1313"}`:                                   0,
				`ccproxy_connections_total{failure_mode="ok",upstream="coordinator:1313"}`:                  1,
				`ccproxy_connections_total{failure_mode="lb_closed_early",upstream="coordinator:1313"}`:     1,
				`ccproxy_forwarded_bytes_total{direction="client_to_upstream",upstream="coordinator:1313"}`: 817,
				`ccproxy_forwarded_bytes_total{direction="upstream_to_client",upstream="coordinator:1313"}`: 4096,
			},
		},
		{
			name: "upstreams are separate series",
			calls: func(m *Metrics) {
				m.ConnOpened("a:1313")
				m.ConnOpened("b:8200")
				m.ConnClosed("b:8200", failure.UpstreamRefused, 0, 0)
			},
			want: map[string]float64{
				`ccproxy_connections_active{upstream="a:1313"}`:                                1,
				`ccproxy_connections_active{upstream="b:8200"}`:                                0,
				`ccproxy_connections_total{failure_mode="upstream_refused",upstream="b:8200"}`: 1,
			},
		},
		{
			name:  "refused by listen address",
			calls: func(m *Metrics) { m.ConnRefused(":1313"); m.ConnRefused(":1313"); m.ConnRefused(":7777") },
			want: map[string]float64{
				`ccproxy_connections_refused_total{listen=":1313"}`: 2,
				`ccproxy_connections_refused_total{listen=":7777"}`: 1,
			},
		},
		{
			name: "resource exhaustion by op",
			calls: func(m *Metrics) {
				m.ResourceExhausted("accept")
				m.ResourceExhausted("dial")
				m.ResourceExhausted("dial")
			},
			want: map[string]float64{
				`ccproxy_resource_exhausted_total{op="accept"}`: 1,
				`ccproxy_resource_exhausted_total{op="dial"}`:   2,
			},
		},
		{
			name: "probe results by upstream and mode",
			calls: func(m *Metrics) {
				m.ProbeResult(up, failure.PolicyHashMismatch)
				m.ProbeResult(up, failure.PolicyHashMismatch)
				m.ProbeResult(up, failure.CoordinatorVersionMismatch)
			},
			want: map[string]float64{
				`ccproxy_probes_total{failure_mode="policy_hash_mismatch",upstream="coordinator:1313"}`:         2,
				`ccproxy_probes_total{failure_mode="coordinator_version_mismatch",upstream="coordinator:1313"}`: 1,
			},
		},
		{
			name:  "dropped spans add up, non-positive ignored",
			calls: func(m *Metrics) { m.SpansDropped(3); m.SpansDropped(0); m.SpansDropped(-5); m.SpansDropped(4) },
			want:  map[string]float64{`ccproxy_spans_dropped_total{}`: 7},
		},
		{
			name: "histograms in seconds",
			calls: func(m *Metrics) {
				m.ObserveIssuer(250 * time.Millisecond)
				m.ObserveIssuer(750 * time.Millisecond)
				m.ObserveHandshake(2 * time.Second)
			},
			want: map[string]float64{
				`ccproxy_issuer_latency_seconds_count{}`:     2,
				`ccproxy_issuer_latency_seconds_sum{}`:       1,
				`ccproxy_handshake_duration_seconds_count{}`: 1,
				`ccproxy_handshake_duration_seconds_sum{}`:   2,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMetrics(nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
			// What a fresh Metrics serves before any call: the label-less
			// series, at zero (TestFreshMetrics checks them).
			want := values(scrape(t, m))
			for k, v := range want {
				if v != 0 {
					t.Fatalf("fresh series %s = %v, want 0", k, v)
				}
			}
			for k, v := range tt.want {
				want[k] = v
			}
			tt.calls(m)
			got := values(scrape(t, m))
			for k, w := range want {
				v, ok := got[k]
				if !ok {
					t.Errorf("series %s missing; have %v", k, got)
					continue
				}
				if v != w {
					t.Errorf("%s = %v, want %v", k, v, w)
				}
			}
			// Nothing beyond what the calls produced: the exact set of
			// series is the contract dashboards are built on.
			for k := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("unexpected series %s = %v", k, got[k])
				}
			}
		})
	}
}

func TestHistogramBuckets(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	m.ObserveIssuer(3 * time.Millisecond)
	m.ObserveIssuer(21 * time.Second) // a Coordinator stuck on collateral fetches

	fam := scrape(t, m)["ccproxy_issuer_latency_seconds"]
	if fam == nil {
		t.Fatal("ccproxy_issuer_latency_seconds missing")
	}
	cum := make(map[float64]uint64)
	for _, b := range fam.GetMetric()[0].GetHistogram().GetBucket() {
		cum[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	for _, tc := range []struct {
		le   float64
		want uint64
	}{{0.0025, 0}, {0.005, 1}, {20, 1}, {25, 2}} {
		if got := cum[tc.le]; got != tc.want {
			t.Errorf("bucket le=%v: %d, want %d (buckets %v)", tc.le, got, tc.want, cum)
		}
	}
}

func TestRegistriesAreIndependent(t *testing.T) {
	a, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	b, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())

	a.ConnRefused(":1313")
	a.SpansDropped(2)
	if v := values(scrape(t, a))[`ccproxy_connections_refused_total{listen=":1313"}`]; v != 1 {
		t.Errorf("relay a: refused = %v, want 1", v)
	}
	got := values(scrape(t, b))
	if _, ok := got[`ccproxy_connections_refused_total{listen=":1313"}`]; ok {
		t.Errorf("relay b sees relay a's refused connections: %v", got)
	}
	for k, v := range got {
		if v != 0 {
			t.Errorf("relay b sees relay a's metrics: %s = %v", k, v)
		}
	}
}

func TestNilMetricsIsNoop(t *testing.T) {
	var m *Metrics
	m.ConnOpened("x")
	m.ConnClosed("x", failure.OK, 1, 1)
	m.ConnRefused(":1")
	m.ObserveIssuer(time.Second)
	m.ObserveHandshake(time.Second)
	m.SpansDropped(1)
	m.InitRoute(":1", "x")
	m.ProbeResult("x", failure.OK)
	if m.Handler() != nil {
		t.Error("nil Metrics has a handler")
	}
	if err := m.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown on nil: %v", err)
	}
}

// A caller-owned provider receives the measurements; Handler is nil because
// the caller's readers, not this package, decide where they go.
func TestCallerProvider(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	m, err := NewMetrics(mp)
	if err != nil {
		t.Fatal(err)
	}
	if m.Handler() != nil {
		t.Error("Handler for a caller-owned non-Prometheus provider should be nil")
	}
	m.ConnClosed("u:1", failure.IssuerError, 10, 0)
	if err := m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect after Metrics.Shutdown (must not shut down the caller's provider): %v", err)
	}
	var found bool
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			if md.Name != nameConnections {
				continue
			}
			sum := md.Data.(metricdata.Sum[int64])
			for _, dp := range sum.DataPoints {
				mode, _ := dp.Attributes.Value(keyFailureMode)
				if mode.AsString() == "issuer_error" && dp.Value == 1 {
					found = true
				}
			}
		}
	}
	if !found {
		t.Errorf("no %s data point with failure_mode=issuer_error: %+v", nameConnections, rm)
	}
}

// A shared PrometheusProvider is served through Metrics.Handler.
func TestPrometheusProviderShared(t *testing.T) {
	p, err := NewPrometheusProvider()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	m, err := NewMetrics(p)
	if err != nil {
		t.Fatal(err)
	}
	m.SpansDropped(9)
	if v := values(scrape(t, m))["ccproxy_spans_dropped_total{}"]; v != 9 {
		t.Errorf("spans dropped = %v, want 9", v)
	}
	if fams := scrape(t, m); fams["go_goroutines"] == nil {
		t.Error("Go runtime collector missing from the registry")
	}
}

func TestAttributeCacheIsBounded(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	for i := range maxCachedAttrs + 100 {
		m.ConnRefused(fmt.Sprintf("127.0.0.1:%d", i))
	}
	m.mu.RLock()
	n := len(m.upstream) + len(m.modes) + len(m.listen)
	m.mu.RUnlock()
	if n > maxCachedAttrs {
		t.Errorf("cache holds %d attribute sets, bound is %d", n, maxCachedAttrs)
	}
	// Calls past the bound still count.
	m.ConnRefused("127.0.0.1:1")
	m.ConnRefused(fmt.Sprintf("127.0.0.1:%d", maxCachedAttrs+50))
	got := values(scrape(t, m))
	if v := got[`ccproxy_connections_refused_total{listen="127.0.0.1:1"}`]; v != 2 {
		t.Errorf("cached listen: %v, want 2", v)
	}
}

// The relay calls these once per connection: after the first call for an
// upstream they must not allocate per call beyond what the SDK itself does.
func TestPerConnectionAllocations(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	const up = "coordinator:1313"
	m.ConnOpened(up)
	m.ConnClosed(up, failure.OK, 1, 1)
	allocs := testing.AllocsPerRun(200, func() {
		m.ConnOpened(up)
		m.ConnClosed(up, failure.OK, 517, 4096)
		m.ObserveIssuer(time.Millisecond)
		m.ObserveHandshake(time.Millisecond)
	})
	if allocs > 0 {
		t.Errorf("one connection's metrics allocate %v times, want 0", allocs)
	}
}

func BenchmarkConnection(b *testing.B) {
	m, err := NewMetrics(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	b.ReportAllocs()
	for b.Loop() {
		m.ConnOpened("coordinator:1313")
		m.ConnClosed("coordinator:1313", failure.OK, 517, 4096)
	}
}
