package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ccproxy-dev/ccproxy/internal/tunnel"
	"github.com/ccproxy-dev/ccproxy/proxy"
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
	f.String("cert", "", "this side's certificate `FILE` (PEM), from \"ccproxy tunnel keygen\"")
	f.String("key", "", "this side's private key `FILE` (PEM), from \"ccproxy tunnel keygen\"")
	f.StringArray("peer-fingerprint", nil, "SHA-256 fingerprint of the "+peer+"'s certificate to accept (repeatable; 64 hex digits, colons allowed)")
	f.Duration("tunnel-idle-timeout", tunnel.DefaultIdleTimeout, "close the QUIC connection after this long without a packet from the peer")
	f.Duration("keepalive", tunnel.DefaultKeepAlive, "QUIC keep-alive period (below --tunnel-idle-timeout)")
	f.Duration("drain-timeout", proxy.DefaultDrainTimeout, "on SIGTERM/SIGINT, how long open connections may finish")
	f.Int("max-connections", proxy.DefaultMaxConns, "concurrent connections; beyond it new ones are refused at once")
	addTraceFlags(f)
	addUIFlag(f)
}

// tunnelCommon is the validated form of addTunnelCommonFlags.
type tunnelCommon struct {
	certFile, keyFile string
	peers             []tunnel.Fingerprint
	idleTimeout       time.Duration
	keepAlive         time.Duration
	drainTimeout      time.Duration
	maxConns          int
	trace             traceConfig
	ui                *uiPage // nil: no live page
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
	if c.trace, err = parseTraceConfig(s); err != nil {
		return nil, err
	}
	if c.ui, err = parseUI(s); err != nil {
		return nil, err
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

func writeTunnelJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}
