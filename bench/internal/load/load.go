// Package load is the benchmark's client side: it opens connections
// through the relay under test the way a Contrast CLI does (a TLS 1.3
// handshake with an atls nonce) and drives the workloads: bulk transfer,
// ping-pong, connection rate, first-byte latency and idle connections.
//
//	d := &load.Dialer{Addr: relayAddr}
//	bulk, err := load.Throughput(ctx, d, 1<<30)
//	rtts, err := load.PingPong(ctx, d, 20000, 64)
package load

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ccproxy-dev/ccproxy/bench/internal/wire"
)

// SteadyRounds is how many TLS-phase exchanges a long-lived connection
// makes before it switches to raw TCP: a few protected records each way,
// as a gRPC client's first calls send, so an inspecting relay sees the
// handshake finish and settles into its steady state (ccproxy hands the
// connection to splice then).
const SteadyRounds = 3

// Dialer opens benchmark connections to Addr (the relay, or the upstream
// itself for the direct baseline).
type Dialer struct {
	Addr string
	// Timeout bounds one connection's setup: dial, handshake and TLS
	// phase. 0 means 15 s.
	Timeout time.Duration
}

func (d *Dialer) timeout() time.Duration {
	if d.Timeout > 0 {
		return d.Timeout
	}
	return 15 * time.Second
}

// Session is one established benchmark connection.
type Session struct {
	// TCP is the connection under the TLS layer; after a raw Open the
	// workloads use it directly.
	TCP *net.TCPConn
	TLS *tls.Conn
	// FirstByte is the time from the client's first byte (the start of its
	// ClientHello write) to that byte's arrival at the upstream's
	// application, both read from the wall clock this machine shares.
	FirstByte time.Duration
	// Handshake is the time from starting the dial to a finished TLS
	// handshake.
	Handshake time.Duration
	raw       bool
}

// Close ends the session: a close_notify first if it is still in the TLS
// phase, then a FIN.
func (s *Session) Close() error {
	if s.raw {
		return s.TCP.Close()
	}
	return s.TLS.Close()
}

// stampConn records when the first write began: the client's first byte.
type stampConn struct {
	net.Conn
	first int64 // unix nanos; written once by the handshake goroutine
}

func (c *stampConn) Write(b []byte) (int, error) {
	if c.first == 0 {
		c.first = time.Now().UnixNano()
	}
	return c.Conn.Write(b)
}

// Open dials Addr, does the TLS handshake and rounds TLS-phase exchanges,
// then, if raw, one OpRaw exchange after which the session continues on
// s.TCP. rounds must be at least 1: the first answer carries the first-byte
// time.
func (d *Dialer) Open(ctx context.Context, rounds int, raw bool) (*Session, error) {
	if rounds < 1 {
		return nil, errors.New("open: rounds must be at least 1")
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout())
	defer cancel()
	start := time.Now()
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", d.Addr, err)
	}
	tcp := c.(*net.TCPConn)
	var nonce [32]byte
	rand.Read(nonce[:])
	sc := &stampConn{Conn: tcp}
	tc := tls.Client(sc, wire.ClientTLSConfig(nonce[:]))
	s := &Session{TCP: tcp, TLS: tc}
	fail := func(what string, err error) (*Session, error) {
		tcp.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("%s via %s: %w", what, d.Addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		tcp.SetDeadline(dl)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail("tls handshake", err)
	}
	s.Handshake = time.Since(start)
	for i := range rounds + boolInt(raw) {
		op := wire.OpTLS
		if i == rounds {
			op = wire.OpRaw
		}
		if err := wire.Write(tc, wire.Msg{Op: op}); err != nil {
			return fail("tls-phase write", err)
		}
		m, err := wire.Read(tc)
		if err != nil {
			return fail("tls-phase read", err)
		}
		if m.Op != op {
			return fail("tls-phase read", fmt.Errorf("answer %q to %q", m.Op, op))
		}
		if i == 0 {
			s.FirstByte = time.Duration(m.Arg - sc.first)
		}
	}
	tcp.SetDeadline(time.Time{})
	s.raw = raw
	return s, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// closeOnDone closes c when ctx ends, so a blocked read or write returns.
func closeOnDone(ctx context.Context, c io.Closer) (stop func() bool) {
	return context.AfterFunc(ctx, func() { c.Close() })
}

// ioBuf is the client's raw-phase buffer size, the same as the server's.
const ioBuf = 256 << 10

// Bulk is a sequential bulk transfer's outcome: Bytes up, then Bytes down.
type Bulk struct {
	Bytes    int64
	Upload   time.Duration // first header byte written → upstream's acknowledgement read
	Download time.Duration // request written → last byte read
}

// Throughput opens a steady-state session and moves size bytes to the
// upstream, then size bytes back, one direction after the other.
func Throughput(ctx context.Context, d *Dialer, size int64) (Bulk, error) {
	s, err := d.Open(ctx, SteadyRounds, true)
	if err != nil {
		return Bulk{}, err
	}
	defer s.Close()
	defer closeOnDone(ctx, s.TCP)()
	c := s.TCP
	buf := make([]byte, ioBuf)
	res := Bulk{Bytes: size}

	start := time.Now()
	if err := wire.Write(c, wire.Msg{Op: wire.OpUpload, Arg: size}); err != nil {
		return res, fmt.Errorf("upload request: %w", err)
	}
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := c.Write(buf[:n]); err != nil {
			return res, fmt.Errorf("upload: %w", err)
		}
		left -= n
	}
	ack, err := wire.Read(c)
	if err != nil {
		return res, fmt.Errorf("upload acknowledgement: %w", err)
	}
	if ack.Op != wire.OpUpload || ack.Arg != size {
		return res, fmt.Errorf("upload acknowledgement: %+v, want %d bytes", ack, size)
	}
	res.Upload = time.Since(start)

	start = time.Now()
	if err := wire.Write(c, wire.Msg{Op: wire.OpDownload, Arg: size}); err != nil {
		return res, fmt.Errorf("download request: %w", err)
	}
	for got := int64(0); got < size; {
		n, err := c.Read(buf[:min(int64(len(buf)), size-got)])
		got += int64(n)
		if err != nil && got < size {
			return res, fmt.Errorf("download after %d of %d bytes: %w", got, size, err)
		}
	}
	res.Download = time.Since(start)
	return res, nil
}

// PingPong opens a steady-state session and times n round trips of a
// size-byte message, after a short warm-up that is not recorded.
func PingPong(ctx context.Context, d *Dialer, n, size int) ([]time.Duration, error) {
	if size < 1 {
		return nil, errors.New("ping-pong: message size must be at least 1")
	}
	s, err := d.Open(ctx, SteadyRounds, true)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	defer closeOnDone(ctx, s.TCP)()
	c := s.TCP
	if err := wire.Write(c, wire.Msg{Op: wire.OpEcho}); err != nil {
		return nil, fmt.Errorf("echo request: %w", err)
	}
	out := make([]byte, size)
	in := make([]byte, size)
	warm := min(n/10, 1000)
	rtts := make([]time.Duration, 0, n)
	for i := range warm + n {
		out[0] = byte(i)
		start := time.Now()
		if _, err := c.Write(out); err != nil {
			return nil, fmt.Errorf("ping %d: %w", i, err)
		}
		if _, err := io.ReadFull(c, in); err != nil {
			return nil, fmt.Errorf("pong %d: %w", i, err)
		}
		if i >= warm {
			rtts = append(rtts, time.Since(start))
		}
		if in[0] != out[0] {
			return nil, fmt.Errorf("pong %d: echoed %d, sent %d", i, in[0], out[0])
		}
	}
	return rtts, nil
}

// Rate is a connection-rate run's outcome.
type Rate struct {
	Conns    int           // completed: handshake, one exchange, close
	Errors   int           // failed setups
	FirstErr error         // the first failure, if any
	Elapsed  time.Duration // from start until the last worker stopped
}

// PerSecond is completed connections per second.
func (r Rate) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Conns) / r.Elapsed.Seconds()
}

// ConnRate has workers goroutines open, use once and close new TLS
// connections back to back for dur.
func ConnRate(ctx context.Context, d *Dialer, workers int, dur time.Duration) Rate {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deadline := time.Now().Add(dur)
	var (
		conns, errs atomic.Int64
		mu          sync.Mutex
		first       error
		wg          sync.WaitGroup
	)
	start := time.Now()
	for range max(workers, 1) {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				s, err := d.Open(ctx, 1, false)
				if err != nil {
					errs.Add(1)
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					continue
				}
				s.Close()
				conns.Add(1)
			}
		})
	}
	wg.Wait()
	return Rate{Conns: int(conns.Load()), Errors: int(errs.Load()), FirstErr: first, Elapsed: time.Since(start)}
}

// FirstByte opens n connections one after the other (no load besides
// itself) and returns each one's first-byte latency.
func FirstByte(ctx context.Context, d *Dialer, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for range n {
		s, err := d.Open(ctx, 1, false)
		if err != nil {
			return out, err
		}
		out = append(out, s.FirstByte)
		s.Close()
	}
	return out, nil
}

// Pool holds idle steady-state connections: each finished its handshake,
// a few protected records each way and one raw byte each way, so the relay
// holds it as a real, relayed, now silent connection.
type Pool struct {
	D *Dialer

	mu       sync.Mutex
	sessions []*Session
}

// Len is the number of connections held.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

// Grow opens connections with workers in parallel until the pool holds
// target. It stops at the first failure and returns it; the connections
// opened so far stay held.
func (p *Pool) Grow(ctx context.Context, target, workers int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		claimed atomic.Int64
		wg      sync.WaitGroup
	)
	claimed.Store(int64(p.Len()))
	for range max(workers, 1) {
		wg.Go(func() {
			for ctx.Err() == nil && claimed.Add(1) <= int64(target) {
				s, err := p.openIdle(ctx)
				if err != nil {
					cancel(err)
					return
				}
				p.mu.Lock()
				p.sessions = append(p.sessions, s)
				p.mu.Unlock()
			}
		})
	}
	wg.Wait()
	// The first failure, or the parent context's cause; nil when every
	// connection opened.
	return context.Cause(ctx)
}

func (p *Pool) openIdle(ctx context.Context) (*Session, error) {
	s, err := p.D.Open(ctx, SteadyRounds, true)
	if err != nil {
		return nil, err
	}
	c := s.TCP
	c.SetDeadline(time.Now().Add(p.D.timeout()))
	if err := wire.Write(c, wire.Msg{Op: wire.OpHold}); err != nil {
		s.Close()
		return nil, fmt.Errorf("hold request: %w", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		s.Close()
		return nil, fmt.Errorf("hold answer: %w", err)
	}
	c.SetDeadline(time.Time{})
	return s, nil
}

// Close closes every held connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.sessions {
		s.Close()
	}
	p.sessions = nil
}

// Storm has workers goroutines attempt TLS connections back to back for
// dur through a relay whose upstream closes each right after the
// ClientHello, as the Contrast CLI retries against a load balancer with no
// backend. Conns counts attempts that failed that way (the handshake ended
// by EOF or a reset before any server byte); Errors counts the rest: a dial
// that failed, a handshake that succeeded or timed out.
func Storm(ctx context.Context, d *Dialer, workers int, dur time.Duration) Rate {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deadline := time.Now().Add(dur)
	var (
		attempts, errs atomic.Int64
		mu             sync.Mutex
		first          error
		wg             sync.WaitGroup
	)
	fail := func(err error) {
		errs.Add(1)
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	start := time.Now()
	for range max(workers, 1) {
		wg.Go(func() {
			var nonce [32]byte
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if err := d.failingHandshake(ctx, nonce[:]); err != nil {
					fail(err)
					continue
				}
				attempts.Add(1)
			}
		})
	}
	wg.Wait()
	return Rate{Conns: int(attempts.Load()), Errors: int(errs.Load()), FirstErr: first, Elapsed: time.Since(start)}
}

// failingHandshake dials and starts a TLS handshake that the upstream is
// expected to cut after the ClientHello; it returns nil when it was cut
// that way.
func (d *Dialer) failingHandshake(ctx context.Context, nonce []byte) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout())
	defer cancel()
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", d.Addr, err)
	}
	defer c.Close()
	rand.Read(nonce)
	err = tls.Client(c, wire.ClientTLSConfig(nonce)).HandshakeContext(ctx)
	switch {
	case err == nil:
		return fmt.Errorf("tls handshake via %s succeeded; the upstream should have closed after the ClientHello", d.Addr)
	case ctx.Err() != nil:
		return fmt.Errorf("tls handshake via %s: %w", d.Addr, err)
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF):
		return nil
	}
	return fmt.Errorf("tls handshake via %s: %w (want EOF)", d.Addr, err)
}
