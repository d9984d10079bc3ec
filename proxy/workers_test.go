package proxy

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestWorkers: functions run; a worker that finished waits for the next
// one (no new goroutine), at most maxIdle wait, and Stop ends them while
// Go still runs what it is given.
func TestWorkers(t *testing.T) {
	w := newWorkers(4)
	run := func(n int) {
		var wg sync.WaitGroup
		wg.Add(n)
		for range n {
			w.Go(wg.Done)
		}
		wg.Wait()
	}
	waitIdle := func(want int32) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); w.idle.Load() != want; {
			if time.Now().After(deadline) {
				t.Fatalf("%d workers waiting, want %d", w.idle.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	base := runtime.NumGoroutine()
	// Ten at once: at most four stay.
	block := make(chan struct{})
	var started sync.WaitGroup
	started.Add(10)
	for range 10 {
		w.Go(func() { started.Done(); <-block })
	}
	started.Wait()
	close(block)
	waitIdle(4)
	if n := runtime.NumGoroutine() - base; n > 4 {
		t.Errorf("%d goroutines left after a burst of 10, want at most the 4 idle workers", n)
	}
	// Sequential work reuses them: no goroutine is added.
	before := runtime.NumGoroutine()
	for range 100 {
		run(1)
	}
	waitIdle(4)
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("goroutines %d → %d over 100 functions run one after another", before, after)
	}
	w.Stop()
	waitIdle(0)
	run(3) // still runs, on goroutines that end
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > base; {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines %d after Stop, want %d", runtime.NumGoroutine(), base)
		}
		time.Sleep(time.Millisecond)
	}
}
