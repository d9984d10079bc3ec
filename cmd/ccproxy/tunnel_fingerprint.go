package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/ccproxy-dev/ccproxy/internal/tunnel"
)

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
