package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"go.opentelemetry.io/otel/propagation"

	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
)

// Defaults shared by Server and Client.
const (
	DefaultIdleTimeout   = 30 * time.Second // QUIC connection idle timeout
	DefaultKeepAlive     = 10 * time.Second // QUIC keep-alive period
	DefaultHeaderTimeout = 10 * time.Second // for a stream's header to arrive
	DefaultMaxStreams    = 1024             // concurrent relay streams per tunnel connection
	controlWriteTimeout  = 10 * time.Second
)

// Server is the in-cluster end: it accepts tunnel connections from pinned
// clients and relays each of their streams to a configured route with
// Relay. The zero value is usable once Listen, Routes, Cert and Peers are
// set.
type Server struct {
	Listen string  // UDP address, e.g. ":4433"
	Routes []Route // the only upstreams; the first is the default
	Cert   tls.Certificate
	Peers  []Fingerprint // the clients' certificates, pinned

	// Relay relays one stream; nil relays with a plain proxy.Proxy and an
	// untraced watcher.
	Relay Relayer

	MaxConns      int           // concurrent streams over all clients; 0 means proxy.DefaultMaxConns
	MaxStreams    int           // concurrent streams per client connection; 0 means DefaultMaxStreams
	IdleTimeout   time.Duration // QUIC idle timeout; 0 means DefaultIdleTimeout
	KeepAlive     time.Duration // QUIC keep-alive period; 0 means DefaultKeepAlive, <0 none
	HeaderTimeout time.Duration // 0 means DefaultHeaderTimeout
	DrainTimeout  time.Duration // after ctx ends, open streams get this long; 0 means proxy.DefaultDrainTimeout

	Logger *slog.Logger
	// Ready, if set, is called with the bound UDP address once serving.
	Ready func(net.Addr)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func keepAlive(d time.Duration) time.Duration {
	switch {
	case d < 0:
		return 0
	case d == 0:
		return DefaultKeepAlive
	}
	return d
}

// Bind opens the UDP socket. Run calls it; it is exported so a caller can
// bind first (and fail with a usage error on a bad address) and serve later.
func (s *Server) Bind(ctx context.Context) (net.PacketConn, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", s.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on udp %s: %w", s.Listen, err)
	}
	return pc, nil
}

// Run binds and serves until ctx ends, then drains as Serve does.
func (s *Server) Run(ctx context.Context) error {
	pc, err := s.Bind(ctx)
	if err != nil {
		return err
	}
	return s.Serve(ctx, pc)
}

// Serve accepts tunnel connections on pc until ctx ends. Then it stops
// accepting connections, tells every client to go away (new streams are
// refused from then on), lets open streams finish for up to DrainTimeout,
// closes every connection and returns. It closes pc.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn) error {
	defer pc.Close()
	if len(s.Routes) == 0 {
		return errors.New("tunnel server: no routes")
	}
	seen := map[string]bool{}
	for _, r := range s.Routes {
		if err := ValidRouteName(r.Name); err != nil {
			return fmt.Errorf("tunnel server: %w", err)
		}
		if r.Upstream == "" {
			return fmt.Errorf("tunnel server: route %q has no upstream", r.Name)
		}
		if seen[r.Name] {
			return fmt.Errorf("tunnel server: route %q configured twice", r.Name)
		}
		seen[r.Name] = true
	}
	tlsConf, err := serverTLS(s.Cert, s.Peers, s.logger())
	if err != nil {
		return fmt.Errorf("tunnel server: %w", err)
	}
	maxStreams := s.MaxStreams
	if maxStreams <= 0 {
		maxStreams = DefaultMaxStreams
	}
	qconf := &quic.Config{
		MaxIdleTimeout:  orDefault(s.IdleTimeout, DefaultIdleTimeout),
		KeepAlivePeriod: keepAlive(s.KeepAlive),
		// Clients open bidirectional relay streams only; the server's
		// control stream is the one unidirectional stream.
		MaxIncomingStreams:    int64(maxStreams),
		MaxIncomingUniStreams: -1,
	}
	tr := &quic.Transport{Conn: pc}
	defer tr.Close()
	ln, err := tr.Listen(tlsConf, qconf)
	if err != nil {
		return fmt.Errorf("tunnel server: listen: %w", err)
	}

	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = proxy.DefaultMaxConns
	}
	relay := s.Relay
	if relay == nil {
		relay = WatchRelayer(&proxy.Proxy{Logger: s.Logger}, watch.Config{Logger: s.Logger})
	}
	st := &serverState{
		s:     s,
		log:   s.logger(),
		relay: relay,
		sem:   make(chan struct{}, maxConns),
		conns: map[*peerConn]struct{}{},
		addr:  pc.LocalAddr().String(),
	}
	// hardCtx outlives ctx by the drain period: relays and their dials use it.
	hardCtx, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()

	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		st.acceptLoop(hardCtx, ln)
	}()
	names := make([]string, len(s.Routes))
	for i, r := range s.Routes {
		names[i] = r.Name + "=" + r.Upstream
	}
	st.log.Info("tunnel serving", "listen", st.addr, "routes", names, "pinned_clients", len(s.Peers))
	if s.Ready != nil {
		s.Ready(pc.LocalAddr())
	}

	<-ctx.Done()
	ln.Close()
	<-acceptDone
	open := st.beginDrain()
	st.log.Info("tunnel draining", "open_streams", open, "drain_timeout", orDefault(s.DrainTimeout, proxy.DefaultDrainTimeout).String())
	drained := make(chan struct{})
	go func() { st.streams.Wait(); close(drained) }()
	// Clients close their connection once the last stream's verdict has
	// arrived (after goaway); closing it from here before that would drop
	// data still in flight.
	closed := make(chan struct{})
	go func() { st.handlers.Wait(); close(closed) }()
	dctx, dcancel := context.WithTimeout(context.Background(), orDefault(s.DrainTimeout, proxy.DefaultDrainTimeout))
	defer dcancel()
	select {
	case <-closed:
	case <-dctx.Done():
		st.log.Warn("drain timeout reached, closing tunnel connections", "open_streams", st.openStreams())
	}
	// Closing a connection ends its streams; their relays then reset the
	// upstream connections and return. Then hardCancel ends dials still in
	// progress.
	st.closeAll(connShutdown, "server shutting down")
	hardCancel()
	<-drained
	<-closed
	return nil
}

// serverState is one Serve call's state.
type serverState struct {
	s     *Server
	log   *slog.Logger
	relay Relayer
	sem   chan struct{}
	addr  string

	streams  sync.WaitGroup // relay streams in flight
	handlers sync.WaitGroup // connection handlers

	mu       sync.Mutex
	draining bool
	inFlight int
	conns    map[*peerConn]struct{}
}

// peerConn is one client's tunnel connection.
type peerConn struct {
	qc   *quic.Conn
	fp   Fingerprint
	ctrl *controlWriter
}

func (st *serverState) acceptLoop(ctx context.Context, ln *quic.Listener) {
	for {
		qc, err := ln.Accept(ctx)
		if err != nil {
			return // the listener was closed
		}
		// Accept returns only after the handshake, so the client's
		// certificate has passed the pin check.
		pcs := qc.ConnectionState().TLS.PeerCertificates
		pc := &peerConn{qc: qc, fp: FingerprintOf(pcs[0].Raw)}
		st.mu.Lock()
		if st.draining {
			st.mu.Unlock()
			qc.CloseWithError(connShutdown, "server shutting down")
			continue
		}
		st.conns[pc] = struct{}{}
		st.handlers.Add(1)
		st.mu.Unlock()
		go st.handleConn(ctx, pc)
	}
}

func (st *serverState) handleConn(ctx context.Context, pc *peerConn) {
	defer st.handlers.Done()
	defer func() {
		st.mu.Lock()
		delete(st.conns, pc)
		st.mu.Unlock()
	}()
	log := st.log.With("peer", pc.qc.RemoteAddr().String(), "peer_fingerprint", pc.fp.String())

	octx, cancel := context.WithTimeout(ctx, controlWriteTimeout)
	cs, err := pc.qc.OpenUniStreamSync(octx)
	cancel()
	if err != nil {
		log.Warn("tunnel client dropped before the control stream opened", "err", err)
		pc.qc.CloseWithError(connProtocol, "no control stream")
		return
	}
	ctrl := &controlWriter{st: cs}
	hello, _ := marshalMsg(msgHello, []byte{HeaderVersion})
	if err := ctrl.write(hello); err != nil {
		log.Warn("tunnel client dropped before hello", "err", err)
		pc.qc.CloseWithError(connProtocol, "hello not delivered")
		return
	}
	log.Info("tunnel client connected")
	st.mu.Lock()
	pc.ctrl = ctrl
	draining := st.draining
	st.mu.Unlock()
	if draining {
		ctrl.goAway()
	}

	for {
		s, err := pc.qc.AcceptStream(ctx)
		if err != nil {
			if ctx.Err() != nil {
				// Shutdown: the drain period is over.
				pc.qc.CloseWithError(connShutdown, "server shutting down")
			}
			log.Info("tunnel client disconnected", "reason", closeReason(err))
			return
		}
		if !st.admit(s) {
			continue
		}
		go st.handleStream(ctx, pc, s, log)
	}
}

// admit registers a new stream with the drain and the connection limit,
// or refuses it (reset) and returns false.
func (st *serverState) admit(s *quic.Stream) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.draining {
		refuse(s, codeShutdown)
		return false
	}
	select {
	case st.sem <- struct{}{}:
	default:
		st.log.Warn("max connections reached, refusing tunnel stream", "max_connections", cap(st.sem))
		refuse(s, codeBusy)
		return false
	}
	// Under mu, so beginDrain's Wait cannot start between the check and
	// the Add.
	st.streams.Add(1)
	st.inFlight++
	return true
}

func (st *serverState) release() {
	<-st.sem
	st.mu.Lock()
	st.inFlight--
	st.mu.Unlock()
	st.streams.Done()
}

func (st *serverState) openStreams() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.inFlight
}

// beginDrain refuses new streams from now on and tells every client.
func (st *serverState) beginDrain() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.draining = true
	for pc := range st.conns {
		if pc.ctrl != nil {
			// In a goroutine: a client that does not read could hold the
			// write up to its deadline.
			go pc.ctrl.goAway()
		}
	}
	return st.inFlight
}

func (st *serverState) closeAll(code quic.ApplicationErrorCode, msg string) {
	st.mu.Lock()
	var all []*peerConn
	for pc := range st.conns {
		all = append(all, pc)
	}
	st.mu.Unlock()
	for _, pc := range all {
		pc.qc.CloseWithError(code, msg)
	}
}

func refuse(s *quic.Stream, code quic.StreamErrorCode) {
	s.CancelRead(code)
	s.CancelWrite(code)
}

func (st *serverState) handleStream(ctx context.Context, pc *peerConn, s *quic.Stream, log *slog.Logger) {
	defer st.release()
	log = log.With("stream", int64(s.StreamID()))
	s.SetReadDeadline(time.Now().Add(orDefault(st.s.HeaderTimeout, DefaultHeaderTimeout)))
	h, err := ReadHeader(s)
	if err != nil {
		log.Warn("refusing tunnel stream: bad header", "err", err)
		refuse(s, codeBadHeader)
		return
	}
	s.SetReadDeadline(time.Time{})
	route, ok := st.route(h.Route)
	if !ok {
		// Only names are ever looked up; an unknown one is refused, never
		// dialed.
		log.Warn("refusing tunnel stream: unknown route", "route", h.Route)
		refuse(s, codeUnknownRoute)
		return
	}
	rctx := propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{
		"traceparent": h.TraceParent,
		"tracestate":  h.TraceState,
	})
	conn := newStreamConn(s, pc.qc.LocalAddr(), pc.qc.RemoteAddr())
	v := st.relay(rctx, Request{
		Route:           route,
		Listen:          st.addr,
		Conn:            conn,
		Peer:            pc.qc.RemoteAddr(),
		PeerFingerprint: pc.fp,
		StreamID:        int64(s.StreamID()),
	})
	conn.Close() // whatever the relayer left open
	if v.Upstream == "" {
		v.Upstream = route.Upstream
	}
	if err := pc.ctrl.verdict(s.StreamID(), v); err != nil {
		log.Debug("verdict not delivered", "err", err)
	}
}

func (st *serverState) route(name string) (Route, bool) {
	if name == "" {
		return st.s.Routes[0], true
	}
	for _, r := range st.s.Routes {
		if r.Name == name {
			return r, true
		}
	}
	return Route{}, false
}

// controlWriter serializes the server's messages on a control stream.
type controlWriter struct {
	mu         sync.Mutex
	st         *quic.SendStream
	sentGoAway bool
}

func (c *controlWriter) write(msg []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.SetWriteDeadline(time.Now().Add(controlWriteTimeout))
	_, err := c.st.Write(msg)
	return err
}

func (c *controlWriter) verdict(id quic.StreamID, v Verdict) error {
	msg, err := marshalVerdict(id, v)
	if err != nil {
		return err
	}
	return c.write(msg)
}

func (c *controlWriter) goAway() {
	c.mu.Lock()
	sent := c.sentGoAway
	c.sentGoAway = true
	c.mu.Unlock()
	if sent {
		return
	}
	msg, _ := marshalMsg(msgGoAway, nil)
	c.write(msg)
}

// closeReason shortens the usual ends of a connection for the log.
func closeReason(err error) string {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.ErrorCode == connDone {
		return "closed"
	}
	var it *quic.IdleTimeoutError
	if errors.As(err, &it) {
		return "idle timeout"
	}
	return err.Error()
}
