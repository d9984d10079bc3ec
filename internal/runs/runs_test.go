package runs

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/trace"
)

var t0 = time.Date(2025, 6, 1, 12, 1, 3, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// step is one event of a table test. The connection is named by conn; a
// begin step says which attempt it must get and which connection's span
// must be its run's first ("" for a first attempt).
type step struct {
	op   string // begin, gone, end
	conn string
	key  Key
	at   time.Duration
	mode failure.Mode // end

	wantN     int
	wantFirst string
}

var (
	cli      = Key{Client: "10.0.0.5", Upstream: "coordinator:1313"}
	other    = Key{Client: "10.0.0.6", Upstream: "coordinator:1313"}
	otherUp  = Key{Client: "10.0.0.5", Upstream: "coordinator:1314"}
	loopback = Key{Client: "127.0.0.1", Upstream: "coordinator:1313"}
)

func begin(conn string, k Key, d time.Duration, n int, first string) step {
	return step{op: "begin", conn: conn, key: k, at: d, wantN: n, wantFirst: first}
}
func gone(conn string, d time.Duration) step { return step{op: "gone", conn: conn, at: d} }
func end(conn string, d time.Duration, m failure.Mode) step {
	return step{op: "end", conn: conn, at: d, mode: m}
}

// closed is a connection that the client ended at d and the relay named m.
func closed(conn string, d time.Duration, m failure.Mode) []step {
	return []step{gone(conn, d), end(conn, d, m)}
}

const ms = time.Millisecond

// spanOf is a distinct, valid span context per connection name.
func spanOf(name string) oteltrace.SpanContext {
	var tid oteltrace.TraceID
	var sid oteltrace.SpanID
	copy(tid[:], fmt.Sprintf("%-16s", name))
	copy(sid[:], fmt.Sprintf("%-8s", name))
	return oteltrace.NewSpanContext(oteltrace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: oteltrace.FlagsSampled})
}

func flat(parts ...any) []step {
	var out []step
	for _, p := range parts {
		switch v := p.(type) {
		case step:
			out = append(out, v)
		case []step:
			out = append(out, v...)
		}
	}
	return out
}

func TestTracker(t *testing.T) {
	lb, it, ok, ab := failure.LBClosedEarly, failure.IssuerTimeout, failure.OK, failure.ClientAborted
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{
			name: "one healthy connection, then another: two runs",
			steps: flat(
				begin("a", cli, 0, 1, ""), closed("a", 50*ms, ok),
				begin("b", cli, 300*ms, 1, ""),
			),
		},
		{
			name: "a retrying CLI: back-to-back attempts, then the slow issuer, then ok",
			steps: flat(
				begin("a", cli, 0, 1, ""), closed("a", 2*ms, lb),
				begin("b", cli, 3*ms, 2, "a"), closed("b", 4*ms, lb),
				begin("c", cli, 5*ms, 3, "a"), closed("c", 6*ms, lb),
				begin("d", cli, 7*ms, 4, "a"), closed("d", 30*time.Second, it),
				begin("e", cli, 30*time.Second+time.Millisecond, 5, "a"), closed("e", 31*time.Second, ok),
				begin("f", cli, 31*time.Second+500*ms, 1, ""),
			),
		},
		{
			name: "the client left while the relay still waits for the upstream: the retry continues the run",
			steps: flat(
				begin("a", cli, 0, 1, ""), gone("a", 1500*ms),
				begin("b", cli, 1501*ms, 2, "a"),
				end("a", 3*time.Second, it), // the upstream answered late
				gone("b", 3100*ms),
				begin("c", cli, 3200*ms, 3, "a"),
			),
		},
		{
			name: "a late ok of an earlier attempt does not end the run",
			steps: flat(
				begin("a", cli, 0, 1, ""), gone("a", 10*ms),
				begin("b", cli, 11*ms, 2, "a"),
				end("a", 12*ms, ok),
				closed("b", 20*ms, lb),
				begin("c", cli, 21*ms, 3, "a"),
			),
		},
		{
			name: "a gap up to MaxGap continues, a longer one starts a new run",
			steps: flat(
				begin("a", cli, 0, 1, ""), closed("a", 10*ms, lb),
				begin("b", cli, 10*ms+DefaultMaxGap, 2, "a"), closed("b", 3*time.Second, lb),
				begin("c", cli, 3*time.Second+DefaultMaxGap+ms, 1, ""),
			),
		},
		{
			name: "a configured gap",
			cfg:  Config{MaxGap: 100 * ms},
			steps: flat(
				begin("a", cli, 0, 1, ""), closed("a", 10*ms, lb),
				begin("b", cli, 110*ms, 2, "a"), closed("b", 120*ms, lb),
				begin("c", cli, 221*ms, 1, ""),
			),
		},
		{
			name: "no run lasts beyond the CLI's 180 s",
			steps: func() []step {
				// One attempt a second: up to 182 s after the first (the
				// CLI's 180 s and a gap) one run, then a new one.
				var s []step
				for i := 0; i <= 184; i++ {
					name := fmt.Sprintf("c%d", i)
					d := time.Duration(i) * time.Second
					switch {
					case i == 0:
						s = append(s, begin(name, cli, d, 1, ""))
					case i <= 182:
						s = append(s, begin(name, cli, d, i+1, "c0"))
					case i == 183:
						s = append(s, begin(name, cli, d, 1, ""))
					default:
						s = append(s, begin(name, cli, d, 2, "c183"))
					}
					s = append(s, closed(name, d+10*ms, lb)...)
				}
				return s
			}(),
		},
		{
			name: "an attempt that overlaps the run's attempt in flight is another run",
			steps: flat(
				begin("a", loopback, 0, 1, ""),
				begin("b", loopback, 1*ms, 1, ""), // a second client behind the port-forward
				closed("a", 2*ms, lb),
				closed("b", 3*ms, lb),
				// Both runs may continue; the latest ended (b's) wins.
				begin("c", loopback, 4*ms, 2, "b"),
				begin("d", loopback, 5*ms, 2, "a"), // b's run is in flight: a's
				closed("c", 6*ms, ok),
				closed("d", 7*ms, ok),
				begin("e", loopback, 8*ms, 1, ""),
			),
		},
		{
			name: "a connection accepted well before the previous attempt ended is not its retry",
			steps: flat(
				begin("a", cli, 0, 1, ""), gone("a", 20*ms),
				begin("b", cli, 5*ms, 1, ""), // accepted 15 ms before a ended (reported late)
			),
		},
		{
			name: "an attempt whose end the relay read up to Settle after the next accept is its predecessor",
			steps: flat(
				begin("a", cli, 0, 1, ""), gone("a", 20*ms),
				begin("b", cli, 12*ms, 2, "a"), // the client closed a, then dialed b; the relay read a's close 8 ms late
			),
		},
		{
			name: "without Settle no tolerance",
			cfg:  Config{Settle: -1},
			steps: flat(
				begin("a", cli, 0, 1, ""), gone("a", 20*ms),
				begin("b", cli, 19*ms, 1, ""),
			),
		},
		{
			name: "clients and upstreams keep their own runs",
			steps: flat(
				begin("a", cli, 0, 1, ""),
				begin("b", other, 0, 1, ""),
				begin("c", otherUp, 0, 1, ""),
				closed("a", 1*ms, lb), closed("b", 1*ms, lb), closed("c", 1*ms, lb),
				begin("d", other, 2*ms, 2, "b"),
				begin("e", cli, 2*ms, 2, "a"),
				begin("f", otherUp, 2*ms, 2, "c"),
			),
		},
		{
			name: "an abandoned straggler belongs to the run; the next CLI seconds later is a new one",
			steps: flat(
				begin("a", cli, 0, 1, ""), closed("a", 2*ms, lb),
				begin("b", cli, 3*ms, 2, "a"), closed("b", 4*ms, ab),
				begin("c", cli, 5*time.Second, 1, ""),
			),
		},
		{
			name: "a full table forgets the least recently active run",
			cfg:  Config{MaxRuns: 2},
			steps: flat(
				begin("a", cli, 0, 1, ""), closed("a", 1*ms, lb),
				begin("b", other, 2*ms, 1, ""), closed("b", 3*ms, lb),
				begin("c", otherUp, 4*ms, 1, ""), // evicts a's run
				begin("d", cli, 5*ms, 1, ""),     // a's run is gone: new (evicts b's)
				begin("e", other, 6*ms, 1, ""),
			),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := New(tt.cfg)
			atts := map[string]*Attempt{}
			for i, s := range tt.steps {
				switch s.op {
				case "begin":
					a := tr.Begin(s.key, at(s.at))
					a.Started(spanOf(s.conn))
					atts[s.conn] = a
					if a.Number() != s.wantN {
						t.Fatalf("step %d: %s is attempt %d, want %d", i, s.conn, a.Number(), s.wantN)
					}
					if want := s.wantFirst; want == "" {
						if a.First().IsValid() {
							t.Fatalf("step %d: %s, a first attempt, links to %v", i, s.conn, a.First())
						}
					} else if !a.First().Equal(spanOf(want)) {
						t.Fatalf("step %d: %s's run starts with %v, want %s's span", i, s.conn, a.First().SpanID(), want)
					}
				case "gone":
					atts[s.conn].Over(at(s.at))
				case "end":
					atts[s.conn].End(at(s.at), s.mode, nil)
				}
				if max := tt.cfg.MaxRuns; max > 0 && tr.Len() > max {
					t.Fatalf("step %d: %d runs tracked, at most %d allowed", i, tr.Len(), max)
				}
			}
		})
	}
}

func TestStartOptions(t *testing.T) {
	tr := New(Config{})
	a := tr.Begin(cli, at(0))
	cfg := oteltrace.NewSpanStartConfig(a.StartOptions()...)
	if got := attempt(cfg); got != 1 {
		t.Errorf("first attempt: %s = %d, want 1", trace.RunAttempt, got)
	}
	if len(cfg.Links()) != 0 {
		t.Errorf("first attempt has links: %v", cfg.Links())
	}
	a.Started(spanOf("a"))
	a.End(at(time.Millisecond), failure.LBClosedEarly, nil)

	b := tr.Begin(cli, at(2*time.Millisecond))
	cfg = oteltrace.NewSpanStartConfig(b.StartOptions()...)
	if got := attempt(cfg); got != 2 {
		t.Errorf("retry: %s = %d, want 2", trace.RunAttempt, got)
	}
	links := cfg.Links()
	if len(links) != 1 || !links[0].SpanContext.Equal(spanOf("a")) {
		t.Fatalf("retry links %v, want one to the first attempt's span", links)
	}
	if len(links[0].Attributes) != 1 || links[0].Attributes[0] != trace.RunAttempt.Int(1) {
		t.Errorf("the link's attributes are %v, want %s=1", links[0].Attributes, trace.RunAttempt)
	}

	// Without a recorded first span (a tracer that records nothing) a
	// retry still counts, with no link.
	tr = New(Config{})
	a = tr.Begin(cli, at(0))
	a.Started(oteltrace.SpanContext{})
	a.End(at(time.Millisecond), failure.LBClosedEarly, nil)
	b = tr.Begin(cli, at(2*time.Millisecond))
	cfg = oteltrace.NewSpanStartConfig(b.StartOptions()...)
	if attempt(cfg) != 2 || len(cfg.Links()) != 0 {
		t.Errorf("retry without a first span: attempt %d, links %v; want 2 and none", attempt(cfg), cfg.Links())
	}
}

func attempt(cfg oteltrace.SpanConfig) int64 {
	for _, kv := range cfg.Attributes() {
		if kv.Key == trace.RunAttempt {
			return kv.Value.AsInt64()
		}
	}
	return 0
}

func TestExpiredRunsAreForgotten(t *testing.T) {
	tr := New(Config{MaxRuns: 3})
	for i, k := range []Key{cli, other, otherUp} {
		a := tr.Begin(k, at(time.Duration(i)*time.Millisecond))
		a.End(at(time.Duration(i+1)*time.Millisecond), failure.LBClosedEarly, nil)
	}
	if tr.Len() != 3 {
		t.Fatalf("%d runs, want 3", tr.Len())
	}
	// Long after: the table is full of expired runs; a new client's run
	// sweeps them all instead of evicting one.
	tr.Begin(loopback, at(time.Minute))
	if tr.Len() != 1 {
		t.Errorf("%d runs after the sweep, want 1", tr.Len())
	}
	// A run ended with ok is forgotten at its key's next connection.
	tr = New(Config{})
	a := tr.Begin(cli, at(0))
	a.End(at(time.Millisecond), failure.OK, nil)
	tr.Begin(cli, at(2*time.Millisecond))
	if tr.Len() != 1 {
		t.Errorf("%d runs, want 1 (the ok run forgotten)", tr.Len())
	}
}

func TestFullTableOfAttemptsInFlight(t *testing.T) {
	tr := New(Config{MaxRuns: 2})
	a := tr.Begin(cli, at(0))
	tr.Begin(other, at(time.Millisecond))
	tr.Begin(otherUp, at(2*time.Millisecond)) // evicts a's run, though in flight
	if tr.Len() != 2 {
		t.Fatalf("%d runs, want 2", tr.Len())
	}
	// The evicted run's attempt still reports safely.
	a.Over(at(3 * time.Millisecond))
	a.End(at(3*time.Millisecond), failure.LBClosedEarly, nil)
	if n := tr.Begin(cli, at(4*time.Millisecond)).Number(); n != 1 {
		t.Errorf("after eviction the client's next connection is attempt %d, want 1", n)
	}
}

func TestKeyOf(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("10.0.0.5"), Port: 51234}, "10.0.0.5"},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 1}, "::1"},
		{&net.UDPAddr{IP: net.ParseIP("192.0.2.1"), Port: 443}, "192.0.2.1"},
		{nil, ""},
		{fakeAddr("[2001:db8::1]:9"), "2001:db8::1"},
		{fakeAddr("pipe"), "pipe"},
	}
	for _, tt := range tests {
		if got := KeyOf(tt.addr, "up:1"); got != (Key{Client: tt.want, Upstream: "up:1"}) {
			t.Errorf("KeyOf(%v) = %+v, want client %q", tt.addr, got, tt.want)
		}
	}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "fake" }
func (a fakeAddr) String() string  { return string(a) }

func TestNilAttempt(t *testing.T) {
	var a *Attempt
	a.Started(spanOf("x"))
	a.Over(t0)
	a.End(t0, failure.OK, nil)
	if a.Number() != 0 || a.First().IsValid() || a.StartOptions() != nil {
		t.Error("a nil attempt reports something")
	}
}

// TestSettle: a connection that arrives while the client's previous attempt
// is still open at the relay waits for it to end and continues its run; an
// established attempt is not waited for.
func TestSettle(t *testing.T) {
	tr := New(Config{Settle: 5 * time.Second})
	a := tr.Begin(cli, at(0))
	a.Started(spanOf("a"))
	go func() {
		time.Sleep(50 * time.Millisecond)
		a.Over(at(30 * time.Millisecond)) // read after the next connection's accept
	}()
	start := time.Now()
	b := tr.Begin(cli, at(25*time.Millisecond))
	if b.Number() != 2 || !b.First().Equal(spanOf("a")) {
		t.Errorf("after waiting: attempt %d, first %v; want 2 of a's run", b.Number(), b.First().SpanID())
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Begin waited %v, want it to return when the attempt ended", took)
	}

	// An established attempt (a healthy client's) is not waited for: a
	// second client behind the same address starts its own run at once.
	b.Established()
	start = time.Now()
	c := tr.Begin(cli, at(40*time.Millisecond))
	if c.Number() != 1 {
		t.Errorf("next to an established attempt: attempt %d, want 1", c.Number())
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Begin waited %v for an established attempt", took)
	}

	// An attempt still in its handshake that does not end: Begin waits
	// Settle, then starts a new run.
	tr = New(Config{Settle: 30 * time.Millisecond})
	tr.Begin(cli, at(0))
	start = time.Now()
	if n := tr.Begin(cli, at(time.Millisecond)).Number(); n != 1 {
		t.Errorf("next to an open attempt: attempt %d, want 1", n)
	}
	if took := time.Since(start); took < 30*time.Millisecond {
		t.Errorf("Begin waited only %v, want Settle", took)
	}
}

// TestConcurrentClients runs many clients at once, each retrying a few
// times (for the race detector), and checks the invariants: every client's
// attempts are one run with consecutive numbers.
func TestConcurrentClients(t *testing.T) {
	tr := New(Config{})
	var wg sync.WaitGroup
	for c := range 50 {
		wg.Go(func() {
			k := Key{Client: fmt.Sprintf("10.0.%d.%d", c/250, c%250), Upstream: "u"}
			d := time.Duration(c) * time.Millisecond
			for i := 1; i <= 5; i++ {
				a := tr.Begin(k, at(d))
				if i == 1 {
					a.Started(spanOf(k.Client))
				}
				if a.Number() != i {
					t.Errorf("client %s: attempt %d numbered %d", k.Client, i, a.Number())
				}
				if i > 1 && !a.First().Equal(spanOf(k.Client)) {
					t.Errorf("client %s: attempt %d links elsewhere", k.Client, i)
				}
				d += time.Millisecond
				a.Over(at(d))
				mode := failure.LBClosedEarly
				if i == 5 {
					mode = failure.OK
				}
				a.End(at(d), mode, nil)
				d += time.Millisecond
			}
		})
	}
	wg.Wait()
}
