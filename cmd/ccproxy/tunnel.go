package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ccproxy-dev/ccproxy/internal/admin"
	"github.com/ccproxy-dev/ccproxy/internal/tunnel"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/trace"
)

func newTunnelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tunnel",
		Short: "Carry relayed connections between a local ccproxy and an in-cluster one over QUIC",
		Long: `A local ccproxy (tunnel connect) carries each local TCP connection as one
QUIC stream to an in-cluster ccproxy (tunnel serve), which relays it to the
Coordinator with the same inspection as relay mode. The failure mode comes back
to the local side, which logs it and puts it on its own span; both sides' spans
share one trace id.

The two sides authenticate each other with mutual TLS and pinned certificate
fingerprints: make a key pair on each side with "tunnel keygen" and give each
side the other's fingerprint with --peer-fingerprint.`,
		Example: `  # once, on each side
  ccproxy tunnel keygen --out ./tunnel-keys

  # in the cluster (UDP 4433 reachable from the laptop)
  ccproxy tunnel serve --quic-listen :4433 --upstream coordinator:1313 \
      --cert tunnel-keys/tunnel.crt --key tunnel-keys/tunnel.key \
      --peer-fingerprint <laptop fingerprint> --trace-file remote.jsonl

  # on the laptop
  ccproxy tunnel connect --listen 127.0.0.1:1313 --server tunnel.example.com:4433 \
      --cert tunnel-keys/tunnel.crt --key tunnel-keys/tunnel.key \
      --peer-fingerprint <cluster fingerprint> --trace-file local.jsonl
  contrast set -c localhost:1313 deployment/`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.AddCommand(newTunnelServeCmd(), newTunnelConnectCmd(), newTunnelKeygenCmd(), newTunnelFingerprintCmd())
	return cmd
}

// addTunnelCommonFlags defines the flags both ends take: identity, pins,
// QUIC liveness, tracing.
func addTunnelCommonFlags(f *pflag.FlagSet, peer string) {
	f.String("config", "", "YAML config file (default: ./ccproxy.yaml, then /etc/ccproxy/ccproxy.yaml)")
	f.String("cert", "", "this side's certificate (PEM), from `ccproxy tunnel keygen`")
	f.String("key", "", "this side's private key (PEM), from `ccproxy tunnel keygen`")
	f.StringArray("peer-fingerprint", nil, "SHA-256 fingerprint of the "+peer+"'s certificate to accept (repeatable; 64 hex digits, colons allowed)")
	f.Duration("tunnel-idle-timeout", tunnel.DefaultIdleTimeout, "close the QUIC connection after this long without a packet from the peer")
	f.Duration("keepalive", tunnel.DefaultKeepAlive, "QUIC keep-alive period (below --tunnel-idle-timeout)")
	f.Duration("drain-timeout", proxy.DefaultDrainTimeout, "on SIGTERM/SIGINT, how long open connections may finish")
	f.Int("max-connections", proxy.DefaultMaxConns, "concurrent connections; beyond it new ones are refused at once")
	f.String("trace-file", "", "append spans as OTLP/JSON lines to this file (- for stdout)")
	f.String("otlp-endpoint", "", "export spans over OTLP: grpc://host:port or host:port (gRPC), http(s)://host:port (HTTP)")
}

// tunnelCommon is the validated form of addTunnelCommonFlags.
type tunnelCommon struct {
	certFile, keyFile string
	peers             []tunnel.Fingerprint
	idleTimeout       time.Duration
	keepAlive         time.Duration
	drainTimeout      time.Duration
	maxConns          int
	traceFile         string
	otlpEndpoint      string
}

func parseTunnelCommon(s *settings) (*tunnelCommon, error) {
	c := &tunnelCommon{certFile: s.String("cert"), keyFile: s.String("key")}
	if c.certFile == "" || c.keyFile == "" {
		return nil, usageErrorf("%s and %s are required (make them with `ccproxy tunnel keygen --out DIR`)", where("cert"), where("key"))
	}
	for _, p := range s.StringList("peer-fingerprint") {
		fp, err := tunnel.ParseFingerprint(p)
		if err != nil {
			return nil, usageErrorf("%s: %v", where("peer-fingerprint"), err)
		}
		c.peers = append(c.peers, fp)
	}
	if len(c.peers) == 0 {
		return nil, usageErrorf("%s is required: the other side's fingerprint, as its `ccproxy tunnel keygen` printed it", where("peer-fingerprint"))
	}
	var err error
	if c.idleTimeout, err = s.Duration("tunnel-idle-timeout"); err != nil {
		return nil, err
	}
	if c.keepAlive, err = s.Duration("keepalive"); err != nil {
		return nil, err
	}
	idle := c.idleTimeout
	if idle == 0 {
		idle = tunnel.DefaultIdleTimeout
	}
	if c.keepAlive >= idle {
		return nil, usageErrorf("%s (%s) must be shorter than %s (%s)", where("keepalive"), c.keepAlive, where("tunnel-idle-timeout"), idle)
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
	c.traceFile = s.String("trace-file")
	c.otlpEndpoint = s.String("otlp-endpoint")
	if c.otlpEndpoint != "" {
		if err := trace.ValidateEndpoint(c.otlpEndpoint); err != nil {
			return nil, usageErrorf("%s: %v", where("otlp-endpoint"), err)
		}
	}
	return c, nil
}

// loadCert reads the key pair; a bad file is a usage error naming the flags.
func (c *tunnelCommon) loadCert(log *slog.Logger) (tls.Certificate, error) {
	cert, fp, err := tunnel.LoadKeyPair(c.certFile, c.keyFile)
	if err != nil {
		return tls.Certificate{}, usageErrorf("--cert/--key: %v", err)
	}
	log.Info("tunnel identity", "fingerprint", fp.String(), "cert", c.certFile)
	return cert, nil
}

// setupTracing starts the tracer provider as relay mode does; the returned
// function flushes it.
func (c *tunnelCommon) setupTracing(ctx context.Context, log *slog.Logger) (*trace.Provider, func(), error) {
	ver, _ := buildVersion()
	tp, err := trace.Setup(ctx, trace.Config{File: c.traceFile, Endpoint: c.otlpEndpoint, ServiceVersion: ver, Logger: log})
	if err != nil {
		return nil, nil, usageErrorf("tracing: %v", err)
	}
	if !tp.Enabled() {
		log.Info("tracing off: set --trace-file or --otlp-endpoint to record a span per connection")
	}
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("flushing spans at exit", "err", err)
		}
		if n := tp.Dropped(); n > 0 {
			log.Warn("spans dropped", "count", n)
		}
	}, nil
}

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
	r.traceFile, r.otlpEndpoint = c.common.traceFile, c.common.otlpEndpoint
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
	tp, flush, err := cfg.common.setupTracing(ctx, log)
	if err != nil {
		return err
	}
	defer flush()
	rc := cfg.relay
	ev, err := rc.evidence.load()
	if err != nil {
		return err
	}
	metrics, err := admin.NewMetrics(nil)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer metrics.Shutdown(context.Background())
	tp.OnDrop(metrics.SpansDropped)

	var serving atomic.Bool
	srv := &tunnel.Server{
		Listen: cfg.listen,
		Routes: cfg.routes,
		Cert:   cert,
		Peers:  cfg.common.peers,
		Relay: tunnel.WatchRelayer(
			&proxy.Proxy{DialTimeout: rc.dialTimeout, IdleTimeout: rc.idleTimeout, Logger: log},
			watch.Config{
				Tracer:         tp.Tracer(),
				IssuerDeadline: rc.issuerDeadline,
				CheckCert:      ev.certChecker(),
				Refine:         ev.refiner(rc),
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
	return srv.Serve(ctx, pc)
}

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
	f.String("server", "", "the in-cluster `ccproxy tunnel serve`, host:port (UDP)")
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
	tp, flush, err := cfg.common.setupTracing(ctx, log)
	if err != nil {
		return err
	}
	defer flush()
	cl := &tunnel.Client{
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
	return cl.Serve(ctx, lns)
}

func newTunnelKeygenCmd() *cobra.Command {
	var out, name, output string
	var force bool
	cmd := &cobra.Command{
		Use:   "keygen --out DIR",
		Short: "Make a tunnel key pair and print the fingerprint the other side pins",
		Long: `Write an ECDSA P-256 private key (DIR/tunnel.key, mode 0600) and a self-signed
certificate for it (DIR/tunnel.crt), and print the certificate's SHA-256
fingerprint: pass it to the other side's --peer-fingerprint. The certificate's
validity dates are not checked by the tunnel; the pin is the identity, and
replacing a key means pinning the new fingerprint.`,
		Example: `  ccproxy tunnel keygen --out ./tunnel-keys
  ccproxy tunnel keygen --out /keys --name cluster-a --output json

  # as a Kubernetes secret for the in-cluster side
  ccproxy tunnel keygen --out ./k && kubectl create secret generic ccproxy-tunnel \
      --from-file=tunnel.crt=k/tunnel.crt --from-file=tunnel.key=k/tunnel.key`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageErrorf("--output: %q is not text or json", output)
			}
			if out == "" {
				return usageErrorf("--out is required: the directory to write tunnel.crt and tunnel.key to")
			}
			certPath, keyPath, fp, err := tunnel.WriteKeyPair(out, name, force)
			if errors.Is(err, os.ErrExist) {
				return usageErrorf("--out: %v (pass --force to replace the pair)", err)
			}
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				return writeTunnelJSON(w, map[string]string{"cert": certPath, "key": keyPath, "fingerprint": fp.String()})
			}
			fmt.Fprintf(w, "wrote %s and %s\nfingerprint %s\n", certPath, keyPath, fp)
			fmt.Fprintf(w, "give the other side: --peer-fingerprint %s\n", fp)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "directory to write tunnel.crt and tunnel.key to (created if needed)")
	f.StringVar(&name, "name", "ccproxy-tunnel", "the certificate's common name (shows in logs only)")
	f.BoolVar(&force, "force", false, "replace an existing key pair in --out")
	f.StringVar(&output, "output", "text", "output format: text or json")
	return cmd
}

func newTunnelFingerprintCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "fingerprint CERT",
		Short: "Print the fingerprint to pin for a tunnel certificate (PEM or DER)",
		Example: `  ccproxy tunnel fingerprint tunnel-keys/tunnel.crt
  kubectl get secret ccproxy-tunnel -o jsonpath='{.data.tunnel\.crt}' | base64 -d | ccproxy tunnel fingerprint -`,
		Args:          cobra.ExactArgs(1),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return usageErrorf("--output: %q is not text or json", output)
			}
			var b []byte
			var err error
			if args[0] == "-" {
				b, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
			} else {
				b, err = os.ReadFile(args[0])
			}
			if err != nil {
				return usageErrorf("CERT: %v", err)
			}
			fp, err := tunnel.CertificateFingerprint(b)
			if err != nil {
				return usageErrorf("CERT %s: %v", args[0], err)
			}
			if output == "json" {
				return writeTunnelJSON(cmd.OutOrStdout(), map[string]string{"fingerprint": fp.String()})
			}
			fmt.Fprintln(cmd.OutOrStdout(), fp)
			return nil
		},
	}
	cmd.Flags().StringVar(&output, "output", "text", "output format: text or json")
	return cmd
}

func writeTunnelJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}
