package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// startProxy runs p in the background on loopback ephemeral ports and returns
// the bound addresses; the proxy stops when the test ends.
func startProxy(t *testing.T, p *Proxy) []net.Addr {
	t.Helper()
	for i := range p.Routes {
		if p.Routes[i].Listen == "" {
			p.Routes[i].Listen = "127.0.0.1:0"
		}
	}
	ready := make(chan []net.Addr, 1)
	p.Ready = func(a []net.Addr) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case a := <-ready:
		return a
	case err := <-done:
		t.Fatalf("Run ended early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("proxy not ready")
	}
	return nil
}

// listen starts a loopback server calling handle for each connection.
func listen(t *testing.T, handle func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().String()
}

// sinkAndSource reads everything the client sends (hashing it), and
// concurrently sends n random bytes back, then FIN; it reports the hash of
// what it received.
func hashServer(t *testing.T, sendN int64, got chan<- [32]byte, sent chan<- [32]byte) string {
	return listen(t, func(c *net.TCPConn) {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := sha256.New()
			io.Copy(h, c)
			got <- [32]byte(h.Sum(nil))
		}()
		h := sha256.New()
		io.Copy(io.MultiWriter(c, h), io.LimitReader(rand.Reader, sendN))
		c.CloseWrite()
		sent <- [32]byte(h.Sum(nil))
		wg.Wait()
	})
}

func TestRelayByteExactBothDirections(t *testing.T) {
	sizes := []int64{0, 1, 1500, 64 << 10, 1 << 20, 64 << 20}
	if testing.Short() {
		sizes = sizes[:5]
	}
	for _, inspect := range []bool{false, true} {
		for _, n := range sizes {
			t.Run(fmt.Sprintf("inspect=%v/%dB", inspect, n), func(t *testing.T) {
				got, sent := make(chan [32]byte, 1), make(chan [32]byte, 1)
				up := hashServer(t, n, got, sent)
				obs := &countingObserver{}
				addrs := startProxy(t, &Proxy{
					Routes:      []Route{{Upstream: up, Inspect: inspect}},
					NewObserver: func(context.Context, ConnInfo) Observer { return obs },
				})
				exchangeHashed(t, addrs[0].String(), n, got, sent, 0)
				obs.waitClosed(t)
				if s := obs.stats; s.ClientToUpstream != n || s.UpstreamToClient != n {
					t.Errorf("stats = %+v, want %d each way", s, n)
				}
			})
		}
	}
}

// exchangeHashed connects to addr, sends n random bytes and a FIN while
// reading everything back (starting to read only after readAfter), and
// checks both directions' SHA-256 against what hashServer reports on got
// and sent.
func exchangeHashed(t *testing.T, addr string, n int64, got, sent <-chan [32]byte, readAfter time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var recv [32]byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(readAfter)
		h := sha256.New()
		io.Copy(h, c)
		recv = [32]byte(h.Sum(nil))
	}()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(c, h), io.LimitReader(rand.Reader, n)); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	if want := [32]byte(h.Sum(nil)); <-got != want {
		t.Error("upstream received different bytes than the client sent")
	}
	<-done
	if want := <-sent; recv != want {
		t.Error("client received different bytes than the upstream sent")
	}
}

// countingObserver inspects only the first chunk of each direction, so the
// rest of the stream takes the splice path.
type countingObserver struct {
	mu     sync.Mutex
	seen   [2]int
	stats  Stats
	closed chan struct{}
	once   sync.Once
	ended  [2]error
}

func (o *countingObserver) init() { o.once.Do(func() { o.closed = make(chan struct{}) }) }
func (o *countingObserver) Dialed(net.Conn, error, time.Duration) {
	o.init()
}
func (o *countingObserver) Data(d Direction, p []byte, _ time.Time) {
	o.mu.Lock()
	o.seen[d] += len(p)
	o.mu.Unlock()
}
func (o *countingObserver) Inspecting(d Direction) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen[d] == 0
}
func (o *countingObserver) Ended(d Direction, err error, _ time.Time) {
	o.mu.Lock()
	o.ended[d] = err
	o.mu.Unlock()
}
func (o *countingObserver) Closed(s Stats) {
	o.init()
	o.stats = s
	close(o.closed)
}
func (o *countingObserver) waitClosed(t *testing.T) {
	t.Helper()
	o.init()
	select {
	case <-o.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("observer never saw Closed")
	}
}

func TestRelayHalfClose(t *testing.T) {
	// The client sends a request and half-closes; the server answers only
	// after reading EOF. A relay that closed both sides on the first FIN
	// would lose the answer.
	up := listen(t, func(c *net.TCPConn) {
		req, _ := io.ReadAll(c)
		c.Write(append([]byte("answer to "), req...))
		c.CloseWrite()
	})
	addrs := startProxy(t, &Proxy{Routes: []Route{{Upstream: up, Inspect: true}}})
	c, err := net.Dial("tcp", addrs[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("question"))
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "answer to question" {
		t.Fatalf("got %q", got)
	}
}

func TestRelayManyConcurrent(t *testing.T) {
	const n = 1000
	up := listen(t, func(c *net.TCPConn) { io.Copy(c, c); c.CloseWrite() })
	addrs := startProxy(t, &Proxy{Routes: []Route{{Upstream: up, Inspect: true}}})
	var wg sync.WaitGroup
	var failed atomic.Int32
	sem := make(chan struct{}, 250) // stay under default somaxconn bursts
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := net.Dial("tcp", addrs[0].String())
			if err != nil {
				failed.Add(1)
				return
			}
			defer c.Close()
			msg := []byte(fmt.Sprintf("connection %d says hello", i))
			c.Write(msg)
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, msg) {
				failed.Add(1)
			}
		}(i)
	}
	wg.Wait()
	if f := failed.Load(); f != 0 {
		t.Fatalf("%d of %d connections failed", f, n)
	}
}

func TestRelayUpstreamRefusedClosesClientPromptly(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	var dialErr atomic.Value
	addrs := startProxy(t, &Proxy{
		Routes: []Route{{Upstream: closed, Inspect: true}},
		NewObserver: func(context.Context, ConnInfo) Observer {
			return &dialObserver{err: &dialErr}
		},
	})
	start := time.Now()
	// The reset can arrive before connect(2) even returns.
	c, err := net.Dial("tcp", addrs[0].String())
	if err == nil {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
	}
	if err == nil || isTimeout(err) {
		t.Fatalf("read = %v, want the connection closed", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("client closed after %v", d)
	}
	if e, _ := dialErr.Load().(error); e == nil {
		t.Error("observer did not see the dial error")
	}
}

type dialObserver struct {
	nopObserver
	err *atomic.Value
}

func (o *dialObserver) Dialed(_ net.Conn, err error, _ time.Duration) {
	if err != nil {
		o.err.Store(err)
	}
}

func TestRelayMaxConnsClosesNewConnections(t *testing.T) {
	up := listen(t, func(c *net.TCPConn) { io.Copy(c, c) })
	var refused atomic.Int32
	addrs := startProxy(t, &Proxy{
		Routes:    []Route{{Upstream: up}},
		MaxConns:  2,
		OnRefused: func(Route) { refused.Add(1) },
	})
	var keep []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addrs[0].String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A round trip proves the relay accepted and holds this one.
		c.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		keep = append(keep, c)
	}
	// The reset can reach the client before its connect(2) even returns.
	c, err := net.Dial("tcp", addrs[0].String())
	if err == nil {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
	}
	if err == nil || isTimeout(err) {
		t.Fatalf("third connection: %v, want it closed", err)
	}
	if refused.Load() != 1 {
		t.Errorf("refused = %d, want 1", refused.Load())
	}
	_ = keep
}

func TestRelayResetPropagates(t *testing.T) {
	// The upstream resets after reading a little; the client must see a
	// reset (not a clean EOF) and the observer an error that is not EOF.
	up := listen(t, func(c *net.TCPConn) {
		c.Read(make([]byte, 10))
		c.SetLinger(0)
		c.Close()
	})
	obs := &countingObserver{}
	addrs := startProxy(t, &Proxy{
		Routes:      []Route{{Upstream: up, Inspect: true}},
		NewObserver: func(context.Context, ConnInfo) Observer { return obs },
	})
	c, err := net.Dial("tcp", addrs[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(c)
	if err == nil {
		t.Fatal("client saw a clean EOF, want a reset")
	}
	obs.waitClosed(t)
	if e := obs.ended[UpstreamToClient]; e == nil || errors.Is(e, io.EOF) {
		t.Errorf("upstream direction ended with %v, want a reset error", e)
	}
}

func TestRelayIdleTimeout(t *testing.T) {
	up := listen(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	addrs := startProxy(t, &Proxy{
		Routes:      []Route{{Upstream: up, Inspect: true}},
		IdleTimeout: 200 * time.Millisecond,
	})
	c, err := net.Dial("tcp", addrs[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read = %v, want closed by the idle timeout", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", d)
	}
}

func TestRelayOneWayStreamIsNotIdle(t *testing.T) {
	// The upstream streams for longer than the idle timeout while the
	// client stays silent: the connection must survive.
	up := listen(t, func(c *net.TCPConn) {
		for i := 0; i < 12; i++ {
			c.Write([]byte("tick"))
			time.Sleep(50 * time.Millisecond)
		}
		c.CloseWrite()
	})
	addrs := startProxy(t, &Proxy{Routes: []Route{{Upstream: up}}, IdleTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", addrs[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || len(got) != 48 {
		t.Fatalf("got %d bytes, err %v; want 48 bytes and EOF", len(got), err)
	}
}

func TestRelayForwardsOneByteAtATime(t *testing.T) {
	// Each byte the client writes reaches the upstream before the next is
	// written: the relay never waits to collect a record.
	recv := make(chan byte, 64)
	up := listen(t, func(c *net.TCPConn) {
		b := make([]byte, 1)
		for {
			if _, err := c.Read(b); err != nil {
				return
			}
			recv <- b[0]
		}
	})
	addrs := startProxy(t, &Proxy{Routes: []Route{{Upstream: up, Inspect: true}}})
	c, err := net.Dial("tcp", addrs[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	hello := []byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00}
	for i, b := range hello {
		c.Write([]byte{b})
		select {
		case got := <-recv:
			if got != b {
				t.Fatalf("byte %d: got %#x want %#x", i, got, b)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("byte %d not forwarded on its own", i)
		}
	}
}

func TestServeDrainsThenReturns(t *testing.T) {
	// A connection in flight when the context ends completes; Serve returns
	// after it, well before the drain timeout.
	release := make(chan struct{})
	up := listen(t, func(c *net.TCPConn) {
		io.ReadFull(c, make([]byte, 4))
		<-release
		c.Write([]byte("done"))
		c.CloseWrite()
	})
	p := &Proxy{Routes: []Route{{Listen: "127.0.0.1:0", Upstream: up}}, DrainTimeout: 10 * time.Second}
	ready := make(chan []net.Addr, 1)
	p.Ready = func(a []net.Addr) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	addr := (<-ready)[0].String()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	time.Sleep(50 * time.Millisecond)
	cancel()
	// New connections are refused once draining.
	time.Sleep(50 * time.Millisecond)
	if c2, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c2.Close()
		t.Error("listener still accepting while draining")
	}
	close(release)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "done" {
		t.Fatalf("in-flight connection: got %q, %v", got, err)
	}
	c.Close() // the client's half ends too: now the connection is over
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the drain")
	}
}

func TestServeDrainTimeoutClosesStragglers(t *testing.T) {
	up := listen(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	p := &Proxy{Routes: []Route{{Listen: "127.0.0.1:0", Upstream: up}}, DrainTimeout: 100 * time.Millisecond}
	ready := make(chan []net.Addr, 1)
	p.Ready = func(a []net.Addr) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	c, err := net.Dial("tcp", (<-ready)[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hang"))
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the drain timeout")
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("straggler read = %v, want closed", err)
	}
}
