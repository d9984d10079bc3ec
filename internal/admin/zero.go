package admin

import (
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// zeroHistograms serves a histogram family at zero (every bucket, the count
// and the sum 0) until the exporter has a real one of that name. The
// OpenTelemetry SDK creates a histogram's data point only with its first
// observation, and there is no API to create it empty; counters are put at
// zero through the SDK instead (Metrics.InitRoute). Only label-less
// histograms are filled: one family, one series.
type zeroHistograms struct {
	g prometheus.Gatherer

	mu   sync.RWMutex
	fams []*dto.MetricFamily // read-only once added
}

func (z *zeroHistograms) add(f *dto.MetricFamily) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, have := range z.fams {
		if have.GetName() == f.GetName() {
			return
		}
	}
	z.fams = append(z.fams, f)
}

// Gather implements prometheus.Gatherer: what the registry has, plus each
// zero family the registry does not have yet, in name order as a registry
// returns them.
func (z *zeroHistograms) Gather() ([]*dto.MetricFamily, error) {
	got, err := z.g.Gather()
	z.mu.RLock()
	defer z.mu.RUnlock()
	added := false
	for _, f := range z.fams {
		if !slices.ContainsFunc(got, func(g *dto.MetricFamily) bool { return g.GetName() == f.GetName() }) {
			got = append(got, f)
			added = true
		}
	}
	if added {
		slices.SortFunc(got, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	}
	return got, err
}

// zeroHistogram is a label-less histogram family with no observations, in
// the form the exporter gives one with observations.
func zeroHistogram(name, help string, bounds []float64) *dto.MetricFamily {
	h := &dto.Histogram{SampleCount: proto.Uint64(0), SampleSum: proto.Float64(0)}
	for _, b := range bounds {
		h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: proto.Float64(b), CumulativeCount: proto.Uint64(0)})
	}
	return &dto.MetricFamily{
		Name:   proto.String(name),
		Help:   proto.String(help),
		Type:   dto.MetricType_HISTOGRAM.Enum(),
		Metric: []*dto.Metric{{Histogram: h}},
	}
}
