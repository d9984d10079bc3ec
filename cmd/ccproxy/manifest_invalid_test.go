package main

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
)

// TestRefusedManifestStartsNothing: a manifest the Contrast CLI refuses
// before it dials (here: no Coordinator policy) stops relay mode, probe and
// attest with exit 2, the mode manifest_invalid and the CLI's own words; and
// explain, given those words as the CLI prints them, names the same mode.
func TestRefusedManifestStartsNothing(t *testing.T) {
	dir := t.TempDir()
	manifest := filepath.Join(dir, "manifest.json")
	const refused = `{"Policies":{},"ReferenceValues":{"snp":[{"ProductName":"Milan",` +
		`"TrustedMeasurement":"` + "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" + `",` +
		`"MinimumTCB":{"BootloaderVersion":0,"TEEVersion":0,"SNPVersion":0,"MicrocodeVersion":0}}]},"WorkloadOwnerKeyDigests":null}`
	if err := os.WriteFile(manifest, []byte(refused), 0o600); err != nil {
		t.Fatal(err)
	}
	cliText := "validating manifest: expected exactly 1 policy with role 'coordinator', got 0"
	for _, args := range [][]string{
		{"--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:0", "--manifest", manifest},
		{"probe", "--coordinator", "127.0.0.1:1", "--manifest", manifest},
		{"attest", "--manifest", manifest, manifest},
	} {
		t.Run(args[0], func(t *testing.T) {
			_, stderr, code := run(t, nil, args...)
			if code != 2 {
				t.Errorf("exit %d, want 2; stderr: %s", code, stderr)
			}
			for _, want := range []string{"--manifest", "manifest_invalid", cliText} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr %q does not say %q", stderr, want)
				}
			}
		})
	}
	out, stderr, code := run(t, nil, "explain", "Error: "+cliText)
	if code != 0 || !strings.Contains(out, "manifest_invalid") {
		t.Errorf("explain: exit %d, output %s %s; want manifest_invalid", code, out, stderr)
	}
}

// TestPolicyFlagMustBeTheManifests: --coordinator-policy-hash cannot stand
// in for a manifest whose Coordinator policy differs (the CLI checks the
// manifest's); one of the manifest's is accepted.
func TestPolicyFlagMustBeTheManifests(t *testing.T) {
	a, err := attesttest.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(t.TempDir(), "manifest.json")
	if err := os.WriteFile(manifest, a.ManifestJSON(), 0o600); err != nil {
		t.Fatal(err)
	}
	other := strings.Repeat("ab", 32)
	stderr, code := runBriefly(t, 5*time.Second, nil, "--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:0", "--manifest", manifest, "--coordinator-policy-hash", other)
	if code != 2 || !strings.Contains(stderr, "--coordinator-policy-hash") || !strings.Contains(stderr, "not a Coordinator policy of --manifest") {
		t.Errorf("another hash: exit %d, stderr %s", code, stderr)
	}
	own := attesttest.DefaultPolicyHash()
	_, stderr, code = run(t, nil, "attest", "--offline", "--manifest", manifest, "--coordinator-policy-hash", hex.EncodeToString(own[:]), manifest)
	if code == 2 {
		t.Errorf("the manifest's own hash: exit 2: %s", stderr)
	}
}
