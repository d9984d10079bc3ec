package proxy

import "sync/atomic"

// workers runs functions on goroutines it keeps. Each connection needs two
// goroutines' worth of work (its accept's handler, which dials and copies
// the client's direction, and the upstream's direction), and a fresh
// goroutine starts on a small stack that the dial and the handshake
// parsers grow, a copy of the whole stack each time (5% of the relay's CPU
// per short connection, measured). A goroutine whose function returned
// waits for the next one with its stack as grown, up to maxIdle of them;
// beyond that it ends, so a burst leaves no crowd behind. (A waiting
// goroutine's stack is shrunk back by the collector if it stays unused.)
type workers struct {
	work    chan func()
	stop    chan struct{}
	idle    atomic.Int32
	maxIdle int32
}

func newWorkers(maxIdle int) *workers {
	return &workers{work: make(chan func()), stop: make(chan struct{}), maxIdle: int32(maxIdle)}
}

// Go runs f on a waiting worker, or on a new goroutine when none waits.
func (w *workers) Go(f func()) {
	if w.idle.Load() > 0 {
		select {
		case w.work <- f:
			return
		default:
		}
	}
	go w.loop(f)
}

func (w *workers) loop(f func()) {
	for {
		f()
		if w.idle.Add(1) > w.maxIdle {
			w.idle.Add(-1)
			return
		}
		select {
		case f = <-w.work:
			w.idle.Add(-1)
		case <-w.stop:
			w.idle.Add(-1)
			return
		}
	}
}

// Stop ends the waiting workers; Go still works after it (on new
// goroutines that end with their function).
func (w *workers) Stop() { close(w.stop) }
