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
// and for a summary without a link to its run's first connection span.
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
	sum := runSummary{
		first:    runLink(s.Links()),
		client:   str(string(trace.ClientAddress)),
		upstream: str(string(trace.UpstreamAddress)),
		start:    s.StartTimestamp().AsTime(),
		end:      s.EndTimestamp().AsTime(),
	}
	if sum.first.span.IsEmpty() {
		return runSummary{}, false
	}
	if v, ok := attrs.Get(string(trace.RunAttempts)); ok {
		if f, ok := numeric(v); ok && f >= 0 && f < 1<<31 {
			sum.attempts = int(f)
		}
	}
	if v, ok := attrs.Get(string(trace.RunFinal)); ok && v.Type() == pcommon.ValueTypeBool {
		sum.final = v.Bool()
	}
	modes, mok := attrs.Get(string(trace.RunModes))
	counts, cok := attrs.Get(string(trace.RunModeCounts))
	if mok && cok && modes.Type() == pcommon.ValueTypeSlice && counts.Type() == pcommon.ValueTypeSlice && modes.Slice().Len() == counts.Slice().Len() {
		for i := range modes.Slice().Len() {
			n, ok := numeric(counts.Slice().At(i))
			if !ok || n < 0 {
				return runSummary{}, false
			}
			sum.modes = append(sum.modes, modes.Slice().At(i).AsString())
			sum.counts = append(sum.counts, int64(n))
		}
	}
	return sum, true
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
