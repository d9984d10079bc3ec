package runs

import (
	"math/bits"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// # Folding a run's repeats
//
// A failing `contrast set` reconnects back to back for up to 180 s
// (docs/runs.md): thousands of attempts that all failed the same way. Each
// written in full is four spans and a log line that say nothing the first
// did not, and at that rate a trace file outgrows its pod's volume and a
// collector its quota in one storm. So, with Config.Fold on, an attempt's
// trace is written only when it tells something new:
//
//   - the run's first FoldFirst attempts (32): how the run began, in full;
//   - every attempt whose mode differs from the attempt that ended before
//     it, and the attempt before such a change (the last of its streak):
//     each step of the story has its first and its last attempt;
//   - every ok: the end of a story is never folded;
//   - attempts numbered by a power of two (64, 128, …): a sparse sample
//     across a long streak, 14 for the longest run a CLI makes;
//   - the run's last attempt, which is known only once the run is over: the
//     latest folded attempt is kept and written when no attempt follows it.
//
// Every other attempt is folded: no root span, no child span, no log line,
// none of the work of making them. It is counted: the run's summary span
// (summary.go) carries the attempts, the folded ones and the count per
// mode, so `ccproxy analyze` and the metrics stay exact. 3,000 attempts
// failing alike are written as 32 + 6 + 1 attempts and a summary or two.

// keep reports whether attempt n, which ended with mode after an attempt
// of its run that ended with prev (hasPrev false for none), is written at
// once. first is Config.FoldFirst.
func keep(n, first int, mode, prev failure.Mode, hasPrev bool) bool {
	switch {
	case n <= first, mode == failure.OK, !hasPrev, mode != prev:
		return true
	}
	return isPowerOfTwo(n)
}

func isPowerOfTwo(n int) bool { return n > 0 && bits.OnesCount(uint(n)) == 1 }
