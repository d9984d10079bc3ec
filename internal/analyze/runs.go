package analyze

// Runs: the connections of one Contrast CLI invocation, grouped as the
// relay marked them (internal/runs, docs/runs.md): each connection span
// carries trace.RunAttempt, and a retry links to its run's first connection
// span. Spans without the attribute (an older ccproxy, the tunnel's local
// end) are a run each.

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/ccproxy-dev/ccproxy/internal/explain"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// DefaultRunsListed is how many runs a report lists when RunCollector.Report
// is given 0: the latest that retried or failed.
const DefaultRunsListed = 20

// Limits of a listed run's detail: mode changes spelled out in its
// sentence, and attempts the HTML view draws (the first and the last half).
const (
	maxRunSteps    = 6
	maxRunAttempts = 30
)

// RunReport is the runs part of a Summary.
type RunReport struct {
	// Runs counts the runs with a selected connection (Options), Retried
	// those with more than one attempt that sent something, Failed those
	// whose outcome is not ok.
	Runs    int `json:"runs"`
	Retried int `json:"retried"`
	Failed  int `json:"failed"`
	// Unmarked counts the selected connections whose span carries no
	// trace.RunAttempt: each is a run of its own.
	Unmarked int `json:"unmarked"`
	// Listed are runs that retried or failed, oldest first: the latest
	// that retried, then the latest that failed. More is how many more
	// there were. Runs of connections that sent nothing (health checks)
	// are never listed.
	Listed []Run `json:"list"`
	More   int   `json:"more,omitempty"`
	// Notes say what limits the grouping (shared client addresses,
	// unmarked spans).
	Notes []string `json:"notes,omitempty"`
}

// Run is one CLI invocation as the relay saw it.
type Run struct {
	// Summary is the run in one sentence, as the text report prints it.
	Summary  string    `json:"summary"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Client   string    `json:"client,omitempty"`
	Upstream string    `json:"upstream"`
	// Attempts counts the run's connections in the input; FirstAttempt
	// and LastAttempt are the lowest and highest attempt numbers among
	// them (0 for an unmarked connection).
	Attempts     int `json:"attempts"`
	FirstAttempt int `json:"first_attempt"`
	LastAttempt  int `json:"last_attempt"`
	// Folded counts the attempts that are in Attempts only as counts of
	// the run's summary: folded by the relay, with no spans of their own.
	Folded int `json:"folded,omitempty"`
	// Steps are the modes of the attempts that sent something, in order,
	// repeats collapsed. SentNothing counts the others: connections the
	// client opened and closed without a byte, as gRPC leaves one behind
	// when the CLI gives up (Connection.SentNothing).
	Steps       []RunStep `json:"steps"`
	SentNothing int       `json:"sent_nothing,omitempty"`
	// Outcome is the mode that ended the run: the last step's, skipping
	// client_aborted (an attempt the CLI abandoned when it gave up).
	Outcome string `json:"outcome"`
	// CLIText is what the CLI printed for the outcome (explain.CLIText),
	// with <placeholders> for the values.
	CLIText string `json:"cli_printed,omitempty"`
	// SharedAddress: the client address is loopback, which every client
	// behind kubectl port-forward shares; such runs are told apart by time
	// only.
	SharedAddress bool `json:"shared_address,omitempty"`
	// Marked is false for a connection without trace.RunAttempt.
	Marked bool `json:"marked"`
	// Drawn are the attempts the HTML view draws, in order; NotDrawn
	// counts those left out between the first and the last ones.
	Drawn    []RunAttempt `json:"-"`
	NotDrawn int          `json:"-"`
}

// RunStep is a mode and how many consecutive attempts ended with it.
type RunStep struct {
	Mode  string `json:"mode"`
	Count int    `json:"count"`
}

// RunAttempt is one attempt as the HTML view draws it.
type RunAttempt struct {
	Attempt     int
	Start       time.Time
	End         time.Time
	Mode        string
	SentNothing bool
	TraceID     string
}

// RunCollector groups connections into runs while they are read. Give it
// every connection, not only the selected ones: a run is listed with all
// its attempts when any of them is selected.
type RunCollector struct {
	runs map[spanRef]*runAcc
	solo []*runAcc // connections without a usable span id
}

type runAcc struct {
	marked   bool
	attempts []attemptRec
}

type attemptRec struct {
	n           int
	start       time.Time
	dur         time.Duration
	mode        string
	client      string
	upstream    string
	sentNothing bool
	folded      bool
	trace       pcommon.TraceID
	span        pcommon.SpanID
}

// NewRunCollector returns an empty collector.
func NewRunCollector() *RunCollector {
	return &RunCollector{runs: map[spanRef]*runAcc{}}
}

// Add takes one connection.
func (rc *RunCollector) Add(c Connection) {
	rec := attemptRec{
		n: c.Attempt, start: c.Start, dur: c.Duration, mode: c.Mode,
		client: c.Client, upstream: c.Upstream, sentNothing: c.SentNothing(),
		folded: c.Folded, trace: c.trace, span: c.span,
	}
	key := spanRef{c.trace, c.span}
	if (c.Attempt > 1 || c.Folded) && !c.runFirst.span.IsEmpty() {
		key = c.runFirst
	}
	if c.Attempt == 0 || key.span.IsEmpty() {
		rc.solo = append(rc.solo, &runAcc{marked: c.Attempt > 0, attempts: []attemptRec{rec}})
		return
	}
	r := rc.runs[key]
	if r == nil {
		r = &runAcc{marked: true}
		rc.runs[key] = r
	}
	r.attempts = append(r.attempts, rec)
}

// Report builds the runs part of a summary for the connections opts
// selects, listing at most listed runs (DefaultRunsListed when 0).
func (rc *RunCollector) Report(opts Options, listed int) RunReport {
	if listed <= 0 {
		listed = DefaultRunsListed
	}
	rep := RunReport{Listed: []Run{}}
	var retried, failed []Run
	shared := false
	all := make([]*runAcc, 0, len(rc.runs)+len(rc.solo))
	for _, r := range rc.runs {
		all = append(all, r)
	}
	all = append(all, rc.solo...)
	for _, r := range all {
		atts := r.ordered()
		selected, nothing := false, true
		for _, a := range atts {
			if opts.Keep(Connection{Start: a.start, Mode: a.mode}) {
				selected = true
				if !r.marked {
					rep.Unmarked++
				}
			}
			nothing = nothing && a.sentNothing
		}
		if !selected {
			continue
		}
		run := runOf(r.marked, atts)
		rep.Runs++
		isRetried := run.Attempts-run.SentNothing > 1
		if isRetried {
			rep.Retried++
		}
		if run.Outcome != string(failure.OK) {
			rep.Failed++
		}
		switch {
		case nothing:
		case isRetried:
			retried = append(retried, run)
		case run.Outcome != string(failure.OK):
			failed = append(failed, run)
		}
	}
	// The latest that retried first, then the latest that failed; shown
	// in the order they started.
	latestFirst := func(rs []Run) {
		sort.Slice(rs, func(i, j int) bool {
			if !rs[i].Start.Equal(rs[j].Start) {
				return rs[i].Start.After(rs[j].Start)
			}
			return rs[i].Summary < rs[j].Summary
		})
	}
	latestFirst(retried)
	latestFirst(failed)
	chosen := append(retried, failed...)
	if len(chosen) > listed {
		rep.More = len(chosen) - listed
		chosen = chosen[:listed]
	}
	sort.SliceStable(chosen, func(i, j int) bool { return chosen[i].Start.Before(chosen[j].Start) })
	for _, r := range chosen {
		shared = shared || r.SharedAddress
	}
	rep.Listed = append(rep.Listed, chosen...)
	if shared {
		rep.Notes = append(rep.Notes, "A loopback client address (127.0.0.1, ::1) is shared by every client behind kubectl port-forward: "+
			"such runs are told apart by time only. CLIs whose attempts overlap are separate runs; when two retry at the same "+
			"moment, an attempt may be counted in the other's run (no run holds attempts that overlap in time).")
	}
	if rep.Unmarked > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s no %s (written before ccproxy marked runs, or by the tunnel's local end): each is a run of its own.",
			plural(rep.Unmarked, "connection")+pick(rep.Unmarked == 1, " carries", " carry"), trace.RunAttempt))
	}
	return rep
}

func pick(c bool, a, b string) string {
	if c {
		return a
	}
	return b
}

// ordered returns the run's attempts in order (by attempt number, then
// start), each span once (a line read twice).
func (r *runAcc) ordered() []attemptRec {
	atts := r.attempts
	sort.SliceStable(atts, func(i, j int) bool {
		if atts[i].n != atts[j].n {
			return atts[i].n < atts[j].n
		}
		return atts[i].start.Before(atts[j].start)
	})
	out := atts[:0]
	seen := map[spanRef]bool{}
	for _, a := range atts {
		k := spanRef{a.trace, a.span}
		if !k.span.IsEmpty() && seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, a)
	}
	r.attempts = out
	return out
}

// runOf describes the ordered attempts of one run.
func runOf(marked bool, atts []attemptRec) Run {
	first, last := atts[0], atts[len(atts)-1]
	run := Run{
		Start:        first.start,
		End:          first.start.Add(first.dur),
		Client:       first.client,
		Upstream:     first.upstream,
		Attempts:     len(atts),
		FirstAttempt: first.n,
		LastAttempt:  last.n,
		Marked:       marked,
	}
	nothingOnly := true
	for _, a := range atts {
		nothingOnly = nothingOnly && a.sentNothing
	}
	for _, a := range atts {
		if e := a.start.Add(a.dur); e.After(run.End) {
			run.End = e
		}
		if a.sentNothing && !nothingOnly {
			run.SentNothing++
			continue
		}
		mode := a.mode
		if mode == "" {
			mode = unknownMode
		}
		if n := len(run.Steps); n > 0 && run.Steps[n-1].Mode == mode {
			run.Steps[n-1].Count++
		} else {
			run.Steps = append(run.Steps, RunStep{Mode: mode, Count: 1})
		}
	}
	run.Outcome = run.Steps[len(run.Steps)-1].Mode
	for i := len(run.Steps) - 1; i >= 0; i-- {
		if run.Steps[i].Mode != string(failure.ClientAborted) {
			run.Outcome = run.Steps[i].Mode
			break
		}
	}
	run.CLIText = explain.CLIText(failure.Mode(run.Outcome))
	if ip := net.ParseIP(run.Client); ip != nil && ip.IsLoopback() {
		run.SharedAddress = true
	}
	// The HTML view draws written attempts, each linked to its trace.
	var drawn []attemptRec
	for _, a := range atts {
		if a.folded {
			run.Folded++
		} else {
			drawn = append(drawn, a)
		}
	}
	run.NotDrawn = run.Folded
	if len(drawn) > maxRunAttempts {
		run.NotDrawn += len(drawn) - maxRunAttempts
		drawn = append(append([]attemptRec(nil), drawn[:maxRunAttempts/2]...), drawn[len(drawn)-maxRunAttempts/2:]...)
	}
	for _, a := range drawn {
		run.Drawn = append(run.Drawn, RunAttempt{
			Attempt: a.n, Start: a.start, End: a.start.Add(a.dur), Mode: a.mode,
			SentNothing: a.sentNothing, TraceID: traceIDText(a.trace),
		})
	}
	run.Summary = run.sentence()
	return run
}

func traceIDText(id pcommon.TraceID) string {
	if id.IsEmpty() {
		return ""
	}
	return id.String()
}

// sentence is the run in one line: "run at 2025-06-01 12:01:03 from
// 10.0.0.5 to coordinator:1313, 4 attempts over 31 s: lb_closed_early ×3,
// then issuer_timeout — the CLI printed: ...".
func (r Run) sentence() string {
	var b strings.Builder
	b.WriteString("run at " + ts(r.Start))
	if r.Client != "" {
		b.WriteString(" from " + r.Client)
	}
	if r.Upstream != "" {
		b.WriteString(" to " + r.Upstream)
	}
	b.WriteString(", " + plural(r.Attempts, "attempt"))
	if missing := r.LastAttempt - r.Attempts; r.Marked && missing > 0 {
		fmt.Fprintf(&b, " (of %d: %d not in the input)", r.LastAttempt, missing)
	}
	if r.Folded > 0 {
		fmt.Fprintf(&b, " (%d folded into the run's summary)", r.Folded)
	}
	if r.Attempts > 1 {
		b.WriteString(" over " + humanDuration(r.End.Sub(r.Start)))
	}
	b.WriteString(": " + stepsText(r.Steps))
	if r.SentNothing > 0 {
		fmt.Fprintf(&b, " (+%d that sent nothing)", r.SentNothing)
	}
	switch {
	case r.Outcome == string(failure.OK):
		b.WriteString(" — the CLI succeeded")
	case r.CLIText != "":
		b.WriteString(" — the CLI printed: " + r.CLIText)
	}
	return b.String()
}

// stepsText is "lb_closed_early ×3, then issuer_timeout"; a run that
// changed modes often keeps its first and last steps.
func stepsText(steps []RunStep) string {
	one := func(s RunStep) string {
		if s.Count == 1 {
			return s.Mode
		}
		return s.Mode + " ×" + strconv.Itoa(s.Count)
	}
	var parts []string
	if len(steps) <= maxRunSteps {
		for _, s := range steps {
			parts = append(parts, one(s))
		}
	} else {
		head, tail := steps[:maxRunSteps/2], steps[len(steps)-maxRunSteps/2:]
		for _, s := range head {
			parts = append(parts, one(s))
		}
		n := 0
		for _, s := range steps[len(head) : len(steps)-len(tail)] {
			n += s.Count
		}
		parts = append(parts, fmt.Sprintf("… %s …", plural(n, "attempt")))
		for _, s := range tail {
			parts = append(parts, one(s))
		}
	}
	if len(parts) > 1 {
		parts[len(parts)-1] = "then " + parts[len(parts)-1]
	}
	return strings.Join(parts, ", ")
}

// humanDuration is a run's length for a person: "350 ms", "2.5 s", "3m10s".
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return "<1 ms"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case d < time.Minute:
		return strings.TrimSuffix(strconv.FormatFloat(d.Seconds(), 'f', 1, 64), ".0") + " s"
	}
	return d.Round(time.Second).String()
}
