package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ccproxy-dev/ccproxy/internal/explain"
)

// maxExplainInput bounds what explain reads from standard input; a pasted log
// is far smaller, and explaining is linear in the size.
const maxExplainInput = 16 << 20

func newExplainCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "explain [TEXT...]",
		Short: "Name the failure mode in an error message from Contrast, kubectl, containerd, Kata or Azure",
		Long: `Read an error message — the arguments joined, or standard input when there are
none (a pasted terminal log works) — and print every error recognised in it, in
order of appearance: the failure mode, what it means and the next step, quoting
the values found (hashes, nonce, validator, address, paths).

It knows the Contrast CLI's connection and attested-TLS errors (EOF, internal
error, certificate and validator failures, policy hash and measurement
mismatches, clock skew), the Coordinator's user-API states, contrast generate,
Kata policy, runtime-class, containerd and pod-VM errors, and decodes Azure
policyDecision< ... > blobs. Colour codes, escaped quotes, gRPC and log prefixes
and line breaks inside a message are tolerated.

Exit status: 0 when at least one error was recognised, 1 when none was,
2 for a usage error.`,
		Example: `  # paste the CLI's error
  ccproxy explain 'rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: EOF"'

  # explain a whole terminal log or an event list
  contrast set -c "$coordinator:1313" resources/ 2>&1 | ccproxy explain
  kubectl events --for pod/coordinator-0 | ccproxy explain

  # for scripts
  ccproxy explain --output json < error.txt | jq -r '.findings[].mode'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return usageErrorf("--output: %q is not text or json", output)
			}
			text, err := explainInput(cmd, args)
			if err != nil {
				return err
			}
			findings := explain.Explain(text)
			w := cmd.OutOrStdout()
			if output == "json" {
				err = explain.WriteJSON(w, findings)
			} else {
				err = explain.WriteText(w, findings)
			}
			if err != nil {
				return err
			}
			if len(findings) == 0 {
				return checkFailed(nil)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&output, "output", "text", "output format: text or json")
	return cmd
}

// explainInput is the arguments joined by blanks, or standard input.
func explainInput(cmd *cobra.Command, args []string) (string, error) {
	if len(args) > 0 && !(len(args) == 1 && args[0] == "-") {
		return strings.Join(args, " "), nil
	}
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintln(cmd.ErrOrStderr(), "ccproxy explain: paste the error text, then press Ctrl-D")
		}
	}
	b, err := io.ReadAll(io.LimitReader(in, maxExplainInput+1))
	if err != nil {
		return "", fmt.Errorf("reading standard input: %w", err)
	}
	if len(b) > maxExplainInput {
		fmt.Fprintf(cmd.ErrOrStderr(), "ccproxy explain: input longer than %d MiB, only its start is read\n", maxExplainInput>>20)
		b = b[:maxExplainInput]
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return "", usageErrorf("no text to explain: pass it as arguments or on standard input")
	}
	return string(b), nil
}
