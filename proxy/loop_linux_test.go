//go:build linux

package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// firstChunkObserver inspects the first chunk of each direction, so each
// direction forwards on its goroutine for a while and the connection moves
// to the event loop through the yield hand-off.
type firstChunkObserver struct {
	nopObserver
	mu     sync.Mutex
	seen   [2]bool
	closed *sync.WaitGroup
	stats  *[2]atomic.Int64
}

func (o *firstChunkObserver) Data(d Direction, _ []byte, _ time.Time) {
	o.mu.Lock()
	o.seen[d] = true
	o.mu.Unlock()
}

func (o *firstChunkObserver) Inspecting(d Direction) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.seen[d]
}

func (o *firstChunkObserver) Closed(s Stats) {
	o.stats[0].Add(s.ClientToUpstream)
	o.stats[1].Add(s.UpstreamToClient)
	o.closed.Done()
}

// TestLoopIdleConnectionsHoldNoGoroutine holds 1,000 idle connections
// past their inspection and counts goroutines: the event loop holds them
// with none each. They still carry bytes afterwards, and each ends with
// the observer's Closed and exact byte counts.
func TestLoopIdleConnectionsHoldNoGoroutine(t *testing.T) {
	const conns = 1000
	for _, inspect := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "inspected"}[inspect]
		t.Run(name, func(t *testing.T) {
			// The upstream echoes each connection's first byte from a
			// short-lived goroutine and then holds the socket with none.
			upLn, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer upLn.Close()
			var held sync.Mutex
			var ups []net.Conn
			defer func() {
				held.Lock()
				for _, c := range ups {
					c.Close()
				}
				held.Unlock()
			}()
			go func() {
				for {
					c, err := upLn.Accept()
					if err != nil {
						return
					}
					held.Lock()
					ups = append(ups, c)
					held.Unlock()
					go func() {
						b := make([]byte, 1)
						if _, err := io.ReadFull(c, b); err == nil {
							c.Write(b)
						}
					}()
				}
			}()

			var closed sync.WaitGroup
			var stats [2]atomic.Int64
			addrs := startProxy(t, &Proxy{
				Routes:      []Route{{Upstream: upLn.Addr().String(), Inspect: inspect}},
				IdleTimeout: -1,
				NewObserver: func(context.Context, ConnInfo) Observer {
					closed.Add(1)
					return &firstChunkObserver{closed: &closed, stats: &stats}
				},
			})
			before := runtime.NumGoroutine()
			clients := make([]net.Conn, 0, conns)
			defer func() {
				for _, c := range clients {
					c.Close()
				}
			}()
			for i := range conns {
				c, err := net.Dial("tcp", addrs[0].String())
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
				clients = append(clients, c)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write([]byte{byte(i)}); err != nil {
					t.Fatal(err)
				}
				b := make([]byte, 1)
				if _, err := io.ReadFull(c, b); err != nil || b[0] != byte(i) {
					t.Fatalf("connection %d: echo %v, %v", i, b, err)
				}
			}
			waitNoRelays(t)
			// Let the upstream's echo goroutines finish.
			// The slack: the loop threads, and the workers the server keeps
			// waiting for the next connection (a bounded pool, not one
			// per connection).
			slack := loopMaxThreads + 8 + maxIdleWorkers
			for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before+slack && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			after := runtime.NumGoroutine()
			if extra := after - before; extra > slack {
				t.Fatalf("%d idle connections hold %d more goroutines (%d → %d), want at most the loop threads", conns, extra, before, after)
			}
			t.Logf("%d idle connections: goroutines %d → %d", conns, before, after)

			// Still relayed both ways, byte for byte, from the loop.
			for i, c := range clients {
				if _, err := c.Write([]byte{byte(i), 'x'}); err != nil {
					t.Fatal(err)
				}
			}
			held.Lock()
			for i, u := range ups {
				u.SetDeadline(time.Now().Add(10 * time.Second))
				b := make([]byte, 2)
				if _, err := io.ReadFull(u, b); err != nil || b[1] != 'x' {
					t.Fatalf("upstream %d: got %q, %v", i, b, err)
				}
				if _, err := u.Write([]byte("yz")); err != nil {
					t.Fatal(err)
				}
			}
			held.Unlock()
			for i, c := range clients {
				b := make([]byte, 2)
				if _, err := io.ReadFull(c, b); err != nil || string(b) != "yz" {
					t.Fatalf("client %d: got %q, %v", i, b, err)
				}
				c.(*net.TCPConn).CloseWrite()
			}
			// The client's FIN reaches the upstream as a FIN.
			held.Lock()
			for i, u := range ups {
				if n, err := u.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("upstream %d after the client's FIN: read %d, %v; want EOF", i, n, err)
				}
				u.Close()
			}
			held.Unlock()
			closed.Wait()
			if c2u, u2c := stats[0].Load(), stats[1].Load(); c2u != 3*conns || u2c != 3*conns {
				t.Errorf("byte counts %d/%d, want %d each way", c2u, u2c, 3*conns)
			}
		})
	}
}

// splitObserver keeps one direction in inspection for good, so the other
// runs in the event loop while it stays on its goroutine.
type splitObserver struct {
	nopObserver
	mu     sync.Mutex
	seen   [2]bool
	keep   Direction // never stops inspecting
	ended  [2]error
	stats  Stats
	closed chan struct{}
}

func (o *splitObserver) Data(d Direction, _ []byte, _ time.Time) {
	o.mu.Lock()
	o.seen[d] = true
	o.mu.Unlock()
}

func (o *splitObserver) Inspecting(d Direction) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return d == o.keep || !o.seen[d]
}

func (o *splitObserver) Ended(d Direction, err error, _ time.Time) {
	o.mu.Lock()
	o.ended[d] = err
	o.mu.Unlock()
}

func (o *splitObserver) Closed(s Stats) {
	o.stats = s
	close(o.closed)
}

// TestLoopHalfCloseWithOneDirectionInLoop: one direction in the event
// loop, the other still on its goroutine (inspecting). A FIN in either
// direction is forwarded as a FIN while the other keeps flowing, bytes
// arrive exactly, and the observer hears both ends and the counts.
func TestLoopHalfCloseWithOneDirectionInLoop(t *testing.T) {
	for _, tc := range []struct {
		name        string
		keep        Direction // stays on its goroutine
		clientFirst bool      // the client half-closes first
	}{
		{"client direction in loop, client FIN first", UpstreamToClient, true},
		{"client direction in loop, upstream FIN first", UpstreamToClient, false},
		{"upstream direction in loop, client FIN first", ClientToUpstream, true},
		{"upstream direction in loop, upstream FIN first", ClientToUpstream, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ups := make(chan *net.TCPConn, 1)
			up := listen(t, func(c *net.TCPConn) {
				ups <- c
				<-t.Context().Done()
			})
			obs := &splitObserver{keep: tc.keep, closed: make(chan struct{})}
			addrs := startProxy(t, &Proxy{
				Routes:      []Route{{Upstream: up, Inspect: true}},
				NewObserver: func(context.Context, ConnInfo) Observer { return obs },
			})
			c, err := net.Dial("tcp", addrs[0].String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cl := c.(*net.TCPConn)
			u := <-ups
			deadline := time.Now().Add(10 * time.Second)
			cl.SetDeadline(deadline)
			u.SetDeadline(deadline)
			// One chunk each way ends inspection of the direction that is
			// not kept; more follows through the loop.
			exchange := func(from, to *net.TCPConn, msg string) {
				t.Helper()
				if _, err := from.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(to, got); err != nil || string(got) != msg {
					t.Fatalf("got %q, %v; want %q", got, err, msg)
				}
			}
			exchange(cl, u, "hello")
			exchange(u, cl, "world")
			exchange(cl, u, "more from the client")
			exchange(u, cl, "more from the upstream")
			first, second := cl, u
			if !tc.clientFirst {
				first, second = u, cl
			}
			first.CloseWrite()
			if n, err := second.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("after the FIN: read %d, %v; want EOF", n, err)
			}
			// The other direction still flows, then ends with a FIN too.
			exchange(second, first, "after the half-close")
			second.CloseWrite()
			if n, err := first.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("after the second FIN: read %d, %v; want EOF", n, err)
			}
			select {
			case <-obs.closed:
			case <-time.After(10 * time.Second):
				t.Fatal("observer never saw Closed")
			}
			c2u, u2c := int64(len("hellomore from the client")), int64(len("worldmore from the upstream"))
			if tc.clientFirst {
				u2c += int64(len("after the half-close"))
			} else {
				c2u += int64(len("after the half-close"))
			}
			if obs.stats.ClientToUpstream != c2u || obs.stats.UpstreamToClient != u2c {
				t.Errorf("stats %d/%d, want %d/%d", obs.stats.ClientToUpstream, obs.stats.UpstreamToClient, c2u, u2c)
			}
			for d, e := range obs.ended {
				if e != io.EOF {
					t.Errorf("%s ended with %v, want EOF", Direction(d), e)
				}
			}
		})
	}
}

// TestAcceptedConnectionsInheritKeepAlive: the listener carries Go's TCP
// keep-alive settings, and a connection it accepts has them without
// setting them itself.
func TestAcceptedConnectionsInheritKeepAlive(t *testing.T) {
	lc := listenConfig()
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	raw, err := a.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []struct {
		name       string
		level, opt int
		want       int
	}{
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, int(keepAliveIdle / time.Second)},
		{"TCP_KEEPINTVL", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, int(keepAliveInterval / time.Second)},
		{"TCP_KEEPCNT", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, keepAliveCount},
	} {
		var got int
		var gerr error
		raw.Control(func(fd uintptr) { got, gerr = syscall.GetsockoptInt(int(fd), o.level, o.opt) })
		if gerr != nil || got != o.want {
			t.Errorf("accepted connection: %s = %d (%v), want %d", o.name, got, gerr, o.want)
		}
	}
}

// endObserver records how each direction ended and the close.
type endObserver struct {
	nopObserver
	mu     sync.Mutex
	ended  [2]error
	closed chan struct{}
}

func (o *endObserver) Ended(d Direction, err error, _ time.Time) {
	o.mu.Lock()
	o.ended[d] = err
	o.mu.Unlock()
}

func (o *endObserver) Closed(Stats) { close(o.closed) }

// TestLoopIdleAndDrainEnds: a connection idle in the event loop ends by
// the idle timeout or at the drain timeout as on the goroutine path: the
// client's read ends (not by its own deadline), and the observer hears
// ErrIdle from the direction that timed out, or ErrAborted from both.
func TestLoopIdleAndDrainEnds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		idle  time.Duration
		drain bool
	}{
		{"idle timeout", 100 * time.Millisecond, false},
		{"drain timeout", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := listen(t, func(c *net.TCPConn) {
				io.Copy(c, c) // echo until the relay closes
			})
			obs := &endObserver{closed: make(chan struct{})}
			p := &Proxy{
				Routes:       []Route{{Listen: "127.0.0.1:0", Upstream: up}},
				IdleTimeout:  tc.idle,
				DrainTimeout: 50 * time.Millisecond,
				NewObserver:  func(context.Context, ConnInfo) Observer { return obs },
			}
			ready := make(chan []net.Addr, 1)
			p.Ready = func(a []net.Addr) { ready <- a }
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			served := make(chan error, 1)
			go func() { served <- p.Run(ctx) }()
			c, err := net.Dial("tcp", (<-ready)[0].String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
				t.Fatal(err)
			}
			waitNoRelays(t) // idle in the loop, no goroutine left
			if tc.drain {
				cancel()
			}
			if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
				t.Errorf("client read %d, %v; want the relay to end the connection", n, err)
			}
			select {
			case <-obs.closed:
			case <-time.After(10 * time.Second):
				t.Fatal("observer never saw Closed")
			}
			obs.mu.Lock()
			defer obs.mu.Unlock()
			if tc.drain {
				for d, e := range obs.ended {
					if !errors.Is(e, ErrAborted) {
						t.Errorf("%s ended with %v, want %v", Direction(d), e, ErrAborted)
					}
				}
				if err := <-served; err != nil {
					t.Errorf("Run: %v", err)
				}
				return
			}
			if !errors.Is(obs.ended[0], ErrIdle) && !errors.Is(obs.ended[1], ErrIdle) {
				t.Errorf("directions ended with %v and %v, want one %v", obs.ended[0], obs.ended[1], ErrIdle)
			}
		})
	}
}

// pipeFDs counts this process's open pipe descriptors.
func pipeFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, "pipe:") {
			n++
		}
	}
	return n
}

// TestLoopPipeLimit: a loop holds at most maxPipes pipes, pooled or
// pending, and gives each back (descriptors and count) when it closes it.
func TestLoopPipeLimit(t *testing.T) {
	l, err := newEvLoop()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(l.epfd)
	defer unix.Close(l.wake)
	l.maxPipes.Store(3)
	before := pipeFDs(t)
	// Each pipe taken out of the pool, as a stalled direction takes it.
	var held []pipePair
	for range 3 {
		p, err := l.pipe()
		if err != nil {
			t.Fatalf("pipe %d: %v", len(held)+1, err)
		}
		l.pipes = l.pipes[:len(l.pipes)-1]
		held = append(held, p)
	}
	if _, err := l.pipe(); !errors.Is(err, errPipeCap) {
		t.Fatalf("a fourth pipe: err %v, want errPipeCap", err)
	}
	if got := pipeFDs(t) - before; got != 6 {
		t.Errorf("%d pipe descriptors open, want 6", got)
	}
	// One handed back to the pool is the next one given out.
	l.putPipe(held[0])
	if p, err := l.pipe(); err != nil || p != held[0] {
		t.Errorf("after putPipe: %v, %v; want the pooled pipe", p, err)
	}
	l.pipes = l.pipes[:0]
	for _, p := range held {
		l.closePipe(p)
	}
	if l.npipes != 0 || pipeFDs(t) != before {
		t.Errorf("after closing: %d pipes counted, %d descriptors more than before", l.npipes, pipeFDs(t)-before)
	}
}

// TestLoopStreamsWithoutPipes: a loop out of pipes (its limit reached)
// moves a stream through its buffer instead, every byte in order, into a
// destination that is full for a while.
func TestLoopStreamsWithoutPipes(t *testing.T) {
	if err := StartLoops(); err != nil {
		t.Skip("no event loop:", err)
	}
	for _, l := range loopsOnce().loops {
		old := l.maxPipes.Swap(0)
		t.Cleanup(func() { l.maxPipes.Store(old) })
	}
	const n = 8 << 20
	got, sent := make(chan [32]byte, 1), make(chan [32]byte, 1)
	up := hashServer(t, n, got, sent)
	obs := &countingObserver{}
	addrs := startProxy(t, &Proxy{
		Routes:      []Route{{Upstream: up}},
		NewObserver: func(context.Context, ConnInfo) Observer { return obs },
	})
	// The client reads nothing for a while, so the relay's writes to it
	// fill its socket and the direction stalls with bytes in hand.
	exchangeHashed(t, addrs[0].String(), n, got, sent, 300*time.Millisecond)
	obs.waitClosed(t)
	if s := obs.stats; s.ClientToUpstream != n || s.UpstreamToClient != n {
		t.Errorf("stats = %+v, want %d each way", s, n)
	}
}
