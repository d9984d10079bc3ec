package proxy

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"
)

// IsExhausted reports whether err is the kernel saying this process or host
// ran out of a resource rather than anything about the peer: descriptors
// (EMFILE per process, ENFILE per host), socket buffers or kernel memory
// (ENOBUFS, ENOMEM), or local ports for an outgoing connection
// (EADDRNOTAVAIL). Such a dial failure says nothing about the upstream.
func IsExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.EADDRNOTAVAIL)
}

// exhaustion counts accepts and dials that failed with IsExhausted, and
// remembers per operation whether it is failing now, so that a storm is
// logged once when it starts and once when it is over, not per failure.
//
// An episode is over only once the operation has worked again with no
// failure for quiet: near the descriptor limit accepts and dials succeed
// and fail by turns as connections close and open, and ending an episode
// at the first success would log a pair of lines per failure.
type exhaustion struct {
	count    atomic.Int64
	failing  [2]atomic.Bool  // accept, dial
	lastFail [2]atomic.Int64 // unix nanoseconds
	quiet    time.Duration   // defaultExhaustQuiet when 0
}

// defaultExhaustQuiet is how long an operation must work without failing
// before its exhaustion episode is logged as over.
const defaultExhaustQuiet = 5 * time.Second

func opIndex(op string) int {
	if op == "accept" {
		return 0
	}
	return 1
}

// exhaust counts one exhausted accept or dial, logs the first of an
// episode and tells OnExhausted.
func (s *server) exhaust(r Route, op string, err error) {
	n := s.ex.failed(op, time.Now())
	if s.ex.failing[opIndex(op)].CompareAndSwap(false, true) {
		s.log.Error("out of resources: cannot "+op+"; further failures are counted, not logged, until it has worked for "+s.ex.quietFor().String(),
			"op", op, "listen", r.Listen, "upstream", r.Upstream, "err", err, "exhausted_so_far", n)
	}
	if s.p.OnExhausted != nil {
		s.p.OnExhausted(r, op, err)
	}
}

// failed counts a failure of op at now and returns the count so far.
func (e *exhaustion) failed(op string, now time.Time) int64 {
	e.lastFail[opIndex(op)].Store(now.UnixNano())
	return e.count.Add(1)
}

func (e *exhaustion) quietFor() time.Duration {
	if e.quiet > 0 {
		return e.quiet
	}
	return defaultExhaustQuiet
}

// recovered ends an exhaustion episode of op, if one is on and op has not
// failed for the quiet period: op just worked.
func (e *exhaustion) recovered(log *slog.Logger, op string) {
	i := opIndex(op)
	if !e.failing[i].Load() || time.Since(time.Unix(0, e.lastFail[i].Load())) < e.quietFor() {
		return
	}
	if e.failing[i].CompareAndSwap(true, false) {
		log.Warn("resources available again: "+op+" works", "op", op, "exhausted_so_far", e.count.Load())
	}
}

// Exhausted returns how many accepts and upstream dials failed so far
// because the process or host ran out of descriptors, memory or local
// ports (see IsExhausted), over the connections Serve (or Run) accepted.
// It is safe to call while the Proxy serves, from its Ready callback on; the
// admin metrics can export it as a counter.
func (p *Proxy) Exhausted() int64 {
	if p.exhausted == nil {
		return 0
	}
	return p.exhausted.count.Load()
}
