package analyze

// Folded attempts: with folding on (internal/runs, docs/runs.md) most
// attempts of a failing CLI run have no connection span; the run's summary
// span (trace.SpanRun) counts them per mode. The Reader puts them back as
// Connections marked Folded, so that every count — per run, per mode, per
// upstream, over time — is what it would be had every attempt been
// written. What a folded attempt had that its summary does not keep is
// taken from its neighbours: its number, mode and time from the written
// attempts around it (a folded attempt repeats the mode of the one that
// ended before it, and each change of mode is written with the attempt
// before it), its detail from a written attempt of its mode.

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ccproxy-dev/ccproxy/trace"
)

// runSummary is one trace.SpanRun span, reduced.
type runSummary struct {
	first      spanRef
	client     string
	upstream   string
	start, end time.Time
	attempts   int
	modes      []string
	counts     []int64
	final      bool
}

// written is what the Reader keeps of a connection span of a run, to place
// the run's folded attempts among the written ones.
type written struct {
	n          int
	start, end time.Time
	mode       string
	detail     string
}

// summaryFromSpan reduces a trace.SpanRun span; ok is false for other spans
// and for a malformed summary (summaryFields.summary).
func summaryFromSpan(s ptrace.Span) (runSummary, bool) {
	if s.Name() != trace.SpanRun {
		return runSummary{}, false
	}
	attrs := s.Attributes()
	str := func(k string) string {
		if v, ok := attrs.Get(k); ok {
			return v.AsString()
		}
		return ""
	}
	f := summaryFields{
		first:    runLink(s.Links()),
		client:   str(string(trace.ClientAddress)),
		upstream: str(string(trace.UpstreamAddress)),
		start:    s.StartTimestamp().AsTime(),
		end:      s.EndTimestamp().AsTime(),
	}
	if v, ok := attrs.Get(string(trace.RunAttempts)); ok {
		f.hasAttempts = true
		f.attempts, f.attemptsOK = numeric(v)
	}
	if v, ok := attrs.Get(string(trace.RunFinal)); ok && v.Type() == pcommon.ValueTypeBool {
		f.final = v.Bool()
	}
	if v, ok := attrs.Get(string(trace.RunModes)); ok {
		f.hasModes = true
		if v.Type() == pcommon.ValueTypeSlice {
			f.modes = make([]string, 0, v.Slice().Len())
			for _, m := range v.Slice().All() {
				f.modes = append(f.modes, m.AsString())
			}
		} else {
			f.err = fmt.Errorf("%s is a %s, not an array", trace.RunModes, v.Type())
		}
	}
	if v, ok := attrs.Get(string(trace.RunModeCounts)); ok {
		f.hasCounts = true
		if v.Type() == pcommon.ValueTypeSlice {
			f.counts = make([]float64, 0, v.Slice().Len())
			for _, c := range v.Slice().All() {
				n, ok := numeric(c)
				if !ok {
					f.err = fmt.Errorf("%s holds a %s, not a number", trace.RunModeCounts, c.Type())
					break
				}
				f.counts = append(f.counts, n)
			}
		} else if f.err == nil {
			f.err = fmt.Errorf("%s is a %s, not an array", trace.RunModeCounts, v.Type())
		}
	}
	sum, err := f.summary()
	return sum, err == nil
}

// summaryFields are a trace.SpanRun span's values as a reader found them,
// in an OTLP span (summaryFromSpan) or in Jaeger's JSON
// (summaryFromJaeger), before summary checks and reduces them: one rule
// for both.
type summaryFields struct {
	first            spanRef // the span the summary links to
	client, upstream string
	start, end       time.Time
	// attempts is trace.RunAttempts when hasAttempts; attemptsOK is
	// false when it was not a number.
	attempts                float64
	hasAttempts, attemptsOK bool
	final                   bool
	// modes and counts are trace.RunModes and trace.RunModeCounts, each
	// when its has* is set.
	modes               []string
	counts              []float64
	hasModes, hasCounts bool
	// err is what the reader found malformed on its own (an attribute of
	// the wrong type).
	err error
}

// summary checks f and reduces it to a runSummary. A summary without its
// link to the run's first connection span, with an attempt count or a
// mode count that is not a whole number from 0 to 2^31, or with modes and
// counts that do not pair up is malformed: counting by it could only be
// wrong.
func (f summaryFields) summary() (runSummary, error) {
	if f.err != nil {
		return runSummary{}, f.err
	}
	if f.first.span.IsEmpty() {
		return runSummary{}, errors.New("no link to the run's first connection span")
	}
	sum := runSummary{first: f.first, client: f.client, upstream: f.upstream, start: f.start, end: f.end, final: f.final}
	if f.hasAttempts {
		n, ok := count(f.attempts)
		if !f.attemptsOK || !ok {
			return runSummary{}, fmt.Errorf("%s is not a count", trace.RunAttempts)
		}
		sum.attempts = n
	}
	if f.hasModes != f.hasCounts || len(f.modes) != len(f.counts) {
		return runSummary{}, fmt.Errorf("%d %s for %d %s", len(f.counts), trace.RunModeCounts, len(f.modes), trace.RunModes)
	}
	for i, m := range f.modes {
		n, ok := count(f.counts[i])
		if !ok {
			return runSummary{}, fmt.Errorf("%s: %v is not a count", trace.RunModeCounts, f.counts[i])
		}
		sum.modes = append(sum.modes, m)
		sum.counts = append(sum.counts, int64(n))
	}
	return sum, nil
}

// count reads a count of attempts: a whole number from 0 to 2^31 (a
// fraction is cut off; NaN and infinities are not counts).
func count(f float64) (int, bool) {
	if f >= 0 && f < 1<<31 {
		return int(f), true
	}
	return 0, false
}

// newer reports whether s says more than o about the same run: summaries
// are cumulative, so the one with the most attempts (the final one on a
// tie) holds every count.
func (s runSummary) newer(o runSummary) bool {
	if s.attempts != o.attempts {
		return s.attempts > o.attempts
	}
	return s.final && !o.final
}

// emitFolded calls fn for the folded attempts of each run in sums (see
// foldedConnections; ws are the runs' written attempts), runs in start
// order, and returns how many it called fn for.
func emitFolded(sums map[spanRef]runSummary, ws map[spanRef][]written, limit int, fn func(Connection)) int {
	keys := make([]spanRef, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := sums[keys[i]].start, sums[keys[j]].start
		if !a.Equal(b) {
			return a.Before(b)
		}
		if c := bytes.Compare(keys[i].trace[:], keys[j].trace[:]); c != 0 {
			return c < 0
		}
		return bytes.Compare(keys[i].span[:], keys[j].span[:]) < 0
	})
	n := 0
	for _, k := range keys {
		for _, c := range foldedConnections(sums[k], ws[k], limit) {
			fn(c)
			n++
		}
	}
	return n
}

// unsummarized counts the runs in ws whose written attempts skip a number
// (the relay folded the ones between, or their spans were not read) and
// that have no summary in sums (ReadStats.UnsummarizedRuns).
func unsummarized(ws map[spanRef][]written, sums map[spanRef]runSummary) int {
	n := 0
	for k, w := range ws {
		if _, ok := sums[k]; ok {
			continue
		}
		seen := make(map[int]struct{}, len(w))
		top := 0
		for _, a := range w {
			seen[a.n] = struct{}{}
			top = max(top, a.n)
		}
		if len(seen) < top {
			n++
		}
	}
	return n
}

// maxFoldedPerRun bounds the attempts one summary may add: a CLI run lasts
// at most 180 s, and at the fastest reconnect rate measured (docs/runs.md:
// 10,489 in 3 s) that is about 630,000 attempts. A summary claiming more is
// not believed beyond this, so that a corrupt or hostile file cannot make
// analyze hold billions of connections.
const maxFoldedPerRun = 1 << 20

// foldedConnections are the attempts s counts that no written connection
// span of its run stands for, at most limit. ws are the run's written
// attempts.
func foldedConnections(s runSummary, ws []written, limit int) []Connection {
	ws = slices.Clone(ws)
	sort.Slice(ws, func(i, j int) bool { return ws[i].n < ws[j].n })
	ws = slices.CompactFunc(ws, func(a, b written) bool { return a.n == b.n })
	// How many attempts of each mode the written spans do not account for.
	deficit := map[string]int{}
	total := 0
	for i, m := range s.modes {
		deficit[m] += int(s.counts[i])
	}
	detail := map[string]string{}
	for _, w := range ws {
		if w.n <= s.attempts {
			deficit[w.mode]--
		}
		if _, ok := detail[w.mode]; !ok {
			detail[w.mode] = w.detail
		}
	}
	for m, d := range deficit {
		if d <= 0 {
			delete(deficit, m)
			continue
		}
		total += d
	}
	if total == 0 {
		return nil
	}
	total = min(total, limit)
	// The numbers no written span has, each in the gap between the written
	// attempts around it.
	type slot struct {
		n    int
		mode string // the streak's: the written attempt before it, else after
		at   time.Time
	}
	var slots []slot
	wi := 0
	for n := 1; n <= s.attempts && len(slots) < total; n++ {
		for wi < len(ws) && ws[wi].n < n {
			wi++
		}
		if wi < len(ws) && ws[wi].n == n {
			continue
		}
		sl := slot{n: n}
		lo, hi := s.start, s.end
		loN, hiN := 0, s.attempts+1
		if wi > 0 {
			sl.mode, lo, loN = ws[wi-1].mode, ws[wi-1].end, ws[wi-1].n
		}
		if wi < len(ws) {
			if sl.mode == "" {
				sl.mode = ws[wi].mode
			}
			hi, hiN = ws[wi].start, ws[wi].n
		}
		if hi.Before(lo) {
			hi = lo
		}
		// Evenly between the neighbours, by attempt number.
		frac := float64(n-loN) / float64(hiN-loN)
		sl.at = lo.Add(time.Duration(frac * float64(hi.Sub(lo))))
		slots = append(slots, sl)
	}
	// Each slot takes its streak's mode while that mode has attempts left
	// to place; the rest (attempts that ended out of order) take the modes
	// still short, in the summary's order.
	modeOf := make([]string, len(slots))
	for i, sl := range slots {
		if deficit[sl.mode] > 0 {
			modeOf[i] = sl.mode
			deficit[sl.mode]--
		}
	}
	for i := range slots {
		if modeOf[i] != "" {
			continue
		}
		for _, m := range s.modes {
			if deficit[m] > 0 {
				modeOf[i] = m
				deficit[m]--
				break
			}
		}
	}
	out := make([]Connection, 0, len(slots))
	for i, sl := range slots {
		if modeOf[i] == "" {
			continue
		}
		out = append(out, Connection{
			Start:    sl.at,
			Mode:     modeOf[i],
			Detail:   detail[modeOf[i]],
			Upstream: s.upstream,
			Client:   s.client,
			Attempt:  sl.n,
			Folded:   true,
			runFirst: s.first,
		})
	}
	return out
}
