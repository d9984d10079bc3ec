package main

import (
	"cmp"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ccproxy-dev/ccproxy/internal/live"
	"github.com/ccproxy-dev/ccproxy/internal/runs"
	"github.com/ccproxy-dev/ccproxy/internal/tunnel"
	"github.com/ccproxy-dev/ccproxy/proxy"
)

func newTunnelConnectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "connect --server HOST:PORT --cert FILE --key FILE --peer-fingerprint HEX",
		Short: "Carry local connections through a tunnel to an in-cluster ccproxy (on the laptop)",
		Long: `Accept TCP connections on --listen and carry each one as a QUIC stream to the
in-cluster "ccproxy tunnel serve" at --server, which relays it to the route
named by --route (its default route when empty). The tunnel stays up with
keep-alives and reconnects with backoff; a connection made while it is down
waits up to --dial-timeout for it. Each connection's failure mode, as the
in-cluster relay named it, is logged here and put on this side's span.

--listen defaults to the loopback address: anyone who can reach the local
port reaches the Coordinator through the tunnel.`,
		Example: `  ccproxy tunnel connect --server tunnel.example.com:4433 \
      --cert tunnel-keys/tunnel.crt --key tunnel-keys/tunnel.key \
      --peer-fingerprint 8d2e...41 --trace-file local.jsonl
  contrast set -c localhost:1313 deployment/

  # several ports, by the server's route names
  ccproxy tunnel connect --server tunnel.example.com:4433 ... \
      --forward 127.0.0.1:1313=default --forward 127.0.0.1:7777=mesh`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          runTunnelConnect,
	}
	f := cmd.Flags()
	f.String("server", "", "the in-cluster \"ccproxy tunnel serve\" as `HOST:PORT` (UDP)")
	f.String("listen", "127.0.0.1:1313", "local TCP address to accept connections on")
	f.String("route", "", "the server's route to carry --listen to (empty: its default route)")
	f.StringArray("forward", nil, "LISTEN=ROUTE: carry another local address to a route of the server (repeatable)")
	f.Duration("dial-timeout", proxy.DefaultDialTimeout, "how long a new connection waits for the tunnel (and each connect attempt may take)")
	f.Duration("reconnect-max", tunnel.DefaultMaxBackoff, "longest wait between reconnect attempts (the backoff starts at 100ms)")
	f.Duration("verdict-timeout", tunnel.DefaultVerdictTimeout, "how long after a connection ends its verdict from the server may take")
	addTunnelCommonFlags(f, "server")
	return cmd
}

// tunnelConnectConfig is the validated configuration of `tunnel connect`.
type tunnelConnectConfig struct {
	server         string
	routes         []tunnel.LocalRoute
	dialTimeout    time.Duration
	reconnectMax   time.Duration
	verdictTimeout time.Duration
	common         *tunnelCommon
}

func parseTunnelConnectConfig(s *settings) (*tunnelConnectConfig, error) {
	c := &tunnelConnectConfig{server: s.String("server")}
	if c.server == "" {
		return nil, usageErrorf("%s is required: the in-cluster `ccproxy tunnel serve`, host:port", where("server"))
	}
	if host, port, err := net.SplitHostPort(c.server); err != nil || host == "" || port == "" {
		return nil, usageErrorf("%s: %q is not host:port", where("server"), c.server)
	}
	var err error
	if c.common, err = parseTunnelCommon(s); err != nil {
		return nil, err
	}
	if c.dialTimeout, err = s.Duration("dial-timeout"); err != nil {
		return nil, err
	}
	if c.reconnectMax, err = s.Duration("reconnect-max"); err != nil {
		return nil, err
	}
	if c.verdictTimeout, err = s.Duration("verdict-timeout"); err != nil {
		return nil, err
	}
	add := func(listen, route, listenFlag, routeFlag string) error {
		if _, _, err := net.SplitHostPort(listen); err != nil {
			return usageErrorf("%s: listen address %q is not host:port or :port", listenFlag, listen)
		}
		if route != "" {
			if err := tunnel.ValidRouteName(route); err != nil {
				return usageErrorf("%s: %v (name one of the server's routes, never an address)", routeFlag, err)
			}
		}
		for _, r := range c.routes {
			if r.Listen == listen {
				return usageErrorf("%s: listen address %q is used twice", listenFlag, listen)
			}
		}
		c.routes = append(c.routes, tunnel.LocalRoute{Listen: listen, Route: route})
		return nil
	}
	for _, fw := range s.StringList("forward") {
		listen, route, ok := strings.Cut(fw, "=")
		if !ok {
			return nil, usageErrorf("%s: %q is not LISTEN=ROUTE (e.g. 127.0.0.1:7777=mesh)", where("forward"), fw)
		}
		if !strings.Contains(listen, ":") {
			listen = "127.0.0.1:" + listen // "7777=mesh"
		}
		if err := add(listen, route, where("forward"), where("forward")); err != nil {
			return nil, err
		}
	}
	// --listen/--route is a route too, unless only --forward was set.
	if len(c.routes) == 0 || s.v.IsSet("listen") || s.v.IsSet("route") {
		if err := add(s.String("listen"), s.String("route"), where("listen"), where("route")); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func runTunnelConnect(cmd *cobra.Command, _ []string) error {
	s, log, err := setup(cmd)
	if err != nil {
		return err
	}
	cfg, err := parseTunnelConnectConfig(s)
	if err != nil {
		return err
	}
	cert, err := cfg.common.loadCert(log)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	tp, flush, err := cfg.common.trace.setup(ctx, log, cfg.common.ui.processors()...)
	if err != nil {
		return err
	}
	defer flush()
	// This end's CLI runs: never folded (the in-cluster end's spans are
	// children of this end's), summarized, and shown live on the page. It
	// sees no handshake, so it never waits for one (Settle off).
	tracker, stopRuns := startTracker(runs.Config{Settle: -1}, tp, log)
	defer stopRuns()
	cl := &tunnel.Client{
		Runs:           tracker,
		Server:         cfg.server,
		Routes:         cfg.routes,
		Cert:           cert,
		Peers:          cfg.common.peers,
		Tracer:         tp.Tracer(),
		DialTimeout:    cfg.dialTimeout,
		IdleTimeout:    cfg.common.idleTimeout,
		KeepAlive:      cfg.common.keepAlive,
		MaxBackoff:     cfg.reconnectMax,
		VerdictTimeout: cfg.verdictTimeout,
		DrainTimeout:   cfg.common.drainTimeout,
		MaxConns:       cfg.common.maxConns,
		Logger:         log,
	}
	lns, err := cl.Listen(ctx)
	if err != nil {
		return usageErrorf("%v", err)
	}
	// No metrics here: the page counts open connections and modes from
	// this end's spans; its runs in progress come from the tracker.
	uiRoutes := make([]live.Route, len(cfg.routes))
	for i, r := range cfg.routes {
		uiRoutes[i] = live.Route{Listen: r.Listen, Upstream: "route " + cmp.Or(r.Route, "default")}
	}
	if err := cfg.common.ui.start(ctx, log, live.Config{Mode: "tunnel connect", Routes: uiRoutes, Runs: tracker.Snapshot}); err != nil {
		for _, l := range lns {
			l.Close()
		}
		return err
	}
	return cl.Serve(ctx, lns)
}
