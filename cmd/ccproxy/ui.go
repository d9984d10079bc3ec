package main

import (
	"context"
	"log/slog"
	"net"

	"github.com/spf13/pflag"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/ccproxy-dev/ccproxy/internal/live"
	"github.com/ccproxy-dev/ccproxy/proxy"
)

const uiListenHelp = "serve the live page on this `ADDR` (off when empty): connections open now, the CLI runs with " +
	"their attempts, steps, what the CLI printed and what to do, counts per failure mode over the last minutes, " +
	"and a recent connection's waterfall; the same data as JSON at /api/v1/state. It shows client addresses and " +
	"handshake details to whoever reaches it, without authentication: keep it on loopback (127.0.0.1:PORT, " +
	"reached with kubectl port-forward); binding it beyond loopback is your explicit choice"

// addUIFlag defines --ui-listen (relay mode, tunnel serve, tunnel connect).
func addUIFlag(f *pflag.FlagSet) {
	f.String("ui-listen", "", uiListenHelp)
}

// uiPage is a command's live page; nil when --ui-listen is not set, so the
// page costs nothing then: no span processor, no ring, no listener.
type uiPage struct {
	listen string
	rec    *live.Recorder
}

func parseUI(s *settings) (*uiPage, error) {
	addr := s.String("ui-listen")
	if addr == "" {
		return nil, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, usageErrorf("%s: %q is not host:port or :port", where("ui-listen"), addr)
	}
	return &uiPage{listen: addr, rec: live.NewRecorder(live.Limits{})}, nil
}

// processors are the span processors the page needs on the tracer
// provider: with them, spans are recorded even when none is exported.
func (u *uiPage) processors() []sdktrace.SpanProcessor {
	if u == nil {
		return nil
	}
	return []sdktrace.SpanProcessor{u.rec}
}

// start binds the page's address (a failure is a usage error naming the
// flag) and serves the page until ctx ends.
func (u *uiPage) start(ctx context.Context, log *slog.Logger, cfg live.Config) error {
	if u == nil {
		return nil
	}
	cfg.Recorder, cfg.Logger = u.rec, log
	srv, err := live.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", u.listen)
	if err != nil {
		return usageErrorf("%s: %v", where("ui-listen"), err)
	}
	go func() {
		if err := srv.Serve(ctx, ln); err != nil {
			log.Error("live page stopped", "err", err)
		}
	}()
	log.Info("live page", "url", "http://"+ln.Addr().String()+"/", "json", "/api/v1/state")
	if ap, err := listenIP(ln.Addr()); err == nil && !ap.IsLoopback() {
		log.Warn("the live page listens beyond loopback: whoever reaches it sees client addresses and handshake details", "listen", ln.Addr().String())
	}
	return nil
}

func listenIP(a net.Addr) (net.IP, error) {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return nil, err
	}
	return net.ParseIP(host), nil
}

// uiRoutes are relay routes as the page lists them.
func uiRoutes(routes []proxy.Route) []live.Route {
	out := make([]live.Route, len(routes))
	for i, r := range routes {
		out[i] = live.Route{Listen: r.Listen, Upstream: r.Upstream}
	}
	return out
}
