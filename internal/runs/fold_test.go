package runs

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

func TestKeep(t *testing.T) {
	lb, it, ok := failure.LBClosedEarly, failure.IssuerTimeout, failure.OK
	tests := []struct {
		name    string
		n       int
		mode    failure.Mode
		prev    failure.Mode
		hasPrev bool
		want    bool
	}{
		{"within the first", 3, lb, lb, true, true},
		{"the last of the first", 10, lb, lb, true, true},
		{"a repeat after the first", 11, lb, lb, true, false},
		{"a change", 11, it, lb, true, true},
		{"ok after ok", 11, ok, ok, true, true},
		{"ok after a failure", 11, ok, lb, true, true},
		{"nothing before it", 11, lb, "", false, true},
		{"a power of two", 16, lb, lb, true, true},
		{"a power of two far out", 4096, lb, lb, true, true},
		{"one past a power of two", 17, lb, lb, true, false},
		{"one short of a power of two", 1023, lb, lb, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := keep(tc.n, 10, tc.mode, tc.prev, tc.hasPrev); got != tc.want {
				t.Errorf("keep(%d, 10, %s, %s, %v) = %v, want %v", tc.n, tc.mode, tc.prev, tc.hasPrev, got, tc.want)
			}
		})
	}
}

// seq spells a run of attempts: "lb*3000 it ok" is 3000 lb_closed_early,
// one issuer_timeout, one ok.
func seq(s string) []failure.Mode {
	names := map[string]failure.Mode{
		"lb": failure.LBClosedEarly, "it": failure.IssuerTimeout, "ok": failure.OK,
		"ab": failure.ClientAborted, "ph": failure.PolicyHashMismatch,
	}
	var out []failure.Mode
	for _, f := range strings.Fields(s) {
		name, count, _ := strings.Cut(f, "*")
		n := 1
		if count != "" {
			fmt.Sscan(count, &n)
		}
		for range n {
			out = append(out, names[name])
		}
	}
	return out
}

// span is a list of attempt numbers: "1-3 8 16" is 1, 2, 3, 8, 16.
func nums(s string) []int {
	var out []int
	for _, f := range strings.Fields(s) {
		var a, b int
		if _, err := fmt.Sscanf(f, "%d-%d", &a, &b); err == nil {
			for i := a; i <= b; i++ {
				out = append(out, i)
			}
			continue
		}
		fmt.Sscan(f, &a)
		out = append(out, a)
	}
	return out
}

// drive runs the attempts of modes one after the other, 1 ms apart, from
// one client through a Tracker with cfg, sweeps once the run is over, and
// returns the attempts written, in the order they were, and the summaries.
func drive(t *testing.T, cfg Config, modes []failure.Mode) (written []int, sums []Summary, folded int) {
	t.Helper()
	cfg.Summaries = func(s Summary) { sums = append(sums, s) }
	cfg.OnFold = func(k Key) {
		if k != cli {
			t.Errorf("OnFold(%v), want %v", k, cli)
		}
		folded++
	}
	tr := New(cfg)
	d := time.Duration(0)
	for i, m := range modes {
		a := tr.Begin(cli, at(d))
		if a.Number() != i+1 {
			t.Fatalf("attempt %d numbered %d: the run split", i+1, a.Number())
		}
		a.Started(spanOf("first"))
		n := a.Number()
		d += 500 * time.Microsecond
		a.Over(at(d))
		a.End(at(d), m, func() { written = append(written, n) })
		d += 500 * time.Microsecond
	}
	tr.Sweep(at(d + time.Minute))
	return written, sums, folded
}

func TestFoldSequences(t *testing.T) {
	tests := []struct {
		name  string
		modes string
		first int
		want  string // attempts written
	}{
		{"a storm of one mode", "lb*3000", 10,
			"1-10 16 32 64 128 256 512 1024 2048 3000"},
		{"few attempts: all of them", "lb*4 it", 10, "1-5"},
		{"the demo's retry", "lb*3 it", 10, "1-4"},
		{"a storm, then another mode", "lb*100 it*40", 3,
			"1-3 4 8 16 32 64 100 101 128 140"},
		{"alternating modes: every change", "lb it lb it lb it lb it lb it lb it", 3,
			"1-12"},
		{"alternating after a storm", "lb*20 it lb it lb", 3,
			"1-3 4 8 16 20 21 22 23 24"},
		{"ok ends the run, written", "lb*50 ok", 3,
			"1-3 4 8 16 32 50 51"},
		{"the CLI's abandoned connection between failures", "lb*30 ab lb*5", 3,
			"1-3 4 8 16 30 31 32 36"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			modes := seq(tc.modes)
			written, sums, folded := drive(t, Config{Fold: true, FoldFirst: tc.first}, modes)
			want := nums(tc.want)
			if !slices.Equal(written, want) {
				t.Errorf("written %v\nwant    %v", written, want)
			}
			if folded != len(modes)-len(want) {
				t.Errorf("OnFold called %d times, want %d", folded, len(modes)-len(want))
			}
			if len(sums) == 0 {
				t.Fatal("no summary")
			}
			final := sums[len(sums)-1]
			if !final.Final || final.Attempts != len(modes) || final.Folded != len(modes)-len(want) || final.InFlight != 0 {
				t.Errorf("final summary %+v: want final, %d attempts, %d folded, none in flight", final, len(modes), len(modes)-len(want))
			}
			if final.Last != modes[len(modes)-1] {
				t.Errorf("summary's last mode %s, want %s", final.Last, modes[len(modes)-1])
			}
			total := 0
			for _, m := range final.Modes {
				want := 0
				for _, x := range modes {
					if x == m.Mode {
						want++
					}
				}
				if m.Count != want {
					t.Errorf("summary counts %s ×%d, want ×%d", m.Mode, m.Count, want)
				}
				total += m.Count
			}
			if total != len(modes) {
				t.Errorf("summary's modes add up to %d, want %d", total, len(modes))
			}
			if !final.First.Equal(spanOf("first")) {
				t.Errorf("summary's first span %v, want the first attempt's", final.First)
			}
		})
	}
}

func TestFoldOffWritesEveryAttempt(t *testing.T) {
	modes := seq("lb*300 it")
	written, sums, folded := drive(t, Config{}, modes)
	if len(written) != len(modes) || folded != 0 {
		t.Errorf("fold off: %d of %d written, %d folded", len(written), len(modes), folded)
	}
	if f := sums[len(sums)-1]; f.Attempts != len(modes) || f.Folded != 0 {
		t.Errorf("fold off: summary %+v", f)
	}
}

func TestNoSummaryForARunOfOne(t *testing.T) {
	_, sums, _ := drive(t, Config{Fold: true}, seq("ok"))
	if len(sums) != 0 {
		t.Errorf("a run of one attempt got summaries: %+v", sums)
	}
}

// TestProgressSummaries: a long run is summarized every SummaryEvery while
// it goes on, each summary cumulative, and once more when it is over.
func TestProgressSummaries(t *testing.T) {
	var sums []Summary
	tr := New(Config{Fold: true, SummaryEvery: 10 * time.Second, Summaries: func(s Summary) { sums = append(sums, s) }})
	d := time.Duration(0)
	for i := range 3000 { // one attempt every 10 ms: 30 s
		a := tr.Begin(cli, at(d))
		a.Started(spanOf("first"))
		d += 5 * time.Millisecond
		a.End(at(d), failure.LBClosedEarly, func() {})
		d += 5 * time.Millisecond
		if i%100 == 99 {
			tr.Sweep(at(d))
		}
	}
	tr.Sweep(at(d + 5*time.Second))
	if len(sums) != 4 {
		t.Fatalf("%d summaries, want 3 in progress (10, 20, 30 s) and the final", len(sums))
	}
	for i, s := range sums[:3] {
		if s.Final || s.Attempts != (i+1)*1000 {
			t.Errorf("summary %d: final %v, %d attempts; want in progress, %d", i, s.Final, s.Attempts, (i+1)*1000)
		}
	}
	if f := sums[3]; !f.Final || f.Attempts != 3000 {
		t.Errorf("final summary: %+v", f)
	}
}

// TestFlushWritesTheKeptLast: at shutdown every run's kept last attempt is
// written and its final summary given; an attempt still open is waited for.
func TestFlushWritesTheKeptLast(t *testing.T) {
	var sums []Summary
	var written []int
	tr := New(Config{Fold: true, FoldFirst: 1, Summaries: func(s Summary) { sums = append(sums, s) }})
	var open *Attempt
	for i := 1; i <= 6; i++ {
		a := tr.Begin(cli, at(time.Duration(i)*ms))
		if i == 6 {
			open = a
			break
		}
		a.End(at(time.Duration(i)*ms+ms/2), failure.LBClosedEarly, func() { written = append(written, i) })
	}
	tr.Flush()
	if len(sums) != 0 {
		t.Fatalf("summary before the open attempt ended: %+v", sums)
	}
	open.End(at(7*ms), failure.LBClosedEarly, func() { written = append(written, 6) })
	if want := []int{1, 2, 4, 6}; !slices.Equal(written, want) {
		t.Errorf("written %v, want %v", written, want)
	}
	if len(sums) != 1 || !sums[0].Final || sums[0].Attempts != 6 || sums[0].Folded != 2 {
		t.Errorf("summaries %+v, want one final: 6 attempts, 2 folded", sums)
	}
	if tr.Len() != 0 {
		t.Errorf("%d runs left after Flush", tr.Len())
	}
}

func TestSnapshot(t *testing.T) {
	tr := New(Config{Fold: true})
	a := tr.Begin(cli, at(0))
	a.End(at(ms), failure.LBClosedEarly, func() {})
	tr.Begin(cli, at(2*ms))
	tr.Begin(other, at(5*ms))
	got := tr.Snapshot()
	if len(got) != 2 {
		t.Fatalf("snapshot %+v, want 2 runs", got)
	}
	if got[0].Key != other || got[1].Key != cli {
		t.Errorf("snapshot order %v, %v: want the latest active first", got[0].Key, got[1].Key)
	}
	if s := got[1]; s.Attempts != 1 || s.InFlight != 1 || s.Final || s.Last != failure.LBClosedEarly {
		t.Errorf("snapshot of the retrying run: %+v", s)
	}
}

func TestSteps(t *testing.T) {
	s := Summary{Modes: []ModeCount{{failure.LBClosedEarly, 5412}, {failure.IssuerTimeout, 1}}}
	if got, want := s.Steps(), "lb_closed_early ×5,412, issuer_timeout ×1"; got != want {
		t.Errorf("Steps() = %q, want %q", got, want)
	}
}
