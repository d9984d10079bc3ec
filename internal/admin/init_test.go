package admin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// The socat pod's routes (deploy/socat-replacement.yaml: LISTEN_PORTS and
// FORWARD_HOST).
var socatRoutes = [][2]string{
	{":1313", "coordinator:1313"},
	{":1314", "coordinator:1314"},
	{":7777", "coordinator:7777"},
	{":8200", "coordinator:8200"},
}

// serveAndScrape starts a real admin server on a loopback port, GETs
// /metrics over TCP like Prometheus does and parses the answer.
func serveAndScrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New("", m, nil).ServeListener(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("admin server: %v", err)
		}
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// labelSets renders each series of a family as its sorted labels,
// k="v",... (histogram buckets are one series: le is not a label here).
func labelSets(f *dto.MetricFamily) []string {
	var out []string
	for _, mt := range f.GetMetric() {
		s := series("", mt)
		out = append(out, s[1:len(s)-1])
	}
	sort.Strings(out)
	return out
}

// product is every combination of one value per label, rendered like
// labelSets.
func product(labels []string, values ...[]string) []string {
	out := []string{""}
	for i, l := range labels {
		var next []string
		for _, prefix := range out {
			for _, v := range values[i] {
				kv := l + `="` + v + `"`
				if prefix != "" {
					kv = prefix + "," + kv
				}
				next = append(next, kv)
			}
		}
		out = next
	}
	sort.Strings(out)
	return out
}

// A fresh relay serves every ccproxy_* family, with every label set its
// configuration and the contract make known, at zero: alerts on rate() and
// dashboard panels read 0, not "no data", before the first connection.
func TestFreshMetrics(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	var listens, upstreams []string
	for _, r := range socatRoutes {
		m.InitRoute(r[0], r[1])
		listens, upstreams = append(listens, r[0]), append(upstreams, r[1])
	}
	modes := make([]string, len(failure.All))
	for i, mode := range failure.All {
		modes[i] = string(mode)
	}
	directions := []string{DirectionClientToUpstream, DirectionUpstreamToClient}

	want := map[string][]string{
		"ccproxy_connections_total":          product([]string{"failure_mode", "upstream"}, modes, upstreams),
		"ccproxy_probes_total":               product([]string{"failure_mode", "upstream"}, modes, upstreams),
		"ccproxy_connections_active":         product([]string{"upstream"}, upstreams),
		"ccproxy_root_spans_folded_total":    product([]string{"upstream"}, upstreams),
		"ccproxy_forwarded_bytes_total":      product([]string{"direction", "upstream"}, directions, upstreams),
		"ccproxy_connections_refused_total":  product([]string{"listen"}, listens),
		"ccproxy_spans_dropped_total":        {""},
		"ccproxy_resource_exhausted_total":   product([]string{"op"}, []string{"accept", "dial"}),
		"ccproxy_handshake_duration_seconds": {""},
		"ccproxy_issuer_latency_seconds":     {""},
	}
	fams := serveAndScrape(t, m)
	for name, sets := range want {
		f := fams[name]
		if f == nil {
			t.Errorf("%s missing from a fresh /metrics", name)
			continue
		}
		if got := labelSets(f); !slices.Equal(got, sets) {
			t.Errorf("%s: %d label sets, want %d\ngot  %v\nwant %v", name, len(got), len(sets), got, sets)
		}
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "ccproxy_") {
			continue
		}
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected family %s: add it to this test (and initialize it)", name)
		}
		for _, mt := range f.GetMetric() {
			if v := sampleValue(f.GetType(), mt); v != 0 {
				t.Errorf("%s: %s = %v on a fresh relay, want 0", name, series(name, mt), v)
			}
		}
	}
	if got := len(fams["ccproxy_connections_total"].GetMetric()); got != len(failure.All)*len(socatRoutes) {
		t.Errorf("ccproxy_connections_total: %d series, want %d failure modes × %d routes", got, len(failure.All), len(socatRoutes))
	}
	// The standard collectors the memory panel and alert read.
	for _, name := range []string{"process_resident_memory_bytes", "go_memstats_heap_inuse_bytes", "go_gc_gomemlimit_bytes"} {
		if fams[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
}

// sampleValue is a series' value; for a histogram, its count plus sum plus
// every bucket, so that it is 0 only if all of them are.
func sampleValue(typ dto.MetricType, mt *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return mt.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return mt.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		h := mt.GetHistogram()
		v := float64(h.GetSampleCount()) + h.GetSampleSum()
		for _, b := range h.GetBucket() {
			v += float64(b.GetCumulativeCount())
		}
		return v
	}
	return -1
}

// Every family that some call produces is on a fresh /metrics already, with
// the same type and label names: a new instrument that is not initialized
// fails here.
func TestFreshMetricsCoverEveryInstrument(t *testing.T) {
	fresh, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Shutdown(context.Background())
	fresh.InitRoute(":1313", "coordinator:1313")

	used, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer used.Shutdown(context.Background())
	used.ConnOpened("coordinator:1313")
	used.ConnClosed("coordinator:1313", failure.IssuerTimeout, 10, 20)
	used.ConnRefused(":1313")
	used.ProbeResult("coordinator:1313", failure.PolicyHashMismatch)
	used.SpansDropped(1)
	used.RootSpanFolded("coordinator:1313")
	used.ObserveIssuer(time.Second)
	used.ObserveHandshake(time.Second)

	a, b := serveAndScrape(t, fresh), serveAndScrape(t, used)
	for name, fu := range b {
		if !strings.HasPrefix(name, "ccproxy_") {
			continue
		}
		ff := a[name]
		if ff == nil {
			t.Errorf("%s appears only after its first event", name)
			continue
		}
		if ff.GetType() != fu.GetType() || ff.GetHelp() != fu.GetHelp() {
			t.Errorf("%s: fresh %v %q, used %v %q", name, ff.GetType(), ff.GetHelp(), fu.GetType(), fu.GetHelp())
		}
		if got, want := labelNames(ff), labelNames(fu); !slices.Equal(got, want) {
			t.Errorf("%s: fresh label names %v, used %v", name, got, want)
		}
		if fu.GetType() == dto.MetricType_HISTOGRAM {
			if got, want := bounds(ff), bounds(fu); !slices.Equal(got, want) {
				t.Errorf("%s: fresh bucket bounds %v, used %v", name, got, want)
			}
		}
	}
	for name := range a {
		if strings.HasPrefix(name, "ccproxy_") && b[name] == nil {
			t.Errorf("%s is served fresh but disappears once used", name)
		}
	}
}

func labelNames(f *dto.MetricFamily) []string {
	var out []string
	for _, mt := range f.GetMetric() {
		for _, l := range mt.GetLabel() {
			if !slices.Contains(out, l.GetName()) {
				out = append(out, l.GetName())
			}
		}
	}
	sort.Strings(out)
	return out
}

func bounds(f *dto.MetricFamily) []float64 {
	var out []float64
	for _, b := range f.GetMetric()[0].GetHistogram().GetBucket() {
		out = append(out, b.GetUpperBound())
	}
	return out
}

// The zero histogram gives way to the exporter's once there is an
// observation: one family, with the observation in it.
func TestZeroHistogramGivesWay(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	m.ObserveIssuer(3 * time.Second)
	fams := serveAndScrape(t, m) // the parser rejects a family served twice
	if n := len(fams[promIssuer].GetMetric()); n != 1 {
		t.Fatalf("%s: %d series, want 1", promIssuer, n)
	}
	if c := fams[promIssuer].GetMetric()[0].GetHistogram().GetSampleCount(); c != 1 {
		t.Errorf("%s count = %d, want 1", promIssuer, c)
	}
	if c := fams[promHandshake].GetMetric()[0].GetHistogram().GetSampleCount(); c != 0 {
		t.Errorf("%s count = %d, want 0 (still the zero one)", promHandshake, c)
	}
}

// InitRoute never resets what was counted, and a second call adds nothing.
func TestInitRouteKeepsCounts(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	const up = "coordinator:1313"
	m.InitRoute(":1313", up)
	m.ConnOpened(up)
	m.ConnClosed(up, failure.LBClosedEarly, 5, 0)
	m.ConnRefused(":1313")
	m.InitRoute(":1313", up)
	m.InitRoute("", up) // no listen address: no refused series for ""
	got := values(scrape(t, m))
	for k, want := range map[string]float64{
		`ccproxy_connections_total{failure_mode="lb_closed_early",upstream="coordinator:1313"}`:     1,
		`ccproxy_connections_total{failure_mode="ok",upstream="coordinator:1313"}`:                  0,
		`ccproxy_connections_refused_total{listen=":1313"}`:                                         1,
		`ccproxy_forwarded_bytes_total{direction="client_to_upstream",upstream="coordinator:1313"}`: 5,
		`ccproxy_connections_active{upstream="coordinator:1313"}`:                                   0,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", k, v, ok, want)
		}
	}
	if _, ok := got[`ccproxy_connections_refused_total{listen=""}`]; ok {
		t.Error(`InitRoute with no listen address made a listen="" series`)
	}
}

// A Gather error from the registry reaches promhttp with whatever families
// were gathered, and the zero families are still added.
func TestZeroHistogramsKeepGatherError(t *testing.T) {
	boom := errors.New("collector failed")
	z := &zeroHistograms{g: gathererFunc(func() ([]*dto.MetricFamily, error) { return nil, boom })}
	z.add(zeroHistogram("b_seconds", "b", []float64{1}))
	z.add(zeroHistogram("a_seconds", "a", []float64{1}))
	z.add(zeroHistogram("a_seconds", "a again", []float64{1}))
	fams, err := z.Gather()
	if !errors.Is(err, boom) {
		t.Errorf("error %v, want %v", err, boom)
	}
	var names []string
	for _, f := range fams {
		names = append(names, f.GetName())
	}
	if !slices.Equal(names, []string{"a_seconds", "b_seconds"}) {
		t.Errorf("families %v, want [a_seconds b_seconds] (sorted, each once)", names)
	}
}

type gathererFunc func() ([]*dto.MetricFamily, error)

func (f gathererFunc) Gather() ([]*dto.MetricFamily, error) { return f() }
