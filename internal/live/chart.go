package live

import (
	"sort"
	"sync"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/analyze"
)

// Chart defaults: ten minutes in 10 s buckets.
const (
	DefaultBucket  = 10 * time.Second
	DefaultBuckets = 60
)

// chart turns running totals per mode into counts per time bucket: at each
// bucket boundary it keeps a mark (the totals then), and a bucket's counts
// are the differences between consecutive marks. The marks are a ring, so
// the chart's memory is fixed; the bucket in progress is the difference
// between the latest mark and the totals now.
type chart struct {
	width time.Duration
	mu    sync.Mutex
	marks *ring[mark]
}

type mark struct {
	at     time.Time
	totals map[string]int64
}

func newChart(width time.Duration, buckets int) *chart {
	if width <= 0 {
		width = DefaultBucket
	}
	if buckets <= 0 {
		buckets = DefaultBuckets
	}
	// One mark more than buckets: the oldest bucket needs its start too.
	return &chart{width: width, marks: newRing[mark](buckets + 1)}
}

// sample keeps a mark when now has entered a bucket after the latest
// mark's (or when there is none).
func (c *chart) sample(now time.Time, totals map[string]int64) {
	at := now.Truncate(c.width)
	c.mu.Lock()
	defer c.mu.Unlock()
	if last, ok := c.marks.last(); ok && !at.After(last.at) {
		return
	}
	c.marks.push(mark{at: at, totals: totals})
}

// buckets returns the counts per bucket, oldest first, ending with the
// bucket in progress (the totals now against the latest mark). A bucket
// whose start mark was missed (the sampler was late) spans until the next
// mark; it is reported at its start.
func (c *chart) buckets(totals map[string]int64) []analyze.Bucket {
	c.mu.Lock()
	marks := c.marks.all()
	c.mu.Unlock()
	out := make([]analyze.Bucket, 0, len(marks))
	for i, m := range marks {
		next := totals
		if i+1 < len(marks) {
			next = marks[i+1].totals
		}
		b := analyze.Bucket{Start: m.at, Modes: map[string]int{}}
		for mode, n := range next {
			if d := n - m.totals[mode]; d > 0 {
				b.Modes[mode] = int(d)
				b.Total += int(d)
			}
		}
		out = append(out, b)
	}
	return out
}

// modesOf lists the modes of the buckets, most frequent first (the chart's
// legend and stacking order).
func modesOf(bs []analyze.Bucket) []string {
	n := map[string]int{}
	for _, b := range bs {
		for m, c := range b.Modes {
			n[m] += c
		}
	}
	out := make([]string, 0, len(n))
	for m := range n {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		if n[out[i]] != n[out[j]] {
			return n[out[i]] > n[out[j]]
		}
		return out[i] < out[j]
	})
	return out
}
