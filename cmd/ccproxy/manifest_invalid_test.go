package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
