package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/internal/probe"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
)

// addEvidenceFlags defines the flags that say what evidence is checked
// against; relay mode, probe and attest share them.
func addEvidenceFlags(f *pflag.FlagSet) {
	f.String("manifest", "", "Contrast manifest.json whose reference values (and coordinator policy) evidence is validated against")
	f.StringSlice("coordinator-policy-hash", nil, "expected Coordinator policy `HEX` hash, 64 hex chars (SNP HOST_DATA / TDX MR_CONFIG_ID), repeatable; needed only when the manifest names no Coordinator policy, else it must be one of the manifest's")
	f.String("snp-trusted-roots", "", "`PEM` file with AMD ARK/ASK to trust instead of the built-in roots")
	f.String("tdx-trusted-roots", "", "`PEM` file with the Intel SGX root CA to trust instead of the built-in one")
	f.Bool("offline", false, "never fetch certificates, CRLs or collateral; verify with what the evidence carries")
}

// evidenceConfig is the validated form of the evidence flags.
type evidenceConfig struct {
	manifestPath string
	policyHashes [][]byte
	snpRootsPath string
	tdxRootsPath string
	offline      bool
}

func parseEvidenceConfig(s *settings) (evidenceConfig, error) {
	var c evidenceConfig
	var err error
	c.manifestPath = s.String("manifest")
	c.snpRootsPath = s.String("snp-trusted-roots")
	c.tdxRootsPath = s.String("tdx-trusted-roots")
	if c.offline, err = s.Bool("offline"); err != nil {
		return c, err
	}
	for _, h := range s.StringList("coordinator-policy-hash") {
		b, err := hex.DecodeString(strings.TrimPrefix(h, "0x"))
		if err != nil || len(b) != 32 {
			return c, usageErrorf("%s: %q is not 64 hex characters (a SHA-256 policy hash)", where("coordinator-policy-hash"), h)
		}
		c.policyHashes = append(c.policyHashes, b)
	}
	return c, nil
}

// loadEvidence reads the evidence flags and loads what they name.
func loadEvidence(s *settings) (*evidence, error) {
	ec, err := parseEvidenceConfig(s)
	if err != nil {
		return nil, err
	}
	return ec.load()
}

// evidence is the loaded evidence configuration: the attest options every
// check starts from (without a nonce) and a cache shared by all checks.
type evidence struct {
	opts attest.Options
}

// load reads the manifest and root files; errors name the flag and are
// usage errors (exit 2).
func (c evidenceConfig) load() (*evidence, error) {
	opts := attest.Options{Offline: c.offline, Cache: attest.NewCache(time.Hour)}
	if c.manifestPath != "" {
		m, err := attest.LoadManifest(c.manifestPath)
		if me := attest.AsManifestError(err); me != nil {
			// The Contrast CLI refuses this manifest before it dials:
			// nothing ccproxy could check against it would be what the
			// CLI sees, so nothing starts (exit 2), in the CLI's words.
			return nil, usageErrorf("--manifest %s: %s: the Contrast CLI (%s-era manifest) refuses it before dialing: %v",
				c.manifestPath, me.Mode(), me.Era, me)
		}
		if err != nil {
			return nil, usageErrorf("--manifest: %v", err)
		}
		opts.Reference = m
	}
	if err := checkPolicyFlag(c.policyHashes, opts.Reference); err != nil {
		return nil, err
	}
	opts.PolicyHashes = c.policyHashes
	// Each roots file is read and parsed on its own, so an error names
	// the flag that brought it.
	read := func(flag, path string, asOptions func([]byte) attest.Options) ([]byte, error) {
		if path == "" {
			return nil, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, usageErrorf("--%s: %v", flag, err)
		}
		if err := asOptions(b).Validate(); err != nil {
			return nil, usageErrorf("--%s %s: %v", flag, path, err)
		}
		return b, nil
	}
	var err error
	if opts.SNPRoots, err = read("snp-trusted-roots", c.snpRootsPath, func(b []byte) attest.Options { return attest.Options{SNPRoots: b} }); err != nil {
		return nil, err
	}
	if opts.TDXRoots, err = read("tdx-trusted-roots", c.tdxRootsPath, func(b []byte) attest.Options { return attest.Options{TDXRoots: b} }); err != nil {
		return nil, err
	}
	return &evidence{opts: opts}, nil
}

// certChecker checks TLS 1.2 certificates the relay sees in the clear.
func (e *evidence) certChecker() watch.CertChecker { return watch.AttestChecker(e.opts) }

// refiner returns the relay's active-probe refinement, or nil when probing
// is off.
func (e *evidence) refiner(cfg *relayConfig) watch.Refiner {
	if !cfg.probe {
		return nil
	}
	// A probe connection gets what a relayed one gets: the dial timeout,
	// then the issuer deadline for the handshake.
	timeout := cfg.dialTimeout + cfg.issuerDeadline
	if cfg.dialTimeout <= 0 || cfg.issuerDeadline <= 0 {
		timeout = probe.DefaultTimeout
	}
	return probe.NewRefiner(probe.RefinerConfig{
		Probe:    probe.Config{Attest: e.opts, Timeout: timeout},
		CacheTTL: cfg.probeCache,
	}).Refine
}

// checkPolicyFlag keeps --coordinator-policy-hash from hiding a mismatch
// the CLI would hit. The oldest CLIs took the Coordinator policy hash from
// their own flag (the manifest had no roles); since manifests name the
// Coordinator policy, the CLI checks the manifest's (the newest: all of
// them, after validation), and a release in between took both the flag and
// a manifest with a role. So with a manifest that names Coordinator
// policies, every flag value must be one of them: evidence that matches a
// flag the manifest does not hold would pass here and fail in the CLI.
func checkPolicyFlag(flag [][]byte, m *attest.Manifest) error {
	want := m.CoordinatorPolicyHashes()
	if len(flag) == 0 || len(want) == 0 {
		return nil
	}
	for _, h := range flag {
		if !slices.ContainsFunc(want, func(w []byte) bool { return bytes.Equal(w, h) }) {
			names := make([]string, len(want))
			for i, w := range want {
				names[i] = hex.EncodeToString(w)
			}
			return usageErrorf("%s: %x is not a Coordinator policy of --manifest (it names %s), which is what the Contrast CLI checks; give one of those or leave the flag out",
				where("coordinator-policy-hash"), h, strings.Join(names, ", "))
		}
	}
	return nil
}
