package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/bench/soak"
)

// Fault tests: what the relay does when a peer dies, vanishes or floods it.
// Each checks that both sides end (and how), and that no relay goroutine
// outlives its connection.

// relayGoroutines counts goroutines running a relay's code: a leak shows
// as a count that does not return to zero.
func relayGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "ccproxy/proxy.(*relay)") || strings.Contains(g, "ccproxy/proxy.(*server).handle") {
			n++
		}
	}
	return n
}

func waitNoRelays(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for relayGoroutines() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d relay goroutines still running after their connections ended", relayGoroutines())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// streamer writes random bytes to c until stopped or a write fails, and
// reads what comes back.
type streamer struct {
	c     net.Conn
	wrote atomic.Int64
	stop  atomic.Bool
	werr  chan error // the write error that ended the writer (nil if stopped)
}

func newStreamer(c net.Conn) *streamer {
	s := &streamer{c: c, werr: make(chan error, 1)}
	go func() {
		b := make([]byte, 16<<10)
		rand.Read(b)
		for !s.stop.Load() {
			n, err := c.Write(b)
			s.wrote.Add(int64(n))
			if err != nil {
				s.werr <- err
				return
			}
		}
		s.werr <- nil
	}()
	return s
}

// read reads until limit bytes arrived (limit > 0) or a read fails.
func (s *streamer) read(limit int64) (int64, error) {
	b := make([]byte, 32<<10)
	var got int64
	for limit <= 0 || got < limit {
		n, err := s.c.Read(b)
		got += int64(n)
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// die streams both ways until limit bytes went each way, stops writing (so
// the relay's read from this side waits in the poller while its write to
// this side is busy: the order in which a reset's error is most easily
// taken by the write), keeps reading a moment, then resets.
func (s *streamer) die(limit int64) {
	s.read(limit)
	for s.wrote.Load() < limit {
		time.Sleep(time.Millisecond)
	}
	s.stop.Store(true)
	<-s.werr
	s.c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	s.read(0)
	s.c.(*net.TCPConn).SetLinger(0)
	s.c.Close()
}

// survive reads until the connection ends and reports whether it ended
// with a reset: a read or write failing with ECONNRESET or EPIPE. A read
// that ends in EOF while writes still succeed for a second is a FIN: the
// relay turned the other side's reset into an orderly close.
func (s *streamer) survive() (reset bool, how string) {
	_, rerr := s.read(0)
	if isReset(rerr) {
		return true, "read: " + rerr.Error()
	}
	select {
	case werr := <-s.werr:
		// The reset's error goes to whichever call comes first; the read
		// then sees EOF.
		return isReset(werr), fmt.Sprintf("read: %v, write: %v", rerr, werr)
	case <-time.After(time.Second):
		return false, fmt.Sprintf("read: %v, writes still succeed a second later", rerr)
	}
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// TestFaultPeerResetMidStream kills one side with a reset while both
// directions stream, after inspection ended (so the copy is in splice).
// The survivor must be reset too, and the relay must never take the dead
// side's reset for a FIN: that would forward a FIN, and a truncated stream
// would look complete to the survivor. Which of the relay's two calls on
// the dead socket gets the reset's error is a race, so each case runs a
// few times.
func TestFaultPeerResetMidStream(t *testing.T) {
	const (
		killAfter = 256 << 10
		rounds    = 8
	)
	for _, tc := range []struct {
		dies    string
		inspect bool
	}{
		{"upstream", true}, {"upstream", false}, {"client", true}, {"client", false},
	} {
		t.Run(fmt.Sprintf("%s dies/inspect=%v", tc.dies, tc.inspect), func(t *testing.T) {
			var fins, notReset []string
			for round := range rounds {
				survivor := make(chan string, 1)
				up := listen(t, func(c *net.TCPConn) {
					c.SetDeadline(time.Now().Add(10 * time.Second))
					s := newStreamer(c)
					if tc.dies == "upstream" {
						s.die(killAfter)
						return
					}
					if reset, how := s.survive(); !reset {
						survivor <- how
					}
					close(survivor)
				})
				obs := &countingObserver{}
				p := &Proxy{
					Routes:      []Route{{Listen: "127.0.0.1:0", Upstream: up, Inspect: tc.inspect}},
					NewObserver: func(context.Context, ConnInfo) Observer { return obs },
				}
				addrs := startProxy(t, p)
				c, err := net.Dial("tcp", addrs[0].String())
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				s := newStreamer(c)
				if tc.dies == "client" {
					s.die(killAfter)
				} else {
					if reset, how := s.survive(); !reset {
						survivor <- how
					}
					close(survivor)
				}
				select {
				case how, ok := <-survivor:
					if ok {
						notReset = append(notReset, fmt.Sprintf("round %d: %s", round, how))
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the survivor never saw the connection end")
				}
				c.Close()
				obs.waitClosed(t)
				for d, e := range obs.ended {
					if e == nil || errors.Is(e, io.EOF) {
						fins = append(fins, fmt.Sprintf("round %d: %s ended with %v (the other: %v)", round, Direction(d), e, obs.ended[1-d]))
					}
				}
				if st := obs.stats; st.ClientToUpstream < killAfter || st.UpstreamToClient < killAfter {
					t.Fatalf("round %d: only %d/%d bytes relayed before the reset: the test did not reach the splice phase", round, st.ClientToUpstream, st.UpstreamToClient)
				}
			}
			if len(fins) > 0 {
				t.Errorf("the relay took the %s's reset for a FIN and forwarded a FIN in %d of %d rounds:\n%s", tc.dies, len(fins), rounds, strings.Join(fins, "\n"))
			}
			if len(notReset) > 0 {
				t.Errorf("the survivor was not reset in %d of %d rounds:\n%s", len(notReset), rounds, strings.Join(notReset, "\n"))
			}
			waitNoRelays(t)
		})
	}
}

// TestFaultClientVanishesDuringDial: the client resets while the upstream
// dial is still in progress. Once the dial completes, the relay must notice
// the dead client and close the fresh upstream connection at once, not keep
// it until the idle timeout.
func TestFaultClientVanishesDuringDial(t *testing.T) {
	upEnded := make(chan error, 1)
	up := listen(t, func(c *net.TCPConn) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c)
		upEnded <- err
	})
	dialing := make(chan struct{}, 1)
	release := make(chan struct{})
	obs := &countingObserver{}
	p := &Proxy{
		Routes:      []Route{{Upstream: up, Inspect: true}},
		NewObserver: func(context.Context, ConnInfo) Observer { return obs },
		IdleTimeout: time.Minute,
	}
	// Hold the dial after the socket exists, before connect(2).
	p.dialer = &net.Dialer{ControlContext: func(ctx context.Context, _, _ string, _ syscall.RawConn) error {
		dialing <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}}
	addrs := startProxy(t, p)
	c, err := net.Dial("tcp", addrs[0].String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{22, 3, 1, 0, 200, 1, 0, 0}) // the start of a ClientHello
	select {
	case <-dialing:
	case <-time.After(5 * time.Second):
		t.Fatal("the relay never dialed")
	}
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	time.Sleep(50 * time.Millisecond)
	released := time.Now()
	close(release)
	select {
	case err := <-upEnded:
		if isTimeout(err) {
			t.Fatalf("the upstream connection was held open: %v", err)
		}
		if d := time.Since(released); d > 2*time.Second {
			t.Errorf("upstream connection closed %v after the dial, want at once", d)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("the upstream connection never ended")
	}
	obs.waitClosed(t)
	waitNoRelays(t)
}

// TestFaultMaxConnectionsRefusesThenRecovers fills the relay, checks that
// each connection beyond the limit is closed at once, counted, and never
// reaches the upstream, and that a freed slot is usable again.
func TestFaultMaxConnectionsRefusesThenRecovers(t *testing.T) {
	var upstreamConns atomic.Int32
	up := listen(t, func(c *net.TCPConn) { upstreamConns.Add(1); io.Copy(c, c) })
	var refused atomic.Int32
	addrs := startProxy(t, &Proxy{
		Routes:    []Route{{Upstream: up}},
		MaxConns:  3,
		OnRefused: func(Route) { refused.Add(1) },
	})
	roundTrip := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			return err
		}
		_, err := io.ReadFull(c, make([]byte, 1))
		return err
	}
	var held []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addrs[0].String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := roundTrip(c); err != nil {
			t.Fatalf("connection %d under the limit: %v", i, err)
		}
		held = append(held, c)
	}
	const extra = 10
	for i := 0; i < extra; i++ {
		c, err := net.Dial("tcp", addrs[0].String())
		if err != nil {
			continue // reset before connect returned: refused too
		}
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if err == nil || isTimeout(err) {
			t.Fatalf("connection %d over the limit: read = %v, want it closed", i, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("connection %d over the limit closed after %v, want at once", i, d)
		}
	}
	if got := refused.Load(); got != extra {
		t.Errorf("OnRefused counted %d, want %d", got, extra)
	}
	if got := upstreamConns.Load(); got != 3 {
		t.Errorf("the upstream saw %d connections, want 3: refused ones must not be dialed", got)
	}
	// Free one slot; a new connection gets through once the relay has
	// released it.
	held[0].Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := net.Dial("tcp", addrs[0].String())
		if err == nil {
			err = roundTrip(c)
			c.Close()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection accepted after a slot was freed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFaultDrainUnderLoad ends the relay's context while 64 connections
// are mid-stream with half-closes: every stream must complete byte for
// byte (no truncation), new connections are refused, and Serve returns once
// the last one is done, long before the drain timeout.
func TestFaultDrainUnderLoad(t *testing.T) {
	const conns = 64
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	su := &soak.Upstream{Timeout: 20 * time.Second}
	go su.Serve(upLn)
	defer upLn.Close()

	// Connections the kernel completed but the relay has not accepted yet
	// are reset when the listener closes, as with any server; the test
	// drains once every connection is accepted and its upstream dialed.
	var relayed atomic.Int32
	p := &Proxy{
		Routes:       []Route{{Listen: "127.0.0.1:0", Upstream: upLn.Addr().String(), Inspect: true}},
		DrainTimeout: 20 * time.Second,
		NewObserver: func(context.Context, ConnInfo) Observer {
			return &dialCounter{n: &relayed}
		},
	}
	ready := make(chan []net.Addr, 1)
	p.Ready = func(a []net.Addr) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	addr := (<-ready)[0].String()

	var wg, dialed sync.WaitGroup
	errs := make(chan error, conns)
	wg.Add(conns)
	dialed.Add(conns)
	for i := range conns {
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			dialed.Done()
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			s := soak.Spec{Mode: soak.Mode(i % 3), Seed: uint64(i), Up: 256<<10 + int64(i)*4096, Down: 512<<10 + int64(i)*4096, Slow: true}
			if err := soak.Exchange(c, s); err != nil {
				errs <- err
			}
		}()
	}
	dialed.Wait()
	for deadline := time.Now().Add(10 * time.Second); relayed.Load() < conns; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d connections relayed", relayed.Load(), conns)
		}
	}
	time.Sleep(50 * time.Millisecond) // every stream is under way
	cancel()
	time.Sleep(50 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the relay still accepts connections while draining")
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("stream cut by the drain: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the last stream ended")
	}
	// The upstream may still be checking the last bytes the client sent.
	upLn.Close()
	su.Wait()
	if r := su.Report(); r.Connections != conns || r.Lost() != 0 {
		t.Errorf("upstream verified %d of %d connections, losses %s", r.Connections, conns, soak.FormatLosses(r.Losses))
	}
	waitNoRelays(t)
}

// dialCounter counts connections whose upstream dial succeeded.
type dialCounter struct {
	nopObserver
	n *atomic.Int32
}

func (d *dialCounter) Dialed(_ net.Conn, err error, _ time.Duration) {
	if err == nil {
		d.n.Add(1)
	}
}
