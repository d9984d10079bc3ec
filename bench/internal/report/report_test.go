package report

import (
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/bench/internal/procstat"
	"github.com/ccproxy-dev/ccproxy/bench/internal/stats"
)

func results() *Results {
	gib := int64(1 << 30)
	rtt := func(us int) *stats.Summary {
		return &stats.Summary{N: 10, P50: time.Duration(us) * time.Microsecond, P99: time.Duration(2*us) * time.Microsecond}
	}
	idle := func(n int, mib int64) IdlePoint {
		return IdlePoint{Target: n, Established: n, Usage: procstat.Usage{Procs: 1, RSS: mib << 20, PSS: mib << 20}}
	}
	return &Results{
		Primary: "ccproxy", IdleLow: 1000, IdleHigh: 10000,
		Relays: []*Relay{
			{Name: "direct", Bulk: []Bulk{{Bytes: gib, Upload: time.Second, Download: time.Second}}, RTT: rtt(20)},
			{
				Name: "ccproxy",
				// The second round is the best; the first must be ignored.
				Bulk: []Bulk{{Bytes: gib, Upload: 3 * time.Second, Download: 3 * time.Second}, {Bytes: gib, Upload: 1200 * time.Millisecond, Download: 1100 * time.Millisecond}},
				RTT:  rtt(45),
				Rate: []Rate{{PerSecond: 300, Conns: 300}, {PerSecond: 100, Conns: 100}, {PerSecond: 200, Conns: 200}},
				Idle: []IdlePoint{{Usage: procstat.Usage{RSS: 10 << 20}}, idle(1000, 40),
					{Target: 10000, Established: 3334, Usage: procstat.Usage{RSS: 100 << 20}, Err: "i/o timeout"}},
			},
			{Name: "haproxy", Bulk: []Bulk{{Bytes: gib, Upload: 1500 * time.Millisecond, Download: 1500 * time.Millisecond}}, RTT: rtt(40),
				Idle: []IdlePoint{idle(1000, 20), idle(10000, 50)}},
			{Name: "socat", Bulk: []Bulk{{Bytes: gib, Upload: 4 * time.Second, Download: 4 * time.Second}}, RTT: rtt(60),
				Idle: []IdlePoint{idle(1000, 2500), {Target: 10000, Skipped: "capped"}}},
		},
	}
}

func TestGoals(t *testing.T) {
	want := map[string]struct{ known, met bool }{
		"throughput vs direct":              {true, true}, // 1/1.2 = 0.83×, 1/1.1 = 0.91×
		"throughput vs HAProxy":             {true, true},
		"throughput vs socat":               {true, true},
		"added round-trip latency":          {true, true}, // +25 µs
		"memory at 1,000 idle connections":  {true, true},
		"memory at 10,000 idle connections": {true, false}, // stalled at 3,334
	}
	goals := results().Goals()
	if len(goals) != len(want) {
		t.Fatalf("%d goals, want %d: %+v", len(goals), len(want), goals)
	}
	for _, g := range goals {
		w, ok := want[g.Name]
		if !ok {
			t.Errorf("unexpected goal %q", g.Name)
			continue
		}
		if g.Known != w.known || g.Met != w.met {
			t.Errorf("%s: known %v met %v (%s), want known %v met %v", g.Name, g.Known, g.Met, g.Measured, w.known, w.met)
		}
	}
}

func TestGoalsUnmeasured(t *testing.T) {
	res := results()
	res.Relays = res.Relays[1:2] // ccproxy alone: no baseline, no peers
	for _, g := range res.Goals() {
		if strings.HasPrefix(g.Name, "throughput") || strings.HasPrefix(g.Name, "added") {
			if g.Known {
				t.Errorf("%s: known without its reference relay: %+v", g.Name, g)
			}
		}
	}
}

func TestMarkdown(t *testing.T) {
	md := results().Markdown()
	for _, want := range []string{
		"| metric | direct | ccproxy | haproxy | socat |",
		"| bulk upload, Gbit/s | 8.59 | 7.16 | 5.73 | 2.15 |",        // ccproxy's best round
		"| new TLS connections/s | – | 200 | – | – |",                // the median round
		"| RSS at 10,000 idle connections, MiB | – | – | 50.0 | – |", // ccproxy did not reach it
		"ccproxy ÷ direct", "ccproxy ÷ haproxy", "ccproxy ÷ socat",
		"| 64-byte round trip p50, µs | 2.25× | 2.00× | 3.00× | 1.12× | 0.75× |",
		"only 3,334 of 10,000 connections established",
		"| socat | 10,000 | – |",
		"| ccproxy | 1,000 | 1,000 | 1 | 0 | 0 | 0 | 0.0 | 40.0 | 0.0 / 0.0 | 40.0 | 30.7 |", // (40-10) MiB / 1000
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 9960: "9,960", 1234567: "1,234,567"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestIssueTable: issue 25's rows for the four subjects, each goal judged
// for ccproxy (the memory and storm rows with tracing on), and the
// obstacle shown only where a goal is missed.
func TestIssueTable(t *testing.T) {
	res := results()
	gib := int64(1 << 30)
	res.Relays = append(res.Relays,
		&Relay{Name: "gocopy", Bulk: []Bulk{{Bytes: gib, Upload: 1250 * time.Millisecond, Download: 1250 * time.Millisecond}},
			RTT: &stats.Summary{N: 10, P50: 38 * time.Microsecond}, Rate: []Rate{{PerSecond: 160}},
			Idle: []IdlePoint{{Target: 1000, Established: 1000, Usage: procstat.Usage{RSS: 18 << 20}}}},
		&Relay{Name: "ccproxy-traced", Idle: []IdlePoint{{Usage: procstat.Usage{RSS: 8 << 20}},
			{Target: 1000, Established: 1000, Usage: procstat.Usage{RSS: 22 << 20, RSSAnon: 17 << 20, RSSFile: 5 << 20}},
			{Target: 10000, Established: 10000, Usage: procstat.Usage{RSS: 61 << 20, RSSAnon: 50 << 20, RSSFile: 11 << 20}}},
			// The median of three storm rounds is the second here.
			Storm: []Rate{{PerSecond: 900, Conns: 1800, RelayCPU: 540 * time.Millisecond}, {PerSecond: 1000, Conns: 2000, RelayCPU: 700 * time.Millisecond}, {PerSecond: 1200, Conns: 2400}}},
	)
	res.relay("direct").Rate = []Rate{{PerSecond: 400}}
	res.relay("haproxy").Rate = []Rate{{PerSecond: 300}}
	res.relay("haproxy").Storm = []Rate{{PerSecond: 1500, Conns: 3000, RelayCPU: 450 * time.Millisecond}}
	res.Obstacles = map[string]string{IssueRowRTT: "two goroutine hand-offs per message", IssueRowBulk: "never shown: met", IssueRowStorm: "the root span per attempt", IssueRowIdleHigh: "the watcher's state"}
	tab := res.IssueTable()
	for _, want := range []string{
		"| RSS, 1,000 idle relayed connections, tracing on | – | 20.0 MiB | 18.0 MiB | 22.0 MiB (ccproxy-traced; anon 17.0 + file 5.0; 8.0 MiB with none) | ≤ 24 MiB | yes | – |",
		"| RSS, 10,000 idle relayed connections, tracing on | – | 50.0 MiB | – | 61.0 MiB (ccproxy-traced; anon 50.0 + file 11.0; 8.0 MiB with none) | ≤ 60 MiB and ≤ HAProxy × 1.2 | **no** | the watcher's state |",
		"| added p50 round trip over direct (64 bytes) | 0 (20 µs) | +20 µs | +18 µs | +25 µs | ≤ HAProxy's | **no** | two goroutine hand-offs per message |",
		"| new TLS connections/s (share of direct) | 1.00 (400/s) | 0.75 | 0.40 | 0.50 | ≥ HAProxy's | **no** | – |",
		// 0.87 ≥ 1.3 × 0.667: met, so its obstacle is not shown.
		"| bulk throughput (up and down, share of direct) | 1.00 | 0.67 | 0.80 | 0.87 | ≥ 1.3 × HAProxy's | yes | – |",
		"| storm: failing TLS connections/s attempted (upstream closes after the ClientHello), relay CPU per 1,000, tracing on | – | 1500/s, CPU 150 ms per 1,000 | – | 1000/s, CPU 350 ms per 1,000 (ccproxy-traced) | ≥ HAProxy's rate | **no** | the root span per attempt |",
	} {
		if !strings.Contains(tab, want) {
			t.Errorf("IssueTable lacks\n%s\nin\n%s", want, tab)
		}
	}
}
