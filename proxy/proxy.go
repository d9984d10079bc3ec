package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero Proxy. They are the contract's defaults, documented in
// configs/ccproxy.yaml.
const (
	DefaultDialTimeout  = 10 * time.Second
	DefaultIdleTimeout  = 30 * time.Minute
	DefaultDrainTimeout = 30 * time.Second
	DefaultMaxConns     = 10000
	// DefaultClientHelloTimeout is how long a client on an inspected route
	// may take to send its complete ClientHello once the upstream
	// connection is up. A Contrast CLI sends it at once; a client that
	// connects and sends nothing would otherwise hold a slot for the whole
	// idle timeout.
	DefaultClientHelloTimeout = 10 * time.Second
)

// Route is one listen address relayed to one upstream.
type Route struct {
	Listen   string // e.g. ":1313"
	Upstream string // host:port, resolved on every dial
	// Inspect enables the Observer for this route. Plain routes (the
	// Coordinator's HTTP API on 1314, transit on 8200) are still relayed and
	// traced, but their bytes are not parsed as TLS.
	Inspect bool
}

func (r Route) String() string { return r.Listen + "=" + r.Upstream }

// ConnInfo describes one accepted connection to its Observer.
type ConnInfo struct {
	Route    Route
	Client   net.Addr
	Local    net.Addr
	Accepted time.Time
}

// Proxy relays every accepted connection on each Route to its upstream. The
// zero value is usable once Routes is set.
type Proxy struct {
	Routes []Route

	DialTimeout  time.Duration // per upstream dial; 0 means DefaultDialTimeout
	IdleTimeout  time.Duration // both directions silent this long ends a connection; 0 means DefaultIdleTimeout, <0 disables
	DrainTimeout time.Duration // after ctx ends, in-flight connections get this long; 0 means DefaultDrainTimeout
	MaxConns     int           // concurrent connections over all routes; 0 means DefaultMaxConns
	// ClientHelloTimeout bounds, on inspected routes whose Observer is a
	// HelloObserver, the time from the upstream connection being up to the
	// client's complete ClientHello; a client that misses it is reset and
	// its client direction ends with a *HelloTimeoutError. 0 means
	// DefaultClientHelloTimeout, <0 disables.
	ClientHelloTimeout time.Duration

	Logger *slog.Logger

	// NewObserver, if set, is called for every accepted connection (before
	// the upstream is dialed). The returned Observer sees the connection's
	// bytes and events; it may be nil.
	NewObserver func(ctx context.Context, c ConnInfo) Observer

	// OnRefused, if set, is called for each connection closed at once because
	// MaxConns was reached.
	OnRefused func(r Route)

	// OnExhausted, if set, is called for every accept or upstream dial that
	// failed because the process or the host ran out of a resource
	// (descriptors: EMFILE, ENFILE; kernel memory: ENOBUFS, ENOMEM; local
	// ports: EADDRNOTAVAIL). op is "accept" or "dial". Exhausted counts them
	// whether or not it is set.
	OnExhausted func(r Route, op string, err error)

	// Ready, if set, is called once every listener is bound, with the bound
	// addresses in Route order (useful with ":0").
	Ready func(addrs []net.Addr)

	dialer *net.Dialer // for tests; nil means a plain net.Dialer

	// exhausted is made by Serve; a pointer, so that a Proxy can be
	// copied as a template (the tunnel does) before it serves.
	exhausted *exhaustion
	// exhaustQuiet is exhaustion.quiet (tests shorten it).
	exhaustQuiet time.Duration
}

func (p *Proxy) dialTimeout() time.Duration {
	if p.DialTimeout > 0 {
		return p.DialTimeout
	}
	return DefaultDialTimeout
}

func (p *Proxy) idleTimeout() time.Duration {
	switch {
	case p.IdleTimeout < 0:
		return 0
	case p.IdleTimeout == 0:
		return DefaultIdleTimeout
	}
	return p.IdleTimeout
}

func (p *Proxy) drainTimeout() time.Duration {
	if p.DrainTimeout > 0 {
		return p.DrainTimeout
	}
	return DefaultDrainTimeout
}

func (p *Proxy) maxConns() int {
	if p.MaxConns > 0 {
		return p.MaxConns
	}
	return DefaultMaxConns
}

func (p *Proxy) clientHelloTimeout() time.Duration {
	switch {
	case p.ClientHelloTimeout < 0:
		return 0
	case p.ClientHelloTimeout == 0:
		return DefaultClientHelloTimeout
	}
	return p.ClientHelloTimeout
}

func (p *Proxy) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Listen binds every route's listener. Run calls it; it is exported so a
// caller can bind first (and fail with exit 2 on a bad address) and serve later.
func (p *Proxy) Listen(ctx context.Context) ([]net.Listener, error) {
	if len(p.Routes) == 0 {
		return nil, errors.New("no routes to relay")
	}
	lc := listenConfig()
	lns := make([]net.Listener, 0, len(p.Routes))
	for _, r := range p.Routes {
		ln, err := lc.Listen(ctx, "tcp", r.Listen)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("listen %s for upstream %s: %w", r.Listen, r.Upstream, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// Run binds the listeners and relays until ctx ends. Then it stops accepting,
// lets in-flight connections finish for up to DrainTimeout, closes whatever
// is left and returns once every connection's goroutines have ended.
func (p *Proxy) Run(ctx context.Context) error {
	lns, err := p.Listen(ctx)
	if err != nil {
		return err
	}
	return p.Serve(ctx, lns)
}

// Serve relays connections accepted on lns (one per Route, in order) until
// ctx ends, then drains as Run does. It closes the listeners.
func (p *Proxy) Serve(ctx context.Context, lns []net.Listener) error {
	if len(lns) != len(p.Routes) {
		return fmt.Errorf("serve: %d listeners for %d routes", len(lns), len(p.Routes))
	}
	if p.exhausted == nil {
		p.exhausted = &exhaustion{quiet: p.exhaustQuiet}
	}
	s := &server{
		p:     p,
		log:   p.logger(),
		sem:   make(chan struct{}, p.maxConns()),
		conns: make(map[*relay]struct{}),
		ex:    p.exhausted,
		wk:    newWorkers(maxIdleWorkers),
	}
	defer s.wk.Stop()
	// hardCtx ends when the drain period is over: it aborts dials and tells
	// every remaining relay to close.
	hardCtx, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()

	addrs := make([]net.Addr, len(lns))
	var acceptWG sync.WaitGroup
	for i, ln := range lns {
		addrs[i] = ln.Addr()
		acceptWG.Add(1)
		go func(r Route, ln net.Listener) {
			defer acceptWG.Done()
			s.acceptLoop(hardCtx, r, ln)
		}(p.Routes[i], ln)
		s.log.Info("relaying", "listen", ln.Addr().String(), "upstream", p.Routes[i].Upstream, "inspect", p.Routes[i].Inspect)
	}
	if p.Ready != nil {
		p.Ready(addrs)
	}

	<-ctx.Done()
	for _, ln := range lns {
		ln.Close()
	}
	acceptWG.Wait()
	active := s.activeCount()
	s.log.Info("draining", "active_connections", active, "drain_timeout", p.drainTimeout().String())

	drained := make(chan struct{})
	go func() { s.wg.Wait(); close(drained) }()
	timer := time.NewTimer(p.drainTimeout())
	defer timer.Stop()
	select {
	case <-drained:
		s.log.Info("drained", "connections", active)
		return nil
	case <-timer.C:
	}
	left := s.activeCount()
	s.log.Warn("drain timeout reached, closing connections", "active_connections", left)
	hardCancel()
	s.closeAll()
	<-drained
	return nil
}

type server struct {
	p   *Proxy
	log *slog.Logger
	sem chan struct{}
	wg  sync.WaitGroup
	ex  *exhaustion

	mu    sync.Mutex
	conns map[*relay]struct{}
	wk    *workers // nil: a goroutine per function (RelayConn)
}

// maxIdleWorkers bounds the goroutines a server keeps waiting for work
// (see workers): enough for the handshakes in progress at once under a
// steady stream of short connections. Each keeps a grown stack (16 to 32
// KiB) until the collector shrinks it, so more would show in the idle
// relay's memory: 128 cost 4 MiB of RSS at 10,000 idle connections.
const maxIdleWorkers = 16

// spawn runs f on one of s's workers, or on a new goroutine.
func (s *server) spawn(f func()) {
	if s.wk == nil {
		go f()
		return
	}
	s.wk.Go(f)
}

func (s *server) activeCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for r := range s.conns {
		r.abort()
	}
}

func (s *server) acceptLoop(ctx context.Context, r Route, ln net.Listener) {
	acceptLoop(ln, s.log, s.sem, &s.wg, s.spawn, func(c net.Conn) {
		if s.p.OnRefused != nil {
			s.p.OnRefused(r)
		}
	}, func(err error) {
		s.exhaust(r, "accept", err)
	}, func() {
		s.ex.recovered(s.log, "accept")
	}, func(c net.Conn, done func()) { s.handle(ctx, r, c, done) })
}

// Accept runs handle in its own goroutine for every connection ln accepts,
// until ln is closed. Temporary accept errors (EMFILE and friends) back off
// as net/http does instead of spinning. limit bounds the connections in
// flight: one beyond it is reset at once, logged and passed to refused
// (which may be nil). A connection is in flight until handle calls done,
// which it may do after returning (the relay's copy goroutines do). wg
// counts connections in flight; Add happens before the goroutine starts, so
// a Wait after ln is closed cannot miss one.
//
// An accept that fails for want of descriptors or memory (see
// IsExhausted) is logged once per episode by the Proxy that runs the
// loop, not here; Accept itself logs every failure as before.
func Accept(ln net.Listener, log *slog.Logger, limit chan struct{}, wg *sync.WaitGroup, refused func(net.Conn), handle func(c net.Conn, done func())) {
	acceptLoop(ln, log, limit, wg, nil, refused, nil, nil, handle)
}

// acceptLoop is Accept with two hooks for resource exhaustion: exhausted
// gets every accept error IsExhausted names (and then the loop does not log
// it itself), accepted is called after an accept succeeds following one.
func acceptLoop(ln net.Listener, log *slog.Logger, limit chan struct{}, wg *sync.WaitGroup, spawn func(func()), refused func(net.Conn), exhausted func(error), accepted func(), handle func(c net.Conn, done func())) {
	if spawn == nil {
		spawn = func(f func()) { go f() }
	}
	var delay time.Duration
	var refusedN int64
	failing := false
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			if exhausted != nil && IsExhausted(err) {
				failing = true
				exhausted(err)
			} else {
				log.Warn("accept failed", "listen", ln.Addr().String(), "err", err, "retry_in", delay.String())
			}
			time.Sleep(delay)
			continue
		}
		delay = 0
		if failing {
			failing = false
			accepted()
		}
		select {
		case limit <- struct{}{}:
		default:
			// A flood must not flood the log too: the first refusal, then
			// every thousandth, with the running count (metrics count each).
			if refusedN++; refusedN == 1 || refusedN%1000 == 0 {
				log.Warn("max connections reached, closing new connections", "listen", ln.Addr().String(), "client", c.RemoteAddr().String(), "max_connections", cap(limit), "refused_so_far", refusedN)
			}
			if refused != nil {
				refused(c)
			}
			resetConn(c)
			continue
		}
		wg.Add(1)
		spawn(func() {
			handle(c, func() {
				<-limit
				wg.Done()
			})
		})
	}
}

func (s *server) handle(ctx context.Context, r Route, client net.Conn, done func()) {
	info := ConnInfo{Route: r, Client: client.RemoteAddr(), Local: client.LocalAddr(), Accepted: time.Now()}
	var obs Observer
	if s.p.NewObserver != nil {
		obs = s.p.NewObserver(ctx, info)
	}
	if obs == nil {
		obs = nopObserver{}
	}
	rl := &relay{
		client: client,
		obs:    obs,
		idle:   s.p.idleTimeout(),
	}
	if ho, ok := obs.(HelloObserver); ok && r.Inspect {
		rl.hello, rl.helloTimeout = ho, s.p.clientHelloTimeout()
	}
	rl.inspect[0].Store(r.Inspect)
	rl.inspect[1].Store(r.Inspect)
	s.mu.Lock()
	s.conns[rl] = struct{}{}
	s.mu.Unlock()
	rl.run(ctx, s.dial(r), s.log, s.spawn, func() {
		s.mu.Lock()
		delete(s.conns, rl)
		s.mu.Unlock()
		done()
	})
}

// dial returns the function that dials r's upstream. Name resolution happens
// on every dial so a Service or load balancer that moves is followed.
func (s *server) dial(r Route) func(ctx context.Context) (net.Conn, error) {
	d := s.p.dialer
	if d == nil {
		d = &net.Dialer{}
	}
	timeout := s.p.dialTimeout()
	return func(ctx context.Context) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", r.Upstream)
		if err != nil && IsExhausted(err) {
			s.exhaust(r, "dial", err)
		} else if err == nil {
			s.ex.recovered(s.log, "dial")
		}
		return c, err
	}
}

// activity tracks, per direction, whether it carried bytes recently, for the
// idle timeout (see relay.idleExpired).
type activity struct {
	lastData atomic.Int64 // unix nanos of the last read that returned bytes
	idle     atomic.Bool  // the last wait in this direction timed out with no bytes
}

// RelayConn relays one connection accepted elsewhere (a tunnel stream, a
// test pipe) to r.Upstream exactly as Serve relays an accepted TCP
// connection: the same dial, observer, half-close (when client has
// CloseWrite) and reset semantics. It returns when the connection is over.
// MaxConns and draining are the caller's business.
func (p *Proxy) RelayConn(ctx context.Context, r Route, client net.Conn) {
	s := &server{p: p, log: p.logger(), conns: make(map[*relay]struct{}), ex: p.exhausted}
	if s.ex == nil {
		s.ex = new(exhaustion) // not serving: count for this connection only
	}
	over := make(chan struct{})
	s.handle(ctx, r, client, func() { close(over) })
	<-over
}
