package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
)

// attestFixture writes what `ccproxy attest` reads: a manifest, the test
// roots, and certificates / raw evidence.
type attestFixture struct {
	dir, manifest, snpRoots, tdxRoots string
}

func newAttestFixture(t *testing.T) (*attestFixture, *attesttest.Authority) {
	t.Helper()
	a, err := attesttest.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := &attestFixture{
		dir:      dir,
		manifest: filepath.Join(dir, "manifest.json"),
		snpRoots: filepath.Join(dir, "snp-roots.pem"),
		tdxRoots: filepath.Join(dir, "tdx-roots.pem"),
	}
	for path, data := range map[string][]byte{f.manifest: a.ManifestJSON(), f.snpRoots: a.SNPRootsPEM(), f.tdxRoots: a.TDXRootsPEM()} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f, a
}

// certificate writes a Coordinator certificate (PEM) with evidence e bound
// to a fresh key and nonce, issued now; it returns the path and the nonce.
func (f *attestFixture) certificate(t *testing.T, a *attesttest.Authority, name string, platform string, e attesttest.Evidence) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(key.Public())
	nonce := make([]byte, 32)
	rand.Read(nonce)
	e.ReportData = attest.ReportData(spki, nonce)
	var doc []byte
	oid := attest.OIDSNP
	if platform == attest.PlatformTDX {
		oid = attest.OIDTDX
		doc, err = a.TDX(e)
	} else {
		doc, err = a.SNP(e)
	}
	if err != nil {
		t.Fatal(err)
	}
	cert, err := attesttest.Certificate(key, oid, doc, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(f.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, hex.EncodeToString(nonce)
}

// runAttestCmd runs `ccproxy attest args...` in process and returns its
// standard output, the error main would print, and the contract exit code.
func runAttestCmd(t *testing.T, args ...string) (stdout, errText string, code int) {
	t.Helper()
	cmd := newAttestCmd()
	var out, stderr bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&stderr)
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(""))
	err := cmd.ExecuteContext(context.Background())
	if err != nil {
		code = 2 // cobra's own errors are usage errors (see exitCode)
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		errText = err.Error()
	}
	if stderr.Len() > 0 {
		t.Errorf("wrote to stderr: %s", stderr.String())
	}
	return out.String(), errText, code
}

func TestAttestCommand(t *testing.T) {
	f, a := newAttestFixture(t)
	okSNP, okSNPNonce := f.certificate(t, a, "snp.pem", attest.PlatformSNP, attesttest.Evidence{})
	okTDX, okTDXNonce := f.certificate(t, a, "tdx.pem", attest.PlatformTDX, attesttest.Evidence{})
	badPolicy, badPolicyNonce := f.certificate(t, a, "policy.pem", attest.PlatformSNP, attesttest.Evidence{PolicyHash: [32]byte{1}})
	rawQuote := filepath.Join(f.dir, "quote.dat")
	q, err := a.TDXQuote(attesttest.Evidence{})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(rawQuote, q, 0o600)
	common := []string{"--offline", "--manifest", f.manifest, "--snp-trusted-roots", f.snpRoots, "--tdx-trusted-roots", f.tdxRoots}
	with := func(extra ...string) []string { return append(append([]string{}, common...), extra...) }

	cases := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"SNP certificate verifies", with("--nonce", okSNPNonce, okSNP), 0,
			[]string{`Verdict:\s+verified`, `Failure mode:\s+ok`, `Platform:\s+snp`, "Measurement:", `Policy hash \(HOST_DATA\):`, "Reported TCB:", "VCEK certificate:", "Report data:"}},
		// Offline, Intel's collateral is not fetched as the CLI fetches it:
		// everything else checked, the verdict stays unverified and says why.
		{"TDX certificate passes, unverified offline", with("--nonce", okTDXNonce, okTDX), 0,
			[]string{`Verdict:\s+unverified`, `Failure mode:\s+ok`, "MRTD:", "RTMR3:", "PCK chain certificate:",
				`Unverified: not checked:\s+Intel's collateral \(TCB info, QE identity\) and revocation \(offline\)`}},
		{"raw quote passes, unverified offline", with(rawQuote), 0,
			[]string{`Verdict:\s+unverified`, `Failure mode:\s+ok`, `Evidence format:\s+raw Intel TDX quote`}},
		{"raw quote with a nonce: no certificate key to bind, unverified", with("--nonce", okTDXNonce, rawQuote), 0,
			[]string{`Verdict:\s+unverified`, `Report data check:\s+not checked \(no certificate key to bind\)`}},
		{"policy hash mismatch exits 1", with("--nonce", badPolicyNonce, badPolicy), 1,
			[]string{`Failure mode:\s+policy_hash_mismatch`, `HOST_DATA \(policy hash\) is 01000000`}},
		{"wrong nonce exits 1", with("--nonce", okTDXNonce, okSNP), 1,
			[]string{"report_data_mismatch"}},
		// The flag names the policy when the manifest does not; it cannot
		// replace the manifest's Coordinator policy, which the CLI checks.
		{"explicit policy hash without a manifest", []string{"--offline", "--snp-trusted-roots", f.snpRoots, "--coordinator-policy-hash", "01" + strings.Repeat("00", 31), "--nonce", badPolicyNonce, badPolicy}, 0,
			[]string{`Failure mode:\s+ok`}},
		{"explicit policy hash the manifest does not name", with("--coordinator-policy-hash", "01"+strings.Repeat("00", 31), "--nonce", badPolicyNonce, badPolicy), 2,
			[]string{"--coordinator-policy-hash", "not a Coordinator policy of --manifest"}},
		{"bad --output", with("--output", "yaml", okSNP), 2, []string{"--output"}},
		{"bad --nonce", with("--nonce", "xyz", okSNP), 2, []string{"--nonce"}},
		{"short --nonce", with("--nonce", "abcd", okSNP), 2, []string{"--nonce"}},
		{"bad --coordinator-policy-hash", with("--coordinator-policy-hash", "abcd", okSNP), 2, []string{"--coordinator-policy-hash"}},
		{"missing --manifest", []string{"--manifest", filepath.Join(f.dir, "nope.json"), okSNP}, 2, []string{"--manifest"}},
		{"manifest without reference values", []string{"--manifest", f.snpRoots, okSNP}, 2, []string{"--manifest", "not a JSON manifest"}},
		{"roots that are not PEM", []string{"--snp-trusted-roots", f.manifest, okSNP}, 2, []string{"--snp-trusted-roots"}},
		{"missing FILE", with(filepath.Join(f.dir, "nope.pem")), 2, []string{"FILE"}},
		{"no FILE", with(), 2, []string{"accepts 1 arg"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errText, code := runAttestCmd(t, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; error %q, output:\n%s", code, tc.wantCode, errText, out)
			}
			all := out + "\n" + errText
			for _, w := range tc.want {
				if !regexp.MustCompile(w).MatchString(all) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
		})
	}
}

func TestAttestCommandJSON(t *testing.T) {
	f, a := newAttestFixture(t)
	cert, nonce := f.certificate(t, a, "snp.pem", attest.PlatformSNP, attesttest.Evidence{Measurement: [48]byte{9}})
	out, _, code := runAttestCmd(t, "--offline", "--output", "json", "--manifest", f.manifest, "--snp-trusted-roots", f.snpRoots, "--nonce", nonce, cert)
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, out)
	}
	var v struct {
		File               string `json:"file"`
		Platform           string `json:"platform"`
		Verdict            string `json:"verdict"`
		Mode               string `json:"failure_mode"`
		Detail             string `json:"failure_detail"`
		PolicyHash         string `json:"policy_hash"`
		ExpectedPolicyHash string `json:"expected_policy_hash"`
		ClockOffsetMs      *int64 `json:"clock_offset_ms"`
		Fields             []struct{ Name, Value string }
	}
	// Exactly one JSON document: nothing else may reach stdout.
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if dec.More() {
		t.Errorf("more than one JSON value on stdout:\n%s", out)
	}
	p := attesttest.DefaultPolicyHash()
	if v.File != cert || v.Platform != "snp" || v.Verdict != "rejected" || v.Mode != "measurement_mismatch" ||
		!strings.HasPrefix(v.Detail, "MEASUREMENT is 09") || v.PolicyHash != hex.EncodeToString(p[:]) ||
		v.ExpectedPolicyHash != v.PolicyHash || v.ClockOffsetMs == nil || len(v.Fields) == 0 {
		t.Errorf("unexpected JSON: %+v", v)
	}
	if *v.ClockOffsetMs < -60_000 || *v.ClockOffsetMs > 60_000 {
		t.Errorf("clock offset %d ms for a certificate issued just now", *v.ClockOffsetMs)
	}
}

func TestAttestCommandStdin(t *testing.T) {
	_, a := newAttestFixture(t)
	doc, err := a.TDX(attesttest.Evidence{})
	if err != nil {
		t.Fatal(err)
	}
	roots := filepath.Join(t.TempDir(), "roots.pem")
	os.WriteFile(roots, a.TDXRootsPEM(), 0o600)
	cmd := newAttestCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetIn(bytes.NewReader(doc))
	cmd.SetArgs([]string{"--offline", "--tdx-trusted-roots", roots, "-"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("attest -: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "tdx.QuoteV4 protobuf") {
		t.Errorf("output:\n%s", out.String())
	}
}
