package analyze

import (
	"math"
	"sort"
	"strconv"
	"time"
)

// Options select and shape a summary. The zero value summarises everything
// with automatic time buckets.
type Options struct {
	// Since drops connections that started before it (zero: keep all).
	Since time.Time
	// Mode keeps only connections with this failure mode ("": all).
	Mode string
	// Bucket is the width of the time buckets (0: chosen from the span of
	// the data, at most maxAutoBuckets buckets).
	Bucket time.Duration
	// TopDetails is how many of the most frequent details to list (0: 10).
	TopDetails int
}

func (o Options) topDetails() int {
	if o.TopDetails > 0 {
		return o.TopDetails
	}
	return 10
}

// Keep reports whether c passes the options' filters.
func (o Options) Keep(c Connection) bool {
	if !o.Since.IsZero() && c.Start.Before(o.Since) {
		return false
	}
	return o.Mode == "" || c.Mode == o.Mode
}

// Summary is the result of Summarize; it marshals to the JSON that
// `ccproxy analyze --output json` prints.
//
// Connections counts every connection selected; those whose client sent
// nothing (Connection.SentNothing) are counted in SentNothing only, and
// Modes, Details, FirstByte and the Modes of each upstream and bucket
// describe the rest, so that health checks and port scans do not top the
// failures. Upstream and bucket counts include both.
type Summary struct {
	Connections int       `json:"connections"`
	From        time.Time `json:"from,omitzero"`
	To          time.Time `json:"to,omitzero"`
	Filter      Filter    `json:"filter"`
	Read        ReadStats `json:"read"`
	// Runs groups the connections into CLI runs (RunCollector.Report);
	// Summarize leaves it empty, the caller fills it.
	Runs        RunReport    `json:"runs"`
	SentNothing SentNothing  `json:"sent_nothing"`
	Modes       []ModeCount  `json:"modes"`
	Upstreams   []Upstream   `json:"upstreams"`
	BucketMS    int64        `json:"bucket_ms"`
	BucketNote  string       `json:"bucket_note,omitempty"`
	Buckets     []Bucket     `json:"buckets"`
	FirstByte   Percentiles  `json:"first_byte_ms"`
	Details     []DetailRank `json:"top_details"`
}

// Filter echoes the options that selected the connections.
type Filter struct {
	Since time.Time `json:"since,omitzero"`
	Mode  string    `json:"mode,omitempty"`
}

// SentNothing counts the connections set apart from the failures: ended
// (client_aborted) without a single byte from the client, as port scans, TCP
// health checks and clients that gave up to retry leave them.
type SentNothing struct {
	Count int       `json:"count"`
	First time.Time `json:"first,omitzero"`
	Last  time.Time `json:"last,omitzero"`
}

// ModeCount is how often a failure mode occurred and when.
type ModeCount struct {
	Mode  string `json:"mode"`
	Count int    `json:"count"`
	// Percent is of the connections that sent something (Connections
	// minus SentNothing), which the modes add up to.
	Percent float64   `json:"percent"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
}

// Upstream is the breakdown for one upstream address. Count includes
// SentNothing; Modes does not.
type Upstream struct {
	Address     string         `json:"address"`
	Count       int            `json:"count"`
	OK          int            `json:"ok"`
	SentNothing int            `json:"sent_nothing"`
	Modes       map[string]int `json:"modes"`
	FirstByte   Percentiles    `json:"first_byte_ms"`
}

// Bucket counts the connections that started in [Start, Start+bucket).
// Total includes SentNothing; Modes does not.
type Bucket struct {
	Start       time.Time      `json:"start"`
	Total       int            `json:"total"`
	SentNothing int            `json:"sent_nothing,omitempty"`
	Modes       map[string]int `json:"modes"`
}

// Percentiles of a set of millisecond values (nearest rank).
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// DetailRank is one failure detail and how often it occurred.
type DetailRank struct {
	Mode   string `json:"mode"`
	Detail string `json:"detail"`
	Count  int    `json:"count"`
}

// maxAutoBuckets bounds the number of automatic time buckets: enough to see
// a trend, few enough to read in a terminal.
const maxAutoBuckets = 24

// maxBuckets bounds the buckets of a user-chosen width, so that a tiny width
// over a long span cannot exhaust memory.
const maxBuckets = 10000

// bucketLadder are the automatic bucket widths, smallest first.
var bucketLadder = []time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour,
}

// AutoBucket picks the smallest ladder width that covers span in at most
// maxAutoBuckets buckets.
func AutoBucket(span time.Duration) time.Duration {
	for _, b := range bucketLadder {
		if span/b < maxAutoBuckets {
			return b
		}
	}
	return bucketLadder[len(bucketLadder)-1] * time.Duration(span/(bucketLadder[len(bucketLadder)-1]*maxAutoBuckets)+1)
}

// Summarize filters conns with opts and summarises the rest.
func Summarize(conns []Connection, opts Options) Summary {
	s := Summary{
		Filter:    Filter{Since: opts.Since, Mode: opts.Mode},
		Runs:      RunReport{Listed: []Run{}},
		Modes:     []ModeCount{},
		Upstreams: []Upstream{},
		Buckets:   []Bucket{},
		Details:   []DetailRank{},
	}
	var kept []Connection
	for _, c := range conns {
		if opts.Keep(c) {
			if c.Mode == "" {
				c.Mode = unknownMode
			}
			if c.Upstream == "" {
				c.Upstream = unknownUpstream
			}
			kept = append(kept, c)
		}
	}
	s.Connections = len(kept)
	if len(kept) == 0 {
		return s
	}
	sort.SliceStable(kept, func(i, j int) bool { return kept[i].Start.Before(kept[j].Start) })
	s.From, s.To = kept[0].Start, kept[len(kept)-1].Start

	modes := map[string]*ModeCount{}
	ups := map[string]*Upstream{}
	upFirstByte := map[string][]float64{}
	details := map[[2]string]int{}
	var firstBytes []float64
	for _, c := range kept {
		u := ups[c.Upstream]
		if u == nil {
			u = &Upstream{Address: c.Upstream, Modes: map[string]int{}}
			ups[c.Upstream] = u
		}
		u.Count++
		if c.SentNothing() {
			u.SentNothing++
			if s.SentNothing.Count == 0 {
				s.SentNothing.First = c.Start
			}
			s.SentNothing.Count++
			s.SentNothing.Last = c.Start
			continue
		}

		m := modes[c.Mode]
		if m == nil {
			m = &ModeCount{Mode: c.Mode, First: c.Start}
			modes[c.Mode] = m
		}
		m.Count++
		m.Last = c.Start

		u.Modes[c.Mode]++
		if c.Mode == "ok" {
			u.OK++
		}
		if c.HasFirstByte && !math.IsNaN(c.FirstByteMS) && !math.IsInf(c.FirstByteMS, 0) {
			firstBytes = append(firstBytes, c.FirstByteMS)
			upFirstByte[c.Upstream] = append(upFirstByte[c.Upstream], c.FirstByteMS)
		}
		if c.Detail != "" {
			details[[2]string{c.Mode, c.Detail}]++
		}
	}

	sent := len(kept) - s.SentNothing.Count
	for _, m := range modes {
		m.Percent = round1(100 * float64(m.Count) / float64(sent))
		s.Modes = append(s.Modes, *m)
	}
	sort.Slice(s.Modes, func(i, j int) bool {
		if s.Modes[i].Count != s.Modes[j].Count {
			return s.Modes[i].Count > s.Modes[j].Count
		}
		return s.Modes[i].Mode < s.Modes[j].Mode
	})
	for addr, u := range ups {
		u.FirstByte = percentiles(upFirstByte[addr])
		s.Upstreams = append(s.Upstreams, *u)
	}
	sort.Slice(s.Upstreams, func(i, j int) bool {
		if s.Upstreams[i].Count != s.Upstreams[j].Count {
			return s.Upstreams[i].Count > s.Upstreams[j].Count
		}
		return s.Upstreams[i].Address < s.Upstreams[j].Address
	})
	s.FirstByte = percentiles(firstBytes)
	for k, n := range details {
		s.Details = append(s.Details, DetailRank{Mode: k[0], Detail: k[1], Count: n})
	}
	sort.Slice(s.Details, func(i, j int) bool {
		a, b := s.Details[i], s.Details[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Mode != b.Mode {
			return a.Mode < b.Mode
		}
		return a.Detail < b.Detail
	})
	if len(s.Details) > opts.topDetails() {
		s.Details = s.Details[:opts.topDetails()]
	}

	bucket := opts.Bucket
	if bucket <= 0 {
		bucket = AutoBucket(s.To.Sub(s.From))
	} else if s.To.Sub(s.From)/bucket >= maxBuckets {
		auto := AutoBucket(s.To.Sub(s.From))
		s.BucketNote = "bucket " + bucket.String() + " would make more than " + strconv.Itoa(maxBuckets) + " buckets; used " + auto.String()
		bucket = auto
	}
	s.BucketMS = bucket.Milliseconds()
	s.Buckets = buckets(kept, bucket)
	return s
}

// buckets counts the (sorted) connections per time bucket, including empty
// buckets between the first and the last, so that gaps show.
func buckets(sorted []Connection, width time.Duration) []Bucket {
	first := sorted[0].Start.Truncate(width)
	last := sorted[len(sorted)-1].Start.Truncate(width)
	n := int(last.Sub(first)/width) + 1
	out := make([]Bucket, n)
	for i := range out {
		out[i] = Bucket{Start: first.Add(time.Duration(i) * width), Modes: map[string]int{}}
	}
	for _, c := range sorted {
		i := int(c.Start.Truncate(width).Sub(first) / width)
		out[i].Total++
		if c.SentNothing() {
			out[i].SentNothing++
		} else {
			out[i].Modes[c.Mode]++
		}
	}
	return out
}

// percentiles uses the nearest-rank method: the p-th percentile is the
// smallest value with at least p percent of the values at or below it.
func percentiles(v []float64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Percentiles{Count: len(s), P50: rank(50), P90: rank(90), P99: rank(99), Max: s[len(s)-1]}
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }
