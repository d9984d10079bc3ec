package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Defaults for the zero values of Server's tunables.
const (
	defaultReadyTimeout    = 2 * time.Second
	defaultShutdownTimeout = 5 * time.Second
	// The admin port is scraped and probed, never sent large requests; a
	// client that dribbles its headers must not hold a goroutine.
	readHeaderTimeout = 5 * time.Second
)

// Server is the admin HTTP endpoint: /healthz, /readyz and /metrics.
type Server struct {
	// ReadyTimeout bounds one readiness check (default 2 s). Keep it below
	// the readiness probe's timeoutSeconds so the kubelet sees the 503 and
	// its reason instead of a timeout.
	ReadyTimeout time.Duration
	// ShutdownTimeout bounds how long Serve waits for in-flight requests
	// after its context ends (default 5 s).
	ShutdownTimeout time.Duration

	addr  string
	m     *Metrics
	ready func(ctx context.Context) error
}

// New returns a Server for addr (host:port, e.g. ":9090"). m may be nil
// (then /metrics answers 404). ready decides /readyz: nil error means ready;
// a nil ready function means always ready.
func New(addr string, m *Metrics, ready func(ctx context.Context) error) *Server {
	return &Server{addr: addr, m: m, ready: ready}
}

// Handler returns the admin routes, for tests and for embedding in another
// server.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if h := s.m.Handler(); h != nil {
		mux.Handle("GET /metrics", h)
	} else {
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
			plain(w, http.StatusNotFound, "metrics are not served by this endpoint\n")
		})
	}
	return mux
}

// Serve listens on the Server's address and serves until ctx ends, then
// shuts down gracefully. It returns nil after a shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("admin: listening on %s: %w", s.addr, err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener is Serve on a listener the caller opened (e.g. on port 0 in
// tests). It closes ln.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		// Serve never returns nil; anything here is a listener failure.
		return fmt.Errorf("admin: serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	// ctx is already done: shut down on a fresh deadline so in-flight
	// scrapes and probes get their answer.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownTimeout())
	defer cancel()
	shutErr := srv.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: serving on %s: %w", ln.Addr(), err)
	}
	if shutErr != nil {
		return fmt.Errorf("admin: shutting down %s: %w", ln.Addr(), shutErr)
	}
	return nil
}

func (s *Server) readyTimeout() time.Duration {
	if s.ReadyTimeout > 0 {
		return s.ReadyTimeout
	}
	return defaultReadyTimeout
}

func (s *Server) shutdownTimeout() time.Duration {
	if s.ShutdownTimeout > 0 {
		return s.ShutdownTimeout
	}
	return defaultShutdownTimeout
}

// healthz answers 200 while the process can serve HTTP at all: liveness
// must not depend on the upstream, or a Coordinator outage would make the
// kubelet restart every relay in a loop.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	plain(w, http.StatusOK, "ok\n")
}

// readyz answers 200 when the ready check passes and 503 with its error
// otherwise, so `kubectl describe pod` shows why the relay is not ready.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.ready == nil {
		plain(w, http.StatusOK, "ok\n")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.readyTimeout())
	defer cancel()
	if err := s.ready(ctx); err != nil {
		plain(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
		return
	}
	plain(w, http.StatusOK, "ok\n")
}

func plain(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}
