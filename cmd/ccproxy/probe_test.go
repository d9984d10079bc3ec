package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinatortest"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// probeFixture is a simulated Coordinator on loopback with its manifest and
// roots written where the probe command's flags can name them.
type probeFixture struct {
	c        *coordinator.Coordinator
	addr     string
	manifest string
	roots    string
}

func newProbeFixture(t *testing.T, cfg coordinator.Config) *probeFixture {
	t.Helper()
	a, err := attesttest.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Authority = a
	c, addr := coordinatortest.Start(t, cfg)
	dir := t.TempDir()
	f := &probeFixture{c: c, addr: addr, manifest: filepath.Join(dir, "manifest.json"), roots: filepath.Join(dir, "snp-roots.pem")}
	if err := os.WriteFile(f.manifest, c.Manifest(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.roots, a.SNPRootsPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *probeFixture) args(extra ...string) []string {
	return append([]string{"probe", "--coordinator", f.addr, "--manifest", f.manifest, "--snp-trusted-roots", f.roots, "--offline", "--timeout", "10s"}, extra...)
}

// runRootCmd runs the root command with args in process and returns its
// standard output, the error main would print and the contract exit code.
func runRootCmd(t *testing.T, args ...string) (stdout, errText string, code int) {
	t.Helper()
	t.Chdir(t.TempDir()) // no ./ccproxy.yaml
	cmd := newRootCmd()
	var out, stderr bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&stderr)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		code = 2
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		errText = err.Error()
	}
	return out.String(), errText, code
}

func TestProbeCommand(t *testing.T) {
	tests := []struct {
		name     string
		fault    coordinator.Fault
		extra    []string
		wantCode int
		want     []string // in the text report
	}{
		{name: "healthy", wantCode: 0, want: []string{"Failure mode:", " ok", "SEV-SNP verified", "the latest manifest equals manifest.json", "issuer (first byte)", "Coordinator clock:"}},
		{name: "healthy over TLS 1.2 with the SNI nonce", extra: []string{"--tls-max-version", "1.2", "--nonce-in", "sni"}, wantCode: 0, want: []string{"TLS:", "1.2", "Nonce:", "sni"}},
		{name: "recovery mode", fault: coordinator.FaultRecoveryMode, wantCode: 1, want: []string{"coordinator_recovery_mode", "contrast recover"}},
		{name: "no manifest", fault: coordinator.FaultNoManifest, wantCode: 1, want: []string{"coordinator_no_manifest"}},
		{name: "manifest differs", fault: coordinator.FaultManifestDiffers, wantCode: 1, want: []string{"manifest_mismatch", "Differences:", "policies only in the Coordinator's manifest"}},
		{name: "wrong policy hash", fault: coordinator.FaultWrongPolicyHash, wantCode: 1, want: []string{"policy_hash_mismatch", "Expected policy hash:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newProbeFixture(t, coordinator.Config{Fault: tc.fault})
			out, errText, code := runRootCmd(t, f.args(tc.extra...)...)
			if code != tc.wantCode {
				t.Fatalf("exit %d (%s), want %d; output:\n%s", code, errText, tc.wantCode, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestProbeCommandJSON(t *testing.T) {
	f := newProbeFixture(t, coordinator.Config{Fault: coordinator.FaultOldCoordinator})
	_, port, _ := net.SplitHostPort(f.addr)
	args := f.args("--output", "json")
	args[2] = net.JoinHostPort("localhost", port) // SNI localhost, as `contrast verify -c localhost:1313`
	out, errText, code := runRootCmd(t, args...)
	if code != 1 {
		t.Fatalf("exit %d (%s):\n%s", code, errText, out)
	}
	var rep struct {
		Mode          failure.Mode `json:"failure_mode"`
		ClockOffsetMS *int64       `json:"clock_offset_ms"`
		Timings       map[string]float64
		Attempts      []struct {
			NonceStyle string       `json:"nonce_style"`
			Mode       failure.Mode `json:"failure_mode"`
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	if rep.Mode != failure.CoordinatorVersionMismatch || len(rep.Attempts) != 2 || rep.Attempts[0].Mode != failure.IssuerError || rep.ClockOffsetMS == nil {
		t.Fatalf("report %+v", rep)
	}
}

func TestProbeCommandUsageErrors(t *testing.T) {
	f := newProbeFixture(t, coordinator.Config{})
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no coordinator", []string{"probe"}, "--coordinator"},
		{"coordinator without port", []string{"probe", "--coordinator", "localhost"}, "--coordinator"},
		{"bad nonce placement", f.args("--nonce-in", "both"), "--nonce-in"},
		{"bad TLS version", f.args("--tls-max-version", "1.1"), "--tls-max-version"},
		{"bad output", f.args("--output", "yaml"), "--output"},
		{"bad timeout", f.args("--timeout", "soon"), "--timeout"},
		{"bad policy hash", f.args("--coordinator-policy-hash", "abc"), "--coordinator-policy-hash"},
		{"missing manifest", f.args("--manifest", filepath.Join(t.TempDir(), "none.json")), "--manifest"},
		{"argument", append(f.args(), "extra"), "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errText, code := runRootCmd(t, tc.args...)
			if code != 2 || !strings.Contains(errText, tc.want) {
				t.Fatalf("exit %d, error %q; want 2 naming %q", code, errText, tc.want)
			}
			if out != "" {
				t.Errorf("printed a report on a usage error: %s", out)
			}
		})
	}
}
