package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/failure"
	"github.com/spf13/cobra"
)

// attestFlags are the flags of `ccproxy attest`.
type attestFlags struct {
	manifest     string
	policyHashes []string
	snpRoots     string
	tdxRoots     string
	offline      bool
	nonce        string
	output       string
}

func newAttestCmd() *cobra.Command {
	var f attestFlags
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
			return runAttest(cmd, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.manifest, "manifest", "", "Contrast `manifest.json` whose reference values the evidence is validated against")
	fl.StringSliceVar(&f.policyHashes, "coordinator-policy-hash", nil, "expected Coordinator policy `HEX` (SNP HOST_DATA / TDX MR_CONFIG_ID); default: the manifest's coordinator policy")
	fl.StringVar(&f.snpRoots, "snp-trusted-roots", "", "`PEM` file with the AMD ARK and ASK to trust instead of AMD's")
	fl.StringVar(&f.tdxRoots, "tdx-trusted-roots", "", "`PEM` file with the root to trust instead of the Intel SGX root CA")
	fl.BoolVar(&f.offline, "offline", false, "never fetch certificates, CRLs or collateral; verify with what the evidence carries")
	fl.StringVar(&f.nonce, "nonce", "", "the client's 32-byte nonce as `HEX`, to check the report data (certificates only)")
	fl.StringVar(&f.output, "output", "text", "output format: text or json")
	return cmd
}

// attestOptions turns the flags into attest.Options; errors are usage
// errors naming the flag.
func attestOptions(f attestFlags) (attest.Options, error) {
	opts := attest.Options{Offline: f.offline}
	var err error
	if f.output != "text" && f.output != "json" {
		return opts, usageErrorf("--output: %q is not text or json", f.output)
	}
	if f.manifest != "" {
		m, err := attest.LoadManifest(f.manifest)
		if err != nil {
			return opts, usageErrorf("--manifest: %v", err)
		}
		opts.Reference = m
	}
	for _, h := range f.policyHashes {
		b, err := hex.DecodeString(strings.TrimSpace(h))
		if err != nil || len(b) != 32 {
			return opts, usageErrorf("--coordinator-policy-hash: %q is not 64 hex digits (a SHA-256 policy hash)", h)
		}
		opts.PolicyHashes = append(opts.PolicyHashes, b)
	}
	if f.nonce != "" {
		b, err := hex.DecodeString(f.nonce)
		if err != nil || len(b) != 32 {
			return opts, usageErrorf("--nonce: %q is not 64 hex digits (a 32-byte nonce)", f.nonce)
		}
		opts.Nonce = b
	}
	if f.snpRoots != "" {
		if opts.SNPRoots, err = readRootsFlag("--snp-trusted-roots", f.snpRoots, func(b []byte) attest.Options {
			return attest.Options{SNPRoots: b}
		}); err != nil {
			return opts, err
		}
	}
	if f.tdxRoots != "" {
		if opts.TDXRoots, err = readRootsFlag("--tdx-trusted-roots", f.tdxRoots, func(b []byte) attest.Options {
			return attest.Options{TDXRoots: b}
		}); err != nil {
			return opts, err
		}
	}
	return opts, nil
}

// readRootsFlag reads a roots file and checks that it parses.
func readRootsFlag(flag, path string, asOptions func([]byte) attest.Options) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("%s: %v", flag, err)
	}
	if err := asOptions(b).Validate(); err != nil {
		return nil, usageErrorf("%s %s: %v", flag, path, err)
	}
	return b, nil
}

func runAttest(cmd *cobra.Command, file string, f attestFlags) error {
	opts, err := attestOptions(f)
	if err != nil {
		return err
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
	if f.output == "json" {
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
