package analyze

import (
	"bytes"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

func TestFoldedConnections(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	w := func(n int, mode string) written {
		return written{n: n, start: at(10 * n), end: at(10*n + 5), mode: mode, detail: mode + " detail"}
	}
	first := spanRef{pcommon.TraceID{1}, pcommon.SpanID{1}}
	sum := func(attempts int, modes []string, counts []int64) runSummary {
		return runSummary{first: first, client: "10.0.0.5", upstream: "c:1313", start: at(10), end: at(10*attempts + 5),
			attempts: attempts, modes: modes, counts: counts}
	}
	tests := []struct {
		name    string
		sum     runSummary
		written []written
		want    map[int]string // attempt → mode of the folded ones
	}{
		{"nothing folded", sum(3, []string{"lb"}, []int64{3}), []written{w(1, "lb"), w(2, "lb"), w(3, "lb")}, map[int]string{}},
		{"a streak's middle", sum(6, []string{"lb"}, []int64{6}), []written{w(1, "lb"), w(2, "lb"), w(6, "lb")},
			map[int]string{3: "lb", 4: "lb", 5: "lb"}},
		{"two streaks, each with its first and last written",
			sum(8, []string{"lb", "it"}, []int64{4, 4}), []written{w(1, "lb"), w(4, "lb"), w(5, "it"), w(8, "it")},
			map[int]string{2: "lb", 3: "lb", 6: "it", 7: "it"}},
		{"the last attempt not written yet (a summary in progress)",
			sum(5, []string{"lb"}, []int64{5}), []written{w(1, "lb"), w(2, "lb")},
			map[int]string{3: "lb", 4: "lb", 5: "lb"}},
		{"an attempt that ended out of order: counts win over the streak",
			sum(5, []string{"lb", "ab"}, []int64{4, 1}), []written{w(1, "lb"), w(5, "lb")},
			map[int]string{2: "lb", 3: "lb", 4: "ab"}},
		{"written spans beyond an older summary count nothing",
			sum(3, []string{"lb"}, []int64{3}), []written{w(1, "lb"), w(2, "lb"), w(3, "lb"), w(4, "lb")},
			map[int]string{}},
		{"the same span read twice", sum(4, []string{"lb"}, []int64{4}), []written{w(1, "lb"), w(1, "lb"), w(4, "lb")},
			map[int]string{2: "lb", 3: "lb"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := foldedConnections(tc.sum, tc.written, maxFoldedPerRun)
			if len(got) != len(tc.want) {
				t.Fatalf("%d folded connections %+v, want %v", len(got), got, tc.want)
			}
			prev := time.Time{}
			for _, c := range got {
				if tc.want[c.Attempt] != c.Mode {
					t.Errorf("attempt %d folded as %s, want %q", c.Attempt, c.Mode, tc.want[c.Attempt])
				}
				if !c.Folded || c.runFirst != first || c.Upstream != "c:1313" || c.Client != "10.0.0.5" {
					t.Errorf("folded connection %+v: want Folded, the run's first span, upstream and client", c)
				}
				if c.Start.Before(tc.sum.start) || c.Start.After(tc.sum.end) || c.Start.Before(prev) {
					t.Errorf("attempt %d placed at %v: outside the run or out of order", c.Attempt, c.Start)
				}
				prev = c.Start
				if c.Detail == "" && c.Mode != "ab" {
					t.Errorf("attempt %d has no detail", c.Attempt)
				}
			}
		})
	}
}

func TestFoldedConnectionsBounded(t *testing.T) {
	s := runSummary{first: spanRef{pcommon.TraceID{1}, pcommon.SpanID{1}}, attempts: 1 << 30, modes: []string{"lb"}, counts: []int64{1 << 30}}
	if got := foldedConnections(s, nil, 1000); len(got) != 1000 {
		t.Errorf("a summary of 2^30 attempts gave %d connections, want the limit 1000", len(got))
	}
}

// TestUnsummarizedRuns: a run whose spans read skip attempt numbers and
// that has no summary is counted apart; one whose attempts are all there
// is not.
func TestUnsummarizedRuns(t *testing.T) {
	st, err := ReadOTLPJSON(bytes.NewReader(fixture(t)), "runs.jsonl", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The run of 10.0.0.7: attempts 5 and 6, its first four not in the file.
	if st.UnsummarizedRuns != 1 {
		t.Errorf("%d runs without their summary, want 1", st.UnsummarizedRuns)
	}
	ws := map[spanRef][]written{{span: pcommon.SpanID{1}}: {{n: 1}, {n: 2}, {n: 2}}, {span: pcommon.SpanID{2}}: {{n: 1}, {n: 3}}}
	if n := unsummarized(ws, nil); n != 1 {
		t.Errorf("unsummarized = %d, want 1", n)
	}
	if n := unsummarized(ws, map[spanRef]runSummary{{span: pcommon.SpanID{2}}: {}}); n != 0 {
		t.Errorf("unsummarized with the summary = %d, want 0", n)
	}
}
