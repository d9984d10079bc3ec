package runs

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// Summary is what a run was, as far as it went: the span trace.SpanRun
// carries it (trace.RunSummary) and `ccproxy analyze` reads it, so counts
// stay exact while attempts are folded.
type Summary struct {
	Key   Key
	First oteltrace.SpanContext // the run's first root span
	Start time.Time             // the first attempt's accept
	End   time.Time             // the latest end of an attempt so far
	// Attempts is how many of the run's attempts have ended (each has a
	// verdict in Modes); InFlight how many more are still open.
	Attempts int
	InFlight int
	// Folded is how many ended attempts were not written and never will
	// be (an attempt kept as the possible last one is not counted yet).
	Folded int
	// Modes counts the ended attempts per mode, in the order each mode
	// first appeared.
	Modes []ModeCount
	// Last is the mode of the attempt that ended last.
	Last failure.Mode
	// Final is true for the summary of a run that is over; false for one
	// in progress (Config.SummaryEvery).
	Final bool
}

// ModeCount is how many attempts of a run ended with Mode.
type ModeCount struct {
	Mode  failure.Mode
	Count int
}

// tally is a run's account of its ended attempts, kept under Tracker.mu.
// It is made when the run's first attempt ends: a healthy connection that
// idles for hours as its run's only attempt holds none.
type tally struct {
	ended   int
	written int
	folded  int
	modes   []ModeCount
	last    failure.Mode
	hasLast bool
	lastEnd time.Time
	pending func() // the latest folded attempt's write, kept as the possible last

	summarizedAt time.Time // the latest progress summary (firstStart before)
	summarized   int       // ended at that summary
}

// count adds an ended attempt of mode at at.
func (tl *tally) count(mode failure.Mode, at time.Time) {
	tl.ended++
	tl.last, tl.hasLast = mode, true
	if at.After(tl.lastEnd) {
		tl.lastEnd = at
	}
	for i := range tl.modes {
		if tl.modes[i].Mode == mode {
			tl.modes[i].Count++
			return
		}
	}
	tl.modes = append(tl.modes, ModeCount{Mode: mode, Count: 1})
}

// dueList is work decided under Tracker.mu and done after it is released,
// in order: writes of attempts, fold counts, summaries.
type dueList struct{ fns []func() }

func (d *dueList) add(f func()) { d.fns = append(d.fns, f) }

func (d *dueList) run() {
	for _, f := range d.fns {
		f()
	}
}

// record accounts for attempt n of r ending at at with mode and decides
// whether write runs now (see fold.go). It reports whether it does.
func (t *Tracker) record(r *run, n int, at time.Time, mode failure.Mode, write func(), due *dueList) bool {
	if r.tally == nil {
		r.tally = &tally{}
	}
	tl := r.tally
	now := write == nil || !t.cfg.Fold || r.finished ||
		keep(n, t.cfg.FoldFirst, mode, tl.last, tl.hasLast)
	if p := tl.pending; p != nil {
		tl.pending = nil
		if tl.hasLast && mode != tl.last {
			due.add(p) // the last of its streak
			tl.written++
		} else {
			tl.folded++
			if t.cfg.OnFold != nil {
				key := r.key
				due.add(func() { t.cfg.OnFold(key) })
			}
		}
	}
	tl.count(mode, at)
	if now {
		tl.written++
		if write != nil {
			due.add(write)
		}
	} else {
		tl.pending = write
	}
	return now
}

// over marks r as no longer continued; it is finished once no attempt of
// it is open, else when its last open attempt ends.
func (t *Tracker) over(r *run, due *dueList) {
	if r.over {
		return
	}
	r.over = true
	if r.open == 0 {
		t.finish(r, due)
	} else {
		t.closing = append(t.closing, r)
	}
}

// finish writes r's kept last attempt and gives its final summary.
func (t *Tracker) finish(r *run, due *dueList) {
	if r.finished {
		return
	}
	r.finished = true
	for i, c := range t.closing {
		if c == r {
			t.closing = append(t.closing[:i], t.closing[i+1:]...)
			break
		}
	}
	if tl := r.tally; tl != nil && tl.pending != nil {
		due.add(tl.pending)
		tl.pending = nil
		tl.written++
	}
	t.summarize(r, true, due)
}

// summarize gives r's summary to Config.Summaries; a run of one attempt
// has none.
func (t *Tracker) summarize(r *run, final bool, due *dueList) {
	if t.cfg.Summaries == nil || r.attempts < 2 || r.tally == nil {
		return
	}
	s := r.summary(final)
	r.tally.summarized = r.tally.ended
	f := t.cfg.Summaries
	due.add(func() { f(s) })
}

func (r *run) summary(final bool) Summary {
	s := Summary{Key: r.key, First: r.first, Start: r.firstStart, InFlight: r.open, Final: final}
	if tl := r.tally; tl != nil {
		s.End, s.Attempts, s.Folded, s.Last = tl.lastEnd, tl.ended, tl.folded, tl.last
		s.Modes = append([]ModeCount(nil), tl.modes...)
	}
	return s
}

// Sweep finishes the runs that can no longer be continued at now (writing
// each one's last attempt and final summary) and summarizes the runs in
// progress whose latest summary is older than Config.SummaryEvery. Run
// calls it every second; tests call it with the times they inject.
func (t *Tracker) Sweep(now time.Time) {
	var due dueList
	defer due.run()
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.byKey {
		t.prune(k, now, &due)
	}
	for _, rs := range t.byKey {
		for _, r := range rs {
			tl := r.tally
			if r.finished || tl == nil || tl.ended <= tl.summarized {
				continue
			}
			since := tl.summarizedAt
			if since.IsZero() {
				since = r.firstStart
			}
			if now.Sub(since) >= t.cfg.SummaryEvery {
				tl.summarizedAt = now
				t.summarize(r, false, &due)
			}
		}
	}
}

// Flush finishes every run (at shutdown, once no connection is left):
// each kept last attempt is written and each run gets its final summary.
// A run with an attempt still open is finished when that attempt ends.
func (t *Tracker) Flush() {
	var due dueList
	defer due.run()
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, rs := range t.byKey {
		for _, r := range rs {
			t.over(r, &due)
		}
		delete(t.byKey, k)
	}
	t.n = 0
}

// Run sweeps every second until ctx ends, then flushes. Start it once per
// Tracker whose Config folds or summarizes; return from it (cancel ctx
// and wait) before the tracer provider shuts down, so the last attempts
// and summaries are exported.
func (t *Tracker) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			t.Flush()
			return
		case now := <-tick.C:
			t.Sweep(now)
		}
	}
}

// Snapshot is a summary of every run the Tracker still holds (newest
// first by its latest activity): the live view of the runs in progress.
func (t *Tracker) Snapshot() []Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Summary
	for _, rs := range t.byKey {
		for _, r := range rs {
			out = append(out, r.summary(r.finished))
		}
	}
	for _, r := range t.closing {
		out = append(out, r.summary(false))
	}
	sortSummaries(out)
	return out
}

// sortSummaries orders summaries newest first by their latest activity.
func sortSummaries(s []Summary) {
	active := func(x Summary) time.Time {
		if x.End.After(x.Start) {
			return x.End
		}
		return x.Start
	}
	slices.SortStableFunc(s, func(a, b Summary) int { return active(b).Compare(active(a)) })
}

// Steps tells the run's modes as the log line and analyze do:
// "lb_closed_early ×5,412, issuer_timeout ×1" (counts per mode, in the order
// each first appeared).
func (s Summary) Steps() string {
	var b strings.Builder
	for i, m := range s.Modes {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s ×%s", m.Mode, thousands(m.Count))
	}
	return b.String()
}

// thousands writes n with comma separators.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// TraceSummary is s as package trace writes it.
func (s Summary) TraceSummary() trace.RunSummary {
	ts := trace.RunSummary{
		Client: s.Key.Client, Upstream: s.Key.Upstream, First: s.First,
		Start: s.Start, End: s.End,
		Attempts: s.Attempts, InFlight: s.InFlight, Folded: s.Folded,
		Outcome: string(s.Last), Final: s.Final,
	}
	for _, m := range s.Modes {
		ts.Modes = append(ts.Modes, string(m.Mode))
		ts.Counts = append(ts.Counts, int64(m.Count))
	}
	return ts
}

// SummaryWriter is the usual Config.Summaries: each summary as a
// trace.SpanRun span (tr may be nil: no span) and a log line "run", the
// line that stands for the run's folded connections in `kubectl logs`.
func SummaryWriter(tr oteltrace.Tracer, log *slog.Logger) func(Summary) {
	return func(s Summary) {
		if tr != nil {
			trace.WriteRunSummary(tr, s.TraceSummary())
		}
		if log != nil {
			log.Info("run",
				"client", s.Key.Client, "upstream", s.Key.Upstream,
				"attempts", s.Attempts, "folded", s.Folded, "modes", s.Steps(),
				"outcome", string(s.Last), "final", s.Final,
				"duration", s.End.Sub(s.Start).Round(time.Millisecond).String())
		}
	}
}
