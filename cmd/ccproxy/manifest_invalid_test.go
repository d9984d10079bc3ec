package main

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/contrastcli"
)

// TestRefusedManifestStartsNothing: a manifest the Contrast CLI refuses
// before it dials stops relay mode, probe and attest with exit 2, the mode
// manifest_invalid and the CLI's own words; and explain, given what the
// (simulated) CLI printed for the same manifest, names the same mode.
func TestRefusedManifestStartsNothing(t *testing.T) {
	a, err := attesttest.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(a.LegacyManifestJSON(), &m); err != nil {
		t.Fatal(err)
	}
	// Two Coordinator policies: the newest CLI accepts that, the one that
	// wrote this layout wants exactly one.
	m["Policies"].(map[string]any)[strings.Repeat("ab", 32)] = map[string]any{"Role": "coordinator"}
	refused, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(t.TempDir(), "manifest.json")
	if err := os.WriteFile(manifest, refused, 0o600); err != nil {
		t.Fatal(err)
	}

	_, cliErr := contrastcli.Verify(t.Context(), "127.0.0.1:1", contrastcli.Options{Manifest: refused})
	if cliErr == nil || !strings.HasPrefix(cliErr.Error(), "validating manifest: ") {
		t.Fatalf("the simulated CLI: %v, want it to refuse the manifest", cliErr)
	}
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
			for _, want := range []string{"--manifest", "manifest_invalid", cliErr.Error()} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr %q does not say %q", stderr, want)
				}
			}
		})
	}
	out, stderr, code := run(t, nil, "explain", "Error: "+cliErr.Error())
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
