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
	oteltrace "go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/ccproxy-dev/ccproxy/internal/runs"
	"github.com/ccproxy-dev/ccproxy/internal/verdict"
	"github.com/ccproxy-dev/ccproxy/proxy"
)

// Client defaults.
const (
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultVerdictTimeout = 2 * time.Minute
)

// LocalRoute is one local TCP listener carried to one of the server's
// routes.
type LocalRoute struct {
	Listen string // e.g. ":1313"
	Route  string // the server's route name; "" for its default route
}

// Result is what the local side knows when one of its connections is over.
type Result struct {
	Route   LocalRoute
	Client  net.Addr
	Verdict Verdict
	Remote  bool // Verdict is the server's relay's; false: the tunnel could not carry the connection or learn its outcome
	// Failure says why, when Remote is false: Verdict is then
	// tunnel_unavailable and its detail opens with Failure's words.
	Failure  verdict.TunnelFailure
	TraceID  oteltrace.TraceID
	Sent     int64 // local client to tunnel
	Received int64 // tunnel to local client
	Accepted time.Time
	Ended    time.Time
}

// Client is the local end: every TCP connection accepted on a LocalRoute
// becomes one stream over a single QUIC connection to Server, kept up with
// keep-alives and re-established with backoff when it drops. The zero
// value is usable once Server, Routes, Cert and Peers are set.
type Client struct {
	Server string // host:port (UDP) of `ccproxy tunnel serve`
	Routes []LocalRoute
	Cert   tls.Certificate
	Peers  []Fingerprint // the server's certificate, pinned

	Tracer oteltrace.Tracer // nil: no spans
	// Runs places each local connection in its client's CLI run (the root
	// span's trace.RunAttempt and link); nil: a tracker of the Client's
	// own. This end sees no handshake: give it one with Settle off.
	Runs *runs.Tracker

	// DialTimeout bounds how long a new local connection waits for a
	// tunnel stream, including for the tunnel to come up; it also bounds
	// each connection attempt. 0 means proxy.DefaultDialTimeout.
	DialTimeout    time.Duration
	IdleTimeout    time.Duration // QUIC idle timeout; 0 means DefaultIdleTimeout
	KeepAlive      time.Duration // QUIC keep-alive period; 0 means DefaultKeepAlive, <0 none
	MinBackoff     time.Duration // first reconnect delay; 0 means DefaultMinBackoff
	MaxBackoff     time.Duration // reconnect delay cap; 0 means DefaultMaxBackoff
	VerdictTimeout time.Duration // wait for the server's verdict after a connection; 0 means DefaultVerdictTimeout
	DrainTimeout   time.Duration // after ctx ends; 0 means proxy.DefaultDrainTimeout
	MaxConns       int           // concurrent local connections; 0 means proxy.DefaultMaxConns

	Logger *slog.Logger
	// OnResult, if set, is called once per local connection when its
	// verdict is known.
	OnResult func(Result)
	// Ready, if set, is called once every listener is bound, with the
	// bound addresses in Routes order.
	Ready func([]net.Addr)
}

func (c *Client) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Client) dialTimeout() time.Duration {
	return orDefault(c.DialTimeout, proxy.DefaultDialTimeout)
}

// Listen binds every route's TCP listener.
func (c *Client) Listen(ctx context.Context) ([]net.Listener, error) {
	if len(c.Routes) == 0 {
		return nil, errors.New("no routes to carry")
	}
	var lc net.ListenConfig
	lns := make([]net.Listener, 0, len(c.Routes))
	for _, r := range c.Routes {
		ln, err := lc.Listen(ctx, "tcp", r.Listen)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("listen %s for route %q: %w", r.Listen, r.Route, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// Run binds and serves until ctx ends.
func (c *Client) Run(ctx context.Context) error {
	lns, err := c.Listen(ctx)
	if err != nil {
		return err
	}
	return c.Serve(ctx, lns)
}

// Serve carries connections accepted on lns (one per Route, in order)
// until ctx ends. Then it stops accepting, lets open connections finish
// for up to DrainTimeout, resets what is left, closes the tunnel and
// returns. It closes the listeners.
func (c *Client) Serve(ctx context.Context, lns []net.Listener) error {
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	if len(lns) != len(c.Routes) {
		return fmt.Errorf("tunnel client: %d listeners for %d routes", len(lns), len(c.Routes))
	}
	for _, r := range c.Routes {
		if r.Route != "" {
			if err := ValidRouteName(r.Route); err != nil {
				return fmt.Errorf("tunnel client: %w", err)
			}
		}
	}
	host, _, err := net.SplitHostPort(c.Server)
	if err != nil {
		return fmt.Errorf("tunnel client: server %q is not host:port: %w", c.Server, err)
	}
	tlsConf, err := clientTLS(c.Cert, c.Peers, host)
	if err != nil {
		return fmt.Errorf("tunnel client: %w", err)
	}
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return fmt.Errorf("tunnel client: open udp socket: %w", err)
	}
	tr := &quic.Transport{Conn: udp}
	defer udp.Close()
	defer tr.Close()

	maxConns := c.MaxConns
	if maxConns <= 0 {
		maxConns = proxy.DefaultMaxConns
	}
	tracer := c.Tracer
	if tracer == nil {
		tracer = noop.NewTracerProvider().Tracer("")
	}
	if c.Runs == nil {
		c.Runs = runs.New(runs.Config{Settle: -1})
	}
	cs := &clientState{
		runs:    c.Runs,
		c:       c,
		log:     c.logger(),
		tr:      tr,
		tlsConf: tlsConf,
		qconf: &quic.Config{
			HandshakeIdleTimeout: min(c.dialTimeout(), 5*time.Second),
			MaxIdleTimeout:       orDefault(c.IdleTimeout, DefaultIdleTimeout),
			KeepAlivePeriod:      keepAlive(c.KeepAlive),
			// The server opens only its control stream, and no relay streams.
			MaxIncomingStreams:    -1,
			MaxIncomingUniStreams: 1,
		},
		tracer:   tracer,
		sem:      make(chan struct{}, maxConns),
		changed:  make(chan struct{}),
		sessions: map[*session]struct{}{},
		active:   map[*pump]struct{}{},
	}
	hardCtx, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()

	superDone := make(chan struct{})
	go func() {
		defer close(superDone)
		cs.supervise(hardCtx)
	}()

	addrs := make([]net.Addr, len(lns))
	var acceptWG sync.WaitGroup
	for i, ln := range lns {
		addrs[i] = ln.Addr()
		acceptWG.Add(1)
		go func(r LocalRoute, ln net.Listener) {
			defer acceptWG.Done()
			cs.acceptLoop(hardCtx, r, ln)
		}(c.Routes[i], ln)
		cs.log.Info("tunnelling", "listen", ln.Addr().String(), "server", c.Server, "route", displayRoute(c.Routes[i].Route))
	}
	if c.Ready != nil {
		c.Ready(addrs)
	}

	<-ctx.Done()
	for _, ln := range lns {
		ln.Close()
	}
	acceptWG.Wait()
	drained := make(chan struct{})
	go func() { cs.wg.Wait(); close(drained) }()
	timer := time.NewTimer(orDefault(c.DrainTimeout, proxy.DefaultDrainTimeout))
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
		cs.log.Warn("drain timeout reached, resetting connections", "active_connections", cs.activeCount())
		cs.abortAll()
	}
	hardCancel()
	<-superDone // no session is dialed after this
	// Closing the sessions also ends a connection that got its stream just
	// as abortAll ran.
	cs.closeSessions()
	<-drained
	return nil
}

// displayRoute names the default route readably in logs.
func displayRoute(name string) string {
	if name == "" {
		return "(default)"
	}
	return name
}

// clientState is one Serve call's state.
type clientState struct {
	c       *Client
	log     *slog.Logger
	tr      *quic.Transport
	tlsConf *tls.Config
	qconf   *quic.Config
	tracer  oteltrace.Tracer
	sem     chan struct{}
	wg      sync.WaitGroup // connection handlers

	mu       sync.Mutex
	cur      *session      // the session new streams go to, nil while down
	lastErr  error         // why the tunnel is down
	changed  chan struct{} // closed and replaced whenever cur changes
	sessions map[*session]struct{}
	active   map[*pump]struct{}

	runs *runs.Tracker // each local connection's place in its CLI run
}
