package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ccproxy-dev/ccproxy/internal/tunnel"
)

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
