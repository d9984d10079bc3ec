package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ccproxy-dev/ccproxy/internal/admin"
	"github.com/ccproxy-dev/ccproxy/internal/live"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
	"github.com/ccproxy-dev/ccproxy/trace"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "ccproxy --listen :1313 --upstream coordinator:1313",
		Short: "Relay Contrast's attested-TLS port and name what went wrong with every connection",
		Long: `ccproxy forwards every TCP connection to a Contrast Coordinator byte for byte,
watches the attested-TLS handshake as it passes, checks the evidence, and
writes one OpenTelemetry trace per connection naming its failure mode
(ok, lb_closed_early, issuer_timeout, issuer_error, policy_hash_mismatch, ...).
It never terminates or weakens the end-to-end attestation.

It replaces Contrast's socat port-forwarder pod, and runs locally in front of
a load balancer. Every flag is also a key of the YAML config file and a
CCPROXY_* environment variable (--idle-timeout: idle-timeout, CCPROXY_IDLE_TIMEOUT).`,
		Example: `  # relay the user API, traces to a file
  ccproxy --listen :1313 --upstream coordinator:1313 --trace-file traces.jsonl

  # replace the socat pod: every Coordinator port, OTLP to a collector
  ccproxy --forward :1313=coordinator:1313 --forward :1314=coordinator:1314 \
          --forward :7777=coordinator:7777 --forward :8200=coordinator:8200 \
          --otlp-endpoint otel-collector:4317 --admin-listen :9090

  # then, in another terminal
  contrast set -c localhost:1313 deployment/`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          runRelay,
	}
	f := root.Flags()
	f.String("config", "", "YAML config file (default: ./ccproxy.yaml, then /etc/ccproxy/ccproxy.yaml)")
	f.String("listen", ":1313", "address to accept connections on")
	f.String("upstream", "", "the Coordinator (or load balancer) as host:port, resolved per connection")
	f.StringArray("forward", nil, "LISTEN=UPSTREAM pair to relay, repeatable (e.g. :7777=coordinator:7777)")
	f.Duration("drain-timeout", proxy.DefaultDrainTimeout, "on SIGTERM/SIGINT, how long in-flight connections may finish")
	f.Int("max-connections", proxy.DefaultMaxConns, "concurrent connections; beyond it new ones are closed at once")
	addRelayFlags(f)
	addTraceFlags(f)
	addUIFlag(f)
	addLogFlags(root.PersistentFlags())

	// Subcommands, one file each (cmd/ccproxy/<name>.go).
	root.AddCommand(
		newVersionCmd(),
		newDemoCmd(),
		newAttestCmd(),
		newExplainCmd(),
		newAnalyzeCmd(),
		newProbeCmd(),
		newTunnelCmd(),
	)
	return root
}

// relayConfig is the validated configuration of relay mode.
type relayConfig struct {
	routes         []proxy.Route
	dialTimeout    time.Duration
	idleTimeout    time.Duration
	helloTimeout   time.Duration
	drainTimeout   time.Duration
	maxConns       int
	issuerDeadline time.Duration
	adminListen    string
	trace          traceConfig
	fold           foldConfig
	ui             *uiPage // nil: no live page
	evidence       evidenceConfig
	probe          bool
	probeCache     time.Duration
}

func parseRelayConfig(s *settings, getenv func(string) string) (*relayConfig, error) {
	c := &relayConfig{}
	var err error
	plain, err := c.parseRelayFlags(s)
	if err != nil {
		return nil, err
	}
	if c.drainTimeout, err = s.Duration("drain-timeout"); err != nil {
		return nil, err
	}
	if c.maxConns, err = s.Int("max-connections"); err != nil {
		return nil, err
	}
	if c.maxConns == 0 {
		return nil, usageErrorf("%s: must be at least 1", where("max-connections"))
	}
	if c.trace, err = parseTraceConfig(s); err != nil {
		return nil, err
	}
	if c.ui, err = parseUI(s); err != nil {
		return nil, err
	}
	if c.routes, err = parseRoutes(s, getenv, plain); err != nil {
		return nil, err
	}
	return c, nil
}

// addRelayFlags defines what relay mode and `tunnel serve` share: how each
// relayed connection is dialed, timed out, inspected, checked and probed.
func addRelayFlags(f *pflag.FlagSet) {
	f.String("plain-ports", "1314,8200", "upstream ports relayed and traced without TLS inspection (comma separated)")
	f.Duration("dial-timeout", proxy.DefaultDialTimeout, "upstream TCP connect timeout")
	f.Duration("idle-timeout", proxy.DefaultIdleTimeout, "close a connection silent in both directions this long (0 disables)")
	f.Duration("client-hello-timeout", proxy.DefaultClientHelloTimeout, "reset a client that has not sent its whole ClientHello this long after the upstream connected (client_aborted; 0 disables)")
	f.Duration("issuer-deadline", watch.DefaultIssuerDeadline, "silence after the ClientHello beyond which a connection is issuer_timeout")
	f.String("admin-listen", "", "serve /healthz, /readyz and /metrics on this address (off when empty)")
	addEvidenceFlags(f)
	f.Duration("probe-cache", 30*time.Second, "reuse an upstream's probe result this long (a storm of failing clients makes one probe)")
	f.Bool("probe", true, "probe the upstream to refine client_rejected_certificate and internal_error verdicts")
	addFoldFlags(f)
}

// parseRelayFlags reads the flags addRelayFlags defines into c and returns
// the set of plain (not inspected) upstream ports.
func (c *relayConfig) parseRelayFlags(s *settings) (plain map[string]bool, err error) {
	if c.dialTimeout, err = s.Duration("dial-timeout"); err != nil {
		return nil, err
	}
	if c.idleTimeout, err = s.Duration("idle-timeout"); err != nil {
		return nil, err
	}
	if c.idleTimeout == 0 {
		c.idleTimeout = -1 // 0 disables
	}
	if c.helloTimeout, err = s.Duration("client-hello-timeout"); err != nil {
		return nil, err
	}
	if c.helloTimeout == 0 {
		c.helloTimeout = -1 // 0 disables
	}
	if c.issuerDeadline, err = s.Duration("issuer-deadline"); err != nil {
		return nil, err
	}
	if c.probeCache, err = s.Duration("probe-cache"); err != nil {
		return nil, err
	}
	if c.probe, err = s.Bool("probe"); err != nil {
		return nil, err
	}
	c.adminListen = s.String("admin-listen")
	if c.adminListen != "" {
		if _, _, err := net.SplitHostPort(c.adminListen); err != nil {
			return nil, usageErrorf("%s: %q is not host:port or :port", where("admin-listen"), c.adminListen)
		}
	}
	if c.evidence, err = parseEvidenceConfig(s); err != nil {
		return nil, err
	}
	if c.fold, err = parseFoldConfig(s); err != nil {
		return nil, err
	}
	plain = map[string]bool{}
	for _, p := range s.StringList("plain-ports") {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return nil, usageErrorf("%s: %q is not a port number", where("plain-ports"), p)
		}
		plain[p] = true
	}
	return plain, nil
}

// parseRoutes builds the listen→upstream pairs from --forward, from
// --listen/--upstream, or, as the socat port-forwarder pod is configured,
// from FORWARD_HOST with LISTEN_PORTS (or the older LISTEN_PORT and
// FORWARD_PORT).
func parseRoutes(s *settings, getenv func(string) string, plain map[string]bool) ([]proxy.Route, error) {
	var routes []proxy.Route
	add := func(listen, upstream, flag string) error {
		if _, _, err := net.SplitHostPort(listen); err != nil {
			return usageErrorf("%s: listen address %q is not host:port or :port", flag, listen)
		}
		host, port, err := net.SplitHostPort(upstream)
		if err != nil || host == "" || port == "" {
			return usageErrorf("%s: upstream %q is not host:port", flag, upstream)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return usageErrorf("%s: upstream %q has no valid port", flag, upstream)
		}
		for _, r := range routes {
			if r.Listen == listen {
				return usageErrorf("%s: listen address %q is used twice", flag, listen)
			}
		}
		routes = append(routes, proxy.Route{Listen: listen, Upstream: upstream, Inspect: !plain[port]})
		return nil
	}
	for _, fw := range s.StringList("forward") {
		listen, upstream, ok := strings.Cut(fw, "=")
		if !ok {
			return nil, usageErrorf("%s: %q is not LISTEN=UPSTREAM (e.g. :1313=coordinator:1313)", where("forward"), fw)
		}
		if !strings.Contains(listen, ":") {
			listen = ":" + listen // "1313=coordinator:1313"
		}
		if err := add(listen, upstream, where("forward")); err != nil {
			return nil, err
		}
	}
	if up := s.String("upstream"); up != "" {
		if err := add(s.String("listen"), up, where("upstream")); err != nil {
			return nil, err
		}
	}
	if len(routes) == 0 {
		if host := getenv("FORWARD_HOST"); host != "" {
			ports := strings.FieldsFunc(getenv("LISTEN_PORTS"), func(r rune) bool { return r == ',' || r == ' ' })
			if len(ports) == 0 && getenv("LISTEN_PORT") != "" {
				lp, fp := getenv("LISTEN_PORT"), getenv("FORWARD_PORT")
				if fp == "" {
					fp = lp
				}
				if err := add(":"+lp, net.JoinHostPort(host, fp), "LISTEN_PORT/FORWARD_PORT"); err != nil {
					return nil, err
				}
			}
			for _, p := range ports {
				if err := add(":"+p, net.JoinHostPort(host, p), "LISTEN_PORTS"); err != nil {
					return nil, err
				}
			}
		}
	}
	if len(routes) == 0 {
		return nil, usageErrorf("nothing to relay: set --upstream HOST:PORT (with --listen), or --forward LISTEN=UPSTREAM, or FORWARD_HOST with LISTEN_PORTS")
	}
	return routes, nil
}

func runRelay(cmd *cobra.Command, _ []string) error {
	s, log, err := setup(cmd)
	if err != nil {
		return err
	}
	cfg, err := parseRelayConfig(s, os.Getenv)
	if err != nil {
		return err
	}
	return serveRelay(cmd.Context(), cfg, log, nil)
}

// serveRelay runs relay mode until ctx ends. ready, if set, gets the bound
// listener addresses (the demo and tests use it).
func serveRelay(ctx context.Context, cfg *relayConfig, log *slog.Logger, ready func([]net.Addr)) error {
	tp, flush, err := cfg.trace.setup(ctx, log, cfg.ui.processors()...)
	if err != nil {
		return err
	}
	defer flush()
	ev, err := cfg.evidence.load()
	if err != nil {
		return err
	}
	metrics, err := newMetrics(tp, cfg.routes)
	if err != nil {
		return err
	}
	defer metrics.Shutdown(context.Background())
	tracker, stopRuns := cfg.fold.startRuns(tp, log, metrics)
	defer stopRuns() // after the drain, before the spans are flushed
	w := watch.New(watch.Config{
		Runs:           tracker,
		Tracer:         tp.Tracer(),
		IssuerDeadline: cfg.issuerDeadline,
		CheckCert:      ev.certChecker(),
		Refine:         countProbes(ev.refiner(cfg), metrics),
		Metrics:        metrics,
		Logger:         log,
	})
	p := &proxy.Proxy{
		Routes:       cfg.routes,
		DialTimeout:  cfg.dialTimeout,
		IdleTimeout:  cfg.idleTimeout,
		DrainTimeout: cfg.drainTimeout,
		MaxConns:     cfg.maxConns,
		Logger:       log,
		NewObserver:  w.Observe,
		OnRefused:    func(r proxy.Route) { metrics.ConnRefused(r.Listen) },
		OnExhausted:  func(_ proxy.Route, op string, _ error) { metrics.ResourceExhausted(op) },
		Ready:        ready,
	}
	p.ClientHelloTimeout = cfg.helloTimeout
	p.Ready = settleFootprint(log, ready)
	lns, err := p.Listen(ctx)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if cfg.adminListen != "" {
		ln, err := net.Listen("tcp", cfg.adminListen)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return usageErrorf("%s: %v", where("admin-listen"), err)
		}
		srv := admin.New(cfg.adminListen, metrics, upstreamsResolve(cfg.routes))
		go func() {
			if err := srv.ServeListener(ctx, ln); err != nil {
				log.Error("admin endpoint stopped", "err", err)
			}
		}()
		log.Info("admin endpoint", "listen", ln.Addr().String(), "paths", "/healthz /readyz /metrics")
	}
	err = cfg.ui.start(ctx, log, live.Config{Mode: "relay", Routes: uiRoutes(cfg.routes), Metrics: metrics.Handler(), Runs: tracker.Snapshot})
	if err != nil {
		for _, l := range lns {
			l.Close()
		}
		return err
	}
	return p.Serve(ctx, lns)
}

// newMetrics makes the admin metrics of a relay (relay mode or tunnel
// serve): dropped spans are counted, and every route's series is on
// /metrics at zero before the first connection, so deploy/monitoring's
// alerts and panels read 0, not "no data", while nothing has gone wrong.
func newMetrics(tp *trace.Provider, routes []proxy.Route) (*admin.Metrics, error) {
	m, err := admin.NewMetrics(nil)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	tp.OnDrop(m.SpansDropped)
	for _, r := range routes {
		m.InitRoute(r.Listen, r.Upstream)
	}
	return m, nil
}

// countProbes counts every connection a probe refined
// (ccproxy_probes_total); a nil refiner (probing off) stays nil.
func countProbes(r watch.Refiner, m *admin.Metrics) watch.Refiner {
	if r == nil {
		return nil
	}
	return func(ctx context.Context, upstream string, wire inspect.Verdict, hello *inspect.ClientHello) (watch.Refinement, bool) {
		ref, ok := r(ctx, upstream, wire, hello)
		if ok {
			m.ProbeResult(upstream, ref.Mode)
		}
		return ref, ok
	}
}

// upstreamsResolve is the readiness check: every upstream's name resolves
// (an IP literal always does). A relay whose Service name is gone is not
// ready, which is what an operator wants the pod status to say.
func upstreamsResolve(routes []proxy.Route) func(context.Context) error {
	return func(ctx context.Context) error {
		for _, r := range routes {
			host, _, _ := net.SplitHostPort(r.Upstream)
			if net.ParseIP(host) != nil {
				continue
			}
			if _, err := net.DefaultResolver.LookupHost(ctx, host); err != nil {
				return fmt.Errorf("upstream %s: %w", r.Upstream, err)
			}
		}
		return nil
	}
}

func addLogFlags(f interface {
	String(name, value, usage string) *string
}) {
	f.String("log-format", "text", "log format: text or json")
	f.String("log-level", "info", "log level: debug, info, warn or error")
}

func newLogger(s *settings, w interface{ Write([]byte) (int, error) }) (*slog.Logger, error) {
	format, err := s.Enum("log-format", "text", "json")
	if err != nil {
		return nil, err
	}
	levelName, err := s.Enum("log-level", "debug", "info", "warn", "error")
	if err != nil {
		return nil, err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(levelName))
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
