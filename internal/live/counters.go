package live

import (
	"bytes"
	"fmt"
	"net/http"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Counters are the relay's running counts the page reads: connections
// ended per failure mode since the start (the chart is their differences
// over time) and connections open now per upstream.
type Counters interface {
	ModeTotals() (map[string]int64, error)
}

// The admin metrics' series the page reads (internal/admin): the same
// numbers /metrics serves, so the page and Prometheus never disagree, and
// exact while internal/runs folds attempts out of the trace.
const (
	metricConns  = "ccproxy_connections_total"  // {upstream, failure_mode}
	metricActive = "ccproxy_connections_active" // {upstream}
	labelMode    = "failure_mode"
	labelUp      = "upstream"
)

// MetricsCounters reads the relay's admin metrics through their /metrics
// handler (admin.Metrics.Handler) in process: no counter of the page's own
// runs per connection.
type MetricsCounters struct {
	Handler http.Handler
}

// ModeTotals sums ccproxy_connections_total per failure mode over the
// upstreams.
func (m MetricsCounters) ModeTotals() (map[string]int64, error) {
	fams, err := m.scrape()
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, mt := range fams[metricConns].GetMetric() {
		if v := mt.GetCounter().GetValue(); v > 0 {
			out[label(mt, labelMode)] += int64(v)
		}
	}
	return out, nil
}

// Open returns ccproxy_connections_active per upstream.
func (m MetricsCounters) Open() (map[string]int64, error) {
	fams, err := m.scrape()
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, mt := range fams[metricActive].GetMetric() {
		v := mt.GetGauge().GetValue()
		if mt.GetGauge() == nil {
			v = mt.GetCounter().GetValue()
		}
		out[label(mt, labelUp)] += int64(v)
	}
	return out, nil
}

func (m MetricsCounters) scrape() (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequest(http.MethodGet, "/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("reading the relay's metrics: %w", err)
	}
	// The text format, whatever the exporter would negotiate.
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	rec := &recorder{code: http.StatusOK, header: http.Header{}}
	m.Handler.ServeHTTP(rec, req)
	if rec.code != http.StatusOK {
		return nil, fmt.Errorf("reading the relay's metrics: status %d", rec.code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(&rec.body)
	if err != nil {
		return nil, fmt.Errorf("reading the relay's metrics: %w", err)
	}
	return fams, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// recorder is the http.ResponseWriter of an in-process scrape.
type recorder struct {
	code   int
	header http.Header
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }
