package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// session is one QUIC connection to the server.
type session struct {
	qc     *quic.Conn
	ctrl   *quic.ReceiveStream
	goaway chan struct{} // closed when the server asks for a new connection

	mu        sync.Mutex
	pending   map[quic.StreamID]chan Verdict
	active    int  // local connections using this session
	goingAway bool // goaway received
}

func (s *session) usable() bool {
	select {
	case <-s.goaway:
		return false
	case <-s.qc.Context().Done():
		return false
	default:
		return true
	}
}

// acquire counts a local connection about to open a stream here; false
// once the server sent goaway.
func (s *session) acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.goingAway {
		return false
	}
	s.active++
	return true
}

// release ends a connection's use of the session. The last one after a
// goaway closes the connection: its data and verdicts have all arrived,
// which the draining server waits for (its own close would drop data still
// in flight).
func (s *session) release() {
	s.mu.Lock()
	s.active--
	last := s.goingAway && s.active == 0
	s.mu.Unlock()
	if last {
		s.qc.CloseWithError(connDone, "drained")
	}
}

func (s *session) goAway() {
	s.mu.Lock()
	first := !s.goingAway
	s.goingAway = true
	idle := s.active == 0
	s.mu.Unlock()
	if !first {
		return
	}
	close(s.goaway)
	if idle {
		s.qc.CloseWithError(connDone, "drained")
	}
}

func (s *session) register(id quic.StreamID) chan Verdict {
	ch := make(chan Verdict, 1)
	s.mu.Lock()
	s.pending[id] = ch
	s.mu.Unlock()
	return ch
}

func (s *session) unregister(id quic.StreamID) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// readControl reads the server's messages until the connection ends. A
// malformed one closes the connection: the server is pinned, so it is a
// bug, not an attack, and the streams are better reset than misattributed.
func (s *session) readControl(log *slog.Logger) {
	for {
		typ, body, err := readMsg(s.ctrl)
		if err != nil {
			if s.qc.Context().Err() == nil && !connError(err) {
				log.Warn("tunnel control stream broke; closing the connection", "err", err)
				s.qc.CloseWithError(connProtocol, "control stream ended")
			}
			return
		}
		switch typ {
		case msgVerdict:
			id, v, err := parseVerdict(body)
			if err != nil {
				log.Warn("bad verdict from the tunnel server; closing the connection", "err", err)
				s.qc.CloseWithError(connProtocol, "bad verdict")
				return
			}
			s.mu.Lock()
			ch := s.pending[id]
			s.mu.Unlock()
			if ch == nil {
				log.Debug("verdict for a stream no longer waited for", "stream", int64(id))
				continue
			}
			select {
			case ch <- v:
			default: // a second verdict for one stream: keep the first
			}
		case msgGoAway:
			s.goAway()
		default:
			// A later hello, or a message type from a newer server.
		}
	}
}

func (cs *clientState) setCurrent(s *session, err error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.cur = s
	cs.lastErr = err
	close(cs.changed)
	cs.changed = make(chan struct{})
}

// stableAfter is how long a session must last for the next reconnect to
// start at the shortest backoff: a server that accepts and drops at once
// (crash looping, rejecting at the application level) is backed off from
// like one that refuses.
const stableAfter = 5 * time.Second

// supervise keeps one usable session up: it dials, waits for the session
// to end or be drained, and dials again, backing off (with jitter) after
// each failed attempt or short-lived session.
func (cs *clientState) supervise(ctx context.Context) {
	minB := orDefault(cs.c.MinBackoff, DefaultMinBackoff)
	maxB := max(orDefault(cs.c.MaxBackoff, DefaultMaxBackoff), minB)
	backoff := minB
	failures := 0
	// pause waits the jittered backoff and doubles it; false when ctx ended.
	pause := func() bool {
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, maxB)
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for ctx.Err() == nil {
		s, err := cs.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			cs.setCurrent(nil, err)
			failures++
			cs.log.Warn("tunnel connect failed", "server", cs.c.Server, "err", err, "attempt", failures, "backoff", backoff.String())
			if !pause() {
				return
			}
			continue
		}
		failures = 0
		upAt := time.Now()
		cs.setCurrent(s, nil)
		cs.log.Info("tunnel up", "server", cs.c.Server, "remote", s.qc.RemoteAddr().String())
		select {
		case <-s.qc.Context().Done():
			cause := context.Cause(s.qc.Context())
			cs.setCurrent(nil, fmt.Errorf("the tunnel connection to %s was lost: %w", cs.c.Server, cause))
			cs.log.Warn("tunnel down, reconnecting", "server", cs.c.Server, "reason", closeReason(cause))
		case <-s.goaway:
			cs.setCurrent(nil, fmt.Errorf("the tunnel server %s is draining", cs.c.Server))
			cs.log.Info("tunnel server draining, reconnecting", "server", cs.c.Server)
		case <-ctx.Done():
			return
		}
		if time.Since(upAt) >= stableAfter {
			backoff = minB
		} else if !pause() {
			return
		}
	}
}

// dial makes one authenticated session: the QUIC handshake checks the
// server's pin, and the server's hello says it accepted ours.
func (cs *clientState) dial(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, cs.c.dialTimeout())
	defer cancel()
	addr, err := resolveUDP(ctx, cs.c.Server)
	if err != nil {
		return nil, err
	}
	qc, err := cs.tr.Dial(ctx, addr, cs.tlsConf, cs.qconf)
	if err != nil {
		return nil, fmt.Errorf("connect to tunnel server %s: %w", cs.c.Server, err)
	}
	// In TLS 1.3 the client finishes before the server has checked the
	// client's certificate; the hello is the server's acceptance.
	ctrl, err := qc.AcceptUniStream(ctx)
	if err != nil {
		qc.CloseWithError(connProtocol, "no hello")
		return nil, fmt.Errorf("tunnel server %s did not accept this client: %w", cs.c.Server, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		ctrl.SetReadDeadline(dl)
	}
	typ, body, err := readMsg(ctrl)
	if err == nil && typ != msgHello {
		err = fmt.Errorf("first control message has type %d, want hello", typ)
	}
	if err == nil {
		err = parseHello(body)
	}
	if err != nil {
		qc.CloseWithError(connProtocol, "bad hello")
		return nil, fmt.Errorf("tunnel server %s: hello: %w", cs.c.Server, err)
	}
	ctrl.SetReadDeadline(time.Time{})
	s := &session{qc: qc, ctrl: ctrl, goaway: make(chan struct{}), pending: map[quic.StreamID]chan Verdict{}}
	cs.mu.Lock()
	cs.sessions[s] = struct{}{}
	cs.mu.Unlock()
	go s.readControl(cs.log)
	go func() {
		<-qc.Context().Done()
		cs.mu.Lock()
		delete(cs.sessions, s)
		cs.mu.Unlock()
	}()
	return s, nil
}

// resolveUDP resolves host:port on every dial, so a moved server is
// followed.
func resolveUDP(ctx context.Context, hostport string) (*net.UDPAddr, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("tunnel server %q: %w", hostport, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("tunnel server %q: bad port", hostport)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve tunnel server %s: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("resolve tunnel server %s: no address", host)
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[0].Unmap(), uint16(p))), nil
}

func (cs *clientState) closeSessions() {
	cs.mu.Lock()
	var all []*session
	for s := range cs.sessions {
		all = append(all, s)
	}
	cs.mu.Unlock()
	for _, s := range all {
		s.qc.CloseWithError(connDone, "client shutting down")
	}
}

func (cs *clientState) activeCount() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.active)
}

func (cs *clientState) abortAll() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for p := range cs.active {
		p.abort()
	}
}

// noTunnelError: no stream could be opened within the dial timeout.
type noTunnelError struct {
	last   error // why the tunnel is down, if it is
	waited time.Duration
	// streamLimit: the tunnel is up, but the server granted no new stream
	// (its per-client stream limit is reached); last is the open's error.
	streamLimit bool
}

func (e *noTunnelError) Error() string {
	if e.streamLimit {
		return fmt.Sprintf("the server granted no new stream within %s (its per-client stream limit is reached): %v", e.waited, e.last)
	}
	if e.last != nil {
		return fmt.Sprintf("no tunnel within %s: %v", e.waited, e.last)
	}
	return fmt.Sprintf("no tunnel stream within %s", e.waited)
}

func (e *noTunnelError) Unwrap() error { return e.last }

// session waits for a usable session other than not.
func (cs *clientState) session(ctx context.Context, not *session, start time.Time) (*session, error) {
	for {
		cs.mu.Lock()
		s, ch, last := cs.cur, cs.changed, cs.lastErr
		cs.mu.Unlock()
		if s != nil && s != not && s.usable() {
			return s, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, &noTunnelError{last: last, waited: time.Since(start).Round(time.Millisecond)}
		}
	}
}

// open returns a new stream on the current session, waiting for the
// tunnel to come up if it is down. The caller releases the session.
func (cs *clientState) open(ctx context.Context) (*session, *quic.Stream, error) {
	start := time.Now()
	var failed *session
	for {
		s, err := cs.session(ctx, failed, start)
		if err != nil {
			return nil, nil, err
		}
		if !s.acquire() {
			failed = s // goaway arrived just now
			continue
		}
		st, err := s.qc.OpenStreamSync(ctx)
		if err == nil {
			return s, st, nil
		}
		s.release()
		if ctx.Err() != nil {
			// The session is up but grants no stream: the server's
			// per-client stream limit is reached.
			return nil, nil, &noTunnelError{last: err, waited: time.Since(start).Round(time.Millisecond), streamLimit: true}
		}
		failed = s // the connection died under us; wait for the next one
	}
}
