// Package runs groups the connections of one Contrast CLI invocation into a
// run, so that a `contrast set` that retried is one story in the traces and
// not N unrelated connections. The relay (internal/watch) asks a Tracker,
// when it accepts a connection, for the connection's place in its run; the
// connection's root span then carries trace.RunAttempt (1 for the first, n
// for the n-th) and, from the second attempt on, a span link to the run's
// first root span. docs/runs.md explains the rule for people.
//
//	a := tracker.Begin(runs.KeyOf(info.Client, upstream), info.Accepted)
//	ctx, span := tracer.Start(ctx, trace.SpanConnection, a.StartOptions()...)
//	a.Started(span.SpanContext())
//	...
//	a.Established()      // past the handshake (the client sent application data)
//	a.Over(at)           // a direction ended: the client is done with the attempt
//	a.End(closed, mode)  // the verdict; ok ends the run
//
// # The rule
//
// A run is one client address (the IP, not the port: every attempt comes
// from a fresh port) to one upstream. A connection continues a run when
//
//   - the run's latest attempt is over for the client (a direction of it
//     ended, or the connection closed) — attempts of one run never overlap,
//     since the CLI dials its next attempt only after the last one failed;
//   - it starts at most MaxGap after that attempt's client left;
//   - it starts at most MaxSpan after the run's first attempt; and
//   - the run did not end with ok.
//
// Otherwise it starts a new run.
//
// The relay learns that a client closed a moment after the client did: when
// the client ended the attempt itself (it gave up waiting for the issuer,
// or rejected the certificate), its next connection may be accepted before
// the relay has read the close of the last one. So a new connection waits
// up to Settle (10 ms) for the client's attempt that is still open at the
// relay and still in its handshake to end, and an attempt that ended at
// most Settle after the next one's accept counts as ended before it. An
// attempt the upstream ended (a load balancer's close) is over before the
// client hears of it, and one past its handshake (Established) is never
// waited for, so connections of healthy clients never wait.
//
// When several runs of one key qualify (two
// clients behind one address, see below), the connection continues the one
// whose latest attempt ended last: a client that retries does so at once,
// and a run whose client gave up is never the most recent for long.
//
// # Why these bounds (Contrast's source)
//
// `contrast set` sends SetManifest through internal/retry's IntervalRetrier:
// a call, then, while the error is retriable (grpc/retry.ServiceIsUnavailable:
// Unavailable, but of the "authentication handshake failed" errors only
// those whose cause is EOF or "context deadline exceeded"), the next call on
// a 1 s ticker, under a 180 s context (cli/cmd/set.go, setLoop). `contrast
// verify` calls GetManifests once, without a retrier. Every call uses one
// gRPC ClientConn, and the connections are grpc-go's: its reconnect backoff
// decides the gaps between attempts, not the ticker. grpc-go's defaults
// (1 s, ×1.6, jitter 0.2, at most 120 s) do not apply: Contrast's dialer
// passes grpc.ConnectParams{MinConnectTimeout: 30 s} without a Backoff, and
// grpc-go then backs off with a zero Backoff config, i.e. not at all. After
// a failed handshake the subchannel goes idle at once and pick_first
// reconnects at once (gRFC A62), so a failing CLI reconnects back to back:
// the simulated CLI, with the same options, made 10,489 connections in 3 s
// to a load balancer that closes after the ClientHello, gaps under 2 ms.
// An older grpc-go without A62 waits for the next call to reconnect, which
// the ticker sends within 1 s. So the gap is at most one tick plus the
// round trip and scheduling: DefaultMaxGap is 2 s. A user who runs the CLI
// again by hand takes longer than that; a script that loops faster is one
// run, which is what it is. Every attempt of a `contrast set` starts within
// its 180 s context: DefaultMaxSpan is that plus one gap.
//
// # Clients behind one address
//
// Behind `kubectl port-forward` (or any forwarder, NAT or the in-cluster
// tunnel) every client has the forwarder's address, 127.0.0.1 for a
// port-forward. Runs of such clients are told apart by time only: two CLIs
// whose attempts overlap are two runs, but when both retry at once an
// attempt of one may be counted in the other's run, and a CLI that starts
// within Settle of another's attempt ending may continue that run. Attempt
// numbers stay consecutive and no run holds two attempts that overlap (by
// more than Settle); what can be wrong is which of two simultaneous runs
// an attempt belongs to.
//
// # Memory
//
// A run is forgotten once it can no longer be continued (ended with ok, or
// its gap or span ran out); the table holds at most MaxRuns runs, and a new
// run beyond that first drops the expired ones and then the least recently
// active. Time is never read from the clock: every method takes the time of
// the event it reports, so the Tracker is a pure function of its inputs,
// but for how long Begin waits (Settle; off when negative).
package runs

import (
	"net"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// Defaults (see the package documentation for where they come from).
const (
	// DefaultMaxGap is the longest time from one attempt's client leaving
	// to the next attempt's start within one run: the CLI's 1 s retry
	// ticker plus a second for round trips and scheduling.
	DefaultMaxGap = 2 * time.Second
	// DefaultMaxSpan is the longest time from a run's first attempt to a
	// later one: `contrast set`'s 180 s context plus one gap.
	DefaultMaxSpan = 180*time.Second + DefaultMaxGap
	// DefaultMaxRuns bounds the table.
	DefaultMaxRuns = 4096
	// DefaultSettle is how long a new connection waits for the client's
	// previous attempt to report its end (see the package documentation).
	DefaultSettle = 10 * time.Millisecond
	// DefaultFoldFirst is how many of a run's first attempts are always
	// written when folding is on. shared/CONTRACT.md promises one root
	// span per accepted connection; folding departs from that only for a
	// storm. A CLI that retries a few times, a script that checks a few
	// dozen connections, sees every one; a run of thousands is folded from
	// its 33rd attempt on.
	DefaultFoldFirst = 32
	// DefaultSummaryEvery is how often a run in progress is summarized.
	DefaultSummaryEvery = 10 * time.Second
)

// Config sets a Tracker's bounds; zero fields take the defaults.
type Config struct {
	MaxGap  time.Duration
	MaxSpan time.Duration
	MaxRuns int
	// Settle: negative turns the wait and its tolerance off.
	Settle time.Duration

	// Fold turns folding on (see fold.go): an attempt that repeats its
	// run's story is counted, not written. Off, every attempt is written.
	Fold bool
	// FoldFirst is how many of a run's first attempts are always written
	// (DefaultFoldFirst when 0).
	FoldFirst int
	// Summaries, if set, gets each run's summary: at intervals of
	// SummaryEvery while it goes on, and once when it is over (see Summary).
	// Runs of one attempt have none: that attempt is the whole story.
	Summaries func(Summary)
	// SummaryEvery is how often a run in progress is summarized
	// (DefaultSummaryEvery when 0): a live backend sees a storm grow.
	SummaryEvery time.Duration
	// OnFold, if set, is called for each attempt that is folded for good.
	OnFold func(Key)
}

// Key is what a run belongs to: one client address to one upstream.
type Key struct {
	// Client is the client's IP address (no port), or its address as a
	// string when it has no IP (a tunnel stream).
	Client string
	// Upstream is the route's upstream as configured.
	Upstream string
}

// KeyOf is the Key of a connection from client to upstream.
func KeyOf(client net.Addr, upstream string) Key {
	k := Key{Upstream: upstream}
	switch a := client.(type) {
	case nil:
	case *net.TCPAddr:
		k.Client = a.IP.String()
	case *net.UDPAddr:
		k.Client = a.IP.String()
	default:
		k.Client = a.String()
		if host, _, err := net.SplitHostPort(k.Client); err == nil {
			k.Client = host
		}
	}
	return k
}

// Tracker assigns connections to runs. Its methods are safe for concurrent
// use. The zero value is not usable; call New.
type Tracker struct {
	cfg Config

	mu    sync.Mutex
	byKey map[Key][]*run
	n     int           // runs in byKey
	ended chan struct{} // closed (and replaced) when an attempt is over
	// closing holds runs that can no longer be continued (expired or
	// evicted) while an attempt of theirs is still open: their summary
	// waits for its verdict.
	closing []*run
}

// run is one CLI invocation as far as the relay has seen it.
type run struct {
	key        Key
	first      oteltrace.SpanContext // the first attempt's root span
	firstStart time.Time
	attempts   int
	latest     *Attempt
	done       bool      // the latest attempt ended with ok
	active     time.Time // the latest start or client leaving, for eviction

	open     int    // attempts begun and not ended
	over     bool   // can no longer be continued
	finished bool   // its final summary was given
	tally    *tally // what its ended attempts were (summary.go); nil until one ended
}

// Attempt is one connection's place in its run.
type Attempt struct {
	t           *Tracker
	r           *run
	n           int
	gone        time.Time // when the attempt was over; zero while in flight
	established bool      // past its handshake
	ended       bool      // End was called
}

// New returns a Tracker with cfg's bounds.
func New(cfg Config) *Tracker {
	if cfg.MaxGap <= 0 {
		cfg.MaxGap = DefaultMaxGap
	}
	if cfg.MaxSpan <= 0 {
		cfg.MaxSpan = DefaultMaxSpan
	}
	if cfg.MaxRuns <= 0 {
		cfg.MaxRuns = DefaultMaxRuns
	}
	switch {
	case cfg.Settle == 0:
		cfg.Settle = DefaultSettle
	case cfg.Settle < 0:
		cfg.Settle = 0
	}
	if cfg.FoldFirst <= 0 {
		cfg.FoldFirst = DefaultFoldFirst
	}
	if cfg.SummaryEvery <= 0 {
		cfg.SummaryEvery = DefaultSummaryEvery
	}
	return &Tracker{cfg: cfg, byKey: map[Key][]*run{}, ended: make(chan struct{})}
}

// Begin places a connection of key accepted at at: it continues the run
// that fits (see the package documentation) or starts a new one.
func (t *Tracker) Begin(key Key, at time.Time) *Attempt {
	var due dueList
	defer due.run()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prune(key, at, &due)
	best := t.pick(key, at)
	if best == nil && t.cfg.Settle > 0 && t.settling(key) {
		t.settle(key, at)
		best = t.pick(key, at)
	}
	if best == nil {
		if t.n >= t.cfg.MaxRuns {
			t.makeRoom(at, &due)
		}
		best = &run{key: key, firstStart: at}
		t.byKey[key] = append(t.byKey[key], best)
		t.n++
	}
	best.attempts++
	best.open++
	a := &Attempt{t: t, r: best, n: best.attempts}
	best.latest = a
	best.active = at
	return a
}

// pick returns the run of key a connection starting at at continues, nil
// if none: of those that may, the one whose latest attempt ended last.
func (t *Tracker) pick(key Key, at time.Time) *run {
	var best *run
	for _, r := range t.byKey[key] {
		if !t.continues(r, at) {
			continue
		}
		if best == nil || r.latest.gone.After(best.latest.gone) {
			best = r
		}
	}
	return best
}

// settling reports whether a run of key has its latest attempt open and
// in its handshake: one whose client may have just closed it to retry.
func (t *Tracker) settling(key Key) bool {
	for _, r := range t.byKey[key] {
		if l := r.latest; !r.done && l.gone.IsZero() && !l.established {
			return true
		}
	}
	return false
}

// settle waits, without t.mu, until a run of key may be continued, no
// attempt of key is settling any more, or Settle has passed.
func (t *Tracker) settle(key Key, at time.Time) {
	timer := time.NewTimer(t.cfg.Settle)
	defer timer.Stop()
	for t.pick(key, at) == nil && t.settling(key) {
		ended := t.ended
		t.mu.Unlock()
		select {
		case <-ended:
			t.mu.Lock()
		case <-timer.C:
			t.mu.Lock()
			return
		}
	}
}

// continues reports whether a connection starting at at may continue r.
func (t *Tracker) continues(r *run, at time.Time) bool {
	l := r.latest
	switch {
	case r.done, l.gone.IsZero(), at.Add(t.cfg.Settle).Before(l.gone):
		return false // ended with ok, or its latest attempt overlaps this one
	case at.Sub(l.gone) > t.cfg.MaxGap, at.Sub(r.firstStart) > t.cfg.MaxSpan:
		return false
	}
	return true
}

// expired reports whether no connection at or after now can continue r.
func (t *Tracker) expired(r *run, now time.Time) bool {
	l := r.latest
	if l.gone.IsZero() {
		return false // an attempt in flight
	}
	return r.done || now.Sub(l.gone) > t.cfg.MaxGap || now.Sub(r.firstStart) > t.cfg.MaxSpan
}

// prune forgets key's runs that can no longer be continued; their
// summaries go into due.
func (t *Tracker) prune(key Key, now time.Time, due *dueList) {
	rs := t.byKey[key]
	live := rs[:0]
	for _, r := range rs {
		if !t.expired(r, now) {
			live = append(live, r)
		} else {
			t.over(r, due)
		}
	}
	clear(rs[len(live):])
	t.n -= len(rs) - len(live)
	if len(live) == 0 {
		delete(t.byKey, key)
	} else {
		t.byKey[key] = live
	}
}

// makeRoom brings the table below MaxRuns: first by forgetting every run
// that expired, then the least recently active runs (those with no
// attempt in flight first). A forgotten run's next attempt starts a new run.
func (t *Tracker) makeRoom(now time.Time, due *dueList) {
	for k := range t.byKey {
		t.prune(k, now, due)
	}
	for t.n >= t.cfg.MaxRuns {
		var victim *run
		vi := -1
		for _, rs := range t.byKey {
			for i, r := range rs {
				if victim == nil || older(r, victim) {
					victim, vi = r, i
				}
			}
		}
		t.over(victim, due)
		rs := t.byKey[victim.key]
		rs = append(rs[:vi], rs[vi+1:]...)
		if len(rs) == 0 {
			delete(t.byKey, victim.key)
		} else {
			t.byKey[victim.key] = rs
		}
		t.n--
	}
}

// older orders eviction candidates: runs between attempts before runs with
// one in flight, then by last activity.
func older(a, b *run) bool {
	af, bf := a.latest.gone.IsZero(), b.latest.gone.IsZero()
	if af != bf {
		return bf
	}
	return a.active.Before(b.active)
}

// Len is the number of runs tracked.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// Number is the attempt's place in its run: 1 for the first.
func (a *Attempt) Number() int {
	if a == nil {
		return 0
	}
	return a.n
}

// First is the run's first root span, as recorded by its Started; invalid
// for the first attempt itself.
func (a *Attempt) First() oteltrace.SpanContext {
	if a == nil || a.n == 1 {
		return oteltrace.SpanContext{}
	}
	a.t.mu.Lock()
	defer a.t.mu.Unlock()
	return a.r.first
}

// Own is what Started recorded for a run's first attempt: its own root
// span; invalid for the others.
func (a *Attempt) Own() oteltrace.SpanContext {
	if a == nil || a.n != 1 {
		return oteltrace.SpanContext{}
	}
	a.t.mu.Lock()
	defer a.t.mu.Unlock()
	return a.r.first
}

// StartOptions are the root span's options for the attempt: the attribute
// trace.RunAttempt and, for a retry, a link to the run's first root span
// (carrying trace.RunAttempt 1, so the link says what it points at).
func (a *Attempt) StartOptions() []oteltrace.SpanStartOption {
	if a == nil {
		return nil
	}
	opts := []oteltrace.SpanStartOption{oteltrace.WithAttributes(trace.RunAttempt.Int(a.n))}
	if first := a.First(); first.IsValid() {
		opts = append(opts, oteltrace.WithLinks(oteltrace.Link{
			SpanContext: first,
			Attributes:  []attribute.KeyValue{trace.RunAttempt.Int(1)},
		}))
	}
	return opts
}

// Started records the attempt's root span; the first attempt's becomes
// the run's link target.
func (a *Attempt) Started(sc oteltrace.SpanContext) {
	if a == nil || a.n != 1 {
		return
	}
	a.t.mu.Lock()
	a.r.first = sc
	a.t.mu.Unlock()
}

// Established reports that the attempt is past its handshake (the client
// sent application data): a client does not retry it, so a new connection
// from the same address need not wait for it to end.
func (a *Attempt) Established() {
	if a == nil {
		return
	}
	a.t.mu.Lock()
	a.established = true
	a.t.mu.Unlock()
}

// Over reports that a direction of the attempt ended at at: the client's
// (it closed or was reset) or the upstream's (a client in its handshake
// cannot go on without it). From then on the run may continue with the
// client's next attempt, even while the relay still waits for the other
// direction.
func (a *Attempt) Over(at time.Time) {
	if a == nil {
		return
	}
	a.t.mu.Lock()
	defer a.t.mu.Unlock()
	a.leave(at)
}

func (a *Attempt) leave(at time.Time) {
	if !a.gone.IsZero() {
		return
	}
	a.gone = at
	if at.After(a.r.active) {
		a.r.active = at
	}
	close(a.t.ended)
	a.t.ended = make(chan struct{})
}

// End reports the attempt's verdict once the connection closed at at (it
// is over then, if it was not before). ok ends the run, when this is still
// the run's latest attempt.
//
// write writes the attempt's trace (its spans and log line); nil when the
// caller writes it in any case. With folding on, End calls write (on the
// caller's goroutine, before it returns) when the attempt tells something
// new (fold.go), or keeps it as the run's possible last attempt: written
// when the run turns out to end with it, dropped (folded, counted) when a
// later attempt of the run ends first. End reports whether write was
// called.
func (a *Attempt) End(at time.Time, mode failure.Mode, write func()) (written bool) {
	if a == nil {
		if write != nil {
			write()
		}
		return write != nil
	}
	var due dueList
	defer due.run()
	t := a.t
	t.mu.Lock()
	defer t.mu.Unlock()
	a.leave(at)
	r := a.r
	if mode == failure.OK && r.latest == a {
		r.done = true
	}
	if a.ended {
		return false
	}
	a.ended = true
	r.open--
	written = t.record(r, a.n, at, mode, write, &due)
	if r.over && r.open == 0 {
		t.finish(r, &due)
	} else if r.done && r.open == 0 {
		// ok ends the run: say so now rather than at the next sweep.
		t.finish(r, &due)
	}
	return written
}
