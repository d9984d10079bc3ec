package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/spf13/cobra"
)

func newAttestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "attest FILE",
		Short: "Decode, verify and validate a Coordinator certificate or raw SNP/TDX evidence",
		Long: `Decode a Contrast Coordinator's aTLS certificate (PEM or DER) or raw evidence
(a sevsnp.Attestation or tdx.QuoteV4 protobuf, a raw SNP report, a raw Intel TDX
quote, an insecure-platform document), verify its signature and certificate chain
with go-sev-guest / go-tdx-guest, validate it against the reference values of a
manifest.json the way the Contrast CLI does, and print its fields, the verdict and
the failure mode. FILE "-" reads standard input.

A certificate is checked as a client would check it now: a Contrast certificate
is valid for 2 hours either side of its issue time, so one saved earlier than
that reports clock_skew (the evidence result is still printed). The report data
binds the certificate's key to the client's nonce; give --nonce to check it.

Exit status: 0 when the failure mode is ok, 1 when the check found a failure,
2 for a usage or configuration error.`,
		Example: `  # Check a certificate captured from port 1313 against the deployment's manifest
  ccproxy attest --manifest manifest.json coordinator.pem

  # Check a raw TDX quote offline, trusting test roots, as JSON
  ccproxy attest --offline --tdx-trusted-roots test-root.pem --output json quote.dat

  # Check the report data too: the client's nonce of that handshake
  ccproxy attest --manifest manifest.json --nonce 5f1c...e2 coordinator.der`,
		Args: cobra.ExactArgs(1),
		// The exit code and the printed failure mode say it all (as for the
		// root command, which is not always this command's parent in tests).
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAttest(cmd, args[0])
		},
	}
	fl := cmd.Flags()
	addEvidenceFlags(fl)
	fl.String("nonce", "", "the client's 32-byte nonce as `HEX`, to check the report data (certificates only)")
	fl.String("output", "text", "output format: text or json")
	return cmd
}

func runAttest(cmd *cobra.Command, file string) error {
	s, err := loadSettings(cmd)
	if err != nil {
		return err
	}
	output, err := s.Enum("output", "text", "json")
	if err != nil {
		return err
	}
	ev, err := loadEvidence(s)
	if err != nil {
		return err
	}
	opts := ev.opts
	if n := s.String("nonce"); n != "" {
		b, err := hex.DecodeString(n)
		if err != nil || len(b) != 32 {
			return usageErrorf("--nonce: %q is not 64 hex digits (a 32-byte nonce)", n)
		}
		opts.Nonce = b
	}
	var data []byte
	if file == "-" {
		data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), attest.MaxEvidenceSize+1))
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return usageErrorf("reading FILE: %v", err)
	}
	res := attest.CheckFile(cmd.Context(), data, opts)
	out := cmd.OutOrStdout()
	if output == "json" {
		err = writeAttestJSON(out, file, res)
	} else {
		err = writeAttestText(out, res)
	}
	if err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	if res.Mode != failure.OK {
		return checkFailed(nil)
	}
	return nil
}

type attestJSON struct {
	File string `json:"file"`
	attest.Result
	ClockOffsetMs *int64 `json:"clock_offset_ms,omitempty"`
}

func writeAttestJSON(w io.Writer, file string, res attest.Result) error {
	v := attestJSON{File: file, Result: res}
	if res.ClockOffset != nil {
		ms := res.ClockOffset.Milliseconds()
		v.ClockOffsetMs = &ms
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeAttestText(w io.Writer, res attest.Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range res.Fields {
		fmt.Fprintf(tw, "%s:\t%s\n", f.Name, f.Value)
	}
	fmt.Fprintln(tw)
	if res.ExpectedPolicyHash != "" {
		fmt.Fprintf(tw, "Expected policy hash:\t%s\n", res.ExpectedPolicyHash)
	}
	fmt.Fprintf(tw, "Verdict:\t%s\n", res.Verdict)
	fmt.Fprintf(tw, "Failure mode:\t%s\n", res.Mode)
	if res.Detail != "" {
		fmt.Fprintf(tw, "Detail:\t%s\n", res.Detail)
	}
	return tw.Flush()
}
