package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/ccproxy-dev/ccproxy/internal/admin"
	"github.com/ccproxy-dev/ccproxy/internal/live"
	"github.com/ccproxy-dev/ccproxy/internal/tunnel"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
)

func newTunnelServeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve --upstream HOST:PORT --cert FILE --key FILE --peer-fingerprint HEX",
		Short: "Accept tunnels from pinned local ccproxies and relay their connections (in the cluster)",
		Long: `Accept QUIC tunnel connections on --quic-listen (UDP) from clients whose
certificate fingerprint is pinned with --peer-fingerprint, and relay every
tunnelled connection to a configured upstream with relay mode's inspection and
tracing. A client picks a route by name only; it can never name an address.
The route from --upstream is called "default" and is the one a client gets
when it names none.`,
		Example: `  ccproxy tunnel serve --quic-listen :4433 --upstream coordinator:1313 \
      --route mesh=coordinator:7777 --route http=coordinator:1314 \
      --cert /keys/tunnel.crt --key /keys/tunnel.key \
      --peer-fingerprint 3f1c...9a --otlp-endpoint otel-collector:4317 --admin-listen :9090`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          runTunnelServe,
	}
	f := cmd.Flags()
	f.String("quic-listen", ":4433", "UDP address to accept tunnel connections on")
	f.String("upstream", "", "upstream of the default route (named \"default\"), host:port")
	f.StringArray("route", nil, "NAME=HOST:PORT: a further route a client may pick by name (repeatable)")
	f.Int("max-streams", tunnel.DefaultMaxStreams, "concurrent connections per tunnel client")
	addRelayFlags(f)
	addTunnelCommonFlags(f, "client")
	return cmd
}

// tunnelServeConfig is the validated configuration of `tunnel serve`.
type tunnelServeConfig struct {
	listen     string
	routes     []tunnel.Route
	maxStreams int
	common     *tunnelCommon
	// relay carries the settings shared with relay mode (timeouts,
	// evidence, probing, admin) for the helpers written for it.
	relay *relayConfig
}

func parseTunnelServeConfig(s *settings) (*tunnelServeConfig, error) {
	c := &tunnelServeConfig{listen: s.String("quic-listen"), relay: &relayConfig{}}
	if _, _, err := net.SplitHostPort(c.listen); err != nil {
		return nil, usageErrorf("%s: %q is not host:port or :port", where("quic-listen"), c.listen)
	}
	var err error
	if c.common, err = parseTunnelCommon(s); err != nil {
		return nil, err
	}
	r := c.relay
	r.drainTimeout, r.maxConns = c.common.drainTimeout, c.common.maxConns
	r.trace = c.common.trace
	plain, err := r.parseRelayFlags(s)
	if err != nil {
		return nil, err
	}
	if c.maxStreams, err = s.Int("max-streams"); err != nil {
		return nil, err
	}
	if c.maxStreams == 0 {
		return nil, usageErrorf("%s: must be at least 1", where("max-streams"))
	}

	add := func(name, upstream, flag string) error {
		if err := tunnel.ValidRouteName(name); err != nil {
			return usageErrorf("%s: %v", flag, err)
		}
		host, port, err := net.SplitHostPort(upstream)
		if err != nil || host == "" {
			return usageErrorf("%s: upstream %q is not host:port", flag, upstream)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return usageErrorf("%s: upstream %q has no valid port", flag, upstream)
		}
		for _, r := range c.routes {
			if r.Name == name {
				return usageErrorf("%s: route %q is configured twice", flag, name)
			}
		}
		c.routes = append(c.routes, tunnel.Route{Name: name, Upstream: upstream, Inspect: !plain[port]})
		r.routes = append(r.routes, proxy.Route{Listen: c.listen, Upstream: upstream, Inspect: !plain[port]})
		return nil
	}
	if up := s.String("upstream"); up != "" {
		if err := add("default", up, where("upstream")); err != nil {
			return nil, err
		}
	}
	for _, rt := range s.StringList("route") {
		name, up, ok := strings.Cut(rt, "=")
		if !ok {
			return nil, usageErrorf("%s: %q is not NAME=HOST:PORT (e.g. mesh=coordinator:7777)", where("route"), rt)
		}
		if err := add(name, up, where("route")); err != nil {
			return nil, err
		}
	}
	if len(c.routes) == 0 {
		return nil, usageErrorf("nothing to relay: set --upstream HOST:PORT or --route NAME=HOST:PORT")
	}
	return c, nil
}

func runTunnelServe(cmd *cobra.Command, _ []string) error {
	s, log, err := setup(cmd)
	if err != nil {
		return err
	}
	cfg, err := parseTunnelServeConfig(s)
	if err != nil {
		return err
	}
	return serveTunnel(cmd.Context(), cfg, log)
}

func serveTunnel(ctx context.Context, cfg *tunnelServeConfig, log *slog.Logger) error {
	cert, err := cfg.common.loadCert(log)
	if err != nil {
		return err
	}
	tp, flush, err := cfg.common.trace.setup(ctx, log, cfg.common.ui.processors()...)
	if err != nil {
		return err
	}
	defer flush()
	rc := cfg.relay
	ev, err := rc.evidence.load()
	if err != nil {
		return err
	}
	// The tunnel end has no local listener per route: its series are by
	// upstream only.
	upstreams := make([]proxy.Route, len(cfg.routes))
	for i, r := range cfg.routes {
		upstreams[i] = proxy.Route{Upstream: r.Upstream}
	}
	metrics, err := newMetrics(tp, upstreams)
	if err != nil {
		return err
	}
	defer metrics.Shutdown(context.Background())
	// One run tracker for every stream (a CLI's retries come as streams of
	// one tunnel peer). Streams carry the local end's trace context, so
	// their spans are never folded: its trace holds them.
	tracker, stopRuns := rc.fold.startRuns(tp, log, metrics)
	defer stopRuns()

	var serving atomic.Bool
	srv := &tunnel.Server{
		Listen: cfg.listen,
		Routes: cfg.routes,
		Cert:   cert,
		Peers:  cfg.common.peers,
		Relay: tunnel.WatchRelayer(
			&proxy.Proxy{DialTimeout: rc.dialTimeout, IdleTimeout: rc.idleTimeout, ClientHelloTimeout: rc.helloTimeout, Logger: log,
				OnExhausted: func(_ proxy.Route, op string, _ error) { metrics.ResourceExhausted(op) }},
			watch.Config{
				Runs:           tracker,
				Tracer:         tp.Tracer(),
				IssuerDeadline: rc.issuerDeadline,
				CheckCert:      ev.certChecker(),
				Refine:         countProbes(ev.refiner(rc), metrics),
				Metrics:        metrics,
				Logger:         log,
			}),
		MaxConns:     rc.maxConns,
		MaxStreams:   cfg.maxStreams,
		IdleTimeout:  cfg.common.idleTimeout,
		KeepAlive:    cfg.common.keepAlive,
		DrainTimeout: rc.drainTimeout,
		Logger:       log,
		Ready:        func(net.Addr) { serving.Store(true) },
	}
	pc, err := srv.Bind(ctx)
	if err != nil {
		return usageErrorf("%s: %v", where("quic-listen"), err)
	}
	if rc.adminListen != "" {
		ln, err := net.Listen("tcp", rc.adminListen)
		if err != nil {
			pc.Close()
			return usageErrorf("%s: %v", where("admin-listen"), err)
		}
		resolve := upstreamsResolve(rc.routes)
		ready := func(ctx context.Context) error {
			if !serving.Load() {
				return errors.New("the tunnel listener is not serving yet")
			}
			return resolve(ctx)
		}
		a := admin.New(rc.adminListen, metrics, ready)
		go func() {
			if err := a.ServeListener(ctx, ln); err != nil {
				log.Error("admin endpoint stopped", "err", err)
			}
		}()
		log.Info("admin endpoint", "listen", ln.Addr().String(), "paths", "/healthz /readyz /metrics")
	}
	err = cfg.common.ui.start(ctx, log, live.Config{Mode: "tunnel serve", Routes: uiRoutes(rc.routes), Metrics: metrics.Handler(), Runs: tracker.Snapshot})
	if err != nil {
		pc.Close()
		return err
	}
	return srv.Serve(ctx, pc)
}
