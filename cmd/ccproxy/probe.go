package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/probe"
)

func newProbeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "probe --coordinator HOST:PORT",
		Short: "Do one attested handshake with a Coordinator like the Contrast CLI and name what is wrong",
		Long: `Connect to a Contrast Coordinator's user API port the way the Contrast CLI does:
a fresh nonce in the ClientHello, the attested-TLS handshake, the evidence in the
Coordinator's certificate verified and validated against --manifest (or
--coordinator-policy-hash). When that succeeds, ask the user API over the same
attested connection for the manifest history and report the Coordinator's state:
ok, coordinator_no_manifest, coordinator_recovery_mode, or manifest_mismatch (the
latest manifest must equal --manifest byte for byte, as contrast verify requires;
the report says which part differs). Any other failure is named with the same
failure modes the relay uses (upstream_refused, lb_closed_early, issuer_error,
policy_hash_mismatch, clock_skew, ...).

The report shows the time of each phase (DNS, TCP connect, the issuer's latency
from ClientHello to the first server byte, handshake, user API) and the
Coordinator's clock offset from its certificate (issued at NotBefore + 2 h).

--nonce-in auto sends the nonce in the ALPN entry like the current CLI and, if the
Coordinator answers with internal_error, retries with the nonce in the SNI like
older CLIs: if that works, the Coordinator predates the CLI
(coordinator_version_mismatch).

Exit status: 0 when the failure mode is ok, 1 when the probe found a failure,
2 for a usage or configuration error.`,
		Example: `  # Is the Coordinator behind the port-forward healthy and running our manifest?
  ccproxy probe --coordinator localhost:1313 --manifest manifest.json

  # Only the policy hash is known; machine-readable report
  ccproxy probe --coordinator 203.0.113.7:1313 \
      --coordinator-policy-hash 3c1e...9a --output json

  # Behave exactly like an older CLI (nonce in the SNI), over TLS 1.2
  ccproxy probe --coordinator coordinator:1313 --manifest manifest.json \
      --nonce-in sni --tls-max-version 1.2`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          runProbe,
	}
	f := cmd.Flags()
	f.String("config", "", "YAML config file (default: ./ccproxy.yaml, then /etc/ccproxy/ccproxy.yaml)")
	f.String("coordinator", "", "the Coordinator's user API as `HOST:PORT` (e.g. localhost:1313)")
	addEvidenceFlags(f)
	f.String("nonce-in", "auto", "where to send the client nonce: alpn (current CLI), sni (older CLI), or auto (alpn, then sni on internal_error)")
	f.String("tls-max-version", "1.3", "highest TLS version to offer: 1.2 or 1.3")
	f.Duration("timeout", probe.DefaultTimeout, "bound for each connection: dial, handshake and user API call")
	f.String("output", "text", "output format: text or json")
	return cmd
}

func runProbe(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd)
	if err != nil {
		return err
	}
	output, err := s.Enum("output", "text", "json")
	if err != nil {
		return err
	}
	addr := s.String("coordinator")
	if addr == "" {
		return usageErrorf("%s: required, the Coordinator as HOST:PORT (e.g. localhost:1313)", where("coordinator"))
	}
	if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || !validPort(port) {
		return usageErrorf("%s: %q is not HOST:PORT", where("coordinator"), addr)
	}
	nonceIn, err := probe.ParseNonceMode(s.String("nonce-in"))
	if err != nil {
		return usageErrorf("%s: %v", where("nonce-in"), err)
	}
	tlsMax, err := s.Enum("tls-max-version", "1.2", "1.3")
	if err != nil {
		return err
	}
	timeout, err := s.Duration("timeout")
	if err != nil {
		return err
	}
	ev, err := loadEvidence(s)
	if err != nil {
		return err
	}
	cfg := probe.Config{Attest: ev.opts, NonceIn: nonceIn, MaxVersion: tls.VersionTLS13, Timeout: timeout}
	if tlsMax == "1.2" {
		cfg.MaxVersion = tls.VersionTLS12
	}
	rep, err := probe.Run(cmd.Context(), addr, cfg)
	if err != nil {
		return usageErrorf("%v", err)
	}
	out := cmd.OutOrStdout()
	if output == "json" {
		err = rep.WriteJSON(out)
	} else {
		err = rep.WriteText(out)
	}
	if err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	if rep.Mode != failure.OK {
		return checkFailed(nil)
	}
	return nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n <= 65535
}
