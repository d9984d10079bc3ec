package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// helloObserver is a HelloObserver whose ClientHello is complete once the
// client sent helloLen bytes.
type helloObserver struct {
	countingObserver
	helloLen int
}

func (o *helloObserver) Inspecting(Direction) bool { return true }
func (o *helloObserver) HelloDone() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen[ClientToUpstream] >= o.helloLen
}

// TestRelayClientHelloTimeout: on an inspected route a client that connects
// and sends nothing, or only part of its ClientHello, is reset when the
// ClientHello timeout runs out, and its client direction ends with a
// *HelloTimeoutError; one whose ClientHello is complete is relayed on.
func TestRelayClientHelloTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	for _, tc := range []struct {
		name  string
		send  []byte
		reset bool
	}{
		{"sends nothing", nil, true},
		{"sends part of a ClientHello", []byte{22, 3, 1}, true},
		{"sends a whole ClientHello", []byte{22, 3, 1, 0, 1, 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := listen(t, func(c *net.TCPConn) { io.Copy(c, c) })
			obs := &helloObserver{helloLen: 6}
			addrs := startProxy(t, &Proxy{
				Routes:             []Route{{Upstream: up, Inspect: true}},
				ClientHelloTimeout: timeout,
				NewObserver:        func(context.Context, ConnInfo) Observer { return obs },
			})
			c, err := net.Dial("tcp", addrs[0].String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.send != nil {
				if _, err := c.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			}
			if !tc.reset {
				// Well past the timeout, the echo still flows.
				time.Sleep(5 * timeout)
				c.Write([]byte("more"))
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				want := append(append([]byte{}, tc.send...), "more"...)
				got := make([]byte, len(want))
				if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("echo after the ClientHello = %q, %v; want %q", got, err, want)
				}
				return
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.ReadAll(c)
			if !isReset(err) {
				t.Fatalf("client read = %v, want a reset", err)
			}
			obs.waitClosed(t)
			obs.mu.Lock()
			ended := obs.ended[ClientToUpstream]
			obs.mu.Unlock()
			var hte *HelloTimeoutError
			if !errors.As(ended, &hte) || hte.Timeout != timeout || !errors.Is(ended, ErrHelloTimeout) {
				t.Errorf("client direction ended with %v, want a HelloTimeoutError of %v", ended, timeout)
			}
		})
	}
}

// TestRelayClientHelloTimeoutNeedsInspection: a plain route, or an
// observer that cannot tell a ClientHello, has no ClientHello timeout.
func TestRelayClientHelloTimeoutNeedsInspection(t *testing.T) {
	up := listen(t, func(c *net.TCPConn) { io.Copy(c, c) })
	obs := &helloObserver{helloLen: 1 << 30}
	addrs := startProxy(t, &Proxy{
		Routes:             []Route{{Upstream: up, Inspect: false}},
		ClientHelloTimeout: 50 * time.Millisecond,
		NewObserver:        func(context.Context, ConnInfo) Observer { return obs },
	})
	c, err := net.Dial("tcp", addrs[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(300 * time.Millisecond)
	c.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("plain route: %v, want the echo", err)
	}
}

// logBuffer collects a logger's lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// TestDialExhaustedIsCountedNotRefused: an upstream dial that fails with
// EMFILE (injected: the dialer's Control fails as socket(2) would) reaches
// the observer as that error, is counted and told to OnExhausted, and is
// logged once for the whole episode and once when a dial succeeds again.
func TestDialExhaustedIsCountedNotRefused(t *testing.T) {
	up := listen(t, func(c *net.TCPConn) { io.Copy(c, c) })
	var failDial atomic.Bool
	failDial.Store(true)
	var hooked atomic.Int32
	var dialErr atomic.Value
	logs := &logBuffer{}
	p := &Proxy{
		Routes: []Route{{Upstream: up, Inspect: true}},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		NewObserver: func(context.Context, ConnInfo) Observer {
			return &dialObserver{err: &dialErr}
		},
		OnExhausted: func(_ Route, op string, err error) {
			if op == "dial" && errors.Is(err, syscall.EMFILE) {
				hooked.Add(1)
			}
		},
		dialer: &net.Dialer{Control: func(string, string, syscall.RawConn) error {
			if failDial.Load() {
				return os.NewSyscallError("socket", syscall.EMFILE)
			}
			return nil
		}},
		exhaustQuiet: 50 * time.Millisecond,
	}
	addrs := startProxy(t, p)
	const n = 5
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addrs[0].String())
		if err != nil {
			continue // the reset can beat connect(2)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if err == nil || isTimeout(err) {
			t.Fatalf("connection %d: read = %v, want it reset", i, err)
		}
	}
	waitFor(t, func() bool { return p.Exhausted() == n && hooked.Load() == n })
	if e, _ := dialErr.Load().(error); !IsExhausted(e) {
		t.Errorf("observer saw %v, want an EMFILE dial error", e)
	}
	failDial.Store(false)
	time.Sleep(100 * time.Millisecond) // the episode's quiet period
	c, err := net.Dial("tcp", addrs[0].String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	c.Close()
	if got := logs.count("out of resources"); got != 1 {
		t.Errorf("%d 'out of resources' log lines for %d failed dials, want 1:\n%s", got, n, logs.b.String())
	}
	if got := logs.count("resources available again"); got != 1 {
		t.Errorf("%d recovery log lines, want 1", got)
	}
}

// failingListener fails its first n accepts with err, then accepts.
type failingListener struct {
	net.Listener
	n   atomic.Int32
	err error
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.n.Add(-1) >= 0 {
		return nil, l.err
	}
	return l.Listener.Accept()
}

// TestAcceptExhaustedIsCounted: accepts failing with EMFILE or ENFILE are
// counted, told to OnExhausted and logged once; the listener goes on
// accepting when descriptors are back.
func TestAcceptExhaustedIsCounted(t *testing.T) {
	up := listen(t, func(c *net.TCPConn) { io.Copy(c, c) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &failingListener{Listener: ln, err: &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENFILE)}}
	fl.n.Store(4)
	var hooked atomic.Int32
	logs := &logBuffer{}
	p := &Proxy{
		Routes:      []Route{{Listen: ln.Addr().String(), Upstream: up}},
		Logger:      slog.New(slog.NewTextHandler(logs, nil)),
		OnExhausted: func(_ Route, op string, _ error) { hooked.Add(1) },
	}
	ready := make(chan struct{})
	p.Ready = func([]net.Addr) { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, []net.Listener{fl}) }()
	defer func() { cancel(); <-done }()
	<-ready
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("relay after the failed accepts: %v", err)
	}
	if p.Exhausted() != 4 || hooked.Load() != 4 {
		t.Errorf("Exhausted() = %d, hook called %d times; want 4 each", p.Exhausted(), hooked.Load())
	}
	if got := logs.count("out of resources"); got != 1 {
		t.Errorf("%d 'out of resources' log lines for 4 failed accepts, want 1", got)
	}
	if got := logs.count("accept failed"); got != 0 {
		t.Errorf("exhausted accepts also logged as 'accept failed' %d times", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestExhaustionEpisodeQuiet: near the descriptor limit an operation fails
// and works by turns; the episode is logged once when it starts and once
// after the operation worked with no failure for the quiet period, not
// once per turn.
func TestExhaustionEpisodeQuiet(t *testing.T) {
	logs := &logBuffer{}
	s := &server{p: &Proxy{}, log: slog.New(slog.NewTextHandler(logs, nil)), ex: &exhaustion{quiet: 200 * time.Millisecond}}
	r := Route{Listen: "127.0.0.1:1313", Upstream: "coordinator:1313"}
	for range 100 {
		s.exhaust(r, "dial", syscall.EMFILE)
		s.ex.recovered(s.log, "dial")
	}
	if got := logs.count("out of resources"); got != 1 {
		t.Errorf("%d 'out of resources' lines for 100 alternating failures, want 1", got)
	}
	if got := logs.count("resources available again"); got != 0 {
		t.Errorf("%d recovery lines within the quiet period, want 0", got)
	}
	time.Sleep(250 * time.Millisecond)
	s.ex.recovered(s.log, "dial")
	s.ex.recovered(s.log, "dial")
	if got := logs.count("resources available again"); got != 1 {
		t.Errorf("%d recovery lines after the quiet period, want 1", got)
	}
	if s.ex.count.Load() != 100 {
		t.Errorf("counted %d failures, want 100", s.ex.count.Load())
	}
	// A new failure starts a new episode.
	s.exhaust(r, "dial", syscall.EMFILE)
	if got := logs.count("out of resources"); got != 2 {
		t.Errorf("%d 'out of resources' lines after a second episode began, want 2", got)
	}
}
