package main

import (
	"fmt"
	"io"
	"maps"
	"slices"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Exposed is what a /metrics page offers a query: every series name
// Prometheus stores from it (a histogram's _bucket, _sum and _count, a
// summary's quantiles, _sum and _count) and the label names each one has.
type Exposed struct {
	labels map[string]map[string]bool // series name → label names
	// Target labels are added by Prometheus to every series it scrapes
	// (job, instance; namespace, pod, ... through a PodMonitor).
	target map[string]bool
}

// ParseExposition reads a /metrics page in the Prometheus text format.
func ParseExposition(r io.Reader, targetLabels []string) (*Exposed, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing the metrics page: %w", err)
	}
	e := &Exposed{labels: map[string]map[string]bool{}, target: map[string]bool{}}
	for _, l := range targetLabels {
		e.target[l] = true
	}
	for name, f := range fams {
		var names []string
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			e.add(name+"_bucket", f, "le")
			names = []string{name + "_sum", name + "_count"}
		case dto.MetricType_SUMMARY:
			e.add(name, f, "quantile")
			names = []string{name + "_sum", name + "_count"}
		default:
			names = []string{name}
		}
		for _, n := range names {
			e.add(n, f)
		}
	}
	return e, nil
}

func (e *Exposed) add(series string, f *dto.MetricFamily, extra ...string) {
	set := e.labels[series]
	if set == nil {
		set = map[string]bool{}
		e.labels[series] = set
	}
	for _, l := range extra {
		set[l] = true
	}
	for _, m := range f.GetMetric() {
		for _, lp := range m.GetLabel() {
			set[lp.GetName()] = true
		}
	}
}

// Has reports whether series is on the page.
func (e *Exposed) Has(series string) bool { _, ok := e.labels[series]; return ok }

// HasLabel reports whether series carries label, on the page or as a
// target label.
func (e *Exposed) HasLabel(series, label string) bool {
	return e.target[label] || e.labels[series][label]
}

// Labels are the label names of series, target labels included, sorted.
func (e *Exposed) Labels(series string) []string {
	out := slices.Collect(maps.Keys(e.labels[series]))
	for l := range e.target {
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// Len is the number of series names on the page.
func (e *Exposed) Len() int { return len(e.labels) }
