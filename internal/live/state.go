package live

import (
	"slices"
	"sort"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/ccproxy-dev/ccproxy/internal/analyze"
	"github.com/ccproxy-dev/ccproxy/internal/explain"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/runs"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// How much of the rings the state lists: the page is for the latest.
const (
	maxRunsListed  = 20
	maxConnsListed = 100
)

// State is what GET /api/v1/state returns and the page draws. Runs,
// Recent and Chart use the shapes of `ccproxy analyze --output json`
// (analyze.Run, analyze.Summary, analyze.Bucket), so a script reads both
// the same way.
type State struct {
	Now       time.Time  `json:"now"`
	Mode      string     `json:"mode"` // "relay", "tunnel serve", "tunnel connect"
	Listeners []Listener `json:"listeners"`
	// Runs are the CLI runs the relay holds now and the recent ones from
	// the ring, newest activity first.
	Runs []Run `json:"runs"`
	// Chart counts the connections per mode in the last minutes.
	Chart Chart `json:"chart"`
	// Recent summarizes the connection spans in the ring, and Connections
	// lists them, newest first.
	Recent      analyze.Summary `json:"recent"`
	Connections []Connection    `json:"connections"`
	Ring        RingStats       `json:"ring"`
	// Problems are reasons a part is missing (e.g. the metrics could not
	// be read); the rest is still right.
	Problems []string `json:"problems,omitempty"`
}

// Listener is one route and its open connections.
type Listener struct {
	Listen   string `json:"listen"`
	Upstream string `json:"upstream"`
	Open     int64  `json:"open"`
	// Counted says where Open comes from: "upstream" (the relay's metrics
	// count per upstream, so listeners sharing an upstream share the
	// number) or "listener" (open connection spans of this listener).
	Counted string `json:"counted"`
}

// Run is a run as analyze reports it, with what the relay knows live.
type Run struct {
	analyze.Run
	// Key is the trace id of the run's first connection span.
	Key        string `json:"key,omitempty"`
	InProgress bool   `json:"in_progress"`
	InFlight   int    `json:"in_flight"`
	// Source is where the counts come from: "live" (the run tracker now,
	// exact) or "ring" (the spans in the ring, read as analyze reads a
	// file: folded attempts are counted from the run's latest summary
	// span; attempts that fell out of the ring are missing).
	Source string `json:"source"`
	// Meaning and NextSteps are what `ccproxy explain` says about the
	// outcome: what it means and what to do.
	Meaning   string   `json:"meaning,omitempty"`
	NextSteps []string `json:"next_steps,omitempty"`
	// Traces are the trace ids of the run's attempts still in the ring,
	// in attempt order: each has a waterfall (GET /trace/{id}).
	Traces []string `json:"traces,omitempty"`
}

// Chart is counts per mode per time bucket, oldest first; the last bucket
// is in progress.
type Chart struct {
	BucketMS int64 `json:"bucket_ms"`
	// Slots is how many buckets the chart spans when full (the axis).
	Slots   int              `json:"slots"`
	Modes   []string         `json:"modes"` // most frequent first
	Buckets []analyze.Bucket `json:"buckets"`
	// Source: "metrics" (every connection, exact) or "spans" (connection
	// spans ended: attempts folded out of the trace are not counted).
	Source string `json:"source"`
}

// Connection is one connection span in the ring.
type Connection struct {
	TraceID     string    `json:"trace_id"`
	Start       time.Time `json:"start"`
	DurationMS  float64   `json:"duration_ms"`
	Mode        string    `json:"mode"`
	Detail      string    `json:"detail,omitempty"`
	Upstream    string    `json:"upstream,omitempty"`
	Client      string    `json:"client,omitempty"`
	Attempt     int       `json:"attempt,omitempty"`
	SentNothing bool      `json:"sent_nothing,omitempty"`
}

// fromRing reads the ring's connection and run summary spans with one
// analyze.Reader: a run's summary puts its folded attempts back as
// connections (analyze.Connection.Folded), so its counts stay exact.
func fromRing(conns, runSpans []sdktrace.ReadOnlySpan) []analyze.Connection {
	var out []analyze.Connection
	rd := analyze.NewReader(func(c analyze.Connection) { out = append(out, c) })
	rd.ReadTraces(trace.ToPdata(append(slices.Clip(conns), runSpans...)))
	rd.Flush()
	return out
}

// keyOf names a run by its first connection span's trace id; a summary
// without a first span (never the relay's) by its client, upstream and
// start.
func keyOf(s trace.RunSummary) string {
	if s.First.IsValid() {
		return s.First.TraceID().String()
	}
	return s.Client + "|" + s.Upstream + "|" + s.Start.String()
}

// mergeRuns lists the runs newest first: the tracker's live summaries
// (exact, and current to the attempt) win over the runs read from the ring,
// which only add their attempts' trace ids to a run already listed.
func mergeRuns(now time.Time, live []runs.Summary, conns []analyze.Connection, adv *advice) []Run {
	byKey := map[string]*Run{}
	var order []*Run
	put := func(k string, r Run) {
		if have := byKey[k]; have != nil {
			r.Traces = have.Traces
			*have = r
			return
		}
		rr := r
		byKey[k] = &rr
		order = append(order, &rr)
	}
	for _, s := range live {
		if s.Attempts == 0 {
			continue // nothing has ended yet: no mode to show
		}
		ts := s.TraceSummary()
		k := keyOf(ts)
		r := Run{Run: analyze.RunOfSummary(ts), Key: k, InFlight: s.InFlight, Source: "live"}
		// The tracker keeps a run until a later connection or its sweep
		// prunes it: over once nothing is open and the gap ran out.
		r.InProgress = !s.Final && (s.InFlight > 0 || now.Sub(s.End) < runs.DefaultMaxGap)
		put(k, r)
	}
	for _, cr := range analyze.RunsOf(conns, 0) {
		var ids []string
		for _, a := range cr.Drawn {
			if a.TraceID != "" {
				ids = append(ids, a.TraceID)
			}
		}
		k := ""
		if cr.FirstAttempt == 1 && len(cr.Drawn) > 0 {
			k = cr.Drawn[0].TraceID
		}
		have := byKey[k]
		if have == nil && cr.FirstAttempt > 1 {
			have = overlapping(order, cr)
		}
		if have != nil {
			have.Traces = append(have.Traces, ids...)
			continue
		}
		r := Run{Run: cr, Key: k, Source: "ring", Traces: ids}
		r.InProgress = false // a run only from ended spans: what is open is unknown
		if k == "" {
			k = cr.Summary
		}
		put(k, r)
	}
	out := make([]Run, 0, len(order))
	for _, r := range order {
		r.Meaning, r.NextSteps = adv.of(r.Outcome)
		r.Traces = uniq(r.Traces)
		out = append(out, *r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].InProgress != out[j].InProgress {
			return out[i].InProgress
		}
		return latest(out[i].Run).After(latest(out[j].Run))
	})
	if len(out) > maxRunsListed {
		out = out[:maxRunsListed]
	}
	return out
}

// overlapping finds a listed run of cr's client and upstream whose time
// covers cr's start, for a cr whose first attempt left the ring (it is
// that run's tail).
func overlapping(listed []*Run, cr analyze.Run) *Run {
	for _, r := range listed {
		if r.Client == cr.Client && r.Upstream == cr.Upstream &&
			!cr.Start.Before(r.Start) && !cr.Start.After(r.End.Add(runs.DefaultMaxGap)) {
			return r
		}
	}
	return nil
}

func latest(r analyze.Run) time.Time {
	if r.End.After(r.Start) {
		return r.End
	}
	return r.Start
}

func uniq(ids []string) []string {
	seen := map[string]bool{}
	out := ids[:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// connectionsOf lists the ring's connections newest first: the newest
// maxConnsListed, and the newest of every mode not among them, so that a
// storm of one mode does not hide the one connection that failed
// otherwise.
func connectionsOf(conns []analyze.Connection) []Connection {
	cs := slices.DeleteFunc(slices.Clone(conns), func(c analyze.Connection) bool { return c.Folded })
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].Start.After(cs[j].Start) })
	seen := map[string]bool{}
	out := make([]Connection, 0, min(len(cs), maxConnsListed))
	for i, c := range cs {
		mode := c.Mode
		if mode == "" {
			mode = "(none)"
		}
		if i >= maxConnsListed && seen[mode] {
			continue
		}
		seen[mode] = true
		out = append(out, Connection{
			TraceID: c.TraceID(), Start: c.Start, DurationMS: float64(c.Duration.Microseconds()) / 1000,
			Mode: mode, Detail: c.Detail, Upstream: c.Upstream, Client: c.Client,
			Attempt: c.Attempt, SentNothing: c.SentNothing(),
		})
	}
	return out
}

// advice is what `ccproxy explain` says about each mode, computed once per
// mode (there are a few dozen).
type advice struct {
	mu   sync.Mutex
	seen map[string]adviceText
}

type adviceText struct {
	meaning string
	steps   []string
}

func (a *advice) of(mode string) (string, []string) {
	if mode == "" || mode == string(failure.OK) {
		return "", nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.seen[mode]; ok {
		return t.meaning, t.steps
	}
	// `ccproxy explain <mode>`: what the mode means and what to do.
	var t adviceText
	fs := explain.Explain(mode)
	if i := slices.IndexFunc(fs, func(f explain.Finding) bool { return f.Mode == mode }); i >= 0 {
		t = adviceText{meaning: fs[i].Meaning, steps: fs[i].NextSteps}
	}
	if a.seen == nil {
		a.seen = map[string]adviceText{}
	}
	a.seen[mode] = t
	return t.meaning, t.steps
}
