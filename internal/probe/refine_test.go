package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/atls"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
	"github.com/ccproxy-dev/ccproxy/trace"
)

func hello(sni string, alpn []string, versions ...uint16) *inspect.ClientHello {
	if versions == nil {
		versions = []uint16{tls.VersionTLS13, tls.VersionTLS12}
	}
	return &inspect.ClientHello{LegacyVersion: tls.VersionTLS12, ServerName: sni, ALPN: alpn, SupportedVersions: versions}
}

func TestMakeQuestion(t *testing.T) {
	nonce := bytes.Repeat([]byte{7}, atls.NonceSize)
	alpn := []string{atls.ALPNEntry(nonce), "h2"}
	rejected := inspect.Verdict{Mode: failure.ClientRejectedCertificate}
	issuer := inspect.Verdict{Mode: failure.IssuerError}
	tests := []struct {
		name  string
		wire  inspect.Verdict
		hello *inspect.ClientHello
		want  *question
	}{
		{
			name: "rejected, ALPN nonce", wire: rejected, hello: hello("localhost", alpn),
			want: &question{upstream: "c:1313", trigger: failure.ClientRejectedCertificate, style: atls.NonceALPN, sni: "localhost", maxVersion: tls.VersionTLS13},
		},
		{
			name: "rejected, SNI nonce", wire: rejected, hello: hello(atls.SNIEntry(nonce), []string{"h2"}),
			want: &question{upstream: "c:1313", trigger: failure.ClientRejectedCertificate, style: atls.NonceSNI, maxVersion: tls.VersionTLS13},
		},
		{
			name: "rejected, TLS 1.2 client", wire: rejected, hello: hello("", alpn, tls.VersionTLS12),
			want: &question{upstream: "c:1313", trigger: failure.ClientRejectedCertificate, style: atls.NonceALPN, maxVersion: tls.VersionTLS12},
		},
		{
			name: "internal_error, ALPN nonce, SNI localhost", wire: issuer, hello: hello("localhost", alpn),
			want: &question{upstream: "c:1313", trigger: failure.IssuerError, style: atls.NonceALPN, sni: "localhost", maxVersion: tls.VersionTLS13},
		},
		{
			name: "internal_error, ALPN nonce, no SNI", wire: issuer, hello: hello("", alpn),
			want: &question{upstream: "c:1313", trigger: failure.IssuerError, style: atls.NonceALPN, maxVersion: tls.VersionTLS13},
		},
		// An old Coordinator could read these SNIs: not its symptom.
		{name: "internal_error, SNI is a nonce too", wire: issuer, hello: hello(atls.SNIEntry(nonce), alpn)},
		{name: "internal_error, SNI-style client", wire: issuer, hello: hello(atls.SNIEntry(nonce), []string{"h2"})},
		{name: "internal_error, unsupported atls version", wire: issuer, hello: hello("localhost", []string{"atls:v9:nonce:00", "h2"})},
		{name: "wire verdict needs no probe", wire: inspect.Verdict{Mode: failure.LBClosedEarly}, hello: hello("localhost", alpn)},
		{name: "no hello", wire: rejected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := makeQuestion("c:1313", tc.wire, tc.hello)
			if tc.want == nil {
				if ok {
					t.Fatalf("probes for %+v", got)
				}
				return
			}
			if !ok || got != *tc.want {
				t.Fatalf("question %+v, %v; want %+v", got, ok, *tc.want)
			}
		})
	}
}

// fakeClock is a settable clock for the cache.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// countingRefiner returns a Refiner whose probes are counted and answer
// policy_hash_mismatch after release is closed (nil: at once).
func countingRefiner(ttl time.Duration, release chan struct{}) (*Refiner, *atomic.Int32, *fakeClock) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	r := NewRefiner(RefinerConfig{CacheTTL: ttl, HostName: "h"})
	r.now = clock.Now
	var calls atomic.Int32
	r.ask = func(ctx context.Context, q question) answer {
		calls.Add(1)
		if release != nil {
			<-release
		}
		return answer{mode: failure.PolicyHashMismatch, detail: "HOST_DATA differs", start: clock.Now(), end: clock.Now()}
	}
	return r, &calls, clock
}

func refineOnce(t *testing.T, r *Refiner, upstream string) (mode failure.Mode, cached bool) {
	t.Helper()
	ref, ok := r.Refine(t.Context(), upstream, inspect.Verdict{Mode: failure.ClientRejectedCertificate, Detail: "rejected"}, hello("localhost", []string{atls.ALPNEntry(make([]byte, 32)), "h2"}))
	if !ok {
		t.Fatal("no refinement")
	}
	for _, a := range ref.Attrs {
		if a.Key == trace.ProbeCached {
			cached = a.Value.AsBool()
		}
	}
	return ref.Mode, cached
}

func TestRefinerCachesPerUpstream(t *testing.T) {
	r, calls, clock := countingRefiner(30*time.Second, nil)
	steps := []struct {
		advance    time.Duration
		upstream   string
		wantCalls  int32
		wantCached bool
	}{
		{0, "a:1313", 1, false},
		{10 * time.Second, "a:1313", 1, true},
		{0, "b:1313", 2, false}, // another upstream is another question
		{19 * time.Second, "a:1313", 2, true},
		{time.Second, "a:1313", 3, false}, // 30 s after the first probe: expired
		{0, "a:1313", 3, true},
	}
	for i, s := range steps {
		clock.Add(s.advance)
		mode, cached := refineOnce(t, r, s.upstream)
		if mode != failure.PolicyHashMismatch || cached != s.wantCached || calls.Load() != s.wantCalls {
			t.Fatalf("step %d: mode %s cached %v after %d probes; want cached %v after %d", i, mode, cached, calls.Load(), s.wantCached, s.wantCalls)
		}
	}
}

func TestRefinerWithoutCacheProbesEveryTime(t *testing.T) {
	r, calls, _ := countingRefiner(0, nil)
	for i := range 3 {
		if _, cached := refineOnce(t, r, "a:1313"); cached {
			t.Fatalf("call %d reused a result without a cache", i)
		}
	}
	if calls.Load() != 3 {
		t.Fatalf("%d probes, want 3", calls.Load())
	}
	if len(r.flights) != 0 {
		t.Fatalf("%d results kept without a cache", len(r.flights))
	}
}

// A storm of concurrent failing connections to one upstream makes one probe.
func TestRefinerSingleFlight(t *testing.T) {
	for _, ttl := range []time.Duration{0, time.Minute} {
		release := make(chan struct{})
		r, calls, _ := countingRefiner(ttl, release)
		const n = 8
		var waiting sync.WaitGroup
		waiting.Add(n - 1)
		r.joined = waiting.Done
		var wg sync.WaitGroup
		var fresh atomic.Int32
		for range n {
			wg.Go(func() {
				mode, cached := refineOnce(t, r, "a:1313")
				if mode != failure.PolicyHashMismatch {
					t.Errorf("mode %s", mode)
				}
				if !cached {
					fresh.Add(1)
				}
			})
		}
		// Every caller but the prober waits for the flight before it answers.
		waiting.Wait()
		close(release)
		wg.Wait()
		if calls.Load() != 1 || fresh.Load() != 1 {
			t.Fatalf("TTL %v: %d probes and %d fresh answers for %d connections, want 1 and 1", ttl, calls.Load(), fresh.Load(), n)
		}
	}
}

// A connection that gives up waiting keeps its wire verdict; the probe in
// flight still finishes for the others.
func TestRefinerWaiterCancelled(t *testing.T) {
	release := make(chan struct{})
	r, _, _ := countingRefiner(time.Minute, release)
	done := make(chan failure.Mode)
	go func() {
		m, _ := refineOnce(t, r, "a:1313")
		done <- m
	}()
	for {
		r.mu.Lock()
		n := len(r.flights)
		r.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ref, ok := r.Refine(ctx, "a:1313", inspect.Verdict{Mode: failure.ClientRejectedCertificate, Detail: "rejected"}, hello("localhost", []string{atls.ALPNEntry(make([]byte, 32))}))
	if !ok || ref.Mode != failure.ClientRejectedCertificate || ref.Err == nil {
		t.Fatalf("cancelled waiter: %+v", ref)
	}
	close(release)
	if m := <-done; m != failure.PolicyHashMismatch {
		t.Fatalf("prober got %s", m)
	}
}

func TestRefinementKeepsWireVerdictWithNote(t *testing.T) {
	r := NewRefiner(RefinerConfig{HostName: "h"})
	wire := inspect.Verdict{Mode: failure.ClientRejectedCertificate, Detail: "The client rejected the server's certificate"}
	ref := r.refinement(question{trigger: failure.ClientRejectedCertificate}, wire, answer{keepWire: true, note: "An active probe verified it."}, false, 0, time.Now())
	if ref.Mode != wire.Mode || ref.Detail != "The client rejected the server's certificate. An active probe verified it." {
		t.Fatalf("refinement %q: %q", ref.Mode, ref.Detail)
	}
	if ref.Start.IsZero() || ref.End.Before(ref.Start) {
		t.Fatalf("span times %v..%v", ref.Start, ref.End)
	}
}

// TestRefinementTimeLine: the probe span of a connection that joined
// another connection's probe in flight starts when it asked, so it lies
// inside the connection's root span; its own probe keeps its times.
func TestRefinementTimeLine(t *testing.T) {
	r := NewRefiner(RefinerConfig{HostName: "h"})
	wire := inspect.Verdict{Mode: failure.ClientRejectedCertificate}
	t0 := time.Now()
	ans := answer{mode: failure.PolicyHashMismatch, start: t0, end: t0.Add(10 * time.Millisecond)}
	asked := t0.Add(4 * time.Millisecond)
	if ref := r.refinement(question{}, wire, ans, true, 0, asked); !ref.Start.Equal(asked) || !ref.End.Equal(ans.end) {
		t.Errorf("joined: span %v..%v, want %v..%v", ref.Start, ref.End, asked, ans.end)
	}
	if ref := r.refinement(question{}, wire, ans, false, 0, t0); !ref.Start.Equal(t0) || !ref.End.Equal(ans.end) {
		t.Errorf("own probe: span %v..%v, want %v..%v", ref.Start, ref.End, t0, ans.end)
	}
}

func TestClockSentenceNamesHost(t *testing.T) {
	r := NewRefiner(RefinerConfig{HostName: "laptop"})
	if s := r.clockSentence(); !strings.Contains(s, `host "laptop"`) || !strings.Contains(s, "in the cluster") {
		t.Fatalf("clock sentence %q", s)
	}
}

// A probe cut short by the relay's shutdown is not cached.
func TestRefinerDoesNotCacheCancelledProbe(t *testing.T) {
	r, calls, _ := countingRefiner(time.Minute, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, ok := r.Refine(ctx, "a:1313", inspect.Verdict{Mode: failure.ClientRejectedCertificate}, hello("localhost", []string{atls.ALPNEntry(make([]byte, 32))})); !ok {
		t.Fatal("no refinement")
	}
	if _, cached := refineOnce(t, r, "a:1313"); cached || calls.Load() != 2 {
		t.Fatalf("cached %v after %d probes; want a fresh second probe", cached, calls.Load())
	}
}
