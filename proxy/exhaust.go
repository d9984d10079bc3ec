package proxy

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"syscall"
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
type exhaustion struct {
	count   atomic.Int64
	failing [2]atomic.Bool // accept, dial
}

func opIndex(op string) int {
	if op == "accept" {
		return 0
	}
	return 1
}

// exhaust counts one exhausted accept or dial, logs the first of an
// episode and tells OnExhausted.
func (s *server) exhaust(r Route, op string, err error) {
	n := s.ex.count.Add(1)
	if s.ex.failing[opIndex(op)].CompareAndSwap(false, true) {
		s.log.Error("out of resources: cannot "+op+"; further failures are counted, not logged, until one succeeds",
			"op", op, "listen", r.Listen, "upstream", r.Upstream, "err", err, "exhausted_so_far", n)
	}
	if s.p.OnExhausted != nil {
		s.p.OnExhausted(r, op, err)
	}
}

// recovered ends an exhaustion episode of op, if one is on.
func (e *exhaustion) recovered(log *slog.Logger, op string) {
	if e.failing[opIndex(op)].Load() && e.failing[opIndex(op)].CompareAndSwap(true, false) {
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
